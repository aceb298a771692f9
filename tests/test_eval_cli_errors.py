"""`rlvr eval` input errors: one clear line each, exit code 2, before anything heavy loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _eval(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from rlvr.cli import main; sys.exit(main())",
            "eval",
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "empty directory"),
        (
            lambda p: (
                (p / "nocfg").mkdir() or (p / "nocfg" / "x.txt").write_text("x") and p / "nocfg"
            ),
            "no config.json",
        ),
    ],
)
def test_bad_model_dir_is_one_line(tmp_path: Path, make, expected: str) -> None:
    model = make(tmp_path)
    t0 = time.perf_counter()
    proc = _eval(
        "--model", str(model), "--suites", "arithmetic", "--out", str(tmp_path / "o"), cwd=tmp_path
    )
    assert proc.returncode == 2
    line = _one_line(proc)
    assert line.startswith("rlvr eval: error: --model") and expected in line, line
    assert time.perf_counter() - t0 < 60  # no model, engine or hub retry


def test_empty_or_missing_data_dir_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "data").mkdir()
    for data_dir, expected in (
        (tmp_path / "data", "is empty"),
        (tmp_path / "nope", "no such directory"),
    ):
        proc = _eval(
            "--model",
            str(tiny_model_dir),
            "--suites",
            "math500",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / "o"),
            cwd=tmp_path,
        )
        assert proc.returncode == 2
        line = _one_line(proc)
        assert "--data-dir" in line and expected in line, line
    # a data directory with other files: the missing suite file is named, no hub download
    (tmp_path / "data" / "other.jsonl").write_text("{}\n")
    proc = _eval(
        "--model",
        str(tiny_model_dir),
        "--suites",
        "math500",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    line = _one_line(proc)
    assert "math500" in line and "--data-dir hub" in line, line


def test_ctrl_c_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from rlvr.cli import main; sys.exit(main())",
            "eval",
            "--model",
            str(tiny_model_dir),
            "--suites",
            "arithmetic",
            "--engine",
            "hf",
            "--n",
            "64",
            "--temperature",
            "1",
            "--max-tokens",
            "64",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C's default action in the child, as in a terminal: a pytest started in the
        # background of a non-interactive shell ignores SIGINT, and its children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    samples = tmp_path / "o" / "run.json"
    deadline = time.time() + 90
    while not samples.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("rlvr eval: interrupted") and str(tmp_path / "o") in lines[-1]
