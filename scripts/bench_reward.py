"""A stand-in for a partly trained model's verifier, for benchmarks on random models.

A random model never solves a task, so every reward is 0, every advantage is 0, and a trainer
that skips zero-advantage rows (``train.skip_zero_rows``) would skip the whole step: the step
time would say nothing. ``coin_reward`` gives 1.0 to a completion with probability ``p``,
decided by a hash of its text (deterministic: the same completion always gets the same score,
on either side of a benchmark, in any process):

    r(c) = 1[ sha256(c) / 2^256 < p ]

With groups of G independent completions, a fraction (1 - p)^G + p^G of the groups has equal
rewards, hence zero advantages: p = 0.15, G = 8 gives 27 %, inside the 13-35 % of rows with zero
advantage measured in quickstart runs (docs/bench_step.md).
"""

from __future__ import annotations

import hashlib


def coin_reward(completion: str, example: dict | None = None, p: float = 0.15) -> float:
    """1.0 with probability ``p``, a deterministic function of the completion's text."""
    digest = hashlib.sha256(completion.encode("utf-8", "surrogatepass")).digest()
    return 1.0 if int.from_bytes(digest[:8], "big") < p * 2**64 else 0.0
