"""SPECS stage: preference-pair construction, self-generation and a few DPO steps on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rewards.format import format_reward
from rlvr.data import arithmetic_examples
from rlvr.stages.specs import (
    CORRUPTIONS,
    build_preference_pairs,
    corrupt_format,
    run_specs,
    self_generate,
)

GOOD = "<think>21</think>\\boxed{12}"
WRONG = "<think>31</think>\\boxed{13}"
ILL = "\\boxed{12}"  # correct answer, no think block


def _texts(rows: list[dict], key: str) -> list[str]:
    return [r[key][0]["content"] for r in rows]


def test_pairs_rule_and_counts() -> None:
    examples = [
        {"prompt": "5+7=", "answer": "12", "id": "a"},
        {"prompt": "6+6=", "answer": "12", "id": "b"},  # all correct: skipped
        {"prompt": "9+3=", "answer": "12", "id": "c"},  # none correct: skipped
        {"prompt": "8+4=", "answer": "12", "id": "d"},  # ill-formed correct answer is rejected
    ]
    groups = [[GOOD, WRONG, WRONG + " ", GOOD + "."], [GOOD, GOOD], [WRONG, ILL], [ILL, GOOD]]
    scores = [[1.0, 0.0, 0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]]
    formats = [[True, True, True, True], [True, True], [True, False], [False, True]]
    stats: dict = {}
    rows = build_preference_pairs(groups, examples, scores, formats, pairing="coupled", stats=stats)
    assert stats == {
        "prompts": 4,
        "pairs": 3,
        "skipped_no_chosen": 1,
        "skipped_no_rejected": 1,
        "synthesized": 0,
    }
    assert [r["id"] for r in rows] == ["a", "a", "d"]
    assert _texts(rows, "chosen") == [GOOD, GOOD + ".", GOOD]
    assert _texts(rows, "rejected") == [WRONG, WRONG + " ", ILL]
    assert rows[0]["prompt"] == [{"role": "user", "content": "5+7="}]
    assert rows[0]["chosen"][0]["role"] == "assistant"
    # at most N pairs per prompt, cycling the shorter side
    capped = build_preference_pairs(
        [[GOOD, WRONG, "w2", "w3"]],
        examples[:1],
        [[1, 0, 0, 0]],
        [[True] * 4],
        max_pairs_per_prompt=2,
        pairing="coupled",
    )
    assert _texts(capped, "chosen") == [GOOD, GOOD]
    assert _texts(capped, "rejected") == [WRONG, "w2"]
    with pytest.raises(ValueError):
        build_preference_pairs([[GOOD]], examples[:1], [[1.0, 0.0]], [[True]])


def test_corruptions_break_format_and_synthesized_pairs() -> None:
    ex = {"prompt": "5+7=", "answer": "12"}
    assert format_reward(GOOD, ex) == 1.0
    for kind in CORRUPTIONS:
        bad = corrupt_format(GOOD, kind)
        assert bad != GOOD and format_reward(bad, ex) == 0.0, kind
    with pytest.raises(ValueError):
        corrupt_format(GOOD, "nope")
    stats: dict = {}
    rows = build_preference_pairs(
        [[GOOD, GOOD]],
        [ex],
        [[1.0, 1.0]],
        [[True, True]],
        synthesize_rejected=True,
        pairing="coupled",
        stats=stats,
    )
    assert stats["synthesized"] == 2 and stats["skipped_no_rejected"] == 0
    assert _texts(rows, "rejected") == [corrupt_format(GOOD, c) for c in CORRUPTIONS[:2]]


def test_decoupled_pairs_are_the_default() -> None:
    """The paper's pairs: rejected = the chosen response itself with its format corrupted, even
    when natural wrong samples exist; prompts without a chosen sample are skipped."""
    ex = [{"prompt": "5+7=", "answer": "12", "id": "a"}, {"prompt": "9+3=", "answer": "12"}]
    other = GOOD.replace("<think>", "<think> ")
    stats: dict = {}
    rows = build_preference_pairs(
        [[GOOD, WRONG, other], [WRONG, ILL]],
        ex,
        [[1.0, 0.0, 1.0], [0.0, 1.0]],
        [[True, True, True], [True, False]],
        stats=stats,
    )
    assert _texts(rows, "chosen") == [GOOD, other]
    assert _texts(rows, "rejected") == [
        corrupt_format(GOOD, CORRUPTIONS[0]),
        corrupt_format(other, CORRUPTIONS[1]),
    ]
    assert WRONG not in _texts(rows, "rejected")
    assert stats["synthesized"] == 2 and stats["skipped_no_chosen"] == 1
    with pytest.raises(ValueError, match="pairing"):
        build_preference_pairs([[GOOD]], ex[:1], [[1.0]], [[True]], pairing="both")


def test_self_generate_shapes(tiny_model_dir: Path) -> None:
    examples, _ = arithmetic_examples(2, ["+"], 2, 1, seed=0)
    gen = self_generate(tiny_model_dir, examples, n=2, max_new_tokens=6, temperature=1.0, seed=0)
    assert [len(g) for g in gen["groups"]] == [2, 2]
    assert all(isinstance(t, str) for g in gen["groups"] for t in g)
    assert all(s in (0.0, 1.0) for g in gen["scores"] for s in g)
    assert all(isinstance(f, bool) for g in gen["formats_ok"] for f in g)


def test_run_specs_trains_and_saves(tiny_model_dir: Path, tmp_path: Path) -> None:
    examples, _ = arithmetic_examples(2, ["+"], 8, 2, seed=0)
    # the random tiny model is never right: pair each worked solution with a wrong / corrupted one
    groups = [
        [ex["solution"], f"<think>0</think>\\boxed{{{int(ex['answer']) + 1}}}"] for ex in examples
    ]
    groups = [g + [corrupt_format(g[0], "drop_open")] for g in groups]
    scores = [[1.0, 0.0, 1.0] for _ in examples]
    formats = [[True, True, False] for _ in examples]
    pairs = build_preference_pairs(groups, examples, scores, formats, max_pairs_per_prompt=2)
    assert len(pairs) == 16
    out = tmp_path / "specs"
    res = run_specs(
        tiny_model_dir,
        examples,
        out,
        pairs=pairs,
        beta=0.1,
        lr=1e-3,
        steps=3,
        batch_size=4,
        sft_weight=1.0,
        max_length=64,
    )
    assert res["steps"] == 3 and res["num_pairs"] == 16
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in res["log_history"])
    assert (out / "model.safetensors").is_file() and not (out / "_specs_tmp").exists()
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    assert model is not None
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)


def test_run_specs_without_pairs_raises(tiny_model_dir: Path, tmp_path: Path) -> None:
    examples, _ = arithmetic_examples(2, ["+"], 2, 1, seed=0)
    # the random tiny model gets nothing right, so self-generation gives no chosen sample
    with pytest.raises(ValueError, match="no preference pair"):
        run_specs(tiny_model_dir, examples, tmp_path / "o", n=2, max_new_tokens=6, steps=1)
