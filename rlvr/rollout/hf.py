"""Rollout engine on ``transformers.generate`` (the light fallback and the CPU reference).

Sampling log-probs are log_softmax of the processed scores HF returns with
``output_scores=True`` (temperature and top-k / top-p already applied), i.e. the log-prob of
each sampled token under the distribution it was drawn from. Seeding forks torch's RNG, so
generation is reproducible for a given seed and does not disturb the trainer's RNG stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch

from rlvr.rollout.base import Completion, EngineStats, RolloutEngine, SamplingParams


class HFEngine(RolloutEngine):
    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 256) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        )
        self.stats = EngineStats()

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        revision: str | None = None,
    ) -> HFEngine:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(
            path, trust_remote_code=trust_remote_code, revision=revision
        )
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=_torch_dtype(dtype),
            trust_remote_code=trust_remote_code,
            revision=revision,
            use_safetensors=True,
        )
        model.eval()
        return cls(model, tok)

    @torch.no_grad()
    def generate(
        self, prompt_token_ids: list[list[int]], sampling: SamplingParams
    ) -> list[list[Completion]]:
        start = time.perf_counter()
        expanded = [ids for ids in prompt_token_ids for _ in range(sampling.n)]
        flat: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                for i in range(0, len(expanded), self.max_batch_size):
                    flat.extend(
                        self._generate_chunk(expanded[i : i + self.max_batch_size], sampling)
                    )
        finally:
            self.model.train(was_training)
        self.stats.generated_tokens += sum(len(c.token_ids) for c in flat)
        self.stats.generate_seconds += time.perf_counter() - start
        n = sampling.n
        return [flat[i * n : (i + 1) * n] for i in range(len(prompt_token_ids))]

    def _generate_chunk(self, prompts: list[list[int]], sp: SamplingParams) -> list[Completion]:
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        greedy = sp.temperature == 0
        kwargs: dict[str, Any] = dict(
            max_new_tokens=sp.max_tokens,
            do_sample=not greedy,
            output_scores=True,
            return_dict_in_generate=True,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        if not greedy:
            kwargs.update(temperature=sp.temperature, top_p=sp.top_p, top_k=max(sp.top_k, 0))
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        out = self.model.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
        )
        gen = out.sequences[:, width:].cpu()
        scores = torch.stack(out.scores, dim=1).float().cpu()  # [batch, steps, V]
        logps = torch.log_softmax(scores, dim=-1).gather(-1, gen.unsqueeze(-1)).squeeze(-1)
        results = []
        for row in range(gen.shape[0]):
            tokens = gen[row].tolist()
            end, reason = len(tokens), "length"
            for t, tok in enumerate(tokens):
                if tok in self.eos_ids:
                    end, reason = t + 1, "stop"
                    break
            ids = tokens[:end]
            results.append(
                Completion(
                    token_ids=ids,
                    logprobs=logps[row, :end].tolist(),
                    finish_reason=reason,
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                )
            )
        return results

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy weights in place; a no-op when the engine shares the trainer's module."""
        start = time.perf_counter()
        params = dict(self.model.named_parameters())
        params.update(dict(self.model.named_buffers()))
        for name, tensor in named_tensors:
            target = params.get(name)
            if target is None:
                raise KeyError(f"HF engine: no parameter named {name!r}")
            if target.data_ptr() != tensor.data_ptr():
                target.copy_(tensor)
        self.stats.sync_seconds += time.perf_counter() - start


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the model has no EOS token id (generation_config.eos_token_id)")
    return list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]


def _torch_dtype(name: str) -> Any:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        name, "auto"
    )
