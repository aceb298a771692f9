"""Soft-thinking rollout engine on transformers (SofT-GRPO, arXiv 2511.06411).

While a completion is thinking, every step feeds the model the Gumbel-weighted mixture of
its top-k token embeddings instead of one sampled token (formulas in rlvr/algos/soft.py):

    ids, g' = top-k of softmax(z / T) after top-k / top-p, l + lam * Gumbel (clamped)
    e_next  = sum_i softmax(g' / tau_g)_i E[ids_i],   token = ids[argmax g']

When the step's token is ``</think>`` the completion leaves soft mode for good: that step and
all later ones are ordinary samples from softmax(z / T) with the discrete ``SamplingParams``
(temperature, top_k, top_p), fed back as one-hot embeddings (the authors' SGLang sampler does
the same: ``</think>`` is stored one-hot). A completion thinks from its first step when the
prompt ends inside an open ``<think>``; otherwise it starts thinking when it emits
``<think>`` itself. ``temperature = 0`` means greedy answers and no Gumbel noise in the
soft phase (noise-free soft thinking).

Per step the engine records the token, its rollout log-prob (soft steps: the reparameterised
log-prob of :func:`rlvr.algos.soft.soft_step_logprob_topk` at the rollout's logits, so the
learner reproduces it exactly at theta_old; discrete steps: log-prob under the distribution
sampled from, as the HF engine) and a :class:`~rlvr.rollout.base.SoftTrace` (k ids, g', soft
flag) from which the learner rebuilds the inputs.

Batched over prompts x samples with a KV cache (one forward per step on ``inputs_embeds``),
left padding with explicit position ids. Each sample draws its noise from its own
``torch.Generator`` seeded with (seed, sample index): a sample's rollout does not depend on
which other samples share its batch. The generic engine interface is unchanged, so the
trainer and ``rlvr eval`` use it like the HF engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlvr.algos.soft import filtered_probs, soft_step, soft_step_logprob_topk
from rlvr.rollout.base import Completion, SamplingParams, SoftTrace
from rlvr.rollout.hf import HFEngine


@dataclass(frozen=True)
class SoftThinkingParams:
    """The soft phase's settings (defaults: the authors' training scripts)."""

    top_k: int = 5  # k, the size of the mixture
    top_p: float = 0.95
    tau_g: float = 0.1  # Gumbel-softmax temperature of the mixture weights
    noise_scale: float = 1.0  # lam in g' = l + lam * g
    temperature: float = 1.0  # T of softmax(z / T) in the soft phase
    think_start: str = "<think>"
    think_end: str = "</think>"

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"soft_thinking.top_k must be >= 1, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"soft_thinking.top_p must be in (0, 1], got {self.top_p}")
        if self.tau_g <= 0 or self.temperature <= 0:
            raise ValueError("soft_thinking.tau_g and temperature must be > 0")
        if self.noise_scale < 0:
            raise ValueError("soft_thinking.noise_scale must be >= 0")


def _token_id(tokenizer: Any, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


def sample_seed(seed: int | None, index: int) -> int:
    """The generator seed of sample ``index`` of a call seeded with ``seed``."""
    base = 0 if seed is None else seed
    return (base * 1_000_003 + index * 7919 + 17) % (2**63 - 1)


class SoftThinkingEngine(HFEngine):
    """HF-path engine whose thinking phase uses soft (mixture) inputs; see module docstring."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        soft: SoftThinkingParams | None = None,
        *,
        max_batch_size: int = 256,
    ) -> None:
        super().__init__(model, tokenizer, max_batch_size=max_batch_size)
        self.soft = soft or SoftThinkingParams()
        end = _token_id(tokenizer, self.soft.think_end)
        if end is None:
            raise ValueError(
                f"soft thinking: {self.soft.think_end!r} is not a single token of this tokenizer "
                "(set rollout.soft_thinking.think_end)"
            )
        self.think_end_id = end
        self.think_start_id = _token_id(tokenizer, self.soft.think_start)
        vocab = model.get_input_embeddings().weight.shape[0]
        if self.soft.top_k > vocab:
            raise ValueError(f"soft_thinking.top_k={self.soft.top_k} exceeds the vocabulary")

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        path: str,
        *,
        soft: SoftThinkingParams | None = None,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        revision: str | None = None,
    ) -> SoftThinkingEngine:
        base = HFEngine.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code, revision=revision
        )
        return cls(base.model, base.tokenizer, soft)

    def _opens_thinking(self, prompt: list[int]) -> bool:
        """True when the prompt ends inside an open <think> (or no <think> token exists)."""
        if self.think_start_id is None:
            return True
        starts = [i for i, t in enumerate(prompt) if t == self.think_start_id]
        ends = [i for i, t in enumerate(prompt) if t == self.think_end_id]
        return bool(starts) and (not ends or starts[-1] > ends[-1])

    @torch.no_grad()
    def generate(
        self, prompt_token_ids: list[list[int]], sampling: SamplingParams
    ) -> list[list[Completion]]:
        def chunk(rows: list[list[int]], first: int) -> list[Completion]:
            seeds = [sample_seed(sampling.seed, first + j) for j in range(len(rows))]
            return self._soft_chunk(rows, seeds, sampling)

        return self._in_chunks(prompt_token_ids, sampling, chunk)

    def _soft_chunk(
        self, prompts: list[list[int]], seeds: list[int], sp: SamplingParams
    ) -> list[Completion]:
        s, k = self.soft, self.soft.top_k
        device = next(self.model.parameters()).device
        embed = self.model.get_input_embeddings()
        rows, width = len(prompts), max(len(p) for p in prompts)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((rows, width), dtype=torch.long)
        for r, ids in enumerate(prompts):  # left padding
            input_ids[r, width - len(ids) :] = torch.tensor(ids)
            attention[r, width - len(ids) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator().manual_seed(seed) for seed in seeds]
        greedy = sp.temperature == 0
        noise = 0.0 if greedy else s.noise_scale

        thinking = torch.tensor([self._opens_thinking(p) for p in prompts], device=device)
        left_thinking = torch.zeros(rows, dtype=torch.bool, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        eos = torch.tensor(self.eos_ids, device=device)
        tokens, logps, soft_flags, ids_out, pert_out = [], [], [], [], []

        out = self.model(
            inputs_embeds=embed(input_ids),
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        cache, pos = out.past_key_values, positions[:, -1]
        for _ in range(sp.max_tokens):
            logits = out.logits[:, -1].float()  # [R, V]
            u = torch.stack([torch.rand(k + 1, generator=g) for g in gens]).to(device)
            u = u.clamp(1e-12, 1 - 1e-7)
            # discrete candidates for every row (used where not thinking, or at </think>)
            if greedy:
                tok_d = logits.argmax(-1)
                lp_d = torch.log_softmax(logits, -1).gather(-1, tok_d[:, None]).squeeze(-1)
            else:
                probs = filtered_probs(logits, sp.temperature, sp.top_k, sp.top_p)
                cdf = probs.cumsum(-1)
                tok_d = torch.searchsorted(cdf, u[:, k : k + 1] * cdf[:, -1:], right=True)
                tok_d = tok_d.squeeze(-1).clamp(max=probs.shape[-1] - 1)
                lp_d = torch.log(probs.gather(-1, tok_d[:, None]).squeeze(-1))
            # the soft step for every row (cheap: [R, k] after one top-k)
            ids, pert, y = soft_step(
                logits,
                u[:, :k],
                k=k,
                top_p=s.top_p,
                tau_g=s.tau_g,
                noise_scale=noise,
                temperature=s.temperature,
            )
            lp_s = soft_step_logprob_topk(logits.gather(-1, ids), pert, s.temperature)
            tok_s = ids[:, 0]
            # a soft step whose token is </think> is stored one-hot (discrete) and ends thinking
            ends = thinking & (tok_s == self.think_end_id)
            soft_now = thinking & ~ends
            tok = torch.where(thinking, tok_s, tok_d)
            tok = torch.where(done, torch.full_like(tok, self.pad_id), tok)
            lp_end = torch.log_softmax(logits / sp.temperature if not greedy else logits, -1)
            lp_end = lp_end.gather(-1, tok[:, None]).squeeze(-1)
            lp = torch.where(soft_now, lp_s, torch.where(ends, lp_end, lp_d))
            soft_now = soft_now & ~done
            onehot_ids = torch.zeros_like(ids)
            onehot_ids[:, 0] = tok
            step_ids = torch.where(soft_now[:, None], ids, onehot_ids)
            step_pert = torch.where(soft_now[:, None], pert, torch.zeros_like(pert))
            tokens.append(tok)
            logps.append(lp)
            soft_flags.append(soft_now)
            ids_out.append(step_ids)
            pert_out.append(step_pert)

            left_thinking |= ends
            starts = (
                (~thinking) & (~left_thinking) & (tok == self.think_start_id)
                if self.think_start_id is not None
                else torch.zeros_like(thinking)
            )
            thinking = (thinking & ~ends) | starts
            done = done | torch.isin(tok, eos)
            if bool(done.all()):
                break
            w = embed.weight
            mixture = torch.einsum("rk,rkd->rd", y.to(w.dtype), w[ids])
            nxt = torch.where(soft_now[:, None], mixture, w[tok])
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            pos = pos + 1
            out = self.model(
                inputs_embeds=nxt[:, None],
                attention_mask=attention,
                position_ids=pos[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
        return self._completions(tokens, logps, soft_flags, ids_out, pert_out)

    def _completions(
        self,
        tokens: list[torch.Tensor],
        logps: list[torch.Tensor],
        flags: list[torch.Tensor],
        ids: list[torch.Tensor],
        pert: list[torch.Tensor],
    ) -> list[Completion]:
        tok = torch.stack(tokens, 1).cpu()  # [R, T]
        lp = torch.stack(logps, 1).cpu()
        fl = torch.stack(flags, 1).cpu()
        ids_t = torch.stack(ids, 1).cpu()  # [R, T, k]
        pert_t = torch.stack(pert, 1).cpu()
        results = []
        for r in range(tok.shape[0]):
            row = tok[r].tolist()
            end, reason = len(row), "length"
            for t, x in enumerate(row):
                if x in self.eos_ids:
                    end, reason = t + 1, "stop"
                    break
            token_ids = row[:end]
            results.append(
                Completion(
                    token_ids=token_ids,
                    logprobs=lp[r, :end].tolist(),
                    finish_reason=reason,
                    text=self.tokenizer.decode(token_ids, skip_special_tokens=True),
                    soft=SoftTrace(
                        soft=fl[r, :end].tolist(),
                        topk_ids=ids_t[r, :end].tolist(),
                        perturbed=pert_t[r, :end].tolist(),
                        tau_g=self.soft.tau_g,
                    ),
                )
            )
        return results
