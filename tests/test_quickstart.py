"""The quickstart: bundled model loads (transformers and vLLM), the recipe runs, and the
arithmetic verifier agrees with exact integer comparison."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewards.math import math_reward
from rlvr.config import load_recipe
from rlvr.data.arithmetic import worked_solution
from rlvr.metrics import read_metrics
from rlvr.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "quickstart"


def test_bundled_model_loads_and_is_small() -> None:
    size = (MODEL / "model.safetensors").stat().st_size
    assert size <= 20 * 2**20
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL)
    assert model.config.model_type == "qwen2"
    assert model.config.head_dim >= 32  # vLLM CPU attention
    assert "<think>" in tok.get_vocab() and tok.chat_template
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "12+34="}], tokenize=False, add_generation_prompt=True
    )
    out = model.generate(
        **tok(ids, return_tensors="pt", add_special_tokens=False),
        max_new_tokens=16,
        do_sample=False,
    )
    text = tok.decode(out[0], skip_special_tokens=False)
    assert "<think>" in text  # the SFT taught the format


@pytest.mark.vllm
def test_quickstart_recipe_runs_two_steps_on_vllm(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    recipe = load_recipe(
        REPO / "recipes" / "quickstart.yaml",
        [
            f"output_dir={tmp_path}",
            "train.steps=2",
            "train.prompts_per_step=4",
            "rollout.group_size=4",
            "eval.num_problems=8",
            "eval.samples=2",
            "logging.progress=false",
            "rollout.max_model_len=256",
        ],
    )
    trainer = Trainer(recipe)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert len(rows) == 2 and rows[0]["logprob_mismatch"] < 1e-4
    assert set(summary["eval_before"]) == {"eval/greedy", "eval/pass@1"}
    assert set(summary["eval_after"]) == {"eval/greedy", "eval/pass@1"}
    assert (Path(summary["checkpoint"]) / "model.safetensors").is_file()


def test_arithmetic_verifier_agrees_with_integer_comparison() -> None:
    rng = random.Random(0)
    for _ in range(300):
        truth = rng.randint(-2000, 20000)
        guess = truth if rng.random() < 0.5 else truth + rng.choice([-10, -1, 1, 7, 100])
        completion = worked_solution(guess)
        assert math_reward(completion, str(truth)) == float(guess == truth), (completion, truth)


def test_worked_solution_format() -> None:
    assert worked_solution(68) == "<think>86</think>\\boxed{68}"
    assert worked_solution(-5) == "<think>-5</think>\\boxed{-5}"
