"""`rlvr pipeline`: SFT -> GRPO chained, output of one stage feeding the next, re-run skips."""

from __future__ import annotations

import json
from pathlib import Path

from rlvr.cli import main
from rlvr.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]


def test_sft_then_grpo_pipeline_and_rerun_skips(
    tiny_model_dir, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(REPO)
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(
        f"name: p\noutput_dir: {tmp_path}\nstages:\n"
        "  - name: sft\n    kind: sft\n    recipe: recipes/sft_arithmetic_cpu.yaml\n"
        f"    overrides: ['model.path={tiny_model_dir}', 'train.steps=3', 'train.batch_size=8',"
        " 'data.arithmetic.num_train=64']\n"
        "  - name: grpo\n    kind: train\n    recipe: recipes/grpo_arithmetic_cpu.yaml\n"
        "    overrides: ['train.steps=2', 'train.prompts_per_step=2', 'rollout.group_size=4',"
        " 'rollout.max_new_tokens=8', 'logging.progress=false', 'logging.tensorboard=false',"
        " 'eval.before=false', 'eval.after=false', 'reward_runner.num_workers=1']\n"
    )
    assert main(["pipeline", str(pipe)]) == 0
    sft_done = json.loads((tmp_path / "p" / "sft" / "stage_done.json").read_text())
    grpo_done = json.loads((tmp_path / "p" / "grpo" / "stage_done.json").read_text())
    assert sft_done["model"] == str(tmp_path / "p" / "sft" / "model")
    assert grpo_done["input"] == sft_done["model"]  # the SFT model fed the RL stage
    resolved = (tmp_path / "p" / "grpo" / "recipe.yaml").read_text()
    assert f"path: {sft_done['model']}" in resolved
    assert len(read_metrics(tmp_path / "p" / "grpo" / "metrics.jsonl")) == 2
    assert (Path(grpo_done["model"]) / "model.safetensors").is_file()
    stamp = (tmp_path / "p" / "grpo" / "stage_done.json").stat().st_mtime_ns
    assert main(["pipeline", str(pipe)]) == 0  # finished stages are skipped
    assert (tmp_path / "p" / "grpo" / "stage_done.json").stat().st_mtime_ns == stamp


def test_changed_stage_is_skipped_with_a_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    """A finished stage is not re-run, but a changed recipe / override is reported."""
    from rlvr.config import load_recipe
    from rlvr.pipeline import PipelineRecipe, run_pipeline

    monkeypatch.chdir(REPO)
    calls = []
    monkeypatch.setattr(
        "rlvr.pipeline.run_stage", lambda pipe, stage, model: calls.append(stage.name) or "m"
    )
    pipe = tmp_path / "pipe.yaml"
    text = (
        f"name: p\noutput_dir: {tmp_path}\nstages:\n"
        "  - name: sft\n    kind: sft\n    recipe: recipes/sft_arithmetic_cpu.yaml\n"
        "    overrides: ['train.steps=3']\n"
    )
    pipe.write_text(text)
    run_pipeline(load_recipe(pipe, schema=PipelineRecipe))
    run_pipeline(load_recipe(pipe, schema=PipelineRecipe))
    assert calls == ["sft"] and "changed since" not in caplog.text
    pipe.write_text(text.replace("train.steps=3", "train.steps=4"))
    run_pipeline(load_recipe(pipe, schema=PipelineRecipe))
    assert calls == ["sft"] and "stage sft is done, but its recipe" in caplog.text
