"""IFEval verifiers: one passing and one failing response per id, loose mode, kwargs
validation, the offline text utilities, every row of the IFEval data file, hostile inputs.

Expected verdicts are worked out by hand from the google-research IFEval definitions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from eval.suites.base import SHIPPED_DATA_DIR
from rewards.ifeval import IDS, REGISTRY, check
from rewards.ifeval._core import loose_variants
from rewards.ifeval.text_utils import (
    count_stopwords,
    count_words,
    detect_language,
    punkt_sentences,
    regex_sentences,
    syllable_count,
    word_tokenize,
)

DATA = SHIPPED_DATA_DIR  # the benchmark files shipped with rlvr
IFEVAL_FILE = DATA / "ifeval_input.jsonl"

PROMPT = (
    "Write an email to my boss telling him that I am quitting. The email must contain a "
    "title wrapped in double angular brackets, i.e. <<title>>."
)

# (id, kwargs (from real rows where the data has them), passing response, failing response)
CASES = [
    (
        "keywords:existence",
        {"keywords": ["correlated", "experiencing"]},
        "People experiencing stress often report CORRELATED symptoms.",
        "People under stress often report correlated symptoms.",
    ),
    (
        "keywords:frequency",
        {"relation": "at least", "keyword": "story", "frequency": 2},
        "A story within a Story.",
        "Just one story here.",
    ),
    (
        "keywords:frequency",
        {"relation": "less than", "keyword": "flesh", "frequency": 2},
        "Flesh and bone.",
        "Flesh, flesh and more FLESH.",
    ),
    (
        "keywords:forbidden_words",
        {"forbidden_words": ["rock"]},
        "Rocks and rocky roads are fine.",
        "I love Rock music.",
    ),
    (
        "keywords:letter_frequency",
        {"let_relation": "at least", "letter": "q", "let_frequency": 3},
        "Quick quiet quails.",
        "Quick quiet birds.",
    ),
    (
        "keywords:letter_frequency",
        {"let_relation": "less than", "letter": "#", "let_frequency": 2},
        "Only one # sign.",
        "Two ## signs.",
    ),
    (
        "language:response_language",
        {"language": "fr"},
        "Bonjour, je suis très content de vous voir aujourd'hui. Merci beaucoup.",
        "Hello, I am very happy to see you today. Thank you very much.",
    ),
    (
        "length_constraints:number_sentences",
        {"relation": "less than", "num_sentences": 3},
        "Mr. Smith went home. He slept.",
        "One. Two. Three.",
    ),
    (
        "length_constraints:number_sentences",
        {"relation": "at least", "num_sentences": 3},
        "One. Two. Three.",
        "Mr. Smith went home. He slept.",
    ),
    (
        "length_constraints:number_paragraphs",
        {"num_paragraphs": 2},
        "First part.\n***\nSecond part.",
        "First part.\n***\n***\nSecond part.",
    ),
    (
        "length_constraints:number_words",
        {"relation": "at least", "num_words": 5},
        "one two three four five",
        "one two three-four",
    ),
    (
        "length_constraints:number_words",
        {"relation": "less than", "num_words": 4},
        "one two three",
        "one two three four",
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"first_word": "weekend", "num_paragraphs": 2, "nth_paragraph": 2},
        'Intro paragraph.\n\n"Weekend, finally. Rest.',
        "Intro paragraph.\n\nWeekday again.",
    ),
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "Dear [name], see you at [address].",
        "Dear [name], see you at the [\naddress].",
    ),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.S."},
        "Main text.\n\np. s. remember the milk.",
        "Main text. PS remember the milk.",
    ),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.P.S"},
        "Body.\nP.P.S. One more thing.",
        "Body.\nP.S. One more thing.",
    ),
    (
        "detectable_format:number_bullet_lists",
        {"num_bullets": 3},
        "Intro:\n* one\n* two\n- three\n**bold line**",
        "Intro:\n* one\n* two",
    ),
    (
        "detectable_format:constrained_response",
        {},
        "After thinking: My answer is maybe.",
        "My answer is probably yes.",
    ),
    (
        "detectable_format:number_highlighted_sections",
        {"num_highlights": 3},
        "*one* and **two** and *three*",
        "*one* and ** ** and *\nbroken*",
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "PARAGRAPH", "num_sections": 2},
        "PARAGRAPH 1\nText.\nPARAGRAPH 2\nMore.",
        "PARAGRAPH 1\nText. Paragraph 2\nMore.",
    ),
    (
        "detectable_format:json_format",
        {},
        '```json\n{"a": [1, 2]}\n```',
        "Here is JSON: {'a': 1}",
    ),
    ("detectable_format:title", {}, "<<My Title>>\nBody.", "<< >>\nBody without a title."),
    (
        "combination:two_responses",
        {},
        "First answer.\n******\nSecond answer.",
        "Same.\n******\nSame.",
    ),
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": PROMPT},
        PROMPT.upper() + "\n<<Resignation>>\nDear boss, I quit.",
        "Sure! " + PROMPT,
    ),
    (
        "startend:end_checker",
        {"end_phrase": "Can I get my money back for the classes I missed?"},
        'Some text. Can I get my money back for the classes I missed?"',
        "Can I get my money back for the classes I missed? Thanks.",
    ),
    ("startend:quotation", {}, '  "Wrapped in quotes."\n', '"Only opened.'),
    (
        "change_case:capital_word_frequency",
        {"capital_relation": "less than", "capital_frequency": 2},
        "Only ONE capital word.",
        "TWO CAPITAL words.",
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_relation": "at least", "capital_frequency": 2},
        "The U.S. and the UK.",
        "Only NASA here.",
    ),
    (
        "change_case:english_capital",
        {},
        "THIS IS A SENTENCE WRITTEN ENTIRELY IN CAPITAL LETTERS FOR THE TEST.",
        "THIS IS ALMOST ALL CAPITAL LETTERS but not quite.",
    ),
    (
        "change_case:english_lowercase",
        {},
        "this is a sentence written entirely in lowercase letters for the test.",
        "this is a sentence written in lowercase except for Paris.",
    ),
    ("punctuation:no_comma", {}, "No commas here.", "Well, a comma."),
]


def test_registry_has_all_25_ids() -> None:
    assert len(IDS) == 25
    assert set(IDS) == {c[0] for c in CASES}


@pytest.mark.parametrize(("iid", "kwargs", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_pass_and_fail(iid: str, kwargs: dict, good: str, bad: str) -> None:
    assert check(iid, kwargs, good, PROMPT) is True
    assert check(iid, kwargs, bad, PROMPT) is False


def test_empty_response_never_follows() -> None:
    assert check("punctuation:no_comma", {}, "") is False
    assert check("punctuation:no_comma", {}, " \n ", loose=True) is False


def test_readme_example_and_none_kwargs_ignored() -> None:
    kw = {"keywords": ["cat", "dog"], "num_words": None, "relation": None}
    assert check("keywords:existence", kw, "I saw a cat and a dog today.")


# ------------------------------------------------------------------------------ loose mode


def test_loose_variants_order_and_content() -> None:
    v = loose_variants("Sure:\n**body** text\nBye")
    assert v == [
        "Sure:\n**body** text\nBye",
        "Sure:\nbody text\nBye",
        "**body** text\nBye",
        "Sure:\n**body** text",
        "**body** text",
        "body text\nBye",
        "Sure:\nbody text",
        "body text",
    ]


def test_loose_drops_first_line() -> None:
    response = "Sure, here it is:\nMY ANSWER IS WRITTEN IN CAPITAL LETTERS ONLY FOR YOU."
    assert not check("change_case:english_capital", {}, response)
    assert check("change_case:english_capital", {}, response, loose=True)


def test_loose_drops_last_line_and_asterisks() -> None:
    response = '"**Quoted answer**"\nHope this helps'
    assert not check("startend:quotation", {}, response)
    assert check("startend:quotation", {}, response, loose=True)
    starred = "*Title*: no comma here"
    assert check("detectable_format:json_format", {}, "```\n[1, 2]\n```")
    assert check("punctuation:no_comma", {}, starred, loose=True)


def test_loose_asterisk_removal_helps_json() -> None:
    response = '**{"a": 1}**'
    assert not check("detectable_format:json_format", {}, response)
    assert check("detectable_format:json_format", {}, response, loose=True)


def test_loose_cannot_hurt() -> None:
    for iid, kwargs, good, _ in CASES:
        assert check(iid, kwargs, good, PROMPT, loose=True), iid


# ------------------------------------------------------------------------------ kwargs


def test_unknown_id_names_close_matches() -> None:
    with pytest.raises(KeyError, match="keywords:existence"):
        check("keywords:existance", {}, "x")


def test_missing_kwarg_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"keywords:frequency.*missing.*frequency"):
        check("keywords:frequency", {"keyword": "a", "relation": "at least"}, "a")


def test_wrong_kwargs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"length_constraints:number_words.*relation"):
        check("length_constraints:number_words", {"num_words": 3, "relation": "more"}, "a")
    with pytest.raises(ValueError, match=r"number_words.*integer"):
        check("length_constraints:number_words", {"num_words": "3", "relation": "at least"}, "a")
    with pytest.raises(ValueError, match=r"punctuation:no_comma.*unexpected.*foo"):
        check("punctuation:no_comma", {"foo": 1}, "a")
    with pytest.raises(ValueError, match="nth_paragraph_first_word"):
        check(
            "length_constraints:nth_paragraph_first_word",
            {"first_word": "a", "num_paragraphs": 2, "nth_paragraph": 3},
            "a",
        )


def test_integral_floats_are_accepted() -> None:
    assert check(
        "length_constraints:number_words", {"num_words": 2.0, "relation": "at least"}, "two words"
    )


# ------------------------------------------------------------------------------ text utilities


def test_punkt_matches_nltk_doctest() -> None:
    text = (
        "Punkt knows that the periods in Mr. Smith and Johann S. Bach do not mark sentence "
        "boundaries.  And sometimes sentences can start with non-capitalized words.  i is a "
        "good variable name."
    )
    assert punkt_sentences(text) == [
        "Punkt knows that the periods in Mr. Smith and Johann S. Bach do not mark sentence "
        "boundaries.",
        "And sometimes sentences can start with non-capitalized words.",
        "i is a good variable name.",
    ]


def test_word_tokenize_matches_nltk_doctest() -> None:
    s = "Good muffins cost $3.88\nin New York.  Please buy me\ntwo of them.\n\nThanks."
    assert word_tokenize(s) == [
        "Good",
        "muffins",
        "cost",
        "$",
        "3.88",
        "in",
        "New",
        "York",
        ".",
        "Please",
        "buy",
        "me",
        "two",
        "of",
        "them",
        ".",
        "Thanks",
        ".",
    ]
    assert word_tokenize("Don't stop.") == ["Do", "n't", "stop", "."]


def test_regex_sentence_splitter_rules() -> None:
    assert regex_sentences("Mr. Smith paid 3.5 dollars. Did he? Yes!") == [
        "Mr. Smith paid 3.5 dollars.",
        "Did he?",
        "Yes!",
    ]
    # the reference protects ".com" but not "www." (values from the reference splitter)
    assert regex_sentences("Visit www.site.com today. Then e.g. rest...") == [
        "Visit www.",
        "site.com today.",
        "Then e.g. rest...",
    ]


def test_word_and_stopword_counts() -> None:
    assert count_words("It's a well-known fact, isn't it?") == 9
    assert count_stopwords("The cat and the hat") == 3


def test_language_detection_offline() -> None:
    assert detect_language("Ich habe heute leider keine Zeit für dich, mein Freund.") == "de"
    assert detect_language("ನಮಸ್ಕಾರ, ನೀವು ಹೇಗಿದ್ದೀರಿ? ನಾನು ಚೆನ್ನಾಗಿದ್ದೇನೆ.") == "kn"
    assert detect_language("12345 !!!") is None


def test_syllables_offline() -> None:
    assert [syllable_count(w) for w in ("cat", "banana", "beautiful")] == [1, 3, 3]


# ------------------------------------------------------------------------------ real data


def _rows() -> list[dict]:
    if not IFEVAL_FILE.is_file():
        return []
    return [json.loads(line) for line in IFEVAL_FILE.read_text().splitlines() if line.strip()]


ROWS = _rows()


def test_ifeval_data_covers_every_id(shared_data_dir: Path) -> None:
    assert (shared_data_dir / "ifeval_input.jsonl").is_file()
    assert len(ROWS) == 541
    assert {i for row in ROWS for i in row["instruction_id_list"]} == set(IDS)


@pytest.mark.parametrize("row", ROWS, ids=[str(r["key"]) for r in ROWS])
def test_ifeval_row_is_checkable(row: dict) -> None:
    for iid, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
        assert iid in REGISTRY, iid
        for loose in (False, True):
            assert isinstance(check(iid, kwargs, row["prompt"], row["prompt"], loose), bool)


# ------------------------------------------------------------------------------ hostile input


@pytest.mark.parametrize(
    ("iid", "kwargs"),
    [
        ("detectable_format:number_bullet_lists", {"num_bullets": 1}),
        ("detectable_content:number_placeholders", {"num_placeholders": 1}),
        ("detectable_format:title", {}),
        ("detectable_content:postscript", {"postscript_marker": "P.S."}),
        ("detectable_format:number_highlighted_sections", {"num_highlights": 1}),
    ],
)
def test_hostile_inputs_stay_fast(iid: str, kwargs: dict) -> None:
    texts = [" \n" * 20000, "[" * 40000, "<<" * 20000, "*" * 40000, " " * 40000 + "x"]
    start = time.perf_counter()
    for text in texts:
        check(iid, kwargs, text)
    assert time.perf_counter() - start < 2.0


def test_bullet_count_semantics() -> None:
    # "\s*" may cross blank lines; "*" followed by newline still counts; "**" does not.
    text = "\n\n* a\n*\nnext\n  - b\n**c**\n-d"
    assert check("detectable_format:number_bullet_lists", {"num_bullets": 4}, text)


def test_linear_scans_equal_reference_regexes() -> None:
    """The backtracking-free scans give the reference regexes' results on random strings."""
    import random
    import re

    from rewards.ifbench.custom_repeat import _QUESTION_SPLIT
    from rewards.ifeval.formats import _count_line_items, count_placeholders, postscript, title

    rng = random.Random(0)
    alphabet = ["*", "-", " ", "\n", "a", "[", "]", "<", ">", "\t", "p", ".", "s", "Question 1"]
    for _ in range(2000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert _count_line_items(s, "*", True) == len(re.findall(r"^\s*\*[^\*].*$", s, re.M))
        assert _count_line_items(s, "-", False) == len(re.findall(r"^\s*-.*$", s, re.M))
        assert count_placeholders(s) == len(re.findall(r"\[.*?\]", s))
        titles = re.findall(r"<<[^\n]+>>", s)
        assert title(s) == any(t.lstrip("<").rstrip(">").strip() for t in titles)
        assert postscript(s, postscript_marker="P.S.") == bool(
            re.findall(r"\s*p\.\s?s\..*$", s.lower(), re.M)
        )
        reference = [q.strip() for q in re.split(r"\n*(?:Question \d+[\.|\):;]?\s*)", s)]
        ours = [q.strip() for q in _QUESTION_SPLIT.split(s)]
        assert [q for q in reference if q] == [q for q in ours if q]
