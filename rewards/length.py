"""Length and compression rewards (lengths in completion tokens unless ``length_unit="chars"``).

Add these to a correctness reward (e.g. ``math``) in the recipe; each returns only its own term.

``overlong`` — DAPO soft overlong punishment (DAPO, arXiv 2503.14476, Eq. 13; TRL / open-r1
``get_soft_overlong_punishment``)::

    R(L) = 0                              if L <= L_max - L_cache
         = ((L_max - L_cache) - L)/L_cache if L_max - L_cache < L <= L_max
         = -1                             if L > L_max

  (``penalize_truncated=True`` also gives -1 to any ``finish_reason == "length"`` sample.)
  DAPO's overlong *filtering* (masking truncated samples out of the loss) is a loss mask, not a
  reward: :func:`truncation_mask` returns it for the trainer.

``length_penalty`` — Kimi k1.5 (arXiv 2501.12599 §2.3; open-r1 ``len_reward``), per group::

    lambda_i = 0.5 - (L_i - min_j L_j) / (max_j L_j - min_j L_j)      (all 0 if max == min)
    r_i = lambda_i if correct_i else min(0, lambda_i)

``compression`` — mastery-gated, sample-level soft compression ("Reinforcement Learning for
Chain of Thought Compression with One-Domain-to-All Generalization", arXiv 2601.06052). The
paper's equation was not available; this follows every stated property with toolkit constants
(``delta`` and ``lam`` are provisional: rlvr's choice, not the paper's)::

    mastered = pass rate of the group >= mastery (default 1.0: every rollout correct)
    L_ref    = min_{i correct} L_i;  tol = delta * L_ref
    r_i      = -lam * min(1, (L_i - L_ref - tol) / L_ref)  if mastered, correct_i, L_i > L_ref+tol
             = 0                                             otherwise

``lc_r1`` — LC-R1 (arXiv 2506.14755; code zxiangx/LC-R1 ``grpo_trainer.py``), per group, returns
``{"length": len_coef * r_len, "compress": cmp_coef * r_cmp}``::

    correct_i = accuracy_i and completion has exactly one "</think>"   (LC-R1's r_base == 2)
    V_i       = valid thinking prefix: thinking up to the end of the first sentence that states
                the reference answer; T_i = thinking length
    L'_i      = L_i - (T_i - V_i) for correct rollouts with a valid prefix, else L_i  (cropped)
    r_len_i   = 1 - L'_i / max_{j correct} L'_j if any rollout is correct else 0  (all members)
    r_cmp_i   = 1 - V_i / T_i if correct and V_i > 0;  -1 if correct and V_i = 0;  0 if wrong

  Deviations (documented): LC-R1 finds V_i with a frozen extractor LLM; here a rule finds the
  first occurrence of the reference answer in the thinking (a ``\\boxed{}`` that verifies, or
  the answer text on word boundaries, skipping operand mentions). LC-R1 adds r_cmp to the
  advantage at the ``</think>`` token, after group-centring, and trains on the cropped
  sequence: that is the ``lc_r1`` batch filter (rlvr/algos/lc_r1.py; recipe
  ``algo.filters: [{name: lc_r1}]`` with this reward's ``cmp_coef: 0``). Without the filter
  r_cmp is part of the sequence reward (rlvr's earlier reading: centred with the rest and
  spread over every token). V/T are measured in characters and turned into tokens in
  proportion to the completion's characters.

Correctness for the group rewards comes from the per-sample component ``correct_key``
(default ``"math"``, correct when > ``correct_threshold``) when the recipe has it, else from
:func:`rewards.math.math_reward` against ``example[answer_field]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rewards.base import register_reward
from rewards.math import balanced_group, math_reward, normalize_answer, warmup

__all__ = [
    "overlong_reward",
    "kimi_length_penalty",
    "compression_reward",
    "lc_r1_reward",
    "truncation_mask",
    "valid_thinking_prefix",
    "group_correctness",
    "group_lengths",
]


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def group_lengths(
    completions: Sequence[str], num_tokens: Sequence[int] | None, length_unit: str = "tokens"
) -> list[float]:
    """Lengths of a group's completions in tokens (``num_tokens``) or characters."""
    if length_unit == "chars":
        return [float(len(c)) for c in completions]
    if length_unit != "tokens":
        raise ValueError(f"length_unit must be 'tokens' or 'chars', got {length_unit!r}")
    if num_tokens is None or any(n is None for n in num_tokens):
        raise ValueError("this reward needs num_tokens (or set length_unit='chars')")
    return [float(n) for n in num_tokens]


def group_correctness(
    completions: Sequence[str],
    example: Mapping[str, Any],
    components: Mapping[str, Sequence[float]] | None,
    correct_key: str = "math",
    correct_threshold: float = 0.5,
    answer_field: str = "answer",
) -> list[bool]:
    """Correct flags of a group: from ``components[correct_key]`` if present, else math_reward."""
    if components and correct_key in components:
        return [float(v) > correct_threshold for v in components[correct_key]]
    if answer_field not in example:
        raise KeyError(
            f"no {correct_key!r} component in the recipe and example has no {answer_field!r}"
        )
    answer = str(example[answer_field])
    return [math_reward(c, answer) > correct_threshold for c in completions]


def _validate_unit(length_unit: str) -> None:
    if length_unit not in ("tokens", "chars"):
        raise ValueError(f"length_unit must be 'tokens' or 'chars', got {length_unit!r}")


# ---------------------------------------------------------------------------------------------
# DAPO overlong
# ---------------------------------------------------------------------------------------------


def overlong_penalty(length: float, max_len: float, cache_len: float) -> float:
    """DAPO Eq. 13 soft overlong punishment of one length."""
    start = max_len - cache_len
    if length <= start:
        return 0.0
    if length <= max_len:
        return (start - length) / cache_len
    return -1.0


@register_reward("overlong")
def overlong_reward(
    completion: str,
    example: dict,
    *,
    num_tokens: int | None = None,
    finish_reason: str | None = None,
    max_len: int,
    cache_len: int,
    penalize_truncated: bool = False,
) -> float:
    """Registry "overlong": DAPO soft overlong punishment on the completion's token count."""
    if num_tokens is None:
        raise ValueError("overlong needs num_tokens")
    if penalize_truncated and finish_reason == "length":
        return -1.0
    return overlong_penalty(float(num_tokens), float(max_len), float(cache_len))


def _validate_overlong(
    *, max_len: Any = None, cache_len: Any = None, penalize_truncated: Any = False
) -> None:
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len <= 0:
        raise ValueError(f"max_len: expected a positive int (L_max, tokens), got {max_len!r}")
    if (
        not isinstance(cache_len, int)
        or isinstance(cache_len, bool)
        or not 0 < cache_len <= max_len
    ):
        raise ValueError(
            f"cache_len: expected an int in (0, max_len={max_len}] (L_cache), got {cache_len!r}"
        )


overlong_reward.__rlvr_validate__ = _validate_overlong  # type: ignore[attr-defined]


def truncation_mask(finish_reasons: Sequence[Sequence[str]]) -> list[list[float]]:
    """DAPO overlong filtering: 0.0 for truncated samples (``"length"``), 1.0 otherwise."""
    return [[0.0 if r == "length" else 1.0 for r in row] for row in finish_reasons]


# ---------------------------------------------------------------------------------------------
# Kimi k1.5 length penalty
# ---------------------------------------------------------------------------------------------


def kimi_penalty(lengths: Sequence[float], correct: Sequence[bool]) -> list[float]:
    """Kimi k1.5: lambda_i = 0.5 - (L_i - min) / (max - min); wrong answers get min(0, lambda)."""
    if not lengths:
        return []
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    out = []
    for length, ok in zip(lengths, correct, strict=True):
        lam = 0.5 - (length - lo) / (hi - lo)
        out.append(lam if ok else min(0.0, lam))
    return out


@register_reward("length_penalty", group=True)
def kimi_length_penalty(
    completions: list[str],
    example: dict,
    *,
    num_tokens: list[int] | None = None,
    components: dict[str, list[float]] | None = None,
    correct_key: str = "math",
    correct_threshold: float = 0.5,
    answer_field: str = "answer",
    length_unit: str = "tokens",
) -> list[float]:
    """Registry "length_penalty": the Kimi k1.5 length reward of each completion of a group."""
    lengths = group_lengths(completions, num_tokens, length_unit)
    correct = group_correctness(
        completions, example, components, correct_key, correct_threshold, answer_field
    )
    return kimi_penalty(lengths, correct)


def _validate_group_common(**params: Any) -> None:
    _validate_unit(params.get("length_unit", "tokens"))


kimi_length_penalty.__rlvr_validate__ = _validate_group_common  # type: ignore[attr-defined]
kimi_length_penalty.__rlvr_warmup__ = warmup  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# sample-level soft compression (mastery-gated)
# ---------------------------------------------------------------------------------------------


def compression_penalty(
    lengths: Sequence[float],
    correct: Sequence[bool],
    *,
    delta: float = 0.1,
    lam: float = 0.5,
    mastery: float = 1.0,
) -> list[float]:
    """Soft length penalty on mastered groups relative to the shortest correct rollout."""
    n = len(lengths)
    if n == 0:
        return []
    if sum(correct) / n < mastery or not any(correct):
        return [0.0] * n
    ref = min(length for length, ok in zip(lengths, correct, strict=True) if ok)
    ref = max(ref, 1.0)
    tol = delta * ref
    out = []
    for length, ok in zip(lengths, correct, strict=True):
        if ok and length > ref + tol:
            out.append(-lam * min(1.0, (length - ref - tol) / ref))
        else:
            out.append(0.0)
    return out


@register_reward("compression", group=True)
def compression_reward(
    completions: list[str],
    example: dict,
    *,
    num_tokens: list[int] | None = None,
    components: dict[str, list[float]] | None = None,
    delta: float = 0.1,
    lam: float = 0.5,
    mastery: float = 1.0,
    correct_key: str = "math",
    correct_threshold: float = 0.5,
    answer_field: str = "answer",
    length_unit: str = "tokens",
) -> list[float]:
    """Registry "compression": mastery-gated sample-level soft length penalty (<= 0)."""
    lengths = group_lengths(completions, num_tokens, length_unit)
    correct = group_correctness(
        completions, example, components, correct_key, correct_threshold, answer_field
    )
    return compression_penalty(lengths, correct, delta=delta, lam=lam, mastery=mastery)


def _validate_compression(**params: Any) -> None:
    _validate_unit(params.get("length_unit", "tokens"))
    for name, lo, hi in (("delta", 0.0, float("inf")), ("lam", 0.0, float("inf"))):
        v = params.get(name, 0.1)
        if not isinstance(v, int | float) or not lo <= v < hi:
            raise ValueError(f"{name}: expected a number >= 0, got {v!r}")
    m = params.get("mastery", 1.0)
    if not isinstance(m, int | float) or not 0 < m <= 1:
        raise ValueError(f"mastery: expected a pass rate in (0, 1], got {m!r}")


compression_reward.__rlvr_validate__ = _validate_compression  # type: ignore[attr-defined]
compression_reward.__rlvr_warmup__ = warmup  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# LC-R1
# ---------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


_OPERATORS = "+-*/^<>(=\u00d7\u00b7"


def _states_result(text: str, start: int, end: int) -> bool:
    """Whether the mention ``text[start:end]`` states a result rather than being an operand of
    an expression: it may follow ``=`` (or words) but not another operator, and it may not be
    followed by an operator or ``=`` (then it is an input of the expression, e.g. the ``1`` of
    ``x+1=2`` or the ``2`` of ``2+2=4``)."""
    before = text[:start].rstrip()
    after = text[end:].lstrip()
    if before and before[-1] in _OPERATORS and before[-1] != "=":
        return False
    return not (after and after[0] in _OPERATORS)


def _first_answer_position(think: str, answer: str, max_boxes: int = 20) -> int | None:
    """End index of the first mention of ``answer`` in ``think`` (a verifying box or the text)."""
    best: int | None = None
    ans = answer.strip()
    candidates = {ans, normalize_answer(ans)}
    for text in candidates:
        if not text:
            continue
        pat = r"(?<![\w.\-])" + re.escape(text) + r"(?!\w|\.\d|/\d)"
        for m in re.finditer(pat, think):
            if not _states_result(think, m.start(), m.end()):
                continue  # an operand ("x+1=2" for answer 1), not the answer derived
            if best is None or m.end() < best:
                best = m.end()
            break
    for i, m in enumerate(re.finditer(r"\\(?:boxed|fbox)\s*\{", think)):
        if i >= max_boxes or (best is not None and m.start() >= best):
            break
        j = m.end() - 1
        inner = balanced_group(think, j, 2000)
        if inner is not None and math_reward("\\boxed{" + inner + "}", answer) > 0.5:
            end = j + len(inner) + 2
            if best is None or end < best:
                best = end
            break
    return best


def valid_thinking_prefix(completion: str, answer: str) -> int | None:
    """Character length of the valid thinking prefix (LC-R1's V), or None if not derived.

    The thinking is the text before the first ``</think>`` (after a leading ``<think>``); the
    prefix runs to the end of the first sentence that states the reference ``answer`` as a
    result: a mention that is an operand of an expression (preceded by an operator other than
    ``=``, or followed by an operator or ``=``) is skipped, so the answer ``1`` is not "found"
    in ``x+1=2`` before it is derived; a verifying ``\boxed{}`` always counts.
    """
    close = completion.find("</think>")
    if close < 0:
        return None
    start = completion.find("<think>", 0, close)
    begin = start + len("<think>") if start >= 0 else 0
    think = completion[begin:close]
    pos = _first_answer_position(think, answer)
    if pos is None:
        return None
    m = _SENTENCE_END.search(think, pos)
    end = m.end() if m else len(think)
    return end


def lc_r1_scores(
    completions: Sequence[str],
    lengths: Sequence[float],
    correct: Sequence[bool],
    answer: str,
    *,
    len_coef: float = 1.0,
    cmp_coef: float = 1.0,
) -> list[dict[str, float]]:
    """LC-R1 length and compress rewards of a group (see module docstring)."""
    cropped: list[float] = []
    r_cmp: list[float] = []
    for comp, length, ok in zip(completions, lengths, correct, strict=True):
        if not ok:
            cropped.append(length)
            r_cmp.append(0.0)
            continue
        close = comp.find("</think>")
        start = comp.find("<think>", 0, close)
        begin = start + len("<think>") if start >= 0 else 0
        think_chars = max(0, close - begin)
        valid = valid_thinking_prefix(comp, answer)
        if valid is None or valid <= 0 or think_chars == 0:
            cropped.append(length)
            r_cmp.append(-1.0)
            continue
        removed_frac = (think_chars - valid) / max(1, len(comp))
        cropped.append(length * (1.0 - removed_frac))
        r_cmp.append(1.0 - valid / think_chars)
    correct_lengths = [c for c, ok in zip(cropped, correct, strict=True) if ok]
    if correct_lengths and max(correct_lengths) > 0:
        top = max(correct_lengths)
        r_len = [1.0 - c / top for c in cropped]
    else:
        r_len = [0.0] * len(cropped)
    return [
        {"length": len_coef * a, "compress": cmp_coef * b}
        for a, b in zip(r_len, r_cmp, strict=True)
    ]


@register_reward("lc_r1", group=True)
def lc_r1_reward(
    completions: list[str],
    example: dict,
    *,
    num_tokens: list[int] | None = None,
    components: dict[str, list[float]] | None = None,
    len_coef: float = 1.0,
    cmp_coef: float = 1.0,
    correct_key: str = "math",
    correct_threshold: float = 0.5,
    answer_field: str = "answer",
    length_unit: str = "tokens",
) -> list[dict[str, float]]:
    """Registry "lc_r1": LC-R1 length reward + compress reward (dict entries)."""
    lengths = group_lengths(completions, num_tokens, length_unit)
    acc = group_correctness(
        completions, example, components, correct_key, correct_threshold, answer_field
    )
    correct = [ok and c.count("</think>") == 1 for ok, c in zip(acc, completions, strict=True)]
    answer = str(example.get(answer_field, ""))
    return lc_r1_scores(completions, lengths, correct, answer, len_coef=len_coef, cmp_coef=cmp_coef)


lc_r1_reward.__rlvr_validate__ = _validate_group_common  # type: ignore[attr-defined]
lc_r1_reward.__rlvr_warmup__ = warmup  # type: ignore[attr-defined]
