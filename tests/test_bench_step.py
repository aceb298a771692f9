"""scripts/bench_step.py: presets, device settings, and the ratios its --json reports (no
benchmark is run)."""

from __future__ import annotations

import importlib.util
import json
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
    assert (args.prompts, args.group, args.new_tokens, args.reward) == (8, 8, 128, "paired")
    args = b._apply_scale(b.build_parser(), ["--scale", "25m", "--new-tokens", "16"])
    assert args.new_tokens == 16 and args.reward == "paired"
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


def test_cuda_settings_reach_both_sides_and_cpu_stays_fp32(tmp_path: Path) -> None:
    from rlvr.config import Recipe

    b = _load()
    args = b._apply_scale(b.build_parser(), ["--scale", "0.5b", "--device", "cuda"])
    assert (args.prompts, args.group, args.new_tokens, args.dtype) == (8, 8, 256, "bfloat16")
    shape = b.SCALES["0.5b"]["shape"]
    assert (shape["hidden_size"], shape["num_layers"], shape["vocab_size"]) == (896, 24, 151936)
    assert (shape["num_heads"], shape["num_kv_heads"], shape["intermediate_size"]) == (14, 2, 4864)
    args.model, args.num_train = str(tmp_path), 100
    for best in (True, False):
        r = Recipe.model_validate(b.rlvr_recipe(args, tmp_path, best))
        assert r.train.device == "cuda" and r.model.dtype == "bfloat16"
        assert (r.rollout.dtype or r.model.dtype) == "bfloat16"
    trl = b.trl_config_kwargs(args, tmp_path)
    assert trl["use_cpu"] is False and trl["bf16"] is True
    cpu = b._apply_scale(b.build_parser(), ["--scale", "25m"])
    assert (cpu.device, cpu.dtype, cpu.best_engine) == ("cpu", "float32", "vllm")
    cpu.model, cpu.num_train = str(tmp_path), 100
    r = Recipe.model_validate(b.rlvr_recipe(cpu, tmp_path, True))
    assert r.train.device == "cpu" and r.model.dtype == "float32" and r.rollout.dtype == "float32"
    trl = b.trl_config_kwargs(cpu, tmp_path)
    assert trl["use_cpu"] is True and trl["bf16"] is False


def test_cuda_memory_ratio_is_the_cuda_allocator_peak() -> None:
    b = _load()
    args = b._apply_scale(b.build_parser(), ["--model", "/nonexistent", "--device", "cuda"])

    def step(t: float, rss: float, cuda: float) -> dict:
        return {**_step(t, rss), "cuda_before_mib": 100.0, "cuda_peak_mib": cuda,
                "cuda_reserved_peak_mib": cuda + 50.0}  # fmt: skip

    results = {"rlvr_best": [step(1.0, 90.0, 300.0)], "trl": [step(2.0, 200.0, 600.0)]}
    finals = {s: {"process_peak_mib": 0.0} for s in results}
    s = b._summarize(args, ["rlvr_best", "trl"], results, {"rlvr_best": [], "trl": []}, finals,
                     "", "")  # fmt: skip
    assert s["memory_basis"] == "cuda_max_memory_allocated" and s["memory_ratio"] == 0.5
    assert s["ratios_vs_trl"]["rlvr_best"]["peak_rss"] == 0.5  # (90 + 10) / 200, host side
    assert s["rlvr_best"]["cuda_step_increment_mib"] == 200.0 and s["step_ratio"] == 0.5
    assert s["config"]["device"] == "cuda" and "bf16=True" in s["config"]["precision"]


def test_paired_coin_reward_gives_every_side_the_same_dead_groups() -> None:
    """Dead (all-zero) groups are chosen by the prompt alone: about q = 27 % of prompts, the
    same whatever the completions; live groups are a fair coin per completion; the TRL
    adapter scores exactly as rlvr's reward does."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_reward import paired_coin_reward
    from bench_step import _trl_paired_reward

    prompts = [f"{a}+{b}=" for a in range(40) for b in range(25)]
    dead = []
    for x in prompts:
        scores = [paired_coin_reward(f"{x} completion {k}", {"prompt": x}) for k in range(24)]
        other = [paired_coin_reward(f"another {k}", {"prompt": x}) for k in range(8)]
        dead.append(not any(scores))
        if dead[-1]:
            assert not any(other)  # dead whatever was sampled
    assert 0.23 < sum(dead) / len(dead) < 0.31
    live = [x for x, d in zip(prompts, dead, strict=True) if not d]
    coins = [paired_coin_reward(f"c{k}", {"prompt": x}) for x in live[:100] for k in range(10)]
    assert 0.45 < sum(coins) / len(coins) < 0.55
    chat = [[{"role": "user", "content": x}] for x in prompts[:50]]
    texts = [[{"role": "assistant", "content": f"c{i}"}] for i in range(50)]
    ours = [paired_coin_reward(f"c{i}", {"prompt": x}) for i, x in enumerate(prompts[:50])]
    assert _trl_paired_reward(chat, texts) == ours


def test_kv_cache_for_one_step_by_hand(tmp_path: Path) -> None:
    """25m shape (8 layers, 4 KV heads of 64, fp32): 2 x 8 x 4 x 64 x 4 = 16 KiB per token;
    64 rows x (64 + 128 + 16) = 13,312 tokens; doubled: 436,207,616 bytes = 6.5 / 16 GiB,
    rounded up to 7 / 16 = 0.4375; bf16 halves it to 3.25 -> 4 / 16."""
    b = _load()
    config = {
        "num_attention_heads": 8,
        "hidden_size": 512,
        "num_hidden_layers": 8,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert b.kv_cache_gib_for(str(tmp_path), 64, 128, "float32") == 0.4375
    assert b.kv_cache_gib_for(str(tmp_path), 64, 128, "bfloat16") == 0.25
    # one full-length sequence at least: 1 row x 208 tokens < 512 positions
    assert b.kv_cache_gib_for(str(tmp_path), 1, 128, "float32") == 1 / 16


def test_peak_phase_is_the_first_phase_reaching_the_peak() -> None:
    b = _load()
    clock = b.Clock()
    clock.hwm_marks = [("generate", 100), ("rollout", 100), ("forward", 180), ("backward", 180)]
    assert clock.peak_phase(180) == "forward"  # backward ended with the peak already reached
    assert clock.peak_phase(100) == "generate"  # nested: the inner phase ends first
    assert clock.peak_phase(200) == "other"  # reached outside every timed phase
    clock.wrap("optimizer step", lambda: None)()
    assert clock.hwm_marks[-1][0] == "optimizer step" and clock.hwm_marks[-1][1] > 0
    clock.reset()
    assert clock.hwm_marks == []
