"""A few steps of every shipped recipe's CPU variant on the session tiny model (hf engine),
plus the DAPO switches and ADORA's state in checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_overrides import TINY_RUN_OVERRIDES, run_cpu_recipe

from rlvr.config import load_recipe
from rlvr.trainer import Trainer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = TINY_RUN_OVERRIDES


def run(name: str, model_dir: Path, out: Path, *extra: str) -> tuple[list[dict], Path]:
    rows, trainer = run_cpu_recipe(name, model_dir, out, *extra, tiny=TINY)
    return rows, trainer.recipe.run_dir


@pytest.mark.parametrize("name", ["grpo", "dapo", "qae", "adora"])
def test_every_cpu_recipe_runs(name: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    rows, _ = run(name, tiny_model_dir, tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert "loss" in r and "entropy" in r and "advantage/zero_fraction" in r
    if name in ("dapo", "qae"):
        # dynamic sampling: bounded rounds, logged with the groups it dropped
        assert all(1 <= r["filter/dynamic_sampling/rounds"] <= 3 for r in rows)
        assert all("filter/dynamic_sampling/dropped_groups" in r for r in rows)
    if name == "qae":
        assert "advantage/hard_regime_fraction" in rows[0]
    if name == "adora":
        assert 0.0 <= rows[0]["advantage/tas_fraction"] <= 1.0


def test_mask_truncated_and_full_math_recipes_validate(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows, _ = run(
        "dapo",
        tiny_model_dir,
        tmp_path,
        "algo.mask_truncated=true",
        "train.steps=1",
        "algo.filters=[]",
        "rollout.max_new_tokens=1",  # every completion is cut: nothing is left in the loss
    )
    assert rows[0]["loss/masked_truncated_fraction"] == rows[0]["length/truncated_fraction"] == 1
    assert rows[0]["loss"] == 0.0 and rows[0]["grad_norm"] == 0.0
    for name in ("grpo", "dapo", "qae", "adora"):
        recipe = load_recipe(RECIPES / f"{name}_math.yaml")
        assert recipe.model.path and recipe.data.path
    dapo = load_recipe(RECIPES / "dapo_math.yaml").algo
    assert (dapo.eps_low, dapo.eps_high, dapo.loss_aggregation) == (0.2, 0.28, "token_mean")
    assert [f.name for f in dapo.filters] == ["dynamic_sampling"]


def test_adora_state_is_checkpointed_and_resumed(tiny_model_dir: Path, tmp_path: Path) -> None:
    extra = ("checkpoint.every=1", "checkpoint.save_final=true")
    _, run_dir = run("adora", tiny_model_dir, tmp_path, *extra)
    latest = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    state = json.loads((latest / "trainer_state.json").read_text())["advantage"]
    # 2 steps x 2 prompts (the 1-digit task repeats prompts, so ids may coincide)
    assert 1 <= len(state["prompts"]) <= 4
    assert sum(rec["visits"] for rec in state["prompts"].values()) == 4
    recipe = load_recipe(
        RECIPES / "adora_arithmetic_cpu.yaml",
        [f"model.path={tiny_model_dir}", f"output_dir={tmp_path}", *TINY, *extra, "resume=true"],
    )
    trainer = Trainer(recipe)
    try:
        assert trainer.advantage.state_dict() == state
    finally:
        trainer.close()
