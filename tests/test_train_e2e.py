"""End-to-end RL runs on the tiny model: both engines, checkpoints that load in transformers
and vLLM, resume after SIGTERM-style stop and after kill -9, micro-batch invariance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlvr.config import Recipe
from rlvr.metrics import read_metrics
from rlvr.trainer import Trainer

COMPARED = ["reward/mean", "loss", "entropy", "grad_norm", "length/mean", "kl", "logprob_mismatch"]


def make_recipe(model_dir: Path, out: Path, fixtures: Path, **over) -> Recipe:
    tree = {
        "name": "e2e",
        "output_dir": str(out),
        "seed": 3,
        "model": {"path": str(model_dir)},
        "data": {
            "source": "arithmetic",
            "arithmetic": {"digits": 1, "num_train": 64, "num_eval": 8},
        },
        "rollout": {"engine": "hf", "group_size": 4, "max_new_tokens": 8, "temperature": 1.0},
        "rewards": [
            {"name": "math"},
            {"name": f"{fixtures / 'rewards_fixture.py'}:digit_fraction", "key": "digits"},
        ],
        "reward_runner": {"num_workers": 1},
        "algo": {"kl_coef": 0.05},
        "train": {"steps": 3, "prompts_per_step": 3, "micro_batch_size": 5, "lr": 3e-3},
        "checkpoint": {"every": 2, "keep_last": 2},
        "logging": {"tensorboard": True, "plots": True, "progress": False},
    }
    for key, value in over.items():
        node = tree
        parts = key.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return Recipe.model_validate(tree)


def run(recipe: Recipe, **kw) -> dict:
    trainer = Trainer(recipe, **kw)
    try:
        return trainer.train()
    finally:
        if "engine" not in kw:
            trainer.close()
        else:
            trainer.rewards.close()


def test_hf_engine_run_writes_metrics_plots_and_loadable_checkpoints(
    tiny_model_dir, tmp_path, fixtures_dir
) -> None:
    recipe = make_recipe(tiny_model_dir, tmp_path, fixtures_dir)
    summary = run(recipe)
    run_dir = recipe.run_dir
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in [
        "reward/mean",
        "reward/digits/mean",
        "reward/math/mean",
        "accuracy",
        "entropy",
        "clip_fraction",
        "kl",
        "logprob_mismatch",
        "length/mean",
        "length/max",
        "length/truncated_fraction",
        "tokens_per_s",
        "time/step",
        "time/generate",
    ]:
        assert key in rows[0], key
    assert rows[0]["logprob_mismatch"] < 1e-4  # HF engine and trainer agree in float32
    assert any(r["grad_norm"] > 0 for r in rows)
    assert (run_dir / "recipe.yaml").is_file() and (run_dir / "plots" / "overview.png").is_file()
    assert list((run_dir / "tensorboard").iterdir())
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))
    assert ckpts == ["step_000002", "step_000003"]
    final = Path(summary["checkpoint"])
    assert (final / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(final)
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    moved = sum(
        float((a - b).detach().abs().sum())
        for a, b in zip(loaded.parameters(), start.parameters(), strict=True)
    )
    assert moved > 0  # training changed the weights


@pytest.mark.vllm
def test_vllm_engine_run_and_checkpoint_loads_in_vllm(
    tiny_model_dir, tmp_path, fixtures_dir, vllm_engine
) -> None:
    from rlvr.rollout import SamplingParams
    from rlvr.rollout.vllm_engine import VLLMEngine

    recipe = make_recipe(
        tiny_model_dir,
        tmp_path,
        fixtures_dir,
        rollout__engine="vllm",
        train__steps=2,
        algo__kl_coef=0.0,
    )
    summary = run(recipe, engine=vllm_engine)
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert len(rows) == 2
    # vLLM's sampling log-probs vs the trainer's recomputation, on the first (synced) step
    assert rows[0]["logprob_mismatch"] < 1e-4
    assert rows[1]["time/sync"] > 0
    final = summary["checkpoint"]
    fresh = VLLMEngine(final, seed=0, max_model_len=256)
    try:
        prompt = [[257, 84, 82, 68, 81, 198, 17, 10, 18, 29, 258, 198, 257, 64]]
        greedy = SamplingParams(n=1, temperature=0.0, max_tokens=8)
        a = fresh.generate(prompt, greedy)[0][0].token_ids
        b = vllm_engine.generate(prompt, greedy)[0][0].token_ids  # holds the trained weights
        assert a == b
    finally:
        fresh.close()
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        vllm_engine.update_weights(base.state_dict().items())


def _compare(a: list[dict], b: list[dict], steps: list[int]) -> None:
    by_a = {r["step"]: r for r in a}
    by_b = {r["step"]: r for r in b}
    for s in steps:
        for k in COMPARED:
            assert by_a[s][k] == pytest.approx(by_b[s][k], rel=1e-5, abs=1e-7), (s, k)


def test_resume_after_stop_reproduces_uninterrupted_run(
    tiny_model_dir, tmp_path, fixtures_dir
) -> None:
    full = make_recipe(
        tiny_model_dir, tmp_path / "a", fixtures_dir, train__steps=4, checkpoint__every=100
    )
    run(full)
    reference = read_metrics(full.run_dir / "metrics.jsonl")

    part = make_recipe(
        tiny_model_dir, tmp_path / "b", fixtures_dir, train__steps=4, checkpoint__every=100
    )
    trainer = Trainer(part)
    original = trainer.train_step

    def stop_after_two(step: int) -> dict:
        out = original(step)
        if step == 2:
            trainer.signals.request(signal.SIGTERM, None)  # as the signal handler would
        return out

    trainer.train_step = stop_after_two  # type: ignore[method-assign]
    summary = trainer.train()
    trainer.close()
    assert summary["interrupted"] and len(read_metrics(part.run_dir / "metrics.jsonl")) == 2

    resumed = part.model_copy(update={"resume": True})
    run(resumed)
    after = read_metrics(part.run_dir / "metrics.jsonl")
    assert [r["step"] for r in after] == [1, 2, 3, 4]
    _compare(reference, after, [1, 2, 3, 4])


def test_kill_9_then_resume_continues_from_last_checkpoint(
    tiny_model_dir, tmp_path, fixtures_dir
) -> None:
    import yaml

    recipe = make_recipe(
        tiny_model_dir,
        tmp_path,
        fixtures_dir,
        train__steps=6,
        checkpoint__every=2,
        logging__tensorboard=False,
        logging__plots=False,
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe.model_dump(mode="json")))
    cmd = [sys.executable, "-m", "rlvr.cli", "train", str(path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = recipe.run_dir / "checkpoints" / "latest"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not latest.exists():
            time.sleep(0.2)
        assert latest.exists(), "no checkpoint within the time limit"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = int(
        json.loads(
            (
                recipe.run_dir / "checkpoints" / latest.read_text().strip() / "trainer_state.json"
            ).read_text()
        )["step"]
    )
    assert saved >= 2
    done = subprocess.run(
        cmd + ["resume=true"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_micro_batches_give_the_same_gradient(tiny_model_dir, tmp_path, fixtures_dir) -> None:
    params = {}
    for micro in (12, 5, 1):
        recipe = make_recipe(
            tiny_model_dir,
            tmp_path / str(micro),
            fixtures_dir,
            train__micro_batch_size=micro,
            algo__loss_aggregation="token_mean",
        )
        trainer = Trainer(recipe)
        seen: list[torch.Tensor] = []
        step = trainer.optimizer.step

        def record_then_step(*args, _seen=seen, _model=trainer.model, _step=step, **kwargs):
            _seen.append(torch.cat([p.grad.flatten() for p in _model.parameters()]))
            return _step(*args, **kwargs)

        trainer.optimizer.step = record_then_step  # type: ignore[method-assign]
        try:
            trainer.train_step(1)
        finally:
            trainer.close()
        assert all(p.grad is None for p in trainer.model.parameters())  # freed after the step
        params[micro] = seen[0]
    assert params[12].abs().max() > 0
    assert torch.allclose(params[12], params[5], rtol=1e-4, atol=1e-7)
    assert torch.allclose(params[12], params[1], rtol=1e-4, atol=1e-7)


def test_update_moves_logprobs_in_the_advantage_direction(
    tiny_model_dir, tmp_path, fixtures_dir
) -> None:
    """One GRPO step raises the log-likelihood of positive-advantage completions relative to
    negative ones: sum_i A_i * (log p_after(o_i) - log p_before(o_i)) > 0."""
    recipe = make_recipe(
        tiny_model_dir,
        tmp_path,
        fixtures_dir,
        algo__kl_coef=0.0,
        train__lr=1e-3,
        rewards=[{"name": f"{fixtures_dir / 'rewards_fixture.py'}:digit_fraction"}],
    )
    trainer = Trainer(recipe)
    try:
        batch, _ = trainer.sampler.rollout(1)
        trainer.sampler.compute_advantages(batch, 1)
        train = batch.to_train_batch(trainer.pad_id)
        before = trainer.learner.frozen_logprobs(trainer.model, train).sum(dim=1)
        trainer.learner.update(train)
        after = trainer.learner.frozen_logprobs(trainer.model, train).sum(dim=1)
    finally:
        trainer.close()
    adv = batch.advantages.reshape(-1)
    assert adv.abs().sum() > 0
    assert float((adv * (after - before)).sum()) > 0
