"""Nothing lost, nothing silent: the non-finite guard (rlvr/guard.py) and the checkpoint
written on the way out of a crash (rlvr/recovery.py), with NaNs and exceptions injected into
real tiny-model runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_train_e2e import make_recipe

import rlvr.learner
from rlvr.checkpoint import latest_checkpoint
from rlvr.guard import NonFiniteGuard, first_nonfinite
from rlvr.metrics import read_metrics
from rlvr.trainer import Trainer


def _recipe(model_dir: Path, out: Path, fixtures: Path, **over):
    base = {
        "train__steps": 4,
        "train__threads": 1,
        "checkpoint__every": 1,
        "checkpoint__keep_last": 10,
        "logging__plots": False,
        "logging__tensorboard": False,
        "algo__kl_coef": 0.0,
    }
    return make_recipe(model_dir, out, fixtures, **{**base, **over})


def _steps(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_first_nonfinite_and_streak_counting() -> None:
    assert first_nonfinite({"a": 1.0, "b": torch.tensor([1.0, 2.0])}) is None
    assert first_nonfinite({"a": 1.0, "b": torch.tensor([1.0, math.inf])}) == "b"
    assert first_nonfinite({"loss": math.nan, "b": torch.tensor([math.nan])}) == "loss"
    assert first_nonfinite({"empty": torch.zeros(0)}) is None
    guard = NonFiniteGuard(2)
    assert guard.observe(1, None, None) is None
    assert guard.observe(2, "loss", None) is None and guard.streak == 1
    assert guard.observe(3, None, None) is None and guard.streak == 0  # a good step resets
    assert guard.observe(4, "grad norm", None) is None
    reason = guard.observe(5, "grad norm", Path("runs/x/checkpoints/step_000003"))
    assert reason is not None and reason.startswith("step 5: non-finite grad norm for 2")
    assert "step_000003" in reason and "resume=true" in reason
    assert guard.summary() == {"count": 3, "steps": [2, 4, 5]}


def test_nan_advantages_are_skipped_never_saved_and_stop_the_run(
    tiny_model_dir, tmp_path, fixtures_dir, monkeypatch
) -> None:
    """NaN advantages from step 2 on: steps 2-4 apply nothing, write no checkpoint, and the
    third in a row stops the run naming step 4 and the intact step-1 checkpoint."""
    recipe = _recipe(tiny_model_dir, tmp_path, fixtures_dir, train__max_nonfinite_steps=3)
    trainer = Trainer(recipe, progress=False)
    original = trainer.sampler.compute_advantages

    def poisoned(batch, step):
        out = original(batch, step)
        if step >= 2:
            batch.advantages = torch.full_like(batch.advantages, math.nan)
        return out

    monkeypatch.setattr(trainer.sampler, "compute_advantages", poisoned)
    seen: dict[int, dict[str, torch.Tensor]] = {}
    step_fn = trainer.train_step

    def recording(step):
        seen[step - 1] = _params(trainer.model)
        return step_fn(step)

    monkeypatch.setattr(trainer, "train_step", recording)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    run_dir = recipe.run_dir
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["train/nonfinite"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert summary["nonfinite_steps"] == 3 and summary["interrupted"]
    reason = summary["stopped_reason"]
    assert reason.startswith("step 4: non-finite advantages for 3 step(s) in a row")
    assert str(run_dir / "checkpoints" / "step_000001") in reason
    assert _steps(run_dir) == ["step_000001"]  # nothing of steps 2-4 saved
    assert latest_checkpoint(run_dir) == run_dir / "checkpoints" / "step_000001"
    after = _params(trainer.model)
    saved = load_file(str(run_dir / "checkpoints" / "step_000001" / "model.safetensors"))
    for k, v in after.items():
        assert torch.equal(v, seen[1][k]), k  # the skipped steps changed no weight
        if k in saved:
            assert torch.equal(saved[k], v), k
    assert all(bool(torch.isfinite(v).all()) for v in after.values())


def test_nan_loss_step_is_skipped_and_the_run_goes_on(
    tiny_model_dir, tmp_path, fixtures_dir, monkeypatch
) -> None:
    """One NaN loss (step 2): that update is skipped and not checkpointed; steps 3-4 train."""
    recipe = _recipe(tiny_model_dir, tmp_path, fixtures_dir)
    trainer = Trainer(recipe, progress=False)
    real_loss = rlvr.learner.policy_loss

    def nan_at_step_2(*args, **kwargs):
        terms = real_loss(*args, **kwargs)
        if trainer.learner.updates_done == 1:  # the update of step 2
            terms.loss = terms.loss * math.nan
        return terms

    monkeypatch.setattr(rlvr.learner, "policy_loss", nan_at_step_2)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert [r["train/nonfinite"] for r in rows] == [0.0, 1.0, 0.0, 0.0]
    assert rows[1]["loss"] is None and rows[2]["loss"] is not None  # NaN logged as null
    assert summary["nonfinite_steps"] == 1 and not summary["interrupted"]
    assert _steps(recipe.run_dir) == ["step_000001", "step_000003", "step_000004"]
    assert summary["checkpoint"].endswith("step_000004")
    # a NaN checkpoint (as written before the guard existed) is refused on resume
    ckpt = recipe.run_dir / "checkpoints" / "step_000004"
    weights = load_file(str(ckpt / "model.safetensors"))
    first = next(iter(weights))
    weights[first] = torch.full_like(weights[first], math.nan)
    save_file(weights, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    resumed = recipe.model_copy(update={"resume": True})
    resumed.train.steps = 5
    with pytest.raises(ValueError, match="step_000004: the checkpoint's weights hold NaN"):
        Trainer(resumed, progress=False)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("error", [Boom("tokenizer crashed"), KeyboardInterrupt()])
def test_crash_inside_a_step_checkpoints_the_last_completed_step_and_resumes_exactly(
    tiny_model_dir, tmp_path, fixtures_dir, monkeypatch, caplog, error
) -> None:
    """An exception raised inside step 4's rollout (after 3 completed steps, periodic
    checkpoints every 10): step 3 is checkpointed on the way out, the log says how to resume,
    and the resumed run reproduces the uninterrupted one."""
    over = {"train__steps": 5, "checkpoint__every": 10}
    reference = _recipe(tiny_model_dir, tmp_path / "ref", fixtures_dir, **over)
    trainer = Trainer(reference, progress=False)
    try:
        trainer.train()
    finally:
        trainer.close()
    expected = read_metrics(reference.run_dir / "metrics.jsonl")

    recipe = _recipe(tiny_model_dir, tmp_path / "crash", fixtures_dir, **over)
    trainer = Trainer(recipe, progress=False)
    real = trainer.sampler.score

    def failing(examples, groups):
        out = real(examples, groups)  # the data position and reward state have moved on
        if trainer.step == 3:
            raise error
        return out

    monkeypatch.setattr(trainer.sampler, "score", failing)
    try:
        with pytest.raises(type(error)):
            trainer.train()
    finally:
        trainer.close()
    run_dir = recipe.run_dir
    assert _steps(run_dir) == ["step_000003"]
    assert "resume=true to continue from" in caplog.text and "step_000003" in caplog.text
    assert "step 4 " in caplog.text

    resumed = recipe.model_copy(update={"resume": True})
    trainer = Trainer(resumed, progress=False)
    assert trainer.step == 3
    try:
        trainer.train()
    finally:
        trainer.close()
    got = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5]
    for want, have in zip(expected, got, strict=True):
        for key in ("reward/mean", "loss", "grad_norm", "entropy", "length/mean"):
            assert have[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (have["step"], key)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_crash_mid_update_keeps_the_last_checkpoint(
    tiny_model_dir, tmp_path, fixtures_dir, monkeypatch, caplog
) -> None:
    """A failure between two optimizer steps of one batch (updates_per_batch=2): no state of
    a completed step exists, so nothing is written and the last checkpoint stays."""
    recipe = _recipe(
        tiny_model_dir,
        tmp_path,
        fixtures_dir,
        train__steps=3,
        checkpoint__every=1,
        algo__updates_per_batch=2,
    )
    trainer = Trainer(recipe, progress=False)
    real_step = trainer.optimizer.step
    calls = {"n": 0}

    def step_then_fail(*args, **kwargs):
        calls["n"] += 1
        out = real_step(*args, **kwargs)
        if calls["n"] == 3:  # the first optimizer step of RL step 2
            raise Boom("device lost")
        return out

    monkeypatch.setattr(trainer.optimizer, "step", step_then_fail)
    try:
        with pytest.raises(Boom):
            trainer.train()
    finally:
        trainer.close()
    assert _steps(recipe.run_dir) == ["step_000001"]
    assert "in the middle of its update" in caplog.text


def test_cli_prints_what_a_crash_saved_and_how_to_resume_last(
    tiny_model_dir, tmp_path, monkeypatch, capsys
) -> None:
    from tiny_overrides import RECIPES, TINY_RUN_OVERRIDES

    import rlvr.sampler
    from rlvr.cli import main

    real = rlvr.sampler.Sampler.score
    calls = {"n": 0}

    def failing(self, examples, groups):
        calls["n"] += 1
        if calls["n"] == 2:  # the second step's rewards
            raise Boom("reward worker lost")
        return real(self, examples, groups)

    monkeypatch.setattr(rlvr.sampler.Sampler, "score", failing)
    argv = [
        "train",
        str(RECIPES / "grpo_arithmetic_cpu.yaml"),
        f"model.path={tiny_model_dir}",
        f"output_dir={tmp_path}",
        "name=crash",
        "eval.before=false",
        "eval.after=false",
        *TINY_RUN_OVERRIDES,
        "train.steps=3",
    ]
    assert main(argv) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    ckpt = tmp_path / "crash" / "checkpoints" / "step_000001"
    assert last == (
        "stopped: step 2 failed (Boom('reward worker lost')); checkpoint of step 1 written. "
        f"Run the same command with resume=true to continue from {ckpt}"
    )
    assert (ckpt / "trainer_state.json").is_file()
