"""``kl_cov``: a KL penalty on the top-k covariance tokens (KL-Cov).

Source: Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models" (arXiv 2505.22617); public code PRIME-RL/Entropy-Mechanism-of-RL and verl's
``kl_cov`` policy loss.

With Cov_t = (A_t - mean A)(log pi(o_t) - mean log pi) over the batch's n loss tokens, the
k = max(1, floor(ratio * n)) tokens of largest Cov_t get an extra loss term

    p_t = coef * | log pi_theta(o_t) - log pi_old(o_t) |

(all other tokens p_t = 0); it pulls those tokens back toward the behaviour policy. Defaults
as verl: ratio = 2e-4, coef = 1.

Choices: (1) the top-k is taken over the whole rollout batch once per batch (verl: per
micro-batch) from the no-grad pass; (2) the penalty is added to the usual clipped surrogate
(verl's KL-Cov drops the ratio clip altogether); keeping the clip lets kl_cov compose with
other rules and with any eps_low / eps_high. The penalty's gradient is zero where
pi_theta == pi_old, i.e. in the first update of an on-policy batch; it acts from the second
update on (``algo.updates_per_batch >= 2``) or with ``algo.old_logprobs: rollout``, as in
verl where later mini-batches of a rollout batch are off-policy.
"""

from __future__ import annotations

import torch

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
    def __init__(self, ratio: float = 2e-4, coef: float = 1.0) -> None:
        if not 0 < ratio <= 1:
            raise ValueError(f"kl_cov: ratio must be in (0, 1], got {ratio}")
        if coef < 0:
            raise ValueError(f"kl_cov: coef must be >= 0, got {coef}")
        self.ratio, self.coef = ratio, coef
        self._selected: torch.Tensor | None = None

    def prepare(self, stats: BatchTokenStats) -> dict[str, float]:
        valid = stats.valid
        cov = token_covariance(stats)
        n = stats.num_valid
        k = max(1, int(self.ratio * n)) if n else 0
        selected = top_fraction(cov, valid, k / n) if n else torch.zeros_like(valid)
        self._selected = selected
        return {"penalized_fraction": fraction(selected, valid)}

    def apply(self, micro: MicroBatchTokens) -> TokenWeightOutput:
        if self._selected is None:
            raise RuntimeError("KLCov.prepare must run before apply")
        selected = micro.take(self._selected).float()
        penalty = self.coef * (micro.logp - micro.old_logp).abs() * selected
        return TokenWeightOutput(weights=torch.ones_like(selected), penalty=penalty)
