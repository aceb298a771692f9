"""IFBench ``words:*`` and ``sentence:*`` test constraints (allenai/IFBench ``instructions.py``).

"Words" are whitespace-separated unless stated; "punctuation" is ASCII ``string.punctuation``;
sentences come from Punkt (``nltk.sent_tokenize``).

* ``words:alphabet``: after deleting punctuation, word k+1 starts with the letter after word
  k's (Z wraps to A); the first word must start with a letter.
* ``words:vowel``: a single line using at most three distinct vowels (a e i o u).
* ``words:consonants``: every word has two adjacent consonants (``bcdfghjklmnpqrstvwxyz``).
* ``words:palindrome``: at least 10 words (punctuation deleted, lowercase) that are
  palindromes of length >= 5.
* ``words:prime_lengths``: every word (punctuation deleted) has a prime length.
* ``words:start_verb``: the first token is a verb (POS-free approximation, see text_utils).
* ``words:repeats``: no lowercase word (punctuation deleted) occurs more than ``small_n`` times.
* ``words:odd_even_syllables``: syllable-count parity alternates word to word (syllapy).
* ``words:last_first``: each sentence's last word equals the next sentence's first word.
* ``words:paragraph_last_first``: each non-empty line starts and ends with the same word.
* ``words:no_consecutive``: no two consecutive words share their first letter.
* ``words:keywords_specific_position``: the ``m``-th alphanumeric token of sentence ``n`` is
  the keyword (case-insensitive).
* ``words:words_position``: the 2nd and the 2nd-to-last alphanumeric tokens are the keyword
  (case-insensitive).
* ``sentence:alliteration_increment``: the alliteration score (adjacent words sharing a first
  letter; 2 for a new run, +1 per extension) strictly increases sentence to sentence.
* ``sentence:keyword``: the ``N``-th sentence contains ``word`` as a whole word.
* ``sentence:increment``: each sentence has exactly ``small_n`` more words than the one before.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from itertools import pairwise

from rewards.ifeval._core import INT, STR, Constraint
from rewards.ifeval.text_utils import (
    PUNCT_SPACE,
    punkt_sentences,
    remove_punctuation,
    starts_with_verb,
    syllable_count,
    word_tokenize,
)

_ALPHABET = string.ascii_lowercase


def alphabet(value: str) -> bool:
    words = remove_punctuation(value).strip(PUNCT_SPACE).split()
    if not words:
        return False
    letter = words[0][0].lower()
    if letter not in _ALPHABET:
        return False
    for word in words[1:]:
        word = word.strip(PUNCT_SPACE).lower()
        if not word:
            continue
        letter = _ALPHABET[(_ALPHABET.index(letter) + 1) % 26]
        if word[0] != letter:
            return False
    return True


def vowel(value: str) -> bool:
    paragraphs = value.strip().split("\n")
    if len(paragraphs) != 1:
        return False
    return len(set(paragraphs[0].lower()) & set("aeiou")) <= 3


_CONSONANTS = frozenset("bcdfghjklmnpqrstvwxyz")


def consonants(value: str) -> bool:
    for word in value.lower().strip().split():
        if not any(a in _CONSONANTS and b in _CONSONANTS for a, b in pairwise(word)):
            return False
    return True


def palindrome(value: str) -> bool:
    words = remove_punctuation(value).lower().split()
    return sum(1 for w in words if w == w[::-1] and len(w) >= 5) >= 10


_PRIMES = frozenset(
    (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)
)


def prime_lengths(value: str) -> bool:
    return all(len(w) in _PRIMES for w in remove_punctuation(value).split())


def start_verb(value: str) -> bool:
    return starts_with_verb(value)


def repeats(value: str, *, small_n: int) -> bool:
    counts = Counter(remove_punctuation(value.lower()).split())
    return all(c <= small_n for c in counts.values())


def odd_even_syllables(value: str) -> bool:
    words = remove_punctuation(value).lower().split()
    parities = [syllable_count(w) % 2 for w in words if w.strip()]
    return all(a != b for a, b in pairwise(parities))


def last_first(value: str) -> bool:
    sentences = punkt_sentences(value)
    for current, following in pairwise(sentences):
        last_words = current.rstrip(PUNCT_SPACE).split()
        first_words = following.lstrip(PUNCT_SPACE).split()
        if not last_words or not first_words:
            return False
        if last_words[-1].lower() != first_words[0].lower():
            return False
    return True


def paragraph_last_first(value: str) -> bool:
    for paragraph in value.split("\n"):
        paragraph = paragraph.strip().lower()
        if not paragraph:
            continue
        words = paragraph.strip(PUNCT_SPACE).split()
        if words and words[0] != words[-1]:
            return False
    return True


def no_consecutive(value: str) -> bool:
    words = remove_punctuation(value.lower()).split()
    return all(a[0] != b[0] for a, b in pairwise(words))


def alnum_tokens(text: str) -> list[str]:
    """``word_tokenize`` tokens containing at least one alphanumeric character."""
    return [t for t in word_tokenize(text) if any(ch.isalnum() for ch in t)]


def positive_n_m(kw: dict) -> str | None:
    """Validation hook: sentence ``n`` and word ``m`` are 1-based."""
    return None if kw.get("n", 0) >= 1 and kw.get("m", 0) >= 1 else "n and m must be >= 1"


def keywords_specific_position(value: str, *, keyword: str, n: int, m: int) -> bool:
    sentences = punkt_sentences(value)
    if len(sentences) < n:
        return False
    words = alnum_tokens(sentences[n - 1])
    if len(words) < m:
        return False
    return words[m - 1].lower() == keyword.strip().lower()


def words_position(value: str, *, keyword: str) -> bool:
    words = alnum_tokens(value)
    if len(words) < 2:
        return False
    return words[1].lower() == words[-2].lower() == keyword.strip().lower()


def alliteration_increment(value: str) -> bool:
    previous = -1
    for sentence in punkt_sentences(value):
        words = [w.lstrip(PUNCT_SPACE) for w in sentence.lower().split()]
        words = [w for w in words if w]
        score, in_run = 0, False
        for a, b in pairwise(words):
            if a[0] == b[0]:
                score += 1 if in_run else 2
                in_run = True
            else:
                in_run = False
        if score <= previous:
            return False
        previous = score
    return True


def sentence_keyword(value: str, *, word: str, N: int) -> bool:  # noqa: N803
    sentences = punkt_sentences(value)
    if not sentences or len(sentences) < N:
        return False
    pattern = re.compile(r"\b" + re.escape(word) + r"\b", re.IGNORECASE)
    return pattern.search(sentences[N - 1]) is not None  # N == 0 reads the last, as reference


def increment(value: str, *, small_n: int) -> bool:
    sentences = punkt_sentences(value)
    if not sentences:
        return False
    counts = [len(remove_punctuation(s).split()) for s in sentences]
    return all(b == a + small_n for a, b in pairwise(counts))


CONSTRAINTS = [
    Constraint("words:alphabet", alphabet),
    Constraint("words:vowel", vowel),
    Constraint("words:consonants", consonants),
    Constraint("words:palindrome", palindrome),
    Constraint("words:prime_lengths", prime_lengths),
    Constraint("words:start_verb", start_verb),
    Constraint("words:repeats", repeats, {"small_n": INT}),
    Constraint("words:odd_even_syllables", odd_even_syllables),
    Constraint("words:last_first", last_first),
    Constraint("words:paragraph_last_first", paragraph_last_first),
    Constraint("words:no_consecutive", no_consecutive),
    Constraint(
        "words:keywords_specific_position",
        keywords_specific_position,
        {"keyword": STR, "n": INT, "m": INT},
        validate=positive_n_m,
    ),
    Constraint("words:words_position", words_position, {"keyword": STR}),
    Constraint("sentence:alliteration_increment", alliteration_increment),
    Constraint("sentence:keyword", sentence_keyword, {"word": STR, "N": INT}),
    Constraint("sentence:increment", increment, {"small_n": INT}),
]
