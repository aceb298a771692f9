"""The learner's work-saving switches leave the update unchanged: skipping rows that cannot
contribute gradient (``train.skip_zero_rows``) and length-sorted micro-batches
(``train.micro_batch_order``) give the gradient and the updated weights of the plain loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlvr.batch import TrainBatch
from rlvr.config import Recipe
from rlvr.learner import Learner

PAD = 256


def make_batch(adv_rows: list[float], *, seed: int = 0, weights: list[float] | None = None):
    """N rows, prompt 5 tokens + completions of varied length, one advantage per row."""
    gen = torch.Generator().manual_seed(seed)
    n = len(adv_rows)
    lengths = [3 + (7 * i) % 11 for i in range(n)]
    width = 5 + max(lengths)
    ids = torch.full((n, width), PAD, dtype=torch.long)
    attn = torch.zeros_like(ids)
    cmask = torch.zeros_like(ids)
    for i, lc in enumerate(lengths):
        ids[i, : 5 + lc] = torch.randint(0, 250, (5 + lc,), generator=gen)
        attn[i, : 5 + lc] = 1
        cmask[i, 5 : 5 + lc] = 1
    rlp = -torch.rand((n, width), generator=gen) * cmask
    adv = torch.tensor(adv_rows, dtype=torch.float32).unsqueeze(1).expand(n, width - 1).clone()
    return TrainBatch(
        input_ids=ids,
        attention_mask=attn,
        completion_mask=cmask,
        rollout_logprobs=rlp,
        advantages=adv,
        sample_weights=torch.ones(n) if weights is None else torch.tensor(weights),
        group_size=4,
    )


def make_learner(model_dir: Path, **train) -> Learner:
    algo = train.pop("algo", {})
    recipe = Recipe.model_validate(
        {
            "model": {"path": str(model_dir)},
            "algo": {"kl_coef": 0.0, **algo},
            "train": {"micro_batch_size": 3, "lr": 1e-3, "weight_decay": 0.1, **train},
        }
    )
    return Learner(recipe, pad_id=PAD, weights_path=str(model_dir), resumed=False)


def grad_and_update(learner: Learner, batch: TrainBatch) -> tuple[torch.Tensor, dict, list]:
    seen: list[torch.Tensor] = []
    step = learner.optimizer.step

    def record(*args, **kwargs):
        seen.append(torch.cat([p.grad.flatten() for p in learner.model.parameters()]))
        return step(*args, **kwargs)

    learner.optimizer.step = record  # type: ignore[method-assign]
    metrics = learner.update(batch).metrics
    params = [p.detach().clone() for p in learner.model.parameters()]
    return seen[0], metrics, params


ADV = [0.0, 1.5, 0.0, -0.5, 0.0, 0.0, 2.0, -1.0, 0.0, 0.7]


@pytest.mark.parametrize(
    "aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]
)
def test_skipping_zero_advantage_rows_and_length_order_keep_the_gradient(
    tiny_model_dir: Path, aggregation: str
) -> None:
    batch = make_batch(ADV)
    algo = {"loss_aggregation": aggregation}
    plain = make_learner(tiny_model_dir, skip_zero_rows=False, micro_batch_order="index", algo=algo)
    fast = make_learner(tiny_model_dir, skip_zero_rows=True, micro_batch_order="length", algo=algo)
    g0, m0, _ = grad_and_update(plain, batch)
    g1, m1, _ = grad_and_update(fast, batch)
    assert g0.abs().max() > 0
    # equal up to summation order (AdamW would magnify the rounding of near-zero entries)
    assert torch.allclose(g0, g1, rtol=1e-5, atol=1e-8)
    assert m0["loss"] == pytest.approx(m1["loss"], rel=1e-5, abs=1e-8)
    assert m0["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)
    assert m0["train/skipped_rows"] == 0 and m1["train/skipped_rows"] == 5
    # the ratio is exactly 1 on every trained token (old log-probs = current ones)
    assert m1["ratio/mean"] == pytest.approx(1.0)


def test_every_row_skipped_steps_like_a_zero_gradient(tiny_model_dir: Path) -> None:
    """No row left: zero-filled gradients, so AdamW's weight decay and moments step as they
    would with the plain loop's (exactly zero) gradient."""
    batch = make_batch([0.0] * 6)
    g0, _, p0 = grad_and_update(make_learner(tiny_model_dir, skip_zero_rows=False), batch)
    g1, m1, p1 = grad_and_update(make_learner(tiny_model_dir, skip_zero_rows=True), batch)
    assert torch.equal(g0, torch.zeros_like(g0)) and torch.equal(g1, g0)
    for a, b in zip(p0, p1, strict=True):
        assert torch.equal(a, b)
    assert m1["train/skipped_rows"] == 6 and m1["grad_norm"] == 0.0


def test_rows_kept_when_other_terms_need_them(tiny_model_dir: Path) -> None:
    weights = [1.0, 0.0, 1.0, 1.0]
    batch = make_batch([0.0, 1.0, 0.0, -1.0], weights=weights)
    assert make_learner(tiny_model_dir).trained_rows(batch).tolist() == [3]
    off = make_learner(tiny_model_dir, skip_zero_rows=False)
    assert off.trained_rows(batch).tolist() == [0, 1, 2, 3]
    # an entropy bonus has gradient on zero-advantage rows; zero-weight rows still drop out
    ent = make_learner(tiny_model_dir, algo={"entropy_coef": 0.01})
    assert ent.trained_rows(batch).tolist() == [0, 2, 3]
    rule = make_learner(tiny_model_dir, algo={"token_weights": [{"name": "steer"}]})
    assert rule.trained_rows(batch).tolist() == [0, 1, 2, 3]


def test_entropy_bonus_gradient_unchanged_by_skipping_zero_weight_rows(
    tiny_model_dir: Path,
) -> None:
    batch = make_batch([0.0, 1.0, 0.0, -1.0, 0.5, 0.0], weights=[1, 0, 1, 1, 0, 1])
    algo = {"entropy_coef": 0.01}
    plain = make_learner(tiny_model_dir, skip_zero_rows=False, micro_batch_order="index", algo=algo)
    fast = make_learner(tiny_model_dir, algo=algo)
    g0, _, _ = grad_and_update(plain, batch)
    g1, m1, _ = grad_and_update(fast, batch)
    assert torch.allclose(g0, g1, rtol=1e-5, atol=1e-8)
    assert m1["train/skipped_rows"] == 2


def test_length_order_groups_similar_lengths(tiny_model_dir: Path) -> None:
    batch = make_batch([1.0] * 7)
    lengths = batch.attention_mask.sum(dim=1)
    learner = make_learner(tiny_model_dir)
    plan = learner.plan_micro_batches(torch.arange(7), batch.attention_mask)
    assert sorted(torch.cat(plan).tolist()) == list(range(7))
    assert [len(p) for p in plan] == [3, 3, 1]
    flat = lengths[torch.cat(plan)].tolist()
    assert flat == sorted(flat, reverse=True)
    padded = sum(len(p) * int(lengths[p].max()) for p in plan)
    index = make_learner(tiny_model_dir, micro_batch_order="index")
    padded_index = sum(
        len(p) * int(lengths[p].max())
        for p in index.plan_micro_batches(torch.arange(7), batch.attention_mask)
    )
    assert padded < padded_index
