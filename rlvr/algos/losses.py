"""Policy losses: PPO-style clipped surrogate with separate eps_low / eps_high, k3 KL, and
loss aggregation.

Per completion token t with ratio rho_t = exp(logp_t - logp_old_t) and advantage A:
    surrogate_t = min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A)   (PPO; DAPO clip-higher)
    kl_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1                      (k3, Schulman 2020)
    loss_t = -m_t * surrogate_t + p_t + kl_coef * kl_t - entropy_coef * H_t
with m_t the token-weight rules' multipliers on the policy-gradient term (1 by default) and
p_t their extra per-token penalty (0 by default; rlvr/algos/token_weighting/).
Aggregation (the denominator is always over the whole rollout batch, not the micro-batch, so
gradient accumulation gives the same gradient as one big batch):
    token_mean               sum_{i,t} loss_{i,t} / sum_i |o_i|             (DAPO token-level)
    seq_mean_token_mean      (1/N) sum_i (1/|o_i|) sum_t loss_{i,t}          (GRPO paper)
    seq_mean_token_sum_norm  (1/N) sum_i sum_t loss_{i,t} / L_max            (Dr. GRPO constant)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossTerms:
    loss: torch.Tensor  # scalar, already divided by the batch-level normaliser
    clip_fraction_sum: torch.Tensor  # sums over valid tokens, for metrics
    kl_sum: torch.Tensor
    ratio_sum: torch.Tensor


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    eps_low: float,
    eps_high: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token surrogate (to maximise), whether clipping was active, and the ratio."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    surrogate = torch.minimum(unclipped, clipped)
    was_clipped = (clipped < unclipped).float()
    return surrogate, was_clipped, ratio


def aggregation_weights(
    mask: torch.Tensor, aggregation: str, num_sequences: int, num_tokens: int, max_len: int
) -> torch.Tensor:
    """Per-token weights w such that loss = sum(w * loss_t) realises the aggregation."""
    mask = mask.float()
    if aggregation == "token_mean":
        return mask / max(num_tokens, 1)
    if aggregation == "seq_mean_token_mean":
        lengths = mask.sum(dim=1, keepdim=True).clamp(min=1)
        return mask / lengths / max(num_sequences, 1)
    if aggregation == "seq_mean_token_sum_norm":
        return mask / max(max_len, 1) / max(num_sequences, 1)
    raise ValueError(f"unknown loss aggregation {aggregation!r}")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
    multipliers: torch.Tensor | None = None,
    penalty: torch.Tensor | None = None,
) -> LossTerms:
    """All tensors [M, T]; ``weights`` from :func:`aggregation_weights` (zero on padding);
    ``multipliers`` scale the surrogate term only, ``penalty`` is added per token."""
    surrogate, was_clipped, ratio = clipped_surrogate(logp, old_logp, advantages, eps_low, eps_high)
    per_token = -surrogate if multipliers is None else -surrogate * multipliers
    if penalty is not None:
        per_token = per_token + penalty
    valid = (weights > 0).float()
    kl_sum = torch.zeros((), dtype=logp.dtype)
    if ref_logp is not None and kl_coef > 0:
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + kl_coef * kl
        kl_sum = (kl.detach() * valid).sum()
    if entropy is not None and entropy_coef != 0:
        per_token = per_token - entropy_coef * entropy
    loss = (per_token * weights).sum()
    return LossTerms(
        loss=loss,
        clip_fraction_sum=(was_clipped * valid).sum(),
        kl_sum=kl_sum,
        ratio_sum=(ratio.detach() * valid).sum(),
    )
