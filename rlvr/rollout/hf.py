"""Rollout engine on ``transformers.generate`` (the light fallback and the CPU reference).

Sampling log-probs are log_softmax of the processed scores (temperature and top-k / top-p
applied by rlvr's own warpers), recorded one step at a time by a logits processor, i.e. the
log-prob of each sampled token under the distribution it was drawn from; the [batch, steps,
vocab] score tensor of ``output_scores=True`` is never built. Seeding forks torch's RNG, so
generation is reproducible for a given seed and does not disturb the trainer's RNG stream.

Dynamic abstention: with ``engine.abstention`` set to an
:class:`rlvr.abstention.AbstentionGate`, the gate runs after the warpers and before the
recorder at every step; a completion it stopped has ``finish_reason="abstain"``,
``abstained=True`` and ``abstain_step``, plus its value trace / features when asked.
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
        self.abstention: Any = None  # rlvr.abstention.AbstentionGate, or None

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
        from transformers import GenerationConfig, LogitsProcessorList

        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        greedy = sp.temperature == 0
        # Our own warpers run before the recorder; the built-in ones are switched off (custom
        # processors run before transformers' warpers), so the recorder sees exactly the
        # distribution each token is drawn from. A fresh GenerationConfig ignores a model's
        # default sampling settings (top_k, repetition penalty, ...).
        processors = [] if greedy else _warpers(sp)
        recorder = _LogprobRecorder()
        gate = (
            self.abstention.start(self.model, width, len(prompts), self.eos_ids)
            if self.abstention is not None
            else None
        )
        config = GenerationConfig(
            max_new_tokens=sp.max_tokens,
            do_sample=not greedy,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            return_dict_in_generate=False,
        )
        try:
            sequences = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
                logits_processor=LogitsProcessorList(
                    [*processors, *([gate] if gate is not None else []), recorder]
                ),
            )
        finally:
            if gate is not None:
                gate.close()
        gen = sequences[:, width:].cpu()
        logps = recorder.finish(sequences).cpu()  # [batch, steps]
        results = []
        for row in range(gen.shape[0]):
            tokens = gen[row].tolist()
            end, reason = len(tokens), "length"
            for t, tok in enumerate(tokens):
                if tok in self.eos_ids:
                    end, reason = t + 1, "stop"
                    break
            ids = tokens[:end]
            c = Completion(
                token_ids=ids,
                logprobs=logps[row, :end].tolist(),
                finish_reason=reason,
                text=self.tokenizer.decode(ids, skip_special_tokens=True),
            )
            if gate is not None:
                step = gate.abstain_step[row]
                if step is not None and step + 1 == end:
                    c.finish_reason, c.abstained, c.abstain_step = "abstain", True, step
                if gate.gate.trace:
                    c.value_trace = gate.traces[row][:end]
                if gate.gate.capture:
                    c.features = gate.row_features(row, end)
            results.append(c)
        return results

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy weights in place (cast to the engine's dtype); a no-op when the engine shares
        the trainer's module."""
        start = time.perf_counter()
        # the state dict names tied weights under every name (lm_head.weight too)
        params = dict(self.model.state_dict(keep_vars=True))
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


def _warpers(sp: SamplingParams) -> list[Any]:
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    out: list[Any] = []
    if sp.temperature != 1.0:
        out.append(TemperatureLogitsWarper(sp.temperature))
    if sp.top_k > 0:
        out.append(TopKLogitsWarper(top_k=sp.top_k))
    if sp.top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=sp.top_p))
    return out


class _LogprobRecorder:
    """Logits processor that keeps the log-prob of each sampled token, one step at a time.

    At step t it stores log_softmax of the processed scores [batch, V]; at step t+1 (or in
    :meth:`finish`) it gathers the token that was sampled from them. Memory is one [batch, V]
    tensor, never [batch, steps, V].
    """

    def __init__(self) -> None:
        self._prev: torch.Tensor | None = None
        self._collected: list[torch.Tensor] = []

    def _gather(self, tokens: torch.Tensor) -> None:
        assert self._prev is not None
        self._collected.append(self._prev.gather(-1, tokens[:, None]).squeeze(-1))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._prev is not None:
            self._gather(input_ids[:, -1])
        self._prev = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        if self._prev is not None:
            self._gather(sequences[:, -1])
            self._prev = None
        if not self._collected:
            return torch.zeros((sequences.shape[0], 0))
        return torch.stack(self._collected, dim=1)
