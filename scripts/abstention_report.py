"""Tabulate and plot ``rlvr eval --abstain`` runs (one per seed) for docs/abstention.md.

    python scripts/abstention_report.py runs/eval_s0 runs/eval_s1 runs/eval_s2 \
        --suite arithmetic --json docs/abstention_results.json --png docs/abstention_curves.png

Reads each run's ``summary.json`` (its ``abstention`` section: the gated run at c, the rules
replayed at c and the curves over c) and writes the per-seed figures, their mean, and a plot of
coverage vs selective accuracy and mean tokens vs selective accuracy per rule (mean over seeds; points at
c = 0.05 ... 0.95).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

KEYS = ("coverage", "selective_accuracy", "tokens_saved", "utility", "abstention_precision")


def _mean(values: list[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="eval output directories (one per seed)")
    ap.add_argument("--suite", default="arithmetic")
    ap.add_argument("--json", required=True)
    ap.add_argument("--png", required=True)
    args = ap.parse_args()
    per_seed = []
    for run in args.runs:
        s = json.loads((Path(run) / "summary.json").read_text())
        ab = s["suites"][args.suite]["abstention"]
        if ab is None:
            raise SystemExit(f"{run}: no abstention section (run rlvr eval with --abstain)")
        per_seed.append({"run": run, "seed": s["settings"]["seed"], **ab})
    rows = {"gated": [p["gated"] for p in per_seed]}
    for rule in per_seed[0]["rules"]:
        rows[rule] = [p["rules"][rule] for p in per_seed]
    mean = {name: {k: _mean([m[k] for m in ms]) for k in KEYS} for name, ms in rows.items()}
    curves: dict[str, list[dict[str, Any]]] = {}
    for rule in per_seed[0]["curves"]:
        pts = zip(*[p["curves"][rule] for p in per_seed], strict=True)
        curves[rule] = [
            {
                "threshold": group[0]["threshold"],
                **{
                    k: _mean([g[k] for g in group])
                    for k in ("coverage", "selective_accuracy", "tokens_saved", "utility")
                },
                "mean_tokens": _mean([g["mean_tokens"] for g in group]),
            }
            for group in pts
        ]
    out = {
        "suite": args.suite,
        "seeds": [p["seed"] for p in per_seed],
        "threshold": per_seed[0]["threshold"],
        "r_abstain": per_seed[0]["r_abstain"],
        "per_seed": {
            str(p["seed"]): {
                "gated": {k: p["gated"][k] for k in KEYS},
                **{r: {k: p["rules"][r][k] for k in KEYS} for r in p["rules"]},
                "gated_matches_full": p["gated_matches_full"],
            }
            for p in per_seed
        },
        "mean": mean,
        "curves_mean": curves,
    }
    Path(args.json).write_text(json.dumps(out, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for rule, pts in curves.items():
        ok = [p for p in pts if p["selective_accuracy"] is not None]
        a.plot([p["coverage"] for p in ok], [p["selective_accuracy"] for p in ok], "o-",
               ms=3, label=rule)  # fmt: skip
        b.plot([p["mean_tokens"] for p in ok], [p["selective_accuracy"] for p in ok], "o-",
               ms=3, label=rule)  # fmt: skip
    a.set_xlabel("coverage")
    a.set_ylabel("selective accuracy")
    a.set_title(f"{args.suite}: sweep of c (mean of {len(per_seed)} seeds)")
    b.set_xlabel("mean tokens per sample")
    b.set_ylabel("selective accuracy")
    b.set_title("tokens vs selective accuracy")
    a.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
