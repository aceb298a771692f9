"""LoRA adapters (peft) for the RL policy and the SFT stage.

LoRA (Hu et al. 2021, arXiv 2106.09685) freezes each targeted weight W [out, in] and trains
a low-rank update: for an input x,

    h = W x + (alpha / r) * B A x,     A [r, in] (random init), B [out, r] (zero init),

so at the start the adapted model equals the base. The merged weight is

    W' = W + (alpha / r) * B A        (peft ``LoraLayer.get_delta_weight``)

which is what a rollout engine without LoRA support receives (``lora.sync: merged``). It is
computed out of place (:func:`merged_state_dict`): the learner's modules are never merged and
unmerged, so the frozen W is bit-for-bit the loaded one for the whole run (a merge/unmerge
round trip, W + d - d, is not exact in floating point and would drift step by step).
``lora.sync: adapter``: the engine receives the adapter itself (:func:`adapter_state_dict`, A
and B under peft's saved names, with :func:`adapter_config`), and an in-process vLLM engine
writes it to a fresh versioned directory and samples with ``LoRARequest("policy-v{k}", k,
dir)`` (rlvr/rollout/vllm_engine.py), removing the previous version; rollout servers
started with ``rlvr serve MODEL --lora-rank R`` load each version as ``policy-v{k}`` through
vLLM's runtime LoRA routes (rlvr/rollout/server.py); a separate HF engine takes ``merged``.
Checkpoints save the adapter alone (``adapter_model.safetensors`` + ``adapter_config.json``).

Under FSDP2 (``train.strategy=fsdp2``) the parameters are shards: the learner gathers the
full state dict of the peft model (a collective) and rank 0 computes the same W' from it
(:func:`merged_from_full`, the Linear rule above, ``transpose(B A, fan_in_fan_out) * scaling``)
or picks the adapter's tensors out of it (:func:`adapter_from_full`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ADAPTER_CONFIG = "adapter_config.json"


MERGED_DIR = "merged"  # lora.save_merged: the merged model inside a checkpoint


def peft_lora_config(rank: int, alpha: float, dropout: float, target_modules: Any) -> Any:
    """The peft ``LoraConfig`` for a causal LM (shared by the SFT stage and RL)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )


def check_targets(target_modules: Any, where: str) -> None:
    """The fused log-prob path reads the LM head's weight directly, so it cannot be adapted."""
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if any(n in ("lm_head", "embed_tokens") for n in names):
        raise ValueError(
            f"{where}: LoRA on lm_head / embed_tokens is not supported (the log-prob kernel "
            "reads the head's weight, and it is tied to the embeddings); target the linear "
            "layers of the decoder, e.g. 'all-linear'"
        )


def wrap_policy(model: Any, lora: Any, adapter_dir: str | Path | None = None) -> Any:
    """``model`` with trainable LoRA adapters: new ones from the recipe's ``lora`` section, or
    the adapter saved in ``adapter_dir`` (a checkpoint being resumed)."""
    from peft import PeftModel, get_peft_model

    check_targets(lora.target_modules, "lora.target_modules")
    if getattr(model, "is_gradient_checkpointing", False):
        model.enable_input_require_grads()  # frozen embeddings: let checkpointed grads flow
    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    config = peft_lora_config(lora.rank, lora.alpha, lora.dropout, lora.target_modules)
    return get_peft_model(model, config)


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def is_peft(model: Any) -> bool:
    return type(model).__module__.startswith("peft")


@torch.no_grad()
def merged_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The base model's state dict under its own names (``base_layer`` stripped, ``lora_``
    tensors dropped, tied aliases kept) with W' = W + delta on every adapted layer."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    merged: dict[str, torch.Tensor] = {}
    for name, tensor in base.state_dict().items():
        if "lora_" in name:
            continue
        merged[name.replace(".base_layer.", ".")] = tensor
    for name, module in base.named_modules():
        if not isinstance(module, LoraLayer) or module.merged:
            continue
        weight = module.get_base_layer().weight
        delta = torch.zeros_like(weight)
        for adapter in module.active_adapters:
            if adapter in module.lora_A:
                delta += module.get_delta_weight(adapter).to(weight.dtype)
        merged[f"{name}.weight"] = weight + delta
    return merged


@torch.no_grad()
def adapter_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The adapter's tensors under the names peft saves them (``adapter_model.safetensors``):
    the live parameters, not copies (as ``Learner.weights`` hands out the full state dict); a
    consumer copies them before the next optimizer step (every engine's ``update_weights``
    does, synchronously)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach() for k, v in get_peft_model_state_dict(model).items()}


def adapter_config(model: Any) -> dict[str, Any]:
    """The adapter's ``adapter_config.json`` contents (JSON-able: sets become sorted lists)."""
    config = model.peft_config[model.active_adapter].to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _base_prefix(model: Any) -> str:
    """The base model's name prefix inside the peft model's state dict (``base_model.model.``)."""
    base = model.get_base_model()
    for name, module in model.named_modules():
        if module is base:
            return f"{name}." if name else ""
    raise ValueError("the peft model does not contain its base model")


@torch.no_grad()
def merged_from_full(model: Any, full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`merged_state_dict` computed from ``full``, the peft model's full state dict (as
    gathered from FSDP2 shards), under the base model's names: W' = W + sum over the active
    adapters of transpose(B A, fan_in_fan_out) * scaling (peft's Linear ``get_delta_weight``)."""
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    prefix = _base_prefix(model)
    merged: dict[str, torch.Tensor] = {}
    for name, tensor in full.items():
        if "lora_" in name:
            continue
        merged[name.removeprefix(prefix).replace(".base_layer.", ".")] = tensor
    for name, module in model.get_base_model().named_modules():
        if not isinstance(module, LoraLayer) or module.merged:
            continue
        if not isinstance(module, LoraLinear):
            raise NotImplementedError(
                f"{name}: merging a gathered {type(module).__name__} LoRA layer is not "
                "implemented (only Linear targets)"
            )
        weight = merged[f"{name}.weight"]
        delta = torch.zeros_like(weight, dtype=torch.float32)
        for adapter in module.active_adapters:
            if adapter not in module.lora_A:
                continue
            if module.use_dora.get(adapter):
                raise NotImplementedError(f"{name}: DoRA adapters are not merged here")
            a = full[f"{prefix}{name}.lora_A.{adapter}.weight"].float()
            b = full[f"{prefix}{name}.lora_B.{adapter}.weight"].float()
            d = b @ a
            delta += (d.T if module.fan_in_fan_out else d) * module.scaling[adapter]
        merged[f"{name}.weight"] = weight + delta.to(weight.dtype)
    return merged


def adapter_from_full(model: Any, full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`adapter_state_dict` picked out of ``full``, the peft model's full state dict."""
    from peft import get_peft_model_state_dict

    return dict(get_peft_model_state_dict(model, state_dict=full))
