"""Compare GRPO, DAPO, QAE and ADORA on the tiny arithmetic task (same steps, same seeds).

1. Unless ``--model`` is given, build the tiny random Qwen2 model and warm it up with rlvr's
   SFT stage on 1-digit addition until greedy held-out accuracy reaches ``--stop-at`` (default
   0.15: the answer format is learnt, the sums mostly not), so RL starts from a partly right
   policy (a random model scores 0 everywhere and every group is uniform).
2. Run ``recipes/{grpo,dapo,qae,adora}_arithmetic_cpu.yaml`` from that model for ``--steps``
   steps with each seed in ``--seeds`` (only model.path, steps, seed and output_dir change).
3. Plot accuracy (of the rollouts before any batch filter: DAPO's dynamic sampling keeps only
   mixed groups, so its post-filter batch accuracy is not comparable), policy entropy, the
   fraction of zero advantages and the mean length per step, averaged over seeds, into one
   PNG; write the per-run metrics and a summary as JSON next to it.

Usage:  python scripts/compare_advantages.py [--steps 20] [--seeds 0 1] [--out runs/compare]
        [--png docs/advantages_comparison.png]. A few minutes on 2 idle CPU cores; offline.
Finished runs under ``--out`` are reused (``--fresh`` reruns them), so methods can run in
separate processes (``--methods dapo``) and a last call plots them all.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import torch

METHODS = ("grpo", "dapo", "qae", "adora")
REPO = Path(__file__).resolve().parents[1]
TASK = {"digits": 1, "operations": ["+"], "num_train": 2000, "num_eval": 50, "seed": 1234}


def greedy_accuracy(model, tokenizer, examples: list[dict], max_tokens: int = 24) -> float:
    from rewards.math import math_reward
    from rlvr.data.prompts import PromptFormatter
    from rlvr.rollout import HFEngine, SamplingParams

    fmt = PromptFormatter(tokenizer)
    engine = HFEngine(model, tokenizer)
    groups = engine.generate(
        [fmt.token_ids(e) for e in examples],
        SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens),
    )
    hits = [math_reward(g[0].text, e["answer"]) for g, e in zip(groups, examples, strict=True)]
    return sum(hits) / len(examples)


def warm_model(out: Path, stop_at: float, max_steps: int, lr: float) -> Path:
    """SFT the random tiny model on 1-digit addition until it is partly right."""
    from rlvr.data.arithmetic import arithmetic_examples
    from rlvr.data.tiny import build_tiny_model
    from rlvr.stages.sft import conversational_pairs, run_sft

    target = out / "sft_model"
    if (target / "model.safetensors").is_file():
        return target
    train, held = arithmetic_examples(**TASK)
    base = build_tiny_model(out / "random_model", seed=0)
    report = run_sft(
        base,
        conversational_pairs(train),
        target,
        lr=lr,
        batch_size=64,
        max_steps=max_steps,
        seed=0,
        eval_fn=lambda m, t: greedy_accuracy(m, t, held),
        eval_every=10,
        stop_at=stop_at,
    )
    shutil.rmtree(target / "_sft_tmp", ignore_errors=True)
    (target / "sft_report.json").write_text(json.dumps(report, indent=1))
    logging.info("SFT warm-up: %s", report["history"])
    return target


def run_one(method: str, seed: int, model: Path, steps: int, out: Path) -> list[dict]:
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
        ],
    )
    return train_cached(recipe, steps)  # a finished run with these settings is reused


def accuracy_of(row: dict) -> float:
    return float(row.get("unfiltered_accuracy", row.get("accuracy", 0.0)))


def mean_curve(runs: list[list[dict]], key) -> list[float]:
    steps = min(len(r) for r in runs)
    return [sum(key(r[i]) for r in runs) / len(runs) for i in range(steps)]


def plot(results: dict[str, list[list[dict]]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("accuracy of rollouts (before filters)", accuracy_of),
        ("policy entropy (nats / token)", lambda r: float(r["entropy"])),
        ("fraction of zero advantages", lambda r: float(r["advantage/zero_fraction"])),
        ("mean completion length (tokens)", lambda r: float(r["length/mean"])),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (title, key) in zip(axes, panels, strict=True):
        for method, runs in results.items():
            ys = mean_curve(runs, key)
            ax.plot(range(1, len(ys) + 1), ys, label=method)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    n_seeds = len(next(iter(results.values())))
    seeds = f"{n_seeds} seed" + ("s" if n_seeds > 1 else "")
    fig.suptitle(f"tiny model, 1-digit addition: mean of {seeds}", fontsize=11)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def summarize(results: dict[str, list[list[dict]]]) -> dict[str, dict[str, float]]:
    out = {}
    for method, runs in results.items():
        acc = mean_curve(runs, accuracy_of)
        ent = mean_curve(runs, lambda r: float(r["entropy"]))
        zero = mean_curve(runs, lambda r: float(r["advantage/zero_fraction"]))
        k = max(1, len(acc) // 5)  # first / last fifth of the run
        out[method] = {
            "accuracy_first": sum(acc[:k]) / k,
            "accuracy_last": sum(acc[-k:]) / k,
            "entropy_first": sum(ent[:k]) / k,
            "entropy_last": sum(ent[-k:]) / k,
            "zero_advantage_mean": sum(zero) / len(zero),
        }
        rounds = [r.get("filter/dynamic_sampling/rounds") for run in runs for r in run]
        if rounds[0] is not None:
            out[method]["generation_rounds_mean"] = sum(rounds) / len(rounds)
            dropped = [r["filter/dynamic_sampling/dropped_groups"] for run in runs for r in run]
            out[method]["dropped_groups_mean"] = sum(dropped) / len(dropped)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="start from this model instead of the SFT warm-up")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--stop-at", type=float, default=0.15)
    parser.add_argument("--sft-steps", type=int, default=200)
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--fresh", action="store_true", help="rerun finished runs too")
    parser.add_argument("--png", default="docs/advantages_comparison.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.fresh:
        for run_dir in out.glob("*_seed*"):
            shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    model = (
        Path(args.model)
        if args.model
        else warm_model(out, args.stop_at, args.sft_steps, args.sft_lr)
    )
    results: dict[str, list[list[dict]]] = {}
    for method in args.methods:
        results[method] = [run_one(method, s, model, args.steps, out) for s in args.seeds]
        logging.info("%s done (%.0f s so far)", method, time.perf_counter() - t0)
    plot(results, Path(args.png))
    summary = {
        "model": str(model),
        "steps": args.steps,
        "seeds": args.seeds,
        "wall_s": time.perf_counter() - t0,
        "methods": summarize(results),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "metrics.json").write_text(json.dumps(results))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
