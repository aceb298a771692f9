"""Batch filters (DAPO dynamic sampling) on a stub generator, and DAPO overlong shaping."""

from __future__ import annotations

import pytest
import torch

from rewards.length import overlong_penalty, overlong_reward, truncation_mask
from rlvr.algos import build_filter
from rlvr.algos.filters import informative_groups
from rlvr.batch import RolloutBatch
from rlvr.rollout.base import Completion


def make_batch(rows: list[list[float]], start: int = 0, truncated: bool = False) -> RolloutBatch:
    reason = "length" if truncated else "stop"
    return RolloutBatch(
        examples=[{"id": f"p{start + i}", "prompt": "q"} for i in range(len(rows))],
        prompt_ids=[[start + i] for i in range(len(rows))],
        completions=[[Completion([1], [0.0], reason, "x") for _ in row] for row in rows],
        rewards=torch.tensor(rows),
        reward_components={"math": torch.tensor(rows)},
    )


class StubGenerator:
    """Every ``period``-th prompt has mixed rewards; the rest are all 0 or all 1."""

    def __init__(self, period: int = 4, start: int = 100) -> None:
        self.period = period
        self.next_id = start
        self.calls: list[tuple[int, int]] = []

    def rows(self, n: int) -> list[list[float]]:
        out = []
        for _ in range(n):
            i = self.next_id
            self.next_id += 1
            if i % self.period == 0:
                out.append([1.0, 0.0, 0.0, 1.0])
            else:
                out.append([float(i % 2)] * 4)
        return out

    def __call__(self, num_prompts: int, round_: int) -> RolloutBatch:
        self.calls.append((num_prompts, round_))
        start = self.next_id
        return make_batch(self.rows(num_prompts), start=start)


def test_informative_groups() -> None:
    r = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.3]])
    assert informative_groups(r) == [1, 3]
    assert informative_groups(r, min_spread=0.2) == [1]


def test_dynamic_sampling_refills_to_the_target() -> None:
    gen = StubGenerator(period=4)
    first = make_batch([[1.0, 0.0, 0.0, 0.0]] + [[0.0] * 4] * 7)  # 1 informative of 8
    ds = build_filter("dynamic_sampling", max_rounds=10)
    out, m = ds(first, gen)
    assert out.num_prompts == 8
    assert all(float(g.max() - g.min()) > 0 for g in out.rewards)
    # by hand: ids 100.. informative when divisible by 4; each round asks for what is missing
    # 100-106 -> 100,104 (3 kept); 107-111 -> 108 (4); 112-115 -> 112 (5); 116-118 -> 116 (6);
    # 119-120 -> 120 (7); 121, 122, 123 -> none; 124 -> 8 kept after 10 rounds
    sizes = [7, 5, 4, 3, 2, 1, 1, 1, 1]
    assert gen.calls == [(n, i + 1) for i, n in enumerate(sizes)]
    assert m["rounds"] == 10
    assert m["generated_groups"] == 8 + sum(sizes) == 33
    assert m["dropped_groups"] == 25
    assert m["kept_groups"] == 8 and m["short"] == 0.0
    # order: the first batch's informative group first, then refills in generation order
    assert out.examples[0]["id"] == "p0"
    assert out.reward_components["math"].shape == (8, 4)


def test_dynamic_sampling_retries_are_bounded() -> None:
    gen = StubGenerator(period=1000)  # (almost) never informative
    first = make_batch([[0.0, 1.0]] + [[1.0, 1.0]] * 3)
    out, m = build_filter("dynamic_sampling", max_rounds=3)(first, gen)
    assert len(gen.calls) == 2 and m["rounds"] == 3
    assert out.num_prompts == 1 and m["short"] == 1.0 and m["kept_groups"] == 1


def test_dynamic_sampling_with_nothing_informative_keeps_the_last_batch() -> None:
    gen = StubGenerator(period=1000, start=1)
    out, m = build_filter("dynamic_sampling", max_rounds=2)(make_batch([[1.0, 1.0]] * 2), gen)
    assert out.num_prompts == 2 and m["kept_groups"] == 0 and m["short"] == 1.0


def test_dynamic_sampling_full_refill_and_surplus_cut() -> None:
    gen = StubGenerator(period=2)  # half informative
    first = make_batch([[0.0, 0.0]] * 4)
    out, m = build_filter("dynamic_sampling", max_rounds=5, refill="full")(first, gen)
    assert gen.calls[0] == (4, 1)  # a full batch, not just the missing groups
    assert out.num_prompts == 4 and m["short"] == 0.0
    out, m = build_filter("dynamic_sampling", target=2)(make_batch([[0.0, 1.0]] * 3), gen)
    assert out.num_prompts == 2 and m["rounds"] == 1


def test_dynamic_sampling_keeps_loss_masks_aligned() -> None:
    first = make_batch([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    first.loss_mask = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    out, _ = build_filter("dynamic_sampling", max_rounds=1)(first, StubGenerator())
    assert torch.equal(out.loss_mask, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert out.sample_loss_weights().tolist() == [1.0, 0.0, 0.0, 1.0]


def test_bad_filter_parameters() -> None:
    with pytest.raises(KeyError, match="did you mean 'dynamic_sampling'"):
        build_filter("dynamic_sampler")
    with pytest.raises(ValueError, match="max_rounds"):
        build_filter("dynamic_sampling", max_rounds=0)
    with pytest.raises(TypeError, match="algo.filters.params"):
        build_filter("dynamic_sampling", rounds=2)


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, 0.0),
        (79, 0.0),
        (80, 0.0),
        (81, -0.05),
        (90, -0.5),
        (99, -0.95),
        (100, -1.0),
        (101, -1.0),
    ],
)
def test_overlong_shaping_at_the_boundaries(length: int, expected: float) -> None:
    # L_max = 100, L_cache = 20: free up to 80, linear to -1 at 100, -1 beyond
    assert overlong_penalty(length, 100, 20) == pytest.approx(expected)
    assert overlong_reward("", {}, num_tokens=length, max_len=100, cache_len=20) == pytest.approx(
        expected
    )


def test_truncated_samples_masking() -> None:
    assert (
        overlong_reward(
            "",
            {},
            num_tokens=10,
            finish_reason="length",
            max_len=100,
            cache_len=20,
            penalize_truncated=True,
        )
        == -1.0
    )
    batch = make_batch([[1.0, 0.0]], truncated=True)
    assert batch.truncated.tolist() == [[True, True]]
    assert truncation_mask([["stop", "length"]]) == [[1.0, 0.0]]


def test_dynamic_sampling_keys_on_accuracy_not_on_length_shaping() -> None:
    """DAPO Eq. 11: an all-correct group whose totals differ only by an overlong penalty is
    dropped under metric=acc (default) and kept under metric=reward."""
    # group 0: all correct, totals 1, 0.75, 1, 0.5 (length penalties); group 1: mixed.
    batch = make_batch([[1.0, 0.75, 1.0, 0.5], [1.0, 0.0, 0.0, 0.0]])
    batch.reward_components = {
        "math": torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]),
        "overlong": torch.tensor([[0.0, -0.25, 0.0, -0.5], [0.0, 0.0, 0.0, 0.0]]),
    }
    gen = StubGenerator()
    out, m = build_filter("dynamic_sampling", max_rounds=1)(batch, gen)
    assert out.num_prompts == 1 and m["dropped_groups"] == 1.0
    assert torch.equal(out.rewards, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    out, m = build_filter("dynamic_sampling", max_rounds=1, metric="reward")(batch, gen)
    assert out.num_prompts == 2 and m["dropped_groups"] == 0.0
    with pytest.raises(KeyError, match="correct_key"):
        build_filter("dynamic_sampling", correct_key="acc")(batch, gen)
