"""``high_entropy_only``: policy gradient only through the top-q fraction of tokens by entropy.

Source: Wang et al. 2025, "Beyond the 80/20 Rule: High-Entropy Minority Tokens Drive
Effective Reinforcement Learning for LLM Reasoning" (arXiv 2506.01939); read through the
public descriptions of its verl patch (ms-swift's ``top_entropy_quantile`` docs).

    H_t = -sum_v pi(v | q, o_<t) log pi(v | q, o_<t)
    m_t = 1  if H_t is among the ceil(q * n) largest entropies of the batch's n loss tokens
          0  otherwise

Choices: the ranking is over the whole rollout batch (all loss tokens of all completions),
as in the paper (not per micro-batch, not per sequence); an exact count ceil(q * n) rather
than a quantile threshold, so ties cannot inflate the kept fraction. The aggregation
denominator is unchanged (the low-entropy tokens count in it with zero gradient): this is the
paper's objective J_HighEnt (1/sum_i |o_i| outside the indicator). The public reproduction
(zhouxiangxin1998/Beyond-the-80-20-Rule-RLVR, ``dp_actor.py``) instead multiplies the response
mask by the top-entropy mask, so its token-mean divides by the *selected* count (~1/q larger
gradient, per micro-batch); Adam absorbs most of the scale, grad clipping and KL/entropy
weights do not. q = 0.2 is the paper's default.
"""

from __future__ import annotations

from rlvr.algos.token_weighting.base import (
    BatchTokenStats,
    PrecomputedWeights,
    fraction,
    register_token_weight,
    top_fraction,
)


@register_token_weight("high_entropy_only")
class HighEntropyOnly(PrecomputedWeights):
    def __init__(self, q: float = 0.2) -> None:
        super().__init__()
        if not 0 < q <= 1:
            raise ValueError(f"high_entropy_only: q must be in (0, 1], got {q}")
        self.q = q

    def prepare(self, stats: BatchTokenStats) -> dict[str, float]:
        valid = stats.valid
        keep = top_fraction(stats.entropy, valid, self.q)
        self._weights = keep.float()
        kept_ent = stats.entropy[keep]
        return {
            "kept_fraction": fraction(keep, valid),
            "gated_fraction": fraction(~keep, valid),
            "entropy_threshold": float(kept_ent.min()) if kept_ent.numel() else 0.0,
        }
