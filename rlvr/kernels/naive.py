"""Naive (reference) per-token log-prob and entropy of a linear softmax head.

For hidden states h [N, d], an output projection W [V, d], targets y [N] and temperature T:

    z      = h W^T / T                       (logits, [N, V], materialised in full)
    log p  = z - logsumexp(z)                (log_softmax over the vocabulary)
    logp_i = log p[i, y_i]
    H_i    = -sum_v p[i, v] log p[i, v]

This is what a trainer does without the fused kernel: the LM head runs in full, the [N, V]
logits are cast to float32 and autograd keeps their softmax for the backward pass. It is the
value/gradient reference for `rlvr.kernels.chunked` and `rlvr.kernels.triton_kernel` (called
with float64 inputs in the tests) and the "naive" arm of `scripts/bench_kernel.py`.
"""

from __future__ import annotations

import torch


def naive_logprob_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    *,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(logp, entropy)`` of softmax(hidden @ weight.T / temperature), computed in full.

    Results are float32 for float32/bfloat16/float16 inputs and float64 for float64 inputs
    (the latter is the test reference). Positions whose target equals ``ignore_index`` get
    ``logp = 0`` and ``entropy = 0`` and no gradient.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    out_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    d = hidden.shape[-1]
    h = hidden.reshape(-1, d)
    y = targets.reshape(-1)
    logits = (h @ weight.T).to(out_dtype) / temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    valid = y != ignore_index
    safe_y = torch.where(valid, y, torch.zeros_like(y))
    logp = logprobs.gather(-1, safe_y.unsqueeze(-1)).squeeze(-1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    zero = torch.zeros((), dtype=out_dtype, device=logp.device)
    logp = torch.where(valid, logp, zero)
    entropy = torch.where(valid, entropy, zero)
    return logp.reshape(targets.shape), entropy.reshape(targets.shape)
