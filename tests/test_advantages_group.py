"""GRPO, Dr. GRPO and RLOO edge cases on hand-computed vectors (more in test_algos.py)."""

from __future__ import annotations

import math

import torch

from rlvr.algos import compute_advantages

EPS = 1e-6


def test_one_success_in_g() -> None:
    r = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    # mean 0.25, unbiased std 0.5
    grpo = compute_advantages("grpo", r)
    assert torch.allclose(grpo, torch.tensor([[-0.25, 0.75, -0.25, -0.25]]) / (0.5 + EPS))
    assert torch.allclose(
        compute_advantages("dr_grpo", r), torch.tensor([[-0.25, 0.75, -0.25, -0.25]])
    )
    # RLOO: r_i - mean of the other three
    assert torch.allclose(
        compute_advantages("rloo", r), torch.tensor([[-1 / 3, 1.0, -1 / 3, -1 / 3]])
    )


def test_continuous_rewards() -> None:
    r = torch.tensor([[0.2, 0.4, 0.9]])
    mean = 0.5
    std = math.sqrt(((0.3**2) + (0.1**2) + (0.4**2)) / 2)
    expected = torch.tensor([[-0.3, -0.1, 0.4]])
    assert torch.allclose(compute_advantages("grpo", r), expected / (std + EPS), atol=1e-6)
    assert torch.allclose(compute_advantages("dr_grpo", r), expected, atol=1e-6)
    rloo = torch.tensor([[0.2 - 0.65, 0.4 - 0.55, 0.9 - 0.3]])
    assert torch.allclose(compute_advantages("rloo", r), rloo, atol=1e-6)
    assert mean == float(r.mean().round(decimals=6))


def test_g_equals_one_and_all_equal() -> None:
    one = torch.tensor([[0.7], [0.0]])
    for name in ("grpo", "dr_grpo", "rloo"):
        assert torch.equal(compute_advantages(name, one), torch.zeros(2, 1)), name
        assert torch.equal(compute_advantages(name, torch.full((2, 3), 1.0)), torch.zeros(2, 3))


def test_list_input_is_accepted() -> None:
    adv = compute_advantages("dr_grpo", [[1.0, 0.0]])
    assert torch.allclose(adv, torch.tensor([[0.5, -0.5]]))
