"""``qae``: Quantile Advantage Estimation (Wu et al. 2025, "Quantile Advantage Estimation for
Entropy-Safe Reasoning", arXiv 2509.22611; public code junkangwu/QAE, a one-line change to
verl's ``compute_grpo_outcome_advantage``).

The group mean baseline of GRPO is replaced by the group's K-quantile::

    b_K   = Quantile_K(r_1, ..., r_G)                      (torch.quantile, per prompt)
    A_i   = (r_i - b_K) / (std(r) + eps)                    scale="group" (default)
          = (r_i - b_K) / (std(all B*G rewards) + eps)      scale="batch"
          =  r_i - b_K                                      scale="none"

std is torch.std (unbiased), eps = 1e-6, as in ``grpo``. With binary rewards and success rate
p this is a two-regime gate: on hard prompts (p <= 1 - K) the baseline is 0, so only the rare
successes get a (positive) advantage and failures get 0; on easy prompts (p > 1 - K) the
baseline is 1, so only the remaining failures get a (negative) advantage and successes get 0.
The paper reports that at a tuned K about 80 % of responses get zero advantage; the
``zero_fraction`` metric logs that fraction every step.

Choices (stated because the paper leaves them to the code):
- Interpolation: the public code calls ``torch.quantile(scores, K)``, whose default is linear
  interpolation, so we default to ``interpolation="linear"``. With linear interpolation a
  binary group whose K-quantile position falls between its last 0 and first 1 gets a
  fractional baseline (both signs non-zero). ``interpolation="inverted_cdf"`` is the paper's
  definition Q_K = inf{x : F_G(x) >= K} (the ceil(K G)-th smallest reward), which gives the
  exact gate: baseline 0 iff p <= 1 - K, else 1. ``"lower"``, ``"higher"``, ``"midpoint"``,
  ``"nearest"`` are torch.quantile's other modes. Ties at the quantile are harmless: every
  response whose reward equals b_K gets exactly zero.
- Std scaling follows verl's default ``norm_adv_by_std_in_grpo=True`` which the QAE code
  keeps; ``scale="none"`` gives the unscaled quantile-centred advantage.
- A group of one (G = 1) has b_K = r, so its advantage is 0 (the toolkit's ``grpo`` does the
  same; verl would return r). Groups with all-equal rewards give zeros.
- K defaults to 0.4 (a toolkit default, not a paper constant): tune it per recipe with
  ``algo.advantage_params.k``.
"""

from __future__ import annotations

import math

import torch

from rlvr.algos.advantages import (
    AdvantageContext,
    AdvantageEstimator,
    _all_equal,
    _check,
    _scaled,
)
from rlvr.algos.registry import register_advantage

INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest", "inverted_cdf")


def quantile_baseline(
    rewards: torch.Tensor, k: float, interpolation: str = "linear"
) -> torch.Tensor:
    """[B, 1] group-wise K-quantile of rewards [B, G]."""
    if interpolation == "inverted_cdf":
        g = rewards.shape[1]
        index = max(0, math.ceil(k * g - 1e-9) - 1)  # 1e-9: 0.6 * 5 is 3.0000000000000004
        return rewards.sort(dim=1).values[:, index : index + 1]
    return torch.quantile(rewards, k, dim=1, keepdim=True, interpolation=interpolation)


@register_advantage("qae")
class QAE(AdvantageEstimator):
    def __init__(
        self,
        k: float = 0.4,
        eps: float = 1e-6,
        scale: str = "group",
        interpolation: str = "linear",
    ) -> None:
        if not 0.0 < float(k) < 1.0:
            raise ValueError(f"qae: k must be in (0, 1), got {k!r}")
        if scale not in ("group", "batch", "none"):
            raise ValueError(f"qae: scale must be 'group', 'batch' or 'none', got {scale!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"qae: interpolation must be one of {INTERPOLATIONS}")
        self.k = float(k)
        self.eps = eps
        self.scale = scale
        self.interpolation = interpolation
        self._metrics: dict[str, float] = {}

    def __call__(
        self, rewards: torch.Tensor, context: AdvantageContext | None = None
    ) -> torch.Tensor:
        r = _check(rewards)
        baseline = quantile_baseline(r, self.k, self.interpolation)
        centred = r - baseline
        adv = _scaled(centred, r, self.scale, self.eps)
        uniform = _all_equal(r)
        adv = torch.where(uniform | (centred == 0), torch.zeros_like(adv), adv)
        self._record(r, baseline, adv, uniform)
        return adv

    def _record(
        self, r: torch.Tensor, baseline: torch.Tensor, adv: torch.Tensor, uniform: torch.Tensor
    ) -> None:
        mixed = ~uniform.squeeze(1)
        n_mixed = max(int(mixed.sum()), 1)
        low = (baseline.squeeze(1) <= r.min(dim=1).values) & mixed
        high = (baseline.squeeze(1) >= r.max(dim=1).values) & mixed
        self._metrics = {
            "zero_fraction": float((adv == 0).float().mean()),
            "positive_fraction": float((adv > 0).float().mean()),
            "negative_fraction": float((adv < 0).float().mean()),
            # among groups with reward spread: only positives (hard) / only negatives (easy)
            "hard_regime_fraction": float(low.sum()) / n_mixed,
            "easy_regime_fraction": float(high.sum()) / n_mixed,
            "baseline_mean": float(baseline.mean()),
        }

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)
