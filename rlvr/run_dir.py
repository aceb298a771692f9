"""Run-directory safety: a new run never silently replaces an earlier one.

:func:`claim_run_dir` decides, before anything is written, what a run does with
``runs/<name>/``:

* the directory is absent or holds no run (nothing but ``log.txt``): a new run;
* it holds a run (``recipe.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``summary.json``):
  - ``resume=true`` continues from its latest complete checkpoint; with no checkpoint there
    the run says so and starts from step 0;
  - ``overwrite=true`` deletes the earlier run's outputs and starts a new one;
  - otherwise the run is refused with an error naming what is there and the three ways on
    (``resume=true``, ``overwrite=true``, another ``name=``).

:func:`recipe_changes` lists every setting that differs between the recipe a run was started
with (its ``recipe.yaml``) and the one it resumes with; the trainer applies each or refuses it,
and says which.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlvr.checkpoint import latest_checkpoint

log = logging.getLogger("rlvr")

# what a run writes; a directory holding any of these holds a run
RUN_OUTPUTS = (
    "recipe.yaml",
    "metrics.jsonl",
    "checkpoints",
    "summary.json",
    "tensorboard",
    "plots",
    "warmup",
)


class RunDirError(ValueError):
    """The run directory holds another run and the recipe does not say what to do with it."""


@dataclass
class RunDirDecision:
    mode: str  # "new" | "resume" | "overwrite"
    checkpoint: Path | None = None
    previous_recipe: dict[str, Any] | None = None


def _describe(run_dir: Path) -> str:
    parts = []
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        parts.append(f"checkpoint {ckpt.name}")
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        n = sum(1 for line in metrics.read_text().splitlines() if line.strip())
        parts.append(f"metrics for {n} step(s)")
    if (run_dir / "summary.json").is_file():
        parts.append("a finished run's summary.json")
    return ", ".join(parts) or "an earlier run's files"


def holds_run(run_dir: Path) -> bool:
    return run_dir.is_dir() and any((run_dir / name).exists() for name in RUN_OUTPUTS)


def claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> RunDirDecision:
    """Check ``run_dir`` against ``resume`` / ``overwrite`` (see the module docstring);
    with ``overwrite`` the earlier run's outputs are deleted here."""
    if resume and overwrite:
        raise RunDirError("resume=true and overwrite=true contradict each other; pick one")
    if not holds_run(run_dir):
        if resume:
            log.warning("resume=true: %s holds no run yet; starting from step 0", run_dir)
        return RunDirDecision("new")
    previous = None
    recipe_file = run_dir / "recipe.yaml"
    if recipe_file.is_file():
        try:
            loaded = yaml.safe_load(recipe_file.read_text())
            previous = loaded if isinstance(loaded, dict) else None
        except yaml.YAMLError:
            previous = None
    if resume:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            log.warning(
                "resume=true: %s holds no complete checkpoint (%s); starting from step 0",
                run_dir,
                _describe(run_dir),
            )
            _clear(run_dir)
            return RunDirDecision("new")
        return RunDirDecision("resume", ckpt, previous)
    if overwrite:
        log.warning(
            "overwrite=true: deleting the earlier run in %s (%s)", run_dir, _describe(run_dir)
        )
        _clear(run_dir)
        return RunDirDecision("overwrite")
    raise RunDirError(
        f"{run_dir} holds another run ({_describe(run_dir)}); pass resume=true to continue it, "
        "overwrite=true to replace it, or name=<new name> for a new run directory"
    )


def _clear(run_dir: Path) -> None:
    for name in RUN_OUTPUTS:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): tree}


def recipe_changes(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, tuple]:
    """``{dotted key: (before, now)}`` for every leaf setting that differs (lists compared
    whole). ``resume`` / ``overwrite`` themselves are not settings of the run."""
    if previous is None:
        return {}
    before, now = _flatten(previous), _flatten(current)
    skip = {"resume", "overwrite"}
    return {
        k: (before.get(k), now.get(k))
        for k in sorted(set(before) | set(now))
        if k not in skip and before.get(k) != now.get(k)
    }


def apply_resume_changes(
    changes: dict[str, tuple[Any, Any]], optimizer: Any, scheduler: Any
) -> None:
    """On resume: every setting that differs from the run's recipe.yaml is listed; ``train.lr`` is
    applied to the restored optimizer and schedule (which would otherwise keep the old
    one); the rest take effect from the new recipe as it is read."""
    if not changes:
        return
    lines = []
    for key, (before, now) in changes.items():
        if key == "train.lr" and now is not None:
            for group in optimizer.param_groups:
                group["initial_lr"] = now
            sched = scheduler
            sched.base_lrs = [now for _ in sched.base_lrs]
            for group, factor in zip(optimizer.param_groups, sched.lr_lambdas, strict=False):
                group["lr"] = now * factor(sched.last_epoch)
        lines.append(f"  {key}: {before!r} -> {now!r} (applied)")
    log.warning(
        "resume: %d setting(s) differ from the run's recipe.yaml:\n%s",
        len(lines),
        "\n".join(lines),
    )


def open_run_dir(recipe: Any) -> dict[str, tuple]:
    """Claim ``recipe.run_dir`` (never replacing an earlier run silently, :func:`claim_run_dir`),
    log to its ``log.txt`` and write the resolved ``recipe.yaml``; returns what changed
    against the run being resumed (:func:`recipe_changes`, empty for a new run)."""
    from rlvr.config import dump_recipe
    from rlvr.console import log_to_file

    run_dir = recipe.run_dir
    claim = claim_run_dir(run_dir, resume=recipe.resume, overwrite=recipe.overwrite)
    changes = recipe_changes(claim.previous_recipe, recipe.model_dump(mode="json"))
    run_dir.mkdir(parents=True, exist_ok=True)
    log_to_file(run_dir)
    dump_recipe(recipe, run_dir / "recipe.yaml")
    return changes
