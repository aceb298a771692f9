"""Nothing lost on a crash: a checkpoint of the last completed step on the way out.

When a step raises (an exception, or the KeyboardInterrupt of a second Ctrl-C), the work
since the last periodic checkpoint would be lost. :func:`snapshot` records, at the start of
every step, what the step changes before its optimizer step: the sampler's state (data
position, stateful rewards, advantage estimator), the RNG states, the LR schedule and the
number of optimizer steps taken. :func:`save_on_crash` then decides what is sound:

* the step had not yet reached its optimizer step (the usual case: the rollout, a reward,
  a tokenizer failing): the snapshot is restored and the last completed step is
  checkpointed; resuming replays the failed step exactly as it would have run;
* the step had finished its update (it failed afterwards: syncing, logging): the weights,
  optimizer and sampler are those of the completed step, which is checkpointed as is
  (its metrics line may be missing);
* the failure came in the middle of an update (some optimizer steps of a multi-update step
  applied): no state of a completed step exists, and the last checkpoint stays.

A checkpoint is never written over one of the same step, nor when the non-finite guard
refuses it (rlvr/guard.py). The log says where the checkpoint is and how to resume.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlvr.checkpoint import latest_checkpoint, rng_state, set_rng_state

log = logging.getLogger("rlvr")


class StepCounter:
    """Counts ``optimizer.step`` calls (a post-step hook on the optimizer)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.count = 0
        optimizer.register_step_post_hook(self._hook)

    def _hook(self, *args: Any) -> None:
        self.count += 1


@dataclass
class StepSnapshot:
    step: int  # the last completed step when the snapshot was taken
    sampler_state: dict[str, Any]
    rng: dict[str, Any]
    scheduler_state: dict[str, Any]
    optimizer_steps: int
    updates_done: int


def snapshot(trainer: Any, counter: StepCounter) -> StepSnapshot:
    """The state a step starts from (small: positions, counters, RNG states)."""
    return StepSnapshot(
        step=trainer.step,
        sampler_state=copy.deepcopy(trainer.sampler.state_dict()),
        rng=copy.deepcopy(rng_state()),
        scheduler_state=copy.deepcopy(trainer.learner.scheduler.state_dict()),
        optimizer_steps=counter.count,
        updates_done=trainer.learner.updates_done,
    )


def save_on_crash(
    trainer: Any, snap: StepSnapshot | None, counter: StepCounter, error: BaseException
) -> str:
    """Checkpoint the last completed step if the state is sound (see the module docstring);
    logs and returns a line saying what was saved and how to resume."""
    what = "interrupted" if isinstance(error, KeyboardInterrupt) else f"failed ({error!r})"
    if snap is None:  # before the first step (e.g. the eval before training): nothing to save
        note = f"stopped before the first step ({what}). " + _resume_hint(
            latest_checkpoint(trainer.run_dir)
        )
        log.error(note)
        return note
    if getattr(trainer, "off_policy", None) is not None:
        # rollout.max_staleness=1: the sampler ran ahead in the rollout thread, so the step's
        # start cannot be restored here; the last periodic checkpoint resumes exactly
        note = (
            f"step {snap.step + 1} {what}; one-step off-policy: no crash checkpoint. "
            + _resume_hint(latest_checkpoint(trainer.run_dir))
        )
        log.error(note)
        return note
    learner = trainer.learner
    completed = trainer.step
    update_done = learner.updates_done > snap.updates_done
    if trainer.step == snap.step and update_done:
        completed = trainer.step + 1  # the update finished; what failed came after it
    elif trainer.step == snap.step and counter.count != snap.optimizer_steps:
        note = (
            f"step {snap.step + 1} {what} in the middle of its update; no completed state to "
            f"save. {_resume_hint(latest_checkpoint(trainer.run_dir))}"
        )
        log.error(note)
        return note
    elif trainer.step == snap.step:  # before the optimizer step: back to the step's start
        trainer.sampler.load_state_dict(copy.deepcopy(snap.sampler_state))
        set_rng_state(snap.rng)
        learner.scheduler.load_state_dict(snap.scheduler_state)
        learner.updates_done = snap.updates_done
    last = latest_checkpoint(trainer.run_dir)
    saved: Path | None = None
    if completed > 0 and (last is None or last.name != f"step_{completed:06d}"):
        trainer.step = completed
        try:
            saved = trainer._checkpoint()
        except Exception as e:  # noqa: BLE001 - the original failure is what gets raised
            log.error("writing the checkpoint of step %d failed too: %r", completed, e)
        last = latest_checkpoint(trainer.run_dir)
    wrote = (
        f"checkpoint of step {completed} written"
        if saved is not None and saved == last
        else "no new checkpoint written"
    )
    note = f"step {snap.step + 1} {what}; {wrote}. {_resume_hint(last)}"
    log.error(note)
    return note


def _resume_hint(last: Path | None) -> str:
    if last is None:
        return "No checkpoint exists; a new run starts from step 0"
    return f"Run the same command with resume=true to continue from {last}"
