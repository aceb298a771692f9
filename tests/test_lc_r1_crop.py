"""LC-R1's crop and its compress reward at </think> (rlvr/algos/lc_r1.py), by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from rlvr.algos import build_filter
from rlvr.batch import RolloutBatch
from rlvr.config import RecipeError, load_recipe
from rlvr.rollout.base import Completion

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(REPO / "models" / "quickstart")


def comp(tok, text: str) -> Completion:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return Completion(ids, [-0.5] * len(ids), "stop", tok.decode(ids))


def test_crop_and_compress_at_think_end(tok) -> None:
    # thinking "So x = 4. Check 4 again." = 24 chars; V = "So x = 4." = 9 chars
    right = "<think>So x = 4. Check 4 again.</think>\\boxed{4}"
    wrong = "<think>x is 5.</think>\\boxed{5}"
    batch = RolloutBatch(
        examples=[{"prompt": "q", "answer": "4"}],
        prompt_ids=[[1, 2, 3]],
        completions=[[comp(tok, right), comp(tok, wrong)]],
        rewards=torch.tensor([[1.0, 0.0]]),
        reward_components={"math": torch.tensor([[1.0, 0.0]])},
    )
    f = build_filter("lc_r1")
    f.bind_tokenizer(tok)
    out, m = f(batch, lambda n, r: batch)
    cropped = out.completions[0][0]
    assert cropped.text == "<think>So x = 4.</think>\\boxed{4}"
    assert (
        cropped.token_ids
        == tok("<think>So x = 4.</think>\\boxed{4}", add_special_tokens=False)["input_ids"]
    )
    assert out.completions[0][1].text == wrong  # wrong rollouts are left alone
    think_end = cropped.token_ids.index(tok.convert_tokens_to_ids("</think>"))
    assert out.token_bonus == {(0, 0, think_end): pytest.approx(1 - 9 / 24)}
    assert m["cropped_fraction"] == 1.0 and m["compress_mean"] == pytest.approx(0.625)
    # advantages: grpo on [1, 0] = +-0.7071; the bonus lands on the </think> token only,
    # uncentred (target position = len(prompt) + j - 1)
    out.advantages = torch.tensor([[0.7071, -0.7071]])
    out.build_tokens(pad_id=0)
    adv = out.token_advantages()
    pos = 3 + think_end - 1
    assert adv[0, pos] == pytest.approx(0.7071 + 0.625)
    assert adv[0, pos - 1] == pytest.approx(0.7071) and adv[0, pos + 1] == pytest.approx(0.7071)
    assert torch.allclose(adv[1], torch.full_like(adv[1], -0.7071))


def test_answer_never_derived_gets_minus_one_and_no_crop(tok) -> None:
    text = "<think>hmm hmm.</think>\\boxed{4}"
    batch = RolloutBatch(
        examples=[{"prompt": "q", "answer": "4"}],
        prompt_ids=[[1]],
        completions=[[comp(tok, text)]],
        rewards=torch.tensor([[1.0]]),
        reward_components={"math": torch.tensor([[1.0]])},
    )
    f = build_filter("lc_r1", cmp_coef=0.5)
    f.bind_tokenizer(tok)
    out, m = f(batch, lambda n, r: batch)
    assert out.completions[0][0].text == text and m["cropped_fraction"] == 0.0
    ((key, value),) = out.token_bonus.items()
    assert value == pytest.approx(-0.5)


def test_recipe_rejects_the_compress_term_counted_twice() -> None:
    with pytest.raises(RecipeError, match="cmp_coef"):
        load_recipe(
            REPO / "recipes" / "quickstart.yaml",
            ["rewards=[{name: math}, {name: lc_r1}]", "algo.filters=[{name: lc_r1}]"],
        )
    load_recipe(
        REPO / "recipes" / "quickstart.yaml",
        [
            "rewards=[{name: math}, {name: lc_r1, params: {cmp_coef: 0}}]",
            "algo.filters=[{name: lc_r1}]",
        ],
    )


def test_lc_r1_filter_trains_end_to_end(tiny_model_dir, tmp_path) -> None:
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe
    from tests.tiny_overrides import TINY_RUN_OVERRIDES

    recipe = load_recipe(
        REPO / "recipes" / "grpo_arithmetic_cpu.yaml",
        [
            f"model.path={tiny_model_dir}",
            f"output_dir={tmp_path}",
            "rewards=[{name: math}, {name: lc_r1, params: {cmp_coef: 0}}]",
            "algo.filters=[{name: lc_r1}]",
            *TINY_RUN_OVERRIDES,
        ],
    )
    _, trainer = train_recipe(recipe)
    trainer.close()
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert len(rows) == 2 and "filter/lc_r1/compress_mean" in rows[-1]
