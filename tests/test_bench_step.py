"""scripts/bench_step.py: presets, and the ratios its --json reports (no benchmark is run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("bench_step", ROOT / "scripts" / "bench_step.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_step"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_scale_presets_under_explicit_flags() -> None:
    b = _load()
    args = b._apply_scale(b.build_parser(), ["--scale", "25m"])
    assert (args.prompts, args.group, args.new_tokens, args.reward) == (8, 8, 128, "coin")
    args = b._apply_scale(b.build_parser(), ["--scale", "25m", "--new-tokens", "16"])
    assert args.new_tokens == 16 and args.reward == "coin"
    assert b.SCALES["100m"]["shape"]["vocab_size"] == 151936


def _step(t: float, peak: float) -> dict:
    return {"time": t, "phases": {}, "rss_before_mib": 1.0, "step_peak_mib": peak,
            "helpers_peak_mib": 10.0}  # fmt: skip


def test_step_ratio_is_the_median_of_paired_ratios() -> None:
    b = _load()
    args = b._apply_scale(b.build_parser(), ["--model", "/nonexistent"])
    results = {
        "rlvr_best": [_step(1.0, 90.0), _step(3.0, 80.0), _step(1.0, 70.0)],
        "trl": [_step(4.0, 200.0), _step(4.0, 100.0), _step(1.0, 150.0)],
    }
    finals = {s: {"process_peak_mib": 0.0} for s in results}
    warm = {s: [] for s in results}
    s = b._summarize(args, ["rlvr_best", "trl"], results, warm, finals, "", "")
    # per repetition: 0.25, 0.75, 1.0 -> median 0.75; memory (90 + 10) / 200
    assert s["step_ratio"] == 0.75
    assert s["memory_ratio"] == 0.5
    assert s["ratios_vs_trl"]["rlvr_best"]["time"] == 1.0 / 4.0


def test_coin_reward_is_deterministic_with_rate_p() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_reward import coin_reward

    scores = [coin_reward(f"completion {i}") for i in range(4000)]
    assert scores == [coin_reward(f"completion {i}") for i in range(4000)]
    assert 0.12 < sum(scores) / len(scores) < 0.18
    assert coin_reward("x", p=0.0) == 0.0 and coin_reward("x", p=1.0) == 1.0
