"""Calibration of the value head and the choice of threshold.

- **Isotonic regression** of the label y on the raw value v = σ(z) over held-out (v_t, y)
  pairs (one pair per token, prompt-disjoint from the training split): pool-adjacent-violators
  on the pairs sorted by v (ties pooled first), giving a non-decreasing step fit; prediction
  interpolates linearly between the fitted blocks' mean v and clips outside them (as
  scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``). With a calibrated V̂ the
  threshold is the abstention reward itself, c = r_⊥ (spec §8.3).
- **Coverage quantile**: the gate answers a rollout iff every checked value is ≥ c, so its
  coverage at c is the share of rollouts with min_t V̂_t ≥ c. For a target coverage κ,
  ``coverage_threshold`` returns c = m_(k), the k-th smallest of the per-rollout minima with
  k = ⌊(1 − κ)·R⌋ (0-based), so at least κ·R rollouts are answered. This is rlvr's reading of
  the paper's "quantile + isotonic" (the exact procedure is not public).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def isotonic_fit(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """PAV: (block mean x, block fitted y), both non-decreasing, for y ~ x."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1 or xs.size == 0:
        raise ValueError(f"isotonic_fit: need two equal non-empty 1-D arrays, got {xs.shape}")
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    # pool ties first: one block per distinct x
    uniq, start = np.unique(xs, return_index=True)
    counts = np.diff(np.append(start, xs.size))
    sums = np.add.reduceat(ys, start)
    blocks: list[list[float]] = []  # [sum_y, weight, sum_x]
    for u, c, s in zip(uniq, counts, sums, strict=True):
        blocks.append([float(s), float(c), float(u) * float(c)])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s2, w2, x2 = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += w2
            blocks[-1][2] += x2
    bx = np.array([b[2] / b[1] for b in blocks])
    by = np.array([b[0] / b[1] for b in blocks])
    return bx, by


@dataclass
class IsotonicCalibrator:
    """Piecewise-linear monotone map through the knots (x, y), clipped outside them."""

    x: list[float]
    y: list[float]

    @classmethod
    def fit(cls, values: Sequence[float], labels: Sequence[float]) -> IsotonicCalibrator:
        bx, by = isotonic_fit(values, labels)
        return cls(bx.tolist(), by.tolist())

    def __call__(self, v: np.ndarray | Sequence[float]) -> np.ndarray:
        return np.interp(np.asarray(v, dtype=np.float64), self.x, self.y)

    def torch(self, v: torch.Tensor) -> torch.Tensor:
        """The same map on a tensor (any shape), for the gate."""
        x = torch.tensor(self.x, dtype=torch.float64, device=v.device)
        y = torch.tensor(self.y, dtype=torch.float64, device=v.device)
        flat = v.double().reshape(-1)
        if x.numel() == 1:
            return torch.full_like(v, float(self.y[0]), dtype=torch.float32)
        idx = torch.searchsorted(x, flat).clamp(1, x.numel() - 1)
        x0, x1, y0, y1 = x[idx - 1], x[idx], y[idx - 1], y[idx]
        w = ((flat - x0) / (x1 - x0).clamp(min=1e-300)).clamp(0, 1)
        out = y0 + w * (y1 - y0)
        return out.reshape(v.shape).float()

    def to_dict(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, d: dict) -> IsotonicCalibrator:
        if not d or len(d.get("x", [])) != len(d.get("y", [])) or not d.get("x"):
            raise ValueError(f"calibration knots must be equal non-empty lists x, y; got {d!r}")
        return cls([float(v) for v in d["x"]], [float(v) for v in d["y"]])


def coverage_threshold(min_values: Sequence[float], coverage: float) -> float:
    """c such that at least ``coverage`` of the rollouts have min value ≥ c (module doc)."""
    if not 0 < coverage <= 1:
        raise ValueError(f"target coverage must be in (0, 1], got {coverage}")
    m = np.sort(np.asarray(min_values, dtype=np.float64))
    if m.size == 0:
        raise ValueError("coverage_threshold: no rollouts")
    k = math.floor((1 - coverage) * m.size + 1e-9)
    return float(m[min(k, m.size - 1)])
