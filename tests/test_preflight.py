"""Checks before anything heavy loads: model dir, data files, engine limits, degenerate
settings; through `rlvr train` they fail in a second with one line naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlvr.config import load_recipe
from rlvr.preflight import PreflightError, check_recipe, model_context, prompt_token_budget

REPO = Path(__file__).resolve().parents[1]


def _recipe(model: Path, *overrides: str):
    return load_recipe(None, [f"model.path={model}", *overrides])


def test_model_path_checks(tmp_path: Path, tiny_model_dir: Path) -> None:
    check_recipe(_recipe(tiny_model_dir))
    (tmp_path / "empty").mkdir()
    for path, msg in (
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "empty", "empty directory"),
    ):
        with pytest.raises(PreflightError, match=f"model.path: .*{msg}"):
            check_recipe(_recipe(path))
    nocfg = tmp_path / "nocfg"
    nocfg.mkdir()
    (nocfg / "model.safetensors").write_bytes(b"")
    with pytest.raises(PreflightError, match="no config.json"):
        check_recipe(_recipe(nocfg))


def test_data_files(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(PreflightError, match="data.path: data file .* not found"):
        check_recipe(_recipe(tiny_model_dir, "data.source=file", f"data.path={tmp_path}/x.jsonl"))
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(PreflightError, match="data.path: data file .* is empty"):
        check_recipe(_recipe(tiny_model_dir, "data.source=file", f"data.path={empty}"))
    with pytest.raises(PreflightError, match="warmup.path"):
        check_recipe(_recipe(tiny_model_dir, f"warmup.path={tmp_path}/w.jsonl"))


def test_engine_limits(tiny_model_dir: Path) -> None:
    ctx = model_context(str(tiny_model_dir))
    assert isinstance(ctx, int) and ctx > 0
    assert model_context(str(tiny_model_dir), 64) == 64
    with pytest.raises(PreflightError, match=f"rollout.max_new_tokens={ctx}: .*context is {ctx}"):
        check_recipe(_recipe(tiny_model_dir, f"rollout.max_new_tokens={ctx}"))
    with pytest.raises(PreflightError, match="eval.max_new_tokens=64: .*context is 32"):
        check_recipe(
            _recipe(
                tiny_model_dir,
                "rollout.max_model_len=32",
                "rollout.max_new_tokens=8",
                "eval.after=true",
                "eval.max_new_tokens=64",
            )
        )
    with pytest.raises(PreflightError, match="rollout.temperature=0.001"):
        check_recipe(_recipe(tiny_model_dir, "rollout.temperature=0.001"))
    with pytest.raises(PreflightError, match="rollout.top_k=0"):
        check_recipe(_recipe(tiny_model_dir, "rollout.top_k=0"))
    assert prompt_token_budget(512, 24, 512) == 488
    assert prompt_token_budget(100, 24, 512) == 100
    assert prompt_token_budget(100, 24, None) == 100


def test_degenerate_group_size_warned(tiny_model_dir: Path) -> None:
    warnings = check_recipe(_recipe(tiny_model_dir, "rollout.group_size=1")).warnings
    assert len(warnings) == 1 and "zero advantage" in warnings[0]
    assert check_recipe(_recipe(tiny_model_dir, "rollout.group_size=2")).warnings == []


def test_train_cli_fails_fast_with_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from rlvr.cli import main; sys.exit(main())",
            "train",
            str(REPO / "recipes" / "quickstart.yaml"),
            f"model.path={tiny_model_dir}",
            "data.source=file",
            f"data.path={tmp_path}/missing.jsonl",
            f"output_dir={tmp_path}/runs",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "data.path: data file" in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing written
    assert elapsed < 60
