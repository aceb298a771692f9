"""Adaptive effort control (AEC): reward correct answers that stay within an effort budget.

"e1: Learning Adaptive Control of Reasoning Effort" (Kleinman et al., arXiv 2510.27042), .
The prompt carries an effort fraction
r in (0, 1] (``example["effort"]``); the budget is r times the *current* mean length for this
prompt, a running statistic kept per prompt and saved with the checkpoint::

    R_i     = 1[correct_i] * 1[L_i / T(x) <= r]
    T(x)    = running mean length of prompt x, *before* this visit's update; on the first
              visit T(x) = mean_i L_i of the current group (then floored at ``min_mean``)
    update  T(x) <- rho * T(x) + (1 - rho) * mean_i L_i       (rho = 0.5)

The paper's exact T(x) bookkeeping and effort template are not public (spec gaps); rho, the
first-visit rule, the floor and the template of :func:`add_effort` are toolkit defaults.
``freeze=True`` stops updating T(x) (the spec's caution: with T shrinking, r = 1 still pushes
lengths down). State per prompt key (``example["id"]`` or a hash of the prompt) is
``{"mean": float, "n": int}``.

L_i is the length of the chain of thought (the source's l(h)) where the completion has one:
with ``measure="cot"`` (default) a completion containing ``</think>`` is measured up to that
tag, in characters or, for ``length_unit="tokens"``, as ``num_tokens * chars(CoT) /
chars(completion)`` (the engine gives one token count per completion; tokens are mapped in
proportion, as rewards/length.py does for LC-R1); a completion without ``</think>`` counts
whole. ``measure="completion"`` measures the whole completion (rlvr's earlier reading).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rewards.base import register_reward
from rewards.length import group_correctness, group_lengths
from rewards.math import warmup

__all__ = [
    "DEFAULT_EFFORT_TEMPLATE",
    "add_effort",
    "cot_length",
    "effort_reward",
    "effort_scores",
]

DEFAULT_EFFORT_TEMPLATE = "\n\nReasoning effort: {effort:.2f}"


def effort_scores(
    lengths: list[float],
    correct: list[bool],
    effort: float,
    state: Mapping[str, Any] | None,
    *,
    rho: float = 0.5,
    min_mean: float = 1.0,
    freeze: bool = False,
) -> tuple[list[float], dict[str, Any]]:
    """AEC rewards of one group and the prompt's new running-mean state."""
    if not lengths:
        return [], dict(state or {"mean": min_mean, "n": 0})
    group_mean = sum(lengths) / len(lengths)
    if state is None or "mean" not in state:
        mean, n = group_mean, 0
    else:
        mean, n = float(state["mean"]), int(state.get("n", 0))
    budget_base = max(mean, min_mean)
    scores = [
        float(ok and length / budget_base <= effort)
        for length, ok in zip(lengths, correct, strict=True)
    ]
    new_mean = mean if freeze else rho * mean + (1.0 - rho) * group_mean
    return scores, {"mean": new_mean, "n": n + 1}


@register_reward("effort", stateful=True)
def effort_reward(
    completions: list[str],
    example: dict,
    *,
    num_tokens: list[int] | None = None,
    components: dict[str, list[float]] | None = None,
    state: dict[str, Any] | None = None,
    effort_field: str = "effort",
    default_effort: float = 1.0,
    rho: float = 0.5,
    min_mean: float = 1.0,
    freeze: bool = False,
    correct_key: str = "math",
    correct_threshold: float = 0.5,
    answer_field: str = "answer",
    length_unit: str = "tokens",
    measure: str = "cot",
) -> tuple[list[float], dict[str, Any]]:
    """Registry "effort": AEC reward; stateful (per-prompt running mean length)."""
    if measure not in ("cot", "completion"):
        raise ValueError(f"measure must be 'cot' or 'completion', got {measure!r}")
    raw = example.get(effort_field, default_effort)
    effort = float(default_effort if raw is None else raw)
    if not math.isfinite(effort) or effort <= 0:
        raise ValueError(f"example[{effort_field!r}] must be a positive fraction, got {raw!r}")
    lengths = group_lengths(completions, num_tokens, length_unit)
    if measure == "cot":
        lengths = [cot_length(c, n) for c, n in zip(completions, lengths, strict=True)]
    correct = group_correctness(
        completions, example, components, correct_key, correct_threshold, answer_field
    )
    return effort_scores(lengths, correct, effort, state, rho=rho, min_mean=min_mean, freeze=freeze)


def cot_length(completion: str, length: float) -> float:
    """The chain of thought's share of ``length`` (the text before ``</think>``, mapped in
    proportion to characters); ``length`` unchanged without a ``</think>``."""
    close = completion.find("</think>")
    if close < 0 or not completion:
        return length
    return length * close / len(completion)


def _validate_effort(**params: Any) -> None:
    if params.get("measure", "cot") not in ("cot", "completion"):
        raise ValueError("measure must be 'cot' or 'completion'")
    rho = params.get("rho", 0.5)
    if not isinstance(rho, int | float) or not 0 <= rho < 1:
        raise ValueError(f"rho: expected an EMA factor in [0, 1), got {rho!r}")
    d = params.get("default_effort", 1.0)
    if not isinstance(d, int | float) or not d > 0:
        raise ValueError(f"default_effort: expected a positive fraction, got {d!r}")
    if params.get("length_unit", "tokens") not in ("tokens", "chars"):
        raise ValueError("length_unit must be 'tokens' or 'chars'")


effort_reward.__rlvr_validate__ = _validate_effort  # type: ignore[attr-defined]
effort_reward.__rlvr_warmup__ = warmup  # type: ignore[attr-defined]


def add_effort(
    example: Mapping[str, Any],
    effort: float,
    *,
    template: str = DEFAULT_EFFORT_TEMPLATE,
    prompt_field: str = "prompt",
    effort_field: str = "effort",
) -> dict[str, Any]:
    """Copy of ``example`` with ``effort`` stored and the effort text appended to the prompt.

    A string prompt gets ``template.format(effort=effort)`` appended; a chat prompt (list of
    ``{"role", "content"}``) gets it appended to its last user message.
    """
    if not 0 < effort <= 1:
        raise ValueError(f"effort must be in (0, 1], got {effort!r}")
    out = dict(example)
    suffix = template.format(effort=effort)
    prompt = out.get(prompt_field)
    if isinstance(prompt, str):
        out[prompt_field] = prompt + suffix
    elif isinstance(prompt, list):
        msgs = [dict(m) for m in prompt]
        for m in reversed(msgs):
            if m.get("role") == "user":
                m["content"] = str(m.get("content", "")) + suffix
                break
        else:
            raise ValueError("chat prompt has no user message to carry the effort")
        out[prompt_field] = msgs
    else:
        raise ValueError(f"example[{prompt_field!r}] must be a string or a list of messages")
    out[effort_field] = float(effort)
    return out
