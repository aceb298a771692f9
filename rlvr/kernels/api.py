"""Public entry point: per-token log-prob and entropy of softmax(h W^T / T) without [N, V] logits.

    logp_i = log softmax(h_i W^T / T)[y_i],    H_i = -sum_v p_iv log p_iv

Rows whose target equals ``ignore_index`` are dropped before any compute and get logp = 0,
H = 0 and no gradient. The remaining rows go to the Triton kernels (CUDA tensors, when
``triton`` imports) or to the chunked torch autograd.Function (everywhere else); both stream
over vocabulary chunks with an online log-sum-exp and recompute logits in the backward pass.
See ``rlvr/kernels/chunked.py`` for the formulas and sources, ``docs/kernels.md`` for the
memory model and measured figures.
"""

from __future__ import annotations

import os
from typing import Literal

import torch

from rlvr.kernels.chunked import ChunkedLogprobEntropy, auto_chunks

Backend = Literal["auto", "torch", "triton"]


def _triton_available() -> bool:
    try:
        from rlvr.kernels import triton_kernel
    except ImportError:
        return False
    return triton_kernel.HAVE_TRITON


def logprob_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    *,
    ignore_index: int = -100,
    vocab_chunk: int | None = None,
    token_chunk: int | None = None,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``targets`` and entropy under softmax(hidden @ weight.T / temperature).

    Args:
        hidden: final hidden states ``[N, d]`` (or ``[..., d]`` matching ``targets[...]``).
        weight: LM-head / unembedding matrix ``[V, d]`` (may be tied to the input embedding).
        targets: token ids ``[N]``; entries equal to ``ignore_index`` are skipped.
        temperature: softmax temperature T > 0 (logits are divided by it).
        ignore_index: target value marking padded positions (logp = 0, entropy = 0, no grad).
        vocab_chunk, token_chunk: tile sizes; chosen from the shapes and device when None.
        backend: "auto" (Triton on CUDA when available, else torch), "torch" or "triton".
            The environment variable ``RLVR_KERNEL_BACKEND`` replaces "auto" when set.

    Returns:
        ``(logp, entropy)`` with the shape of ``targets``, float32 for float32/bfloat16/float16
        inputs (float64 for float64 inputs), differentiable w.r.t. ``hidden`` and ``weight``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be [V, d], got shape {tuple(weight.shape)}")
    d = weight.shape[1]
    if hidden.shape[-1] != d or hidden.shape[:-1] != targets.shape:
        raise ValueError(
            f"shape mismatch: hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)}, "
            f"targets {tuple(targets.shape)}; expected [..., d], [V, d], [...]"
        )
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"targets must be an integer tensor, got {targets.dtype}")
    out_dtype = torch.float64 if torch.float64 in (hidden.dtype, weight.dtype) else torch.float32
    vocab = weight.shape[0]
    h = hidden.reshape(-1, d)
    y = targets.reshape(-1).long()
    n_total = y.shape[0]

    valid = y != ignore_index
    all_valid = bool(valid.all())
    if all_valid:
        idx = None
        hv, yv = h, y
    else:
        idx = valid.nonzero().squeeze(1)
        hv, yv = h.index_select(0, idx), y.index_select(0, idx)
    if yv.numel() and (bool((yv < 0).any()) or bool((yv >= vocab).any())):
        raise ValueError(f"targets must lie in [0, {vocab}) or equal ignore_index={ignore_index}")

    if backend == "auto":
        backend = os.environ.get("RLVR_KERNEL_BACKEND", "auto")  # type: ignore[assignment]
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"unknown backend {backend!r}; expected 'auto', 'torch' or 'triton'")
    use_triton = hv.shape[0] > 0 and (
        backend == "triton" or (backend == "auto" and hv.is_cuda and _triton_available())
    )
    if use_triton:
        from rlvr.kernels.triton_kernel import triton_logprob_entropy

        logp_v, ent_v = triton_logprob_entropy(
            hv, weight, yv, temperature, vocab_chunk=vocab_chunk, token_chunk=token_chunk
        )
    else:  # chunked torch path (also for zero valid rows)
        vc, tc = auto_chunks(hv.shape[0], vocab, hv.device, vocab_chunk, token_chunk)
        logp_v, ent_v = ChunkedLogprobEntropy.apply(
            hv.contiguous(), weight, yv, float(temperature), vc, tc
        )

    logp_v, ent_v = logp_v.to(out_dtype), ent_v.to(out_dtype)
    if idx is not None:
        zeros = torch.zeros(n_total, dtype=out_dtype, device=hidden.device)
        logp_v = zeros.index_copy(0, idx, logp_v)
        ent_v = zeros.index_copy(0, idx, ent_v)
    return logp_v.reshape(targets.shape), ent_v.reshape(targets.shape)
