"""Token-weight rules: the interface, the composition and the recipe registry.

A token-weight rule changes how much each completion token contributes to the policy loss
(the learner's loss step, rlvr/learner.py). With the aggregation weights w_t of
:func:`rlvr.algos.losses.token_weights`, the rules r = 1..R of ``algo.token_weights``
(applied in recipe order) give

    loss = sum_t w_t * ( (prod_r m_{r,t}) * (-surrogate_t) + sum_r p_{r,t} + other_t )

(:func:`rlvr.algos.losses.policy_loss` with ``multipliers`` and ``penalty``; the KL to the
reference and the entropy bonus in other_t are not scaled). m_{r,t} >= 0 is rule r's
multiplier: m = 0 detaches the token (zero gradient) and, as m is never negative, the
advantage's sign is never flipped; p_{r,t} is an extra differentiable per-token loss term
(KL-Cov's penalty).

Whole-batch selection. Several rules rank tokens across the whole rollout batch (top-q by
entropy, covariance top-k, min/max normalisation). The trainer's micro-batches only see part
of the batch, so each rule makes its choice once per rollout batch in :meth:`prepare`, from a
no-grad forward pass of the current policy over the whole batch (:class:`BatchTokenStats`:
log-probs, entropies, behaviour log-probs, per-token advantages, loss mask). At the first
update of a batch that pass is exactly the policy the gradient is taken at; with
``updates_per_batch > 1`` the selection is kept for the later updates (the ratio and loss
still use the live log-probs). Each micro-batch then calls :meth:`TokenWeightRule.apply`
with its rows and its differentiable log-probs (:class:`MicroBatchTokens`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from rlvr.registry import BindError, Registry

TOKEN_WEIGHTS = Registry("token-weight rule", "rlvr.algos.token_weighting")
register_token_weight = TOKEN_WEIGHTS.register


@dataclass
class BatchTokenStats:
    """Whole rollout batch, no grad; all [N, T] with T = L-1 target positions."""

    logp: torch.Tensor  # current policy log-prob of each sampled token
    old_logp: torch.Tensor  # behaviour log-prob in the ratio (== logp when recomputed)
    entropy: torch.Tensor  # current policy's predictive entropy at each position
    advantages: torch.Tensor  # per-token advantages
    mask: torch.Tensor  # float, 1 where the token enters the loss
    step: int = 0  # RL step (seeds random selections reproducibly)
    eps_low: float = 0.2  # the recipe's PPO clip range (algo.eps_low / eps_high)
    eps_high: float = 0.2

    @property
    def valid(self) -> torch.Tensor:
        return self.mask > 0

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())


@dataclass
class MicroBatchTokens:
    """One micro-batch: ``rows`` [M] index the batch, tensors are [M, T'] (T' <= T)."""

    rows: torch.Tensor
    logp: torch.Tensor  # differentiable
    old_logp: torch.Tensor
    entropy: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor

    def take(self, full: torch.Tensor) -> torch.Tensor:
        """The micro-batch's slice of a whole-batch [N, T] tensor."""
        return full[self.rows, : self.logp.shape[1]]


@dataclass
class TokenWeightOutput:
    """Per-token multipliers (detached, >= 0) and an optional extra per-token loss."""

    weights: torch.Tensor  # [M, T']
    penalty: torch.Tensor | None = None  # [M, T'], differentiable, added before aggregation


class TokenWeightRule:
    """Base class. Subclasses set ``name`` via the registry decorator and implement
    :meth:`prepare` (whole-batch choice, returns metrics) and :meth:`apply`."""

    def prepare(self, stats: BatchTokenStats) -> dict[str, float]:
        raise NotImplementedError

    def apply(self, micro: MicroBatchTokens) -> TokenWeightOutput:
        raise NotImplementedError


class PrecomputedWeights(TokenWeightRule):
    """A rule whose whole effect is a [N, T] multiplier fixed in :meth:`prepare`."""

    def __init__(self) -> None:
        self._weights: torch.Tensor | None = None

    def apply(self, micro: MicroBatchTokens) -> TokenWeightOutput:
        if self._weights is None:
            raise RuntimeError(f"{type(self).__name__}.prepare must run before apply")
        return TokenWeightOutput(weights=micro.take(self._weights))


def top_fraction(values: torch.Tensor, valid: torch.Tensor, q: float) -> torch.Tensor:
    """Bool [N, T]: the ceil(q * n_valid) valid positions with the largest ``values``
    (an exact count; ties broken by ``torch.topk``). q in (0, 1]."""
    if not 0 < q <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {q}")
    out = torch.zeros_like(valid, dtype=torch.bool)
    n = int(valid.sum())
    if n == 0:
        return out
    k = min(n, max(1, math.ceil(q * n - 1e-9)))
    flat = values.masked_fill(~valid, -math.inf).reshape(-1)
    idx = torch.topk(flat, k).indices
    out.view(-1)[idx] = True
    return out


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return (x * valid).sum() / valid.sum().clamp(min=1)


def fraction(selected: torch.Tensor, valid: torch.Tensor) -> float:
    n = int(valid.sum())
    return float((selected & valid).sum()) / n if n else 0.0


class TokenWeightPipeline:
    """The recipe's rules in order; ``apply`` multiplies their multipliers and sums their
    penalties (with no rules: ones and no penalty)."""

    def __init__(self, rules: list[tuple[str, TokenWeightRule]]) -> None:
        self.rules = rules

    def __bool__(self) -> bool:
        return bool(self.rules)

    def prepare(self, stats: BatchTokenStats) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, rule in self.rules:
            for key, value in rule.prepare(stats).items():
                metrics[f"token_weights/{name}/{key}"] = value
        return metrics

    def apply(self, micro: MicroBatchTokens) -> TokenWeightOutput:
        weights = torch.ones_like(micro.logp, dtype=torch.float32)
        penalty: torch.Tensor | None = None
        for _, rule in self.rules:
            out = rule.apply(micro)
            weights = weights * out.weights.detach()
            if out.penalty is not None:
                penalty = out.penalty if penalty is None else penalty + out.penalty
        return TokenWeightOutput(weights=weights, penalty=penalty)


def build_token_weights(specs: list[Any]) -> TokenWeightPipeline:
    """``specs``: items with ``name`` and ``params`` (config objects or dicts)."""
    rules = []
    for spec in specs:
        name = spec["name"] if isinstance(spec, dict) else spec.name
        params = (spec.get("params") if isinstance(spec, dict) else spec.params) or {}
        try:
            rule = TOKEN_WEIGHTS.bind(name, dict(params), name_field="name", params_field="params")
        except BindError as e:  # ValueError: the CLI reports it as a recipe error
            raise ValueError(f"algo.token_weights {e.field}: {e.message}") from None
        rules.append((name, rule))
    return TokenWeightPipeline(rules)
