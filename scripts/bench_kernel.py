"""Benchmark the fused log-prob + entropy kernel against the naive (materialising) path.

For each shape N x d x V and each implementation ("fused" = ``rlvr.kernels.logprob_entropy``,
"naive" = ``rlvr.kernels.naive_logprob_entropy``) a fresh child process builds the inputs,
resets its peak-RSS counter (``/proc/self/clear_refs``), runs forward + backward of
``sum(a * logp + b * entropy)`` (both outputs carry gradients) ``--reps`` times, and reports:

* peak memory: peak RSS of the child during its first forward + backward (after a tiny
  warm-up call that initialises thread pools) minus its RSS just before it (inputs
  hidden/weight/targets excluded; outputs and the [N, d] / [V, d] gradients included). On CUDA
  it reports ``torch.cuda.max_memory_allocated`` minus the allocation before the runs instead.
* time: best (and median) wall time of forward + backward over the reps, plus forward alone.

The parent prints both arms side by side with the fused/naive ratios, and a consistency check
(sums of logp, entropy and gradient norms of the two arms). Example::

    python scripts/bench_kernel.py                       # the two default CPU shapes
    python scripts/bench_kernel.py --shapes 16384x896x151936 --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(args: argparse.Namespace) -> None:
    import torch

    from rlvr.kernels import logprob_entropy, naive_logprob_entropy

    if args.threads:
        torch.set_num_threads(args.threads)
    n, d, v = args.shape
    dev = torch.device(args.device)
    dtype = getattr(torch, DTYPES[args.dtype])
    gen = torch.Generator().manual_seed(0)
    hidden = (torch.randn(n, d, generator=gen) / d**0.25).to(dev, dtype).requires_grad_()
    weight = (torch.randn(v, d, generator=gen) / d**0.25).to(dev, dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=gen).to(dev)
    a = torch.randn(n, generator=gen).to(dev)
    b = torch.randn(n, generator=gen).to(dev)
    kw = {}
    if args.impl == "fused":
        fn = logprob_entropy
        kw = {"vocab_chunk": args.vocab_chunk, "token_chunk": args.token_chunk}
    else:
        fn = naive_logprob_entropy

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # one-time runtime initialisation (BLAS/OpenMP pools, autograd worker) outside the measure
    wh = hidden.detach()[:64].clone().requires_grad_()
    ww = weight.detach()[:1024].clone().requires_grad_()
    wl, we = fn(wh, ww, targets[:64] % 1024, args.temperature)
    (wl.sum() + we.sum()).backward()
    del wh, ww, wl, we
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes("VmRSS")
        if not _reset_peak_rss():
            print("warning: cannot reset peak RSS; using ru_maxrss", file=sys.stderr)
    times, fwd_times, cpu_times = [], [], []
    peak = 0
    for rep in range(args.reps):
        hidden.grad = None
        weight.grad = None
        c0 = time.process_time()
        t0 = time.perf_counter()
        logp, ent = fn(hidden, weight, targets, args.temperature, **kw)
        sync()
        t1 = time.perf_counter()
        loss = (a * logp + b * ent).sum()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        cpu_times.append(time.process_time() - c0)
        fwd_times.append(t1 - t0)
        times.append(t2 - t0)
        del loss
        if rep == 0:  # peak of the first (post-warm-up) forward + backward
            if dev.type == "cuda":
                peak = torch.cuda.max_memory_allocated() - base
            else:
                import resource

                peak_rss = _rss_bytes("VmHWM")
                if peak_rss == 0:
                    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                peak = peak_rss - base
    out = {
        "impl": args.impl,
        "shape": [n, d, v],
        "peak_bytes": peak,
        "time_best": min(times),
        "time_median": statistics.median(times),
        "fwd_best": min(fwd_times),
        "cpu_best": min(cpu_times),
        "threads": torch.get_num_threads(),
        "check": {
            "logp_sum": logp.double().sum().item(),
            "ent_sum": ent.double().sum().item(),
            "grad_h_norm": hidden.grad.double().norm().item(),
            "grad_w_norm": weight.grad.double().norm().item(),
        },
    }
    print("RESULT " + json.dumps(out))


def run_child(argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"child failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def merge(results: list[dict]) -> dict:
    """Best time over all children of one arm; peak memory is the largest seen (worst case)."""
    out = dict(results[0])
    for key in ("time_best", "fwd_best", "cpu_best"):
        out[key] = min(r[key] for r in results)
    out["time_median"] = statistics.median(r["time_median"] for r in results)
    out["peak_bytes"] = max(r["peak_bytes"] for r in results)
    return out


def parse_shape(text: str) -> tuple[int, int, int]:
    n, d, v = (int(x) for x in text.lower().split("x"))
    return n, d, v


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--shapes", default="4096x256x65536,4096x256x151936", help="comma-separated NxdxV shapes"
    )
    p.add_argument("--impls", default="naive,fused")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--reps", type=int, default=2, help="fwd+bwd repetitions per child")
    p.add_argument("--rounds", type=int, default=2, help="children per arm, interleaved")
    p.add_argument("--threads", type=int, default=0, help="torch threads per child (0: default)")
    p.add_argument("--vocab-chunk", type=int, default=None)
    p.add_argument("--token-chunk", type=int, default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", default="fused", help=argparse.SUPPRESS)
    p.add_argument("--shape", type=parse_shape, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return

    common = [
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--reps",
        str(args.reps),
        "--temperature",
        str(args.temperature),
        "--threads",
        str(args.threads),
    ]
    if args.vocab_chunk:
        common += ["--vocab-chunk", str(args.vocab_chunk)]
    if args.token_chunk:
        common += ["--token-chunk", str(args.token_chunk)]
    impls = args.impls.split(",")
    gib = 1024**3
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"device={args.device} dtype={args.dtype} T={args.temperature} reps={args.reps} "
        f"rounds={args.rounds} threads={args.threads or 'default'} cpus={os.cpu_count()} "
        f"load1={load:.1f}\n(each child its own process; peak = child peak RSS over its "
        f"first fwd+bwd minus its RSS before it; times = best of all reps; cpu = process CPU seconds)"
    )
    for shape_text in args.shapes.split(","):
        n, d, v = parse_shape(shape_text)
        runs: dict[str, list[dict]] = {impl: [] for impl in impls}
        for _ in range(args.rounds):  # interleaved, so load from other processes hits both arms
            for impl in impls:
                runs[impl].append(run_child(["--impl", impl, "--shape", shape_text, *common]))
        res = {impl: merge(rs) for impl, rs in runs.items()}
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"\nN={n} d={d} V={v}  (6NdV = {6 * n * d * v / 1e9:.1f} GFLOP; "
            f"threads {res[impls[0]]['threads']}; load1 after: {load:.1f})"
        )
        print(
            f"  {'impl':6s} {'peak MiB':>10s} {'fwd+bwd s':>10s} {'median s':>9s} "
            f"{'fwd s':>7s} {'cpu s':>7s} {'GFLOP/s':>8s}"
        )
        for impl, r in res.items():
            print(
                f"  {impl:6s} {r['peak_bytes'] / 2**20:10.1f} {r['time_best']:10.3f} "
                f"{r['time_median']:9.3f} {r['fwd_best']:7.3f} {r['cpu_best']:7.2f} "
                f"{6 * n * d * v / r['time_best'] / 1e9:8.1f}"
            )
        if "fused" in res and "naive" in res:
            f, nv = res["fused"], res["naive"]
            print(
                f"  ratio fused/naive: peak memory {f['peak_bytes'] / nv['peak_bytes']:.4f} "
                f"({100 * f['peak_bytes'] / nv['peak_bytes']:.2f} %), "
                f"time {f['time_best'] / nv['time_best']:.3f}x wall, "
                f"{f['cpu_best'] / nv['cpu_best']:.3f}x cpu "
                f"(naive peak {nv['peak_bytes'] / gib:.2f} GiB)"
            )
            rel = {
                k: abs(f["check"][k] - nv["check"][k]) / max(abs(nv["check"][k]), 1e-12)
                for k in f["check"]
            }
            print(
                "  consistency (relative diff of sums/norms): "
                + ", ".join(f"{k}={val:.1e}" for k, val in rel.items())
            )


if __name__ == "__main__":
    main()
