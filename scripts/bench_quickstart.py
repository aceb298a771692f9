"""Quickstart target check: held-out accuracy must rise by >= 20 points within 5 minutes of
GRPO training on the bundled tiny model (2 CPU cores).

Runs recipes/quickstart.yaml with ``train.time_limit_s`` (default 300 s of training; the
before/after evaluations are not counted), then prints greedy and pass@1 held-out accuracy
before and after, the rise in points, the number of steps done, and PASS/FAIL.

Usage:  python scripts/bench_quickstart.py [--minutes 5] [--engine vllm|hf] [override ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rlvr.config import load_recipe
from rlvr.trainer import train_recipe


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--engine", default="vllm", choices=["vllm", "hf"])
    parser.add_argument("--target", type=float, default=0.20, help="required rise (fraction)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    recipe = load_recipe(
        "recipes/quickstart.yaml",
        [
            "name=bench_quickstart",
            "train.steps=100000",
            f"train.time_limit_s={args.minutes * 60}",
            f"rollout.engine={args.engine}",
            "logging.progress=false",
            *args.overrides,
        ],
    )
    start = time.perf_counter()
    summary, trainer = train_recipe(recipe)
    before, after = summary["eval_before"], summary["eval_after"]
    steps = summary["final_metrics"] and trainer.step
    print(
        f"engine {args.engine}; {steps} steps in {args.minutes:g} min of training "
        f"(wall {time.perf_counter() - start:.0f} s incl. start-up and evals)"
    )
    ok = True
    for key in ("eval/greedy", "eval/pass@1"):
        rise = after[key] - before[key]
        print(
            f"{key:12s} before {before[key]:.3f}  after {after[key]:.3f}  rise {100 * rise:+.1f} pts"
        )
    rise = after["eval/pass@1"] - before["eval/pass@1"]
    ok = rise >= args.target
    print(f"target: pass@1 rise >= {100 * args.target:.0f} pts -> {'PASS' if ok else 'FAIL'}")
    (recipe.run_dir / "bench.json").write_text(
        json.dumps(
            {"before": before, "after": after, "steps": steps, "engine": args.engine, "pass": ok},
            indent=1,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
