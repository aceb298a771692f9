"""Atomic, resumable checkpoints.

``<run>/checkpoints/step_000010/`` holds the policy in Hugging Face format (safetensors) with
its tokenizer, ``optimizer.pt`` / ``scheduler.pt`` (tensors and plain containers only, read
back with ``torch.load(weights_only=True)``: nothing is unpickled), ``rng.pt`` (torch, python,
numpy generator states) and ``trainer_state.json`` (step, data position, reward and advantage
module state). An FSDP2 run (``train.strategy=fsdp2``) writes the same files except
``optimizer.pt``: its model and optimizer shards go to ``dcp/`` (rlvr/fsdp.py), read back at
any world size and by a single process. A checkpoint is written into ``step_000010.tmp`` and renamed when complete;
``latest`` is replaced atomically last, so a run killed at any moment resumes from the last
complete checkpoint. Only the last ``keep_last`` are kept: the one just written and the newest
before it (never a stale later step sorted past it).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    keep_last: int,
    write_extra: Callable[[Path], None] | None = None,
    write_weights: Callable[[Path], None] | None = None,
) -> Path:
    """``write_extra(dir)`` adds files to the checkpoint before it is made visible (the
    off-policy rollout weights, rlvr/off_policy.py); ``write_weights(dir)`` writes the model
    and optimizer instead of ``save_pretrained`` + ``optimizer.pt`` (the learner's, which
    under FSDP2 is a collective)."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f"step_{step:06d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    if write_weights is None:
        model.save_pretrained(tmp, safe_serialization=True)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    else:
        write_weights(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **trainer_state}, indent=1))
    if write_extra is not None:
        write_extra(tmp)
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = root / "latest.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, root / "latest")
    _fsync_dir(root)
    _prune(root, keep_last, final)
    return final


def _step_of(path: Path) -> int:
    try:
        return int(path.name.split("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def _prune(root: Path, keep_last: int, current: Path) -> None:
    """Keep ``current`` (just written, what ``latest`` names) and the ``keep_last - 1``
    newest checkpoints before it; a checkpoint of a later step belongs to an abandoned
    timeline (a resumed run that went back) and goes, never the one just written."""
    done = [
        p
        for p in root.glob("step_*")
        if p.is_dir() and not p.name.endswith(".tmp") and p != current
    ]
    step = _step_of(current)
    earlier = sorted((p for p in done if _step_of(p) < step), key=_step_of)
    later = [p for p in done if _step_of(p) >= step]
    for old in later + earlier[: max(0, len(earlier) - (keep_last - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob("step_*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = run_dir / "checkpoints"
    pointer = root / "latest"
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / "trainer_state.json").is_file():
            return candidate
    done = sorted(
        p for p in root.glob("step_*") if p.is_dir() and (p / "trainer_state.json").is_file()
    )
    return done[-1] if done else None


def load_training_state(
    ckpt: Path,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    load_optimizer: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """``load_optimizer(dir)`` reads the optimizer state instead of ``optimizer.pt`` (the
    learner's, which also reads an FSDP2 run's ``dcp/``)."""
    if load_optimizer is None:
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    else:
        load_optimizer(ckpt)
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    set_rng_state(torch.load(ckpt / "rng.pt", weights_only=True))
    return json.loads((ckpt / "trainer_state.json").read_text())
