"""Fitting the value head on cached decode-time features.

Data: one rollout = features [T, H] (fp16, captured by the gate at decode time: position t is
the state whose logits drew token t, t = 0 being the last prompt token) and its label
y = 1[the verifier accepted the completion], broadcast to every position. rlvr trains on the
completion positions (plus that last prompt position): the library's response-only variant;
the library's default also trains on every prompt position, which decode-time capture does
not see.

Optimisation (HenDav/value-steering ``scripts/train_value_head.py`` defaults): AdamW
(weight decay 1e-2), lr 1e-4 with 10 % linear warm-up then linear decay to 0, batches of 128
rollouts, 10 epochs, early stopping with patience 3 on the validation loss (the best state is
kept), gradient clipping at 1.0; loss :func:`rlvr.abstention.loss.probe_loss`. Splits are by
unique prompt (:func:`split_by_prompt`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlvr.abstention.head import ValueHead
from rlvr.abstention.loss import probe_loss


@dataclass
class HeadTraining:
    lr: float = 1e-4
    batch_size: int = 128
    epochs: int = 10
    patience: int = 3
    warmup_ratio: float = 0.1
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    focal_alpha: float = 0.7
    focal_gamma: float = 1.0
    td_coef: float = 0.1


def split_by_prompt(
    groups: Sequence[str], fractions: Sequence[float], seed: int = 0
) -> list[list[int]]:
    """Indices of rollouts split by unique prompt: ``fractions`` (of prompts) for the second,
    third, ... splits, the rest first; every split of a non-zero fraction gets ≥ 1 prompt
    when there are enough prompts."""
    uniq = sorted(set(groups))
    random.Random(seed).shuffle(uniq)
    sizes = [max(1, round(f * len(uniq))) if f > 0 else 0 for f in fractions]
    if sum(sizes) >= len(uniq):
        raise ValueError(
            f"split by prompt: {len(uniq)} prompts cannot fill splits of {list(fractions)} and "
            "keep a training split; sample more problems"
        )
    owner: dict[str, int] = {}
    pos = 0
    for k, size in enumerate(sizes, start=1):
        for g in uniq[pos : pos + size]:
            owner[g] = k
        pos += size
    out: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for i, g in enumerate(groups):
        out[owner.get(g, 0)].append(i)
    return out


def _pad(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(f.shape[0] for f in feats)
    H = feats[0].shape[1]
    x = torch.zeros(len(feats), T, H)
    m = torch.zeros(len(feats), T)
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = f.float()
        m[i, : f.shape[0]] = 1
    return x, m


def _loss(head: ValueHead, feats: list[torch.Tensor], y: torch.Tensor, cfg: HeadTraining):
    x, m = _pad(feats)
    return probe_loss(
        head(x), y, m, alpha=cfg.focal_alpha, gamma=cfg.focal_gamma, td_coef=cfg.td_coef
    )


@torch.no_grad()
def evaluate_loss(
    head: ValueHead, feats: Sequence[torch.Tensor], labels: Sequence[float], cfg: HeadTraining
) -> float:
    """Rollout-weighted mean probe loss over batches."""
    total = 0.0
    for i in range(0, len(feats), cfg.batch_size):
        fb = list(feats[i : i + cfg.batch_size])
        yb = torch.tensor(labels[i : i + cfg.batch_size], dtype=torch.float32)
        total += _loss(head, fb, yb, cfg).item() * len(fb)
    return total / max(len(feats), 1)


@torch.no_grad()
def value_traces(head: ValueHead, feats: Sequence[torch.Tensor]) -> list[list[float]]:
    """σ(head(h_t)) per rollout."""
    return [torch.sigmoid(head(f.float())).tolist() for f in feats]


def train_head(
    train: tuple[Sequence[torch.Tensor], Sequence[float]],
    val: tuple[Sequence[torch.Tensor], Sequence[float]],
    cfg: HeadTraining,
    *,
    seed: int = 0,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[ValueHead, list[dict[str, Any]]]:
    """Fit a head; returns (the best-on-validation head, per-epoch history)."""
    feats, labels = list(train[0]), list(train[1])
    if not feats:
        raise ValueError("train_head: no training rollouts")
    torch.manual_seed(seed)
    head = ValueHead(feats[0].shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(feats) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, round(cfg.warmup_ratio * total)) if cfg.warmup_ratio > 0 else 0

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(seed)
    best, best_state, bad, history = math.inf, None, 0, []
    for epoch in range(cfg.epochs):
        order = list(range(len(feats)))
        rng.shuffle(order)
        head.train()
        run = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            y = torch.tensor([labels[j] for j in idx], dtype=torch.float32)
            loss = _loss(head, [feats[j] for j in idx], y, cfg)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            run += loss.item() * len(idx)
        head.eval()
        val_loss = evaluate_loss(head, val[0], val[1], cfg) if len(val[0]) else math.nan
        rec = {"epoch": epoch + 1, "train_loss": run / len(feats), "val_loss": val_loss}
        history.append(rec)
        if log is not None:
            log(rec)
        score = val_loss if not math.isnan(val_loss) else rec["train_loss"]
        if score < best - 1e-9:
            best, bad = score, 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return head, history
