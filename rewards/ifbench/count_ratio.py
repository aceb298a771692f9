"""IFBench ``count:*`` and ``ratio:*`` test constraints (allenai/IFBench ``instructions.py``).

* ``count:word_count_range``: ``min_words <= #\\w+ tokens <= max_words``.
* ``count:unique_word_count``: at least N distinct lowercase whitespace words, each stripped of
  ASCII punctuation (an all-punctuation word counts as the empty word).
* ``count:conjunctions``: at least ``small_n`` distinct raw words (as written, e.g. "And" and
  "and," differ, as in the reference) whose stripped lowercase form is a coordinating
  conjunction (and, but, for, nor, or, so, yet).
* ``count:person_names``: at least N names of a fixed list of 50 occur as whole words.
* ``count:numbers``: after deleting ASCII punctuation, exactly N digit runs.
* ``count:punctuation``: contains ``?!``, ``!?`` or ``‽`` and, after removing one ``?!`` (else
  one ``!?``), each of ``. , ! ? ; :``.
* ``count:words_japanese``: every N-th whitespace word (punctuation-stripped, non-empty, not
  all digits) contains Hiragana, Katakana or CJK ideographs.
* ``count:pronouns``: at least N tokens (``nltk.word_tokenize`` of the lowercased text with
  ``/`` read as a space) are pronouns from the reference list.
* ``count:keywords_multiple``: case-insensitive whole-word counts of keyword1..5 are exactly
  1, 2, 3, 5, 7.
* ``ratio:stop_words``: stop words are at most ``percentage`` % of ``\\w+`` tokens.
* ``ratio:sentence_type``: #sentences ending "." == 2 x #sentences ending "?" (Punkt).
* ``ratio:sentence_balance``: #"." == #"?" == #"!" sentence endings.
* ``ratio:overlap``: with T() the set of word trigrams of ``nltk.word_tokenize`` tokens,
  ``|100 |T(r) & T(ref)| / |T(r)| - p| <= 2`` (the db69a6f package version used character
  trigrams; the current IFBench code, which the test data follows, uses words).
* ``ratio:sentence_words``: exactly 3 Punkt sentences, all of the same stripped length, and no
  word (lowercased, punctuation deleted) used twice.
"""

from __future__ import annotations

import re

from rewards.ifeval._core import INT, STR, Constraint
from rewards.ifeval.text_utils import (
    PUNCT_SPACE,
    count_stopwords,
    count_words,
    punkt_sentences,
    remove_punctuation,
    word_tokenize,
)


def word_count_range(value: str, *, min_words: int, max_words: int) -> bool:
    return min_words <= count_words(value) <= max_words


def unique_word_count(value: str, *, N: int) -> bool:  # noqa: N803 (dataset kwarg name)
    return len({w.strip(PUNCT_SPACE) for w in value.lower().split()}) >= N


CONJUNCTIONS = ("and", "but", "for", "nor", "or", "so", "yet")


def conjunctions(value: str, *, small_n: int) -> bool:
    found = {w for w in value.split() if w.strip(PUNCT_SPACE).lower() in CONJUNCTIONS}
    return len(found) >= small_n


PERSON_NAMES = (
    "Emma Liam Sophia Jackson Olivia Noah Ava Lucas Isabella Mason Mia Ethan Charlotte "
    "Alexander Amelia Benjamin Harper Leo Zoe Daniel Chloe Samuel Lily Matthew Grace Owen "
    "Abigail Gabriel Ella Jacob Scarlett Nathan Victoria Elijah Layla Nicholas Audrey David "
    "Hannah Christopher Penelope Thomas Nora Andrew Aria Joseph Claire Ryan Stella Jonathan"
).split()
_NAME_RES = [re.compile(r"\b" + re.escape(name) + r"\b") for name in PERSON_NAMES]


def person_names(value: str, *, N: int) -> bool:  # noqa: N803
    return sum(1 for pattern in _NAME_RES if pattern.search(value)) >= N


_DIGITS = re.compile(r"\d+")


def numbers(value: str, *, N: int) -> bool:  # noqa: N803
    return len(_DIGITS.findall(remove_punctuation(value))) == N


def punctuation(value: str) -> bool:
    if not ("!?" in value or "?!" in value or "\u203d" in value):
        return False
    rest = value.replace("?!", "", 1)
    if len(rest) == len(value):
        rest = value.replace("!?", "", 1)
    return set(".,!?;:") <= set(rest)


_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def words_japanese(value: str, *, N: int) -> bool:  # noqa: N803
    for i, word in enumerate(value.split()):
        word = word.strip(PUNCT_SPACE)
        if (i + 1) % N == 0 and word and not word.isdigit() and not _JAPANESE.search(word):
            return False
    return True


PRONOUNS = frozenset(
    """i me we us you he him she her it they them my mine our ours your yours his hers its
    their theirs myself ourselves yourself yourselves himself herself itself themselves this
    that these those who whom whose which what whoever whomever whatever whichever anybody
    anyone anything everybody everyone everything nobody nothing somebody someone something
    each either neither both all some any none""".split()
)


def pronouns(value: str, *, N: int) -> bool:  # noqa: N803
    tokens = word_tokenize(value.replace("/", " ").lower())
    return sum(1 for t in tokens if t in PRONOUNS) >= N


def keywords_multiple(
    value: str, *, keyword1: str, keyword2: str, keyword3: str, keyword4: str, keyword5: str
) -> bool:
    pairs = zip((keyword1, keyword2, keyword3, keyword4, keyword5), (1, 2, 3, 5, 7), strict=True)
    for keyword, times in pairs:
        pattern = re.compile(r"\b" + re.escape(keyword.strip()) + r"\b", re.IGNORECASE)
        if len(pattern.findall(value)) != times:
            return False
    return True


def stop_words(value: str, *, percentage: int) -> bool:
    total = count_words(value)
    if total == 0:
        return False
    return count_stopwords(value) / total * 100 <= percentage


def _endings(value: str) -> tuple[int, int, int]:
    sentences = punkt_sentences(value)
    return (
        sum(1 for s in sentences if s.endswith(".")),
        sum(1 for s in sentences if s.endswith("?")),
        sum(1 for s in sentences if s.endswith("!")),
    )


def sentence_type(value: str) -> bool:
    declarative, interrogative, _ = _endings(value)
    return declarative == 2 * interrogative


def sentence_balance(value: str) -> bool:
    declarative, interrogative, exclamatory = _endings(value)
    return declarative == interrogative == exclamatory


def word_trigrams(text: str) -> set[tuple[str, ...]]:
    """Distinct trigrams of ``nltk.word_tokenize`` tokens."""
    tokens = word_tokenize(text)
    return {tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)}


def overlap(value: str, *, reference_text: str, percentage: int) -> bool:
    grams = word_trigrams(value)
    if not grams:
        return False
    share = len(grams & word_trigrams(reference_text)) / len(grams)
    return percentage - 2 <= share * 100 <= percentage + 2


def sentence_words(value: str) -> bool:
    sentences = punkt_sentences(value)
    if len(sentences) != 3:
        return False
    if len({len(s.strip()) for s in sentences}) != 1:
        return False
    words = remove_punctuation(" ".join(sentences).lower()).split()
    return len(words) == len(set(words))


CONSTRAINTS = [
    Constraint("count:word_count_range", word_count_range, {"min_words": INT, "max_words": INT}),
    Constraint("count:unique_word_count", unique_word_count, {"N": INT}),
    Constraint("count:conjunctions", conjunctions, {"small_n": INT}),
    Constraint("count:person_names", person_names, {"N": INT}),
    Constraint("count:numbers", numbers, {"N": INT}),
    Constraint("count:punctuation", punctuation),
    Constraint(
        "count:words_japanese",
        words_japanese,
        {"N": INT},
        validate=lambda kw: None if kw.get("N", 0) >= 1 else "N must be >= 1",
    ),
    Constraint("count:pronouns", pronouns, {"N": INT}),
    Constraint(
        "count:keywords_multiple",
        keywords_multiple,
        {f"keyword{i}": STR for i in range(1, 6)},
    ),
    Constraint("ratio:stop_words", stop_words, {"percentage": INT}),
    Constraint("ratio:sentence_type", sentence_type),
    Constraint("ratio:sentence_balance", sentence_balance),
    Constraint("ratio:overlap", overlap, {"reference_text": STR, "percentage": INT}),
    Constraint("ratio:sentence_words", sentence_words),
]
