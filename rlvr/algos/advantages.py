"""Group-baseline advantage estimators: rewards [B, G] -> advantages [B, G].

- ``grpo`` (DeepSeekMath, Shao et al. 2024): A_i = (r_i - mean(r)) / (std(r) + eps), with
  torch.std's unbiased std over the G rewards of one prompt and eps = 1e-6; a group whose
  rewards are all equal gets zeros (and so does a group of one). ``scale="batch"`` divides by
  the std of all B*G rewards instead (as in Dr. GRPO's discussion and TRL's
  ``scale_rewards="batch"``); ``scale="none"`` only centres.
- ``dr_grpo`` (Liu et al. 2025, "Understanding R1-Zero-Like Training"): A_i = r_i - mean(r);
  no std normalisation. Pair it with ``algo.loss_aggregation=seq_mean_token_sum_norm``.
- ``rloo`` (Ahmadian et al. 2024): A_i = r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean(r));
  zero for G = 1.

Each estimator is a class with ``__call__(rewards, context) -> advantages`` plus
``state_dict`` / ``load_state_dict`` (stateful estimators keep per-prompt state there) and
``metrics()`` for what it wants logged. More estimators live in their own files:
``qae`` (rlvr/algos/qae.py) and ``adora`` (rlvr/algos/adora.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rlvr.algos.registry import ADVANTAGES, BindError, register_advantage


@dataclass
class AdvantageContext:
    """What an estimator may look at besides the rewards (all optional)."""

    prompt_ids: list[str] = field(default_factory=list)  # one stable id per prompt (B)
    lengths: torch.Tensor | None = None  # [B, G] completion lengths in tokens
    step: int = 0
    truncated: torch.Tensor | None = None  # [B, G] bool: finish reason "length"
    components: dict[str, torch.Tensor] = field(default_factory=dict)  # reward name -> [B, G]


class AdvantageEstimator:
    """Base class: stateless by default."""

    def __init__(self, **params: Any) -> None:
        if params:
            raise TypeError(f"{type(self).__name__} takes no parameters, got {sorted(params)}")

    def __call__(
        self, rewards: torch.Tensor, context: AdvantageContext | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def _check(rewards: torch.Tensor) -> torch.Tensor:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [B, G], got shape {tuple(rewards.shape)}")
    return rewards.to(torch.float32)


def _all_equal(r: torch.Tensor) -> torch.Tensor:
    return (r.max(dim=1, keepdim=True).values - r.min(dim=1, keepdim=True).values) == 0


def _scaled(centred: torch.Tensor, r: torch.Tensor, scale: str, eps: float) -> torch.Tensor:
    """``centred / (std + eps)`` with the group std (``"group"``), the batch std (``"batch"``),
    or ``centred`` unchanged (``"none"``); a single sample has std 0."""
    if scale == "group":
        std = r.std(dim=1, keepdim=True) if r.shape[1] > 1 else torch.zeros_like(r[:, :1])
    elif scale == "batch":
        std = r.std() if r.numel() > 1 else torch.zeros(())
    else:
        return centred
    return centred / (std + eps)


@register_advantage("grpo")
class GRPO(AdvantageEstimator):
    def __init__(self, eps: float = 1e-6, scale: str = "group") -> None:
        if scale not in ("group", "batch", "none"):
            raise ValueError(f"grpo: scale must be 'group', 'batch' or 'none', got {scale!r}")
        self.eps = eps
        self.scale = scale

    def __call__(
        self, rewards: torch.Tensor, context: AdvantageContext | None = None
    ) -> torch.Tensor:
        r = _check(rewards)
        centred = r - r.mean(dim=1, keepdim=True)
        adv = _scaled(centred, r, self.scale, self.eps)
        return torch.where(_all_equal(r), torch.zeros_like(adv), adv)


@register_advantage("dr_grpo")
class DrGRPO(AdvantageEstimator):
    def __call__(
        self, rewards: torch.Tensor, context: AdvantageContext | None = None
    ) -> torch.Tensor:
        r = _check(rewards)
        return r - r.mean(dim=1, keepdim=True)


@register_advantage("rloo")
class RLOO(AdvantageEstimator):
    def __call__(
        self, rewards: torch.Tensor, context: AdvantageContext | None = None
    ) -> torch.Tensor:
        r = _check(rewards)
        g = r.shape[1]
        if g == 1:
            return torch.zeros_like(r)
        others = (r.sum(dim=1, keepdim=True) - r) / (g - 1)
        return r - others


def build_advantage(name: str, **params: Any) -> AdvantageEstimator:
    try:
        return ADVANTAGES.bind(
            name, params, name_field="advantage", params_field="advantage_params"
        )
    except BindError as e:
        e.reraise("algo")
        raise


def compute_advantages(
    name: str,
    rewards: torch.Tensor,
    *,
    context: AdvantageContext | None = None,
    **params: Any,
) -> torch.Tensor:
    """Stable entry point: ``compute_advantages("grpo", rewards[B, G]) -> advantages[B, G]``.

    ``params`` go to the estimator (``compute_advantages("qae", r, k=0.4)``); ``context``
    passes lengths / truncation / prompt ids to estimators that read them (``adora``).
    """
    if not isinstance(rewards, torch.Tensor):
        rewards = torch.as_tensor(rewards, dtype=torch.float32)
    return build_advantage(name, **params)(rewards, context or AdvantageContext())
