"""scripts/gpu_check.sh on a machine without CUDA: CUDA steps skip with a reason, rc 0, and the
kernel / train steps' own code runs on CPU at a small size (--cpu-smoke), so the script that
spends scarce GPU minutes is known to work before it gets there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    path = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": path, "PYTHON": sys.executable}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")
def test_gpu_check_skips_cuda_steps_with_reasons(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/gpu_check.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env"]["status"] == "ok" and summary["env"]["cuda_available"] is False
    for step in ("tests", "matmul", "kernel", "bench", "train", "dist", "sync"):
        assert summary[step]["status"] == "skipped", (step, summary[step])
        assert summary[step]["reason"] == "no CUDA device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")
def test_bench_step_on_cuda_without_cuda_says_so() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts/bench_step.py"),
            "--scale",
            "0.5b",
            "--device",
            "cuda",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert proc.returncode != 0
    assert "--device cuda: no CUDA device is visible" in proc.stderr, proc.stdout + proc.stderr


def test_gpu_check_kernel_and_train_steps_run_on_cpu(tmp_path: Path) -> None:
    script = str(REPO / "scripts/gpu_check.py")
    kernel = subprocess.run(
        [
            sys.executable,
            script,
            "kernel",
            "--out",
            str(tmp_path),
            "--cpu-smoke",
            "--shape",
            "96x64x700",
            "--reps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert kernel.returncode == 0, kernel.stdout + kernel.stderr
    k = json.loads((tmp_path / "kernel.json").read_text())
    assert k["status"] == "ok" and k["flops"] == 6 * 96 * 64 * 700
    diffs = k["torch_chunked"]["max_abs_diff_vs_naive"]
    assert diffs["logp"] < 0.05 and diffs["entropy"] < 0.05  # bf16 inputs, fp32 results
    train = subprocess.run(
        [sys.executable, script, "train", "--out", str(tmp_path), "--cpu-smoke", "--steps", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(),
        check=False,
    )
    t = json.loads((tmp_path / "train.json").read_text())
    assert train.returncode == 0 and t["status"] == "ok", t
    assert t["quickstart"]["steps"] == 1 and "logprob_mismatch" in t["quickstart"]
