"""One-step off-policy training (``rollout.max_staleness: 1``, rlvr/off_policy.py) on the tiny
model: staleness 1 after the first batch, generation overlapping the update, the synchronous
loss when the policy does not move, exact resume, and the vLLM engine."""

from __future__ import annotations

import signal

import pytest
import torch
from test_train_e2e import COMPARED, make_recipe, run
from transformers import AutoModelForCausalLM

from rlvr.metrics import read_metrics
from rlvr.off_policy import ROLLOUT_WEIGHTS
from rlvr.trainer import Trainer

FAST = {"logging__tensorboard": False, "logging__plots": False, "train__threads": 1}


def _overlaps(trainer: Trainer) -> list[int]:
    """Steps n whose update overlapped the generation of batch n+1."""
    spans = {(i.kind, i.step): i for i in trainer.off_policy.intervals}
    out = []
    for (kind, step), train in spans.items():
        gen = spans.get(("generate", step + 1))
        if kind == "train" and gen is not None:
            if max(train.start, gen.start) < min(train.end, gen.end):
                out.append(step)
    return sorted(out)


def test_batches_are_one_step_stale_and_generation_overlaps_the_update(
    tiny_model_dir, tmp_path, fixtures_dir
) -> None:
    recipe = make_recipe(
        tiny_model_dir, tmp_path, fixtures_dir, train__steps=4, rollout__max_staleness=1, **FAST
    )
    trainer = Trainer(recipe)
    try:
        seen: list[torch.Tensor] = []
        update = trainer.learner.update
        trainer.learner.update = lambda b: (seen.append(b.versions), update(b))[1]  # type: ignore[method-assign]
        trainer.train()
        assert _overlaps(trainer) == [1, 2, 3]
    finally:
        trainer.close()
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert [r["rollout/staleness"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert [r["rollout/version"] for r in rows] == [0.0, 0.0, 1.0, 2.0]
    assert [v.unique().tolist() for v in seen] == [[0], [0], [1], [2]]
    for r in rows:  # the default correction: truncated IS at token level, C = 2
        assert 0 < r["rollout_correction/rho_min"] <= r["rollout_correction/rho_mean"]
        assert r["rollout_correction/rho_mean"] <= r["rollout_correction/rho_max"]
        assert r["rollout_correction/masked_fraction"] == 0.0
    # the HF engine had its own copy (the policy module is not shared): after training it
    # holds the final weights
    engine_model = trainer.engine.model
    assert engine_model is not trainer.model
    engine_state = engine_model.state_dict()
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, engine_state[name]), name


def test_with_lr_0_is_weights_are_1_and_the_loss_is_the_synchronous_one(
    tiny_model_dir, tmp_path, fixtures_dir
) -> None:
    common = {"train__steps": 3, "train__lr": 0.0, **FAST}
    sync = make_recipe(tiny_model_dir, tmp_path / "sync", fixtures_dir, **common)
    off = make_recipe(
        tiny_model_dir, tmp_path / "off", fixtures_dir, rollout__max_staleness=1, **common
    )
    run(sync)
    run(off)
    a = read_metrics(sync.run_dir / "metrics.jsonl")
    b = read_metrics(off.run_dir / "metrics.jsonl")
    assert "rollout_correction/rho_mean" not in a[0]  # off with max_staleness 0
    for ra, rb in zip(a, b, strict=True):
        assert rb["rollout/staleness"] == (0.0 if rb["step"] == 1 else 1.0)
        for key in ("rho_min", "rho_mean", "rho_max"):
            assert rb[f"rollout_correction/{key}"] == pytest.approx(1.0, abs=1e-4)
        for key in ("loss", "reward/mean", "length/mean", "entropy", "kl"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6), (rb["step"], key)


def test_resume_regenerates_the_batch_in_flight_and_continues_exactly(
    tiny_model_dir, tmp_path, fixtures_dir
) -> None:
    over = {"train__steps": 5, "checkpoint__every": 100, "rollout__max_staleness": 1, **FAST}
    full = make_recipe(tiny_model_dir, tmp_path / "a", fixtures_dir, **over)
    run(full)
    reference = read_metrics(full.run_dir / "metrics.jsonl")

    part = make_recipe(tiny_model_dir, tmp_path / "b", fixtures_dir, **over)
    trainer = Trainer(part)
    original = trainer.train_step

    def stop_after_three(step: int) -> dict:
        out = original(step)
        if step == 3:  # batch 4 is in flight now, generated with version 2
            trainer.signals.request(signal.SIGTERM, None)
        return out

    trainer.train_step = stop_after_three  # type: ignore[method-assign]
    summary = trainer.train()
    trainer.close()
    assert summary["interrupted"]
    ckpt = part.run_dir / "checkpoints" / "step_000003"
    assert (ckpt / ROLLOUT_WEIGHTS).is_file()

    run(part.model_copy(update={"resume": True}))
    after = read_metrics(part.run_dir / "metrics.jsonl")
    assert [r["step"] for r in after] == [1, 2, 3, 4, 5]
    by_step = {r["step"]: r for r in reference}
    for r in after:
        assert r["rollout/staleness"] == by_step[r["step"]]["rollout/staleness"]
        for k in [*COMPARED, "rollout_correction/rho_mean", "rollout/version"]:
            assert r[k] == pytest.approx(by_step[r["step"]][k], rel=1e-5, abs=1e-7), (r["step"], k)


def test_hf_engine_keeps_sharing_the_policy_when_synchronous(
    tiny_model_dir, tmp_path, fixtures_dir
) -> None:
    trainer = Trainer(make_recipe(tiny_model_dir, tmp_path, fixtures_dir, **FAST))
    try:
        assert trainer.off_policy is None and trainer.engine.model is trainer.model
    finally:
        trainer.close()


@pytest.mark.vllm
def test_vllm_engine_one_step_off_policy(tiny_model_dir, tmp_path, fixtures_dir, vllm_engine):
    recipe = make_recipe(
        tiny_model_dir,
        tmp_path,
        fixtures_dir,
        train__steps=3,
        rollout__engine="vllm",
        rollout__max_staleness=1,
        **FAST,
    )
    trainer = Trainer(recipe, engine=vllm_engine)
    try:
        trainer.train()
        assert _overlaps(trainer) == [1, 2]
    finally:
        trainer.rewards.close()
        trainer.off_policy.close()
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        vllm_engine.update_weights(base.state_dict().items())  # the session engine's weights
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert [r["rollout/staleness"] for r in rows] == [0.0, 1.0, 1.0]
    # step 1 is on-policy: rho is vLLM's numeric gap to the trainer in fp32; later steps
    # also carry one optimizer step of staleness
    for key in ("rho_min", "rho_max"):
        assert rows[0][f"rollout_correction/{key}"] == pytest.approx(1.0, abs=1e-4)
    for r in rows[1:]:  # measured here: rho in about [0.4, 2.0] at lr 3e-3
        assert r["rollout_correction/rho_min"] < 0.99 < 1.01 < r["rollout_correction/rho_max"]
