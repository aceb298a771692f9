"""Datasets: local files with field mapping, malformed-row reporting, arithmetic task, stream."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rlvr.config import DataConfig
from rlvr.data import DataError, PromptStream, arithmetic_examples, load_examples
from rlvr.data.datasets import load_file


def test_jsonl_field_mapping_and_malformed_rows_reported(tmp_path: Path, caplog) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text(
        json.dumps({"question": "1+1", "gt": 2})
        + "\n"
        + "{not json\n"
        + "\n"
        + json.dumps({"question": "2+2"})
        + "\n"
        + json.dumps({"question": "3+3", "gt": "6", "extra": 1})
        + "\n"
    )
    cfg = DataConfig(source="file", path=str(p), prompt_field="question", answer_field="gt")
    with caplog.at_level(logging.WARNING):
        train, held = load_examples(cfg)
    assert [e["prompt"] for e in train] == ["1+1", "3+3"]
    assert train[0]["answer"] == "2" and train[1]["extra"] == 1 and held == []
    msg = caplog.text
    assert "skipped 2 malformed row(s) of 4" in msg
    assert f"{p}:2: not valid JSON" in msg and f"{p}:line 4: missing field(s) ['gt']" in msg


def test_all_rows_malformed_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"line 2: row is list"):
        load_file(p, DataConfig(source="file", path=str(p)))


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data file not found"):
        load_file(tmp_path / "x.jsonl", DataConfig(source="file", path="x"))
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported data file type"):
        load_file(bad, DataConfig(source="file", path=str(bad)))


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"problem": ["a", "b"], "answer": ["1", None]}), p)
    out = load_file(p, DataConfig(source="file", path=str(p), prompt_field="problem"))
    assert [e["prompt"] for e in out] == ["a"]


def test_arithmetic_is_seeded_disjoint_and_exact() -> None:
    train, held = arithmetic_examples(2, ["+", "-", "*"], num_train=500, num_eval=50, seed=7)
    again, held2 = arithmetic_examples(2, ["+", "-", "*"], num_train=500, num_eval=50, seed=7)
    assert train == again and held == held2
    assert not {e["id"] for e in held} & {e["id"] for e in train}
    for e in train + held:
        a, op, b = _parse(e["prompt"])
        assert int(e["answer"]) == {"+": a + b, "-": a - b, "*": a * b}[op]
        assert e["solution"].endswith("\\boxed{" + e["answer"] + "}")


def _parse(prompt: str) -> tuple[int, str, int]:
    body = prompt.rstrip("=")
    for op in "+*":
        if op in body:
            a, b = body.split(op)
            return int(a), op, int(b)
    a, b = body.split("-", 1)
    return int(a), "-", int(b)


def test_prompt_stream_resumes_at_the_same_position() -> None:
    examples = [{"prompt": str(i), "answer": str(i)} for i in range(10)]
    s = PromptStream(examples, seed=3)
    first = s.next_batch(7)
    state = s.state_dict()
    rest = [s.next_batch(4) for _ in range(3)]  # crosses an epoch boundary
    t = PromptStream(examples, seed=3)
    t.load_state_dict(state)
    assert [t.next_batch(4) for _ in range(3)] == rest
    assert len({e["prompt"] for e in first + rest[0][:3]}) == 10  # epoch covers every prompt
    with pytest.raises(DataError, match="dataset of 10 prompts"):
        PromptStream(examples[:5], seed=3).load_state_dict(state)


def test_effort_levels_are_drawn_per_visit_and_resume_identically() -> None:
    examples = [{"prompt": f"p{i}", "answer": str(i)} for i in range(5)]
    s = PromptStream(examples, seed=1, effort_levels=[0.25, 1.0])
    batch = s.next_batch(5)
    assert {e["effort"] for e in batch} <= {0.25, 1.0}
    for e in batch:
        assert e["prompt"].endswith(f"Reasoning effort: {e['effort']:.2f}")
    assert all("effort" not in e for e in examples)  # source rows untouched
    state = s.state_dict()
    nxt = s.next_batch(3)
    t = PromptStream(examples, seed=1, effort_levels=[0.25, 1.0])
    t.load_state_dict(state)
    assert t.next_batch(3) == nxt
