"""The non-finite guard: a NaN or inf never reaches the weights, and never a checkpoint.

A step is *non-finite* when one of these is NaN or +-inf:

* the batch's advantages on completion tokens (checked before any forward pass; a reward
  that overflows float32, e.g. 1e100, arrives here as inf or NaN),
* the policy loss of an optimizer step, or
* its gradient norm (checked after backward, before ``optimizer.step``).

Such a step's update is skipped: no optimizer step, so parameters and AdamW moments stay what
the last good step left; the LR schedule and the data stream move on, so step numbers keep
their meaning. It is reported: ``train/nonfinite`` = 1 in metrics.jsonl and a warning naming
the step and the quantity. :class:`NonFiniteGuard` counts such steps; after
``train.max_nonfinite_steps`` in a row the run stops with a message naming the step, the
quantity and the last good checkpoint, and writes none (the state that keeps producing
non-finite steps is not a good one). While a streak lasts no checkpoint is written at all, and
:func:`parameters_finite` refuses any checkpoint of weights that are not all finite.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rlvr.checkpoint import latest_checkpoint

log = logging.getLogger("rlvr")


def first_nonfinite(quantities: Mapping[str, float | torch.Tensor]) -> str | None:
    """The name of the first quantity holding a NaN or inf (None: all finite)."""
    for name, value in quantities.items():
        if isinstance(value, torch.Tensor):
            if value.numel() and not bool(torch.isfinite(value).all()):
                return name
        elif not math.isfinite(float(value)):
            return name
    return None


def parameters_finite(model: Any) -> bool:
    """Whether every parameter of ``model`` is finite (one reduction per tensor); of an FSDP2
    model, this rank's shards (no collective: rank 0 decides alone; the other ranks' shards
    came from the same finite, all-reduced gradient norm and loss)."""
    from torch.distributed.tensor import DTensor

    return all(
        bool(torch.isfinite(p.to_local() if isinstance(p, DTensor) else p).all())
        for p in model.parameters()
    )


class NonFiniteGuard:
    """Counts non-finite steps; says when to stop and when a checkpoint may be written."""

    def __init__(self, max_in_a_row: int) -> None:
        self.max_in_a_row = max_in_a_row
        self.streak = 0  # non-finite steps in a row, up to the last observed step
        self.total = 0
        self.steps: list[int] = []  # every skipped step (for the summary)

    def observe(self, step: int, quantity: str | None, last_good: Path | None) -> str | None:
        """Record step ``step`` (``quantity``: the non-finite one, None for a good step);
        returns the reason to stop, or None."""
        if quantity is None:
            self.streak = 0
            return None
        self.streak += 1
        self.total += 1
        self.steps.append(step)
        if self.streak < self.max_in_a_row:
            log.warning(
                "step %d: non-finite %s; update skipped, weights unchanged (%d in a row; the "
                "run stops at train.max_nonfinite_steps=%d)",
                step,
                quantity,
                self.streak,
                self.max_in_a_row,
            )
            return None
        where = (
            f"the last good checkpoint is {last_good} (resume=true continues from it)"
            if last_good is not None
            else "no checkpoint was written before it"
        )
        return (
            f"step {step}: non-finite {quantity} for {self.streak} step(s) in a row "
            f"(train.max_nonfinite_steps={self.max_in_a_row}); no checkpoint of this state is "
            f"written, {where}. Lower train.lr, set train.max_grad_norm, or check the rewards' "
            "range (reward_runner.max_abs_score)"
        )

    def refuse_checkpoint(self, model: Any) -> str | None:
        """Why the current state must not be checkpointed (None: it may)."""
        if self.streak:
            return f"the last {self.streak} step(s) were non-finite"
        if not parameters_finite(model):
            return "the policy's parameters hold NaN or inf"
        return None

    def may_checkpoint(self, model: Any, step: int, run_dir: Path) -> bool:
        """Whether step ``step``'s state may be checkpointed; when not, a warning says why and
        which checkpoint stays the last good one."""
        refusal = self.refuse_checkpoint(model)
        if refusal is not None:
            last = latest_checkpoint(run_dir)
            log.warning(
                "no checkpoint of step %d: %s; %s",
                step,
                refusal,
                f"the last good one stays: {last}" if last else "none was written before",
            )
        return refusal is None

    def summary(self) -> dict[str, Any]:
        return {"count": self.total, "steps": list(self.steps)}
