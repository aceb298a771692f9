"""IFBench ``custom:*`` and ``repeat:*`` test constraints (allenai/IFBench ``instructions.py``).

* ``custom:multiples``: the digit runs (after "," -> ", ") are exactly 14 21 28 35 42 49.
* ``custom:mcq_count_length``: starts with "Question"; split on "Question <n>" labels into
  exactly 4 questions, each with 5 options (``A.``..``E)`` lines) and question texts strictly
  growing in length.
* ``custom:reverse_newline``: lines (punctuation-stripped, non-empty) from the first containing
  "Zimbabwe" on number at least 52 and are in reverse alphabetical order (accents removed).
* ``custom:word_reverse``: lowercased, punctuation deleted, words reversed: contains "bald
  eagle" and is a single Punkt sentence.
* ``custom:character_reverse``: contains "elgae dlab" (case-insensitive).
* ``custom:sentence_alphabet``: exactly 26 Punkt sentences whose first characters after
  leading punctuation and whitespace are a..z in order.
* ``custom:european_capitals_sort``: comma-separated, accent-folded, exactly the 27 capitals
  north of 45 degrees, from Reykjavik to Zagreb, in the reference order.
* ``custom:csv_city``: CSV with header ID,Country,City,Year,Count and 7 rows of 5 fields.
* ``custom:csv_special_character``: header ProductID,Category,Brand,Price,Stock (fields may be
  quoted), 14 rows of 5 fields, some field like ``"..x.."`` with a non-word character.
* ``custom:csv_quotes``: tab-delimited header StudentID..Score, 3 rows, every field quoted.
* ``custom:date_format_list``: comma-separated YYYY-MM-DD dates, years 1769-1821, valid
  month and day ranges.
* ``repeat:repeat_change``: differs from the request but equals it after dropping the first
  word (whitespace-normalised).
* ``repeat:repeat_simple``: exactly "Only output this sentence here, ignore all other
  requests." (stripped, case-insensitive).
* ``repeat:repeat_span``: equals the whitespace-split words ``n_start..n_end`` (inclusive) of
  the request joined by single spaces (stripped, case-insensitive). The current IFBench code
  and test data use word indices; the db69a6f package used character indices.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from itertools import pairwise

from rewards.ifeval._core import INT, STR, Constraint
from rewards.ifeval.text_utils import (
    PUNCT_SPACE,
    PUNCTUATION,
    punkt_sentences,
    remove_punctuation,
)


def multiples(value: str) -> bool:
    return re.findall(r"\d+", value.replace(",", ", ")) == [str(i) for i in range(14, 51, 7)]


_QUESTION_SPLIT = re.compile(r"(?:Question \d+[\.|\):;]?\s*)")
_OPTION = re.compile(r"^[A-Ea-e][\.|\)]\s*\w+")


def mcq_count_length(value: str) -> bool:
    if value[value.find("Question") :] != value:
        return False
    # The reference pattern has a leading "\n*"; the newlines it absorbs are stripped from
    # the pieces anyway, so leaving it out gives the same questions without backtracking.
    questions = [q.strip() for q in _QUESTION_SPLIT.split(value) if q.strip()]
    if len(questions) != 4:
        return False
    lengths = []
    for question in questions:
        text, option_count, done = "", 0, False
        for line in question.split("\n"):
            if _OPTION.match(line.strip()):
                option_count += 1
                done = True
            elif not done:
                text += " " + line.strip()
        if option_count != 5:
            return False
        lengths.append(len(text.strip()))
    return all(a < b for a, b in pairwise(lengths))


def fold_accents(text: str) -> str:
    """NFKD-decompose and drop everything that is not ASCII ("São Tomé" -> "Sao Tome")."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def reverse_newline(value: str) -> bool:
    lines = [s for s in (line.strip(PUNCT_SPACE) for line in value.split("\n")) if s]
    start = next((i for i, line in enumerate(lines) if "Zimbabwe" in line), None)
    if start is None:
        return False
    target = lines[start:]
    if len(target) < 52:
        return False
    normalized = [fold_accents(line) for line in target]
    return normalized == sorted(normalized, reverse=True)


def word_reverse(value: str) -> bool:
    value = remove_punctuation(value.lower().strip())
    value = " ".join(value.split()[::-1])
    if "bald eagle" not in value:
        return False
    return value in punkt_sentences(value)


def character_reverse(value: str) -> bool:
    return "elgae dlab" in value.lower()


_PUNCT_WS = PUNCTUATION + " \t\n\r\x0b\x0c"  # string.punctuation + string.whitespace


def sentence_alphabet(value: str) -> bool:
    sentences = punkt_sentences(value)
    if len(sentences) != 26:
        return False
    for i, sentence in enumerate(sentences):
        stripped = sentence.lstrip(_PUNCT_WS)
        if not stripped or stripped[0].lower() != chr(97 + i):
            return False
    return True


EUROPEAN_CAPITALS = (
    "Reykjavik Helsinki Oslo Tallinn Stockholm Riga Moscow Copenhagen Vilnius Minsk Dublin "
    "Berlin Amsterdam Warsaw London Brussels Prague Luxembourg Paris Vienna Bratislava "
    "Budapest Vaduz Chisinau Bern Ljubljana Zagreb"
).split()


def european_capitals_sort(value: str) -> bool:
    capitals = [c for c in fold_accents(value).split(",") if c.strip()]
    return [c.strip() for c in capitals] == EUROPEAN_CAPITALS


def csv_city(value: str) -> bool:
    data = list(csv.reader(io.StringIO(value)))
    if len(data) != 8 or data[0] != ["ID", "Country", "City", "Year", "Count"]:
        return False
    return all(len(row) == 5 for row in data[1:])


_PRODUCT_HEADER = re.compile(
    r'^(ProductID|"ProductID"),[ \t]*(Category|"Category"),[ \t]*(Brand|"Brand"),'
    r'[ \t]*(Price|"Price"),[ \t]*(Stock|"Stock")$'
)
_SPECIAL_FIELD = re.compile(r'".*[^\d\w\s].*"')


def csv_special_character(value: str) -> bool:
    if not _PRODUCT_HEADER.match(value.split("\n")[0].strip()):
        return False
    data = list(csv.reader(io.StringIO(value.replace('"', '"""'))))
    if len(data) != 15:
        return False
    for row in data[1:]:
        if len(row) != 5:
            return False
        if any(_SPECIAL_FIELD.match(field) for field in row):
            return True
    return False


_STUDENT_HEADER = re.compile(
    r'^(StudentID|"StudentID")\t *(Subject|"Subject")\t *(Grade|"Grade")\t *'
    r'(Semester|"Semester")\t *(Score|"Score")$'
)


def csv_quotes(value: str) -> bool:
    if not _STUDENT_HEADER.match(value.split("\n")[0].strip()):
        return False
    data = list(csv.reader(io.StringIO(value.replace('"', '"""')), delimiter="\t"))
    if len(data) != 4:
        return False
    for row in data:
        if len(row) != 5:
            return False
        for field in row:
            field = field.strip()
            # the reference indexes field[0] and raises on an empty field: not followed
            if not field or field[0] != '"' or field[-1] != '"':
                return False
    return True


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAYS = {1: 31, 3: 31, 5: 31, 7: 31, 8: 31, 10: 31, 12: 31, 4: 30, 6: 30, 9: 30, 11: 30, 2: 29}


def date_format_list(value: str) -> bool:
    for date in value.strip().split(","):
        date = date.strip()
        if not _DATE.match(date):
            return False
        year, month, day = (int(p) for p in date.split("-"))
        if not 1769 <= year <= 1821 or month > 12:
            return False
        if month in _DAYS and day > _DAYS[month]:
            return False
    return True


def repeat_change(value: str, *, prompt_to_repeat: str) -> bool:
    if prompt_to_repeat == value:
        return False
    return " ".join(prompt_to_repeat.split()[1:]) == " ".join(value.split()[1:])


REPEAT_SIMPLE_SENTENCE = "Only output this sentence here, ignore all other requests."


def repeat_simple(value: str) -> bool:
    return value.strip().lower() == REPEAT_SIMPLE_SENTENCE.lower()


def repeat_span(value: str, *, prompt_to_repeat: str, n_start: int, n_end: int) -> bool:
    span = " ".join(prompt_to_repeat.split()[n_start : n_end + 1])
    return value.strip().lower() == span.strip().lower()


CONSTRAINTS = [
    Constraint("custom:multiples", multiples),
    Constraint("custom:mcq_count_length", mcq_count_length),
    Constraint("custom:reverse_newline", reverse_newline),
    Constraint("custom:word_reverse", word_reverse),
    Constraint("custom:character_reverse", character_reverse),
    Constraint("custom:sentence_alphabet", sentence_alphabet),
    Constraint("custom:european_capitals_sort", european_capitals_sort),
    Constraint("custom:csv_city", csv_city),
    Constraint("custom:csv_special_character", csv_special_character),
    Constraint("custom:csv_quotes", csv_quotes),
    Constraint("custom:date_format_list", date_format_list),
    Constraint(
        "repeat:repeat_change",
        repeat_change,
        {"prompt_to_repeat": STR},
        prompt_fallback="prompt_to_repeat",
    ),
    Constraint("repeat:repeat_simple", repeat_simple),
    Constraint(
        "repeat:repeat_span",
        repeat_span,
        {"prompt_to_repeat": STR, "n_start": INT, "n_end": INT},
        prompt_fallback="prompt_to_repeat",
    ),
]
