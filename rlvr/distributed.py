"""Multi-rank training over torch.distributed: rank 0 drives, every rank learns on whole groups.

Launch: ``torchrun --nproc_per_node N -m rlvr train recipe.yaml`` (or ``accelerate launch
--multi_gpu --num_processes N -m rlvr train ...``, which runs torchrun). Layout:

    rank 0   the whole single-process run, unchanged: sampler (rollout, rewards, filters,
             advantages on the global batch), metrics, checkpoints, eval, engine sync. Before
             each update it broadcasts the global TrainBatch to the other ranks.
    rank r>0 a follower (:func:`follow`): receives each global batch and runs the same
             :meth:`Learner.update` on its shard.

Every rank holds the global batch; rank r trains on the rows of the whole groups
:func:`balance_groups` gives it (greedy by tokens, verl's ``_balance_batch``). The aggregation
weights w come from the global counts (``aggregation_weights(..., num_sequences=N, num_tokens=T)``
with the global N and T, unchanged code), so each rank's loss is a partial sum of the
one-process loss and the gradient is their all-reduced SUM:

    L = sum_r L_r,   L_r = sum_{(i,t) in shard_r} w_{i,t} loss_{i,t},   g = sum_r grad L_r.

Gradients are summed, not averaged, so no factor W has to be undone (DDP's average would need
loss x W: OpenRLHF's ``* dp_size``). One SUM per step after the whole accumulation loop (rather
than DDP's per-backward hooks) also lets ranks run different numbers of micro-batches (uneven
shards, skipped rows) without a hang. Whole-batch statistics (token-weight rules: top-q over
the batch, covariance ranks) are assembled exactly: each rank fills its rows of the no-grad
[N, T] pass and leaves zeros elsewhere, and an all-reduce SUM gives every rank the global
tensor (x + 0 = x, no rounding). Metric sums are all-reduced the same way, so every rank ends
the step with the same metrics, gradient norm and weights.

Rank 0's learner state (weights, the reference model, optimizer, LR schedule, update count)
is broadcast to the followers before the first update, so resume, warm-up and resume-time LR
changes, done on rank 0 only, reach every rank; a run therefore resumes at any world size.
Messages are JSON headers plus tensors broadcast on the process group (nothing is pickled).

World-size guard (:meth:`DistEnv.setup`): ``train.world_size`` or ``$RLVR_WORLD_SIZE``, when
set, must equal the launched world size (``accelerate launch --cpu --num_processes 2``
silently runs one process, huggingface/accelerate#2741): a mismatch raises
:class:`WorldSizeError` before any model loads. A colocated vLLM engine under W > 1 is refused.

Strategy guard (:func:`resolve_strategy`): ``train.strategy`` (ddp | fsdp2 | deepspeed) is
checked against what the launcher set up (accelerate's ``ACCELERATE_USE_FSDP`` /
``FSDP_VERSION`` / ``ACCELERATE_USE_DEEPSPEED``; plain torchrun: ddp); a mismatch raises
:class:`StrategyError`. ``ddp``: the scheme above. ``fsdp2``: every rank's policy (and
reference) is sharded with ``fully_shard`` (rlvr/fsdp.py, reduce-scatter as a plain SUM) and
the ranks move in lockstep, since every FSDP2 forward is a collective:

    init        rank 0 names the weights every rank loads (model, warm-up output or the
                checkpoint resumed) before the learners are built and sharded
    update      every pass (reference, old log-probs, token rules, the micro-batch loop) runs
                max_r(micro-batches_r) times on every rank; a rank out of rows runs a
                zero-weight pass on row 0 (its forward joins the all-gathers, its backward adds
                exact zeros to the reduce-scatter)
    weights     the engine sync: the full state dict gathered onto rank 0
    checkpoint  DCP of the sharded model and optimizer from every rank + the HF files from
                rank 0; resume reads it back at any world size (DCP reshards)

Rank 0's rollout engine under fsdp2 is its own unsharded copy (HF ``generate``) or the vLLM
servers (``rollout.mode=server``; their receipt probe is a forward every rank joins), synced
from the gathered weights (LoRA: rank 0 merges, or picks the adapter, from the gathered peft
state dict). CURE (the policy's entropies while generating) and soft thinking are refused
under fsdp2 (:func:`refuse_unsupported_fsdp2`).

``deepspeed``: ZeRO stage 1 or 2 (``train.zero_stage``, or the accelerate config's
``zero_stage``; rlvr/zero.py) partitions the optimizer state (and the gradients) while every
rank keeps the whole weights: the same ``init`` message makes every rank load rank 0's weights
before DeepSpeed wraps them, backward passes run in lockstep (stage 2 reduce-scatters in each),
forwards stay local (rank 0 alone generates, syncs, probes), and ``checkpoint`` / ``resume``
are collectives that assemble / scatter the whole AdamW state (``optimizer.pt``, the replicated
format). Stage 3 is refused (use fsdp2), as are DeepSpeed options rlvr does not wire (offload,
a DeepSpeed config file, gradient accumulation, mixed precision). Without the package:
:class:`DeepSpeedNotInstalledError` (``pip install deepspeed``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("rlvr")

__all__ = [
    "DeepSpeedNotInstalledError",
    "DistEnv",
    "StrategyError",
    "WorldSizeError",
    "balance_groups",
    "current",
    "follow",
    "serve",
]


class WorldSizeError(RuntimeError):
    """The launched world size (or strategy) is not the one the recipe or environment asked."""


class StrategyError(WorldSizeError):
    """The trainer strategy asked for (``train.strategy``) is not the launcher's, or is not
    run by the training loop yet."""


class DeepSpeedNotInstalledError(StrategyError):
    """``train.strategy=deepspeed`` (or an accelerate DeepSpeed config) without the package."""


@dataclass
class DistEnv:
    """This process's place in the run. ``world_size == 1``: single process, no collectives."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"
    strategy: str = "single"  # single | ddp | fsdp2 | deepspeed
    zero_stage: int = 0  # deepspeed: ZeRO stage 1 or 2
    serving: bool = True  # rank 0: the followers wait for messages (a "stop" is owed)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def sharded(self) -> bool:
        """FSDP2: parameters are DTensors; every forward is a collective (lockstep)."""
        return self.strategy == "fsdp2"

    @property
    def loads_together(self) -> bool:
        """Every rank loads rank 0's weights at start (fsdp2, deepspeed), not by broadcast."""
        return self.strategy in ("fsdp2", "deepspeed")

    @property
    def description(self) -> str:
        parts = "optimizer state and gradients" if self.zero_stage == 2 else "optimizer state"
        return {
            "single": "single process",
            "ddp": "ddp (replicated, gradient SUM all-reduce)",
            "fsdp2": "fsdp2 (fully_shard per decoder layer, gradient SUM reduce-scatter)",
            "deepspeed": f"deepspeed ZeRO-{self.zero_stage} ({parts} partitioned)",
        }.get(self.strategy, self.strategy)

    @property
    def is_driver(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ start and finish

    @classmethod
    def setup(cls, recipe: Any, env: dict[str, str] | None = None) -> DistEnv:
        """Read the launcher's environment, check the world size the run asked for, start the
        process group (gloo on CPU; ``cpu:gloo,cuda:nccl`` when CUDA is present, so each
        collective takes the backend of its tensors' device) and make it :func:`current`."""
        env = dict(os.environ if env is None else env)
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", "0"))
        check_world_size(recipe, world, env)
        strategy = resolve_strategy(recipe, env)
        stage = resolve_zero_stage(recipe, env) if strategy == "deepspeed" else 0
        if strategy == "fsdp2":
            refuse_unsupported_fsdp2(recipe)
        if strategy == "deepspeed":
            refuse_unsupported_deepspeed(recipe)
        grouped = strategy in ("fsdp2", "deepspeed")
        if grouped and world == 1 and "MASTER_ADDR" not in env:
            raise StrategyError(
                f"train.strategy={strategy} needs a process group, even for one process: "
                "launch with `torchrun --nproc_per_node N -m rlvr train ...` (N >= 1)"
            )
        if strategy == "deepspeed":
            require_deepspeed()
            from rlvr.zero import name_accelerator

            name_accelerator()
        if world == 1 and not grouped:
            dist = cls()
        else:
            refuse_unsupported(recipe, world)
            import torch.distributed as td

            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            if not td.is_initialized():
                td.init_process_group(backend=backend, timeout=timedelta(minutes=60))
            if td.get_world_size() != world or td.get_rank() != rank:
                raise WorldSizeError(
                    f"process group has world size {td.get_world_size()} / rank "
                    f"{td.get_rank()}, the launcher's environment WORLD_SIZE={world} RANK={rank}"
                )
            dist = cls(rank, world, local_rank, backend, strategy, stage)
        set_current(dist)
        if dist.is_driver:
            log.info(
                "world size %d, strategy: %s, backend: %s%s",
                dist.world_size,
                dist.description,
                dist.backend,
                "; rank 0 drives rollout, rewards and advantages" if dist.active else "",
            )
        return dist

    def finish(self) -> None:
        """Rank 0: tell the followers to stop (idempotent); every rank: leave the group."""
        if not self.active and not self.loads_together:
            return
        import torch.distributed as td

        if not td.is_initialized():
            return
        if self.is_driver and self.serving and self.active:
            self.send({"cmd": "stop"})
        td.destroy_process_group()
        set_current(DistEnv())

    # ------------------------------------------------------------------ messages

    def command(self, message: dict[str, Any]) -> None:
        """Rank 0 of several: ask the followers to join a collective (no-op otherwise)."""
        if self.active and self.is_driver:
            self.send(message)

    def send(self, message: dict[str, Any]) -> None:
        """Rank 0: broadcast ``message`` (JSON-able values and tensors, any nesting)."""
        import torch.distributed as td

        self.serving = message.get("cmd") != "stop"
        tensors: list[torch.Tensor] = []
        encoded = _encode(message, tensors)
        specs = [[list(t.shape), str(t.dtype).removeprefix("torch.")] for t in tensors]
        header = json.dumps({"message": encoded, "__tensors__": specs}).encode()
        size = torch.tensor([len(header)], dtype=torch.int64)
        td.broadcast(size, src=0)
        td.broadcast(torch.frombuffer(bytearray(header), dtype=torch.uint8), src=0)
        for t in tensors:
            wire = t.detach().cpu().contiguous()  # messages travel on the CPU (gloo)
            if wire.dtype == torch.bool:
                wire = wire.to(torch.uint8)
            td.broadcast(wire, src=0)

    def receive(self) -> dict[str, Any]:
        """A follower: the next message rank 0 sent."""
        import torch.distributed as td

        size = torch.zeros(1, dtype=torch.int64)
        td.broadcast(size, src=0)
        raw = torch.empty(int(size[0]), dtype=torch.uint8)
        td.broadcast(raw, src=0)
        header = json.loads(bytes(raw.numpy()).decode())
        specs = header.pop("__tensors__")
        tensors = []
        for shape, dtype in specs:
            want = getattr(torch, dtype)
            t = torch.empty(shape, dtype=torch.uint8 if want == torch.bool else want)
            td.broadcast(t, src=0)
            tensors.append(t.to(torch.bool) if want == torch.bool else t)
        return _decode(header["message"], tensors)

    # ------------------------------------------------------------------ reductions

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over ranks, in place (returned for chaining)."""
        if self.active:
            import torch.distributed as td

            td.all_reduce(t, op=td.ReduceOp.SUM)
        return t

    def all_reduce_max(self, value: int) -> int:
        """The largest ``value`` over ranks."""
        if not self.active:
            return value
        import torch.distributed as td

        t = torch.tensor([value], dtype=torch.int64)
        td.all_reduce(t, op=td.ReduceOp.MAX)
        return int(t[0])

    def all_reduce_sums(self, sums: dict[str, float]) -> dict[str, float]:
        """Each value summed over ranks (float64 on the wire)."""
        if not self.active:
            return sums
        keys = sorted(sums)
        t = self.all_reduce_sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64))
        return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}

    def all_reduce_grads(self, params: Iterable[torch.nn.Parameter], bucket: int = 2**24) -> None:
        """Sum the gradients of ``params`` over ranks (a missing gradient counts as zero and is
        filled in), in flat buckets of at most ``bucket`` elements per dtype."""
        if not self.active:
            return
        todo = [p for p in params if p.requires_grad]
        for p in todo:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        for p in todo:
            by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
        for grads in by_dtype.values():
            start = 0
            while start < len(grads):
                chunk, n = [], 0
                while start < len(grads) and (not chunk or n + grads[start].numel() <= bucket):
                    chunk.append(grads[start])
                    n += grads[start].numel()
                    start += 1
                flat = self.all_reduce_sum(torch.cat([g.reshape(-1) for g in chunk]))
                offset = 0
                for g in chunk:
                    g.copy_(flat[offset : offset + g.numel()].view_as(g))
                    offset += g.numel()

    # ------------------------------------------------------------------ the learner's hooks

    def shard_rows(self, batch: Any, rows: torch.Tensor) -> torch.Tensor:
        """The subset of ``rows`` (global row ids, ascending) this rank trains on."""
        if not self.active:
            return rows
        mine = balance_groups(batch.attention_mask.sum(dim=1), batch.group_size, self.world_size)
        keep = torch.zeros(batch.num_rows, dtype=torch.bool)
        keep[mine[self.rank]] = True
        return rows[keep[rows]]

    def before_update(self, learner: Any, batch: Any) -> None:
        """Rank 0, before each update: the learner state on the first call, then the batch."""
        if not (self.active and self.is_driver):
            return
        if not getattr(learner, "_state_shared", False):
            self.send({"cmd": "state", **learner_state(learner, full=not self.loads_together)})
            learner._state_shared = True
        self.send({"cmd": "update", "batch": batch_fields(batch)})


# ---------------------------------------------------------------------- the current env

_CURRENT = DistEnv()


def current() -> DistEnv:
    """The process's :class:`DistEnv` (single process until :meth:`DistEnv.setup` ran)."""
    return _CURRENT


def set_current(dist: DistEnv) -> None:
    global _CURRENT
    _CURRENT = dist


# ---------------------------------------------------------------------- guard


def expected_world_size(recipe: Any, env: dict[str, str]) -> tuple[int | None, str]:
    """The world size the run asked for and where it was asked (None: not asked)."""
    asked = getattr(recipe.train, "world_size", None)
    if asked is not None:
        return int(asked), "train.world_size"
    if env.get("RLVR_WORLD_SIZE"):
        return int(env["RLVR_WORLD_SIZE"]), "$RLVR_WORLD_SIZE"
    return None, ""


def check_world_size(recipe: Any, world: int, env: dict[str, str]) -> None:
    if "WORLD_SIZE" not in env and "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env:
        # accelerate's simple launcher (--cpu) sets a rendezvous address when more than one
        # process was asked for, then starts one process without WORLD_SIZE (accelerate#2741)
        raise WorldSizeError(
            "accelerate launch asked for several processes but started one (its --cpu "
            "launcher runs a single process): use `accelerate launch --multi_gpu "
            "--num_processes N -m rlvr train ...` or `torchrun --nproc_per_node N -m rlvr "
            "train ...` (on CPU the ranks use gloo)"
        )
    asked, where = expected_world_size(recipe, env)
    if asked is not None and asked != world:
        hint = ""
        if world == 1:
            hint = (
                " (launch with `torchrun --nproc_per_node N -m rlvr train ...` or `accelerate "
                "launch --multi_gpu --num_processes N -m rlvr train ...`; `accelerate launch "
                "--cpu --num_processes N` runs a single process)"
            )
        raise WorldSizeError(
            f"{where}={asked} but this run was launched with world size {world} "
            f"(WORLD_SIZE={env.get('WORLD_SIZE', 'unset')}){hint}"
        )


STRATEGIES = ("ddp", "fsdp2", "deepspeed")


def launched_strategy(env: dict[str, str]) -> tuple[str | None, str]:
    """The strategy the launcher set up and the variable that says so (None: not said)."""
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "deepspeed", "ACCELERATE_USE_DEEPSPEED=true"
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        version = env.get("FSDP_VERSION", "1")
        name = "fsdp2" if version == "2" else f"fsdp{version}"
        return name, f"ACCELERATE_USE_FSDP=true FSDP_VERSION={version}"
    if env.get("ACCELERATE_DYNAMO_BACKEND") is not None or "ACCELERATE_MIXED_PRECISION" in env:
        return "ddp", "accelerate launch without FSDP or DeepSpeed"
    return None, ""


def resolve_strategy(recipe: Any, env: dict[str, str]) -> str:
    """The strategy in force: ``train.strategy`` and the launcher's must agree (either may be
    unsaid; both unsaid: ddp). Refuses what the training loop does not run."""
    asked = getattr(recipe.train, "strategy", None)
    launched, how = launched_strategy(env)
    if launched is not None and launched not in STRATEGIES:
        raise StrategyError(
            f"the launcher set up {launched} ({how}); rlvr supports FSDP2 only: set "
            "fsdp_version: 2 in the accelerate config"
        )
    if asked is not None and launched is not None and asked != launched:
        raise StrategyError(
            f"train.strategy={asked} but the launcher set up {launched} ({how}): launch with "
            f"configs/accelerate_{asked}.yaml, or set "
            f"train.strategy={launched}"
        )
    return asked or launched or "ddp"


def require_deepspeed() -> None:
    if importlib.util.find_spec("deepspeed") is None:
        raise DeepSpeedNotInstalledError(
            "train.strategy=deepspeed but the deepspeed package is not installed: install "
            "it (`pip install deepspeed`, or rlvr's extra: `pip install -e .[deepspeed]`), or "
            "use train.strategy=ddp"
        )


def resolve_zero_stage(recipe: Any, env: dict[str, str]) -> int:
    """The ZeRO stage: ``train.zero_stage`` and accelerate's ``zero_stage`` must agree (either
    may be unsaid; both unsaid: 2). The accelerate DeepSpeed options rlvr does not run stop
    here with a named error rather than being ignored."""
    asked = getattr(recipe.train, "zero_stage", None)
    launched = (env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") or "").strip() or None
    if launched is not None:
        if launched not in ("0", "1", "2", "3"):
            raise StrategyError(f"ACCELERATE_DEEPSPEED_ZERO_STAGE={launched}: not a ZeRO stage")
        if asked is not None and int(launched) != asked:
            raise StrategyError(
                f"train.zero_stage={asked} but the accelerate config sets zero_stage: "
                f"{launched} (ACCELERATE_DEEPSPEED_ZERO_STAGE): make them agree"
            )
    stage = asked if asked is not None else int(launched or 2)
    if stage == 3:
        raise StrategyError(
            "ZeRO stage 3 (partitioned weights) is not run by rlvr's loop: use "
            "train.strategy=fsdp2 (the same sharding, PyTorch-native), or zero_stage 1 or 2"
        )
    if stage == 0:
        raise StrategyError("zero_stage 0 is plain data parallel: use train.strategy=ddp")
    refused = {
        "ACCELERATE_DEEPSPEED_CONFIG_FILE": "a DeepSpeed config file (rlvr builds the config "
        "from the recipe: train.zero_stage, train.max_grad_norm, model.dtype)",
        "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "optimizer offload",
        "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "parameter offload",
    }
    for key, what in refused.items():
        value = env.get(key, "").strip().lower()
        if value not in ("", "none"):
            raise StrategyError(f"{key}={env[key]}: {what} is not wired into rlvr: remove it")
    accumulation = env.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "").strip()
    if accumulation not in ("", "1", "auto"):
        raise StrategyError(
            f"ACCELERATE_GRADIENT_ACCUMULATION_STEPS={accumulation}: rlvr accumulates the "
            "micro-batches of each update itself (train.micro_batch_size): set "
            "gradient_accumulation_steps: 1"
        )
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower()
    if precision not in ("", "no"):
        raise StrategyError(
            f"ACCELERATE_MIXED_PRECISION={precision}: rlvr trains in model.dtype (DeepSpeed's "
            "bf16 mode follows it): set mixed_precision: 'no' in the accelerate config and "
            "model.dtype=bfloat16 in the recipe"
        )
    clipping = env.get("ACCELERATE_GRADIENT_CLIPPING", "").strip().lower()
    if clipping not in ("", "none", "auto"):
        ours = recipe.train.max_grad_norm
        if ours is None or float(clipping) != float(ours):
            raise StrategyError(
                f"the accelerate config's gradient_clipping is {clipping} but "
                f"train.max_grad_norm={ours}: make them agree"
            )
    return stage


def refuse_unsupported_deepspeed(recipe: Any) -> None:
    """What the ZeRO path does not run stops before anything loads."""
    refused = [
        (
            getattr(recipe.rollout, "mode", "colocate") == "colocate"
            and recipe.rollout.engine == "vllm",
            "rollout.engine=vllm colocated (use rollout.engine=hf or rollout.mode=server)",
        ),
        (recipe.model.dtype == "float16", "model.dtype=float16 (loss scaling is not wired in)"),
    ]
    for bad, what in refused:
        if bad:
            raise StrategyError(
                f"train.strategy=deepspeed does not run with {what}: use train.strategy=ddp"
            )


def refuse_unsupported_fsdp2(recipe: Any) -> None:
    """What rank 0 would run on the learner's module alone (a hang under FSDP2) is refused."""
    r = recipe.rollout
    refused = [
        (
            getattr(r, "mode", "colocate") == "colocate" and r.engine == "vllm",
            "rollout.engine=vllm colocated (rank 0 generates with an HF copy, or use servers)",
        ),
        (r.cure is not None, "rollout.cure (the policy's entropies while generating)"),
        (r.soft_thinking is not None, "rollout.soft_thinking (reads the sharded embeddings)"),
    ]
    for bad, what in refused:
        if bad:
            raise StrategyError(
                f"train.strategy=fsdp2 does not run with {what}: use train.strategy=ddp"
            )


def refuse_unsupported(recipe: Any, world: int) -> None:
    """Layouts that do not exist yet under several ranks stop with a named error."""
    r = recipe.rollout
    mode = getattr(r, "mode", "colocate")
    if mode == "colocate" and r.engine == "vllm":
        raise WorldSizeError(
            f"rollout.engine=vllm colocated with {world} trainer ranks is not supported (one "
            "vLLM engine per rank does not exist yet): use rollout.engine=hf (rank 0 generates) "
            "or rollout.mode=server with `rlvr serve`"
        )


# ---------------------------------------------------------------------- sharding


def balance_groups(row_tokens: torch.Tensor, group_size: int, world_size: int) -> list[list[int]]:
    """Rows per rank: whole groups (rows b*G .. b*G+G-1) placed greedily, largest group first
    (ties in batch order), each on the rank with the fewest tokens so far (ties: lowest rank);
    each rank's rows ascending. A batch whose rows are not whole groups of ``group_size`` is
    balanced row by row."""
    n = int(row_tokens.shape[0])
    g = group_size if group_size > 0 and n % group_size == 0 else 1
    tokens = row_tokens.reshape(-1, g).sum(dim=1).tolist()
    order = sorted(range(len(tokens)), key=lambda b: (-tokens[b], b))
    load = [0.0] * world_size
    groups: list[list[int]] = [[] for _ in range(world_size)]
    for b in order:
        r = min(range(world_size), key=lambda k: (load[k], k))
        load[r] += tokens[b]
        groups[r].append(b)
    return [[b * g + j for b in sorted(gs) for j in range(g)] for gs in groups]


# ---------------------------------------------------------------------- learner state


def batch_fields(batch: Any) -> dict[str, Any]:
    return {f.name: getattr(batch, f.name) for f in fields(batch)}


def learner_state(learner: Any, *, full: bool = True) -> dict[str, Any]:
    """Everything a follower's learner needs to equal rank 0's. ``full=False`` (FSDP2, where
    every rank loaded the same weights and the sharded optimizer state): the schedule, the
    update count and the optimizer's hyperparameters (resume-time ``train.lr`` changes)."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in learner.optimizer.param_groups]
    state: dict[str, Any] = {
        "scheduler": learner.scheduler.state_dict(),
        "updates_done": learner.updates_done,
        "param_groups": groups,
    }
    if full:
        ref = learner.ref_model
        state["model"] = dict(learner.model.state_dict())
        state["ref"] = None if ref is None else dict(ref.state_dict())
        state["optimizer"] = learner.optimizer.state_dict()
    return state


def load_learner_state(learner: Any, state: dict[str, Any]) -> None:
    if "model" in state:
        learner.model.load_state_dict(state["model"])
        if state["ref"] is not None and learner.ref_model is not None:
            learner.ref_model.load_state_dict(state["ref"])
        learner.optimizer.load_state_dict(state["optimizer"])
    else:
        for group, values in zip(
            learner.optimizer.param_groups, state["param_groups"], strict=True
        ):
            group.update(values)
    learner.scheduler.load_state_dict(state["scheduler"])
    learner.updates_done = int(state["updates_done"])


# ---------------------------------------------------------------------- the follower


def follow(recipe: Any, dist: DistEnv) -> int:
    """A rank > 0: build the learner, then serve rank 0's messages until it says stop."""
    from rlvr.learner import Learner
    from rlvr.trainer import load_tokenizer, seed_everything

    def ignore(signum: int, frame: Any) -> None:  # rank 0 finishes the step and says stop
        log.debug("rank %d: signal %d left to rank 0", dist.rank, signum)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, ignore)
    log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))  # rank 0 reports the run
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    seed_everything(recipe.seed)
    tokenizer = load_tokenizer(recipe)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    weights_path, resumed = recipe.model.path, False
    if dist.loads_together:  # every rank loads rank 0's weights, then shards / wraps them
        init = dist.receive()
        if init["cmd"] == "stop":  # rank 0 failed before its learner existed
            return 0
        weights_path, resumed = init["weights_path"], init["resumed"]
        model = recipe.model.model_copy(update={"path": init["model_path"]})
        recipe = recipe.model_copy(update={"model": model})
    learner = Learner(recipe, pad_id=pad_id, weights_path=weights_path, resumed=resumed)
    serve(learner, dist)
    import torch.distributed as td

    td.destroy_process_group()
    return 0


def serve(learner: Any, dist: DistEnv) -> int:
    """A follower's loop: apply rank 0's state and updates until it says stop; returns the
    number of updates done."""
    from rlvr.batch import TrainBatch

    updates = 0
    while True:
        message = dist.receive()
        cmd = message["cmd"]
        if cmd == "stop":
            return updates
        if cmd == "state":
            load_learner_state(learner, message)
        elif cmd == "update":
            learner.update(TrainBatch(**message["batch"]))
            updates += 1
        elif cmd == "weights":  # FSDP2: the engine sync gathers the full weights on rank 0
            learner.weights()
        elif cmd == "probe":  # FSDP2: the servers' receipt probe is a forward of every rank
            learner.probe_logprobs(message["ids"])
        elif cmd == "checkpoint":  # FSDP2: every rank writes its shards; ZeRO: gathers
            learner.save_weights(Path(message["dir"]))
        elif cmd == "resume":  # FSDP2: every rank reads its shards; ZeRO: scatters
            learner.load_optimizer_state(Path(message["dir"]))
        else:
            raise RuntimeError(f"rank {dist.rank}: unknown message {cmd!r} from rank 0")


# ---------------------------------------------------------------------- wire format


def _encode(obj: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors.append(obj)
        return {"__t": len(tensors) - 1}
    if isinstance(obj, dict):
        return {"__d": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tu": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot send {type(obj).__name__} between ranks")


def _decode(obj: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__t" in obj:
            return tensors[obj["__t"]]
        if "__tu" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tu"])
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__d"]}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj
