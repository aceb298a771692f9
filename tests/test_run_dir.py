"""Run-directory safety and checkpoint pruning: an earlier run is never replaced silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlvr.checkpoint import _prune
from rlvr.run_dir import RunDirError, claim_run_dir, recipe_changes


def _old_run(d: Path, with_ckpt: bool = True) -> None:
    d.mkdir(parents=True)
    (d / "recipe.yaml").write_text("train:\n  lr: 0.0001\n")
    (d / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    if with_ckpt:
        c = d / "checkpoints" / "step_000100"
        c.mkdir(parents=True)
        (c / "trainer_state.json").write_text("{}")


def test_refused_unless_resume_or_overwrite(tmp_path: Path) -> None:
    d = tmp_path / "run"
    assert claim_run_dir(d, resume=False, overwrite=False).mode == "new"
    _old_run(d)
    with pytest.raises(
        RunDirError, match=r"holds another run \(checkpoint step_000100, metrics for 2"
    ):
        claim_run_dir(d, resume=False, overwrite=False)
    assert (d / "metrics.jsonl").exists()  # nothing touched
    got = claim_run_dir(d, resume=True, overwrite=False)
    assert got.mode == "resume" and got.checkpoint == d / "checkpoints" / "step_000100"
    assert recipe_changes(got.previous_recipe, {"train": {"lr": 0.001}}) == {
        "train.lr": (0.0001, 0.001)
    }
    assert claim_run_dir(d, resume=False, overwrite=True).mode == "overwrite"
    assert not (d / "metrics.jsonl").exists() and not (d / "checkpoints").exists()


def test_resume_without_checkpoint_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "run"
    _old_run(d, with_ckpt=False)
    assert claim_run_dir(d, resume=True, overwrite=False).mode == "new"
    assert "holds no complete checkpoint" in caplog.text
    with pytest.raises(RunDirError, match="contradict"):
        claim_run_dir(d, resume=True, overwrite=True)


def test_prune_keeps_the_checkpoint_just_written(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for step in (20, 40, 100):
        (root / f"step_{step:06d}").mkdir(parents=True)
    new = root / "step_000060"
    new.mkdir()
    _prune(root, 2, new)  # step_000100 is a stale later step: it goes, not the new one
    assert sorted(p.name for p in root.iterdir()) == ["step_000040", "step_000060"]
    _prune(root, 1, new)
    assert [p.name for p in root.iterdir()] == ["step_000060"]


def test_overview_is_a_readable_grid(tmp_path: Path) -> None:
    import json

    from PIL import Image

    from rlvr.metrics import PLOTTED, write_plots

    rows = [{"step": s, **{k: 0.1 * s for k, _ in PLOTTED}} for s in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_plots(tmp_path)
    w, h = Image.open(tmp_path / "plots" / "overview.png").size
    assert len(PLOTTED) == 8 and w / h < 2.0  # 3 x 3 grid, not one 10:1 strip
    assert w <= 1500
