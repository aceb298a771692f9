"""Rollout engines behind one interface: transformers.generate, vLLM, and the soft-thinking
sampler on transformers (SofT-GRPO)."""

from __future__ import annotations

from typing import Any

from rlvr.rollout.base import Completion, RolloutEngine, SamplingParams
from rlvr.rollout.hf import HFEngine
from rlvr.rollout.soft import SoftThinkingEngine, SoftThinkingParams

__all__ = [
    "Completion",
    "HFEngine",
    "RolloutEngine",
    "SamplingParams",
    "SoftThinkingEngine",
    "SoftThinkingParams",
    "build_engine",
    "model_engine",
]


def build_engine(
    engine: str,
    model_path: str,
    *,
    dtype: str = "float32",
    seed: int = 0,
    max_model_len: int | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    gpu_memory_utilization: float = 0.3,
    kv_cache_gib: float = 1.0,
    model: Any = None,
    tokenizer: Any = None,
    soft: SoftThinkingParams | None = None,
    enforce_eager: bool | None = None,
    sleep: bool | None = None,
    lora_config: dict[str, Any] | None = None,
) -> RolloutEngine:
    """Build a rollout engine. ``engine`` is "hf" (transformers.generate) or "vllm".

    With ``engine="hf"`` and a ``model`` (and ``tokenizer``) given, the engine generates with
    that very module (no weight copy needed); otherwise it loads ``model_path`` in ``dtype``.
    ``soft`` selects soft-thinking decoding (rlvr/rollout/soft.py), which runs on the hf
    engine only. ``enforce_eager`` (None: eager on CPU only), ``sleep`` and ``lora_config``
    (adapter sync as LoRA requests) are vLLM's (rlvr/rollout/vllm_engine.py).
    """
    if soft is not None:
        if engine != "hf":
            raise ValueError(
                "soft-thinking rollouts feed embedding mixtures step by step, which vLLM does "
                f"not accept: use the 'hf' engine (got {engine!r})"
            )
        if model is not None:
            if tokenizer is None:
                raise ValueError("build_engine('hf', model=...) also needs tokenizer=")
            return SoftThinkingEngine(model, tokenizer, soft)
        return SoftThinkingEngine.from_pretrained(
            model_path,
            soft=soft,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            revision=revision,
        )
    if engine == "hf":
        if model is not None:
            if tokenizer is None:
                raise ValueError("build_engine('hf', model=...) also needs tokenizer=")
            return HFEngine(model, tokenizer)
        return HFEngine.from_pretrained(
            model_path, dtype=dtype, trust_remote_code=trust_remote_code, revision=revision
        )
    if engine == "vllm":
        from rlvr.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(
            model_path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_gib=kv_cache_gib,
            trust_remote_code=trust_remote_code,
            revision=revision,
            enforce_eager=enforce_eager,
            sleep=sleep,
            lora_config=lora_config,
        )
    raise ValueError(f"unknown rollout engine {engine!r}: use 'hf' or 'vllm'")


def model_engine(
    model_cfg: Any,
    engine: str,
    *,
    path: str | None = None,
    dtype: str | None = None,
    **engine_kw: Any,
) -> RolloutEngine:
    """The one way to build a rollout engine from a recipe's ``model`` section
    (:class:`rlvr.config.ModelConfig`): the trainer's (rlvr/run.py ``rollout_engine``), every
    stage's (rlvr/stages/common.py ``open_engine``) and the judge's.

    ``path`` loads other weights than ``model.path`` (a resumed checkpoint, a stage's trained
    output); ``model.revision`` applies to ``model.path`` only, as the learner loads the policy
    (a local directory has no revisions). ``dtype`` defaults to ``model.dtype``;
    ``trust_remote_code`` is the section's; other keywords go to :func:`build_engine`."""
    load = str(model_cfg.path if path is None else path)
    return build_engine(
        engine,
        load,
        dtype=model_cfg.dtype if dtype is None else dtype,
        trust_remote_code=model_cfg.trust_remote_code,
        revision=model_cfg.revision if load == str(model_cfg.path) else None,
        **engine_kw,
    )
