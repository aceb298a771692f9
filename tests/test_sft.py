"""`rlvr sft`: recipe validation, data errors, a few steps full and LoRA on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from rlvr.cli import main
from rlvr.config import RecipeError, load_recipe
from rlvr.data import arithmetic_examples
from rlvr.data.datasets import DataError
from rlvr.stages.sft_recipe import SFTData, SFTRecipe, load_sft_rows


def _data(tmp_path: Path, n: int = 64) -> Path:
    train, _ = arithmetic_examples(2, ["+"], n, 4, seed=0)
    p = tmp_path / "sft.jsonl"
    p.write_text("".join(json.dumps({"q": e["prompt"], "a": e["solution"]}) + "\n" for e in train))
    return p


def test_rows_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"q": "1+1=", "a": "2"}\n{"q": "x"}\n{bad\n')
    rows = load_sft_rows(SFTData(path=str(p), prompt_field="q", completion_field="a"))
    assert rows == [
        {
            "prompt": [{"role": "user", "content": "1+1="}],
            "completion": [{"role": "assistant", "content": "2"}],
        }
    ]
    p.write_text('{"q": "x"}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: missing 'q' or 'a'"):
        load_sft_rows(SFTData(path=str(p), prompt_field="q", completion_field="a"))
    m = tmp_path / "m.jsonl"
    m.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                ]
            }
        )
        + "\n"
    )
    assert (
        load_sft_rows(SFTData(path=str(m), messages_field="messages"))[0]["messages"][1]["content"]
        == "yo"
    )


def test_recipe_rejects_unknown_keys(tmp_path: Path) -> None:
    r = tmp_path / "r.yaml"
    r.write_text("model: {path: x}\ndata: {path: y}\ntrain: {stepz: 3}\n")
    with pytest.raises(RecipeError, match="did you mean 'train.steps'"):
        load_recipe(r, schema=SFTRecipe)


@pytest.mark.parametrize("lora", [False, True])
def test_sft_cli_full_and_lora_change_the_weights(
    tiny_model_dir, tmp_path: Path, lora: bool
) -> None:
    data = _data(tmp_path)
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(
        f"name: s\noutput_dir: {tmp_path}\nmodel: {{path: {tiny_model_dir}}}\n"
        f"data: {{path: {data}, prompt_field: q, completion_field: a}}\n"
        "train: {steps: 6, lr: 3.0e-3, batch_size: 16, max_length: 64}\n"
        f"lora: {{enabled: {str(lora).lower()}, r: 4, alpha: 8}}\n"
    )
    assert main(["sft", str(recipe)]) == 0
    out = tmp_path / "s" / "model"
    assert (out / "model.safetensors").is_file() and (tmp_path / "s" / "recipe.yaml").is_file()
    tuned = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not any(n.startswith("base_model") or "lora" in n for n, _ in tuned.named_parameters())
    moved = sum(
        float((a - b).detach().abs().sum())
        for a, b in zip(tuned.parameters(), base.parameters(), strict=True)
    )
    assert moved > 0
