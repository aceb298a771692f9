"""Measure server mode on this machine: weight-sync time and receipt delta, and RL step time of
``rollout.mode=server`` against the colocated in-process vLLM engine.

For each model it starts ``rlvr serve MODEL`` (gloo weight transfer on CPU) in a subprocess,
then

1. sync: ``--repeats`` times, perturb every trainer weight (+ N(0, 0.02^2)), time
   ``VLLMServerEngine.update_weights`` (liveness check, pause, gloo transfer of the full state
   dict, version-tagged finish, resume, receipt) and record the receipt's max |delta log-prob|;
2. step time (quickstart model only, ``--steps`` RL steps of recipes/quickstart.yaml, shrunk):
   the same recipe with ``rollout.mode=server`` and with ``rollout.engine=vllm`` colocated;
   the mean ``time/step`` over steps 2.. (step 1 includes warm-up).

Usage:  python scripts/bench_sync.py [--out bench_sync.json] [--big] [--repeats 5] [--steps 5]
``--big`` adds a ~50 MB model (``rlvr tiny-model --hidden-size 512 --layers 8``).
Every server started here is killed at the end. CPU figures vary +-2x on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, log_path: Path, max_len: int) -> tuple[subprocess.Popen, str, float]:
    import requests

    from rlvr.serve import server_command

    port = free_port()
    cmd, env = server_command(str(model), port=port, max_model_len=max_len)
    env["OMP_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    with open(log_path, "w") as f:
        proc = subprocess.Popen(
            cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except requests.RequestException:
            pass
        if time.perf_counter() - t0 > 900:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError("server not up in 900 s")
        time.sleep(1)


def bench_sync(model_dir: Path, url: str, repeats: int) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.rollout.receipt import build_probe, trainer_logprobs
    from rlvr.rollout.server import VLLMServerEngine

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    engine = VLLMServerEngine([url], tokenizer=tok, timeout_s=300, max_model_len=256)
    try:
        engine.attach_probe(
            build_probe([tok.encode("What is 12+34? <think>64</think>\\boxed{46}")]),
            lambda ids: trainer_logprobs(model, ids),
        )
        t0 = time.perf_counter()
        start_delta = engine.check_start()
        start_s = time.perf_counter() - t0
        times, deltas = [], []
        for _ in range(repeats + 1):  # the first sync also opens the gloo group
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.02 * torch.randn_like(p))
            t0 = time.perf_counter()
            engine.update_weights(model.state_dict().items())
            times.append(time.perf_counter() - t0)
            deltas.append(engine.sync_metrics()["sync/receipt_max_abs"])
        t0 = time.perf_counter()
        engine.receipts(what="bench", version=None)
        receipt_s = time.perf_counter() - t0
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        engine.attach_probe(engine.probe, lambda ids: trainer_logprobs(base, ids))
        engine.update_weights(base.state_dict().items())  # a later run's step-0 gate passes
    finally:
        engine.close()
    mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
    return {
        "state_dict_mb": round(mb, 1),
        "params": sum(p.numel() for p in model.parameters()),
        "step0_probe_delta": start_delta,
        "step0_gate_s": start_s,
        "first_sync_s": times[0],
        "sync_s": times[1:],
        "sync_s_median": statistics.median(times[1:]),
        "receipt_only_s": receipt_s,
        "receipt_max_abs": max(deltas),
    }


def step_times(url: str | None, out: Path, steps: int) -> dict:
    from rlvr.config import load_recipe
    from rlvr.metrics import read_metrics
    from rlvr.trainer import train_recipe

    over = [
        f"model.path={REPO / 'models' / 'quickstart'}",
        f"output_dir={out}",
        f"train.steps={steps}",
        "train.prompts_per_step=8",
        "train.threads=1",
        "rollout.max_model_len=256",
        "eval.before=false",
        "eval.after=false",
        "checkpoint.save_final=false",
        "logging.plots=false",
        "logging.tensorboard=false",
        "logging.progress=false",
        "overwrite=true",
    ]
    if url:
        over += ["rollout.mode=server", f"rollout.server.urls=[{url}]", "name=bench_server"]
    else:
        over += ["rollout.engine=vllm", "name=bench_colocate"]
    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml", over)
    train_recipe(recipe)
    rows = read_metrics(recipe.run_dir / "metrics.jsonl")
    later = rows[1:]
    return {
        "step_s_mean": statistics.mean(r["time/step"] for r in later),
        "generate_s_mean": statistics.mean(r["time/generate"] for r in later),
        "train_s_mean": statistics.mean(r["time/train"] for r in later),
        "sync_s_mean": statistics.mean(r["time/sync"] for r in later),
        "receipt_max_abs": max((r.get("sync/receipt_max_abs", 0.0) for r in rows), default=0.0),
        "logprob_mismatch_max": max(r["logprob_mismatch"] for r in rows),
        "steps": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench_sync.json")
    parser.add_argument("--big", action="store_true", help="also a ~50 MB model")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--no-steps", action="store_true", help="sync figures only")
    parser.add_argument(
        "--steps-only",
        type=int,
        default=0,
        metavar="R",
        help="step times only: R rounds of (server run, colocated run) interleaved, so a "
        "change of load on a shared machine hits both modes alike",
    )
    args = parser.parse_args()
    if args.steps_only:
        return interleaved_steps(args)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_sync_"))
    models = {"quickstart": REPO / "models" / "quickstart"}
    if args.big:
        from rlvr.data.tiny import build_tiny_model

        models["tiny_512x8"] = build_tiny_model(tmp / "big", seed=0, hidden_size=512, num_layers=8)
    results: dict = {"machine": f"{os.cpu_count()} CPU cores (shared)", "models": {}}
    for name, path in models.items():
        proc, url, up_s = start_server(path, tmp / f"{name}.log", 256)
        try:
            entry = {"server_start_s": up_s, **bench_sync(path, url, args.repeats)}
            if name == "quickstart" and not args.no_steps:
                entry["server_mode"] = step_times(url, tmp / "runs", args.steps)
            results["models"][name] = entry
            print(json.dumps({name: entry}, indent=1), flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    if not args.no_steps:  # colocated, after the server is gone (same cores for both)
        results["models"]["quickstart"]["colocate_vllm"] = step_times(
            None, tmp / "runs", args.steps
        )
        print(json.dumps(results["models"]["quickstart"]["colocate_vllm"], indent=1))
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of one process group."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ...
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def restore_base(model_dir: Path, url: str) -> None:
    """Sync the model's own weights back to the server (a finished run leaves its last ones)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.rollout.receipt import build_probe, trainer_logprobs
    from rlvr.rollout.server import VLLMServerEngine

    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    engine = VLLMServerEngine([url], tokenizer=tok, timeout_s=300, max_model_len=256)
    try:
        engine.attach_probe(
            build_probe([tok.encode("12+34=46")]), lambda ids: trainer_logprobs(base, ids)
        )
        engine.update_weights(base.state_dict().items())
    finally:
        engine.close()


def interleaved_steps(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_steps_"))
    model = REPO / "models" / "quickstart"
    proc, url, up_s = start_server(model, tmp / "server.log", 256)
    rounds = []
    try:
        for i in range(args.steps_only):
            cpu0, t0 = group_cpu_s(proc.pid), time.perf_counter()
            server = step_times(url, tmp / f"runs{i}", args.steps)
            server["server_cpu_s"] = group_cpu_s(proc.pid) - cpu0
            server["wall_s"] = time.perf_counter() - t0
            restore_base(model, url)  # else the next run's step-0 gate refuses the server
            cpu0, t0 = group_cpu_s(proc.pid), time.perf_counter()
            colocate = step_times(None, tmp / f"runs{i}", args.steps)
            colocate["idle_server_cpu_s"] = group_cpu_s(proc.pid) - cpu0
            colocate["wall_s"] = time.perf_counter() - t0
            rounds.append({"server_mode": server, "colocate_vllm": colocate})
            print(json.dumps(rounds[-1], indent=1), flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    result = {"machine": f"{os.cpu_count()} CPU cores (shared)", "server_start_s": up_s}
    result["rounds"] = rounds
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
