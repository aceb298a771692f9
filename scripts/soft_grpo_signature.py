"""SofT-GRPO vs discrete GRPO on the tiny task: pass@1 and pass@k (k up to 32), several seeds.

The paper's signature (arXiv 2511.06411): against discrete-token GRPO from the same start,
SofT-GRPO is about even at pass@1 (+0.13 pt) and better at pass@32 (+2.19 pt). Here:

1. Both methods start from ``--model`` (default models/quickstart, the bundled tiny reasoning
   model) and run ``recipes/soft_grpo_arithmetic_cpu.yaml`` for ``--steps`` steps with each
   seed; GRPO is the same recipe with ``rollout.soft_thinking=null`` (same data, rewards,
   optimizer, clip, KL; only the rollouts and the log-prob of soft steps differ).
2. Every trained model and the start model are evaluated on the held-out 2-digit additions
   (``--problems``) with ``--n`` samples per problem, with both decodings: discrete (the HF
   engine) and soft thinking (the recipe's soft settings); answers sampled at T = 1, top-k 5,
   top-p 0.95 in both. pass@k is the unbiased estimator (eval.metrics.pass_at_k) per problem,
   averaged over problems, then mean +- std over seeds.
3. Writes ``<out>/signature.json`` (every number), ``<out>/signature.md`` (the table) and a
   PNG (pass@k curves; difference to GRPO; training accuracy per step).

Usage:  python scripts/soft_grpo_signature.py [--steps 30] [--seeds 0 1 2] [--out runs/soft_sig]
        [--png docs/soft_grpo_signature.png]. Finished runs are reused (``--fresh`` reruns).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "soft_grpo_arithmetic_cpu.yaml"
METHODS = ("grpo", "soft_grpo")
DECODINGS = ("discrete", "soft")
KS = (1, 2, 4, 8, 16, 32)


def evaluate(model: Any, tokenizer: Any, recipe: Any, decoding: str, n: int, problems: int) -> dict:
    """Per-problem correct counts and pass@k of ``model`` on the held-out split."""
    from eval.metrics import pass_at_k
    from rewards.math import math_reward
    from rlvr.data import PromptFormatter, load_examples
    from rlvr.rollout import HFEngine, SamplingParams, SoftThinkingEngine

    _, held = load_examples(recipe.data)
    held = held[:problems]
    fmt = PromptFormatter(tokenizer)
    prompts = [fmt.token_ids(ex) for ex in held]
    r = recipe.rollout
    if decoding == "soft":
        soft = recipe.rollout.soft_thinking
        assert soft is not None
        engine: Any = SoftThinkingEngine(model, tokenizer, soft.params())
    else:
        engine = HFEngine(model, tokenizer)
    counts: list[int] = []
    chunk = max(1, 256 // n)
    t0 = time.perf_counter()
    for i in range(0, len(prompts), chunk):
        sp = SamplingParams(
            n=n,
            temperature=1.0,
            top_p=r.top_p,
            top_k=r.top_k,
            max_tokens=r.max_new_tokens,
            seed=10_007 + i,
        )
        groups = engine.generate(prompts[i : i + chunk], sp)
        for g, ex in zip(groups, held[i : i + chunk], strict=True):
            counts.append(int(sum(math_reward(c.text, ex["answer"]) for c in g)))
    ks = [k for k in KS if k <= n]
    return {
        "counts": counts,
        "pass": {k: statistics.fmean(pass_at_k(n, c, k) for c in counts) for k in ks},
        "seconds": time.perf_counter() - t0,
    }


def train_one(method: str, seed: int, args: argparse.Namespace) -> tuple[Any, Any, list[dict]]:
    from rlvr.config import load_recipe
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    overrides = [
        f"name={method}_s{seed}",
        f"output_dir={args.out}",
        f"seed={seed}",
        f"model.path={args.model}",
        f"train.steps={args.steps}",
        f"train.threads={args.threads}",
        "eval.before=false",
        "eval.after=false",
        "checkpoint.save_final=false",
        "logging.progress=false",
        "logging.plots=false",
        "logging.tensorboard=false",
    ]
    if method == "grpo":
        overrides.append("rollout.soft_thinking=null")
    recipe = load_recipe(RECIPE, overrides)
    _, trainer = train_recipe(recipe)
    return trainer.model, trainer.tokenizer, read_metrics(recipe.run_dir / "metrics.jsonl")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(REPO / "models" / "quickstart"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--n", type=int, default=32, help="samples per held-out problem")
    p.add_argument("--problems", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/soft_sig")
    p.add_argument("--png", default=str(REPO / "docs" / "soft_grpo_signature.png"))
    p.add_argument("--fresh", action="store_true", help="rerun finished runs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.config import load_recipe

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe(RECIPE, [f"model.path={args.model}"])
    results: dict[str, Any] = {}
    start_file = out / "start.json"
    if start_file.is_file() and not args.fresh:
        results["start"] = json.loads(start_file.read_text())
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model).eval()
        tok = AutoTokenizer.from_pretrained(args.model)
        results["start"] = {
            d: evaluate(model, tok, recipe, d, args.n, args.problems) for d in DECODINGS
        }
        start_file.write_text(json.dumps(results["start"]))
    for seed in args.seeds:
        for method in args.methods:
            key = f"{method}_s{seed}"
            done = out / f"{key}.json"
            if done.is_file() and not args.fresh:
                results[key] = json.loads(done.read_text())
                continue
            t0 = time.perf_counter()
            model, tok, metrics = train_one(method, seed, args)
            train_s = time.perf_counter() - t0
            model.eval()
            row = {d: evaluate(model, tok, recipe, d, args.n, args.problems) for d in DECODINGS}
            row["train_seconds"] = train_s
            row["accuracy"] = [m.get("accuracy") for m in metrics]
            done.write_text(json.dumps(row))
            results[key] = row
            passes = ", ".join(f"{d} pass@1 {_pass(row, d, 1):.3f}" for d in DECODINGS)
            print(f"{key}: trained in {train_s:.0f}s; {passes}", flush=True)
    summary = summarise(results, args)
    (out / "signature.json").write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    table = markdown(summary, args)
    (out / "signature.md").write_text(table)
    print(table)
    plot(summary, results, args)
    return 0


def _pass(row: dict, decoding: str, k: int) -> float:
    passes = row[decoding]["pass"]
    return float(passes[str(k)] if str(k) in passes else passes[k])


def summarise(results: dict, args: argparse.Namespace) -> dict:
    ks = [k for k in KS if k <= args.n]
    summary: dict[str, Any] = {"ks": ks, "start": {}}
    for d in DECODINGS:
        summary["start"][d] = {k: _pass(results["start"], d, k) for k in ks}
    for method in args.methods:
        for d in DECODINGS:
            per_k = {}
            for k in ks:
                vals = [_pass(results[f"{method}_s{s}"], d, k) for s in args.seeds]
                per_k[k] = {
                    "mean": statistics.fmean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                    "seeds": vals,
                }
            summary[f"{method}/{d}"] = per_k
    if set(METHODS) <= set(args.methods):
        # the paper's comparison: each method with its own decoding, seed by seed
        diff = {}
        for k in ks:
            vals = [
                _pass(results[f"soft_grpo_s{s}"], "soft", k)
                - _pass(results[f"grpo_s{s}"], "discrete", k)
                for s in args.seeds
            ]
            diff[k] = {
                "mean": statistics.fmean(vals),
                "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "seeds": vals,
            }
        summary["soft_grpo/soft - grpo/discrete"] = diff
    return summary


def markdown(summary: dict, args: argparse.Namespace) -> str:
    ks = summary["ks"]
    head = "| model / decoding | " + " | ".join(f"pass@{k}" for k in ks) + " |"
    lines = [head, "|" + "---|" * (len(ks) + 1)]
    for d in DECODINGS:
        lines.append(
            f"| start / {d} | "
            + " | ".join(f"{100 * summary['start'][d][k]:.1f}" for k in ks)
            + " |"
        )
    for key, per_k in summary.items():
        if key in ("ks", "start"):
            continue
        fmt = "{:+.1f} ± {:.1f}" if key.startswith("soft_grpo/soft -") else "{:.1f} ± {:.1f}"
        lines.append(
            f"| {key} | "
            + " | ".join(fmt.format(100 * per_k[k]["mean"], 100 * per_k[k]["std"]) for k in ks)
            + " |"
        )
    lines.append(
        f"\n{len(args.seeds)} seeds ({' '.join(map(str, args.seeds))}), {args.steps} steps, "
        f"{args.problems} held-out problems x {args.n} samples; points, mean ± std over seeds."
    )
    return "\n".join(lines) + "\n"


def plot(summary: dict, results: dict, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = summary["ks"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    styles = {
        "grpo/discrete": ("GRPO, discrete decoding", "C0", "-"),
        "soft_grpo/soft": ("SofT-GRPO, soft decoding", "C3", "-"),
        "grpo/soft": ("GRPO, soft decoding", "C0", ":"),
        "soft_grpo/discrete": ("SofT-GRPO, discrete decoding", "C3", ":"),
    }
    for key, (label, color, ls) in styles.items():
        if key not in summary:
            continue
        m = [100 * summary[key][k]["mean"] for k in ks]
        s = [100 * summary[key][k]["std"] for k in ks]
        ax.errorbar(ks, m, yerr=s, label=label, color=color, ls=ls, marker="o", capsize=3)
    ax.plot(
        ks,
        [100 * summary["start"]["discrete"][k] for k in ks],
        color="gray",
        ls="--",
        marker=".",
        label="start, discrete",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_title("held-out 2-digit addition")
    ax.legend(fontsize=8)
    ax = axes[1]
    diff = summary.get("soft_grpo/soft - grpo/discrete")
    if diff:
        m = [100 * diff[k]["mean"] for k in ks]
        s = [100 * diff[k]["std"] for k in ks]
        ax.errorbar(ks, m, yerr=s, color="C3", marker="o", capsize=3)
        for i in range(len(args.seeds)):
            ax.plot(ks, [100 * diff[k]["seeds"][i] for k in ks], color="C3", alpha=0.3, lw=0.8)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("points")
    ax.set_title("SofT-GRPO (soft) - GRPO (discrete), per seed")
    ax = axes[2]
    for method, color in (("grpo", "C0"), ("soft_grpo", "C3")):
        if method not in args.methods:
            continue
        curves = [results[f"{method}_s{s}"]["accuracy"] for s in args.seeds]
        steps = range(1, len(curves[0]) + 1)
        mean = [statistics.fmean(c[i] for c in curves) for i in range(len(curves[0]))]
        ax.plot(steps, mean, color=color, label=method)
    ax.set_xlabel("step")
    ax.set_ylabel("rollout accuracy")
    ax.set_title(f"training rollouts (mean of {len(args.seeds)} seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
