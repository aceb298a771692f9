"""Rollout correction: importance weights of the trainer policy against the rollout policy.

The engine that sampled a completion (the behaviour policy mu) is not the policy the learner
trains: it may hold weights one optimizer step old (``rollout.max_staleness: 1``,
rlvr/off_policy.py) and it computes in another kernel / dtype. With the trainer's policy at the
start of the update pi_old (a recomputed forward pass) and the engine's sampling log-prob mu
(``processed_logprobs``: after temperature / top-k / top-p), per completion token t

    rho_t = pi_old(a_t) / mu(a_t) = exp(logp_old_t - logp_mu_t)      (a constant: no gradient)

and the decoupled PPO loss (Hilton et al. 2021, "Batch size-invariance for policy
optimization"; as written in verl docs/algo/rollout_corr_math.md §1.3)

    L = -(1/N) sum_t w_t * min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t),
    r_t = pi_theta / pi_old,

multiplies the clipped surrogate only (not the KL or entropy terms) by

    mode      level     w_t                                      source, peers' default
    truncate  token     min(rho_t, C)                            TIS (Yao et al. 2025, "Your
                                                                 efficient RL framework secretly
                                                                 brings you off-policy RL
                                                                 training"); verl preset
                                                                 decoupled_token_is(2.0),
                                                                 open-instruct rho clamp 2.0
    truncate  sequence  min(prod_t rho_t, C), on every token     verl decoupled_seq_is, TRL
                                                                 sequence_truncate
    mask      token     rho_t * 1[C_low <= rho_t <= C]           MIS / IcePop (arXiv 2510.18855),
                                                                 OpenRLHF icepop [0.5, 5], TRL
                                                                 token_mask
    mask      sequence  rho_s * 1[C_low <= rho_s <= C],          TRL sequence_mask (its default,
                        rho_s = prod_t rho_t, on every token     C = 3, no lower bound)

Sequence level uses the *product* of the token ratios over the sequence's loss tokens (as
verl and TRL define it), not the geometric mean; the product grows like rho^T with length T
(verl's "length trap"), which is why token level is the default. rlvr's default: ``truncate``,
``token``, C = 2 when ``rollout.max_staleness >= 1``, ``off`` otherwise (and always ``off``
with ``algo.old_logprobs: rollout``, the bypass mode, where mu already is the ratio's
denominator).

Choices: log rho is clamped to [-20, 20] before exponentiating (verl's safety bound, so a
sequence product cannot overflow); a masked token keeps its place in the loss aggregation's
denominator with w_t = 0 (the formula above; verl's rejection mode instead removes it from
the response mask); rho is computed once per batch, from the first pass over it.
Metrics (``rollout_correction/...``): rho's min / mean / max over loss tokens (token level) or
sequences (sequence level), the fraction masked (w = 0) and the fraction truncated (rho > C).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_RHO_BOUND = 20.0  # verl's safety clamp on log rho


@dataclass
class CorrectionStats:
    """Sums over one batch, accumulated micro-batch by micro-batch."""

    count: int = 0  # tokens (token level) or sequences (sequence level) seen
    rho_sum: float = 0.0
    rho_min: float = math.inf
    rho_max: float = -math.inf
    masked: int = 0
    truncated: int = 0

    def add(self, rho: torch.Tensor, masked: torch.Tensor, truncated: torch.Tensor) -> None:
        """``rho``, ``masked`` and ``truncated`` are 1-D over the units that count."""
        if rho.numel() == 0:
            return
        self.count += int(rho.numel())
        self.rho_sum += float(rho.sum())
        self.rho_min = min(self.rho_min, float(rho.min()))
        self.rho_max = max(self.rho_max, float(rho.max()))
        self.masked += int(masked.sum())
        self.truncated += int(truncated.sum())

    def metrics(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        n = self.count
        return {
            "rollout_correction/rho_min": self.rho_min,
            "rollout_correction/rho_mean": self.rho_sum / n,
            "rollout_correction/rho_max": self.rho_max,
            "rollout_correction/masked_fraction": self.masked / n,
            "rollout_correction/truncated_fraction": self.truncated / n,
        }


@dataclass(frozen=True)
class RolloutCorrection:
    mode: str  # "truncate" | "mask"
    level: str  # "token" | "sequence"
    threshold: float = 2.0  # C: truncate's cap, mask's upper bound
    low_threshold: float = 0.0  # mask's lower bound (0: none)

    def __post_init__(self) -> None:
        if self.mode not in ("truncate", "mask"):
            raise ValueError(f"rollout correction mode {self.mode!r}: use 'truncate' or 'mask'")
        if self.level not in ("token", "sequence"):
            raise ValueError(f"rollout correction level {self.level!r}: use 'token' or 'sequence'")
        if not self.threshold > 0 or not 0 <= self.low_threshold < self.threshold:
            raise ValueError(
                f"rollout correction thresholds: need 0 <= low_threshold < threshold, got "
                f"low_threshold={self.low_threshold}, threshold={self.threshold}"
            )

    @torch.no_grad()
    def weights(
        self,
        old_logp: torch.Tensor,
        rollout_logp: torch.Tensor,
        mask: torch.Tensor,
        stats: CorrectionStats | None = None,
    ) -> torch.Tensor:
        """w [M, T] for log pi_old and log mu [M, T] over the loss tokens ``mask`` [M, T]
        (zero elsewhere); adds this micro-batch's rho to ``stats`` when given."""
        live = mask > 0
        log_rho = (old_logp.float() - rollout_logp.float()) * live
        if self.level == "token":
            rho = torch.exp(log_rho.clamp(-LOG_RHO_BOUND, LOG_RHO_BOUND))
        else:
            rows = live.any(dim=1)
            seq = torch.exp(log_rho.sum(dim=1).clamp(-LOG_RHO_BOUND, LOG_RHO_BOUND))  # [M]
            rho = seq.unsqueeze(1).expand_as(log_rho)
        if self.mode == "truncate":
            w = torch.clamp(rho, max=self.threshold)
            truncated = rho > self.threshold
            dropped = torch.zeros_like(truncated)
        else:
            keep = (rho >= self.low_threshold) & (rho <= self.threshold)
            w = rho * keep
            truncated = torch.zeros_like(keep)
            dropped = ~keep
        w = w * live
        if stats is not None:
            if self.level == "token":
                stats.add(rho[live], dropped[live], truncated[live])
            else:
                stats.add(rho[rows, 0], dropped[rows, 0], truncated[rows, 0])
        return w


def resolve_mode(mode: str | None, *, max_staleness: int, old_logprobs: str) -> str:
    """The mode a recipe runs with: ``None`` means truncate when rollouts may be stale (and the
    ratio's denominator is the trainer's recomputation), off otherwise."""
    if mode is not None:
        return mode
    return "truncate" if max_staleness >= 1 and old_logprobs == "trainer" else "off"
