"""Pluggable RL algorithm parts: advantage estimators, batch filters, policy losses, registries.

Importing this package registers every built-in module: ``grpo``, ``dr_grpo``, ``rloo``
(advantages.py), ``qae`` (qae.py), ``adora`` (adora.py) and the ``dynamic_sampling`` batch
filter (filters.py).
"""

from rlvr.algos import adora, qae  # noqa: F401  (registration)
from rlvr.algos.advantages import (
    AdvantageContext,
    AdvantageEstimator,
    build_advantage,
    compute_advantages,
)
from rlvr.algos.filters import BatchFilter, build_filter
from rlvr.algos.losses import clipped_surrogate, k3_kl, policy_loss, token_weights
from rlvr.algos.registry import ADVANTAGES, FILTERS, register_advantage, register_filter

__all__ = [
    "ADVANTAGES",
    "FILTERS",
    "AdvantageContext",
    "AdvantageEstimator",
    "BatchFilter",
    "build_advantage",
    "build_filter",
    "clipped_surrogate",
    "compute_advantages",
    "k3_kl",
    "policy_loss",
    "register_advantage",
    "register_filter",
    "token_weights",
]
