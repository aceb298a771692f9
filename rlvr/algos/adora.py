"""``adora``: Advantage Dynamics via Online Rollout Adaptation (Gui, Ren et al. 2025, blog
"Training Reasoning Model with Dynamic Advantage Estimation on Reinforcement Learning";
paper arXiv 2602.10019; public code ShadeCloak/ADORA: ``compute_grpo_outcome_advantage_ADORA``
in ADORA/verl/trainer/ppo/core_algos.py (the LLM code) and ``weight_func`` in ADORA_VL's
experience maker (the VL code)).

ADORA leaves the base estimator alone and reweights its advantages per prompt group. From each
group's rollouts it classifies the prompt, at this step, as a temporarily advantageous sample
(TAS) or a temporarily disadvantageous sample (TDS), then::

    A_i = w_b * A_i^base,   w_b = tas_weight (default 1.0) if group b is TAS
                                  lam        (default 0.1) if group b is TDS

``base`` is any registered group estimator (default ``grpo``, as in the public code; the VL
code also wraps ``rloo`` and REINFORCE-baseline), built with ``base_params``.

Classification criteria (``criterion``):

- ``"length"`` (the public code; the LLM recipe): let C be the correct responses of the group
  (``correct`` = reward component ``correct_key`` > ``correct_threshold``, or the total reward
  when ``correct_key`` is None) and W the incorrect ones that were not truncated. The group is
  TAS when max_{i in C} L_i > mean_{j in W} L_j, i.e. the longest correct reasoning is longer
  than a typical failure (long correct chains are being found: learn from them at full
  weight), TDS otherwise. The two codes disagree on the empty sets, chosen by ``empty_sets``:

  - ``"llm"`` (default; the LLM verl code ``compute_grpo_outcome_advantage_ADORA``): max over
    an empty C = -inf and mean over an empty W = -inf, so **no correct response -> TDS**
    (x lam) and **no non-truncated wrong response -> TAS** (x tas_weight); both empty -> TDS.
  - ``"vl"`` (``weight_func`` of the VL code and the blog): mean over an empty W = +inf and
    TAS whenever C is empty, so no correct -> TAS and no wrong -> TDS.

  The public code treats "truncated" as L >= 4094 of 4096
  tokens; here it is the engine's finish reason "length" (``context.truncated``), or
  L >= ``max_length`` when the context has no truncation flags and ``max_length`` is set.
- ``"difficulty"`` [gap: the paper names a difficulty criterion, but its text and code were
  not available to us; this is the toolkit's reading]: each prompt keeps an online estimate of
  its success rate, an exponential moving average over its visits
  ``p_b <- (1 - ema) * p_b + ema * pass_rate_b`` (first visit: p_b = pass_rate_b). The group
  is TAS while the prompt is still hard for the policy (p_b <= ``difficulty_threshold``) and
  TDS once it is mastered.

Per-prompt state (keyed by ``context.prompt_ids``): visits, TAS count, last step, and the
success-rate estimate. It drives the ``difficulty`` criterion, feeds the logged metrics for
both criteria, and round-trips through ``state_dict`` / ``load_state_dict`` so that a resumed
run classifies prompts exactly as an uninterrupted one. ``max_tracked`` bounds the state: the
prompts seen least recently are forgotten first.

The paper describes attenuating TDS for weaker models (``lam`` < 1, the public default 0.1)
and amplifying TAS for stronger ones (``tas_weight`` > 1); both are recipe parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rlvr.algos.advantages import AdvantageContext, AdvantageEstimator, _check, build_advantage
from rlvr.algos.registry import register_advantage

CRITERIA = ("length", "difficulty")
EMPTY_SETS = ("llm", "vl")


def length_advantage(
    lengths: torch.Tensor,
    correct: torch.Tensor,
    truncated: torch.Tensor,
    empty_sets: str = "llm",
) -> torch.Tensor:
    """[B] bool: TAS by the length criterion (see module docstring) for [B, G] inputs."""
    if empty_sets not in EMPTY_SETS:
        raise ValueError(f"adora: empty_sets must be one of {EMPTY_SETS}, got {empty_sets!r}")
    out = torch.zeros(lengths.shape[0], dtype=torch.bool)
    for b in range(lengths.shape[0]):
        pos = lengths[b][correct[b]]
        neg = lengths[b][~correct[b] & ~truncated[b]]
        if empty_sets == "vl":
            if pos.numel() == 0:
                out[b] = True
                continue
            mean_neg = float(neg.mean()) if neg.numel() else math.inf
            out[b] = float(pos.max()) > mean_neg
        else:
            max_pos = float(pos.max()) if pos.numel() else -math.inf
            mean_neg = float(neg.mean()) if neg.numel() else -math.inf
            out[b] = max_pos > mean_neg
    return out


@register_advantage("adora")
class ADORA(AdvantageEstimator):
    def __init__(
        self,
        base: str = "grpo",
        base_params: dict[str, Any] | None = None,
        criterion: str = "length",
        lam: float = 0.1,
        tas_weight: float = 1.0,
        correct_key: str | None = None,
        correct_threshold: float = 0.5,
        max_length: int | None = None,
        difficulty_threshold: float = 0.5,
        ema: float = 0.5,
        max_tracked: int = 100_000,
        empty_sets: str = "llm",
    ) -> None:
        if empty_sets not in EMPTY_SETS:
            raise ValueError(f"adora: empty_sets must be one of {EMPTY_SETS}, got {empty_sets!r}")
        self.empty_sets = empty_sets
        if base == "adora":
            raise ValueError("adora: base must be another estimator")
        if criterion not in CRITERIA:
            raise ValueError(f"adora: criterion must be one of {CRITERIA}, got {criterion!r}")
        if lam < 0 or tas_weight < 0:
            raise ValueError("adora: lam and tas_weight must be >= 0")
        if not 0.0 < ema <= 1.0:
            raise ValueError(f"adora: ema must be in (0, 1], got {ema!r}")
        self.base = build_advantage(base, **(base_params or {}))
        self.criterion = criterion
        self.lam = float(lam)
        self.tas_weight = float(tas_weight)
        self.correct_key = correct_key
        self.correct_threshold = correct_threshold
        self.max_length = max_length
        self.difficulty_threshold = difficulty_threshold
        self.ema = ema
        self.max_tracked = max_tracked
        self.prompts: dict[str, dict[str, float]] = {}
        self._metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ classification

    def _correct(self, rewards: torch.Tensor, context: AdvantageContext) -> torch.Tensor:
        if self.correct_key is None:
            return rewards > self.correct_threshold
        if self.correct_key not in context.components:
            raise KeyError(
                f"adora: correct_key {self.correct_key!r} is not a reward component "
                f"(have {sorted(context.components)})"
            )
        return context.components[self.correct_key].to(torch.float32) > self.correct_threshold

    def _truncated(self, lengths: torch.Tensor, context: AdvantageContext) -> torch.Tensor:
        if context.truncated is not None:
            return context.truncated.to(torch.bool)
        if self.max_length is not None:
            return lengths >= self.max_length
        return torch.zeros_like(lengths, dtype=torch.bool)

    def _update_state(
        self, ids: list[str], pass_rate: torch.Tensor, tas: torch.Tensor | None, step: int
    ) -> torch.Tensor:
        """Update per-prompt records; returns the [B] success-rate estimates after the update."""
        estimates = torch.zeros(len(ids))
        for b, pid in enumerate(ids):
            rec = self.prompts.pop(pid, None)  # re-insert: dict order = least recently seen first
            p = float(pass_rate[b])
            if rec is None:
                rec = {"visits": 0.0, "tas": 0.0, "pass_ema": p, "last_step": float(step)}
            else:
                rec["pass_ema"] = (1 - self.ema) * rec["pass_ema"] + self.ema * p
            rec["visits"] += 1
            rec["last_step"] = float(step)
            if tas is not None:
                rec["tas"] += float(tas[b])
            self.prompts[pid] = rec
            estimates[b] = rec["pass_ema"]
        while len(self.prompts) > self.max_tracked:
            self.prompts.pop(next(iter(self.prompts)))
        return estimates

    def classify(self, rewards: torch.Tensor, context: AdvantageContext) -> torch.Tensor:
        """[B] bool: True for TAS groups. Updates the per-prompt state."""
        r = _check(rewards)
        correct = self._correct(r, context)
        ids = context.prompt_ids or [f"#{b}" for b in range(r.shape[0])]
        if len(ids) != r.shape[0]:
            raise ValueError(f"adora: {len(ids)} prompt ids for {r.shape[0]} groups")
        pass_rate = correct.float().mean(dim=1)
        if self.criterion == "length":
            if context.lengths is None:
                raise ValueError("adora: the length criterion needs context.lengths")
            lengths = context.lengths.to(torch.float32)
            tas = length_advantage(
                lengths, correct, self._truncated(lengths, context), self.empty_sets
            )
            self._update_state(ids, pass_rate, tas, context.step)
            return tas
        estimates = self._update_state(ids, pass_rate, None, context.step)
        tas = estimates <= self.difficulty_threshold
        for b, pid in enumerate(ids):
            self.prompts[pid]["tas"] += float(tas[b])
        return tas

    # ------------------------------------------------------------------ estimator API

    def __call__(
        self, rewards: torch.Tensor, context: AdvantageContext | None = None
    ) -> torch.Tensor:
        context = context or AdvantageContext()
        base_adv = self.base(rewards, context)
        tas = self.classify(rewards, context)
        weights = torch.where(tas, torch.tensor(self.tas_weight), torch.tensor(self.lam)).unsqueeze(
            1
        )
        adv = base_adv * weights
        self._metrics = {
            **{f"base/{k}": v for k, v in self.base.metrics().items()},
            "tas_fraction": float(tas.float().mean()),
            "weight_mean": float(weights.mean()),
            "tracked_prompts": float(len(self.prompts)),
        }
        return adv

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def state_dict(self) -> dict[str, Any]:
        return {
            "prompts": {pid: dict(rec) for pid, rec in self.prompts.items()},
            "base": self.base.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts = {
            str(pid): {k: float(v) for k, v in rec.items()}
            for pid, rec in state.get("prompts", {}).items()
        }
        self.base.load_state_dict(state.get("base", {}))
