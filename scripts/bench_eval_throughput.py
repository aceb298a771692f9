"""Generation throughput of the eval harness: vLLM vs transformers.generate, same model, one run.

Both engines evaluate the same suite with the same settings through ``eval.runner.run_eval``;
throughput is generated tokens / seconds spent inside ``engine.generate`` (engine start-up and
scoring excluded, reported separately).  Both engines are started first and then alternate
``--repeats`` times, so background load on a shared machine hits both alike; the median is
reported.  ``--engines`` picks them (default ``vllm,hf``; ``--backends``, its old name, is still
read with a deprecation warning).  By default a tiny random Qwen2 model is built with
``rlvr.data.tiny`` and the arithmetic suite is used, so the script runs offline on CPU::

    python scripts/bench_eval_throughput.py                      # tiny model, arithmetic
    python scripts/bench_eval_throughput.py --model PATH --suite math500 --limit 50 --n 4 \\
        --max-tokens 1024

Writes ``<out>/throughput.json`` and prints a table.  A random model rarely emits EOS, so
most samples run to ``--max-tokens``; the report includes the mean completion length.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _run_once(name: str, engine: Any, args: argparse.Namespace, model: str, out: Path) -> dict:
    from eval.runner import EvalSettings, run_eval

    settings = EvalSettings(
        model=model,
        suites=[args.suite],
        out=str(out / name),
        engine=name,
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        data_dir=args.data_dir,
        limit=args.limit,
        seed=args.seed,
        dtype=args.dtype,
        chunk_size=args.chunk_size,
        overwrite=True,
        score_workers=1,
    )
    summary = run_eval(settings, engine=engine, progress=False, log=lambda m: None)
    s = summary["suites"][args.suite]
    t = s["timing"]
    return {
        "generate_s": t["generate_seconds"],
        "generated_tokens": t["generated_tokens"],
        "samples": t["generated_samples"],
        "tokens_per_s": t["tokens_per_second"],
        "mean_completion_tokens": s["metrics"]["mean_tokens"],
        "truncation_rate": s["metrics"]["truncation_rate"],
    }


def _bench(
    names: list[str], args: argparse.Namespace, model: str, out: Path
) -> list[dict[str, Any]]:
    """Start every engine, then alternate them ``repeats`` times (fair under load)."""
    import statistics

    from rlvr.rollout import build_engine

    engines: dict[str, Any] = {}
    startup: dict[str, float] = {}
    runs: dict[str, list[dict[str, Any]]] = {b: [] for b in names}
    try:
        for b in names:
            t0 = time.perf_counter()
            engines[b] = build_engine(b, model, dtype=args.dtype, seed=args.seed)
            startup[b] = time.perf_counter() - t0
        for _ in range(args.repeats):
            for b in names:
                runs[b].append(_run_once(b, engines[b], args, model, out))
    finally:
        for e in engines.values():
            e.close()
    results = []
    for b in names:
        tps = [r["tokens_per_s"] for r in runs[b]]
        results.append(
            {
                "engine": b,
                "engine_startup_s": startup[b],
                "tokens_per_s": statistics.median(tps),
                "tokens_per_s_runs": tps,
                **{
                    k: runs[b][-1][k]
                    for k in (
                        "generated_tokens",
                        "samples",
                        "mean_completion_tokens",
                        "truncation_rate",
                    )
                },
                "generate_s_runs": [r["generate_s"] for r in runs[b]],
            }
        )
    return results


def _engine_names(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The engines of ``--engines`` (or ``--backends``, its deprecated name; both given must
    agree)."""
    text = args.engines
    if args.backends is not None:
        if text is not None and text != args.backends:
            p.error(
                f"--engines {text} and --backends {args.backends} disagree: pass --engines only "
                "(--backends is its deprecated name)"
            )
        text = args.backends
        logging.getLogger("rlvr").warning("--backends is deprecated: use --engines (same values)")
    names = [b.strip() for b in (text or "vllm,hf").split(",") if b.strip()]
    if not names:
        p.error("--engines: name at least one engine (vllm, hf)")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model dir (default: build a tiny model)")
    p.add_argument("--suite", default="arithmetic")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=None, help="problems per generate call")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engines", default=None, help="comma-separated (default: vllm,hf)")
    # the old name of --engines: accepted with a deprecation warning, hidden from --help
    p.add_argument("--backends", default=None, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per engine")
    p.add_argument("--tiny-hidden", type=int, default=128, help="hidden size of the tiny model")
    p.add_argument("--tiny-layers", type=int, default=4, help="layers of the tiny model")
    p.add_argument("--out", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    engines = _engine_names(p, args)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

    out = Path(args.out or tempfile.mkdtemp(prefix="rlvr_bench_eval_"))
    out.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        from rlvr.data.tiny import build_tiny_model

        shape: dict[str, int] = {"num_layers": args.tiny_layers}
        if args.tiny_hidden != 128:  # head_dim 64 (vLLM CPU needs 32 or 64)
            shape.update(
                hidden_size=args.tiny_hidden,
                num_heads=max(1, args.tiny_hidden // 64),
                num_kv_heads=max(1, args.tiny_hidden // 128),
                intermediate_size=4 * args.tiny_hidden,
            )
        model = str(build_tiny_model(out / "tiny_model", **shape))
    results = _bench(engines, args, model, out)
    import torch

    report = {
        "model": model,
        "suite": args.suite,
        "problems": args.limit,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "temperature": args.temperature,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(),
        "results": results,
    }
    by = {r["engine"]: r for r in results}
    if "vllm" in by and "hf" in by and by["hf"]["tokens_per_s"]:
        report["vllm_over_hf"] = by["vllm"]["tokens_per_s"] / by["hf"]["tokens_per_s"]
    (out / "throughput.json").write_text(json.dumps(report, indent=2))
    print(
        f"model {model}, suite {args.suite}: {args.limit} problems x n={args.n}, "
        f"max_tokens={args.max_tokens}, {report['device']}"
    )
    print(
        f"{'engine':8} {'startup s':>10} {'tokens':>8} {'median tok/s':>13} {'mean len':>9} "
        f"{'trunc':>6}  tok/s per run"
    )
    for r in results:
        runs = ", ".join(f"{v:.0f}" for v in r["tokens_per_s_runs"])
        print(
            f"{r['engine']:8} {r['engine_startup_s']:10.1f} {r['generated_tokens']:8d} "
            f"{r['tokens_per_s']:13.1f} {r['mean_completion_tokens']:9.1f} "
            f"{r['truncation_rate']:6.2f}  [{runs}]"
        )
    if "vllm_over_hf" in report:
        print(f"vLLM / HF throughput: {report['vllm_over_hf']:.2f}x")
    print(f"written {out / 'throughput.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
