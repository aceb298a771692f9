"""A recipe with composed rewards (math + format + DAPO overlong + stateful effort) trains end
to end on the tiny model; each component is logged and the effort state is checkpointed."""

from __future__ import annotations

import json
from pathlib import Path

from rlvr.config import Recipe
from rlvr.metrics import read_metrics
from rlvr.trainer import Trainer


def test_recipe_with_composed_rewards_trains_and_checkpoints_reward_state(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    recipe = Recipe.model_validate(
        {
            "name": "rewards_e2e",
            "output_dir": str(tmp_path),
            "seed": 0,
            "model": {"path": str(tiny_model_dir)},
            "data": {
                "source": "arithmetic",
                "arithmetic": {"digits": 1, "num_train": 16, "num_eval": 4},
            },
            "rollout": {"engine": "hf", "group_size": 3, "max_new_tokens": 6, "temperature": 1.0},
            "rewards": [
                {"name": "math"},
                {"name": "format", "weight": 0.2, "params": {"partial": True}},
                {"name": "overlong", "params": {"max_len": 6, "cache_len": 3}},
                {"name": "effort", "weight": 0.5, "key": "aec"},
            ],
            "reward_runner": {"num_workers": 1, "timeout_s": 10.0},
            "train": {"steps": 2, "prompts_per_step": 2, "micro_batch_size": 6},
            "checkpoint": {"every": 2, "keep_last": 1},
            "logging": {"tensorboard": False, "plots": False, "progress": False},
        }
    )
    trainer = Trainer(recipe)
    try:
        trainer.train()
    finally:
        trainer.close()
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("math", "format", "overlong", "aec", "total"):
        assert f"reward/{key}/mean" in rows[0], key
    assert rows[0]["reward/n_failed"] == 0 and rows[0]["reward/n_timeout"] == 0
    # 6 new tokens max: every truncated sample sits at L_max = 6 -> overlong = -1
    assert all(-1.0 <= r["reward/overlong/mean"] <= 0.0 for r in rows)
    (ckpt,) = sorted((recipe.run_dir / "checkpoints").glob("step_*"))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    aec = state["rewards"]["rewards"]["aec"]
    assert len(aec) >= 2 and all(v["n"] >= 1 and v["mean"] > 0 for v in aec.values())
