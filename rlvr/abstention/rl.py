"""Abstention inside RL rollouts: rlvr's own reading, off by default (``rollout.abstention``).

The formal model of arXiv 2604.18419 gives an abstaining episode the reward r_⊥; the paper's
training beyond the value head is not public, and the first author's library uses abstention
at inference only. rlvr's option: with a trained head, the gate runs during RL rollouts (hf
engine); a rollout it stopped gets the total reward r_⊥ instead of the reward modules' score
(its answer is withheld, not judged), and its forced EOS is removed before the update, since
that token was drawn from the gate's one-hot distribution and not from the policy (its
rollout log-prob is 0). The rollout then ends without EOS, after at least ``min_tokens`` ≥ 1
policy tokens. Truncating rollouts by V̂ changes the on-policy distribution, which is why the
option is off by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def strip_forced_eos(groups: Sequence[Sequence[Any]]) -> int:
    """Drop the gate's EOS (token and log-prob) from abstained completions; returns how many."""
    count = 0
    for group in groups:
        for c in group:
            if c.abstained and c.token_ids:
                c.token_ids = c.token_ids[:-1]
                c.logprobs = c.logprobs[:-1]
                count += 1
    return count


def abstention_rewards(
    totals: Sequence[Sequence[float]], groups: Sequence[Sequence[Any]], r_abstain: float
) -> list[list[float]]:
    """Total rewards with every abstained completion's replaced by r_⊥."""
    return [
        [r_abstain if c.abstained else float(t) for t, c in zip(row, group, strict=True)]
        for row, group in zip(totals, groups, strict=True)
    ]
