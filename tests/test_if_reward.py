"""The instruction-following reward wrapper and the eval scoring helpers.

Rewards and accuracies are checked against values computed by hand from the definitions in
``rewards.instruction_following`` (instruction-level fraction, all-or-nothing, prompt- and
instruction-level accuracy strict and loose).
"""

from __future__ import annotations

import pytest

from rewards.base import registered_rewards
from rewards.instruction_following import (
    aggregate_if_scores,
    check_instruction,
    extract_response,
    if_reward,
    known_instruction_ids,
    score_if_response,
)

EXAMPLE = {
    "prompt": "Describe cats. Do not use commas. Answer with at least 5 words.",
    "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
    "kwargs": [{"num_words": None}, {"num_words": 5, "relation": "at least"}],
}


def test_fraction_and_all_or_nothing() -> None:
    both = "Cats are small furry animals."
    one = "Cats and dogs, birds and fish."  # 6 words but a comma
    none = "Cats, dogs."
    assert if_reward(both, EXAMPLE) == 1.0
    assert if_reward(one, EXAMPLE) == 0.5
    assert if_reward(one, EXAMPLE, all_or_nothing=True) == 0.0
    assert if_reward(both, EXAMPLE, all_or_nothing=True) == 1.0
    assert if_reward(none, EXAMPLE) == 0.0


def test_mixed_ifeval_ifbench_and_iftrain_ids() -> None:
    example = {
        "instruction_id_list": [
            "punctuation:no_comma",
            "format:no_whitespace",
            "punctuation:punctuation_exclamation",
        ],
        "kwargs": [{}, {}, {}],
    }
    assert if_reward("abc", example) == 1.0
    assert if_reward("a b!", example) == pytest.approx(1 / 3)


def test_thinking_is_stripped() -> None:
    completion = (
        "<think>Well, commas, everywhere, here.</think>\n"
        "<answer>Cats are small furry animals</answer>"
    )
    assert extract_response(completion) == "Cats are small furry animals"
    assert if_reward(completion, EXAMPLE) == 1.0
    # an unclosed think block has no answer
    assert if_reward("<think>Cats are small furry animals", EXAMPLE) == 0.0
    assert if_reward("", EXAMPLE) == 0.0
    assert if_reward("<|assistant|>  ", EXAMPLE) == 0.0


def test_loose_reward() -> None:
    example = {"instruction_id_list": ["startend:quotation"], "kwargs": [{}]}
    completion = '"A quoted answer."\nHope this helps.'
    assert if_reward(completion, example) == 0.0
    assert if_reward(completion, example, loose=True) == 1.0


def test_open_instruct_label_layout() -> None:
    example = {"instruction_id": ["punctuation:no_comma"], "kwargs": [None]}
    assert if_reward("no commas", example) == 1.0


def test_bad_examples_raise() -> None:
    with pytest.raises(KeyError, match="instruction_id_list"):
        if_reward("x", {"prompt": "p"})
    with pytest.raises(ValueError, match="kwargs"):
        if_reward("x", {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}, {}]})
    with pytest.raises(KeyError, match="unknown"):
        if_reward("x", {"instruction_id_list": ["nope:nothing"], "kwargs": [{}]})


def test_registered_in_reward_registry() -> None:
    names = registered_rewards()
    assert names["ifeval"] == "rewards.instruction_following:if_reward"
    assert names["ifbench"] == "rewards.instruction_following:if_reward"


def test_known_ids_cover_all_three_families() -> None:
    ids = known_instruction_ids()
    assert len(ids) == 25 + 58 + 29
    assert check_instruction("count:numbers", {"N": 1}, "only 1 number")


def test_score_if_response_and_aggregate() -> None:
    ids = ["punctuation:no_comma", "startend:quotation"]
    kws = [{}, {}]
    r1 = score_if_response(ids, kws, '"no commas"', "p")  # both strict
    r2 = score_if_response(ids, kws, '"no commas"\nBye, now', "p")  # loose only for both
    r3 = score_if_response(ids, kws, "a, b", "p")  # none
    assert r1 == {
        "strict": [True, True],
        "loose": [True, True],
        "prompt_strict": True,
        "prompt_loose": True,
    }
    assert r2["strict"] == [False, False] and r2["loose"] == [True, True]
    assert r3["strict"] == [False, False] and r3["loose"] == [False, False]
    agg = aggregate_if_scores([r1, r2, r3])
    assert agg["prompt_level_strict_acc"] == pytest.approx(1 / 3)
    assert agg["prompt_level_loose_acc"] == pytest.approx(2 / 3)
    assert agg["inst_level_strict_acc"] == pytest.approx(2 / 6)
    assert agg["inst_level_loose_acc"] == pytest.approx(4 / 6)
    assert agg["num_prompts"] == 3 and agg["num_instructions"] == 6
    with pytest.raises(ValueError):
        aggregate_if_scores([])


def test_reward_through_the_runner_inline() -> None:
    from rewards.runner import RewardRunner

    with RewardRunner(
        [{"name": "ifeval", "params": {"all_or_nothing": True}}], num_workers=0
    ) as runner:
        batch = runner.score(
            [["Cats are small furry animals.", "Cats, dogs and birds."]], [EXAMPLE]
        )
    assert batch.total == [[1.0, 0.0]]
