"""GRPO advantages and the clipped-surrogate loss on numbers computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.algos import aggregation_weights, compute_advantages, k3_kl, policy_loss
from rlvr.algos.registry import ADVANTAGES


def test_grpo_hand_computed() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.0, 0.0, 0.0]])
    adv = compute_advantages("grpo", r)
    # row 0: mean 0.5, unbiased std sqrt((4 * 0.25) / 3) = 0.57735
    s0 = math.sqrt(1 / 3)
    # row 1: mean 0.125, unbiased std sqrt((0.375^2 + 3 * 0.125^2) / 3) = 0.25
    expected = torch.tensor(
        [
            [0.5 / (s0 + 1e-6), -0.5 / (s0 + 1e-6), -0.5 / (s0 + 1e-6), 0.5 / (s0 + 1e-6)],
            [0.375 / (0.25 + 1e-6)] + [-0.125 / (0.25 + 1e-6)] * 3,
        ]
    )
    assert torch.allclose(adv, expected, atol=1e-6)


def test_grpo_equal_rewards_and_single_sample_give_zeros() -> None:
    assert torch.equal(compute_advantages("grpo", torch.full((2, 4), 0.7)), torch.zeros(2, 4))
    assert torch.equal(compute_advantages("grpo", torch.tensor([[1.0], [0.0]])), torch.zeros(2, 1))


def test_grpo_batch_scale_and_dr_grpo_and_rloo() -> None:
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    batch_std = r.std()  # unbiased over the 4 rewards: 0.5
    adv = compute_advantages("grpo", r, scale="batch")
    assert torch.allclose(adv[0], torch.tensor([0.5, -0.5]) / (batch_std + 1e-6))
    assert torch.equal(adv[1], torch.zeros(2))
    assert torch.allclose(compute_advantages("dr_grpo", r), torch.tensor([[0.5, -0.5], [0, 0]]))
    r3 = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.allclose(compute_advantages("rloo", r3), torch.tensor([[1.0, -0.5, -0.5]]))


def test_unknown_estimator_and_bad_params() -> None:
    with pytest.raises(KeyError, match="did you mean 'grpo'"):
        compute_advantages("grp0", torch.zeros(1, 2))
    with pytest.raises(TypeError, match="algo.advantage_params"):
        compute_advantages("grpo", torch.zeros(1, 2), bogus=1)
    assert {"grpo", "dr_grpo", "rloo"} <= set(ADVANTAGES.names())


def test_clipped_surrogate_hand_computed() -> None:
    logp = torch.tensor([[-1.0, -2.0]])
    old = torch.tensor([[-1.1, -1.5]])
    w = aggregation_weights(torch.ones(1, 2), "token_mean", 1, 2, 2)
    # ratios exp(0.1) = 1.10517 (inside [0.8, 1.28]) and exp(-0.5) = 0.60653 (below 0.8)
    pos = policy_loss(logp, old, torch.ones(1, 2), w, eps_low=0.2, eps_high=0.28)
    assert pos.loss.item() == pytest.approx(-(math.exp(0.1) + math.exp(-0.5)) / 2, abs=1e-6)
    assert pos.clip_fraction_sum.item() == 0  # A > 0: min picks the unclipped low ratio
    neg = policy_loss(logp, old, -torch.ones(1, 2), w, eps_low=0.2, eps_high=0.28)
    assert neg.loss.item() == pytest.approx((math.exp(0.1) + 0.8) / 2, abs=1e-6)
    assert neg.clip_fraction_sum.item() == 1


def test_clip_higher_bound() -> None:
    logp = torch.log(torch.tensor([[1.5]]))
    old = torch.zeros(1, 1)
    w = torch.ones(1, 1)
    t = policy_loss(logp, old, torch.ones(1, 1), w, eps_low=0.2, eps_high=0.28)
    assert t.loss.item() == pytest.approx(-1.28, abs=1e-6)
    t = policy_loss(logp, old, torch.ones(1, 1), w, eps_low=0.2, eps_high=0.6)
    assert t.loss.item() == pytest.approx(-1.5, abs=1e-6)


def test_k3_kl_and_its_gradient() -> None:
    logp = torch.tensor([-1.0], requires_grad=True)
    ref = torch.tensor([-1.5])
    kl = k3_kl(logp, ref)
    assert kl.item() == pytest.approx(math.exp(-0.5) + 0.5 - 1, abs=1e-7)
    kl.sum().backward()
    # d/dlogp [e^(ref-logp) - (ref-logp) - 1] = -e^(ref-logp) + 1
    assert logp.grad.item() == pytest.approx(1 - math.exp(-0.5), abs=1e-7)
    assert k3_kl(torch.tensor([-2.0]), torch.tensor([-2.0])).item() == 0


def test_kl_enters_the_loss() -> None:
    logp = torch.tensor([[-1.0]])
    t = policy_loss(
        logp,
        logp,
        torch.zeros(1, 1),
        torch.ones(1, 1),
        eps_low=0.2,
        eps_high=0.2,
        ref_logp=torch.tensor([[-1.5]]),
        kl_coef=0.1,
    )
    assert t.loss.item() == pytest.approx(0.1 * (math.exp(-0.5) - 0.5), abs=1e-7)


def test_aggregation_weights() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    tm = aggregation_weights(mask, "token_mean", 2, 3, 4)
    assert torch.allclose(tm, torch.tensor([[1 / 3, 1 / 3, 0], [1 / 3, 0, 0]]))
    sm = aggregation_weights(mask, "seq_mean_token_mean", 2, 3, 4)
    assert torch.allclose(sm, torch.tensor([[0.25, 0.25, 0], [0.5, 0, 0]]))
    dr = aggregation_weights(mask, "seq_mean_token_sum_norm", 2, 3, 4)
    assert torch.allclose(dr, torch.tensor([[0.125, 0.125, 0], [0.125, 0, 0]]))
    with pytest.raises(ValueError):
        aggregation_weights(mask, "nope", 2, 3, 4)
