"""Each method's signature against GRPO, from the same start, on the quickstart task.

Every method is ``recipes/quickstart.yaml`` (models/quickstart, 2-digit addition, GRPO) plus the
overrides in ``METHODS`` that switch that method on, nothing else; all use the transformers
engine so that runs fit a small shared CPU. For each method and seed the script trains
``--steps`` steps and reads ``metrics.jsonl``; it writes curves (mean over seeds, band = min..max)
and a JSON + Markdown table: first-quarter -> last-quarter mean of the signature metrics with
the spread over seeds, the expected signature beside what was measured.

Expected signatures (from each method's source):
- grpo: entropy falls as accuracy rises (the quickstart: 0.20 -> 0.13 in 100 steps).
- qae: a large zero-advantage fraction (the paper: ~80 % at tuned K), entropy held.
- dapo: no zero-variance group left after dynamic sampling (zero-advantage fraction ~0).
- steer / cure / clip_cov / kl_cov / high_entropy_only / egspo: entropy held against GRPO's
  decline, at equal or better accuracy.
- compression / lc_r1: shorter completions at equal accuracy.

Usage:  python scripts/reproduce_signatures.py [--steps 40] [--seeds 0 1 2]
        [--methods grpo qae ...] [--out runs/signatures] [--prompts 8] [--threads 1] [--lr 3e-4]
        [--md docs/signatures_table.md] [--png docs/img/signatures.png]
Finished runs under --out are reused (methods can run in separate processes).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OVERLONG = "{name: overlong, weight: 1.0, params: {max_len: 24, cache_len: 8}}"
METHODS: dict[str, list[str]] = {
    "grpo": [],
    "qae": ["algo.advantage=qae", "algo.advantage_params={k: 0.4}"],
    "dapo": [
        f"rewards=[{{name: math, weight: 2.0}}, {OVERLONG}]",
        "algo.filters=[{name: dynamic_sampling, params: {max_rounds: 3}}]",
    ],
    "adora": ["algo.advantage=adora", "algo.advantage_params={correct_key: math}"],
    "steer": ["algo.token_weights=[{name: steer, params: {weight_min: 0.8}}]"],
    "cure": ["rollout.cure={branches: 1, top_k: 20, min_chars: 1, stage1_steps: 1000}"],
    "clip_cov": ["algo.token_weights=[{name: clip_cov, params: {ratio: 0.02}}]"],
    "kl_cov": [
        "algo.updates_per_batch=2",
        "algo.token_weights=[{name: kl_cov, params: {ratio: 0.02}}]",
    ],
    "high_entropy_only": ["algo.token_weights=[{name: high_entropy_only, params: {q: 0.2}}]"],
    "egspo": ["algo.token_weights=[{name: egspo_gate, params: {q: 0.2, low_weight: 0.1}}]"],
    "compression": ["rewards=[{name: math}, {name: compression}]"],
    "lc_r1": ["rewards=[{name: math}, {name: lc_r1}]"],
}

ENTROPY_HELD = "entropy held vs GRPO's decline, accuracy >= GRPO"
EXPECTED = {
    "grpo": "entropy falls as accuracy rises",
    "qae": "large zero-advantage fraction; entropy held",
    "dapo": "zero-advantage fraction ~0 after filtering",
    "adora": "(no entropy claim) TDS groups down-weighted",
    "steer": ENTROPY_HELD,
    "cure": ENTROPY_HELD,
    "clip_cov": ENTROPY_HELD,
    "kl_cov": ENTROPY_HELD,
    "high_entropy_only": ENTROPY_HELD,
    "egspo": ENTROPY_HELD,
    "compression": "shorter completions, equal accuracy",
    "lc_r1": "shorter completions, equal accuracy",
}
KEYS = ("accuracy", "entropy", "length/mean", "advantage/zero_fraction")


def run(method: str, seed: int, args: argparse.Namespace) -> list[dict]:
    from rlvr.config import load_recipe
    from rlvr.trainer import train_cached

    recipe = load_recipe(
        REPO / "recipes" / "quickstart.yaml",
        [
            f"model.path={REPO / 'models' / 'quickstart'}",
            f"output_dir={args.out}",
            f"name={method}_seed{seed}",
            f"seed={seed}",
            f"train.steps={args.steps}",
            f"train.prompts_per_step={args.prompts}",
            f"train.threads={args.threads}",
            f"train.lr={args.lr}",
            "rollout.engine=hf",
            "eval.before=false",
            "eval.after=false",
            "checkpoint.every=100000",
            "checkpoint.save_final=false",
            "logging.progress=false",
            "logging.plots=false",
            "logging.tensorboard=false",
            *METHODS[method],
        ],
    )
    return train_cached(recipe, args.steps)


def value(row: dict, key: str) -> float | None:
    if key == "accuracy" and row.get("unfiltered_accuracy") is not None:
        return row["unfiltered_accuracy"]  # before dynamic sampling picked groups
    v = row.get(key)
    return None if v is None else float(v)


def window(rows: list[dict], key: str, first: bool) -> float | None:
    q = max(1, len(rows) // 4)
    part = rows[:q] if first else rows[-q:]
    vals = [v for r in part if (v := value(r, key)) is not None]
    return sum(vals) / len(vals) if vals else None


def summarise(results: dict[str, list[list[dict]]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for method, runs in results.items():
        entry: dict[str, dict] = {}
        for key in KEYS:
            firsts = [w for r in runs if (w := window(r, key, True)) is not None]
            lasts = [w for r in runs if (w := window(r, key, False)) is not None]
            if not lasts:
                continue
            entry[key] = {
                "first": statistics.fmean(firsts),
                "last": statistics.fmean(lasts),
                "last_sd": statistics.stdev(lasts) if len(lasts) > 1 else 0.0,
                "last_per_seed": lasts,
            }
        out[method] = entry
    return out


def verdict(method: str, s: dict[str, dict], grpo: dict[str, dict]) -> str:
    def last(m: dict, k: str) -> float:
        return m.get(k, {}).get("last", float("nan"))

    def sd(m: dict, k: str) -> float:
        return m.get(k, {}).get("last_sd", 0.0)

    acc_ok = last(s, "accuracy") >= last(grpo, "accuracy") - max(sd(grpo, "accuracy"), 0.02)
    if method == "grpo":
        fell = last(s, "entropy") < s.get("entropy", {}).get("first", float("nan"))
        return "shows" if fell else "does not show"
    if method == "qae":
        z = last(s, "advantage/zero_fraction")
        return f"zero-adv {z:.2f} vs GRPO {last(grpo, 'advantage/zero_fraction'):.2f}"
    if method == "dapo":
        z = last(s, "advantage/zero_fraction")
        return "shows" if z < 0.05 else f"does not show (zero-adv {z:.2f})"
    if method in ("compression", "lc_r1"):
        shorter = last(s, "length/mean") < last(grpo, "length/mean") - sd(grpo, "length/mean")
        return "shows" if shorter and acc_ok else "does not show"
    if method == "adora":
        return "n/a (no entropy/length claim)"
    held = last(s, "entropy") > last(grpo, "entropy") + sd(grpo, "entropy")
    if held and acc_ok:
        return "shows"
    return "entropy held, accuracy lower" if held else "does not show"


def table(summary: dict[str, dict]) -> str:
    grpo = summary.get("grpo", {})
    lines = [
        "| method | accuracy first → last (± sd) | entropy first → last (± sd) | length last | "
        "zero-adv last | expected | measured |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(s: dict, k: str, digits: int = 3) -> str:
        if k not in s:
            return "–"
        m = s[k]
        return f"{m['first']:.{digits}f} → {m['last']:.{digits}f} (± {m['last_sd']:.{digits}f})"

    for method, s in summary.items():
        length = s.get("length/mean", {})
        zero = s.get("advantage/zero_fraction", {})
        lines.append(
            f"| {method} | {cell(s, 'accuracy')} | {cell(s, 'entropy')} | "
            f"{length.get('last', float('nan')):.1f} ± {length.get('last_sd', 0.0):.1f} | "
            f"{zero.get('last', float('nan')):.2f} | {EXPECTED[method]} | "
            f"{verdict(method, s, grpo)} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, list[list[dict]]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("accuracy", "rollout accuracy"),
        ("entropy", "token entropy (nats)"),
        ("length/mean", "completion length (tokens)"),
        ("advantage/zero_fraction", "zero-advantage fraction"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8))
    for method, runs in results.items():
        n = min(len(r) for r in runs)
        for ax, (key, _) in zip(axes, panels, strict=True):
            per_step = [[value(r[i], key) for r in runs] for i in range(n)]
            if any(v is None for vals in per_step for v in vals):
                continue
            mean = [sum(v) / len(v) for v in per_step]
            style = {"color": "black", "lw": 2.2} if method == "grpo" else {"lw": 1.2}
            line = ax.plot(range(1, n + 1), mean, label=method, **style)[0]
            ax.fill_between(
                range(1, n + 1),
                [min(v) for v in per_step],
                [max(v) for v in per_step],
                color=line.get_color(),
                alpha=0.08,
            )
    for ax, (_, title) in zip(axes, panels, strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--prompts", type=int, default=8, help="prompts per step (G = 8 each)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4, help="the same for every method")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "signatures")
    p.add_argument("--md", type=Path, default=None, help="write the table here too")
    p.add_argument("--png", type=Path, default=None, help="write the curves here")
    args = p.parse_args(argv)
    methods = args.methods if "grpo" in args.methods else ["grpo", *args.methods]
    results: dict[str, list[list[dict]]] = {}
    for method in methods:
        results[method] = []
        for seed in args.seeds:
            rows = run(method, seed, args)
            results[method].append(rows)
            print(f"{method} seed {seed}: {len(rows)} steps", flush=True)
    summary = summarise(results)
    text = table(summary)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.md is not None:
        args.md.write_text(text + "\n")
    if args.png is not None:
        plot(results, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
