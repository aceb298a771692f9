"""Format reward: ``<think>...</think>`` structure, a single final answer, nothing after it.

    format(c) = 1.0 if all checks pass else 0.0      (partial=True: fraction of checks passed)

Checks (the answer checks only with ``require_answer=True``):

1. think structure: ``c`` starts (after whitespace) with exactly one ``<think>`` and contains
   exactly one ``</think>`` after it (TRL ``think_format_reward``:
   ``^<think>(?!.*<think>)(.*?)</think>.*$``). With ``think_prefilled=True`` (chat templates of
   R1-distill / Qwen3 put ``<think>`` in the prompt) the completion must contain no ``<think>``
   and exactly one ``</think>`` (LC-R1's ``count('</think>') == 1``).
2. single final answer after ``</think>``: exactly one ``<answer>...</answer>`` block (holding
   at most one ``\\boxed{}``, no box outside it), or, without answer tags, exactly one
   complete ``\\boxed{...}`` / ``\\fbox{...}``.
3. nothing after the answer but whitespace and closing punctuation (``.``, ``$``, ``\\]``,
   ``\\)``, ``**``).

Sources: TRL ``trl/rewards/format_rewards.py``, open-r1 ``format_reward`` / ``tag_count_reward``
and LC-R1 ``format_reward``; our code.
"""

from __future__ import annotations

import re

from rewards.base import register_reward

__all__ = ["format_reward", "format_checks"]

_TRAILING_OK = re.compile(r"(?:\s|[.!$]|\\\]|\\\)|\*\*)*")
_BOX = re.compile(r"\\(?:boxed|fbox)\b")


def _box_spans(text: str) -> list[tuple[int, int]] | None:
    """(start, end) of every ``\\boxed{...}`` / ``\\fbox{...}``; None if one is unbalanced."""
    spans = []
    for m in _BOX.finditer(text):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j >= len(text) or text[j] != "{":
            return None
        depth = 0
        for k in range(j, len(text)):
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    spans.append((m.start(), k + 1))
                    break
        else:
            return None
    return spans


def format_checks(
    completion: str, *, think_prefilled: bool = False, require_answer: bool = True
) -> dict[str, bool]:
    """The individual checks of :func:`format_reward` (names: think, single_answer, no_trailing)."""
    text = completion if isinstance(completion, str) else str(completion)
    n_open, n_close = text.count("<think>"), text.count("</think>")
    if think_prefilled:
        think_ok = n_open == 0 and n_close == 1
    else:
        think_ok = (
            text.lstrip().startswith("<think>")
            and n_open == 1
            and n_close == 1
            and text.find("<think>") < text.find("</think>")
        )
    checks = {"think": think_ok}
    if not require_answer:
        return checks
    close = text.rfind("</think>")
    after = text[close + len("</think>") :] if close >= 0 else ""
    single, end = False, -1
    if close >= 0:
        n_tag_open, n_tag_close = after.count("<answer>"), after.count("</answer>")
        boxes = _box_spans(after)
        if n_tag_open == 1 and n_tag_close == 1:
            a, b = after.find("<answer>"), after.find("</answer>")
            inside = boxes is not None and all(a < s and e <= b for s, e in boxes)
            single = a < b and inside and boxes is not None and len(boxes) <= 1
            single = single and bool(after[a + len("<answer>") : b].strip())
            end = b + len("</answer>")
        elif n_tag_open == 0 and n_tag_close == 0 and boxes is not None and len(boxes) == 1:
            single = True
            end = boxes[0][1]
    checks["single_answer"] = single
    checks["no_trailing"] = single and _TRAILING_OK.fullmatch(after[end:]) is not None
    return checks


@register_reward("format")
def format_reward(
    completion: str,
    example: dict,
    *,
    think_prefilled: bool = False,
    require_answer: bool = True,
    partial: bool = False,
) -> float:
    """Registry "format": 1.0 if every format check passes (``partial``: fraction passed)."""
    checks = format_checks(
        completion, think_prefilled=think_prefilled, require_answer=require_answer
    )
    if partial:
        return sum(checks.values()) / len(checks)
    return float(all(checks.values()))
