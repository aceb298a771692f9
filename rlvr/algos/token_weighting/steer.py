"""``steer``: Stabilizing Token-level Entropy-changE via Reweighting (STEER).

Source: Hao et al. 2025, "Rethinking Entropy Interventions in RLVR: An Entropy Change
Perspective" (arXiv 2510.10150); public code github.com/zz-haooo/STEER
(verl/trainer/ppo/core_algos.py, ``compute_token_weights``), read to understand it.

The first-order estimate of how much one policy-gradient step on token t changes the entropy
at that position (the paper's Omega), with p_t = pi_theta(o_t) and H_t the entropy there:

    Omega_t = (A_t / pi_old(o_t)) * p_t (1 - p_t) * (log p_t + H_t)

Tokens that would move the entropy a lot are down-weighted, keeping the per-step entropy
change in a moderate band. Over the batch's loss tokens, with M = max_t |Omega_t|:

    "exp"    (paper, default):  m_t = clip(exp(-k |Omega_t|), weight_min, 1),
                                k = -ln(weight_min) / max(M, 0.02)
    "linear" (released code's other mapping):
                                m_t = weight_max - (|Omega_t| - m) (weight_max - weight_min) / (M - m)
                                (m = min |Omega|; (weight_min + weight_max) / 2 if M == m)

p is clamped to [1e-8, 1 - 1e-8] and pi_old to [1e-8, 1]; non-finite Omega counts as 0.
Defaults weight_min = 0.8, weight_max = 1.2 as in the released code. m_t > 0, so the
advantage's sign is kept.

Choice: Omega and its normalisation (M, m) are computed once per rollout batch over the
whole batch from the no-grad pass of the current policy (the released code does it per
micro-batch with the live log-probs; at the first update of a batch they coincide).
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
)


def entropy_change(stats: BatchTokenStats) -> torch.Tensor:
    """[N, T] Omega_t (0 off the loss mask and where it is not finite)."""
    p = torch.exp(stats.logp.float()).clamp(1e-8, 1 - 1e-8)
    old_p = torch.exp(stats.old_logp.float()).clamp(1e-8, 1.0)
    omega = stats.advantages.float() / old_p * p * (1 - p) * (torch.log(p) + stats.entropy)
    omega = torch.where(torch.isfinite(omega), omega, torch.zeros_like(omega))
    return omega * stats.valid.float()


@register_token_weight("steer")
class Steer(PrecomputedWeights):
    def __init__(
        self,
        weight_min: float = 0.8,
        weight_max: float = 1.2,
        mapping: Literal["exp", "linear"] = "exp",
    ) -> None:
        super().__init__()
        if not 0 < weight_min <= 1 or weight_max < weight_min:
            raise ValueError("steer: need 0 < weight_min <= 1 and weight_max >= weight_min")
        if mapping not in ("exp", "linear"):
            raise ValueError(f"steer: mapping must be 'exp' or 'linear', got {mapping!r}")
        self.weight_min, self.weight_max, self.mapping = weight_min, weight_max, mapping

    def prepare(self, stats: BatchTokenStats) -> dict[str, float]:
        valid = stats.valid
        mag = entropy_change(stats).abs()
        weights = torch.zeros_like(mag)
        if valid.any():
            vals = mag[valid]
            hi, lo = vals.max(), vals.min()
            if self.mapping == "exp":
                k = -torch.log(torch.tensor(self.weight_min)) / torch.clamp(hi, min=0.02)
                w = torch.exp(-k * vals).clamp(self.weight_min, 1.0)
            elif hi > lo:
                scale = (self.weight_max - self.weight_min) / (hi - lo)
                w = (self.weight_max - (vals - lo) * scale).clamp(self.weight_min, self.weight_max)
            else:
                w = torch.full_like(vals, (self.weight_min + self.weight_max) / 2)
            weights[valid] = w
        self._weights = weights
        fvalid = valid.float()
        return {
            "weight_mean": float(masked_mean(weights, fvalid)),
            "weight_min": float(weights[valid].min()) if valid.any() else 0.0,
            "attenuated_fraction": fraction(weights < 1 - 1e-6, valid),
            "omega_abs_mean": float(masked_mean(mag, fvalid)),
        }
