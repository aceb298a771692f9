"""IFBench (58 test ids) and IFTrain (29 training ids) verifiers: one passing and one failing
response per id (kwargs from the real IFBench rows where the data has them), loose mode,
kwargs validation and every row of the IFBench test file.

Expected verdicts are worked out by hand from the allenai/IFBench and open-instruct IFEvalG
definitions (including their documented quirks).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from eval.suites.base import SHIPPED_DATA_DIR
from rewards.ifbench import IDS, REGISTRY, TEST_IDS, TRAIN_IDS, check

DATA = SHIPPED_DATA_DIR  # the benchmark files shipped with rlvr
IFBENCH_FILE = DATA / "ifbench_test.jsonl"

SPAN_PROMPT = (
    "explain the context, code and theory behind the paper Identifying Candidate Spaces for "
    "Advert Implantation."
)
CHANGE_PROMPT = (
    "Write a python program to implement a simple JPEG compression algorithm without any errors."
)
OVERLAP_REF = "the quick brown fox jumps over the lazy dog"

CAPITALS = (
    "Reykjavik, Helsinki, Oslo, Tallinn, Stockholm, Riga, Moscow, Copenhagen, Vilnius, Minsk, "
    "Dublin, Berlin, Amsterdam, Warsaw, London, Brussels, Prague, Luxembourg, Paris, Vienna, "
    "Bratislava, Budapest, Vaduz, Chișinău, Bern, Ljubljana, Zagreb"
)
COUNTRIES = [f"Country{chr(90 - i // 26)}{chr(90 - i % 26)}" for i in range(51)]
REVERSE_LIST = "\n".join(["Zimbabwe", "Zambia", *COUNTRIES])
ALPHABET_STORY = " ".join(f"{c.upper()}nimals run." for c in "abcdefghijklmnopqrstuvwxyz")


def _mcq(lengths: list[int]) -> str:
    blocks = []
    for i, n in enumerate(lengths, 1):
        options = "\n".join(f"{c}. choice {c}" for c in "ABCDE")
        blocks.append(f"Question {i}: " + "x" * n + "?\n" + options)
    return "\n\n".join(blocks)


CSV_CITY = "ID,Country,City,Year,Count\n" + "\n".join(
    f"{i},France,Paris,2020,{i * 3}" for i in range(1, 8)
)
CSV_SPECIAL = "ProductID,Category,Brand,Price,Stock\n" + "\n".join(
    f'{i},Tools,"Acme & Co",9.99,{i}' if i == 3 else f"{i},Tools,Acme,9.99,{i}"
    for i in range(1, 15)
)
CSV_QUOTES = '"StudentID"\t"Subject"\t"Grade"\t"Semester"\t"Score"\n' + "\n".join(
    f'"{i}"\t"Math"\t"A"\t"Fall"\t"9{i}"' for i in range(1, 4)
)

# (id, kwargs, passing response, failing response)
TEST_CASES = [
    ("count:word_count_range", {"min_words": 3, "max_words": 4}, "one two three", "one two"),
    (
        "count:unique_word_count",
        {"N": 4},
        "Apples, pears; plums and figs.",
        "the the The the. the",
    ),
    ("count:conjunctions", {"small_n": 3}, "Cats and dogs, but not birds or fish.", "and and but"),
    ("count:person_names", {"N": 2}, "Emma met Liam.", "Emmanuel met Emma."),
    ("count:numbers", {"N": 2}, "It cost 3.50 in 2020", "It cost 3.50 in 2020 and 7"),
    (
        "count:punctuation",
        {},
        "Really?! Yes. Well, fine; here: done!?",
        "Really?! Yes, well: fine; done.",
    ),
    ("count:words_japanese", {"N": 2}, "I 日本 like 猫 a 3", "I like cats a lot"),
    ("count:pronouns", {"N": 3}, "She/her said it to them.", "The cat sat on a mat."),
    (
        "count:keywords_multiple",
        {
            "keyword1": "kaleidoscope",
            "keyword2": "nebula",
            "keyword3": "whisper",
            "keyword4": "labyrinth",
            "keyword5": "paradox",
        },
        "kaleidoscope " + "nebula " * 2 + "whisper " * 3 + "labyrinth " * 5 + "Paradox " * 7,
        # whole words only: "whispers" is not "whisper"
        "kaleidoscope " + "nebula " * 2 + "whispers " * 3 + "labyrinth " * 5 + "paradox " * 7,
    ),
    ("ratio:stop_words", {"percentage": 50}, "The cat sleeps soundly.", "The cat is in the box."),
    ("ratio:sentence_type", {}, "I am here. You are there. Why?", "I am here. Why? How?"),
    ("ratio:sentence_balance", {}, "Yes. No? Wow!", "Yes. No. Wow!"),
    (
        "ratio:overlap",
        {"percentage": 100, "reference_text": OVERLAP_REF},
        "the quick brown fox",
        "the quick red fox",
    ),
    ("ratio:sentence_words", {}, "Cats nap. Dogs run. Owls fly.", "Cats nap. Cats nap. Cats nap."),
    ("words:alphabet", {}, "Yes, zebras always bite.", "Apples bite dogs."),
    ("words:vowel", {}, "a cat ran past the big hill", "a cat ran past the blue house"),
    ("words:consonants", {}, "Strong black tracks", "Strong black cat"),
    (
        "words:palindrome",
        {},
        "level radar civic kayak refer rotor madam stats tenet racecar",
        "level radar civic kayak refer rotor madam stats tenet",
    ),
    ("words:prime_lengths", {}, "We are so sad", "Cats are cool"),
    ("words:start_verb", {}, "Imagine a world without war.", "The world is calm."),
    ("words:repeats", {"small_n": 2}, "Go go, stop.", "Go, go, GO!"),
    ("words:odd_even_syllables", {}, "cat water dog", "cat dog water"),
    ("words:last_first", {}, "I like cats. Cats like fish.", "I like cats. Dogs like fish."),
    (
        "words:paragraph_last_first",
        {},
        "Go and go.\n\nStop then stop!",
        "Go and go.\n\nStop, then stop!",
    ),
    ("words:no_consecutive", {}, "A big cat ran.", "A big bad cat."),
    (
        "words:keywords_specific_position",
        {"keyword": "giggle", "n": 2, "m": 3},
        "Hi there. We all, giggle now.",
        "Hi there. We giggle now.",
    ),
    (
        "words:words_position",
        {"keyword": "vibrant"},
        '"A vibrant city, so vibrant today!"',
        "A vibrant city is vibrant.",
    ),
    (
        "sentence:alliteration_increment",
        {},
        "Big cats. Silly snakes slide. Pretty pink pigs pop.",
        "Silly snakes slide. Big cats.",
    ),
    (
        "sentence:keyword",
        {"word": "fleetness", "N": 2},
        "First one. The FLEETNESS of deer.",
        "The fleetness of deer. Second.",
    ),
    ("sentence:increment", {"small_n": 2}, "Hi. Hi there you. A b c d e.", "Hi. Hi there."),
    ("format:parentheses", {}, "(a [b {c (d [e])}])", "(a [b {c (d)}])"),
    ("format:quotes", {}, 'He said "she said \'they said "hi"\'"', "He said \"she said 'hi'\""),
    ("format:options", {"options": "yes/no/maybe"}, "Maybe.", "Maybe not."),
    ("format:options", {"options": "a), b), c), d)"}, "b)", "b) because"),
    ("format:newline", {}, "One\nword\nper\nline.", "Two words\nper line"),
    ("format:emoji", {}, "I am happy 😀. You too 🎉!", "I am happy 😀. You too."),
    ("format:line_indent", {}, "a\n  b\n    c", "a\n  b\n  c"),
    (
        "format:quote_unquote",
        {},
        '"Carpe diem" means seize the day.',
        'He said "carpe diem" "seize the day"',
    ),
    ("format:list", {"sep": "!?!?"}, "!?!? apples\n!?!? pears", "!?!? apples\n* pears"),
    ("format:thesis", {}, "<i>Cats rule.</i> They do.", "<i>Cats rule.</i>"),
    ("format:sub-bullets", {}, "* Fruit\n  - apple\n* Veg\n  - kale", "* Fruit\n  - apple\n* Veg"),
    (
        "format:no_bullets_bullets",
        {},
        "First sentence. Second sentence.\n* one\n* two",
        "Only one sentence.\n* one\n* two",
    ),
    ("format:title_case", {}, "The Big Red Fox", "The big Red Fox"),
    (
        "format:output_template",
        {},
        "My Answer: yes My Conclusion: fine Future Outlook: good",
        "My Answer: yes My Conclusion: fine",
    ),
    ("format:no_whitespace", {}, "no_whitespace_here", "one space"),
    ("custom:multiples", {}, "14, 21, 28, 35, 42, 49", "7, 14, 21, 28, 35, 42, 49"),
    ("custom:mcq_count_length", {}, _mcq([5, 10, 15, 20]), _mcq([5, 10, 10, 20])),
    ("custom:reverse_newline", {}, REVERSE_LIST, "\n".join(["Zimbabwe", *COUNTRIES, "Zambia"])),
    ("custom:word_reverse", {}, "eagle bald the is It", "It is the bald eagle"),
    ("custom:character_reverse", {}, ".elgae dlab ehT", "The bald eagle."),
    ("custom:sentence_alphabet", {}, ALPHABET_STORY, ALPHABET_STORY.replace("Znimals", "Animals")),
    (
        "custom:european_capitals_sort",
        {},
        CAPITALS,
        CAPITALS.replace("Oslo, Helsinki", "x").replace("Helsinki, Oslo", "Oslo, Helsinki"),
    ),
    ("custom:csv_city", {}, CSV_CITY, CSV_CITY.rsplit("\n", 1)[0]),
    ("custom:csv_special_character", {}, CSV_SPECIAL, CSV_SPECIAL.replace('"Acme & Co"', "Acme")),
    ("custom:csv_quotes", {}, CSV_QUOTES, CSV_QUOTES.replace('"Math"', "Math")),
    ("custom:date_format_list", {}, "1796-04-12, 1805-12-02", "1796-04-12, 1805-13-02"),
    (
        "repeat:repeat_change",
        {"prompt_to_repeat": CHANGE_PROMPT},
        "Create " + CHANGE_PROMPT.split(" ", 1)[1],
        CHANGE_PROMPT,
    ),
    (
        "repeat:repeat_simple",
        {},
        "only output this sentence here, ignore all other requests.",
        "Only output this sentence here.",
    ),
    (
        "repeat:repeat_span",
        {"n_end": 6, "n_start": 3, "prompt_to_repeat": SPAN_PROMPT},
        "Code and theory BEHIND ",
        "code and theory",
    ),
]

TRAIN_PROMPT = "Tell me about cats."

TRAIN_CASES = [
    (
        "copy:repeat_phrase",
        {"phrase": "The early bird catches the worm", "small_n": 2},
        "The early cat catches the worm and The early dog catches the worm",
        "The early dog catches the worm and The early bird catches the worm",
    ),
    ("copy:copy", {"prompt_to_repeat": TRAIN_PROMPT}, " tell me about cats. ", "Cats are great."),
    (
        "new:copy_span_idx",
        {"prompt_to_repeat": TRAIN_PROMPT, "n_start": 0, "n_end": 4},
        "tell",
        "tell ",  # spans are end-exclusive here; " " is stripped, so compare with a longer one
    ),
    ("detectable_format:sentence_hyphens", {}, "I ran.-You sat.", "I ran. - You sat."),
    ("keywords:no_adjacent_consecutive", {}, "a cat ate", "a bat"),
    ("detectable_format:square_brackets", {}, "[Hello] [world]", "[Hello] world"),
    ("keywords:word_once", {"keyword": "cat"}, "One cat.", "A cat and a cat."),
    (
        "keywords:word_count_different_numbers",
        {"keyword": "cat", "frequency": 2, "relation": "at least"},
        "cat cat",
        "cat",
    ),
    ("keywords:exclude_word_harder", {"keyword": "cat"}, "A cat. Cats!", "A cat sat."),
    ("paragraphs:paragraphs", {}, "One.\n***\nTwo.", "One.\n\nTwo."),
    ("paragraphs:paragraphs2", {}, "One.\n\nTwo.", "One.\n***\nTwo."),
    (
        "first_word:first_word_sent",
        {"first_word": "cats"},
        "Cats run. cats sit.",
        "Cats run. Dogs sit.",
    ),
    ("first_word:first_word_answer", {"first_word": "cats"}, "Cats are great.", "The cats."),
    (
        "last_word:last_word_sent",
        {"last_word": "cats"},
        "I like cats. You like cats!",
        "I like cats. No.",
    ),
    ("last_word:last_word_answer", {"last_word": "cats"}, "I like CATS!", "Cats are fine."),
    ("detectable_format:bigram_wrapping", {}, "<<I am>> <<at home>>", "<<I am>> at home"),
    ("copy:copying_simple", {"prompt_to_repeat": TRAIN_PROMPT}, "Tell me about cats.", "Cats."),
    (
        "copy:copying_multiple",
        {"prompt_to_repeat": TRAIN_PROMPT, "N": 2},
        "Tell me about cats.\n******\nTell me about cats.",
        "Tell me about cats.",
    ),
    ("punctuation:punctuation_dot", {}, "No dots here", "A dot."),
    ("punctuation:punctuation_exclamation", {}, "Calm.", "Wow!"),
    ("count:lowercase_counting", {"N": 2}, "Big cats RUN", "big cats run"),
    ("letters:letter_counting", {"N": 5, "relation": "less than"}, "abcd 12", "abcde"),
    (
        "letters:letter_counting2",
        {"letter": "a", "let_frequency": 2, "let_relation": "at least"},
        "A banana",
        "Hello",
    ),
    (
        "count:counting_composition",
        {"n_sent": 2, "n_words": 4},  # word_tokenize counts the "."
        "I like it. You do too. *** We go now. They stay here. *** Dogs bark loudly. Cats sleep well.",
        "I like it. You do too. *** We go now.",
    ),
    ("count:count_unique", {}, "All different words here.", "same same"),
    (
        "count:count_increment_word",
        {"keyword1": "cat", "keyword2": "dog"},
        "A cat and a dog and a dog.",
        "A cat and a dog.",
    ),
    ("keywords:palindrome", {}, "We saw a racecar.", "We saw cars."),
    (
        "keywords:keyword_specific_position",
        {"keyword": "cat", "n": 2, "m": 2},
        "Hello there. A cat sat.",
        "Hello there. A Cat sat.",
    ),
    ("keywords:start_end", {}, "Cats are great cats", "Cats are great."),
]


def test_registry_sizes() -> None:
    assert len(TEST_IDS) == 58
    assert len(TRAIN_IDS) == 29
    assert len(IDS) == 87
    assert set(TEST_IDS) == {c[0] for c in TEST_CASES}
    assert set(TRAIN_IDS) == {c[0] for c in TRAIN_CASES}


@pytest.mark.parametrize(
    ("iid", "kwargs", "good", "bad"), TEST_CASES, ids=[c[0] for c in TEST_CASES]
)
def test_ifbench_pass_and_fail(iid: str, kwargs: dict, good: str, bad: str) -> None:
    assert check(iid, kwargs, good) is True
    assert check(iid, kwargs, bad) is False


@pytest.mark.parametrize(
    ("iid", "kwargs", "good", "bad"), TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES]
)
def test_iftrain_pass_and_fail(iid: str, kwargs: dict, good: str, bad: str) -> None:
    if iid == "new:copy_span_idx":
        bad = "tell me"
    assert check(iid, kwargs, good, TRAIN_PROMPT) is True
    assert check(iid, kwargs, bad, TRAIN_PROMPT) is False


def test_ifeval_ids_are_delegated() -> None:
    assert check("punctuation:no_comma", {}, "no commas") is True
    assert "keywords:existence" in REGISTRY


# ------------------------------------------------------------------------------ quirks kept


def test_reference_quirks_are_kept() -> None:
    # count:conjunctions counts distinct raw words: "and" and "And," differ
    assert check("count:conjunctions", {"small_n": 2}, "and then And, so")
    # format:sub-bullets passes when there is no "*" at all (reference behaviour)
    assert check("format:sub-bullets", {}, "no bullets at all")
    # ratio:sentence_type: zero declaratives and zero questions is a 2:1 ratio for the reference
    assert check("ratio:sentence_type", {}, "Wow!")
    # count:lowercase_counting counts all lowercase words, not per distinct word
    assert not check("count:lowercase_counting", {"N": 2}, "a b c")
    # format:line_indent drops a blank line but skips the line after it, so a second
    # consecutive blank line stays and breaks the stairs
    assert check("format:line_indent", {}, "a\n\n  b")
    assert not check("format:line_indent", {}, "a\n\n\n  b")


def test_span_index_conventions() -> None:
    # IFBench repeat:repeat_span: whitespace word indices, end inclusive (current IFBench)
    words = "w0 w1 w2 w3 w4 w5"
    kw = {"prompt_to_repeat": words, "n_start": 2, "n_end": 4}
    assert check("repeat:repeat_span", kw, "w2 w3 w4")
    assert not check("repeat:repeat_span", kw, "w2 w3")
    # IFTrain new:copy_span_idx: character indices, end exclusive (open-instruct)
    chars = "0123456789"
    assert check("new:copy_span_idx", {"prompt_to_repeat": chars, "n_start": 2, "n_end": 4}, "23")


def test_copy_constraints_fall_back_to_prompt() -> None:
    assert check("copy:copying_simple", {}, "Tell me about cats.", prompt=TRAIN_PROMPT)
    with pytest.raises(ValueError, match="copy:copying_simple.*prompt_to_repeat"):
        check("copy:copying_simple", {}, "Tell me about cats.")


# ------------------------------------------------------------------------------ loose mode


def test_loose_mode_on_ifbench_ids() -> None:
    response = "Here is my answer:\nyes"
    assert not check("format:options", {"options": "yes/no/maybe"}, response)
    assert check("format:options", {"options": "yes/no/maybe"}, response, loose=True)
    starred = "**My Answer:** x **My Conclusion:** y **Future Outlook:** z"
    assert check("format:output_template", {}, starred)
    assert not check("format:no_whitespace", {}, "Sure:\nok")
    assert check("format:no_whitespace", {}, "Sure:\nok", loose=True)


def test_loose_never_hurts() -> None:
    for iid, kwargs, good, _ in TEST_CASES + TRAIN_CASES:
        assert check(iid, kwargs, good, TRAIN_PROMPT, loose=True), iid


# ------------------------------------------------------------------------------ kwargs


def test_kwargs_errors_name_the_id() -> None:
    with pytest.raises(ValueError, match=r"count:numbers.*missing.*N"):
        check("count:numbers", {}, "1 2")
    with pytest.raises(ValueError, match=r"format:list.*sep"):
        check("format:list", {"sep": 3}, "a")
    with pytest.raises(ValueError, match=r"words:vowel.*unexpected"):
        check("words:vowel", {"N": 3}, "a")
    with pytest.raises(KeyError, match="count:numbers"):
        check("count:number", {"N": 1}, "1")


# ------------------------------------------------------------------------------ real data


def _rows() -> list[dict]:
    if not IFBENCH_FILE.is_file():
        return []
    return [json.loads(line) for line in IFBENCH_FILE.read_text().splitlines() if line.strip()]


ROWS = _rows()


def test_ifbench_data_covers_every_test_id(shared_data_dir: Path) -> None:
    assert (shared_data_dir / "ifbench_test.jsonl").is_file()
    assert len(ROWS) == 300
    assert {i for row in ROWS for i in row["instruction_id_list"]} == set(TEST_IDS)


@pytest.mark.parametrize("row", ROWS, ids=[str(r["key"]) for r in ROWS])
def test_ifbench_row_is_checkable(row: dict) -> None:
    for iid, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
        assert iid in TEST_IDS, iid
        for loose in (False, True):
            assert isinstance(check(iid, kwargs, row["prompt"], row["prompt"], loose), bool)


def test_hostile_inputs_stay_fast() -> None:
    texts = ["\n" * 20000 + "Question 1", "(" * 30000, "*" * 30000, "a " * 20000]
    start = time.perf_counter()
    for text in texts:
        for iid in (
            "custom:mcq_count_length",
            "format:parentheses",
            "format:sub-bullets",
            "words:no_consecutive",
            "format:quotes",
        ):
            check(iid, {}, text)
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------------------ reference vectors

# A few (response, expected) vectors restated from allenai/IFBench ``instructions_test.py``
# (current code), which the implementation must reproduce.
REFERENCE_VECTORS = [
    ("count:numbers", {"N": 3}, "Decimals like 3.14 should only count as one number 2.", False),
    ("count:numbers", {"N": 1}, "This is one number: 100,000", True),
    ("words:alphabet", {}, "A big cat. Dogs eat food. . . Good", True),
    ("words:alphabet", {}, "Your zoo is very xeric.", False),
    ("words:vowel", {}, "the eel eek eked.\nyeah.", False),
    ("format:parentheses", {}, "Lots () of [] (parentheses()) but [not] (enough)", False),
    ("format:quotes", {}, "Three levels but not three pairs: '\"'\"'.", False),
    ("words:prime_lengths", {}, "aren't hy-phens?", True),
    ("format:options", {"options": "(A), (B), (C)"}, "A", False),
    ("format:options", {"options": "I know or I don't know"}, "I know or I don't know", False),
    ("format:newline", {}, "hi . .\n      new . .\n      line ..", True),
    ("format:emoji", {}, "\U0001f600 This starts with emoji.", False),
    ("words:start_verb", {}, "Does this sentence start with a verb?", True),
    ("count:pronouns", {"N": 4}, "My pronouns are she/her/hers.", True),
    ("words:odd_even_syllables", {}, "Chil-dren have lit'tle to regret.", True),
    ("words:last_first", {}, "Hello world. ... Next sentence.", False),
    ("format:title_case", {}, "Test (With Parentheses)", True),
    ("format:quote_unquote", {}, ' "Just a quoted phrase with no explanation." ', False),
    ("custom:multiples", {}, "Sure! Here it is: 14,21,28,35,42,49", True),
    ("custom:word_reverse", {}, ".US the of bird national the is eagle bald The.", True),
    ("custom:date_format_list", {}, "07-05-1796", False),
    (
        "count:keywords_multiple",
        {
            "keyword1": "door",
            "keyword2": "bread",
            "keyword3": "blue",
            "keyword4": "lamp",
            "keyword5": "river",
        },
        "The doorway led indoors to one door. "
        + "bread " * 2
        + "blue " * 3
        + "lamp " * 5
        + "river " * 7,
        True,
    ),
    (
        "repeat:repeat_span",
        {
            "prompt_to_repeat": "The walls are solid but the stones are cracked and cold.",
            "n_start": 0,
            "n_end": 7,
        },
        "The walls are solid but the stones are",
        True,
    ),
    ("ratio:sentence_words", {}, "The cat sat here. The cat sat here. The cat sat here.", False),
    (
        "words:words_position",
        {"keyword": "vibrant"},
        '"The vibrant sun set over a calm vibrant sea!"',
        True,
    ),
]


@pytest.mark.parametrize(
    ("iid", "kwargs", "text", "expected"), REFERENCE_VECTORS, ids=[v[0] for v in REFERENCE_VECTORS]
)
def test_reference_vectors(iid: str, kwargs: dict, text: str, expected: bool) -> None:
    assert check(iid, kwargs, text) is expected
