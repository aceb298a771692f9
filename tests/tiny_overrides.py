"""Recipe overrides that shrink any CPU recipe to a seconds-long run on the tiny model, and a
helper that runs a shipped ``recipes/<name>_arithmetic_cpu.yaml`` with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

TINY_RUN_OVERRIDES = [
    "rollout.group_size=4",
    "rollout.max_new_tokens=8",
    "train.prompts_per_step=2",
    "train.steps=2",
    "train.threads=1",
    "logging.plots=false",
    "logging.tensorboard=false",
    "logging.progress=false",
    "checkpoint.save_final=false",
]


def run_cpu_recipe(
    name: str, model_dir: Path, out: Path, *extra: str, tiny: list[str] | None = None
) -> tuple[list[dict], Any]:
    """Run ``recipes/<name>_arithmetic_cpu.yaml`` on ``model_dir`` with the tiny overrides
    (or ``tiny``) and ``extra``; return its metrics rows and the closed trainer."""
    from rlvr.config import load_recipe
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    recipe = load_recipe(
        RECIPES / f"{name}_arithmetic_cpu.yaml",
        [f"model.path={model_dir}", f"output_dir={out}", *(tiny or TINY_RUN_OVERRIDES), *extra],
    )
    _, trainer = train_recipe(recipe)
    return read_metrics(recipe.run_dir / "metrics.jsonl"), trainer
