"""``egspo_gate``: entropy-gated selective policy optimisation (the EGSPO token gate).

Source: Hu, Cheng, Liu, Song 2026, "Entropy-Gated Selective Policy Optimization: Token-Level
Gradient Allocation for Hybrid Training of Large Language Models" (arXiv 2602.03309), read
from the paper's abstract and public summaries (no public code found). Its predictive-entropy
module routes high-entropy tokens to the full PPO update and low-entropy tokens to a
"phi-attenuated" PPO update; both branches keep the advantage A_t, so a wrong trajectory's
confident tokens still get a (smaller) negative signal.

    gate_t = 1[H_t >= tau]
    m_t    = 1                      if gate_t
             phi_t                  otherwise

with, by ``attenuation``:
    "constant": phi_t = low_weight                           (default, low_weight = 0.1)
    "phi":      phi_t = max(p_t (1 - p_t), floor)            p_t = pi(o_t): CHORD-phi's token
                                                             weight, our reading of "phi"
The threshold tau is ``threshold`` (nats) when given, else the entropy of the ceil(q * n)-th
most uncertain loss token of the whole rollout batch (default q = 0.2, the 80/20 finding the
paper builds on). m_t >= 0 always, so the advantage's sign is kept on both branches.
The paper's three stages (SFT warm-up on demonstrations, rollouts with per-token entropy,
gated updates) map to: the recipe's ``warmup`` section (rlvr/stages/warmup.py), the trainer's
whole-batch entropy pass, and this rule; recipes/egspo_*.yaml run all three.
"""

from __future__ import annotations

from typing import Literal

import torch

from rlvr.algos.token_weighting.base import (
    BatchTokenStats,
    PrecomputedWeights,
    fraction,
    masked_mean,
    register_token_weight,
    top_fraction,
)


@register_token_weight("egspo_gate")
class EGSPOGate(PrecomputedWeights):
    def __init__(
        self,
        q: float = 0.2,
        threshold: float | None = None,
        attenuation: Literal["constant", "phi"] = "constant",
        low_weight: float = 0.1,
        floor: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 < q <= 1:
            raise ValueError(f"egspo_gate: q must be in (0, 1], got {q}")
        if attenuation not in ("constant", "phi"):
            raise ValueError(
                f"egspo_gate: attenuation must be 'constant' or 'phi', got {attenuation!r}"
            )
        if not 0 <= low_weight <= 1 or not 0 <= floor <= 1:
            raise ValueError("egspo_gate: low_weight and floor must be in [0, 1]")
        self.q, self.threshold = q, threshold
        self.attenuation, self.low_weight, self.floor = attenuation, low_weight, floor

    def prepare(self, stats: BatchTokenStats) -> dict[str, float]:
        valid = stats.valid
        if self.threshold is not None:
            gate = valid & (stats.entropy >= self.threshold)
            tau = float(self.threshold)
        else:
            gate = top_fraction(stats.entropy, valid, self.q)
            tau = float(stats.entropy[gate].min()) if gate.any() else 0.0
        if self.attenuation == "constant":
            low = torch.full_like(stats.entropy, self.low_weight, dtype=torch.float32)
        else:
            p = torch.exp(stats.logp.float())
            low = (p * (1 - p)).clamp(min=self.floor)
        weights = torch.where(gate, torch.ones_like(low), low) * valid.float()
        self._weights = weights
        return {
            "gated_fraction": fraction(gate, valid),
            "attenuated_fraction": fraction(~gate, valid),
            "threshold": tau,
            "weight_mean": float(masked_mean(weights, valid.float())),
        }
