"""Step metrics sinks: metrics.jsonl (one line per step), TensorBoard (scalars and per-step
histograms, e.g. of token entropies), optional W&B, and PNG plots of the main curves written
when a run ends. :func:`entropy_metrics` summarises a batch's token entropies: mean over the
tokens of correct vs wrong completions (each completion's tokens pooled, i.e. token-weighted)
and quantiles over all completion tokens."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

PLOTTED = [
    ("reward/mean", "reward"),
    ("accuracy", "accuracy"),
    ("entropy", "token entropy"),
    ("entropy/correct", "token entropy, correct completions"),
    ("entropy/wrong", "token entropy, wrong completions"),
    ("length/mean", "completion length"),
    ("clip_fraction", "clip fraction"),
    ("kl", "KL to reference"),
]


class MetricsLogger:
    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_project: str = "rlvr",
        run_name: str = "run",
        config: dict[str, Any] | None = None,
        resume_step: int = 0,
    ) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "metrics.jsonl"
        if resume_step > 0 and self.path.exists():
            self._truncate_after(resume_step)
        elif resume_step == 0 and self.path.exists():
            self.path.unlink()
        self._file = self.path.open("a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(
                log_dir=str(run_dir / "tensorboard"),
                purge_step=resume_step + 1 if resume_step else None,
            )
        self._wandb = None
        if wandb:
            import wandb as wb

            self._wandb = wb.init(
                project=wandb_project, name=run_name, config=config, resume="allow"
            )

    def _truncate_after(self, step: int) -> None:
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue
        self.path.write_text("".join(k + "\n" for k in kept))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)

    def histogram(self, step: int, tag: str, values: torch.Tensor) -> None:
        """One histogram per step (TensorBoard and W&B; metrics.jsonl keeps scalars only)."""
        values = values.detach().float().reshape(-1).cpu()
        if values.numel() == 0:
            return
        if self._tb is not None:
            self._tb.add_histogram(tag, values, step)
        if self._wandb is not None:
            import wandb as wb

            self._wandb.log({tag: wb.Histogram(values.numpy())}, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def entropy_metrics(
    entropies: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor | None = None
) -> dict[str, float]:
    """Token-entropy summary of one batch. ``entropies`` and ``mask`` are [N, T] (rows in
    prompt-major order), ``correct`` a [B, G] or [N] score (> 0.5 = correct) or None."""
    mask = mask > 0
    values = entropies[mask].float()
    if values.numel() == 0:
        return {}
    q = torch.quantile(values, torch.tensor([0.1, 0.5, 0.9]))
    out = {
        "entropy/p10": float(q[0]),
        "entropy/p50": float(q[1]),
        "entropy/p90": float(q[2]),
        "entropy/max": float(values.max()),
    }
    if correct is not None:
        right = (correct.reshape(-1) > 0.5).unsqueeze(1) & mask
        wrong = (correct.reshape(-1) <= 0.5).unsqueeze(1) & mask
        for name, sel in (("correct", right), ("wrong", wrong)):
            if sel.any():
                out[f"entropy/{name}"] = float(entropies[sel].float().mean())
    return out


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_plots(run_dir: Path) -> list[Path]:
    """One PNG per plotted metric present in metrics.jsonl, plus an overview figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = read_metrics(path)
    present = [(k, title) for k, title in PLOTTED if any(r.get(k) is not None for r in rows)]
    if not present:
        return []
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    # a grid of at most 3 columns (8 panels: 3 x 3), each panel about 4 x 3 inches
    cols = min(3, len(present))
    nrows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(present) :]:
        ax.set_visible(False)
    for ax, (key, title) in zip(axes.flat, present, strict=False):
        xs = [r["step"] for r in rows if r.get(key) is not None]
        ys = [r[key] for r in rows if r.get(key) is not None]
        ax.plot(xs, ys, lw=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        single, sax = plt.subplots(figsize=(5, 3.2))
        sax.plot(xs, ys, lw=1.2)
        sax.set_title(title)
        sax.set_xlabel("step")
        sax.grid(alpha=0.3)
        single.tight_layout()
        p = out_dir / f"{key.replace('/', '_')}.png"
        single.savefig(p, dpi=110)
        plt.close(single)
        written.append(p)
    fig.tight_layout()
    overview = out_dir / "overview.png"
    fig.savefig(overview, dpi=110)
    plt.close(fig)
    written.append(overview)
    return written
