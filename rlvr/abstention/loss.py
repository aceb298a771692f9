"""The value-probe loss (HenDav/value-steering ``train_probe.py::probe_loss``).

With logits z [B, T], labels y [B] (1 = the rollout ended correct, broadcast to every token)
and a mask m [B, T] of real tokens:

- focal term, per token (α_pos = 0.7, γ = 1):
  ``bce(z, y) · α_t · (1 − p_t)^γ`` with ``p_t = σ(z)·y + (1 − σ(z))(1 − y)`` and
  ``α_t = α·y + (1 − α)(1 − y)``; masked mean over each sequence's real tokens, then the mean
  over sequences;
- TD coherence: the mean over adjacent real pairs (m_t = m_{t+1} = 1, pooled over the batch)
  of ``(z_{t+1} − z_t)²``;
- ``probe_loss = focal + 0.1 · TD``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(
    z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, alpha: float = 0.7, gamma: float = 1.0
) -> torch.Tensor:
    """Masked focal BCE: per-sequence masked mean, then mean over sequences."""
    z = z.float()
    yt = y.float()[:, None].expand_as(z)
    m = mask.float()
    bce = F.binary_cross_entropy_with_logits(z, yt, reduction="none")
    p = torch.sigmoid(z)
    p_t = p * yt + (1 - p) * (1 - yt)
    alpha_t = alpha * yt + (1 - alpha) * (1 - yt)
    per_token = bce * alpha_t * (1 - p_t) ** gamma
    per_seq = (per_token * m).sum(1) / m.sum(1).clamp(min=1)
    return per_seq.mean()


def td_coherence(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (z_{t+1} − z_t)² over adjacent pairs of real tokens (0 when there are none)."""
    pair = (mask[:, 1:] * mask[:, :-1]).float()
    diff2 = (z[:, 1:].float() - z[:, :-1].float()) ** 2
    return (diff2 * pair).sum() / pair.sum().clamp(min=1)


def probe_loss(
    z: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    alpha: float = 0.7,
    gamma: float = 1.0,
    td_coef: float = 0.1,
) -> torch.Tensor:
    """focal(α, γ) + td_coef · TD coherence."""
    return focal_loss(z, y, mask, alpha, gamma) + td_coef * td_coherence(z, mask)
