"""The registries of the RL algorithm parts: advantage estimators (``ADVANTAGES``) and batch
filters (``FILTERS``); token-weight rules have theirs in rlvr/algos/token_weighting/base.py.

A new estimator or filter is one file in this package that decorates its class with
``@register_advantage("name")`` / ``@register_filter("name")``; the mechanism (discovery of the
package's modules on a missed lookup, ``pkg.mod:Class`` / ``file.py:Class`` targets, binding
of a recipe's parameters at load) is :class:`rlvr.registry.Registry`.
"""

from __future__ import annotations

from rlvr.registry import BindError, Registry

ADVANTAGES = Registry("advantage estimator", "rlvr.algos")
register_advantage = ADVANTAGES.register

FILTERS = Registry("batch filter", "rlvr.algos")
register_filter = FILTERS.register

__all__ = [
    "ADVANTAGES",
    "FILTERS",
    "BindError",
    "Registry",
    "register_advantage",
    "register_filter",
]
