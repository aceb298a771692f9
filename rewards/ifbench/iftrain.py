"""The 29 IFTrain training constraints (open-instruct ``open_instruct/IFEvalG/instructions.py``).

Sentences here come from the IFEval rule-based splitter and tokens from ``nltk.word_tokenize``,
as in open-instruct's ``instructions_util``. Keywords are regular expressions (as in the
reference), matched literally when invalid.

* ``copy:repeat_phrase``: exactly ``small_n`` lazy matches of "<first word> .*? <last word>";
  each has the phrase's word count and differs in at most one word, and the last differs in
  exactly one.
* ``copy:copy`` / ``copy:copying_simple``: the response is the request (stripped, any case).
* ``copy:copying_multiple``: ``N`` copies of the request separated by ``******``.
* ``new:copy_span_idx``: equals ``prompt_to_repeat[n_start:n_end]`` (end exclusive here,
  unlike IFBench's ``repeat:repeat_span``), stripped, any case.
* ``detectable_format:sentence_hyphens``: the pieces between ``-`` are unpadded and equal the
  sentences of the text with ``-`` read as a space.
* ``keywords:no_adjacent_consecutive``: no two adjacent words start with consecutive letters.
* ``detectable_format:square_brackets``: every word starts with ``[`` and ends with ``]``.
* ``keywords:word_once``: the keyword occurs exactly once (case-insensitive).
* ``keywords:word_count_different_numbers``: keyword count ``< frequency`` / ``>= frequency``.
* ``keywords:exclude_word_harder``: `` keyword `` (space-padded) does not occur.
* ``paragraphs:paragraphs``: exactly 2 paragraphs separated by ``***``.
* ``paragraphs:paragraphs2``: exactly 2 paragraphs separated by a blank line.
* ``first_word:first_word_sent``: every sentence's first word is ``first_word``.
* ``first_word:first_word_answer``: the response's first word is ``first_word``.
* ``last_word:last_word_sent``: every sentence's last word (non-word characters removed) is
  ``last_word``.
* ``last_word:last_word_answer``: the response's last word (non-word characters removed) is
  ``last_word``.
* ``detectable_format:bigram_wrapping``: words 1,3,5.. start with ``<<`` and words 2,4,6..
  end with ``>>``.
* ``punctuation:punctuation_dot`` / ``punctuation_exclamation``: no ``.`` / no ``!``.
* ``count:lowercase_counting``: at most N all-lowercase words in total (the reference counts
  every ``\\b[a-z]+\\b`` match, not per distinct word).
* ``letters:letter_counting``: the number of ASCII letters is ``< N`` / ``>= N``.
* ``letters:letter_counting2``: IFEval's letter frequency check.
* ``count:counting_composition``: 3 ``***``-separated paragraphs of ``n_sent`` sentences of
  ``n_words`` tokens each.
* ``count:count_unique``: no token repeated.
* ``count:count_increment_word``: keyword1 once and keyword2 twice.
* ``keywords:palindrome``: some whitespace word reads the same reversed.
* ``keywords:keyword_specific_position``: token ``m`` of sentence ``n`` is the keyword
  (case-sensitive).
* ``keywords:start_end``: the first and last tokens are equal ignoring case.
"""

from __future__ import annotations

import re
from itertools import pairwise

from rewards.ifbench.words_sentence import positive_n_m
from rewards.ifeval._core import INT, RELATION, STR, STR_LIST, Constraint
from rewards.ifeval.keywords import compare, compile_keyword, letter_frequency, single_letter
from rewards.ifeval.length import divider_paragraph_count
from rewards.ifeval.text_utils import regex_sentences, word_tokenize


def _first(value: str | list[str]) -> str:
    return (value if isinstance(value, str) else value[0]).strip()


def repeat_phrase(value: str, *, phrase: str, small_n: int) -> bool:
    words = phrase.strip().split()
    if not words:
        return False
    try:
        pattern = re.compile(rf"{words[0]} .*? {words[-1]}")
    except re.error:
        pattern = re.compile(rf"{re.escape(words[0])} .*? {re.escape(words[-1])}")
    found = pattern.findall(value)
    if len(found) != small_n or not found:
        return False
    differences = 0
    for match in found:
        got = match.split()
        if len(got) != len(words):
            return False
        differences = sum(1 for a, b in zip(got, words, strict=True) if a != b)
        if differences > 1:
            return False
    return differences == 1


def copy_exact(value: str, *, prompt_to_repeat: str) -> bool:
    return value.strip().lower() == prompt_to_repeat.strip().lower()


def copying_multiple(value: str, *, prompt_to_repeat: str, N: int) -> bool:  # noqa: N803
    parts = value.split("******")
    if len(parts) != N:
        return False
    target = prompt_to_repeat.strip().lower()
    return all(p.strip().lower() == target for p in parts)


def copy_span_idx(value: str, *, prompt_to_repeat: str, n_start: int, n_end: int) -> bool:
    return value.strip().lower() == prompt_to_repeat[n_start:n_end].strip().lower()


def sentence_hyphens(value: str) -> bool:
    gold = regex_sentences(value.replace("-", " "))
    pieces = value.split("-")
    return all(p.strip() == p and p == g for p, g in zip(pieces, gold, strict=False))


def no_adjacent_consecutive(value: str) -> bool:
    words = value.split()
    return all(ord(b[0].lower()) - ord(a[0].lower()) != 1 for a, b in pairwise(words))


def square_brackets(value: str) -> bool:
    return all(w.startswith("[") and w.endswith("]") for w in value.split())


def word_once(value: str, *, keyword: str) -> bool:
    return len(compile_keyword(keyword.strip()).findall(value)) == 1


def word_count_different_numbers(
    value: str, *, keyword: str, frequency: int, relation: str
) -> bool:
    return compare(len(compile_keyword(keyword.strip()).findall(value)), relation, frequency)


def exclude_word_harder(value: str, *, keyword: str, instruction: str | None = None) -> bool:
    return " " + keyword.strip() + " " not in value


def paragraphs(value: str) -> bool:
    return divider_paragraph_count(value) == 2


def paragraphs2(value: str) -> bool:
    parts = value.split("\n\n")
    count = len(parts)
    for index, part in enumerate(parts):
        if not part.strip():
            if index == 0 or index == len(parts) - 1:
                count -= 1
            else:
                return False
    return count == 2


def first_word_sent(value: str, *, first_word: str | list[str]) -> bool:
    target = _first(first_word).lower()
    for sentence in regex_sentences(value):
        if not sentence.strip() or sentence.split()[0].strip().lower() != target:
            return False
    return True


def first_word_answer(value: str, *, first_word: str) -> bool:
    words = value.split()
    return bool(words) and words[0].strip().lower() == first_word.strip().lower()


_NON_WORD = re.compile(r"[^\w\s]")


def last_word_sent(value: str, *, last_word: str | list[str]) -> bool:
    target = _first(last_word).lower()
    for sentence in regex_sentences(value):
        if not sentence.strip():
            return False
        if _NON_WORD.sub("", sentence.split()[-1].strip()).lower() != target:
            return False
    return True


def last_word_answer(value: str, *, last_word: str) -> bool:
    words = value.split()
    if not words:
        return False
    return _NON_WORD.sub("", words[-1].strip()).lower() == last_word.strip().lower()


def bigram_wrapping(value: str) -> bool:
    words = value.split()
    for i in range(0, len(words) - 1, 2):
        if not (words[i].startswith("<<") and words[i + 1].endswith(">>")):
            return False
    return True


def punctuation_dot(value: str) -> bool:
    return "." not in value


def punctuation_exclamation(value: str) -> bool:
    return "!" not in value


_LOWER_WORD = re.compile(r"\b[a-z]+\b")


def lowercase_counting(value: str, *, N: int) -> bool:  # noqa: N803
    return len(_LOWER_WORD.findall(value)) <= N


_ASCII_LETTER = re.compile(r"[a-zA-Z]")


def letter_counting(value: str, *, N: int, relation: str) -> bool:  # noqa: N803
    return compare(len(_ASCII_LETTER.findall(value)), relation, N)


_DIVIDER = re.compile(r"\s?\*\*\*\s?")


def counting_composition(value: str, *, n_sent: int, n_words: int) -> bool:
    parts = _DIVIDER.split(value)
    count = len(parts)
    for index, part in enumerate(parts):
        if not part.strip():
            if index == 0 or index == len(parts) - 1:
                count -= 1
            else:
                return False
        sentences = regex_sentences(part)
        if len(sentences) != n_sent:
            return False
        if any(len(word_tokenize(s)) != n_words for s in sentences):
            return False
    return count == 3


def count_unique(value: str) -> bool:
    tokens = word_tokenize(value)
    return len(tokens) == len(set(tokens))


def count_increment_word(value: str, *, keyword1: str, keyword2: str) -> bool:
    once = len(compile_keyword(keyword1.strip()).findall(value))
    twice = len(compile_keyword(keyword2.strip()).findall(value))
    return once == 1 and twice == 2


def palindrome_basic(value: str) -> bool:
    return any(w == w[::-1] for w in value.split())


def keyword_specific_position(value: str, *, keyword: str | list[str], n: int, m: int) -> bool:
    sentences = regex_sentences(value)
    if len(sentences) < n:
        return False
    words = word_tokenize(sentences[n - 1])
    return len(words) >= m and words[m - 1] == _first(keyword)


def start_end(value: str) -> bool:
    tokens = word_tokenize(value)
    return len(tokens) >= 2 and tokens[0].lower() == tokens[-1].lower()


_LETTER_KW = {"letter": STR, "let_frequency": INT, "let_relation": RELATION}

CONSTRAINTS = [
    Constraint("copy:repeat_phrase", repeat_phrase, {"phrase": STR, "small_n": INT}),
    Constraint(
        "copy:copy", copy_exact, {"prompt_to_repeat": STR}, prompt_fallback="prompt_to_repeat"
    ),
    Constraint(
        "new:copy_span_idx",
        copy_span_idx,
        {"prompt_to_repeat": STR, "n_start": INT, "n_end": INT},
        prompt_fallback="prompt_to_repeat",
    ),
    Constraint("detectable_format:sentence_hyphens", sentence_hyphens),
    Constraint("keywords:no_adjacent_consecutive", no_adjacent_consecutive),
    Constraint("detectable_format:square_brackets", square_brackets),
    Constraint("keywords:word_once", word_once, {"keyword": STR}),
    Constraint(
        "keywords:word_count_different_numbers",
        word_count_different_numbers,
        {"keyword": STR, "frequency": INT, "relation": RELATION},
    ),
    Constraint(
        "keywords:exclude_word_harder",
        exclude_word_harder,
        {"keyword": STR},
        {"instruction": STR},
    ),
    Constraint("paragraphs:paragraphs", paragraphs),
    Constraint("paragraphs:paragraphs2", paragraphs2),
    Constraint("first_word:first_word_sent", first_word_sent, {"first_word": STR_LIST}),
    Constraint("first_word:first_word_answer", first_word_answer, {"first_word": STR}),
    Constraint("last_word:last_word_sent", last_word_sent, {"last_word": STR_LIST}),
    Constraint("last_word:last_word_answer", last_word_answer, {"last_word": STR}),
    Constraint("detectable_format:bigram_wrapping", bigram_wrapping),
    Constraint(
        "copy:copying_simple",
        copy_exact,
        {"prompt_to_repeat": STR},
        prompt_fallback="prompt_to_repeat",
    ),
    Constraint(
        "copy:copying_multiple",
        copying_multiple,
        {"prompt_to_repeat": STR, "N": INT},
        prompt_fallback="prompt_to_repeat",
    ),
    Constraint("punctuation:punctuation_dot", punctuation_dot),
    Constraint("punctuation:punctuation_exclamation", punctuation_exclamation),
    Constraint("count:lowercase_counting", lowercase_counting, {"N": INT}),
    Constraint("letters:letter_counting", letter_counting, {"N": INT, "relation": RELATION}),
    Constraint("letters:letter_counting2", letter_frequency, _LETTER_KW, validate=single_letter),
    Constraint(
        "count:counting_composition",
        counting_composition,
        {"n_sent": INT, "n_words": INT},
    ),
    Constraint("count:count_unique", count_unique),
    Constraint(
        "count:count_increment_word",
        count_increment_word,
        {"keyword1": STR, "keyword2": STR},
    ),
    Constraint("keywords:palindrome", palindrome_basic),
    Constraint(
        "keywords:keyword_specific_position",
        keyword_specific_position,
        {"keyword": STR_LIST, "n": INT, "m": INT},
        validate=positive_n_m,
    ),
    Constraint("keywords:start_end", start_end),
]
