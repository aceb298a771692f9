"""Step time of one-step off-policy (``rollout.max_staleness=1``) vs synchronous training on
the quickstart recipe (docs/off_policy.md).

Runs recipes/quickstart.yaml for ``--steps`` steps in each mode, same seed, no evaluation and
no checkpoints, in one process (one engine start each), then prints per mode: the mean of
time/step over steps 2..N (step 1 generates before training in both modes), its parts, the
measured overlap of each generation with the previous update, and the wall time of the loop.

Usage:  python scripts/bench_off_policy.py [--steps 8] [--engine vllm|hf] [--modes 0,1]
        [override ...]    (vLLM: one mode per process, --modes 0 then --modes 1)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rlvr.config import load_recipe
from rlvr.trainer import Trainer


def run(staleness: int, args: argparse.Namespace, out: Path) -> dict[str, float]:
    recipe = load_recipe(
        "recipes/quickstart.yaml",
        [
            f"name=bench_off_policy_{staleness}",
            f"output_dir={out}",
            "overwrite=true",
            f"train.steps={args.steps}",
            f"rollout.engine={args.engine}",
            f"rollout.max_staleness={staleness}",
            "eval.before=false",
            "eval.after=false",
            "checkpoint.save_final=false",
            "checkpoint.every=100000",
            "logging.progress=false",
            "logging.plots=false",
            "logging.tensorboard=false",
            *args.overrides,
        ],
    )
    trainer = Trainer(recipe)
    rows: list[dict[str, float]] = []
    original = trainer.train_step
    trainer.train_step = lambda step: rows.append(original(step)) or rows[-1]  # type: ignore[method-assign]
    start = time.perf_counter()
    try:
        trainer.train()
        wall = time.perf_counter() - start
        overlap = 0.0
        if trainer.off_policy is not None:
            spans = {(i.kind, i.step): i for i in trainer.off_policy.intervals}
            for (kind, step), t in spans.items():
                g = spans.get(("generate", step + 1))
                if kind == "train" and g is not None:
                    overlap += max(0.0, min(t.end, g.end) - max(t.start, g.start))
    finally:
        trainer.close()
    later = rows[1:]

    def mean(key: str) -> float:
        return statistics.fmean(r.get(key, 0.0) for r in later)

    return {
        "max_staleness": staleness,
        "steps": args.steps,
        "step_s": mean("time/step"),
        "step_s_stdev": statistics.stdev(r["time/step"] for r in later) if len(later) > 1 else 0,
        "generate_s": mean("time/generate"),
        "reward_s": mean("time/reward"),
        "train_s": mean("time/train"),
        "sync_s": mean("time/sync"),
        "wait_rollout_s": mean("time/wait_rollout"),
        "overlap_s_total": overlap,
        "loop_wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--engine", default="vllm", choices=["vllm", "hf"])
    parser.add_argument("--out", default="runs")
    parser.add_argument(
        "--modes", default="0,1", help="max_staleness values to run (one per process for vLLM)"
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    results = [run(int(s), args, Path(args.out)) for s in args.modes.split(",")]
    for r in results:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}))
    if len(results) != 2:
        return
    a, b = results
    print(
        f"time/step (steps 2..{args.steps}): synchronous {a['step_s']:.2f} s, one-step "
        f"off-policy {b['step_s']:.2f} s ({100 * (a['step_s'] / b['step_s'] - 1):+.0f} % "
        "throughput)"
    )


if __name__ == "__main__":
    main()
