"""Pluggable RL algorithm parts: advantage estimators, policy losses, registries."""

from rlvr.algos.advantages import (
    AdvantageContext,
    AdvantageEstimator,
    build_advantage,
    compute_advantages,
)
from rlvr.algos.losses import clipped_surrogate, k3_kl, policy_loss, token_weights
from rlvr.algos.registry import ADVANTAGES, register_advantage

__all__ = [
    "ADVANTAGES",
    "AdvantageContext",
    "AdvantageEstimator",
    "build_advantage",
    "clipped_surrogate",
    "compute_advantages",
    "k3_kl",
    "policy_loss",
    "register_advantage",
    "token_weights",
]
