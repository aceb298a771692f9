"""Compare entropy-control methods on the tiny arithmetic task: GRPO (no rule) vs STEER, the
EGSPO gate, Clip-Cov, KL-Cov, high-entropy-only and CURE, same seeds, same steps, same start
model.

Each method is its CPU recipe (``recipes/<method>_arithmetic_cpu.yaml``; ``grpo`` has no
token-weight rule; ``cure`` is DAPO with critical-token branching, G = 4 + 4 branches);
only model.path, seed, steps and output_dir change. The start model is
the SFT-warmed tiny model that ``scripts/compare_advantages.py`` builds (runs/compare/
sft_model), so rewards are not all zero. Writes one PNG with accuracy, token entropy and the
correct-vs-wrong entropy gap per step (mean over seeds), and a JSON summary next to it.

Usage:  python scripts/compare_token_weights.py [--steps 20] [--seeds 0] [--threads 1]
        [--model runs/compare/sft_model] [--out runs/compare_tw]
        [--png docs/token_weights_comparison.png]
Finished runs under --out are reused, so methods can run in separate processes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
METHODS = ("grpo", "steer", "egspo", "clip_cov", "kl_cov", "high_entropy_only", "cure")


def run_method(method: str, seed: int, model: Path, steps: int, out: Path) -> list[dict]:
    from rlvr.config import load_recipe
    from rlvr.trainer import train_cached

    recipe = load_recipe(
        REPO / "recipes" / f"{method}_arithmetic_cpu.yaml",
        [
            f"model.path={model}",
            f"output_dir={out}",
            f"name={method}_seed{seed}",
            f"seed={seed}",
            f"train.steps={steps}",
            "logging.progress=false",
            "logging.plots=false",
            "checkpoint.save_final=false",
            "warmup=null",  # every method starts from the same (already warmed) model
        ],
    )
    return train_cached(recipe, steps)


def value(row: dict, key: str) -> float | None:
    """Accuracy of the rollouts before batch filters when a filter ran (DAPO's dynamic
    sampling keeps only mixed groups, so the filtered batch's accuracy is not comparable)."""
    if key == "accuracy" and row.get("unfiltered_accuracy") is not None:
        return row["unfiltered_accuracy"]
    return row.get(key)


def curve(runs: list[list[dict]], key: str) -> list[float]:
    n = min(len(r) for r in runs)
    out = []
    for i in range(n):
        vals = [v for r in runs if (v := value(r[i], key)) is not None]
        out.append(sum(vals) / len(vals) if vals else float("nan"))
    return out


def plot(results: dict[str, list[list[dict]]], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("accuracy", "rollout accuracy (before filters)"),
        ("entropy", "token entropy (nats)"),
        ("entropy/correct", "entropy, correct completions"),
        ("entropy/wrong", "entropy, wrong completions"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (key, name) in zip(axes, panels, strict=True):
        for method, runs in results.items():
            ys = curve(runs, key)
            ax.plot(range(1, len(ys) + 1), ys, label=method, lw=1.3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def summarize(results: dict[str, list[list[dict]]]) -> dict[str, dict[str, float]]:
    summary = {}
    for method, runs in results.items():
        acc, ent = curve(runs, "accuracy"), curve(runs, "entropy")
        k = max(1, len(acc) // 4)
        summary[method] = {
            "accuracy_first": sum(acc[:k]) / k,
            "accuracy_last": sum(acc[-k:]) / k,
            "entropy_first": sum(ent[:k]) / k,
            "entropy_last": sum(ent[-k:]) / k,
        }
        for key in runs[0][-1]:
            if key.startswith("token_weights/") and key.endswith("_fraction"):
                summary[method][key] = sum(curve(runs, key)) / len(acc)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="runs/compare/sft_model")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/compare_tw")
    parser.add_argument("--png", default="docs/token_weights_comparison.png")
    args = parser.parse_args()
    model = Path(args.model)
    if not (model / "config.json").is_file():
        raise SystemExit(f"{model}: no model; run scripts/compare_advantages.py first")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results = {
        m: [run_method(m, s, model, args.steps, out) for s in args.seeds] for m in args.methods
    }
    png = Path(args.png)
    seeds = " ".join(map(str, args.seeds))
    plot(results, png, f"tiny model, 1-digit addition, {args.steps} steps, seeds {seeds}")
    summary = summarize(results)
    png.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
