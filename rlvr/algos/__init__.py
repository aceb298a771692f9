"""Pluggable RL algorithm parts: advantage estimators, batch filters, policy losses, registries.

Built-in modules register themselves when a registry lookup first misses (the registry imports
every module of this package): ``grpo``, ``dr_grpo``, ``rloo`` (advantages.py), ``qae``
(qae.py), ``adora`` (adora.py) and the ``dynamic_sampling`` batch filter (filters.py). A new
estimator or filter is one new file here; no import list to edit.
"""

from rlvr.algos.advantages import (
    AdvantageContext,
    AdvantageEstimator,
    build_advantage,
    compute_advantages,
)
from rlvr.algos.filters import BatchFilter, build_filter
from rlvr.algos.losses import aggregation_weights, clipped_surrogate, k3_kl, policy_loss
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
    "aggregation_weights",
]
