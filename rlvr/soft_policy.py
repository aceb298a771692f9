"""Per-token log-probs of soft-thinking completions (the SofT-GRPO learner side).

The inputs are rebuilt from what the soft-thinking engine recorded (rlvr/rollout/soft.py):
at a soft position t the input embedding is the mixture

    e_t = sum_i softmax(g'_t / tau_g)_i E[ids_{t,i}]          (detached: no gradient)

and every other position embeds its token as usual. The target of position t is step t+1:

    soft step:      log pi_th = rlvr.algos.soft.soft_step_logprob_topk(h_t W[ids_{t+1}]^T, g'_{t+1}, T_soft)
    discrete step:  log pi_th = log softmax(h_t W^T / T)[x_{t+1}]          (fused kernel)

Only the k logits at the recorded ids are needed for a soft step (the vocabulary normaliser
cancels), so the fused kernel's memory bound holds. Entropies are those of softmax(h W^T / T)
at every target position. Choice: the authors' verl actor detaches all ``inputs_embeds``; here
only the mixtures are detached, so discrete positions get exactly the discrete-token gradient
(the two differ only in the input-embedding gradient of discrete tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rlvr.algos.soft import soft_mixture_weights, soft_step_logprob_topk
from rlvr.kernels import logprob_entropy, naive_logprob_entropy
from rlvr.policy import IGNORE, _unwrap, token_logprobs
from rlvr.rollout.base import Completion


@dataclass
class SoftTokens:
    """Soft-step tensors aligned with a right-padded [N, L] token layout (prompt first)."""

    mask: torch.Tensor  # [N, L] bool, True at soft completion positions
    topk_ids: torch.Tensor  # [N, L, k] long
    perturbed: torch.Tensor  # [N, L, k] float32, g'
    tau_g: float

    def rows(
        self, idx: torch.Tensor, length: int, device: torch.device | None = None
    ) -> SoftTokens:
        return SoftTokens(
            self.mask[idx, :length].to(device),
            self.topk_ids[idx, :length].to(device),
            self.perturbed[idx, :length].to(device),
            self.tau_g,
        )


def build_soft_tokens(
    prompt_lengths: Sequence[int], completions: Sequence[Completion], width: int
) -> SoftTokens | None:
    """Soft tensors for rows (prompt length, completion) laid out as ``RolloutBatch``'s tokens;
    None when no completion carries a soft trace."""
    traces = [c.soft for c in completions]
    first = next((t for t in traces if t is not None and t.topk_ids), None)
    if first is None:
        return None
    k = len(first.topk_ids[0])
    n = len(completions)
    mask = torch.zeros((n, width), dtype=torch.bool)
    ids = torch.zeros((n, width, k), dtype=torch.long)
    pert = torch.zeros((n, width, k), dtype=torch.float32)
    for i, (lp, c) in enumerate(zip(prompt_lengths, completions, strict=True)):
        t = c.soft
        if t is None or not t.soft:
            continue
        lc = len(c.token_ids)
        if len(t.soft) != lc:
            raise ValueError(f"row {i}: soft trace has {len(t.soft)} steps for {lc} tokens")
        mask[i, lp : lp + lc] = torch.tensor(t.soft, dtype=torch.bool)
        ids[i, lp : lp + lc] = torch.tensor(t.topk_ids, dtype=torch.long)
        pert[i, lp : lp + lc] = torch.tensor(t.perturbed, dtype=torch.float32)
    return SoftTokens(mask, ids, pert, first.tau_g)


SOFT_KEYS = ("soft_mask", "soft_topk_ids", "soft_perturbed", "soft_tau_g")


def soft_extras(
    prompt_lengths: Sequence[int], completions: Sequence[Completion], width: int
) -> dict[str, torch.Tensor]:
    """The soft tensors as ``TrainBatch.extras`` (per-row fields; {} without soft steps):
    soft_mask [N, L] bool, soft_topk_ids [N, L, k], soft_perturbed [N, L, k], soft_tau_g [N]."""
    soft = build_soft_tokens(prompt_lengths, completions, width)
    if soft is None:
        return {}
    n = soft.mask.shape[0]
    return {
        "soft_mask": soft.mask,
        "soft_topk_ids": soft.topk_ids,
        "soft_perturbed": soft.perturbed,
        "soft_tau_g": torch.full((n,), soft.tau_g, dtype=torch.float32),
    }


def soft_from_extras(extras: dict[str, torch.Tensor]) -> SoftTokens | None:
    """:class:`SoftTokens` back from ``TrainBatch.extras`` (None when it holds none)."""
    if "soft_mask" not in extras:
        return None
    tau = extras["soft_tau_g"]
    return SoftTokens(
        extras["soft_mask"],
        extras["soft_topk_ids"],
        extras["soft_perturbed"],
        float(tau[0]) if tau.numel() else 1.0,
    )


def soft_input_embeds(embedding: torch.Tensor, input_ids: torch.Tensor, soft: SoftTokens) -> Any:
    """[M, L, d] input embeddings: E[x] at ordinary positions, the detached mixture at soft ones."""
    embeds = torch.nn.functional.embedding(input_ids, embedding)
    if not bool(soft.mask.any()):
        return embeds
    y = soft_mixture_weights(soft.perturbed[soft.mask], soft.tau_g).to(embedding.dtype)
    mixture = torch.einsum("nk,nkd->nd", y, embedding[soft.topk_ids[soft.mask]]).detach()
    return embeds.masked_scatter(soft.mask[..., None], mixture)


def soft_token_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    target_mask: torch.Tensor,
    soft: SoftTokens,
    *,
    temperature: float = 1.0,
    soft_temperature: float = 1.0,
    impl: str = "fused",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp, entropy) [M, L-1] like :func:`rlvr.policy.token_logprobs`, soft steps
    reparameterised (module docstring)."""
    core = _unwrap(model)
    head = core.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise ValueError("LM heads with a bias are not supported by the fused log-prob path")
    embeds = soft_input_embeds(core.get_input_embeddings().weight, input_ids, soft)
    hidden = core.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask)
    hidden = hidden.last_hidden_state[:, :-1]
    targets = input_ids[:, 1:].masked_fill(target_mask[:, 1:] == 0, IGNORE)
    kernel = {"fused": logprob_entropy, "naive": naive_logprob_entropy}.get(impl)
    if kernel is None:
        raise ValueError(f"train.logprob_impl must be 'fused' or 'naive', got {impl!r}")
    logp, ent = kernel(hidden, head.weight, targets, temperature, ignore_index=IGNORE)
    step = soft.mask[:, 1:] & (target_mask[:, 1:] > 0)
    if bool(step.any()):
        ids = soft.topk_ids[:, 1:][step]  # [S, k]
        h = hidden[step]  # [S, d]
        topk_logits = torch.einsum("sd,skd->sk", h, head.weight[ids])
        soft_lp = soft_step_logprob_topk(topk_logits, soft.perturbed[:, 1:][step], soft_temperature)
        logp = logp.masked_scatter(step, soft_lp.to(logp.dtype))
    return logp, ent


def policy_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    target_mask: torch.Tensor,
    soft: SoftTokens | None,
    *,
    temperature: float = 1.0,
    soft_temperature: float = 1.0,
    impl: str = "fused",
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`soft_token_logprobs` for rows with soft steps, :func:`token_logprobs` otherwise."""
    if soft is None or not bool(soft.mask.any()):
        return token_logprobs(
            model, input_ids, attention_mask, target_mask, temperature=temperature, impl=impl
        )
    return soft_token_logprobs(
        model,
        input_ids,
        attention_mask,
        target_mask,
        soft,
        temperature=temperature,
        soft_temperature=soft_temperature,
        impl=impl,
    )


def soft_step_fraction(completions: Sequence[Completion]) -> float | None:
    """Fraction of completion tokens that were soft steps; None without soft traces."""
    traces = [c.soft for c in completions if c.soft is not None]
    if not traces:
        return None
    total = sum(len(c.token_ids) for c in completions)
    return sum(sum(t.soft) for t in traces) / max(total, 1)
