"""Build the quickstart's bundled tiny reasoning model (models/quickstart/).

1. A random 4-layer, width-128 Qwen2 model with rlvr's offline byte-level tokenizer
   (ChatML template, <think> tags), seed 0.
2. SFT with rlvr's SFT stage (TRL SFTTrainer) on the seeded arithmetic task (2-digit
   addition): the target is ``<think>{digits of the sum, reversed}</think>\\boxed{sum}``.
3. Training stops at the first evaluation where greedy held-out accuracy reaches
   ``--stop-at`` (default 0.3), so the model is partly right and RL has room to improve it.

Usage:  python scripts/make_quickstart_model.py [--out models/quickstart] [--stop-at 0.3]
Takes a few minutes on 2 CPU cores; offline.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch

from rewards.math import math_reward
from rlvr.data.arithmetic import arithmetic_examples
from rlvr.data.prompts import PromptFormatter
from rlvr.data.tiny import build_tiny_model
from rlvr.rollout import HFEngine, SamplingParams
from rlvr.stages.sft import conversational_pairs, run_sft

TASK = {"digits": 2, "operations": ["+"], "num_train": 20000, "num_eval": 200, "seed": 1234}


def greedy_accuracy(model, tokenizer, examples: list[dict], max_tokens: int = 16) -> float:
    fmt = PromptFormatter(tokenizer)
    engine = HFEngine(model, tokenizer)
    groups = engine.generate(
        [fmt.token_ids(e) for e in examples],
        SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens),
    )
    return sum(
        math_reward(g[0].text, e["answer"]) for g, e in zip(groups, examples, strict=True)
    ) / len(examples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="models/quickstart")
    parser.add_argument("--stop-at", type=float, default=0.3)
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    train, held = arithmetic_examples(**TASK)
    probe = held[:100]
    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_model(Path(tmp) / "base", seed=0)
        report = run_sft(
            base,
            conversational_pairs(train),
            Path(tmp) / "sft",
            lr=args.lr,
            batch_size=128,
            max_steps=args.max_steps,
            seed=0,
            eval_fn=lambda m, t: greedy_accuracy(m, t, probe),
            eval_every=25,
            stop_at=args.stop_at,
        )
        out = Path(args.out)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for f in (Path(tmp) / "sft").iterdir():
            if f.is_file():
                shutil.copy2(f, out / f.name)
    (out / "training.json").write_text(
        json.dumps({"task": TASK, "stop_at": args.stop_at, "lr": args.lr, **report}, indent=1)
    )
    print(json.dumps(report["history"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
