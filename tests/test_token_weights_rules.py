"""Token-weight rules on hand-computed tensors: selections, gate fractions, weights,
penalties and their gradients, composition, and the surrogate-only multipliers of
policy_loss."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.algos import policy_loss
from rlvr.algos.token_weighting import (
    TOKEN_WEIGHTS,
    BatchTokenStats,
    MicroBatchTokens,
    build_token_weights,
    top_fraction,
)

# two completions; row 0 has 3 tokens (last column is padding), row 1 has 4
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
ENT = torch.tensor([[0.1, 0.9, 0.5, 5.0], [0.7, 0.2, 0.3, 0.4]])  # padding entropy is huge


def close(t: torch.Tensor, expected: list, atol: float = 1e-6) -> None:
    want = torch.tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(t.detach().float(), want, atol=atol, rtol=0)


def stats(**over: torch.Tensor) -> BatchTokenStats:
    base = {
        "logp": torch.full_like(ENT, -1.0),
        "old_logp": torch.full_like(ENT, -1.0),
        "entropy": ENT,
        "advantages": torch.ones_like(ENT),
        "mask": MASK,
    }
    base.update(over)
    return BatchTokenStats(**base)


def micro(rows: list[int], width: int, **over: torch.Tensor) -> MicroBatchTokens:
    r = torch.tensor(rows)
    base = {
        "rows": r,
        "logp": torch.full((len(rows), width), -1.0),
        "old_logp": torch.full((len(rows), width), -1.0),
        "entropy": ENT[r, :width],
        "advantages": torch.ones(len(rows), width),
        "mask": MASK[r, :width],
    }
    base.update(over)
    return MicroBatchTokens(**base)


def weights_of(name: str, s: BatchTokenStats, **params: float | str) -> tuple[torch.Tensor, dict]:
    rule = TOKEN_WEIGHTS.get(name)(**params)
    metrics = rule.prepare(s)
    return rule.apply(micro([0, 1], 4)).weights, metrics


def test_registry_names_and_unknown_rule() -> None:
    assert set(TOKEN_WEIGHTS.names()) >= {
        "high_entropy_only",
        "clip_cov",
        "kl_cov",
        "egspo_gate",
        "steer",
    }
    with pytest.raises(ValueError, match="did you mean 'steer'"):
        build_token_weights([{"name": "stear"}])
    with pytest.raises(ValueError, match="has no parameter .nope."):
        build_token_weights([{"name": "steer", "params": {"nope": 1}}])


def test_top_fraction_exact_count_ignores_padding() -> None:
    # 7 loss tokens, q = 0.3 -> ceil(2.1) = 3: entropies 0.9, 0.7, 0.5
    sel = top_fraction(ENT, MASK > 0, 0.3)
    assert sel.tolist() == [[False, True, True, False], [True, False, False, False]]
    assert int(top_fraction(ENT, MASK > 0, 1.0).sum()) == 7


def test_high_entropy_only_keeps_top_q_of_whole_batch() -> None:
    w, m = weights_of("high_entropy_only", stats(), q=0.3)
    assert w.tolist() == [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
    assert m["kept_fraction"] == pytest.approx(3 / 7)
    assert m["gated_fraction"] == pytest.approx(4 / 7)
    assert m["entropy_threshold"] == pytest.approx(0.5)


def test_selection_is_whole_batch_not_per_micro_batch() -> None:
    rule = TOKEN_WEIGHTS.get("high_entropy_only")(q=0.3)
    rule.prepare(stats())
    # row 1 alone (as a micro-batch) keeps only its 0.7 token, not its own top 30%
    assert rule.apply(micro([1], 4)).weights.tolist() == [[1.0, 0.0, 0.0, 0.0]]
    # a micro-batch padded to a narrower width gets the matching slice
    assert rule.apply(micro([0], 3)).weights.tolist() == [[0.0, 1.0, 1.0]]


# covariance example: A = +2 on row 0, -2 on row 1 (mean 0); log-probs -0.1, -1, -3 on both
# rows (mean -41/30), so Cov = +-2 * (logp + 41/30):
#   row 0: [ 2.533,  0.733, -3.267]    row 1: [-2.533, -0.733,  3.267]
COV_MASK = torch.ones(2, 3)
COV_LOGP = torch.tensor([[-0.1, -1.0, -3.0], [-0.1, -1.0, -3.0]])
COV_ADV = torch.tensor([[2.0, 2.0, 2.0], [-2.0, -2.0, -2.0]])


def cov_stats(old_logp: torch.Tensor | None = None, step: int = 0) -> BatchTokenStats:
    return BatchTokenStats(
        logp=COV_LOGP,
        old_logp=COV_LOGP if old_logp is None else old_logp,
        entropy=torch.ones(2, 3),
        advantages=COV_ADV,
        mask=COV_MASK,
        step=step,
    )


def cov_micro(logp: torch.Tensor, old: torch.Tensor) -> MicroBatchTokens:
    return MicroBatchTokens(torch.tensor([0, 1]), logp, old, torch.ones(2, 3), COV_ADV, COV_MASK)


def test_clip_cov_detaches_candidates_in_window() -> None:
    rule = TOKEN_WEIGHTS.get("clip_cov")(ratio=0.5, lb=1.0, ub=5.0)  # k = 3 >= 2 candidates
    m = rule.prepare(cov_stats())
    w = rule.apply(cov_micro(COV_LOGP, COV_LOGP)).weights
    assert w.tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    assert m["detached_fraction"] == pytest.approx(2 / 6)
    assert m["candidate_fraction"] == pytest.approx(2 / 6)


def test_clip_cov_random_draw_is_seeded_and_bounded() -> None:
    picks = set()
    for step in range(12):
        rule = TOKEN_WEIGHTS.get("clip_cov")(ratio=0.2, lb=1.0, ub=5.0)  # k = int(1.2) = 1
        rule.prepare(cov_stats(step=step))
        w = rule.apply(cov_micro(COV_LOGP, COV_LOGP)).weights
        zeros = (w == 0).nonzero().tolist()
        assert len(zeros) == 1 and zeros[0] in ([0, 0], [1, 2])
        picks.add(tuple(zeros[0]))
        again = TOKEN_WEIGHTS.get("clip_cov")(ratio=0.2)
        again.prepare(cov_stats(step=step))
        assert torch.equal(again.apply(cov_micro(COV_LOGP, COV_LOGP)).weights, w)
    assert len(picks) == 2  # both candidates get drawn over steps


def test_clip_cov_skips_tokens_already_clipped_by_ppo() -> None:
    old = COV_LOGP.clone()
    old[1, 2] = -2.0  # ratio exp(-1) < 1 - 0.2 with A < 0: already clipped
    rule = TOKEN_WEIGHTS.get("clip_cov")(ratio=0.5)
    m = rule.prepare(cov_stats(old_logp=old))
    w = rule.apply(cov_micro(COV_LOGP, old)).weights
    assert w.tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    assert m["candidate_fraction"] == pytest.approx(1 / 6)


def test_kl_cov_penalises_top_covariance_token_with_gradient() -> None:
    rule = TOKEN_WEIGHTS.get("kl_cov")(ratio=1 / 6, coef=2.0, clip=True)  # k = 1: row 1, tok 2
    m = rule.prepare(cov_stats())
    assert m["penalized_fraction"] == pytest.approx(1 / 6)
    logp = COV_LOGP.clone()
    logp[1, 2] = -2.5
    logp[0, 0] = -0.6  # moved too, but not selected: no penalty
    logp.requires_grad_(True)
    out = rule.apply(cov_micro(logp, COV_LOGP))
    assert torch.equal(out.weights, torch.ones(2, 3))
    assert out.penalty is not None
    close(out.penalty.detach(), [[0, 0, 0], [0, 0, 1.0]], 1e-6)
    out.penalty.sum().backward()
    assert logp.grad is not None
    assert logp.grad.tolist() == [[0, 0, 0], [0, 0, 2.0]]  # d/dlogp 2|logp - old| = 2 sign


def test_egspo_gate_fractions_and_constant_attenuation() -> None:
    w, m = weights_of("egspo_gate", stats(), q=0.3, low_weight=0.1)
    close(w, [[0.1, 1.0, 1.0, 0.0], [1.0, 0.1, 0.1, 0.1]], 1e-6)
    assert m["gated_fraction"] == pytest.approx(3 / 7)
    assert m["attenuated_fraction"] == pytest.approx(4 / 7)
    assert m["threshold"] == pytest.approx(0.5)
    assert m["weight_mean"] == pytest.approx((3 * 1.0 + 4 * 0.1) / 7)
    # an absolute gate in nats: H >= 0.4 -> 0.9, 0.5, 0.7, 0.4
    w, m = weights_of("egspo_gate", stats(), threshold=0.4, low_weight=0.25)
    close(w, [[0.25, 1.0, 1.0, 0.0], [1.0, 0.25, 0.25, 1.0]], 1e-6)
    assert m["gated_fraction"] == pytest.approx(4 / 7)


def test_egspo_phi_attenuation_is_p_one_minus_p() -> None:
    p = torch.tensor([[0.9, 0.5, 0.99, 0.5], [0.5, 0.8, 0.6, 0.7]])
    w, _ = weights_of("egspo_gate", stats(logp=p.log()), q=0.3, attenuation="phi")
    expected = [[0.9 * 0.1, 1.0, 1.0, 0.0], [1.0, 0.8 * 0.2, 0.6 * 0.4, 0.7 * 0.3]]
    close(w, expected, 1e-6)


def test_egspo_keeps_advantage_sign_on_both_branches() -> None:
    """Gradient of the weighted surrogate at ratio 1 is -w * m * A: attenuated tokens of a
    wrong (A < 0) completion are still pushed down, just less."""
    rule = TOKEN_WEIGHTS.get("egspo_gate")(q=0.3, low_weight=0.1)
    adv = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]])
    rule.prepare(stats(advantages=adv))
    logp = torch.full((2, 4), -1.0, requires_grad=True)
    mult = rule.apply(micro([0, 1], 4)).weights
    terms = policy_loss(logp, logp.detach(), adv, MASK, eps_low=0.2, eps_high=0.2, multipliers=mult)
    terms.loss.backward()
    assert logp.grad is not None
    close(logp.grad, [[-0.1, -1.0, -1.0, 0.0], [1.0, 0.1, 0.1, 0.1]], 1e-6)


def _omega(a: float, p: float, old_p: float, h: float) -> float:
    return a / old_p * p * (1 - p) * (math.log(p) + h)


def test_steer_exp_and_linear_weights_by_hand() -> None:
    p = torch.tensor([[0.5, 0.9, 0.2]])
    ent = torch.tensor([[1.0, 0.5, 2.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    s = BatchTokenStats(p.log(), p.log(), ent, adv, torch.tensor([[1.0, 1.0, 0.0]]))
    o0, o1 = _omega(1, 0.5, 0.5, 1.0), _omega(1, 0.9, 0.9, 0.5)  # 0.15343, 0.03946
    assert o0 == pytest.approx(0.153426, abs=1e-5) and o1 == pytest.approx(0.039464, abs=1e-5)
    k = -math.log(0.8) / max(o0, o1)
    rule = TOKEN_WEIGHTS.get("steer")(weight_min=0.8)
    m = rule.prepare(s)
    mb = MicroBatchTokens(torch.tensor([0]), p.log(), p.log(), ent, adv, s.mask)
    w = rule.apply(mb).weights
    close(w, [[0.8, math.exp(-k * o1), 0.0]], 1e-5)
    assert m["weight_min"] == pytest.approx(0.8)
    assert m["omega_abs_mean"] == pytest.approx((o0 + o1) / 2, abs=1e-5)
    lin = TOKEN_WEIGHTS.get("steer")(weight_min=0.8, weight_max=1.2, mapping="linear")
    lin.prepare(s)
    close(lin.apply(mb).weights, [[0.8, 1.2, 0.0]], 1e-6)


def test_steer_small_omega_uses_floor_and_negative_advantage_counts_by_magnitude() -> None:
    p = torch.tensor([[0.5, 0.5]])
    ent = torch.tensor([[0.7, 0.7]])
    adv = torch.tensor([[0.01, -0.01]])  # |Omega| = 0.01 * 2 * 0.25 * (0.7 - ln 2) tiny
    s = BatchTokenStats(p.log(), p.log(), ent, adv, torch.ones(1, 2))
    o = abs(_omega(0.01, 0.5, 0.5, 0.7))
    rule = TOKEN_WEIGHTS.get("steer")(weight_min=0.5)
    rule.prepare(s)
    mb = MicroBatchTokens(torch.tensor([0]), p.log(), p.log(), ent, adv, s.mask)
    expected = math.exp(math.log(0.5) / 0.02 * o)  # k = -ln(0.5) / 0.02 since M < 0.02
    close(rule.apply(mb).weights, [[expected, expected]], 1e-6)


def test_pipeline_composes_in_order_and_sums_penalties() -> None:
    pipe = build_token_weights(
        [
            {"name": "high_entropy_only", "params": {"q": 0.6}},  # top 5 of 7
            {"name": "egspo_gate", "params": {"threshold": 0.4, "low_weight": 0.5}},
            {"name": "kl_cov", "params": {"ratio": 0.15, "coef": 1.0, "clip": True}},  # k = 1
        ]
    )
    adv = torch.tensor([[1.0, 1.0, 1.0, 0.0], [-1.0, -1.0, -1.0, -1.0]])
    logp = torch.tensor([[-0.5, -1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, -2.0]])
    # Cov (mean A = -1/7, mean logp = -7.5/7): largest at row 1, token 3 (0.796 > 0.653)
    metrics = pipe.prepare(stats(advantages=adv, logp=logp))
    assert metrics["token_weights/high_entropy_only/kept_fraction"] == pytest.approx(5 / 7)
    assert metrics["token_weights/egspo_gate/gated_fraction"] == pytest.approx(4 / 7)
    assert metrics["token_weights/kl_cov/penalized_fraction"] == pytest.approx(1 / 7)
    live = torch.full((2, 4), -1.0)
    live[1, 3] = -1.5  # moved by 0.5 from old (-1.0) on the penalised token
    live[0, 0] = -0.2  # moved too, not penalised
    out = pipe.apply(micro([0, 1], 4, logp=live))
    # high-entropy mask [[0,1,1,0],[1,0,1,1]] x egspo [[.5,1,1,0],[1,.5,.5,1]]
    close(out.weights, [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.5, 1.0]])
    assert out.penalty is not None
    close(out.penalty, [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5]])
    empty = build_token_weights([])
    assert not empty and empty.apply(micro([0], 4)).penalty is None


def test_policy_loss_multipliers_scale_surrogate_only() -> None:
    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.5]])
    adv = torch.tensor([[1.0, 1.0]])
    w = torch.tensor([[0.5, 0.5]])
    terms = policy_loss(
        logp,
        logp.detach(),
        adv,
        w,
        eps_low=0.2,
        eps_high=0.2,
        ref_logp=ref,
        kl_coef=1.0,
        multipliers=torch.tensor([[0.0, 1.0]]),
        penalty=torch.tensor([[0.3, 0.0]]),
    )
    terms.loss.backward()
    # k3 gradient: d/dlogp [exp(ref - logp) - (ref - logp) - 1] = 1 - exp(ref - logp)
    kl_grad = 1 - math.exp(-0.5)
    assert logp.grad is not None
    close(logp.grad, [[0.5 * kl_grad, 0.5 * (kl_grad - 1.0)]], 1e-6)
    k3 = math.exp(-0.5) + 0.5 - 1
    assert float(terms.loss.detach()) == pytest.approx(0.5 * (k3 + 0.3) + 0.5 * (k3 - 1.0))


def test_kl_cov_default_is_verls_unclipped_loss() -> None:
    """verl compute_policy_loss_kl_cov: every token -A r (no clip), top-Cov tokens + coef|dlogp|.
    Token 0: A = 1, old -1, logp -0.5: r = e^0.5 = 1.6487 > 1.2 (clip would bind); token 1:
    A = -1, logp = old -1 (r = 1). Cov picks token 0 (k = max(1, int(0.5 * 2)) = 1)."""
    from rlvr.algos.losses import policy_loss

    old = torch.tensor([[-1.0, -1.0]])
    adv = torch.tensor([[1.0, -1.0]])
    mask = torch.ones(1, 2)
    s = BatchTokenStats(torch.tensor([[-0.5, -1.0]]), old, torch.ones(1, 2), adv, mask)
    rule = TOKEN_WEIGHTS.get("kl_cov")(ratio=0.5, coef=1.0)
    assert rule.prepare(s)["penalized_fraction"] == pytest.approx(0.5)
    logp = torch.tensor([[-0.5, -1.0]], requires_grad=True)
    out = rule.apply(MicroBatchTokens(torch.tensor([0]), logp, old, torch.ones(1, 2), adv, mask))
    terms = policy_loss(
        logp,
        old,
        adv,
        mask,
        eps_low=0.2,
        eps_high=0.2,
        multipliers=out.weights,
        penalty=out.penalty,
    )
    r = math.exp(0.5)
    assert float(terms.loss.detach()) == pytest.approx(
        -r * 1.0 + 0.5 + 1.0, abs=1e-5
    )  # -rA + |dlogp|, +1
    terms.loss.backward()
    assert logp.grad is not None
    close(logp.grad, [[-r + 1.0, 1.0]], 1e-5)  # clipped form would give 0 + 1 on token 0
