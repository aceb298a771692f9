"""IFEval ``length_constraints:*`` checks (google-research ``instructions.py``).

* ``number_sentences``: Punkt sentence count ``< N`` ("less than") or ``>= N`` ("at least").
* ``number_paragraphs``: the response split on ``\\s?***\\s?`` has exactly N paragraphs; empty
  pieces are allowed only first or last (then not counted), an empty inner piece fails.
* ``number_words``: ``\\w+`` token count ``< N`` / ``>= N``.
* ``nth_paragraph_first_word``: split on ``\\n\\n``; the number of non-empty pieces equals
  ``num_paragraphs`` and the ``nth_paragraph``-th piece (1-based, counted over all pieces)
  starts with ``first_word`` (case-insensitive; leading quotes dropped and the word cut at the
  first of ``. , ? ! ' "``).
"""

from __future__ import annotations

import re

from rewards.ifeval._core import INT, RELATION, STR, Constraint
from rewards.ifeval.keywords import compare
from rewards.ifeval.text_utils import count_words, punkt_sentences

_PARA_SPLIT = re.compile(r"\s?\*\*\*\s?")


def number_sentences(value: str, *, num_sentences: int, relation: str) -> bool:
    return compare(len(punkt_sentences(value)), relation, num_sentences)


def divider_paragraph_count(value: str) -> int | None:
    """Paragraphs separated by ``***``; None when an inner paragraph is empty."""
    paragraphs = _PARA_SPLIT.split(value)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index == 0 or index == len(paragraphs) - 1:
                count -= 1
            else:
                return None
    return count


def number_paragraphs(value: str, *, num_paragraphs: int) -> bool:
    return divider_paragraph_count(value) == num_paragraphs


def number_words(value: str, *, num_words: int, relation: str) -> bool:
    return compare(count_words(value), relation, num_words)


def nth_paragraph_first_word(
    value: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    paragraphs = value.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    if not 1 <= nth_paragraph <= count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    found = ""
    for letter in word:
        if letter in ".,?!'\"":
            break
        found += letter.lower()
    return count == num_paragraphs and found == first_word.lower()


def _nth_in_range(kw: dict) -> str | None:
    n, total = kw.get("nth_paragraph", 0), kw.get("num_paragraphs", 0)
    if 0 < n <= total:
        return None
    return f"need 0 < nth_paragraph <= num_paragraphs, got {n!r} and {total!r}"


CONSTRAINTS = [
    Constraint(
        "length_constraints:number_sentences",
        number_sentences,
        {"num_sentences": INT, "relation": RELATION},
    ),
    Constraint("length_constraints:number_paragraphs", number_paragraphs, {"num_paragraphs": INT}),
    Constraint(
        "length_constraints:number_words",
        number_words,
        {"num_words": INT, "relation": RELATION},
    ),
    Constraint(
        "length_constraints:nth_paragraph_first_word",
        nth_paragraph_first_word,
        {"num_paragraphs": INT, "nth_paragraph": INT, "first_word": STR},
        validate=_nth_in_range,
    ),
]
