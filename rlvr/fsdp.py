"""FSDP2 (``torch.distributed.fsdp.fully_shard``) sharding and its checkpoints: a DCP
directory that reshards to any world size, plus a Hugging Face safetensors export.

Sharding (:func:`shard_model`): each decoder layer (the classes in the model's
``_no_split_modules``, transformers' own "keep together" list) becomes one FSDP unit, then the
root (embeddings, final norm, a tied ``lm_head``). Parameters are DTensors sharded on dim 0
over the ranks; forward all-gathers a unit, backward reduce-scatters its gradient. FSDP's
reduce-scatter divides by the world size W by default (an average, like DDP); rlvr's ranks
each compute a partial sum of the one-process loss (rlvr/distributed.py,
L = sum_r L_r with weights from the global counts), so the divide factor is set to 1 and the
reduced gradient is the SUM g = sum_r grad L_r, the one-process gradient (with
``force_sum_reduction_for_comms``: a plain SUM, since gloo has no PREMUL_SUM).

Checkpoint (:func:`save_checkpoint`), collective (every rank calls it):

    <dir>/dcp/   torch.distributed.checkpoint of {"model": ..., "optimizer": ...} from
                 ``get_state_dict`` (each rank writes its shards; ``.metadata`` maps them)
    <dir>/hf/    rank 0: config + model.safetensors from the full state dict
                 (``get_model_state_dict(full_state_dict=True, cpu_offload=True)``), loadable
                 with ``AutoModelForCausalLM.from_pretrained`` and vLLM

:func:`load_checkpoint` reads the DCP directory into a model at any world size: a sharded
model under a process group (DCP reshards), or a plain unsharded model in one process with no
process group at all (DCP plans the reads from the metadata). Accelerate is not used for the
sharding itself: ``Accelerator(cpu=True, fsdp_plugin=FullyShardedDataParallelPlugin(
fsdp_version=2))`` under torchrun reports MULTI_CPU and wraps the model in DDP, silently
(verified on accelerate 1.15), so :func:`assert_sharded` checks that FSDP2 is really in force.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = [
    "assert_sharded",
    "decoder_layers",
    "full_state_dict",
    "load_checkpoint",
    "load_full_optimizer_state",
    "read_full_optimizer_state",
    "save_checkpoint",
    "shard_model",
]

DCP_DIR = "dcp"
HF_DIR = "hf"


def _base(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (the model itself otherwise)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules FSDP2 shards one by one: instances of ``_no_split_modules``."""
    names = set(getattr(_base(model), "_no_split_modules", None) or [])
    if not names:
        raise ValueError(
            f"{type(_base(model)).__name__} has no _no_split_modules: rlvr cannot tell its "
            "decoder layers to shard them with FSDP2"
        )
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"no module of the classes {sorted(names)} in {type(model).__name__}")
    return layers


def shard_model(model: torch.nn.Module, *, sum_gradients: bool = True) -> torch.nn.Module:
    """``fully_shard`` each decoder layer, then the root, in place (returns ``model``).
    ``sum_gradients``: the reduce-scatter sums instead of averaging (divide factor 1)."""
    from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method

    from rlvr.policy import add_sharded_method

    # the mesh on the parameters' device type: fully_shard's default takes CUDA whenever it
    # is visible, which a model kept on the CPU (train.device=cpu) could not use
    mesh = _world_mesh(next(model.parameters()).device.type)
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    # rlvr's log-prob path calls the decoder and reads the LM head outside model.forward
    register_fsdp_forward_method(model, add_sharded_method(model))
    if sum_gradients:  # per FSDP unit (the setters do not recurse); plain SUM, no PREMUL_SUM
        for unit in model.modules():  # (gloo has no PREMUL_SUM)
            if isinstance(unit, FSDPModule):
                unit.set_gradient_divide_factor(1.0)
                unit.set_force_sum_reduction_for_comms(True)
    assert_sharded(model)
    return model


_MESHES: dict[tuple[str, int], Any] = {}


def _world_mesh(device_type: str) -> Any:
    """A 1-D device mesh over every rank of the default process group (one per device type
    and group: policy and reference share it)."""
    import torch.distributed as td
    from torch.distributed.device_mesh import init_device_mesh

    key = (device_type, id(td.group.WORLD))
    if key not in _MESHES:
        _MESHES[key] = init_device_mesh(device_type, (td.get_world_size(),))
    return _MESHES[key]


def assert_sharded(model: torch.nn.Module) -> None:
    """Raise :class:`rlvr.distributed.StrategyError` unless FSDP2 is in force on ``model``:
    the root is an ``FSDPModule`` and every parameter is a sharded DTensor."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from rlvr.distributed import StrategyError

    if not isinstance(model, FSDPModule):
        raise StrategyError(
            f"train.strategy=fsdp2 but the model is a {type(model).__name__}, not an FSDP2 "
            "module (fully_shard was not applied)"
        )
    plain = [n for n, p in model.named_parameters() if not isinstance(p, DTensor)]
    if plain:
        raise StrategyError(
            f"train.strategy=fsdp2 but {len(plain)} parameters are not sharded, e.g. {plain[0]}"
        )


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the full (unsharded) state dict on CPU on rank 0, ``{}`` on the others."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    path: str | Path,
    *,
    rank: int,
    tokenizer: Any = None,
    hf_subdir: str = HF_DIR,
    export: Any = None,
) -> Path:
    """Collective: write ``path/dcp`` (sharded model and optimizer) and, from rank 0,
    ``path/<hf_subdir>`` (a Hugging Face model directory, with ``tokenizer`` when given, so
    that vLLM can serve it as is; ``hf_subdir=""``: ``path`` itself, as a training checkpoint
    holds it). ``export(full)``: rank 0 writes the full state dict its own way instead (a LoRA
    policy's adapter files). Returns ``path``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    path = Path(path)
    if optimizer is None:
        state: dict[str, Any] = {"model": get_model_state_dict(model)}
    else:
        msd, osd = get_state_dict(model, optimizer)
        state = {"model": msd, "optimizer": osd}
    dcp.save(state, checkpoint_id=str(path / DCP_DIR))
    full = full_state_dict(model)
    if rank == 0 and export is not None:
        export(full)
    elif rank == 0:
        export_hf(model, full, path / hf_subdir if hf_subdir else path, tokenizer=tokenizer)
    return path


def export_hf(
    model: torch.nn.Module,
    full: dict[str, torch.Tensor],
    out: str | Path,
    *,
    tokenizer: Any = None,
) -> Path:
    """Write ``full`` (a full state dict of ``model``) as a transformers model directory:
    ``config.json`` (+ generation config), ``model.safetensors`` and the tokenizer when given;
    a tied ``lm_head`` is left to the config's ``tie_word_embeddings``, as ``save_pretrained``
    does."""
    from safetensors.torch import save_file

    base = _base(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base.config.save_pretrained(out)
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(out)
    tensors = {k: v.contiguous() for k, v in full.items()}
    if getattr(base.config, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def load_checkpoint(
    model: torch.nn.Module, path: str | Path, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Read ``path/dcp`` into ``model`` (and ``optimizer``) at any world size: a sharded
    model under a process group (collective; DCP reshards), or a plain model (one process,
    or rank 0 of a replicated run) reading the whole tensors from the shards on its own."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.tensor import DTensor

    ckpt = str(Path(path) / DCP_DIR)
    sharded = any(isinstance(p, DTensor) for p in model.parameters())
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    plain = not sharded  # no collective: this process alone reads the files
    if optimizer is None:
        state: dict[str, Any] = {"model": get_model_state_dict(model)}
        dcp.load(state, checkpoint_id=ckpt, no_dist=plain)
        set_model_state_dict(model, state["model"])
    else:
        msd, osd = get_state_dict(model, optimizer)
        state = {"model": msd, "optimizer": osd}
        dcp.load(state, checkpoint_id=ckpt, no_dist=plain)
        set_state_dict(
            model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
        )


def load_full_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Collective: a whole ``optimizer.state_dict()`` (rank 0's ``state``; ``{}`` on the
    others), as a replicated run's checkpoint holds it, into the sharded optimizer: its
    parameter ids become names (the optimizer's parameters are the model's trainable ones,
    in order), then rank 0 broadcasts and each rank keeps its shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if state:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        state = {
            "state": {names[i]: v for i, v in state["state"].items()},
            "param_groups": [
                {**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]
            ],
        }
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=options)


def read_full_optimizer_state(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """The optimizer state of ``path/dcp`` as a replicated run's ``AdamW.state_dict()``
    (parameter ids = ``model``'s trainable parameters in order), read whole by this process
    alone (no collective) through a scratch AdamW over ``model``'s parameters; ``model``'s
    weights are not touched (only the optimizer entries are loaded)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    scratch = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    state = {"optimizer": get_optimizer_state_dict(model, scratch)}  # (its zero-lr init step)
    dcp.load(state, checkpoint_id=str(Path(path) / DCP_DIR), no_dist=True)
    set_optimizer_state_dict(model, scratch, optim_state_dict=state["optimizer"])
    return scratch.state_dict()
