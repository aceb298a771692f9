"""Suite data loading, validation errors (file and row named), templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.suites import PROMPT_TEMPLATES, SUITES, get_suite, load_examples, render_prompt
from eval.suites import resolve_template as resolve
from eval.suites.base import DataError


@pytest.mark.parametrize(
    ("name", "rows"),
    [("aime24", 30), ("aime25", 30), ("math500", 500), ("ifeval", 541), ("ifbench", 300)],
)
def test_shared_data_loads(name: str, rows: int, shared_data_dir: Path) -> None:
    examples, source = load_examples(get_suite(name), shared_data_dir)
    assert len(examples) == rows == source.num_rows
    assert source.sha256 and len(source.sha256) == 64
    assert len({e["id"] for e in examples}) == rows


def test_math500_fields_and_aime_answers(shared_data_dir: Path) -> None:
    examples, _ = load_examples(get_suite("math500"), shared_data_dir)
    assert examples[0]["id"] == "test/precalculus/807.json"
    assert examples[0]["subject"] == "Precalculus" and examples[0]["level"] == 2
    aime, _ = load_examples(get_suite("aime25"), shared_data_dir)
    assert [e["answer"] for e in aime[:3]] == ["70", "588", "16"]


def test_ifbench_null_kwargs_are_dropped(shared_data_dir: Path) -> None:
    examples, _ = load_examples(get_suite("ifbench"), shared_data_dir)
    ex = next(e for e in examples if e["instruction_id_list"] == ["count:keywords_multiple"])
    assert None not in ex["kwargs"][0].values()
    assert set(ex["kwargs"][0]) == {f"keyword{i}" for i in range(1, 6)}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "aime24.jsonl",
        [
            json.dumps({"id": "a", "problem": "p", "answer": "1"}),
            '{"id": "b", "problem": ',
        ],
    )
    with pytest.raises(DataError, match=r"aime24\.jsonl:2: invalid JSON"):
        load_examples(get_suite("aime24"), tmp_path)
    assert f.exists()


def test_missing_field_names_file_and_line(tmp_path: Path) -> None:
    _write(
        tmp_path / "math500.jsonl",
        [
            json.dumps({"unique_id": "x/1", "problem": "p", "answer": "1"}),
            "",
            json.dumps({"unique_id": "x/2", "problem": "p"}),
        ],
    )
    with pytest.raises(DataError, match=r"math500\.jsonl:3: missing field 'answer'"):
        load_examples(get_suite("math500"), tmp_path)


def test_bad_aime_answer_and_leading_zero(tmp_path: Path) -> None:
    _write(tmp_path / "aime24.jsonl", [json.dumps({"id": "a", "problem": "p", "answer": "025"})])
    examples, _ = load_examples(get_suite("aime24"), tmp_path)
    assert examples[0]["answer"] == "25"
    _write(
        tmp_path / "aime24.jsonl",
        [
            json.dumps({"id": "a", "problem": "p", "answer": "25"}),
            json.dumps({"id": "b", "problem": "p", "answer": "x/2"}),
        ],
    )
    with pytest.raises(DataError, match=r"aime24\.jsonl:2: AIME answer 'x/2'"):
        load_examples(get_suite("aime24"), tmp_path)


def test_duplicate_ids_and_empty_fields(tmp_path: Path) -> None:
    _write(
        tmp_path / "aime25.jsonl",
        [
            json.dumps({"id": "a", "problem": "p", "answer": "1"}),
            json.dumps({"id": "a", "problem": "q", "answer": "2"}),
        ],
    )
    with pytest.raises(DataError, match=r"aime25\.jsonl:2: duplicate id 'a'"):
        load_examples(get_suite("aime25"), tmp_path)
    _write(tmp_path / "aime25.jsonl", [json.dumps({"id": "a", "problem": "  ", "answer": "1"})])
    with pytest.raises(DataError, match=r"aime25\.jsonl:1: field 'problem' is empty"):
        load_examples(get_suite("aime25"), tmp_path)


def test_if_row_validation(tmp_path: Path) -> None:
    _write(
        tmp_path / "ifeval_input.jsonl",
        [
            json.dumps(
                {
                    "key": 1,
                    "prompt": "p",
                    "instruction_id_list": ["punctuation:no_comma"],
                    "kwargs": [{}, {}],
                }
            ),
        ],
    )
    with pytest.raises(DataError, match=r"ifeval_input\.jsonl:1: 'kwargs' has 2 entries"):
        load_examples(get_suite("ifeval"), tmp_path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no data file found \(tried .*aime24\.jsonl"):
        load_examples(get_suite("aime24"), tmp_path, allow_hub=False)
    with pytest.raises(DataError, match=r"nothere\.jsonl: data file for suite 'aime24'"):
        load_examples(get_suite("aime24"), None, path=tmp_path / "nothere.jsonl")


def test_parquet_and_aliases(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # lm-eval's AIME mirror uses capitalised fields
    table = pa.table({"ID": ["x", "y"], "Problem": ["p1", "p2"], "Answer": [7, 80]})
    pq.write_table(table, tmp_path / "aime24.parquet")
    examples, source = load_examples(get_suite("aime24"), tmp_path)
    assert [(e["id"], e["problem"], e["answer"]) for e in examples] == [
        ("x", "p1", "7"),
        ("y", "p2", "80"),
    ]
    assert source.path.endswith("aime24.parquet")
    table = pa.table({"ID": ["z"], "Problem": ["p"]})
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet row 1: missing field"):
        load_examples(get_suite("aime24"), None, path=tmp_path / "bad.parquet")


def test_arithmetic_suite_is_the_held_out_split() -> None:
    from rlvr.data.arithmetic import ArithmeticTask

    examples, source = load_examples(get_suite("arithmetic"), None)
    train, held = ArithmeticTask(2, ("+",), 1234).splits(50, 200)
    assert [e["problem"] for e in examples] == [h["prompt"] for h in held]
    assert not {e["problem"] for e in examples} & {t["prompt"] for t in train}
    assert source.sha256 is None and len(examples) == 200


def test_templates() -> None:
    math = get_suite("math500")
    text = render_prompt(math, {"problem": "1+1?"}, resolve(math, None))
    assert text == "1+1?\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert resolve(math, "simple_evals") == PROMPT_TEMPLATES["simple_evals"]
    assert render_prompt(math, {"problem": "Q"}, resolve(math, "Problem: {prompt}")) == (
        "Problem: Q"
    )
    # the old placeholder still works (a deprecation warning, rlvr/data/prompts.py)
    assert render_prompt(math, {"problem": "Q"}, resolve(math, "Problem: {problem}")) == (
        "Problem: Q"
    )
    with pytest.raises(ValueError, match="neither a registered name"):
        resolve(math, "no placeholder")
    ifeval = get_suite("ifeval")
    # IF prompts are never wrapped by a math template
    assert render_prompt(ifeval, {"prompt": "Write."}, resolve(ifeval, "boxed")) == "Write."


def test_suite_registry() -> None:
    assert set(SUITES) == {"aime24", "aime25", "math500", "ifeval", "ifbench", "arithmetic"}
    assert get_suite("MATH-500").name == "math500"
    with pytest.raises(KeyError, match="unknown suite"):
        get_suite("gsm8k")
