"""The RL trainer as a pipeline stage (kind ``train``): an ``rlvr train`` recipe run inside
``rlvr pipeline``.

The pipeline adds ``resume=true`` and ``checkpoint.save_final=true`` to the stage's overrides,
so an interrupted stage resumes from its own checkpoints on the next run and the final policy
is saved; that checkpoint is the stage's output model. ``rlvr train`` itself is its own
command (rlvr/cli.py), with preflight checks and multi-process launch.
"""

from __future__ import annotations

from typing import Any

from rlvr.config import Recipe
from rlvr.stages.common import write_json
from rlvr.stages.registry import register_stage


@register_stage(
    "train",
    schema=Recipe,
    help="RL training (GRPO and the other estimators) from an `rlvr train` recipe",
    description="An `rlvr train` recipe as a pipeline stage; resumes from its checkpoints.",
    command=False,
    pipeline_overrides=("resume=true", "checkpoint.save_final=true"),
)
def run_rl_stage(recipe: Recipe) -> dict[str, Any]:
    """Train, write ``summary.json`` and return the summary with ``model_dir`` = the final
    checkpoint; a stopped run raises ``KeyboardInterrupt`` (run the pipeline again to resume)."""
    from rlvr.run import train_recipe

    summary, _ = train_recipe(recipe)
    write_json(recipe.run_dir / "summary.json", summary)
    if summary.get("interrupted"):
        raise KeyboardInterrupt(f"stage {recipe.name!r} stopped; run the pipeline again to resume")
    return {**summary, "model_dir": summary["checkpoint"]}
