"""Memory and update time per trainer strategy on CPU: one process; ddp, fsdp2 and DeepSpeed
ZeRO-1 / ZeRO-2 at N ranks.

    PYTHONPATH=. python scripts/bench_strategies.py [--model 30m|tiny | --model-dir DIR]
        [--nproc 2] [--no-kl] [--rows 16] [--micro-batch 4] [--updates 3]
        [--strategies single,ddp,fsdp2,zero1,zero2] [--malloc-trim] [--json OUT]

Each strategy runs in its own processes, started by this script: ``single`` as one plain
process (no process group), the others as ``torchrun --standalone --nproc_per_node N`` (gloo,
``OMP_NUM_THREADS=1``; ``train.strategy`` set to match: ``zero1`` / ``zero2`` are
``train.strategy=deepspeed`` with ``train.zero_stage`` 1 / 2, when deepspeed is installed). The
workers are this same file (``--worker``): rank 0 drives ``Learner.update`` on the fixed batch
(rlvr/distributed.py broadcasts it), the other ranks serve, as in tests/dist_learner_worker.py;
under fsdp2 and ZeRO the followers first receive rank 0's init message (the weights to load).

Per rank it records

    params_mib      parameter bytes this rank holds: the policy, plus the reference model when
                    KL is on (``algo.kl_coef > 0``); under fsdp2 the local shards
                    (``DTensor.to_local()``), elsewhere the whole tensors (tied weights once)
    gathered_mib    fsdp2: bytes of full (all-gathered) parameters still held when the
                    measured updates ended, on top of the shards: FSDP2 does not reshard a
                    root unit after forward (embeddings, final norm, tied lm_head), and the
                    reference model's forward has no backward to reshard it (the learner's
                    no-grad pass reshards, so 0 is expected); the script reshards
                    (``FSDPModule.reshard``) after reading this, before params_mib
    grads_mib       gradient bytes held by the optimizer's parameters when it steps (local
                    shards under fsdp2; under ZeRO the fp32 partition's gradient, DeepSpeed's
                    reduce buckets not counted: they show in RSS; the policy's gradients are
                    freed after the step, ``zero_grad(set_to_none)``)
    adam_mib        AdamW state bytes (exp_avg, exp_avg_sq, step; local shards under fsdp2,
                    this rank's partition under ZeRO)
    master_mib      ZeRO: the fp32 master copy of this rank's weight partition (0 elsewhere)
    rss_built_mib   resident memory right after the Learner was built
    build_peak_rss_mib  the largest resident memory up to then (VmHWM: imports, loading the
                    weights, sharding them)
    rss_trimmed_mib ``--malloc-trim`` only: resident memory right after the build once glibc's
                    ``malloc_trim(0)`` has returned the free heap pages to the OS (with the
                    flag the script trims again before every update, so rss_before_mib and
                    peak_rss_mib then leave out what malloc kept from earlier work)
    rss_before_mib  resident memory just before a measured update (the largest of them)
    peak_rss_mib    the largest resident memory during a measured update: VmHWM is reset
                    through /proc/self/clear_refs ("5") before each update and read after it
                    (the max over the measured updates; ``hwm_reset`` false: the kernel refused
                    the reset and the figure is the process's lifetime peak)
    warmup_peak_rss_mib  the same during the warm-up update (AdamW state created; under ddp
                    rank 0's learner state broadcast to the followers)
    update_s_median the median wall time of ``--updates`` ``Learner.update`` calls after one
                    warm-up call (rank 0's includes broadcasting the batch)

The batch is tests/dist_cases.py's at 16 rows (groups of 4, ragged completion lengths
2..14 after a 4-token prompt, one row with weight 0); ``--rows`` takes another multiple of 4.
Torch runs one thread per process (``torch.set_num_threads(1)``): a 2-rank run uses two
cores, one process one core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS: dict[str, dict[str, int]] = {
    "tiny": {},  # build_tiny_model's defaults: hidden 128, 4 layers
    "30m": {
        "hidden_size": 512,
        "num_layers": 8,
        "num_heads": 8,
        "num_kv_heads": 4,
        "intermediate_size": 2048,
    },
}
STRATEGIES = ("single", "ddp", "fsdp2", "zero1", "zero2")
PAD = 256
GROUP = 4
MIB = 2**20


# ---------------------------------------------------------------------- the worker


def fixed_batch(rows: int, seed: int = 0) -> Any:
    """tests/dist_cases.py's ``case_batch`` generalised to ``rows`` rows (equal at 16)."""
    import torch

    from rlvr.batch import TrainBatch

    gen = torch.Generator().manual_seed(seed)
    lengths = [2 + (5 * i) % 13 for i in range(rows)]
    prompt = 4
    width = prompt + max(lengths)
    ids = torch.full((rows, width), PAD, dtype=torch.long)
    attn = torch.zeros_like(ids)
    cmask = torch.zeros_like(ids)
    for i, lc in enumerate(lengths):
        ids[i, : prompt + lc] = torch.randint(0, 250, (prompt + lc,), generator=gen)
        attn[i, : prompt + lc] = 1
        cmask[i, prompt : prompt + lc] = 1
    rlp = -torch.rand((rows, width), generator=gen) * cmask
    adv = torch.randn(rows, generator=gen).unsqueeze(1).expand(rows, width - 1).clone()
    weights = torch.ones(rows)
    weights[5 % rows] = 0.0  # one row out of the loss (e.g. truncated)
    return TrainBatch(
        input_ids=ids,
        attention_mask=attn,
        completion_mask=cmask,
        rollout_logprobs=rlp,
        advantages=adv,
        sample_weights=weights,
        group_size=GROUP,
        correct=(torch.arange(rows) % 3 == 0).float(),
    )


def bench_recipe(model_dir: str, strategy: str, kl: bool, micro_batch: int) -> Any:
    from rlvr.config import Recipe

    train: dict[str, Any] = {"micro_batch_size": micro_batch, "lr": 1e-3, "weight_decay": 0.1}
    if strategy.startswith("zero"):
        train.update(strategy="deepspeed", zero_stage=int(strategy[-1]))
    elif strategy != "single":
        train["strategy"] = strategy
    return Recipe.model_validate(
        {
            "model": {"path": model_dir},
            "rollout": {"max_new_tokens": 16},
            "algo": {"kl_coef": 0.05 if kl else 0.0, "loss_aggregation": "token_mean"},
            "train": train,
        }
    )


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _malloc_trim() -> bool:
    """glibc ``malloc_trim(0)``: give the free heap memory back to the OS (False: no glibc)."""
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) >= 0)
    except (OSError, AttributeError):
        return False


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _local(t: Any) -> Any:
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def _nbytes(tensors: Any) -> int:
    return sum(_local(t).numel() * _local(t).element_size() for t in tensors)


def _gathered(model: Any) -> list[Any]:
    """The parameters of ``model`` that are not DTensors now (FSDP2: all-gathered units)."""
    from torch.distributed.tensor import DTensor

    return [p for p in model.parameters() if not isinstance(p, DTensor)]


def _reshard(models: list[Any]) -> None:
    from torch.distributed.fsdp import FSDPModule

    for m in models:
        for unit in m.modules():
            if isinstance(unit, FSDPModule):
                unit.reshard()


def worker(args: argparse.Namespace) -> None:
    import torch

    from rlvr.distributed import DistEnv, serve
    from rlvr.learner import Learner

    torch.set_num_threads(1)
    recipe = bench_recipe(args.model_dir, args.strategy, args.kl, args.micro_batch)
    dist = DistEnv.setup(recipe)
    rss_start = _status_kib("VmRSS")
    if dist.loads_together and not dist.is_driver:
        dist.receive()  # rank 0's learner names the weights to load: the same directory here
    torch.manual_seed(0)
    learner = Learner(recipe, pad_id=PAD, weights_path=args.model_dir, resumed=False)
    rss_built = _status_kib("VmRSS")
    build_peak = _status_kib("VmHWM")
    rss_trimmed = None
    if args.malloc_trim and _malloc_trim():
        rss_trimmed = _status_kib("VmRSS") / 1024

    grads: list[int] = []
    step = learner.optimizer.step

    def record_grads(*a: Any, **k: Any) -> Any:
        groups = learner.optimizer.param_groups  # ZeRO: the fp32 partitions it steps
        params = [p for g in groups for p in g["params"] if p.grad is not None]
        grads.append(_nbytes(p.grad for p in params))
        return step(*a, **k)

    learner.optimizer.step = record_grads  # type: ignore[method-assign]

    calls: list[dict[str, Any]] = []
    update = learner.update

    def measured(batch: Any) -> Any:
        if args.malloc_trim:
            _malloc_trim()
        reset = _reset_peak()  # VmHWM := RSS now; RSS read after it, so HWM read later >= it
        before = _status_kib("VmRSS")
        t0 = time.perf_counter()
        out = update(batch)
        seconds = time.perf_counter() - t0
        calls.append(
            {
                "s": seconds,
                "rss_before_kib": before,
                "hwm_kib": _status_kib("VmHWM"),
                "reset": reset,
            }
        )
        return out

    learner.update = measured  # type: ignore[method-assign]
    if dist.is_driver:
        batch = fixed_batch(args.rows)
        for _ in range(1 + args.updates):
            learner.update(batch)
        if dist.active:
            dist.send({"cmd": "stop"})
    else:
        serve(learner, dist)

    models = [learner.model] + ([] if learner.ref_model is None else [learner.ref_model])
    # FSDP2 leaves a root unit (embeddings, final norm, tied lm_head) whose forward ran without
    # a backward (the reference model) all-gathered: its parameters are plain full tensors
    # until resharded (the root's reshard_after_forward is False by default)
    gathered = [_gathered(m) if dist.sharded else [] for m in models]
    if dist.sharded:
        _reshard(models)  # parameters count as this rank's local shards
    policy = list(learner.model.parameters())
    ref = [] if learner.ref_model is None else list(learner.ref_model.parameters())
    adam = [t for s in learner.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    master = (
        [] if learner.engine is None else learner.engine.optimizer.single_partition_of_fp32_groups
    )
    timed = calls[1:]
    result = {
        "strategy": args.strategy,
        "rank": dist.rank,
        "world_size": dist.world_size,
        "kl": args.kl,
        "total_params": sum(p.numel() for p in policy),  # a DTensor: the whole tensor's
        "policy_params_mib": _nbytes(policy) / MIB,
        "ref_params_mib": _nbytes(ref) / MIB,
        "params_mib": (_nbytes(policy) + _nbytes(ref)) / MIB,
        "policy_tensors": len(policy),  # tied weights count once
        "ref_tensors": len(ref),
        "ref_params_whole_mib": sum(p.numel() * p.element_size() for p in ref) / MIB,
        # fsdp2: full tensors still all-gathered when the measured updates ended (on top of
        # the shards), policy and reference
        "policy_gathered_mib": _nbytes(gathered[0]) / MIB,
        "ref_gathered_mib": _nbytes(gathered[1]) / MIB if len(gathered) > 1 else 0.0,
        "gathered_mib": sum(_nbytes(g) for g in gathered) / MIB,
        "grads_mib": max(grads) / MIB,
        "adam_mib": _nbytes(adam) / MIB,
        "master_mib": _nbytes(master) / MIB,
        "rss_start_mib": rss_start / 1024,
        "rss_built_mib": rss_built / 1024,
        "build_peak_rss_mib": build_peak / 1024,
        "malloc_trim": args.malloc_trim,
        "rss_trimmed_mib": rss_trimmed,
        "rss_before_mib": max(c["rss_before_kib"] for c in timed) / 1024,
        "peak_rss_mib": max(c["hwm_kib"] for c in timed) / 1024,
        "warmup_peak_rss_mib": calls[0]["hwm_kib"] / 1024,
        "hwm_reset": all(c["reset"] for c in calls),
        "update_s_median": statistics.median(c["s"] for c in timed),
        "update_s": [c["s"] for c in timed],
        "updates": len(timed),
    }
    Path(args.out, f"{args.strategy}_rank{dist.rank}.json").write_text(json.dumps(result))
    dist.finish()


# ---------------------------------------------------------------------- the launcher


def launch(strategy: str, model_dir: str, out: Path, args: argparse.Namespace) -> list[dict]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    env.pop("RLVR_WORLD_SIZE", None)
    worker_args = [str(Path(__file__).resolve()), "--worker", "--strategy", strategy]
    worker_args += ["--model-dir", model_dir, "--out", str(out), "--rows", str(args.rows)]
    worker_args += ["--micro-batch", str(args.micro_batch), "--updates", str(args.updates)]
    worker_args += [] if args.kl else ["--no-kl"]
    worker_args += ["--malloc-trim"] if args.malloc_trim else []
    if strategy == "single":
        cmd, nproc = [sys.executable, *worker_args], 1
    else:
        nproc = args.nproc
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={nproc}", *worker_args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"{strategy}: the workers failed (exit {done.returncode})")
    return [json.loads((out / f"{strategy}_rank{r}.json").read_text()) for r in range(nproc)]


COLUMNS = [
    ("strategy", "{}"),
    ("rank", "{}"),
    ("params_mib", "{:.1f}"),
    ("gathered_mib", "{:.2f}"),
    ("grads_mib", "{:.1f}"),
    ("adam_mib", "{:.1f}"),
    ("master_mib", "{:.1f}"),
    ("rss_built_mib", "{:.0f}"),
    ("rss_before_mib", "{:.0f}"),
    ("peak_rss_mib", "{:.0f}"),
    ("update_s_median", "{:.2f}"),
]


def table(rows: list[dict]) -> str:
    head = "| " + " | ".join(c for c, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(f.format(r[c]) for c, f in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="30m")
    parser.add_argument("--model-dir", help="an existing model directory (instead of --model)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--no-kl", dest="kl", action="store_false", help="no reference model")
    parser.add_argument("--rows", type=int, default=16, help="batch rows (a multiple of 4)")
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--updates", type=int, default=3, help="measured, after one warm-up")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument(
        "--malloc-trim",
        action="store_true",
        help="glibc malloc_trim(0) after the Learner is built and before every update",
    )
    parser.add_argument("--json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", choices=STRATEGIES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rows <= 0 or args.rows % GROUP:
        parser.error(f"--rows must be a positive multiple of {GROUP}")
    if args.updates < 1:
        parser.error("--updates must be at least 1")
    if args.worker:
        worker(args)
        return
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in STRATEGIES:
            parser.error(f"unknown strategy {s!r} (choose from {', '.join(STRATEGIES)})")
    with tempfile.TemporaryDirectory(prefix="bench_strategies_") as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from rlvr.data.tiny import build_tiny_model

            model_dir = str(build_tiny_model(Path(tmp, "model"), seed=0, **MODELS[args.model]))
        rows: list[dict] = []
        for s in strategies:
            rows += launch(s, model_dir, Path(tmp), args)
            for r in rows[-(1 if s == "single" else args.nproc) :]:
                print(json.dumps({k: v for k, v in r.items() if k != "update_s"}), flush=True)
    print(table(rows))
    if args.json:
        report = {
            "model": args.model_dir or args.model,
            "kl": args.kl,
            "rows": args.rows,
            "micro_batch_size": args.micro_batch,
            "updates": args.updates,
            "nproc": args.nproc,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "load_average": os.getloadavg(),
            "cpus": os.cpu_count(),
            "machine": platform.platform(),
            "results": rows,
        }
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
