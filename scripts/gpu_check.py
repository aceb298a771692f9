"""The CUDA-only checks, one step at a time, each writing its figures (run by scripts/gpu_check.sh).

    python scripts/gpu_check.py STEP --out DIR   # STEP: env | kernel | matmul | train | bench | sync

Every step writes ``DIR/<step>.json``: ``{"step", "status": "ok" | "skipped" | "failed",
"reason"?, ...figures}``. A step that needs CUDA (or vLLM, or server mode) and finds none is
``skipped`` with the reason, so the script is testable on a CPU machine.

* ``env``: Python, torch, CUDA, GPU name, triton / vllm versions.
* ``matmul``: an 8192^3 bf16 product, the achievable dense bf16 peak used as the bound below.
* ``kernel``: the fused log-prob + entropy kernel (Triton) against the naive materialising path
  and the chunked torch path at N=16384, d=896, V=151936, bf16 in / fp32 out: max |diff| of
  logp, entropy and both gradients against naive, forward+backward time (CUDA events, median of
  reps), peak memory above the inputs, and the fraction of the matmul bound
  6*N*d*V FLOPs / (time * peak) (forward logits 2NdV, backward recomputation 2NdV, the two
  gradient products 2NdV each: the kernel's 6NdV is counted against the measured peak and the
  GPU's dense bf16 spec).
* ``train``: a few GRPO steps of recipes/quickstart.yaml through ``python -m rlvr train`` with
  ``rollout.engine=vllm`` when vLLM imports (else ``hf``), and the same at a random
  Qwen2.5-0.5B-shaped model in bf16; reports step time by phase, rollout tokens/s and the
  ``logprob_mismatch`` distribution from metrics.jsonl.
* ``bench``: ``scripts/bench_step.py --scale 0.5b --device cuda`` (rlvr's best GRPO step
  against TRL's, alternating, on a random Qwen2.5-0.5B-shaped model, bf16 on both sides) under
  a timeout; ``bench.json`` holds its ratios and per-side figures, ``bench_step.json`` the raw
  output.
* ``sync``: server mode (``rlvr serve``) weight sync on one GPU, when the CLI has it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, no sparsity).
SPEC_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return None
    return str(getattr(mod, "__version__", "unknown"))


def step_env(out: Path) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "triton": _version("triton"),
        "vllm": _version("vllm"),
        "transformers": _version("transformers"),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info |= {
            "gpu": p.name,
            "gpu_memory_gib": round(p.total_memory / 2**30, 1),
            "sm_count": p.multi_processor_count,
            "cuda": torch.version.cuda,
        }
    return {"status": "ok", **info}


def _cuda_time(fn: Any, reps: int) -> list[float]:
    import torch

    times = []
    if not torch.cuda.is_available():  # --cpu-smoke: wall time
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return times
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return times


def step_matmul(out: Path) -> dict[str, Any]:
    if not _has_cuda():
        return {"status": "skipped", "reason": "no CUDA device"}
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    times = _cuda_time(lambda: a @ b, 10)
    tflops = 2 * n**3 / statistics.median(times) / 1e12
    return {"status": "ok", "n": n, "median_s": statistics.median(times), "tflops": tflops}


def step_kernel(out: Path, n: int, d: int, v: int, reps: int, smoke: bool) -> dict[str, Any]:
    if not _has_cuda() and not smoke:
        return {"status": "skipped", "reason": "no CUDA device"}
    if _version("triton") is None and not smoke:
        return {"status": "skipped", "reason": "triton not installed"}
    import torch

    dev = "cuda" if _has_cuda() else "cpu"

    from rlvr.kernels import logprob_entropy
    from rlvr.kernels.naive import naive_logprob_entropy

    g = torch.Generator(device=dev).manual_seed(0)
    hidden = torch.randn(n, d, device=dev, dtype=torch.bfloat16, generator=g)
    weight = (0.02 * torch.randn(v, d, device=dev, generator=g)).to(torch.bfloat16)
    targets = torch.randint(0, v, (n,), device=dev, generator=g)
    a = torch.randn(n, device=dev, generator=g)
    b = torch.randn(n, device=dev, generator=g)
    impls: dict[str, Any] = {"naive": naive_logprob_entropy}
    if dev == "cuda":
        impls["triton"] = lambda h, w, y: logprob_entropy(h, w, y, backend="triton")
    impls["torch_chunked"] = lambda h, w, y: logprob_entropy(h, w, y, backend="torch")
    mem = _Memory(dev)
    results: dict[str, Any] = {}
    outputs: dict[str, list[Any]] = {}
    for name, fn in impls.items():
        h = hidden.clone().requires_grad_(True)
        w = weight.clone().requires_grad_(True)

        def fwd_bwd(fn: Any = fn, h: Any = h, w: Any = w) -> Any:
            h.grad = w.grad = None
            logp, ent = fn(h, w, targets)
            (a * logp + b * ent).sum().backward()
            return logp, ent

        mem.reset()
        logp, ent = fwd_bwd()  # first call: compiles (Triton) and measures peak memory
        peak = mem.peak()
        outputs[name] = [logp.detach(), ent.detach(), h.grad.detach(), w.grad.detach()]
        times = _cuda_time(fwd_bwd, reps)
        results[name] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "peak_mem_gib": peak / 2**30,
            "logp_dtype": str(logp.dtype),
        }
        del h, w, logp, ent
    ref = outputs["naive"]
    for name in [k for k in impls if k != "naive"]:
        got = outputs[name]
        results[name]["max_abs_diff_vs_naive"] = {
            key: float((x.float() - y.float()).abs().max())
            for key, x, y in zip(
                ("logp", "entropy", "grad_hidden", "grad_weight"), got, ref, strict=True
            )
        }
        results[name]["time_ratio_vs_naive"] = (
            results[name]["median_s"] / results["naive"]["median_s"]
        )
        if results["naive"]["peak_mem_gib"] > 0:
            results[name]["memory_ratio_vs_naive"] = (
                results[name]["peak_mem_gib"] / results["naive"]["peak_mem_gib"]
            )
    flops = 6 * n * d * v
    matmul = _read(out / "matmul.json")
    gpu = torch.cuda.get_device_properties(0).name if dev == "cuda" else "cpu"
    spec = next((t for key, t in SPEC_BF16_TFLOPS.items() if key in gpu), None)
    for name in impls:
        achieved = flops / results[name]["median_s"] / 1e12
        results[name]["tflops"] = achieved
        if matmul.get("status") == "ok":
            results[name]["fraction_of_measured_matmul_peak"] = achieved / matmul["tflops"]
        if spec:
            results[name]["fraction_of_spec_bf16_peak"] = achieved / spec
    return {
        "status": "ok",
        "device": gpu,
        "shape": {"N": n, "d": d, "V": v},
        "flops": flops,
        **results,
    }


class _Memory:
    """Peak memory above a baseline: CUDA allocator stats, or (CPU smoke runs) nothing."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.base = 0

    def reset(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            self.base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int:
        import torch

        if self.device != "cuda":
            return 0
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - self.base


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _summarise_run(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {}
    keys = sorted({k for r in rows for k in r if k.startswith("time/") or "tokens_per_s" in k})
    summary: dict[str, Any] = {"steps": len(rows)}
    for key in keys:
        vals = [float(r[key]) for r in rows[1:] or rows if key in r]
        if vals:
            summary[key + "_median"] = statistics.median(vals)
    mism = [float(r["logprob_mismatch"]) for r in rows if "logprob_mismatch" in r]
    if mism:
        summary["logprob_mismatch"] = {
            "min": min(mism),
            "median": statistics.median(mism),
            "max": max(mism),
        }
    return summary


def _train(run_dir: Path, overrides: list[str], timeout: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "rlvr", "train", str(REPO / "recipes/quickstart.yaml"), *overrides]
    cmd += [f"output_dir={run_dir.parent}", f"name={run_dir.name}", "resume=false"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    result: dict[str, Any] = {"cmd": " ".join(cmd[2:]), "rc": proc.returncode}
    result["wall_s"] = time.perf_counter() - t0
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr[-2000:]
    result |= _summarise_run(_metrics(run_dir))
    return result


def _build_qwen05b_shape(out: Path) -> None:
    """A random model with Qwen2.5-0.5B's shape (d 896, 24 layers, 14/2 heads, V 151936) and
    rlvr's offline byte-level tokenizer (no hub on the GPU machine)."""
    import torch
    from transformers import Qwen2ForCausalLM

    from rlvr.data.tiny import build_tokenizer, tiny_config

    tok = build_tokenizer()
    config = tiny_config(
        151936,
        hidden_size=896,
        num_layers=24,
        num_heads=14,
        num_kv_heads=2,
        intermediate_size=4864,
        max_position_embeddings=4096,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def step_train(out: Path, steps: int, timeout: int, smoke: bool) -> dict[str, Any]:
    if not _has_cuda() and not smoke:
        return {"status": "skipped", "reason": "no CUDA device"}
    engine = "vllm" if _version("vllm") and not smoke else "hf"
    results: dict[str, Any] = {"engine": engine}
    if engine == "hf" and not smoke:
        results["note"] = "vllm not installed on this machine: HF rollouts instead"
    base = [
        f"train.steps={steps}",
        f"rollout.engine={engine}",
        "eval.before=false",
        "eval.after=false",
        "logging.progress=false",
    ]
    results["quickstart"] = _train(out / "run_quickstart", base, timeout)
    if smoke:  # CPU: the command line and the metrics parsing, not the 0.5B model
        return {"status": "ok" if results["quickstart"]["rc"] == 0 else "failed", **results}
    big = out / "qwen05b_shape"
    if not (big / "config.json").is_file():
        _build_qwen05b_shape(big)
    results["qwen05b_shape_bf16"] = _train(
        out / "run_qwen05b", [*base, f"model.path={big}", "model.dtype=bfloat16"], timeout
    )
    ok = all(r.get("rc", 0) == 0 for r in results.values() if isinstance(r, dict))
    return {"status": "ok" if ok else "failed", **results}


DIST_STRATEGIES = {
    "fsdp2": ["train.strategy=fsdp2"],
    "zero2": ["train.strategy=deepspeed", "train.zero_stage=2"],
}


def step_dist(out: Path, steps: int, timeout: int) -> dict[str, Any]:
    """train.strategy=fsdp2 and (deepspeed installed) ZeRO-2 on the GPU (torchrun, one rank:
    the cpu:gloo,cuda:nccl group; fsdp2: DTensor shards on CUDA, the registered log-prob
    forward, the gathered sync; ZeRO-2: DeepSpeed's CUDA accelerator, its partitioned AdamW)
    against a plain process on the same recipe and seed: the same losses and gradient norms."""
    if not _has_cuda():
        return {"status": "skipped", "reason": "no CUDA device"}
    base = [
        f"train.steps={steps}",
        "rollout.engine=hf",
        "eval.before=false",
        "eval.after=false",
        "logging.progress=false",
        "checkpoint.save_final=false",
    ]
    plain = _train(out / "run_plain", base, timeout)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    a = _metrics(out / "run_plain")
    result: dict[str, Any] = {"plain": plain}
    ok = plain.get("rc") == 0 and len(a) == steps
    for name, overrides in DIST_STRATEGIES.items():
        if name == "zero2" and importlib.util.find_spec("deepspeed") is None:
            result[name] = {"status": "skipped", "reason": "deepspeed is not installed"}
            continue
        run_dir = out / f"run_{name}"
        cmd = [*launcher, "--nproc_per_node=1", "-m", "rlvr", "train"]
        cmd += [str(REPO / "recipes/quickstart.yaml"), *base, *overrides]
        cmd += [f"output_dir={run_dir.parent}", f"name={run_dir.name}", "resume=false"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        side: dict[str, Any] = {"rc": proc.returncode}
        if proc.returncode != 0:
            side["stderr_tail"] = proc.stderr[-2000:]
        b = _metrics(run_dir)
        compared = {}
        for key in ("loss", "grad_norm", "reward/mean", "kl"):
            pairs = [(x[key], y[key]) for x, y in zip(a, b, strict=False) if key in x and key in y]
            if pairs:
                compared[key] = max(abs(x - y) / max(abs(x), 1e-8) for x, y in pairs)
        side["max_rel_diff"] = compared
        side_ok = proc.returncode == 0 and len(b) == steps
        side["status"] = "ok" if side_ok and all(v <= 1e-3 for v in compared.values()) else "failed"
        ok = ok and side["status"] == "ok"
        result[name] = side
    # the fsdp2 side's differences stay at the top level (the figures recorded so far)
    result["max_rel_diff"] = result["fsdp2"].get("max_rel_diff", {})
    return {"status": "ok" if ok else "failed", **result}


BENCH_SIDE_KEYS = (
    "median_step_s",
    "min_step_s",
    "max_step_s",
    "steps_s",
    "warmup_s",
    "cuda_step_peak_mib",
    "cuda_before_step_mib",
    "cuda_step_increment_mib",
    "cuda_reserved_peak_mib",
    "step_peak_mib",
    "length_mean",
    "zero_adv_fraction",
    "skipped_rows",
)


def bench_command(out: Path, reps: int, sides: str) -> list[str]:
    """The bench step's bench_step.py command line (0.5B shape, both sides on the GPU)."""
    return [
        sys.executable,
        str(REPO / "scripts" / "bench_step.py"),
        "--scale",
        "0.5b",
        "--device",
        "cuda",
        "--sides",
        sides,
        "--reps",
        str(reps),
        "--warmup",
        "1",
        "--reward-workers",
        "1",
        "--json",
        str(out / "bench_step.json"),
    ]


def step_bench(out: Path, reps: int, timeout: int, sides: str) -> dict[str, Any]:
    if not _has_cuda():
        return {"status": "skipped", "reason": "no CUDA device"}
    cmd = bench_command(out, reps, sides)
    raw, log = out / "bench_step.json", out / "bench_step.log"
    raw.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:  # its own session: a timeout ends its worker processes too
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    result: dict[str, Any] = {
        "cmd": " ".join(cmd[1:]),
        "rc": rc,
        "wall_s": time.perf_counter() - t0,
    }
    tail = log.read_text(errors="replace")[-3000:]
    if rc is None:
        reason = f"bench_step.py timed out after {timeout}s"
        return {"status": "failed", "reason": reason, **result, "tail": tail}
    data = _read(raw)
    if rc != 0 or not data:
        return {"status": "failed", "reason": "bench_step.py failed", **result, "tail": tail}
    summary = data.get("summary", {})
    result |= {
        "step_ratio": data.get("step_ratio"),
        "memory_ratio": data.get("memory_ratio"),
        "memory_basis": summary.get("memory_basis"),
        "ratio_side": summary.get("ratio_side"),
        "ratios_vs_trl": summary.get("ratios_vs_trl"),
        "config": summary.get("config"),
        "setup_s": summary.get("setup_s"),
    }
    for side in summary.get("sides", []):
        result[side] = {k: summary[side][k] for k in BENCH_SIDE_KEYS if k in summary[side]}
    return {"status": "ok", **result}


def step_sync(out: Path) -> dict[str, Any]:
    if not _has_cuda():
        return {"status": "skipped", "reason": "no CUDA device"}
    if _version("vllm") is None:
        return {"status": "skipped", "reason": "vllm not installed on this machine"}
    help_text = subprocess.run(
        [sys.executable, "-m", "rlvr", "--help"], capture_output=True, text=True, check=False
    ).stdout
    if " serve" not in help_text:
        return {"status": "skipped", "reason": "this rlvr has no server mode (`rlvr serve`)"}
    script = REPO / "scripts" / "bench_sync.py"
    if not script.is_file():
        return {"status": "skipped", "reason": "scripts/bench_sync.py not present"}
    proc = subprocess.run(
        [sys.executable, str(script), "--backend", "ipc", "--json", str(out / "sync_raw.json")],
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    return {
        "status": "ok" if proc.returncode == 0 else "failed",
        "rc": proc.returncode,
        "tail": proc.stdout[-1500:] + proc.stderr[-1500:],
        **_read(out / "sync_raw.json"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("step", choices=["env", "matmul", "kernel", "train", "bench", "dist", "sync"])
    p.add_argument("--out", type=Path, required=True, help="directory for <step>.json")
    p.add_argument("--shape", default="16384x896x151936", help="kernel N x d x V")
    p.add_argument(
        "--reps",
        type=int,
        default=5,
        help="timed kernel repetitions; bench: measured steps per side",
    )
    p.add_argument("--steps", type=int, default=4, help="GRPO steps per training check")
    p.add_argument(
        "--timeout", type=int, default=240, help="seconds per training run / the bench run"
    )
    p.add_argument(
        "--sides", default="rlvr_best,trl", help="bench: bench_step.py --sides (with trl)"
    )
    p.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="run the kernel and train steps on CPU at a small size (tests the script itself)",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        if args.step == "env":
            result = step_env(args.out)
        elif args.step == "matmul":
            result = step_matmul(args.out)
        elif args.step == "kernel":
            n, d, v = (int(x) for x in args.shape.lower().split("x"))
            result = step_kernel(args.out, n, d, v, args.reps, args.cpu_smoke)
        elif args.step == "train":
            result = step_train(args.out, args.steps, args.timeout, args.cpu_smoke)
        elif args.step == "bench":
            result = step_bench(args.out, args.reps, args.timeout, args.sides)
        elif args.step == "dist":
            result = step_dist(args.out, args.steps, args.timeout)
        else:
            result = step_sync(args.out)
    except Exception as exc:  # noqa: BLE001 - a failed step is recorded, the script goes on
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    result = {"step": args.step, **result, "step_wall_s": time.perf_counter() - t0}
    (args.out / f"{args.step}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("step", "status") if k in result}
            | ({"reason": result["reason"]} if "reason" in result else {})
        )
    )
    return 0 if result["status"] in ("ok", "skipped") else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
