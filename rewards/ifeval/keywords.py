"""IFEval ``keywords:*`` checks (google-research ``instruction_following_eval/instructions.py``).

* ``keywords:existence``: every keyword occurs (case-insensitive regex search).
* ``keywords:frequency``: the keyword occurs ``< frequency`` ("less than") or ``>= frequency``
  ("at least") times (case-insensitive, overlapping substrings not counted, as ``re.findall``).
* ``keywords:forbidden_words``: no forbidden word occurs as a whole word (case-insensitive).
* ``keywords:letter_frequency``: the letter (case-folded) occurs ``< N`` / ``>= N`` times.

As in the reference, keywords are used as regular expressions; a keyword that is not a valid
pattern is matched literally instead of failing.
"""

from __future__ import annotations

import re
from collections import Counter

from rewards.ifeval._core import INT, RELATION, STR, STR_LIST, Constraint


def compile_keyword(pattern: str, prefix: str = "", suffix: str = "") -> re.Pattern[str]:
    """Compile ``prefix + pattern + suffix`` case-insensitively; escape it if invalid."""
    try:
        return re.compile(prefix + pattern + suffix, re.IGNORECASE)
    except re.error:
        return re.compile(prefix + re.escape(pattern) + suffix, re.IGNORECASE)


def compare(count: int, relation: str, threshold: int) -> bool:
    """IFEval comparison: "less than" is ``<``, "at least" is ``>=``."""
    return count < threshold if relation == "less than" else count >= threshold


def existence(value: str, *, keywords: list[str]) -> bool:
    return all(compile_keyword(k).search(value) for k in sorted(keywords))


def frequency(value: str, *, keyword: str, frequency: int, relation: str) -> bool:
    return compare(len(compile_keyword(keyword.strip()).findall(value)), relation, frequency)


def forbidden_words(value: str, *, forbidden_words: list[str]) -> bool:
    return not any(
        compile_keyword(w, r"\b", r"\b").search(value) for w in sorted(set(forbidden_words))
    )


def letter_frequency(value: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    letter = letter.strip().lower()
    return compare(Counter(value.lower())[letter], let_relation, let_frequency)


def single_letter(kw: dict) -> str | None:
    """Validation hook: ``letter`` must be exactly one character."""
    letter = kw.get("letter", "")
    return None if len(letter) == 1 else f"kwarg 'letter' must be one character, got {letter!r}"


CONSTRAINTS = [
    Constraint("keywords:existence", existence, {"keywords": STR_LIST}),
    Constraint(
        "keywords:frequency",
        frequency,
        {"keyword": STR, "frequency": INT, "relation": RELATION},
    ),
    Constraint("keywords:forbidden_words", forbidden_words, {"forbidden_words": STR_LIST}),
    Constraint(
        "keywords:letter_frequency",
        letter_frequency,
        {"letter": STR, "let_frequency": INT, "let_relation": RELATION},
        validate=single_letter,
    ),
]
