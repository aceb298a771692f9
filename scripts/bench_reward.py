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

Each side of a benchmark samples its own completions, so with ``coin_reward`` each side also
draws its own zero-advantage groups: over a few steps of a few groups one side may skip far more
rows than the other by chance (measured: 0.42 vs 0.25 of the rows at the 25m scale, 0.75 vs 0.25
at 100m). ``paired_coin_reward`` removes that: whether a group is all-zero is decided by its
prompt, which both sides share, and inside the other groups each completion is a fair coin,

    r(c, x) = 0                               if sha256("group" + x) / 2^256 < q
              1[ sha256(c) / 2^256 < 1/2 ]    otherwise

so the same prompts (a fraction q = 0.27 of them, the coin's 27 % above) have zero advantage on
every side; a live group is all-equal only with probability 2 / 2^G (0.8 % at G = 8).
"""

from __future__ import annotations

import hashlib


def coin_reward(completion: str, example: dict | None = None, p: float = 0.15) -> float:
    """1.0 with probability ``p``, a deterministic function of the completion's text."""
    digest = hashlib.sha256(completion.encode("utf-8", "surrogatepass")).digest()
    return 1.0 if int.from_bytes(digest[:8], "big") < p * 2**64 else 0.0


def _unit(text: str) -> float:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def paired_coin_reward(completion: str, example: dict | None = None, q: float = 0.27) -> float:
    """0 for every completion of a prompt chosen by the prompt's hash (probability ``q``),
    else a fair coin of the completion's text: the same zero-advantage groups on every side."""
    prompt = "" if example is None else str(example.get("prompt", ""))
    if _unit("group" + prompt) < q:
        return 0.0
    return 1.0 if _unit(completion) < 0.5 else 0.0
