"""Data rows checked at load: empty fields say empty, non-string answers are reported and
counted, unencodable text is refused, prompts over the token budget are reported per row."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rlvr.config import DataConfig
from rlvr.data.datasets import DataError, DataReport, check_prompt_lengths, load_file


def _write(path: Path, rows: list) -> Path:
    # json.dumps escapes a lone surrogate as \ud800, which json.loads turns back into one
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_row_problems_named_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = _write(
        tmp_path / "d.jsonl",
        [
            {"prompt": "1+1", "answer": "2"},
            {"prompt": "", "answer": "3"},
            {"prompt": "2+2", "answer": "   "},
            {"prompt": "3+3", "answer": 6},
            {"prompt": "4+4", "answer": [8]},
            {"prompt": "bad \ud800 text", "answer": "1"},
            {"prompt": 5, "answer": "5"},
            {"prompt": "5+5", "answer": 10.0},
        ],
    )
    report = DataReport()
    with caplog.at_level(logging.WARNING):
        rows = load_file(p, DataConfig(source="file", path=str(p)), report)
    assert [r["prompt"] for r in rows] == ["1+1", "3+3", "5+5"]
    assert [r["answer"] for r in rows] == ["2", "6", "10.0"]
    text = caplog.text
    assert f"{p}:line 2: empty field(s) ['prompt']" in text
    assert f"{p}:line 3: empty field(s) ['answer']" in text
    assert f"{p}:line 5: field 'answer' is list" in text
    assert f"{p}:line 6: field 'prompt' has an unpaired surrogate" in text
    assert "2 row(s) give the answer as a number" in text
    assert report.as_dict() == {
        "rows": 8,
        "used": 3,
        "skipped": {"empty field": 2, "unpaired surrogate": 1, "wrong type": 2},
        "numeric_answers": 2,
    }


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_file(p, DataConfig(source="file", path=str(p)))


def test_overlong_prompts_reported_per_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    examples = [{"id": i, "prompt": "x" * n} for i, n in enumerate([3, 12, 5, 20])]
    ids = lambda ex: list(range(len(ex["prompt"])))  # noqa: E731 - one token per character
    report = DataReport(rows=4, used=4)
    with caplog.at_level(logging.WARNING):
        kept = check_prompt_lengths(examples, ids, 10, policy="skip", report=report)
    assert [e["id"] for e in kept] == [0, 2]
    assert "2 of 4 prompt(s) are longer than 10 tokens" in caplog.text
    assert "row 2 id 1: 12 tokens; row 4 id 3: 20 tokens" in caplog.text
    assert report.as_dict() == {
        "rows": 4,
        "used": 2,
        "overlong_prompts": 2,
        "overlong_policy": "skip",
    }
    assert len(check_prompt_lengths(examples, ids, 10, policy="truncate")) == 4
    with pytest.raises(DataError, match="refused"):
        check_prompt_lengths(examples, ids, 10, policy="error")
