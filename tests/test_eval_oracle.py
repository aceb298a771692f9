"""Oracle self-checks on every problem of the math suites, and the IF constraint checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eval.oracle import derangement, if_oracle, math_oracle, oracle_completion
from eval.runner import EvalSettings
from eval.scoring import Scorer


@pytest.fixture(scope="module")
def scorer() -> Iterator[Scorer]:
    s = Scorer(EvalSettings(model="x", score_workers=2))
    yield s
    s.close()


def test_math_oracles_all_problems(scorer: Scorer, shared_data_dir: Path) -> None:
    report = math_oracle(["aime24", "aime25", "math500"], shared_data_dir, scorer=scorer)
    counts = {k: (v["oracle_correct"], v["problems"]) for k, v in report.items()}
    assert counts == {"aime24": (30, 30), "aime25": (30, 30), "math500": (500, 500)}
    for name, r in report.items():
        assert r["oracle_misses"] == [], name
        assert r["shuffled_accuracy"] <= 0.05, name
        # every accepted shuffled answer is literally the same answer (e.g. several "2"s)
        assert all(h["same_text"] for h in r["shuffled_hits"]), r["shuffled_hits"]
        assert r["passed"]
    assert report["aime24"]["shuffled_correct"] == 0


def test_if_constraint_checks(scorer: Scorer) -> None:
    report = if_oracle(scorer)
    assert report["failures"] == []
    assert report["cases"] >= 40


def test_oracle_helpers() -> None:
    assert oracle_completion("\\frac{1}{2}") == "The final answer is $\\boxed{\\frac{1}{2}}$."
    perm = derangement(10, seed=3)
    assert sorted(perm) == list(range(10)) and all(i != p for i, p in enumerate(perm))
    assert perm == derangement(10, seed=3)


def _partition(labels: list[int | None]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for j, c in enumerate(labels):
        if c is not None:
            groups.setdefault(c, []).append(j)
    return sorted(groups.values())


def test_answer_classes_group_equivalent_answers(scorer: Scorer) -> None:
    classes = scorer.answer_classes(
        [
            ["\\frac{1}{2}", "0.5", "2", "1/2", None, "\\dfrac{1}{2}", "2.0"],
            ["x", " x ", "y"],
            [None, None],
        ]
    )
    # 0.5, 1/2, \dfrac{1}{2} join \frac{1}{2}; 2.0 joins 2; unanswered samples have no class
    assert _partition(classes[0]) == [[0, 1, 3, 5], [2, 6]]
    assert classes[0][4] is None
    assert _partition(classes[1]) == [[0, 1], [2]]
    assert classes[2] == [None, None]
