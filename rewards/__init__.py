"""Reward modules for RL with verifiable rewards.

Plug-in surface: :func:`register_reward` / :func:`group_reward` (see ``rewards.base`` and
``docs/rewards.md``), built-ins ``math``, ``format``, ``overlong``, ``length_penalty``,
``compression``, ``lc_r1``, ``effort`` (modules ``rewards.math``, ``rewards.format``,
``rewards.length``, ``rewards.effort``), and the process-pool ``rewards.runner.RewardRunner``.
Heavy modules (math-verify, sympy) are imported only when used.
"""

from rewards.base import group_reward, register_reward, registered_rewards

__all__ = ["group_reward", "register_reward", "registered_rewards"]
