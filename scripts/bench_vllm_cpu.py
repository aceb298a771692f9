"""vLLM CPU settings: generation time and memory per thread binding and KV-cache size, one run.

Each configuration is a worker process with its own environment (``VLLM_CPU_OMP_THREADS_BIND``,
``VLLM_CPU_KVCACHE_SPACE`` in GiB, read when vLLM starts), holding one rlvr ``VLLMEngine`` on
the same model. All workers start first; then the measured ``generate`` calls alternate between
them ``--reps`` times (the order flips each repetition), so background load hits all alike.
Reported per configuration: median generate time, the ratio to the first configuration in the
same repetition (median, min, max), torch's thread count inside the worker, RSS after start-up,
start-up time, and the load average before and after.

    python scripts/bench_vllm_cpu.py                      # models/quickstart, batch 256, 24 tokens
    python scripts/bench_vllm_cpu.py --configs auto:1,0:1,nobind:1,auto:4

A configuration is ``BIND:KV_GIB[:THREADS]``: BIND is ``auto`` (vLLM binds one OpenMP thread per
core of its NUMA node), ``nobind`` (torch's default threads, unbound) or a core list such as
``0`` or ``0-1``; THREADS, when given, is ``torch.set_num_threads`` after the engine starts (the
engine runs in the worker's process, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, as in rlvr).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(args: argparse.Namespace) -> None:
    """Start the engine, report, then generate once per line read from stdin."""
    import torch
    from transformers import AutoTokenizer

    from rlvr.data import PromptFormatter, arithmetic_examples
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.vllm_engine import VLLMEngine

    t0 = time.perf_counter()
    engine = VLLMEngine(args.model, dtype="float32", seed=0, max_model_len=512,
                        kv_cache_gib=int(os.environ["VLLM_CPU_KVCACHE_SPACE"]))  # fmt: skip
    startup = time.perf_counter() - t0
    if args.threads:  # the engine runs in this process: its forward passes use these threads
        torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model)
    train, _ = arithmetic_examples(
        digits=2, operations=("+",), num_train=args.prompts, num_eval=10, seed=1234
    )
    formatter = PromptFormatter(tok)
    prompts = [formatter.token_ids(e) for e in train[: args.prompts]]
    sp = SamplingParams(n=args.n, temperature=1.0, max_tokens=args.max_tokens, seed=0)
    engine.generate(prompts, sp)  # warm-up
    print(json.dumps({"ready": True, "startup_s": startup, "rss_mib": _rss_mib(),
                      "threads": torch.get_num_threads()}), flush=True)  # fmt: skip
    for _ in sys.stdin:
        t = time.perf_counter()
        out = engine.generate(prompts, sp)
        dt = time.perf_counter() - t
        tokens = sum(len(c.token_ids) for g in out for c in g)
        print(json.dumps({"s": dt, "tokens": tokens}), flush=True)
    engine.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "quickstart"))
    p.add_argument("--configs", default="auto:1,0:1,nobind:1,0:4", help="BIND:KV_GIB list")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    procs: dict[str, subprocess.Popen] = {}
    ready: dict[str, dict] = {}
    for cfg in configs:
        bind, _, rest = cfg.partition(":")
        kv, _, threads = rest.partition(":")
        env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND=bind, VLLM_CPU_KVCACHE_SPACE=kv or "1")
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, __file__, "--worker", "--model", args.model,
               "--prompts", str(args.prompts), "--n", str(args.n),
               "--max-tokens", str(args.max_tokens), "--threads", threads or "0"]  # fmt: skip
        procs[cfg] = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready[cfg] = _read(procs[cfg], cfg)  # one at a time: start-ups do not overlap
    load_before = [round(x, 2) for x in os.getloadavg()]
    times: dict[str, list[float]] = {c: [] for c in configs}
    for rep in range(args.reps):
        for cfg in configs if rep % 2 == 0 else configs[::-1]:
            assert procs[cfg].stdin is not None
            procs[cfg].stdin.write("go\n")
            procs[cfg].stdin.flush()
            times[cfg].append(_read(procs[cfg], cfg)["s"])
    load_after = [round(x, 2) for x in os.getloadavg()]
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=120)
    base = configs[0]
    result: dict = {"load_before": load_before, "load_after": load_after, "reps": args.reps,
                    "batch": args.prompts * args.n, "max_tokens": args.max_tokens,
                    "model": args.model, "configs": {}}  # fmt: skip
    print(f"batch {result['batch']}, {args.max_tokens} tokens, {args.reps} reps, "
          f"load {load_before} -> {load_after}")  # fmt: skip
    for cfg in configs:
        r = sorted(b / a for a, b in zip(times[base], times[cfg], strict=True))
        entry = {**ready[cfg], "median_s": statistics.median(times[cfg]), "times_s": times[cfg],
                 "ratio_to_first": {"median": statistics.median(r), "min": r[0], "max": r[-1]}}  # fmt: skip
        entry.pop("ready", None)
        result["configs"][cfg] = entry
        print(f"  {cfg:10} threads {entry['threads']}  start {entry['startup_s']:.1f} s  "
              f"RSS {entry['rss_mib']:.0f} MiB  median {entry['median_s']:.3f} s  "
              f"/first {statistics.median(r):.2f} ({r[0]:.2f}-{r[-1]:.2f})")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def _read(proc: subprocess.Popen, cfg: str) -> dict:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise SystemExit(f"config {cfg}: worker exited (rc {proc.wait()}) before reporting")


if __name__ == "__main__":
    main()
