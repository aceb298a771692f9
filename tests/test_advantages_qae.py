"""QAE (quantile baseline) on vectors computed by hand from the definition."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.algos import build_advantage, compute_advantages

EPS = 1e-6


def test_one_success_in_a_hard_group_is_the_only_nonzero() -> None:
    # sorted [0,0,0,1]; linear quantile at position 0.4 * 3 = 1.2 -> 0; unbiased std 0.5
    adv = compute_advantages("qae", torch.tensor([[0.0, 0.0, 1.0, 0.0]]), k=0.4)
    assert torch.allclose(adv, torch.tensor([[0.0, 0.0, 1 / (0.5 + EPS), 0.0]]))


def test_one_failure_in_an_easy_group_is_the_only_nonzero() -> None:
    # sorted [0,1,1,1]; position 1.2 lies between two 1s -> baseline 1
    adv = compute_advantages("qae", torch.tensor([[1.0, 0.0, 1.0, 1.0]]), k=0.4)
    assert torch.allclose(adv, torch.tensor([[0.0, -1 / (0.5 + EPS), 0.0, 0.0]]))


def test_linear_interpolation_between_a_zero_and_a_one() -> None:
    # sorted [0,0,1,1]; position 1.2 -> 0 + 0.2 * (1 - 0) = 0.2; std sqrt(1/3)
    r = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    s = math.sqrt(1 / 3)
    adv = compute_advantages("qae", r, k=0.4)
    assert torch.allclose(adv, torch.tensor([[-0.2, 0.8, -0.2, 0.8]]) / (s + EPS), atol=1e-5)
    lower = compute_advantages("qae", r, k=0.4, interpolation="lower")
    assert torch.allclose(lower, torch.tensor([[0.0, 1.0, 0.0, 1.0]]) / (s + EPS), atol=1e-5)


def test_continuous_rewards_unscaled() -> None:
    # K = 0.25 on [0.1, 0.4, 0.7, 1.0]: position 0.75 -> 0.1 + 0.75 * 0.3 = 0.325
    adv = compute_advantages("qae", torch.tensor([[0.7, 0.1, 1.0, 0.4]]), k=0.25, scale="none")
    assert torch.allclose(adv, torch.tensor([[0.375, -0.225, 0.675, 0.075]]), atol=1e-6)


def test_ties_at_the_quantile_get_exactly_zero() -> None:
    # K = 0.5 on sorted [0.2, 0.5, 0.5, 0.9]: position 1.5 between two 0.5s -> baseline 0.5
    adv = compute_advantages("qae", torch.tensor([[0.5, 0.9, 0.2, 0.5]]), k=0.5, scale="none")
    assert torch.allclose(adv, torch.tensor([[0.0, 0.4, -0.3, 0.0]]), atol=1e-6)
    assert adv[0, 0] == 0 and adv[0, 3] == 0


def test_single_sample_and_all_equal_groups_give_zeros() -> None:
    assert torch.equal(compute_advantages("qae", torch.tensor([[1.0], [0.0]])), torch.zeros(2, 1))
    assert torch.equal(compute_advantages("qae", torch.full((3, 5), 0.3)), torch.zeros(3, 5))


@pytest.mark.parametrize("g", [4, 5, 8, 16])
@pytest.mark.parametrize("k", [0.2, 0.4, 0.6, 0.8])
def test_inverted_cdf_gives_the_papers_two_regime_gate(g: int, k: float) -> None:
    """Binary rewards, success rate p: p <= 1 - K -> only successes move; else only failures."""
    for s in range(1, g):
        r = torch.tensor([[1.0] * s + [0.0] * (g - s)])
        adv = compute_advantages("qae", r, k=k, interpolation="inverted_cdf")
        p = s / g
        if p <= 1 - k + 1e-12:
            assert (adv[0, :s] > 0).all() and (adv[0, s:] == 0).all(), (g, k, s)
        else:
            assert (adv[0, :s] == 0).all() and (adv[0, s:] < 0).all(), (g, k, s)


def test_batch_scale_and_metrics() -> None:
    r = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    est = build_advantage("qae", k=0.4, scale="batch")
    adv = est(r)
    std = r.std()  # over all 12 rewards
    assert torch.allclose(adv[0], torch.tensor([0, 0, 0, 1.0]) / (std + EPS))
    assert torch.allclose(adv[1], torch.tensor([0, 0, 0, -1.0]) / (std + EPS))
    m = est.metrics()
    assert m["zero_fraction"] == pytest.approx(10 / 12)
    assert m["positive_fraction"] == pytest.approx(1 / 12)
    assert m["negative_fraction"] == pytest.approx(1 / 12)
    assert m["hard_regime_fraction"] == pytest.approx(0.5)  # of the 2 groups with spread
    assert m["easy_regime_fraction"] == pytest.approx(0.5)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="k must be in"):
        build_advantage("qae", k=1.0)
    with pytest.raises(ValueError, match="interpolation"):
        build_advantage("qae", interpolation="cubic")
