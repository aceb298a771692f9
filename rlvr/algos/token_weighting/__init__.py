"""Token-weight rules (entropy control and token gating), chosen by ``algo.token_weights``.

Registered names: ``high_entropy_only`` (high_entropy.py), ``clip_cov`` (clip_cov.py),
``kl_cov`` (kl_cov.py), ``egspo_gate`` (egspo.py), ``steer`` (steer.py). base.py states the
combined loss and why selections are made over the whole rollout batch. A new rule is one new
file in this package: the registry imports the package's modules when a lookup first misses.
"""

from rlvr.algos.token_weighting.base import (
    TOKEN_WEIGHTS,
    BatchTokenStats,
    MicroBatchTokens,
    TokenWeightOutput,
    TokenWeightPipeline,
    TokenWeightRule,
    build_token_weights,
    register_token_weight,
    top_fraction,
)

__all__ = [
    "TOKEN_WEIGHTS",
    "BatchTokenStats",
    "MicroBatchTokens",
    "TokenWeightOutput",
    "TokenWeightPipeline",
    "TokenWeightRule",
    "build_token_weights",
    "register_token_weight",
    "top_fraction",
]
