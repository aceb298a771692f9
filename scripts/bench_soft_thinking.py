"""Rollout throughput: the soft-thinking engine vs the discrete transformers engine, same batch.

Both engines generate the same prompts (the arithmetic task's first ``--prompts`` training
prompts, ``--n`` samples each, same sampling settings and seed) on the same in-memory model;
the calls alternate ``--repeats`` times so background load hits both alike, and the median
seconds per call are reported with tokens/s (generated tokens / seconds inside ``generate``)
and the ratio soft / discrete. Offline, CPU by default::

    python scripts/bench_soft_thinking.py                       # models/quickstart
    python scripts/bench_soft_thinking.py --model PATH --prompts 64 --n 8 --max-tokens 256

Writes ``<out>/soft_throughput.json`` and prints one line per engine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="models/quickstart")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument(
        "--think",
        action="store_true",
        help="end every prompt with <think> so whole completions think (soft all the way for "
        "a random model that never closes it)",
    )
    p.add_argument("--out", default="runs/bench_soft")
    args = p.parse_args(argv)

    import torch

    from rlvr.config import ArithmeticConfig, DataConfig
    from rlvr.data import PromptFormatter, load_examples
    from rlvr.rollout import HFEngine, SamplingParams, SoftThinkingEngine, SoftThinkingParams

    torch.set_num_threads(args.threads)
    discrete = HFEngine.from_pretrained(args.model)
    soft = SoftThinkingEngine(discrete.model, discrete.tokenizer, SoftThinkingParams())
    data = DataConfig(arithmetic=ArithmeticConfig(num_train=max(args.prompts, 1), num_eval=1))
    train, _ = load_examples(data)
    fmt = PromptFormatter(discrete.tokenizer)
    prompts = [fmt.token_ids(ex) for ex in train[: args.prompts]]
    if args.think:
        think = discrete.tokenizer.convert_tokens_to_ids("<think>")
        prompts = [p + [think] for p in prompts]
    sp = SamplingParams(
        n=args.n, temperature=1.0, top_p=0.95, top_k=5, max_tokens=args.max_tokens, seed=0
    )
    runs: dict[str, list[tuple[float, int, int]]] = {"hf": [], "soft": []}
    for _ in range(args.repeats):
        for name, engine in (("hf", discrete), ("soft", soft)):
            t0 = time.perf_counter()
            groups = engine.generate(prompts, sp)
            dt = time.perf_counter() - t0
            flat = [c for g in groups for c in g]
            soft_steps = sum(sum(c.soft.soft) for c in flat if c.soft is not None)
            runs[name].append((dt, sum(len(c.token_ids) for c in flat), soft_steps))
    result = {
        "model": args.model,
        "prompts": args.prompts,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "think": args.think,
        "load_average": os.getloadavg(),
    }
    for name, rows in runs.items():
        secs = statistics.median(r[0] for r in rows)
        tokens = rows[0][1]
        result[name] = {
            "median_seconds": secs,
            "tokens": tokens,
            "tokens_per_s": tokens / secs,
            "soft_steps": rows[0][2],
            "all_seconds": [r[0] for r in rows],
        }
        print(
            f"{name:5s} {secs:7.3f} s/call  {tokens:6d} tokens  {tokens / secs:8.1f} tok/s"
            + (f"  ({rows[0][2]} soft steps)" if name == "soft" else "")
        )
    ratio = result["soft"]["tokens_per_s"] / result["hf"]["tokens_per_s"]
    result["soft_over_hf_tokens_per_s"] = ratio
    print(f"soft / hf tokens/s: {ratio:.2f}  (load average {os.getloadavg()[0]:.2f})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soft_throughput.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
