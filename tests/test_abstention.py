"""Dynamic abstention: probe loss, calibration, head files and the gate on hand values and on
the tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.abstention import (
    AbstentionGate,
    IsotonicCalibrator,
    ValueHead,
    attach_gate,
    coverage_threshold,
    focal_loss,
    load_head,
    probe_loss,
    resolve_threshold,
    save_head,
    td_coherence,
)
from rlvr.abstention.calibrate import isotonic_fit

LN3 = math.log(3.0)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = torch.tensor([[0.0, LN3], [LN3, 5.0]])
    y = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    return z, y, mask


def test_focal_loss_hand_values() -> None:
    z, y, mask = _batch()
    # seq 0 (y=1): z=0 -> sigma .5, bce ln2, p_t .5; z=ln3 -> sigma .75, bce -ln .75, p_t .75
    t0 = 0.7 * math.log(2) * 0.5
    t1 = 0.7 * -math.log(0.75) * 0.25
    # seq 1 (y=0): z=ln3 -> sigma .75, bce -ln .25, p_t .25, alpha .3; second token masked
    s1 = 0.3 * -math.log(0.25) * 0.75
    expected = ((t0 + t1) / 2 + s1) / 2
    assert focal_loss(z, y, mask).item() == pytest.approx(expected, rel=1e-6)
    # gamma = 0, alpha = .5 is half the plain masked BCE
    bce = ((math.log(2) - math.log(0.75)) / 2 - math.log(0.25)) / 2
    assert focal_loss(z, y, mask, alpha=0.5, gamma=0.0).item() == pytest.approx(bce / 2, rel=1e-6)


def test_td_and_probe_loss_hand_values() -> None:
    z, y, mask = _batch()
    # only seq 0 has an adjacent real pair: (ln3 - 0)^2
    assert td_coherence(z, mask).item() == pytest.approx(LN3**2, rel=1e-6)
    total = probe_loss(z, y, mask).item()
    assert total == pytest.approx(focal_loss(z, y, mask).item() + 0.1 * LN3**2, rel=1e-6)
    assert td_coherence(z, torch.tensor([[1, 0], [1, 0]])).item() == 0.0


def test_probe_loss_gradient_flows() -> None:
    z = torch.zeros(2, 3, requires_grad=True)
    probe_loss(z, torch.tensor([1.0, 0.0]), torch.ones(2, 3)).backward()
    assert z.grad is not None and (z.grad[0] < 0).all() and (z.grad[1] > 0).all()


def test_isotonic_pav_hand_values() -> None:
    bx, by = isotonic_fit([0.3, 0.1, 0.4, 0.2], [0, 0, 1, 1])
    # sorted y = 0, 1, 0, 1: the middle pair violates and pools to .5 at x = .25
    assert bx.tolist() == pytest.approx([0.1, 0.25, 0.4])
    assert by.tolist() == pytest.approx([0.0, 0.5, 1.0])
    cal = IsotonicCalibrator.fit([0.3, 0.1, 0.4, 0.2], [0, 0, 1, 1])
    assert cal([0.0, 0.175, 0.25, 0.325, 0.9]).tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    got = cal.torch(torch.tensor([[0.0, 0.175], [0.325, 0.9]]))
    assert got.flatten().tolist() == pytest.approx([0, 0.25, 0.75, 1], abs=1e-6)
    ties = IsotonicCalibrator.fit([0.5, 0.5, 0.7], [0, 1, 0])
    assert ties.x == pytest.approx([0.5 * 2 / 3 + 0.7 / 3]) and ties.y == pytest.approx([1 / 3])
    assert ties.torch(torch.tensor([0.1])).tolist() == pytest.approx([1 / 3])


def test_coverage_threshold() -> None:
    minima = [0.1, 0.4, 0.2, 0.8, 0.6]
    c = coverage_threshold(minima, 0.6)  # k = floor(.4 * 5) = 2 -> sorted[2]
    assert c == 0.4 and sum(m >= c for m in minima) == 3
    assert coverage_threshold(minima, 1.0) == 0.1
    assert coverage_threshold(minima, 0.2) == 0.8
    with pytest.raises(ValueError, match="coverage"):
        coverage_threshold(minima, 0.0)


def test_head_round_trip_and_threshold(tmp_path) -> None:
    torch.manual_seed(0)
    head = ValueHead(8)
    path = save_head(head, tmp_path / "head", {"threshold": 0.3})
    assert path.suffix == ".safetensors" and (tmp_path / "head.json").is_file()
    loaded, meta = load_head(tmp_path / "head.safetensors")
    h = torch.randn(5, 8)
    assert torch.equal(loaded(h), head(h))
    assert meta["hidden_size"] == 8 and meta["feature_spec"]["norm"] == "post"
    assert resolve_threshold(None, meta) == 0.3
    assert resolve_threshold(0.7, meta) == 0.7
    assert resolve_threshold(None, {}) == 0.5
    (tmp_path / "head.json").write_text('{"hidden_size": 8}')
    with pytest.raises(ValueError, match="feature_spec"):
        load_head(tmp_path / "head")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_head(tmp_path / "nope")


def _threshold_head(hidden: int) -> ValueHead:
    """z = relu(tanh(h_0)): identity first two layers, readout of unit 0."""
    head = ValueHead(hidden)
    with torch.no_grad():
        for i in (0, 2):
            head.net[i].weight.copy_(torch.eye(hidden))
            head.net[i].bias.zero_()
        head.net[4].weight.zero_()
        head.net[4].weight[0, 0] = 1.0
        head.net[4].bias.zero_()
    return head


class _FakeLM(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lm_head = torch.nn.Linear(2, 4, bias=False)

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.lm_head


def test_gate_step_forces_eos_on_hand_values() -> None:
    model = _FakeLM()
    gate = AbstentionGate(_threshold_head(2), threshold=0.6, min_tokens=1)
    step = gate.start(model, width=3, batch=3, eos_ids=[2])
    try:
        # step 0 (min_tokens=1: no forcing); row 0's value sigma(relu(tanh(-1))) = .5 < .6
        model.lm_head(torch.tensor([[[-1.0, 0]], [[2.0, 0]], [[2.0, 0]]]))
        s0 = step(torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, 4))
        assert torch.equal(s0, torch.zeros(3, 4))
        # step 1: row 0 low (forced), row 1 high, row 2 low but already ended with EOS
        model.lm_head(torch.tensor([[[-1.0, 0]], [[2.0, 0]], [[-3.0, 0]]]))
        ids = torch.tensor([[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 2]])
        s1 = step(ids, torch.ones(3, 4))
    finally:
        step.close()
    assert s1[0].tolist() == [float("-inf"), float("-inf"), 0.0, float("-inf")]
    assert s1[1].tolist() == [1.0] * 4 and s1[2].tolist() == [1.0] * 4
    assert step.abstain_step == [1, None, None]
    high = 1 / (1 + math.exp(-math.tanh(2.0)))
    assert step.traces[0] == pytest.approx([0.5, 0.5])
    assert step.traces[1] == pytest.approx([high, high])
    assert step.traces[2] == pytest.approx([high])  # no value once the row has ended
    assert not model.lm_head._forward_pre_hooks  # close() removed the hook


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir):
    from rlvr.rollout import HFEngine

    return HFEngine.from_pretrained(str(tiny_model_dir))


def _prompts(engine) -> list[list[int]]:
    from rlvr.stages.common import prompt_ids

    texts = ["What is 12 + 30?", "What is 7 + 8?"]
    return [prompt_ids(engine.tokenizer, [{"role": "user", "content": t}]) for t in texts]


def test_gate_forces_eos_at_the_crossing_step_on_tiny_model(hf_engine) -> None:
    from rlvr.rollout import SamplingParams

    torch.manual_seed(1)
    head = ValueHead(hf_engine.model.config.hidden_size)
    prompts = _prompts(hf_engine)
    sp = SamplingParams(n=2, temperature=1.0, max_tokens=24, seed=5)
    attach_gate(hf_engine, AbstentionGate(head, enforce=False, trace=True, capture=True))
    try:
        full = [c for g in hf_engine.generate(prompts, sp) for c in g]
        # the first strict running minimum after step 2 of sample 0 is the crossing step k
        trace = full[0].value_trace
        assert trace is not None and len(trace) == len(full[0].token_ids)
        k = next(t for t in range(3, len(trace)) if trace[t] < min(trace[:t]))
        c = (trace[k] + min(trace[:k])) / 2  # every earlier value >= c > trace[k]
        attach_gate(hf_engine, AbstentionGate(head, threshold=c, trace=True))
        gated = [c_ for g in hf_engine.generate(prompts, sp) for c_ in g]
    finally:
        attach_gate(hf_engine, None)
    g0 = gated[0]
    assert g0.abstained and g0.finish_reason == "abstain" and g0.abstain_step == k
    assert g0.token_ids[:k] == full[0].token_ids[:k]
    assert g0.token_ids[k] in hf_engine.eos_ids and len(g0.token_ids) == k + 1
    assert g0.logprobs[k] == pytest.approx(0.0)
    assert g0.value_trace == pytest.approx(trace[: k + 1])
    for f, g in zip(full, gated, strict=True):  # same seeds: identical until the gate acts
        first_low = next((t for t, v in enumerate(f.value_trace) if v < c), None)
        if first_low is None:
            assert not g.abstained and g.token_ids == f.token_ids
        else:
            assert (
                g.abstain_step == first_low and g.token_ids[:first_low] == f.token_ids[:first_low]
            )


def test_captured_features_are_the_lm_head_input(hf_engine) -> None:
    from rlvr.rollout import SamplingParams

    prompts = _prompts(hf_engine)[:1]
    attach_gate(hf_engine, AbstentionGate(None, enforce=False, trace=False, capture=True))
    try:
        (c,) = hf_engine.generate(prompts, SamplingParams(temperature=0.0, max_tokens=8))[0:1][0]
    finally:
        attach_gate(hf_engine, None)
    assert c.features is not None and c.features.shape == (len(c.token_ids), 128)
    ids = torch.tensor([prompts[0] + c.token_ids])
    with torch.no_grad():
        hidden = hf_engine.model.model(ids).last_hidden_state[0]  # post final norm
    p = len(prompts[0])
    ref = hidden[p - 1 : p - 1 + len(c.token_ids)]
    assert torch.allclose(c.features.float(), ref, atol=2e-2, rtol=1e-2)


def test_vllm_and_soft_engines_refuse_the_gate() -> None:
    class NotHF:
        pass

    with pytest.raises(ValueError, match="hf"):
        attach_gate(NotHF(), AbstentionGate(ValueHead(4)))


def test_replayed_rules_hand_values() -> None:
    from rlvr.abstention.replay import apply_rule, curves, rule_metrics

    tr = [0.6, 0.5, 0.2, 0.7]
    assert apply_rule("dynamic", tr, 0.55) == (True, 2)  # t = 1 < .55: EOS is token 2
    assert apply_rule("dynamic", tr, 0.55, min_tokens=2) == (True, 3)
    assert apply_rule("dynamic", tr, 0.1) == (False, 4)
    assert apply_rule("pre_generation", tr, 0.65) == (True, 0)
    assert apply_rule("pre_generation", tr, 0.55) == (False, 4)
    assert apply_rule("post_generation", tr, 0.75) == (True, 4)
    assert apply_rule("never", tr, 0.99) == (False, 4)
    traces = [tr, [0.9, 0.8]]
    m = rule_metrics("dynamic", traces, [False, True], 0.55, 0.55)
    # sample 0 abstains after 2 tokens, sample 1 answers (2 tokens, correct)
    assert m["coverage"] == 0.5 and m["selective_accuracy"] == 1.0
    assert m["tokens_saved"] == pytest.approx(1 - 4 / 6)
    assert m["utility"] == pytest.approx((1 + 0.55) / 2)
    assert m["abstention_precision"] == 1.0
    cur = curves(traces, [False, True], grid=[0.1, 0.55])
    assert [p["coverage"] for p in cur["dynamic"]] == [1.0, 0.5]
    assert [p["coverage"] for p in cur["never"]] == [1.0, 1.0]


def test_rl_option_scores_abstained_rollouts_r_abstain_and_drops_the_forced_eos() -> None:
    from rlvr.abstention.rl import abstention_rewards, strip_forced_eos
    from rlvr.rollout import Completion

    groups = [
        [
            Completion([5, 6, 9], [-0.5, -0.2, 0.0], "abstain", abstained=True, abstain_step=2),
            Completion([5, 9], [-0.1, -0.3], "stop"),
        ]
    ]
    assert strip_forced_eos(groups) == 1
    assert groups[0][0].token_ids == [5, 6] and groups[0][0].logprobs == [-0.5, -0.2]
    assert groups[0][1].token_ids == [5, 9]
    assert abstention_rewards([[1.0, 1.0]], groups, 0.25) == [[0.25, 1.0]]


def test_rl_option_config_needs_the_hf_engine(tmp_path) -> None:
    from rlvr.config import RecipeError, load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {path: m}\nrollout: {engine: vllm, abstention: {head: h.safetensors}}\n"
    )
    with pytest.raises(RecipeError, match="hidden states"):
        load_recipe(recipe)
    recipe.write_text("model: {path: m}\nrollout: {engine: hf}\n")
    assert load_recipe(recipe).rollout.abstention is None  # off by default


@pytest.mark.slow
def test_rl_option_in_a_training_step(tiny_model_dir, tmp_path, fixtures_dir) -> None:
    """threshold 1.0 stops every rollout after its first token: all rewards are r_abstain and
    the update still runs on the policy's own tokens (the forced EOS removed)."""
    from test_train_e2e import make_recipe, run

    from rlvr.metrics import read_metrics

    save_head(ValueHead(128), tmp_path / "head", {"threshold": 0.5})
    recipe = make_recipe(
        tiny_model_dir,
        tmp_path,
        fixtures_dir,
        rollout__abstention={
            "head": str(tmp_path / "head.safetensors"),
            "threshold": 1.01,
            "r_abstain": 0.25,
        },  # fmt: skip
        rewards=[{"name": "math"}],
        train__steps=1,
        checkpoint__every=10,
        logging__tensorboard=False,
        logging__plots=False,
    )
    run(recipe)
    (row,) = read_metrics(recipe.run_dir / "metrics.jsonl")
    assert row["abstention/rate"] == 1.0
    assert row["reward/mean"] == pytest.approx(0.25)
    assert row["length/max"] == 1  # one policy token, the gate's EOS dropped
