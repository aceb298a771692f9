"""One small experiment per stage around RL, on 2-digit addition from the bundled quickstart
model (models/quickstart: ~36 % greedy held-out), CPU only. Each arm is an ``rlvr`` command
run in its own process; its summary.json holds held-out accuracy on the same 200 problems
(greedy, and pass@1 over 4 samples at T = 1) before and after.

Arms (per seed):
  sft_gold         rlvr sft: 60 steps on the task's gold worked solutions
  redi_a{alpha}    rlvr redi: 4 traces x 2048 problems sampled from the base, labelled by the
                   verifier; stage 1 = 60 SFT steps on the positives, stage 2 = 32 REDI
                   steps of 32 pairs (about one epoch);
                   alpha = 0 is the SFT-only control (positives only, same loop and steps)
  grpo, grpo_x2    rlvr train recipes/quickstart.yaml, N and 2N GRPO steps
  specs_grpo       rlvr pipeline: SPECS (self-generated pairs, DPO 60 steps) -> N GRPO steps
  rft_grpo         rlvr pipeline: SFT on the model's own correct samples (the REDI recipe at
                   alpha = 0) -> N GRPO steps: the SFT cold start SPECS is compared with
  int_grpo         rlvr pipeline: InT (own failures, reference_diff proposer, SFT) -> N GRPO

Finished arms are skipped when the script runs again (their summary.json is read back).
Writes <out>/results.json and prints a markdown table (the one in docs/stages.md).

  python scripts/stage_experiments.py --seeds 0 1 --grpo-steps 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RLVR = [sys.executable, "-m", "rlvr.cli"]
EVAL = ["eval.num_problems=200", "eval.samples=4"]


def run(cmd: list[str], log: Path) -> None:
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode
    print(f"  {time.perf_counter() - start:6.0f} s  rc {rc}  {' '.join(cmd[3:6])}  ({log})")
    if rc != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}; see {log}")


def pipeline_file(out: Path, name: str, seed: int, first: dict, grpo_steps: int) -> Path:
    stage_overrides = [f"seed={seed}", *first.get("overrides", [])]
    text = {
        "name": name,
        "output_dir": str(out),
        "stages": [
            {**first, "overrides": stage_overrides},
            {
                "name": "grpo",
                "kind": "train",
                "recipe": "recipes/quickstart.yaml",
                "overrides": [
                    f"seed={seed}",
                    f"train.steps={grpo_steps}",
                    "checkpoint.every=1000",
                    "logging.plots=false",
                    *EVAL,
                ],
            },
        ],
    }
    path = out / f"{name}.pipeline.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(text, indent=1))
    return path


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def grpo_stats(run_dir: Path) -> dict[str, float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    return {
        "zero_adv": statistics.fmean(r["advantage/zero_fraction"] for r in rows),
        "train_acc": statistics.fmean(r["accuracy"] for r in rows),
    }


def think_box_consistency(model_dir: str) -> float:
    """Share of greedy held-out answers whose boxed number is the <think> digits reversed,
    right or wrong: whether the model still runs its procedure (write the digits, copy them)."""
    import re

    from rlvr.config import DataConfig
    from rlvr.data.arithmetic import arithmetic_examples
    from rlvr.rollout import SamplingParams, build_engine
    from rlvr.stages.common import prompt_ids, prompt_messages

    heldout = arithmetic_examples(2, ["+"], 20000, 200, 1234)[1]
    engine = build_engine("hf", model_dir)
    try:
        ids = [prompt_ids(engine.tokenizer, prompt_messages(ex, DataConfig())) for ex in heldout]
        outs = engine.generate(ids, SamplingParams(temperature=0.0, max_tokens=24))
    finally:
        engine.close()
    pattern = re.compile(r"<think>(\d+)</think>\\boxed\{(\d+)\}")
    ok = 0
    for group in outs:
        m = pattern.search(group[0].text)
        ok += bool(m) and m.group(1)[::-1] == m.group(2)
    return ok / len(heldout)


def arm_results(out: Path, seed: int, grpo_steps: int, alphas: list[float]) -> dict[str, dict]:
    res: dict[str, dict] = {}
    d = out / f"seed{seed}"
    # SFT on gold solutions
    s = d / "sft_gold" / "summary.json"
    if not s.is_file():
        run(
            [
                *RLVR,
                "sft",
                "recipes/sft_arithmetic_cpu.yaml",
                "model.path=models/quickstart",
                f"output_dir={d}",
                "name=sft_gold",
                f"seed={seed}",
                "data.arithmetic={digits: 2, operations: ['+'], num_train: 20000, "
                "num_eval: 200, seed: 1234}",
                "train.steps=60",
                "train.lr=5.0e-4",
                "train.warmup_steps=0",
                "eval.max_new_tokens=24",
                *EVAL,
            ],
            d / "sft_gold.log",
        )
    res["sft_gold"] = read(s)
    # REDI, alpha sweep (alpha 0 = SFT on positives only)
    for a in alphas:
        name = f"redi_a{a:g}"
        s = d / name / "summary.json"
        if not s.is_file():
            run(
                [
                    *RLVR,
                    "redi",
                    "recipes/redi_arithmetic_cpu.yaml",
                    f"output_dir={d}",
                    f"name={name}",
                    f"seed={seed}",
                    f"redi.alpha={a}",
                    *EVAL,
                ],
                d / f"{name}.log",
            )
        res[name] = read(s)
        if "consistency" not in res[name]:
            res[name]["consistency_after_sft"] = think_box_consistency(str(d / name / "sft_model"))
            res[name]["consistency"] = think_box_consistency(res[name]["model_dir"])
            s.write_text(json.dumps(res[name], indent=1))
    # RL from the base (for the stage's steps and for twice as many, a compute control), and
    # after each cold-start stage
    for name, steps in (("grpo", grpo_steps), ("grpo_x2", 2 * grpo_steps)):
        s = d / name / "summary.json"
        if not s.is_file():
            run(
                [
                    *RLVR,
                    "train",
                    "recipes/quickstart.yaml",
                    f"output_dir={d}",
                    f"name={name}",
                    f"seed={seed}",
                    f"train.steps={steps}",
                    "checkpoint.every=1000",
                    "logging.plots=false",
                    *EVAL,
                ],
                d / f"{name}.log",
            )
        res[name] = {**read(s), **grpo_stats(d / name)}
    firsts = {
        "specs": ("specs", []),
        "int": ("int", []),
        # SFT cold start on the model's own correct samples (REDI recipe with alpha = 0)
        "rft": ("redi", ["redi.alpha=0.0"]),
    }
    for key, (kind, extra) in firsts.items():
        name = f"{key}_grpo"
        first = {"name": key, "kind": kind, "recipe": f"recipes/{kind}_arithmetic_cpu.yaml"}
        first["overrides"] = [*EVAL, *extra]
        if not (d / name / "grpo" / "summary.json").is_file():
            run(
                [*RLVR, "pipeline", str(pipeline_file(d, name, seed, first, grpo_steps))],
                d / f"{name}.log",
            )
        res[name] = {
            "stage": read(d / name / key / "summary.json"),
            **read(d / name / "grpo" / "summary.json"),
            **grpo_stats(d / name / "grpo"),
        }
    return res


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def mean_of(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def table(results: dict[int, dict[str, dict]], alphas: list[float]) -> str:
    seeds = sorted(results)

    def col(arm: str, *path: str) -> str:
        vals = []
        for seed in seeds:
            node: object = results[seed].get(arm, {})
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            vals.append(node if isinstance(node, (int, float)) else None)
        m = mean_of(vals)
        return pct(m) + (
            f" ({', '.join(pct(v) for v in vals)})" if len(seeds) > 1 and m is not None else ""
        )

    lines = [
        f"Seeds: {', '.join(map(str, seeds))}. Held-out 2-digit addition, 200 problems; "
        "greedy accuracy / pass@1 (4 samples, T = 1) in %, mean (per seed).",
        "",
        "| arm | before | after stage | after GRPO |",
        "|---|---|---|---|",
    ]
    g, p = "eval/greedy", "eval/pass@1"
    lines.append(
        f"| SFT, gold solutions (60 steps) | {col('sft_gold', 'eval_before', g)} / "
        f"{col('sft_gold', 'eval_before', p)} | {col('sft_gold', 'eval_after', g)} / "
        f"{col('sft_gold', 'eval_after', p)} | |"
    )
    for arm, label in (("grpo", "GRPO only"), ("grpo_x2", "GRPO only, twice the steps")):
        lines.append(
            f"| {label} | {col(arm, 'eval_before', g)} / {col(arm, 'eval_before', p)} | | "
            f"{col(arm, 'eval_after', g)} / {col(arm, 'eval_after', p)} |"
        )
    for key, label in (
        ("specs", "SPECS (self-distilled DPO) -> GRPO"),
        ("rft", "SFT on own correct samples -> GRPO"),
        ("int", "InT (SFT) -> GRPO"),
    ):
        arm = f"{key}_grpo"
        after = "eval_after"
        lines.append(
            f"| {label} | {col(arm, 'stage', 'eval_before', g)} / "
            f"{col(arm, 'stage', 'eval_before', p)} | {col(arm, 'stage', after, g)} / "
            f"{col(arm, 'stage', after, p)} | {col(arm, 'eval_after', g)} / "
            f"{col(arm, 'eval_after', p)} |"
        )
    lines += [
        "",
        "| RL run | mean zero-advantage share of groups | mean train accuracy |",
        "|---|---|---|",
    ]
    for arm in ("grpo", "grpo_x2", "specs_grpo", "rft_grpo", "int_grpo"):
        lines.append(f"| {arm} | {col(arm, 'zero_adv')} | {col(arm, 'train_acc')} |")
    lines += [
        "",
        "REDI arms: stage 1 (SFT on the positive traces) -> stage 2 (the REDI loss); greedy / "
        "pass@1 in %, and the share of greedy answers whose box repeats the <think> digits "
        "reversed (the procedure intact, right or wrong).",
        "",
        "| alpha | after stage 1 | after stage 2 | procedure intact: stage 1 -> 2 |",
        "|---|---|---|---|",
    ]
    for a in alphas:
        arm = f"redi_a{a:g}"
        lines.append(
            f"| {a:g} | {col(arm, 'eval_after_sft', g)} / {col(arm, 'eval_after_sft', p)} | "
            f"{col(arm, 'eval_after', g)} / {col(arm, 'eval_after', p)} | "
            f"{col(arm, 'consistency_after_sft')} -> {col(arm, 'consistency')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "stage_experiments")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--grpo-steps", type=int, default=30)
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 0.8, 1.0])
    args = ap.parse_args()
    results = {}
    for seed in args.seeds:
        print(f"seed {seed}")
        results[seed] = arm_results(args.out.resolve(), seed, args.grpo_steps, args.alphas)
        (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(table(results, args.alphas))


if __name__ == "__main__":
    main()
