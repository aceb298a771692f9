"""One ``rlvr serve`` process for a server test module (tests/test_server.py,
tests/test_server_lora.py): started in its own session, waited for on ``/health``, killed as
a group at the end. A CPU server takes ~40-90 s to start on 2 shared cores."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

START_S = 400.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def running_server(
    model: Path, log_dir: Path, max_model_len: int, **options: Any
) -> Iterator[dict]:
    """Yield ``{"url", "proc", "log"}`` of a served ``model`` (``options``: server_command's)."""
    import requests

    from rlvr.serve import server_command

    port = free_port()
    cmd, env = server_command(str(model), port=port, max_model_len=max_model_len, **options)
    env["OMP_NUM_THREADS"] = "1"
    log_path = log_dir / "server.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"rlvr serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"rlvr serve not up in {START_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)
        yield {"url": url, "proc": proc, "log": log_path}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
