"""Held-out evaluation: greedy accuracy and pass@1 on a held-out split, the one copy used by
the RL trainer (``Trainer.evaluate`` -> :meth:`rlvr.sampler.Sampler.evaluate`) and by every
stage recipe (:func:`rlvr.stages.common.heldout_eval`, before and after a stage trains).

For B problems, a greedy answer g_i and n samples c_ij at temperature T:

    eval/greedy      = (1/B) sum_i correct(g_i)
    eval/pass@1      = (1/B) sum_i (1/n) sum_j correct(c_ij)
    eval/well_formed = (1/B) sum_i (1/n) sum_j well_formed(c_ij)   (when the scorer says)

What "correct" means is the caller's: the trainer thresholds its reward runner's
``accuracy_key`` component (> 0.5), the stages use the math verifier (>= 1.0) and the format
reward. The engine's abstention gate (``rollout.abstention``), when one is attached, is off
while evaluating: held-out accuracy is the model's, not the gated policy's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

from rlvr.rollout import SamplingParams
from rlvr.rollout.base import Completion

# (examples [B], groups [B][G]) -> (correct [B][G], well_formed [B][G] or None), or None when
# the completions cannot be scored for correctness (the eval is then skipped)
HeldoutScorer = Callable[
    [list[dict], list[list[Completion]]],
    "tuple[list[list[bool]], list[list[bool]] | None] | None",
]


@contextmanager
def _without_gate(engine: Any):
    gate = getattr(engine, "abstention", None)
    if gate is not None:
        engine.abstention = None
    try:
        yield
    finally:
        if gate is not None:
            engine.abstention = gate


def _mean_of_means(rows: Sequence[Sequence[bool]]) -> float:
    return sum(sum(r) / len(r) for r in rows) / len(rows)


def heldout_accuracy(
    engine: Any,
    examples: list[dict],
    prompt_ids: list[list[int]],
    score: HeldoutScorer,
    *,
    greedy: SamplingParams,
    sampled: SamplingParams,
) -> dict[str, float]:
    """``eval/greedy``, ``eval/pass@1`` (and ``eval/well_formed``) of ``engine`` on
    ``examples`` (prompts already tokenized). ``greedy`` is generated and scored first, then
    ``sampled`` (its ``n`` samples per problem); ``{}`` when there are no examples or
    ``score`` returns None."""
    if not examples:
        return {}
    if len(prompt_ids) != len(examples):
        raise ValueError(f"{len(prompt_ids)} prompts for {len(examples)} held-out examples")
    out: dict[str, float] = {}
    for name, sp in (("greedy", greedy), ("pass@1", sampled)):
        with _without_gate(engine):
            groups = engine.generate(prompt_ids, sp)
        scored = score(examples, groups)
        if scored is None:
            return {}
        correct, well_formed = scored
        out[f"eval/{name}"] = _mean_of_means(correct)
        if name == "pass@1" and well_formed is not None:
            out["eval/well_formed"] = _mean_of_means(well_formed)
    return out
