"""Suite metrics from rows (breakdowns, maj@k classes) and the markdown report."""

from __future__ import annotations

from typing import Any

import pytest

from eval.report import compute_suite_metrics, markdown_report


def _rows(scores: dict[str, list[float]]) -> list[dict[str, Any]]:
    return [
        {
            "id": pid,
            "sample": j,
            "score": s,
            "extracted": "1",
            "num_tokens": 10 * (j + 1),
            "finish_reason": "length" if j == 1 else "stop",
        }
        for pid, row in scores.items()
        for j, s in enumerate(row)
    ]


EXAMPLES = [
    {"id": "a", "subject": "Algebra", "level": 1},
    {"id": "b", "subject": "Algebra", "level": 5},
    {"id": "c", "subject": "Geometry", "level": 5},
]


def test_math_metrics_and_breakdown() -> None:
    rows = _rows({"a": [1, 1], "b": [0, 1], "c": [0, 0]})
    classes = [[0, 0], [0, 1], [None, None]]
    m = compute_suite_metrics("math500", "math", rows, EXAMPLES, 2, ("subject", "level"), classes)
    assert m["avg@n"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["pass@2"] == pytest.approx(2 / 3)
    # maj@2: a -> class 0 correct; b -> tie 0 (wrong, first seen) vs 1; c -> no votes
    assert m["maj@2"] == pytest.approx(1 / 3)
    assert m["maj@1"] == pytest.approx(1 / 3)
    assert m["truncation_rate"] == 0.5 and m["mean_tokens"] == 15 and m["max_tokens"] == 20
    subj = m["breakdown"]["subject"]
    assert subj["Algebra"] == {"num_problems": 2, "avg@n": 0.75, "pass@2": 1.0}
    assert subj["Geometry"] == {"num_problems": 1, "avg@n": 0.0, "pass@2": 0.0}
    assert list(m["breakdown"]["level"]) == ["1", "5"]
    assert m["breakdown"]["level"]["5"]["avg@n"] == pytest.approx(0.25)


def test_missing_samples_are_an_error() -> None:
    rows = _rows({"a": [1, 1], "b": [0], "c": [0, 0]})
    with pytest.raises(ValueError, match=r"example 'b' lacks samples \[1\]"):
        compute_suite_metrics("x", "math", rows, EXAMPLES, 2)


def test_markdown_with_different_n() -> None:
    def suite(n: int) -> dict[str, Any]:
        rows = _rows({"a": [1] * n, "b": [0] * n, "c": [1] + [0] * (n - 1)})
        m = compute_suite_metrics("s", "math", rows, EXAMPLES, n)
        st = {
            "n": n,
            "temperature": 0.6,
            "top_p": 0.95,
            "top_k": -1,
            "max_tokens": 9,
            "prompt_template": "boxed",
        }
        return {
            "scorer": "math",
            "headline": "avg@n",
            "metrics": m,
            "settings": st,
            "data": {"path": "f.jsonl", "sha256": "ab" * 32},
        }

    summary = {
        "model": "m",
        "engine": "hf",
        "settings": {"seed": 0, "chat_template": True},
        "suites": {"aime24": suite(4), "math500": suite(2)},
    }
    md = markdown_report(summary)
    assert "engine `hf`, seed 0" in md
    # a summary written before the key was renamed (``backend``) reads the same
    old = {("backend" if k == "engine" else k): v for k, v in summary.items()}
    assert markdown_report(old) == md
    header = next(line for line in md.splitlines() if line.startswith("| suite"))
    assert "pass@1 | pass@2 | pass@4 | maj@n" in header
    row = next(line for line in md.splitlines() if line.startswith("| math500"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # math500 (n=2) has no pass@4: shown as a dash
    assert cells[1:4] == ["3", "2", "0.6"] and cells[7] == "–"
