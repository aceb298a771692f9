"""``kl_cov``: a KL penalty on the top-k covariance tokens (KL-Cov).

Source: Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models" (arXiv 2505.22617); public code PRIME-RL/Entropy-Mechanism-of-RL and verl's
``kl_cov`` policy loss.

With Cov_t = (A_t - mean A)(log pi(o_t) - mean log pi) over the batch's n loss tokens, the
k = max(1, floor(ratio * n)) tokens of largest Cov_t get an extra loss term

    p_t = coef * | log pi_theta(o_t) - log pi_old(o_t) |

(all other tokens p_t = 0); it pulls those tokens back toward the behaviour policy. Defaults
as verl: ratio = 2e-4, coef = 1.

The policy term is verl's ``compute_policy_loss_kl_cov``: **no ratio clip at all** on any
token, per-token loss ``-A_t r_t + p_t`` (``clip: false``, the default). rlvr realises it by
adding ``min(r A, clip(r) A) - r A`` to the penalty, which cancels the trainer's clip; this is
exact when kl_cov's multipliers are the only ones (other rules' multipliers scale the clipped
term only). ``clip: true`` keeps rlvr's earlier reading: the penalty on top of the usual
clipped surrogate ``-min(r A, clip(r) A) + p_t``.

Choice: the top-k is taken over the whole rollout batch once per batch (verl: per
micro-batch) from the no-grad pass. The penalty's gradient is zero where
pi_theta == pi_old, i.e. in the first update of an on-policy batch; it acts from the second
update on (``algo.updates_per_batch >= 2``) or with ``algo.old_logprobs: rollout``, as in
verl where later mini-batches of a rollout batch are off-policy.
"""

from __future__ import annotations

import torch

from rlvr.algos.losses import clipped_surrogate
from rlvr.algos.token_weighting.base import (
    BatchTokenStats,
    MicroBatchTokens,
    TokenWeightOutput,
    TokenWeightRule,
    fraction,
    register_token_weight,
    top_fraction,
)
from rlvr.algos.token_weighting.clip_cov import token_covariance


@register_token_weight("kl_cov")
class KLCov(TokenWeightRule):
    def __init__(self, ratio: float = 2e-4, coef: float = 1.0, clip: bool = False) -> None:
        if not 0 < ratio <= 1:
            raise ValueError(f"kl_cov: ratio must be in (0, 1], got {ratio}")
        if coef < 0:
            raise ValueError(f"kl_cov: coef must be >= 0, got {coef}")
        self.ratio, self.coef, self.clip = ratio, coef, bool(clip)
        self.eps_low, self.eps_high = 0.2, 0.2
        self._selected: torch.Tensor | None = None

    def prepare(self, stats: BatchTokenStats) -> dict[str, float]:
        valid = stats.valid
        cov = token_covariance(stats)
        n = stats.num_valid
        k = max(1, int(self.ratio * n)) if n else 0
        selected = top_fraction(cov, valid, k / n) if n else torch.zeros_like(valid)
        self._selected = selected
        self.eps_low, self.eps_high = stats.eps_low, stats.eps_high
        return {"penalized_fraction": fraction(selected, valid)}

    def apply(self, micro: MicroBatchTokens) -> TokenWeightOutput:
        if self._selected is None:
            raise RuntimeError("KLCov.prepare must run before apply")
        selected = micro.take(self._selected).float()
        penalty = self.coef * (micro.logp - micro.old_logp).abs() * selected
        if not self.clip:  # verl: -A r on every token; cancel the trainer's clipped surrogate
            surrogate, _, ratio = clipped_surrogate(
                micro.logp, micro.old_logp, micro.advantages, self.eps_low, self.eps_high
            )
            penalty = penalty + surrogate - ratio * micro.advantages
        return TokenWeightOutput(weights=torch.ones_like(selected), penalty=penalty)
