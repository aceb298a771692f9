"""Reward values at the boundary: non-finite or huge scores are failures, never a crash, and the
runner keeps per-reward failure counts for the run's final table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rewards.runner import RewardRunner


@pytest.fixture()
def hostile(tmp_path: Path) -> Path:
    p = tmp_path / "hostile.py"
    p.write_text(
        "def huge(completion, example):\n"
        "    return {'a': 1e300, 'b': -1e300, 'c': 0.5}[completion]\n"
        "def over32(completion, example):\n"
        "    return 1e100\n"
        "def fine(completion, example):\n"
        "    return float(len(completion))\n"
        "def flaky(completion, example):\n"
        "    if completion != 'c':\n"
        "        raise RuntimeError('boom')\n"
        "    return 1.0\n"
    )
    return p


def test_huge_values_fail_not_crash(hostile: Path) -> None:
    specs = [{"name": f"{hostile}:{n}"} for n in ("huge", "over32", "fine")]
    with RewardRunner(specs, num_workers=1) as runner:
        out = runner.score([["a", "b", "c"]], [{"prompt": "p", "answer": "1"}])
        # huge: +-1e300 are out of range (failure_score 0), 0.5 is kept; over32: all out
        assert out.components["huge"] == [[0.0, 0.0, 0.5]]
        assert out.components["over32"] == [[0.0, 0.0, 0.0]]
        assert out.total == [[1.0, 1.0, 1.5]]
        assert out.n_failed == 5
        assert all(math.isfinite(v) for v in out.metrics.values())
        assert out.metrics["reward/huge/failure_rate"] == pytest.approx(2 / 3)
        assert out.metrics["reward/over32/failure_rate"] == 1.0
        assert any("outside [-1e+06, 1e+06]" in e for e in out.errors)
        runner.score([["c"]], [{"prompt": "p", "answer": "1"}])
        summary = runner.failure_summary()
    assert summary["huge"] == {"entries": 4, "failed": 2, "timeout": 0, "rate": 0.5}
    assert summary["fine"]["rate"] == 0.0


def test_max_abs_score_setting(hostile: Path) -> None:
    with RewardRunner([{"name": f"{hostile}:over32"}], num_workers=0, max_abs_score=1e120) as r:
        assert r.score([["x"]], [{"prompt": "p"}]).components["over32"] == [[1e100]]
    with pytest.raises(ValueError, match="max_abs_score"):
        RewardRunner([{"name": "math"}], num_workers=0, max_abs_score=math.inf)


def test_memory_limit_and_thresholds_reachable_from_recipe(tmp_path: Path) -> None:
    from rlvr.config import RecipeError, load_recipe

    r = load_recipe(
        None,
        [
            "model.path=m",
            "reward_runner.memory_limit_mb=512",
            "reward_runner.stop_failure_rate=0.5",
            "reward_runner.max_abs_score=100",
        ],
    )
    assert r.reward_runner.memory_limit_mb == 512
    assert r.reward_runner.stop_failure_rate == 0.5 and r.reward_runner.max_abs_score == 100
    with pytest.raises(RecipeError, match="memory_limit_mb"):
        load_recipe(None, ["model.path=m", "reward_runner.memory_limit_mb=8"])
