"""Rollout correction (rlvr/algos/rollout_correction.py) against hand-computed weights, its
recipe defaults, and its effect on the learner's loss."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_learner_work import make_batch, make_learner

from rlvr.algos.rollout_correction import CorrectionStats, RolloutCorrection
from rlvr.config import Recipe, RecipeError, load_recipe


def _rho_inputs(rho: list[list[float]], mask: list[list[int]]):
    """log pi_old = log rho, log mu = 0: the ratio is exactly ``rho``."""
    return torch.log(torch.tensor(rho)), torch.zeros(len(rho), len(rho[0])), torch.tensor(mask)


def test_token_truncate_caps_rho_at_c() -> None:
    old, mu, mask = _rho_inputs([[0.4, 1.0, 3.0, 9.0]], [[1, 1, 1, 0]])
    stats = CorrectionStats()
    w = RolloutCorrection("truncate", "token", threshold=2.0).weights(old, mu, mask, stats)
    assert torch.allclose(w, torch.tensor([[0.4, 1.0, 2.0, 0.0]]))
    m = stats.metrics()  # the padded 9.0 does not count
    assert m["rollout_correction/rho_min"] == pytest.approx(0.4)
    assert m["rollout_correction/rho_mean"] == pytest.approx(4.4 / 3)
    assert m["rollout_correction/rho_max"] == pytest.approx(3.0)
    assert m["rollout_correction/truncated_fraction"] == pytest.approx(1 / 3)
    assert m["rollout_correction/masked_fraction"] == 0.0


def test_token_mask_drops_rho_outside_the_interval_and_keeps_rho_inside() -> None:
    old, mu, mask = _rho_inputs([[0.4, 1.0, 3.0], [0.5, 2.0, 1.5]], [[1, 1, 1], [1, 1, 0]])
    stats = CorrectionStats()
    corr = RolloutCorrection("mask", "token", threshold=2.0, low_threshold=0.5)
    w = corr.weights(old, mu, mask, stats)
    # IcePop: w = rho * 1[0.5 <= rho <= 2]; the bounds are inside
    assert torch.allclose(w, torch.tensor([[0.0, 1.0, 0.0], [0.5, 2.0, 0.0]]))
    assert stats.metrics()["rollout_correction/masked_fraction"] == pytest.approx(2 / 5)


def test_sequence_level_uses_the_product_over_loss_tokens() -> None:
    # row 0: 0.5 * 2.4 = 1.2; row 1: 2 * 2 = 4 (its third token is padding, rho 7 ignored)
    old, mu, mask = _rho_inputs([[0.5, 2.4, 1.0], [2.0, 2.0, 7.0]], [[1, 1, 1], [1, 1, 0]])
    stats = CorrectionStats()
    w = RolloutCorrection("truncate", "sequence", threshold=2.0).weights(old, mu, mask, stats)
    assert torch.allclose(w, torch.tensor([[1.2, 1.2, 1.2], [2.0, 2.0, 0.0]]))
    m = stats.metrics()  # per sequence
    assert m["rollout_correction/rho_min"] == pytest.approx(1.2)
    assert m["rollout_correction/rho_max"] == pytest.approx(4.0)
    assert m["rollout_correction/rho_mean"] == pytest.approx(2.6)
    assert m["rollout_correction/truncated_fraction"] == pytest.approx(0.5)

    stats = CorrectionStats()
    w = RolloutCorrection("mask", "sequence", threshold=3.0).weights(old, mu, mask, stats)
    assert torch.allclose(w, torch.tensor([[1.2, 1.2, 1.2], [0.0, 0.0, 0.0]]))
    assert stats.metrics()["rollout_correction/masked_fraction"] == pytest.approx(0.5)


def test_log_rho_is_clamped_so_a_long_product_cannot_overflow() -> None:
    old, mu, mask = _rho_inputs([[math.e**10] * 3], [[1, 1, 1]])  # log prod = 30
    stats = CorrectionStats()
    w = RolloutCorrection("mask", "sequence", threshold=1e30).weights(old, mu, mask, stats)
    assert torch.allclose(w, torch.full((1, 3), math.exp(20.0)))
    assert stats.metrics()["rollout_correction/rho_max"] == pytest.approx(math.exp(20.0))


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="low_threshold < threshold"):
        RolloutCorrection("mask", "token", threshold=1.0, low_threshold=1.0)
    with pytest.raises(ValueError, match="mode"):
        RolloutCorrection("clip", "token")


def test_recipe_defaults_follow_max_staleness(tmp_path: Path) -> None:
    base = {"model": {"path": "m"}}
    assert Recipe.model_validate(base).algo.rollout_correction.mode == "off"
    stale = Recipe.model_validate({**base, "rollout": {"max_staleness": 1}})
    rc = stale.algo.rollout_correction
    assert (rc.mode, rc.level, rc.threshold) == ("truncate", "token", 2.0)
    short = Recipe.model_validate({**base, "algo": {"rollout_correction": "mask"}})
    assert short.algo.rollout_correction.mode == "mask"
    bypass = Recipe.model_validate(
        {**base, "rollout": {"max_staleness": 1}, "algo": {"old_logprobs": "rollout"}}
    )
    assert bypass.algo.rollout_correction.mode == "off"
    path = tmp_path / "r.yaml"
    path.write_text("model: {path: m}\nalgo: {old_logprobs: rollout, rollout_correction: mask}\n")
    with pytest.raises(RecipeError, match="bypass mode"):
        load_recipe(path)
    path.write_text("model: {path: m}\nrollout: {max_staleness: 1, cure: {}}\n")
    with pytest.raises(RecipeError, match="rollout.cure"):
        load_recipe(path)


ADV = [0.0, 1.5, 0.0, -0.5, 0.0, 0.0, 2.0, -1.0]


def _batch_with_rho(learner, rho: float):
    """A batch whose rollout log-probs are the learner's own minus log(rho): pi_old/mu = rho."""
    batch = make_batch(ADV)
    own = learner.frozen_logprobs(learner.model, batch)
    batch.rollout_logprobs[:, 1:] = (own - math.log(rho)) * batch.target_mask
    return batch


@pytest.mark.parametrize(
    ("rho", "correction", "factor"),
    [
        (1.5, {"mode": "truncate"}, 1.5),
        (3.0, {"mode": "truncate"}, 2.0),
        (1.5, {"mode": "mask", "low_threshold": 0.5}, 1.5),
        (3.0, {"mode": "mask", "low_threshold": 0.5}, 0.0),
    ],
)
def test_learner_loss_is_the_surrogate_times_the_is_weight(
    tiny_model_dir: Path, rho: float, correction: dict, factor: float
) -> None:
    """kl = entropy = 0 and r = 1 on the first pass: the loss is -sum w_agg * w_is * A."""
    plain = make_learner(tiny_model_dir)
    base = plain.update(_batch_with_rho(plain, rho)).metrics
    corrected = make_learner(tiny_model_dir, algo={"rollout_correction": correction})
    m = corrected.update(_batch_with_rho(corrected, rho)).metrics
    assert m["loss"] == pytest.approx(factor * base["loss"], rel=1e-4, abs=1e-7)
    assert m["rollout_correction/rho_mean"] == pytest.approx(rho, rel=1e-4)
    assert m["rollout_correction/masked_fraction"] == (1.0 if factor == 0 else 0.0)
    assert "rollout_correction/rho_mean" not in base
