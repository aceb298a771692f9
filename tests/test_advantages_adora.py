"""ADORA: TAS / TDS classification, advantage reweighting and per-prompt state round trips."""

from __future__ import annotations

import json

import pytest
import torch

from rlvr.algos import AdvantageContext, build_advantage, compute_advantages
from rlvr.algos.adora import length_advantage


def ctx(lengths, truncated=None, ids=None, step=1, components=None) -> AdvantageContext:
    lengths = torch.tensor(lengths, dtype=torch.float32)
    return AdvantageContext(
        prompt_ids=ids or [f"p{b}" for b in range(lengths.shape[0])],
        lengths=lengths,
        step=step,
        truncated=None if truncated is None else torch.tensor(truncated),
        components=components or {},
    )


def test_length_criterion_by_hand() -> None:
    correct = torch.tensor(
        [
            [True, False, False, True],  # max correct 10 > mean wrong (5+6)/2 = 5.5 -> TAS
            [True, False, False, False],  # max correct 4 < mean wrong 8 -> TDS
            [False, False, False, False],  # nothing correct: llm -> TDS, vl -> TAS
            [True, True, True, True],  # no wrong sample: llm -> TAS (mean -inf), vl -> TDS (+inf)
            [False, True, True, True],  # no correct, wrong all truncated: llm TDS, vl TAS
        ]
    )
    lengths = torch.tensor(
        [[10.0, 5, 6, 3], [4, 8, 10, 6], [3, 4, 5, 6], [3, 4, 5, 6], [9, 9, 9, 9]],
        dtype=torch.float32,
    )
    truncated = torch.zeros_like(correct)
    truncated[4] = True
    correct[4] = False
    llm = length_advantage(lengths, correct, truncated)
    assert llm.tolist() == [True, False, False, True, False]
    vl = length_advantage(lengths, correct, truncated, "vl")
    assert vl.tolist() == [True, False, True, False, True]


def test_truncated_wrong_samples_are_left_out_of_the_mean() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # wrong lengths 20 (truncated), 5, 6: without truncation mean 10.33 > 7 -> TDS;
    # leaving the truncated one out, mean 5.5 < 7 -> TAS
    grpo = compute_advantages("grpo", r)
    with_flags = compute_advantages(
        "adora", r, context=ctx([[7, 20, 5, 6]], truncated=[[False, True, False, False]])
    )
    assert torch.allclose(with_flags, grpo)
    without = compute_advantages("adora", r, context=ctx([[7, 20, 5, 6]]))
    assert torch.allclose(without, 0.1 * grpo)
    by_max_length = compute_advantages("adora", r, context=ctx([[7, 20, 5, 6]]), max_length=20)
    assert torch.allclose(by_max_length, grpo)


def test_reweights_the_base_estimator_per_group() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    context = ctx([[10, 5, 6, 3], [4, 8, 10, 6]])
    est = build_advantage("adora", base="rloo", lam=0.25, tas_weight=2.0)
    adv = est(r, context)
    rloo = compute_advantages("rloo", r)
    assert torch.allclose(adv[0], 2.0 * rloo[0])
    assert torch.allclose(adv[1], 0.25 * rloo[1])
    m = est.metrics()
    assert m["tas_fraction"] == 0.5 and m["weight_mean"] == pytest.approx(1.125)
    assert m["tracked_prompts"] == 2


def test_correct_key_reads_a_reward_component() -> None:
    # continuous total reward (math + a length term), correctness from the "math" component
    total = torch.tensor([[1.3, 0.2, 0.1, 0.4]])
    math_c = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    context = ctx([[3, 8, 9, 10]], components={"math": math_c})
    adv = compute_advantages("adora", total, context=context, correct_key="math")
    assert torch.allclose(adv, 0.1 * compute_advantages("grpo", total))  # 3 < mean 9 -> TDS
    with pytest.raises(KeyError, match="not a reward component"):
        compute_advantages("adora", total, context=context, correct_key="acc")


def test_single_sample_and_all_equal_groups_stay_zero() -> None:
    assert torch.equal(
        compute_advantages("adora", torch.tensor([[1.0]]), context=ctx([[5]])), torch.zeros(1, 1)
    )
    assert torch.equal(
        compute_advantages("adora", torch.zeros(2, 3), context=ctx([[1, 2, 3], [4, 5, 6]])),
        torch.zeros(2, 3),
    )


def test_length_criterion_needs_lengths() -> None:
    with pytest.raises(ValueError, match="needs context.lengths"):
        compute_advantages("adora", torch.tensor([[1.0, 0.0]]))


def test_difficulty_criterion_uses_the_online_success_rate() -> None:
    est = build_advantage("adora", criterion="difficulty", ema=0.5, difficulty_threshold=0.5)
    r1 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # pass rate 0.25 -> estimate 0.25 -> TAS
    a1 = est(r1, ctx([[1, 1, 1, 1]], ids=["q"], step=1))
    assert torch.allclose(a1, compute_advantages("grpo", r1))
    r2 = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # 0.5 * 0.25 + 0.5 * 0.75 = 0.5 -> still TAS
    assert torch.allclose(
        est(r2, ctx([[1] * 4], ids=["q"], step=2)), compute_advantages("grpo", r2)
    )
    r3 = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # 0.5 * 0.5 + 0.5 * 0.75 = 0.625 -> TDS
    assert torch.allclose(
        est(r3, ctx([[1] * 4], ids=["q"], step=3)), 0.1 * compute_advantages("grpo", r3)
    )
    rec = est.state_dict()["prompts"]["q"]
    assert rec == {"visits": 3.0, "tas": 2.0, "pass_ema": 0.625, "last_step": 3.0}


def test_state_round_trips_through_json_and_gives_the_same_decisions() -> None:
    est = build_advantage("adora", criterion="difficulty", ema=0.3, difficulty_threshold=0.4)
    gen = torch.Generator().manual_seed(0)
    ids = [f"q{i}" for i in range(6)]
    for step in range(5):
        r = (torch.rand(6, 4, generator=gen) > 0.5).float()
        est(r, ctx([[1] * 4] * 6, ids=ids, step=step))
    saved = json.loads(json.dumps(est.state_dict()))  # as the checkpoint writes it
    restored = build_advantage("adora", criterion="difficulty", ema=0.3, difficulty_threshold=0.4)
    restored.load_state_dict(saved)
    assert restored.state_dict() == est.state_dict()
    r = (torch.rand(6, 4, generator=gen) > 0.5).float()
    context = ctx([[1] * 4] * 6, ids=ids, step=9)
    assert torch.equal(restored(r, context), est(r, context))
    fresh = build_advantage("adora", criterion="difficulty", ema=0.3, difficulty_threshold=0.4)
    assert fresh.state_dict()["prompts"] == {}


def test_state_is_bounded_least_recently_seen_first() -> None:
    est = build_advantage("adora", max_tracked=2)
    for pid in ("a", "b", "a", "c"):
        est(torch.tensor([[1.0, 0.0]]), ctx([[1, 2]], ids=[pid]))
    assert list(est.state_dict()["prompts"]) == ["a", "c"]


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="criterion"):
        build_advantage("adora", criterion="entropy")
    with pytest.raises(ValueError, match="another estimator"):
        build_advantage("adora", base="adora")
