"""``clip_cov``: detach a small random set of high-covariance tokens (Clip-Cov).

Source: Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models" (arXiv 2505.22617); public code PRIME-RL/Entropy-Mechanism-of-RL, also in
verl as the ``clip_cov`` policy loss.

Per loss token t, with means over the batch's n loss tokens,

    Cov_t = (A_t - mean A) * (log pi(o_t) - mean log pi)

Candidates: lb < Cov_t < ub, not already clipped by the PPO ratio clip (algo.eps_low /
eps_high). Of these,
k = max(1, floor(ratio * n)) are drawn uniformly at random and detached (m_t = 0: no gradient,
the token still counts in the aggregation denominator); every other token has m_t = 1.
Defaults are the paper's / verl's: ratio = 2e-4, lb = 1, ub = 5.

Choices: the covariance, candidates and the random draw are made once per rollout batch over
the whole batch (verl does it per micro-batch), from the no-grad pass of the current policy;
the draw uses a private generator seeded with (seed, step), so runs are reproducible and a
resumed run draws the same tokens without touching the global RNG.
"""

from __future__ import annotations

import torch

from rlvr.algos.token_weighting.base import (
    BatchTokenStats,
    PrecomputedWeights,
    fraction,
    masked_mean,
    register_token_weight,
)


def token_covariance(stats: BatchTokenStats) -> torch.Tensor:
    """[N, T] centred product of advantage and log-prob (0 off the loss mask)."""
    valid = stats.valid.float()
    adv = stats.advantages.float()
    logp = stats.logp.float()
    cov = (adv - masked_mean(adv, valid)) * (logp - masked_mean(logp, valid))
    return cov * valid


@register_token_weight("clip_cov")
class ClipCov(PrecomputedWeights):
    def __init__(
        self,
        ratio: float = 2e-4,
        lb: float = 1.0,
        ub: float = 5.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError(f"clip_cov: ratio must be in (0, 1], got {ratio}")
        if lb >= ub:
            raise ValueError(f"clip_cov: lb ({lb}) must be below ub ({ub})")
        self.ratio, self.lb, self.ub = ratio, lb, ub
        self.seed = seed

    def prepare(self, stats: BatchTokenStats) -> dict[str, float]:
        valid = stats.valid
        cov = token_covariance(stats)
        ratio = torch.exp(stats.logp - stats.old_logp)
        adv = stats.advantages
        clipped = ((adv > 0) & (ratio > 1 + stats.eps_high)) | (
            (adv < 0) & (ratio < 1 - stats.eps_low)
        )
        candidates = valid & ~clipped & (cov > self.lb) & (cov < self.ub)
        idx = torch.nonzero(candidates.reshape(-1)).squeeze(1)
        k = min(len(idx), max(1, int(self.ratio * stats.num_valid)))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + stats.step)
        chosen = idx[torch.randperm(len(idx), generator=gen)[:k]]
        detached = torch.zeros_like(valid)
        detached.view(-1)[chosen] = True
        self._weights = (~detached).float()
        return {
            "detached_fraction": fraction(detached, valid),
            "candidate_fraction": fraction(candidates, valid),
            "cov_mean": float(masked_mean(cov, valid.float())),
        }
