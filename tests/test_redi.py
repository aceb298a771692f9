"""REDI stage: loss against hand-computed values, gradient signs, labelling/pairing, training."""

from __future__ import annotations

import pytest
import torch

from rlvr.data.arithmetic import arithmetic_examples, worked_solution
from rlvr.stages.redi import evaluate_pairs, label_traces, make_pairs, redi_loss, run_redi

# two pairs: l_w = (-2/4, -6/2) = (-0.5, -3.0); l_l = (-3/3, -1/5) = (-1.0, -0.2)
POS_SUM = [-2.0, -6.0]
POS_LEN = [4, 2]
NEG_SUM = [-3.0, -1.0]
NEG_LEN = [3, 5]


def _t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


def test_redi_loss_spec_vector():
    # spec appendix: l_w = -0.5, l_l = -1.0, alpha = 0.8 -> 0.5 - 0.8 = -0.3
    loss, m = redi_loss(_t([-2.0]), _t([4]), _t([-3.0]), _t([3]), alpha=0.8)
    assert loss.item() == pytest.approx(-0.3)
    assert m["logp_pos"] == pytest.approx(-0.5)
    assert m["logp_neg"] == pytest.approx(-1.0)
    assert m["margin"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "alpha, expected",
    [
        (0.0, (0.5 + 3.0) / 2),  # SFT on positives only
        (0.5, ((0.5 - 0.5 * 1.0) + (3.0 - 0.5 * 0.2)) / 2),  # (0 + 2.9) / 2
        (0.8, ((0.5 - 0.8) + (3.0 - 0.8 * 0.2)) / 2),  # (-0.3 + 2.84) / 2
        (1.0, ((0.5 - 1.0) + (3.0 - 0.2)) / 2),  # symmetric
    ],
)
def test_redi_loss_hand_values(alpha, expected):
    loss, m = redi_loss(
        _t(POS_SUM), _t(POS_LEN, torch.long), _t(NEG_SUM), _t(NEG_LEN, torch.long), alpha=alpha
    )
    assert loss.item() == pytest.approx(expected)
    assert m["loss"] == pytest.approx(expected)
    assert m["logp_pos"] == pytest.approx((-0.5 - 3.0) / 2)
    assert m["logp_neg"] == pytest.approx((-1.0 - 0.2) / 2)
    assert m["margin"] == pytest.approx(((-0.5 + 1.0) + (-3.0 + 0.2)) / 2)


def test_redi_loss_chosen_coef_and_zero_length_clamp():
    # empty responses: length clamped to 1, so l = logp_sum
    loss, _ = redi_loss(_t([-0.4]), _t([0]), _t([-0.6]), _t([0]), alpha=0.5, chosen_coef=2.0)
    assert loss.item() == pytest.approx(2.0 * 0.4 - 0.5 * 0.6)


def test_redi_loss_rejects_bad_alpha():
    with pytest.raises(ValueError):
        redi_loss(_t([-1.0]), _t([1]), _t([-1.0]), _t([1]), alpha=1.5)


@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.8, 1.0])
def test_redi_gradient_signs(alpha):
    pos = _t(POS_SUM).requires_grad_()
    neg = _t(NEG_SUM).requires_grad_()
    loss, _ = redi_loss(pos, _t(POS_LEN), neg, _t(NEG_LEN), alpha=alpha)
    loss.backward()
    # dL/d pos_sum_i = -1 / (B |y_w,i|)  (descent raises positive log-lik)
    torch.testing.assert_close(pos.grad, _t([-1 / (2 * 4), -1 / (2 * 2)]))
    # dL/d neg_sum_i = +alpha / (B |y_l,i|)  (descent lowers negative log-lik)
    torch.testing.assert_close(neg.grad, _t([alpha / (2 * 3), alpha / (2 * 5)]))
    assert (pos.grad < 0).all()
    assert (neg.grad >= 0).all() and ((neg.grad > 0).all() or alpha == 0.0)


def test_label_traces_and_pairs():
    rows = [
        {
            "id": "p1",
            "prompt": "1+1=",
            "answer": "2",
            "completions": ["so \\boxed{3}", "thus \\boxed{2}", "\\boxed{2}", "\\boxed{5}"],
        },
        {"id": "p2", "prompt": "2+2=", "answer": "4", "completions": ["\\boxed{4}"]},
        {"id": "p3", "prompt": "3+3=", "answer": "6", "completions": ["\\boxed{7}", "no box"]},
        {"prompt": "5+5=", "answer": "10", "completion": "\\boxed{11}"},
        {"prompt": "5+5=", "answer": "10", "completion": "\\boxed{10}"},
    ]
    pos, neg = label_traces(rows)
    assert [(t["problem"], t["completion"]) for t in pos] == [
        ("p1", "thus \\boxed{2}"),
        ("p1", "\\boxed{2}"),
        ("p2", "\\boxed{4}"),
        ("5+5=", "\\boxed{10}"),
    ]
    assert [(t["problem"], t["completion"]) for t in neg] == [
        ("p1", "so \\boxed{3}"),
        ("p1", "\\boxed{5}"),
        ("p3", "\\boxed{7}"),
        ("p3", "no box"),
        ("5+5=", "\\boxed{11}"),
    ]
    pairs = make_pairs(pos, neg)
    # p2 has no negative, p3 no positive; first positive and first negative per problem
    assert pairs == [
        {"prompt": "1+1=", "chosen": "thus \\boxed{2}", "rejected": "so \\boxed{3}", "answer": "2"},
        {"prompt": "5+5=", "chosen": "\\boxed{10}", "rejected": "\\boxed{11}", "answer": "10"},
    ]


def test_run_redi_tiny_model_raises_margin(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train, _ = arithmetic_examples(num_train=16, num_eval=4, seed=7)
    rows = [
        {
            "id": ex["id"],
            "prompt": ex["prompt"],
            "answer": ex["answer"],
            "completions": [worked_solution(int(ex["answer"]) + 1), ex["solution"]],
        }
        for ex in train
    ]
    pos, neg = label_traces(rows)
    assert len(pos) == len(neg) == 16
    pairs = make_pairs(pos, neg)
    assert len(pairs) == 16
    assert all(p["chosen"] == ex["solution"] for p, ex in zip(pairs, train, strict=True))

    out = tmp_path / "redi"
    result = run_redi(tiny_model_dir, pairs, out, lr=1e-3, steps=8, batch_size=8, alpha=0.8, seed=0)
    assert len(result["history"]) == 8
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result["history"])
    assert result["after"]["margin"] > result["before"]["margin"]
    assert result["after"]["logp_pos"] > result["before"]["logp_pos"]

    assert (out / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_safetensors=True)
    reloaded = evaluate_pairs(model, tokenizer, pairs)
    initial = evaluate_pairs(base, tokenizer, pairs)
    assert reloaded["margin"] == pytest.approx(result["after"]["margin"], abs=1e-4)
    assert reloaded["margin"] > initial["margin"]


def test_run_redi_micro_batches_give_the_same_update(tiny_model_dir, tmp_path):
    """Gradient accumulation over micro-batches of 1 and 3 pairs = one batch of 6 pairs."""
    from safetensors.torch import load_file

    train, _ = arithmetic_examples(num_train=6, num_eval=2, seed=3)
    pairs = [
        {
            "prompt": ex["prompt"],
            "chosen": ex["solution"],
            "rejected": worked_solution(int(ex["answer"]) + 1 + i),  # lengths differ
            "answer": ex["answer"],
        }
        for i, ex in enumerate(train)
    ]
    kw = {"lr": 1e-3, "steps": 2, "batch_size": 6, "alpha": 0.8, "seed": 0, "warmup_ratio": 0.0}
    runs = {
        m: run_redi(tiny_model_dir, pairs, tmp_path / f"m{m}", micro_batch_size=m, **kw)
        for m in (None, 1, 3)
    }
    ref = load_file(tmp_path / "mNone" / "model.safetensors")
    for m in (1, 3):
        got = load_file(tmp_path / f"m{m}" / "model.safetensors")
        for name, tensor in ref.items():
            # Adam turns float-rounding noise in near-zero gradients into updates up to ~lr/100
            torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=5e-5)
        for a, b in zip(runs[m]["history"], runs[None]["history"], strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
