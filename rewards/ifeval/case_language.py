"""IFEval language, change-case and punctuation checks (google-research ``instructions.py``).

* ``language:response_language``: ``langdetect`` finds the given ISO 639-1 language; when it
  cannot decide, the instruction counts as followed (as in the reference).
* ``change_case:capital_word_frequency``: tokens (``nltk.word_tokenize``) that are all upper
  case number ``< N`` ("less than") or ``>= N`` ("at least").
* ``change_case:english_capital``: ``str.isupper()`` and detected as English.
* ``change_case:english_lowercase``: ``str.islower()`` and detected as English.
* ``punctuation:no_comma``: no ``,`` at all.
"""

from __future__ import annotations

from rewards.ifeval._core import INT, RELATION, STR, Constraint
from rewards.ifeval.keywords import compare
from rewards.ifeval.text_utils import detect_language, word_tokenize


def response_language(value: str, *, language: str) -> bool:
    detected = detect_language(value)
    return True if detected is None else detected == language


def capital_word_frequency(value: str, *, capital_frequency: int, capital_relation: str) -> bool:
    capitals = sum(1 for word in word_tokenize(value) if word.isupper())
    return compare(capitals, capital_relation, capital_frequency)


def english_capital(value: str) -> bool:
    if not value.isupper():
        return False
    detected = detect_language(value)
    return True if detected is None else detected == "en"


def english_lowercase(value: str) -> bool:
    if not value.islower():
        return False
    detected = detect_language(value)
    return True if detected is None else detected == "en"


def no_comma(value: str) -> bool:
    return "," not in value


CONSTRAINTS = [
    Constraint("language:response_language", response_language, {"language": STR}),
    Constraint(
        "change_case:capital_word_frequency",
        capital_word_frequency,
        {"capital_frequency": INT, "capital_relation": RELATION},
    ),
    Constraint("change_case:english_capital", english_capital),
    Constraint("change_case:english_lowercase", english_lowercase),
    Constraint("punctuation:no_comma", no_comma),
]
