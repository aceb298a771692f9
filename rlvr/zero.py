"""DeepSpeed ZeRO stage 1 / 2 for the learner (``train.strategy=deepspeed``).

ZeRO partitions what AdamW keeps per weight over the W ranks (Rajbhandari et al. 2020,
"ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", §5): stage 1 the
optimizer state (fp32 master weights, exp_avg, exp_avg_sq), stage 2 also the gradients. The
weights themselves stay whole on every rank, so forward passes, the rollout engine's sync and
the Hugging Face checkpoint work as in a replicated run; only the update is partitioned. Stage 3
(partitioned weights) is FSDP2's job here (``train.strategy=fsdp2``, rlvr/fsdp.py).

The engine is ``deepspeed.initialize`` over rlvr's own module and AdamW, configured from the
recipe (:func:`engine_config`), with ``managed_gradient_accumulation: false``: rlvr's loop owns
the micro-batches (their number varies per rank and per step) and each ``engine.step()`` is the
accumulation boundary. Each rank's loss is a partial sum of the one-process loss (weights from
the global token / sequence counts, rlvr/distributed.py); DeepSpeed averages the reduced
gradient over the data-parallel ranks, so the loss is multiplied by W once:

    g = (1/W) sum_r grad (W * L_r) = sum_r grad L_r

the one-process gradient. Stage 2 reduce-scatters inside each backward, so the ranks run the
same number of backward passes (rlvr/learner.py pads with zero-weight passes, as under FSDP2).
Clipping (``gradient_clipping`` = ``train.max_grad_norm``) uses torch's rule
g *= min(1, max_norm / (||g|| + 1e-6)) inside ``engine.step()``; a non-finite gradient makes
DeepSpeed skip the step (its overflow check), which rlvr's guard reports.

Checkpoints stay the replicated format: :func:`full_optimizer_state` assembles torch AdamW's
``state_dict()`` (per trainable parameter, in order: step, exp_avg, exp_avg_sq) from the
partitions (a collective: DeepSpeed's ``safe_get_full_optimizer_state``), rank 0 writes it as
``optimizer.pt``; :func:`load_full_optimizer_state` puts such a state (or one read from an
FSDP2 run's DCP directory) back into the partitions. A run therefore resumes at any world size
and under any strategy.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import torch

log = logging.getLogger("rlvr")

__all__ = [
    "backward",
    "bucket_elements",
    "discard",
    "engine_config",
    "full_optimizer_state",
    "load_full_optimizer_state",
    "name_accelerator",
    "step",
    "wrap",
]

ADAM_KEYS = ("exp_avg", "exp_avg_sq")


def name_accelerator() -> None:
    """Name DeepSpeed's accelerator before anything imports it: the CPU one when no GPU is
    visible (else every rank warns at import that it fell back to CPU)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _import_deepspeed() -> Any:
    """deepspeed, quietly: its accelerator named, its INFO logs (config dumps) off, and its
    CPU shared-memory all-reduce op left unbuilt. That op serves DeepSpeed's inference
    all-reduce only, which rlvr never calls (training collectives go through torch.distributed);
    building it needs a C++ compiler (about 30 s on first use) and maps a 66 MiB /dev/shm
    segment per rank. Without it DeepSpeed falls back to torch.distributed there too."""
    name_accelerator()
    import importlib

    import deepspeed
    from deepspeed.utils import logger as ds_logger

    # the module itself: ``import deepspeed.comm.torch as m`` would bind the attribute
    # ``deepspeed.comm.torch``, which is the torch package deepspeed.comm imported
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    ds_logger.setLevel(logging.WARNING)
    # ZeRO's all-gather calls a torch API torch has renamed (a FutureWarning per step)
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.* is deprecated")
    return deepspeed


def bucket_elements(model: torch.nn.Module) -> int:
    """Elements per ZeRO reduce / all-gather bucket: hidden_size² (transformers' DeepSpeed
    "auto" rule), at least 2^20, at most DeepSpeed's default 5e8 (a 2 GB fp32 buffer per
    rank, more than a small model's whole gradient: stage 2 would save nothing)."""
    config = getattr(model, "config", None)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    return int(min(500_000_000, max(hidden * hidden, 2**20)))


def engine_config(
    recipe: Any, stage: int, bucket: int = 500_000_000, *, bf16: bool = False
) -> dict[str, Any]:
    """The DeepSpeed config for ZeRO ``stage`` from the recipe: rlvr accumulates the
    micro-batches (one ``step()`` per update), clipping at ``train.max_grad_norm``,
    ``bucket`` elements per reduce / all-gather bucket; ``bf16``: DeepSpeed's bf16 mode (the
    trainable weights are bf16; it casts the module's floating parameters to bf16)."""
    t = recipe.train
    return {
        "train_micro_batch_size_per_gpu": 1,  # rlvr's loop owns the batch; not used
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": float(t.max_grad_norm or 0.0),
        "zero_optimization": {
            "stage": stage,
            "reduce_bucket_size": bucket,
            "allgather_bucket_size": bucket,
        },
        "bf16": {"enabled": bf16},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,  # torch's AdamW, rlvr's own
    }


def wrap(model: torch.nn.Module, optimizer: torch.optim.Optimizer, recipe: Any, stage: int) -> Any:
    """The DeepSpeed engine over ``model`` and ``optimizer`` (every rank holds the same
    weights already). ``model`` stays the module rlvr calls; the engine runs backward / step."""
    deepspeed = _import_deepspeed()
    # bf16 mode follows what trains: LoRA's adapters stay fp32 (peft) over a bf16 base, and
    # DeepSpeed's bf16 mode would cast them to bf16 (a different computation from one process)
    bf16 = all(p.dtype == torch.bfloat16 for p in _trainable(model))
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        config=engine_config(recipe, stage, bucket_elements(model), bf16=bf16),
    )
    zero = engine.optimizer
    if type(zero).__name__ != "DeepSpeedZeroOptimizer" or engine.zero_optimization_stage() != stage:
        from rlvr.distributed import StrategyError

        raise StrategyError(
            f"train.strategy=deepspeed asked for ZeRO stage {stage} but DeepSpeed set up "
            f"{type(zero).__name__} at stage {engine.zero_optimization_stage()}"
        )
    return engine


def backward(engine: Any, loss: torch.Tensor, world_size: int) -> None:
    """Backward of this rank's partial loss; DeepSpeed's average over W ranks undone once."""
    engine.backward(loss * world_size, scale_wrt_gas=False)


def step(engine: Any) -> float:
    """The update (clip, AdamW on the partitions, all-gather of the weights); returns the
    gradient norm before clipping (inf when DeepSpeed skipped a non-finite gradient)."""
    engine.step()
    norm = engine.get_global_grad_norm()
    return float("inf") if norm is None else float(norm)


def discard(engine: Any) -> None:
    """Drop the gradients accumulated since the last step without stepping (the guard's
    non-finite loss): what DeepSpeed's own overflow branch of ``step()`` clears (the module's
    ``.grad``, the pre-flattened buffers and stage 2's reduced partitions)."""
    zero = engine.optimizer
    zero.zero_grad(set_to_none=True)
    release = getattr(zero, "_release_preflattened_grad_buffers", None)
    if callable(release):
        release()
    for store in ("averaged_gradients", "all_grad_tensors"):
        held = getattr(zero, store, None)
        if isinstance(held, dict):
            for key in held:
                held[key] = None


def _trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _base_state(engine: Any) -> tuple[Any, list[torch.Tensor]]:
    zero = engine.optimizer
    return zero.optimizer, list(zero.single_partition_of_fp32_groups)


def full_optimizer_state(engine: Any, model: torch.nn.Module, *, rank: int) -> dict[str, Any]:
    """Collective: the partitioned AdamW state as torch's ``AdamW.state_dict()`` of a
    replicated run (parameter ids = the model's trainable parameters in order), kept on rank
    0 only (``{}`` elsewhere; each tensor is assembled, then copied to rank 0's CPU memory
    one at a time). The moments stay fp32 (DeepSpeed's precision; ``AdamW.load_state_dict``
    casts them to the parameters' dtype in a replicated run)."""
    from deepspeed.utils import safe_get_full_optimizer_state

    base, flats = _base_state(engine)
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": []} for g in base.param_groups
    ]
    params = _trainable(model)
    groups[0]["params"] = list(range(len(params)))
    if not base.state.get(flats[0]):  # no update applied yet: a fresh AdamW's empty state
        return {"state": {}, "param_groups": groups} if rank == 0 else {}
    steps = base.state[flats[0]]["step"]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for i, p in enumerate(params):
        entry = {"step": steps.detach().clone().cpu()}
        for key in ADAM_KEYS:
            full = safe_get_full_optimizer_state(p, key)  # an all-reduce of the fragments
            if rank == 0:
                entry[key] = full.detach().float().cpu()
        if rank == 0:
            state[i] = entry
    return {"state": state, "param_groups": groups} if rank == 0 else {}


def load_full_optimizer_state(
    engine: Any, model: torch.nn.Module, state: dict[str, Any], *, rank: int
) -> None:
    """Collective: rank 0's whole AdamW ``state`` (``{}`` on the others) into every rank's
    partitions: hyperparameters, the step count, exp_avg and exp_avg_sq (broadcast from rank
    0, each rank keeps its fragment)."""
    import torch.distributed as td
    from deepspeed.utils import safe_set_full_optimizer_state
    from deepspeed.utils.mixed_precision_linkage import lazy_init_hp_params_optimizer_state

    base, flats = _base_state(engine)
    params = _trainable(model)
    if rank == 0:
        check_full_optimizer_state(state, params)
    has = torch.tensor([int(bool(state.get("state"))) if rank == 0 else 0])
    td.broadcast(has, src=0)
    if rank == 0:
        for group, saved in zip(base.param_groups, state.get("param_groups", []), strict=False):
            group.update({k: v for k, v in saved.items() if k != "params"})
    if not int(has[0]):  # the checkpoint's AdamW had not stepped: nothing to restore
        return
    step_value = torch.zeros((), dtype=torch.float32)
    if rank == 0:  # AdamW steps every parameter together: the largest count (a parameter that
        step_value.copy_(max(float(e["step"]) for e in state["state"].values()))  # never had
        # a gradient in a replicated run has no entry: zero moments below)
    td.broadcast(step_value, src=0)
    zero = engine.optimizer
    for flat in flats:  # AdamW's state exists once it has stepped: create it, then link it
        if not base.state.get(flat):
            base.state[flat] = {
                "step": torch.zeros((), dtype=torch.float32),
                **{k: torch.zeros_like(flat) for k in ADAM_KEYS},
            }
        base.state[flat]["step"].copy_(step_value)
    for lp_params, flat in zip(zero.bit16_groups, flats, strict=True):
        lazy_init_hp_params_optimizer_state(lp_params, flat, base.state)
    for i, p in enumerate(params):
        for key in ADAM_KEYS:
            value = torch.zeros(p.shape, dtype=torch.float32)
            if rank == 0 and i in state["state"]:
                value.copy_(state["state"][i][key])
            td.broadcast(value, src=0)
            safe_set_full_optimizer_state(p, value.to(p.device), key)


def check_full_optimizer_state(state: dict[str, Any], params: list[torch.nn.Parameter]) -> None:
    """Rank 0, before any collective: ``state`` fits these trainable parameters (ids in
    range, AdamW's keys, the parameters' shapes), else ValueError naming the entry."""
    entries = state.get("state", {})
    for i, entry in entries.items():
        if not isinstance(i, int) or not 0 <= i < len(params):
            raise ValueError(
                f"the checkpoint's optimizer state has an entry for parameter {i!r}, but the "
                f"policy has {len(params)} trainable parameters"
            )
        for key in ("step", *ADAM_KEYS):
            if key not in entry:
                raise ValueError(f"the checkpoint's optimizer state of parameter {i} has no {key}")
        for key in ADAM_KEYS:
            if tuple(entry[key].shape) != tuple(params[i].shape):
                raise ValueError(
                    f"the checkpoint's optimizer state of parameter {i}: {key} has shape "
                    f"{tuple(entry[key].shape)}, the parameter {tuple(params[i].shape)}"
                )
