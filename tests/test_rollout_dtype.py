"""``rollout.dtype``: a bfloat16 rollout engine next to float32 training (HF engine on CPU).

The engine then holds its own bfloat16 copy, which the weight sync refreshes after each step;
the precision gap between the two shows in ``logprob_mismatch``."""

from __future__ import annotations

from pathlib import Path

import torch

from rlvr.config import Recipe
from rlvr.trainer import Trainer


def recipe(model_dir: Path, out: Path, **rollout) -> Recipe:
    """The random tiny model earns no reward: every row is trained (``skip_zero_rows``
    off) so that the mismatch covers them all."""
    return Recipe.model_validate(
        {
            "output_dir": str(out),
            "model": {"path": str(model_dir)},
            "data": {"arithmetic": {"digits": 1, "num_train": 32, "num_eval": 4}},
            "rollout": {"engine": "hf", "group_size": 4, "max_new_tokens": 6, **rollout},
            "reward_runner": {"num_workers": 1},
            "train": {
                "steps": 1,
                "prompts_per_step": 2,
                "micro_batch_size": 8,
                "lr": 1e-2,
                "skip_zero_rows": False,
            },
            "logging": {"tensorboard": False, "plots": False, "progress": False},
            "checkpoint": {"save_final": False},
        }
    )


def test_bf16_rollouts_with_fp32_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = Trainer(recipe(tiny_model_dir, tmp_path / "bf16", dtype="bfloat16"))
    try:
        assert not trainer.engine_shares_model
        engine_model = trainer.engine.model
        assert next(engine_model.parameters()).dtype == torch.bfloat16
        assert next(trainer.model.parameters()).dtype == torch.float32
        metrics = trainer.train_step(1)
        # bf16 sampling log-probs against the fp32 recomputation: a visible, bounded gap
        assert 1e-4 < metrics["logprob_mismatch"] < 0.5
        assert metrics["time/sync"] > 0
        trained = trainer.model.state_dict()
        for name, value in engine_model.state_dict().items():  # the sync reached the copy
            assert torch.equal(value, trained[name].to(torch.bfloat16)), name
    finally:
        trainer.close()


def test_default_rollout_dtype_shares_the_trained_module(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    trainer = Trainer(recipe(tiny_model_dir, tmp_path / "fp32"))
    try:
        assert trainer.engine_shares_model and trainer.engine.model is trainer.model
        assert trainer.train_step(1)["logprob_mismatch"] < 1e-4
    finally:
        trainer.close()
