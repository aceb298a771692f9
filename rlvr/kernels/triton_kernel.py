"""Triton (CUDA) log-prob + entropy of a linear softmax head, never materialising [N, V] logits.

Same maths as ``rlvr/kernels/chunked.py`` (z = h W^T / T, p = softmax(z)):

    logp_i = z_{i,y_i} - logZ_i,    H_i = logZ_i - E_p[z_i]
    dL/dz_iv = a_i 1[v = y_i] - p_iv (a_i + b_i (log p_iv + H_i))       (a = dL/dlogp, b = dL/dH)

Forward: one fused kernel. Program (token block, vocab split) computes tiles of logits with
``tl.dot`` (fp32 accumulation; IEEE fp32 for fp32 inputs) and keeps, per token, the running
max m, s = sum e^{z-m}, t = sum e^{z-m} (z-m) and the target logit, over its vocabulary split.
The splits are merged in torch with the same rescaling rule (a = e^{m - m'}: s' = a s,
t' = a (t + (m - m') s)); logZ = m + log s, H = log s - t / s.

Backward: per vocabulary chunk a kernel recomputes the logits of the chunk and writes
dL/du = (dL/dz) / T (u = h W^T) in the inputs' dtype into an [N, chunk] buffer; cuBLAS then does
dL/dh += G W_c and dL/dW_c = G^T h. Memory: inputs, their gradients, [N] state and one
[N, vocab_chunk] buffer.

Sources read (no code copied): Milakov & Gimelshein 2018 (online softmax); Dao et al. 2022
(FlashAttention tiling and split-K style merging); Wijmans et al. 2024 (Cut Cross-Entropy);
Triton's matmul tutorial for the tile loop.

Status: written against Triton 3.x and checked on CPU with ``TRITON_INTERPRET=1`` (values and
gradients vs the float64 reference, tests/test_kernels.py); NOT yet run or timed on a GPU.
"""

from __future__ import annotations

import math
import os

import torch

try:
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - exercised only where triton is absent
    HAVE_TRITON = False

BLOCK_N = 64
BLOCK_V = 128
BLOCK_K = 64
# bytes of the [N, vocab_chunk] gradient buffer in the backward pass
GRAD_BUFFER_BYTES = 256 * 1024 * 1024


if HAVE_TRITON:

    @triton.jit
    def _logits_tile(
        h_ptr,
        w_ptr,
        offs_n,
        offs_v,
        mask_n,
        mask_v,
        D,
        stride_hn,
        stride_wv,
        BLOCK_N: tl.constexpr,
        BLOCK_V: tl.constexpr,
        BLOCK_K: tl.constexpr,
        IEEE: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        acc = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
        for k0 in range(0, D, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < D
            hb = tl.load(
                h_ptr + offs_n[:, None] * stride_hn + offs_k[None, :],
                mask=mask_n[:, None] & mask_k[None, :],
                other=0.0,
            )
            wb = tl.load(
                w_ptr + offs_v[None, :] * stride_wv + offs_k[:, None],
                mask=mask_v[None, :] & mask_k[:, None],
                other=0.0,
            )
            if UPCAST:  # only under TRITON_INTERPRET, whose bf16 tl.dot is wrong on CPU
                hb = hb.to(tl.float32)
                wb = wb.to(tl.float32)
            if IEEE:
                acc = tl.dot(hb, wb, acc, input_precision="ieee")
            else:
                acc = tl.dot(hb, wb, acc)
        return acc

    @triton.jit
    def _fwd_kernel(
        h_ptr,
        w_ptr,
        y_ptr,
        m_ptr,
        s_ptr,
        t_ptr,
        zy_ptr,
        N,
        V,
        D,
        stride_hn,
        stride_wv,
        v_per_split,
        inv_t,
        BLOCK_N: tl.constexpr,
        BLOCK_V: tl.constexpr,
        BLOCK_K: tl.constexpr,
        IEEE: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        pid_n = tl.program_id(0)
        pid_s = tl.program_id(1)
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        mask_n = offs_n < N
        y = tl.load(y_ptr + offs_n, mask=mask_n, other=-1)
        m = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
        s = tl.zeros((BLOCK_N,), dtype=tl.float32)
        t = tl.zeros((BLOCK_N,), dtype=tl.float32)
        zy = tl.zeros((BLOCK_N,), dtype=tl.float32)
        v_start = pid_s * v_per_split
        v_end = tl.minimum(v_start + v_per_split, V)
        for v0 in range(v_start, v_end, BLOCK_V):
            offs_v = (v0 + tl.arange(0, BLOCK_V)).to(tl.int64)
            mask_v = offs_v < v_end
            acc = _logits_tile(
                h_ptr,
                w_ptr,
                offs_n,
                offs_v,
                mask_n,
                mask_v,
                D,
                stride_hn,
                stride_wv,
                BLOCK_N,
                BLOCK_V,
                BLOCK_K,
                IEEE,
                UPCAST,
            )
            z = acc * inv_t  # masked columns hold 0 (masked loads), excluded below
            hit = (offs_v[None, :] == y[:, None]) & mask_v[None, :]
            zy += tl.sum(tl.where(hit, z, 0.0), axis=1)
            m_new = tl.maximum(m, tl.max(tl.where(mask_v[None, :], z, float("-inf")), axis=1))
            zs = z - m_new[:, None]
            e = tl.where(mask_v[None, :], tl.exp(zs), 0.0)
            s_c = tl.sum(e, axis=1)
            t_c = tl.sum(e * zs, axis=1)
            alpha = tl.exp(m - m_new)  # 0 on the first block (m = -inf)
            shift = tl.where(s > 0, m - m_new, 0.0) * s
            t = alpha * (t + shift) + t_c
            s = alpha * s + s_c
            m = m_new
        out = pid_s * N + offs_n
        tl.store(m_ptr + out, m, mask=mask_n)
        tl.store(s_ptr + out, s, mask=mask_n)
        tl.store(t_ptr + out, t, mask=mask_n)
        tl.store(zy_ptr + out, zy, mask=mask_n)

    @triton.jit
    def _grad_logits_kernel(
        h_ptr,
        w_ptr,
        y_ptr,
        logz_ptr,
        a_ptr,
        nb_ptr,
        c_ptr,
        g_ptr,
        N,
        VC,
        D,
        v_base,
        stride_hn,
        stride_wv,
        stride_gn,
        inv_t,
        HAS_A: tl.constexpr,
        HAS_B: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_V: tl.constexpr,
        BLOCK_K: tl.constexpr,
        IEEE: tl.constexpr,
        UPCAST: tl.constexpr,
    ):
        pid_n = tl.program_id(0)
        pid_v = tl.program_id(1)
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        offs_c = (pid_v * BLOCK_V + tl.arange(0, BLOCK_V)).to(tl.int64)  # column in the chunk
        mask_n = offs_n < N
        mask_v = offs_c < VC
        offs_v = v_base + offs_c
        acc = _logits_tile(
            h_ptr,
            w_ptr,
            offs_n,
            offs_v,
            mask_n,
            mask_v,
            D,
            stride_hn,
            stride_wv,
            BLOCK_N,
            BLOCK_V,
            BLOCK_K,
            IEEE,
            UPCAST,
        )
        logz = tl.load(logz_ptr + offs_n, mask=mask_n, other=0.0)
        logp = acc * inv_t - logz[:, None]
        p = tl.exp(logp)
        if HAS_B:
            nb = tl.load(nb_ptr + offs_n, mask=mask_n, other=0.0)
            c = tl.load(c_ptr + offs_n, mask=mask_n, other=0.0)
            g = p * (nb[:, None] * logp - c[:, None])
        else:
            a_rows = tl.load(a_ptr + offs_n, mask=mask_n, other=0.0)
            g = -p * a_rows[:, None]
        if HAS_A:
            a = tl.load(a_ptr + offs_n, mask=mask_n, other=0.0)
            y = tl.load(y_ptr + offs_n, mask=mask_n, other=-1)
            g += tl.where(offs_v[None, :] == y[:, None], a[:, None], 0.0)
        g = g * inv_t
        tl.store(
            g_ptr + offs_n[:, None] * stride_gn + offs_c[None, :],
            g.to(g_ptr.dtype.element_ty),
            mask=mask_n[:, None] & mask_v[None, :],
        )


def _upcast(dtype: torch.dtype) -> bool:
    """Upcast bf16 tiles before tl.dot only in the CPU interpreter (its bf16 dot is broken)."""
    return dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET", "0") == "1"


def _num_splits(n_tokens: int, vocab: int, device: torch.device) -> int:
    """Vocabulary splits so that the forward grid has a few programs per SM."""
    n_blocks = max(1, math.ceil(n_tokens / BLOCK_N))
    sms = (
        torch.cuda.get_device_properties(device).multi_processor_count
        if device.type == "cuda"
        else 2
    )
    want = math.ceil(4 * sms / n_blocks)
    return max(1, min(want, math.ceil(vocab / BLOCK_V)))


def triton_forward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    num_splits: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logp, entropy, logZ) in float32 for contiguous hidden [N, d], weight [V, d]."""
    n_tokens, d = hidden.shape
    vocab = weight.shape[0]
    splits = num_splits or _num_splits(n_tokens, vocab, hidden.device)
    v_per_split = math.ceil(math.ceil(vocab / splits) / BLOCK_V) * BLOCK_V
    splits = math.ceil(vocab / v_per_split)
    f32 = {"dtype": torch.float32, "device": hidden.device}
    m = torch.empty((splits, n_tokens), **f32)
    s = torch.empty((splits, n_tokens), **f32)
    t = torch.empty((splits, n_tokens), **f32)
    zy = torch.empty((splits, n_tokens), **f32)
    grid = (math.ceil(n_tokens / BLOCK_N), splits)
    _fwd_kernel[grid](
        hidden,
        weight,
        targets,
        m,
        s,
        t,
        zy,
        n_tokens,
        vocab,
        d,
        hidden.stride(0),
        weight.stride(0),
        v_per_split,
        1.0 / temperature,
        BLOCK_N=BLOCK_N,
        BLOCK_V=BLOCK_V,
        BLOCK_K=BLOCK_K,
        IEEE=hidden.dtype == torch.float32,
        UPCAST=_upcast(hidden.dtype),
    )
    # merge the splits: every split holds at least one column, so s > 0 everywhere.
    m_all = m.amax(dim=0)
    alpha = torch.exp(m - m_all)
    s_all = (alpha * s).sum(dim=0)
    t_all = (alpha * (t + (m - m_all) * s)).sum(dim=0)
    log_s = torch.log(s_all)
    logz = m_all + log_s
    entropy = log_s - t_all / s_all
    logp = zy.sum(dim=0) - logz
    return logp, entropy, logz


def triton_backward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    logz: torch.Tensor,
    entropy: torch.Tensor,
    grad_logp: torch.Tensor | None,
    grad_ent: torch.Tensor | None,
    temperature: float,
    vocab_chunk: int | None,
    need_hidden: bool,
    need_weight: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    n_tokens, d = hidden.shape
    vocab = weight.shape[0]
    f32 = torch.float32
    a = grad_logp.float().contiguous() if grad_logp is not None else None
    nb = c = None
    if grad_ent is not None:
        b = grad_ent.float()
        nb = (-b).contiguous()
        c = (b * entropy if a is None else a + b * entropy).contiguous()
    dummy = logz  # any float32 pointer for absent arguments (never read)
    if vocab_chunk is None:
        per_row = max(1, n_tokens) * hidden.element_size()
        vocab_chunk = max(BLOCK_V, (GRAD_BUFFER_BYTES // per_row) // BLOCK_V * BLOCK_V)
    vocab_chunk = min(vocab_chunk, vocab)
    g_buf = torch.empty((n_tokens, vocab_chunk), dtype=hidden.dtype, device=hidden.device)
    grad_h = torch.zeros((n_tokens, d), dtype=f32, device=hidden.device) if need_hidden else None
    grad_w = torch.empty_like(weight) if need_weight else None
    for v0 in range(0, vocab, vocab_chunk):
        vc = min(vocab_chunk, vocab - v0)
        g = g_buf[:, :vc]
        grid = (math.ceil(n_tokens / BLOCK_N), math.ceil(vc / BLOCK_V))
        _grad_logits_kernel[grid](
            hidden,
            weight,
            targets,
            logz,
            a if a is not None else dummy,
            nb if nb is not None else dummy,
            c if c is not None else dummy,
            g,
            n_tokens,
            vc,
            d,
            v0,
            hidden.stride(0),
            weight.stride(0),
            g_buf.stride(0),
            1.0 / temperature,
            HAS_A=a is not None,
            HAS_B=nb is not None,
            BLOCK_N=BLOCK_N,
            BLOCK_V=BLOCK_V,
            BLOCK_K=BLOCK_K,
            IEEE=hidden.dtype == torch.float32,
            UPCAST=_upcast(hidden.dtype),
        )
        w_c = weight[v0 : v0 + vc]
        if grad_h is not None:
            grad_h += (g @ w_c).float()
        if grad_w is not None:
            torch.mm(g.T, hidden, out=grad_w[v0 : v0 + vc])
    if grad_h is not None:
        grad_h = grad_h.to(hidden.dtype)
    return grad_h, grad_w


class TritonLogprobEntropy(torch.autograd.Function):
    """autograd.Function over valid rows: hidden [N, d], weight [V, d] (same dtype), targets."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        vocab_chunk: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logp, entropy, logz = triton_forward(hidden, weight, targets, temperature)
        ctx.save_for_backward(hidden, weight, targets, logz, entropy)
        ctx.temperature = temperature
        ctx.vocab_chunk = vocab_chunk
        ctx.set_materialize_grads(False)
        return logp, entropy

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        grad_logp: torch.Tensor | None,
        grad_ent: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, targets, logz, entropy = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if hidden.shape[0] == 0 or (grad_logp is None and grad_ent is None):
            return None, None, None, None, None
        if not (need_h or need_w):
            return None, None, None, None, None
        grad_h, grad_w = triton_backward(
            hidden,
            weight,
            targets,
            logz,
            entropy,
            grad_logp,
            grad_ent,
            ctx.temperature,
            ctx.vocab_chunk,
            need_h,
            need_w,
        )
        return grad_h, grad_w, None, None, None


def triton_logprob_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    *,
    vocab_chunk: int | None = None,
    token_chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton path for valid rows (targets in [0, V)); ``token_chunk`` is accepted and unused
    (the kernels tile tokens themselves). Mixed input dtypes are promoted first."""
    del token_chunk
    if not HAVE_TRITON:
        raise RuntimeError("triton is not installed")
    dtype = torch.promote_types(hidden.dtype, weight.dtype)
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"triton path supports fp32/fp16/bf16, got {dtype}")
    h = hidden.to(dtype).contiguous()
    w = weight.to(dtype).contiguous()
    return TritonLogprobEntropy.apply(h, w, targets.contiguous(), float(temperature), vocab_chunk)
