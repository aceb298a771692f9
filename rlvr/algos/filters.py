"""Batch filters: run after rewards, before advantages; may drop prompt groups or ask the
trainer for more.

A filter is a class registered with ``@register_filter("name")`` and chosen in the recipe::

    algo:
      filters:
        - name: dynamic_sampling
          params: {max_rounds: 3}

It is called as ``filter(batch, generate) -> (batch, metrics)`` where ``generate(num_prompts,
round) -> RolloutBatch`` draws ``num_prompts`` fresh prompts from the data stream, generates G
completions each with the current policy (sampling seed varied by ``round``) and scores them.
The trainer logs the metrics under ``filter/<name>/``.

``dynamic_sampling`` — DAPO (Yu et al. 2025, arXiv 2503.14476, §3.2 "Dynamic Sampling" and
Algorithm 1; verl ``recipe/dapo`` ``filter_groups``): a group whose G rewards are all equal
(accuracy 0 or 1) gives zero advantage and only dilutes the batch, so such groups are dropped
and generation continues until the batch holds ``target`` informative groups (default: the
batch's own prompt count, i.e. ``train.prompts_per_step``)::

    keep group b  iff  max_i m_{b,i} - min_i m_{b,i} > min_spread    (std > 0 when spread = 0)

``m`` is what the group is judged on (``metric``). Default ``metric="acc"``, as in DAPO
(Eq. 11: ``0 < |{o_i : is_equivalent(a, o_i)}| < G``; verl ``filter_groups.metric=acc``):
m = 1[component ``correct_key`` > 0.5], the verifier's correctness, so an all-correct group
whose members differ only by a length penalty (``overlong``) is dropped, as DAPO drops it.
``metric="reward"`` keys on the total reward (rlvr's earlier reading: shaping terms make such a
group "informative" and its length penalty becomes a full-scale advantage after std scaling);
any other value names a reward component whose raw values are compared.

Retries are bounded: at most ``max_rounds`` generation rounds in all (the first included),
each drawing ``ceil(oversample * missing groups)`` prompts (``refill="missing"``) or a full
batch (``refill="full"``, DAPO's ``gen_batch_size`` behaviour). Surplus informative groups
are cut to ``target`` (DAPO keeps the first ``train_batch_size``). If the rounds run out, the
batch holds fewer than ``target`` groups (``short`` = 1 is logged); if no informative group
was found at all, the last round's batch is returned unchanged so the step still runs (its
advantages are zero, so only KL/entropy terms move the policy). Logged per step: ``rounds``
(generation rounds), ``generated_groups``, ``dropped_groups``, ``kept_groups``, ``short``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from rlvr.algos.registry import FILTERS, BindError, register_filter

if TYPE_CHECKING:  # keeps ``import rlvr.algos`` free of the rollout engines' imports
    from rlvr.batch import RolloutBatch

Generate = Callable[[int, int], "RolloutBatch"]


class BatchFilter:
    """Base class: ``__call__(batch, generate) -> (batch, metrics)``."""

    def __call__(
        self, batch: RolloutBatch, generate: Generate
    ) -> tuple[RolloutBatch, dict[str, float]]:
        raise NotImplementedError


def informative_groups(rewards: torch.Tensor, min_spread: float = 0.0) -> list[int]:
    """Indices of groups whose rewards are not all equal (spread > ``min_spread``)."""
    spread = rewards.max(dim=1).values - rewards.min(dim=1).values
    return [int(i) for i in torch.nonzero(spread > min_spread).flatten()]


@register_filter("dynamic_sampling")
class DynamicSampling(BatchFilter):
    def __init__(
        self,
        max_rounds: int = 3,
        target: int | None = None,
        refill: str = "missing",
        oversample: float = 1.0,
        min_spread: float = 0.0,
        metric: str = "acc",
        correct_key: str = "math",
    ) -> None:
        if not metric:
            raise ValueError("dynamic_sampling: metric must be 'acc', 'reward' or a component")
        if max_rounds < 1:
            raise ValueError(f"dynamic_sampling: max_rounds must be >= 1, got {max_rounds}")
        if refill not in ("missing", "full"):
            raise ValueError(
                f"dynamic_sampling: refill must be 'missing' or 'full', got {refill!r}"
            )
        if oversample < 1.0:
            raise ValueError(f"dynamic_sampling: oversample must be >= 1, got {oversample}")
        if target is not None and target < 1:
            raise ValueError(f"dynamic_sampling: target must be >= 1, got {target}")
        self.max_rounds = max_rounds
        self.target = target
        self.refill = refill
        self.oversample = oversample
        self.min_spread = min_spread
        self.metric = metric
        self.correct_key = correct_key

    def judged(self, batch: RolloutBatch) -> torch.Tensor:
        """[B, G] values the keep rule compares (see ``metric`` in the module docstring)."""
        if self.metric == "reward":
            return batch.rewards
        key = self.correct_key if self.metric == "acc" else self.metric
        if key not in batch.reward_components:
            raise KeyError(
                f"dynamic_sampling: metric {self.metric!r} needs reward component {key!r}; "
                f"components: {sorted(batch.reward_components)} (set params.correct_key)"
            )
        values = batch.reward_components[key]
        return (values > 0.5).to(torch.float32) if self.metric == "acc" else values

    def __call__(
        self, batch: RolloutBatch, generate: Generate
    ) -> tuple[RolloutBatch, dict[str, float]]:
        target = self.target or batch.num_prompts
        kept: list[RolloutBatch] = []
        num_kept = 0
        generated = dropped = 0
        rounds = 1
        current = batch
        while True:
            keep = informative_groups(self.judged(current), self.min_spread)
            generated += current.num_prompts
            dropped += current.num_prompts - len(keep)
            if keep:
                kept.append(current.select(keep))
                num_kept += len(keep)
            if num_kept >= target or rounds >= self.max_rounds:
                break
            missing = target - num_kept
            n = batch.num_prompts if self.refill == "full" else math.ceil(self.oversample * missing)
            current = generate(n, rounds)
            rounds += 1
        if kept:
            out = type(batch).concat(kept)
            if out.num_prompts > target:
                out = out.select(list(range(target)))
        else:
            out = current
        metrics = {
            "rounds": float(rounds),
            "generated_groups": float(generated),
            "dropped_groups": float(dropped),
            "kept_groups": float(out.num_prompts if kept else 0),
            "short": float(num_kept < target),
        }
        return out, metrics


def build_filter(name: str, **params: Any) -> BatchFilter:
    try:
        return FILTERS.bind(name, params, name_field="name", params_field="params")
    except BindError as e:
        e.reraise("algo.filters")
        raise
