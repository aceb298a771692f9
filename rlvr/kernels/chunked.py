"""Chunked (streaming) log-prob + entropy of a linear softmax head, as a torch autograd.Function.

For hidden states h [N, d], an output projection W [V, d], targets y [N] and temperature T,
with logits z = h W^T / T and p = softmax(z):

    logZ_i  = log sum_v exp(z_iv)
    logp_i  = z_{i,y_i} - logZ_i
    H_i     = logZ_i - E_p[z_i] = -sum_v p_iv log p_iv

Forward streams over vocabulary chunks (outer loop, so each slice of W is read once) and token
chunks (inner loop) with an online log-sum-exp that carries, per token, the running max m,
s = sum_v e^{z_v - m} and t = sum_v e^{z_v - m} (z_v - m). When the max moves from m to m',
with a = e^{m - m'}:  s' = a s + s_chunk,  t' = a (t + (m - m') s) + t_chunk.  At the end
logZ = m + log s and H = log s - t / s.  Only [N]-sized state and one [token_chunk,
vocab_chunk] tile of logits live at a time; the [N, V] logits are never materialised.

Backward (upstream gradients a_i = dL/dlogp_i and b_i = dL/dH_i) recomputes each tile of
logits from h and W and uses, per logit,

    dlogp_i/dz_iv = 1[v = y_i] - p_iv
    dH_i/dz_iv    = -p_iv (z_iv - E_p[z_i]) = -p_iv (log p_iv + H_i)
    dL/dz_iv      = a_i 1[v = y_i] - p_iv (a_i + b_i (log p_iv + H_i))

then dL/dh = (dL/dz / T) W and dL/dW = (dL/dz / T)^T h, accumulated tile by tile (the 1/T is
the chain rule through z = h W^T / T). Only logZ and H ([N] each) are saved from the forward.

Sources read to understand the technique (no code copied): Milakov & Gimelshein, "Online
normalizer calculation for softmax" (2018); Wijmans et al., "Cut Your Losses in Large-Vocabulary
Language Models" (Cut Cross-Entropy, 2024); the idea of chunked linear cross-entropy in Liger
Kernel's fused_linear_cross_entropy and verl's linear_cross_entropy (which also returns entropy).
"""

from __future__ import annotations

import math

import torch

# Elements of one [token_chunk, vocab_chunk] float32 tile. On CPU 2**21 (8 MiB) keeps the two
# live tile buffers inside a 32 MiB L3 cache; on GPUs larger tiles keep the matmuls efficient.
CPU_TILE_ELEMS = 1 << 21
CUDA_TILE_ELEMS = 1 << 26
CPU_VOCAB_CHUNK = 4096
CUDA_VOCAB_CHUNK = 32768


def auto_chunks(
    n_tokens: int,
    vocab: int,
    device: torch.device,
    vocab_chunk: int | None = None,
    token_chunk: int | None = None,
) -> tuple[int, int]:
    """Choose (vocab_chunk, token_chunk) from the shapes, honouring any value given."""
    on_cpu = device.type == "cpu"
    tile = CPU_TILE_ELEMS if on_cpu else CUDA_TILE_ELEMS
    if vocab_chunk is None:
        vocab_chunk = min(vocab, CPU_VOCAB_CHUNK if on_cpu else CUDA_VOCAB_CHUNK)
    if token_chunk is None:
        token_chunk = min(max(n_tokens, 1), max(1, tile // max(vocab_chunk, 1)))
    if vocab_chunk < 1 or token_chunk < 1:
        raise ValueError(f"chunk sizes must be >= 1, got {vocab_chunk=} {token_chunk=}")
    return max(1, min(vocab_chunk, vocab)), token_chunk


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """Matmul dtype: float32 on CPU (fast and exact there); the inputs' dtype on accelerators."""
    if hidden.device.type == "cpu":
        return torch.float64 if torch.float64 in (hidden.dtype, weight.dtype) else torch.float32
    return torch.promote_types(hidden.dtype, weight.dtype)


def _tile_buffer(
    buf: torch.Tensor | None, rows: int, cols: int, dtype: torch.dtype
) -> torch.Tensor | None:
    """A contiguous [rows, cols] view of a preallocated flat buffer (None: allocate per tile)."""
    if buf is None or buf.dtype != dtype:
        return None
    return buf[: rows * cols].view(rows, cols)


def _tile_logits(
    h_tile: torch.Tensor, w_chunk: torch.Tensor, inv_t: float, out: torch.Tensor | None
) -> torch.Tensor:
    """float32 (or float64) logits z = h w^T / T of one tile, written into ``out`` if given."""
    if out is not None and h_tile.dtype == out.dtype:
        z = torch.mm(h_tile, w_chunk.T, out=out)
    else:
        z = h_tile @ w_chunk.T
        if z.dtype not in (torch.float32, torch.float64):
            z = z.float()
    if inv_t != 1.0:
        z.mul_(inv_t)
    return z


def _exp_into(x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    return torch.exp(x) if out is None else torch.exp(x, out=out)


def chunked_forward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    vocab_chunk: int,
    token_chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (logp, entropy, logZ), each [N]; hidden [N, d], weight [V, d], targets in [0, V)."""
    n_tokens, vocab = hidden.shape[0], weight.shape[0]
    cdt = _compute_dtype(hidden, weight)
    acc = torch.float64 if cdt == torch.float64 else torch.float32
    inv_t = 1.0 / temperature
    dev = hidden.device
    h = hidden.to(cdt)
    m = torch.full((n_tokens,), -math.inf, dtype=acc, device=dev)
    s = torch.zeros(n_tokens, dtype=acc, device=dev)
    t = torch.zeros(n_tokens, dtype=acc, device=dev)
    zy = torch.zeros(n_tokens, dtype=acc, device=dev)
    # two tile buffers reused by every tile: logits and their exponentials.
    tile = min(token_chunk, n_tokens) * min(vocab_chunk, vocab)
    z_buf = torch.empty(tile, dtype=acc, device=dev)
    e_buf = torch.empty(tile, dtype=acc, device=dev)
    for v0 in range(0, vocab, vocab_chunk):
        v1 = min(vocab, v0 + vocab_chunk)
        w_chunk = weight[v0:v1].to(cdt)
        local = targets - v0
        in_chunk = (local >= 0) & (local < v1 - v0)
        local = local.clamp(0, v1 - v0 - 1).unsqueeze(1)
        for n0 in range(0, n_tokens, token_chunk):
            n1 = min(n_tokens, n0 + token_chunk)
            z_out = _tile_buffer(z_buf, n1 - n0, v1 - v0, cdt)
            z = _tile_logits(h[n0:n1], w_chunk, inv_t, z_out)
            # target logit, taken from the same tile that feeds logZ (sync-free gather).
            zy[n0:n1] = torch.where(
                in_chunk[n0:n1], z.gather(1, local[n0:n1]).squeeze(1), zy[n0:n1]
            )
            m_old = m[n0:n1]
            m_new = torch.maximum(m_old, z.amax(dim=1))
            z.sub_(m_new.unsqueeze(1))
            e = _exp_into(z, _tile_buffer(e_buf, n1 - n0, v1 - v0, acc))
            s_c = e.sum(dim=1)
            t_c = torch.linalg.vecdot(e, z, dim=1)
            if v0 == 0:
                s[n0:n1] = s_c
                t[n0:n1] = t_c
            else:
                diff = m_old - m_new
                a = torch.exp(diff)
                t[n0:n1] = a * (t[n0:n1] + diff * s[n0:n1]) + t_c
                s[n0:n1] = a * s[n0:n1] + s_c
            m[n0:n1] = m_new
            del z, e
    log_s = torch.log(s)
    logz = m + log_s
    entropy = log_s - t / s
    logp = zy - logz
    return logp, entropy, logz


def chunked_backward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    logz: torch.Tensor,
    entropy: torch.Tensor,
    grad_logp: torch.Tensor | None,
    grad_ent: torch.Tensor | None,
    temperature: float,
    vocab_chunk: int,
    token_chunk: int,
    need_hidden: bool,
    need_weight: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients (dL/dhidden, dL/dweight) by recomputing logits tile by tile."""
    n_tokens, vocab = hidden.shape[0], weight.shape[0]
    cdt = _compute_dtype(hidden, weight)
    acc = torch.float64 if cdt == torch.float64 else torch.float32
    inv_t = 1.0 / temperature
    h = hidden.to(cdt)
    grad_h = torch.zeros(hidden.shape, dtype=acc, device=hidden.device) if need_hidden else None
    grad_w = torch.empty_like(weight) if need_weight else None
    tile = min(token_chunk, n_tokens) * min(vocab_chunk, vocab)
    g_buf = torch.empty(tile, dtype=acc, device=hidden.device)
    p_buf = torch.empty(tile, dtype=acc, device=hidden.device)
    ga = grad_logp.to(acc) if grad_logp is not None else None
    gb = grad_ent.to(acc) if grad_ent is not None else None
    for v0 in range(0, vocab, vocab_chunk):
        v1 = min(vocab, v0 + vocab_chunk)
        w_chunk = weight[v0:v1].to(cdt)
        if need_weight:
            gw_chunk = grad_w[v0:v1] if grad_w.dtype == acc else None
            if gw_chunk is None:
                gw_chunk = torch.zeros((v1 - v0, weight.shape[1]), dtype=acc, device=weight.device)
            else:
                gw_chunk.zero_()
        if ga is not None:
            local = targets - v0
            in_chunk = (local >= 0) & (local < v1 - v0)
            local = local.clamp(0, v1 - v0 - 1).unsqueeze(1)
            ga_in_chunk = torch.where(in_chunk, ga, torch.zeros_like(ga)).unsqueeze(1)
        for n0 in range(0, n_tokens, token_chunk):
            n1 = min(n_tokens, n0 + token_chunk)
            g_out = _tile_buffer(g_buf, n1 - n0, v1 - v0, cdt)
            g = _tile_logits(h[n0:n1], w_chunk, inv_t, g_out)
            g.sub_(logz[n0:n1].unsqueeze(1))  # log p
            p = _exp_into(g, _tile_buffer(p_buf, n1 - n0, v1 - v0, acc))
            if gb is not None:
                # g <- -p * (a + b * (log p + H))
                g.add_(entropy[n0:n1].unsqueeze(1)).mul_(gb[n0:n1].unsqueeze(1))
                if ga is not None:
                    g.add_(ga[n0:n1].unsqueeze(1))
                g.mul_(p).neg_()
                del p
            else:
                del g
                g = p.mul_(ga[n0:n1].neg().unsqueeze(1))
            if ga is not None:
                g.scatter_add_(1, local[n0:n1], ga_in_chunk[n0:n1])
            if inv_t != 1.0:
                g.mul_(inv_t)
            g_c = g.to(cdt)
            if need_hidden:
                if g_c.dtype == acc:
                    grad_h[n0:n1].addmm_(g_c, w_chunk)
                else:
                    grad_h[n0:n1] += (g_c @ w_chunk).to(acc)
            if need_weight:
                if g_c.dtype == acc:
                    gw_chunk.addmm_(g_c.T, h[n0:n1])
                else:
                    gw_chunk += (g_c.T @ h[n0:n1]).to(acc)
            del g, g_c
        if need_weight and gw_chunk.data_ptr() != grad_w[v0:v1].data_ptr():
            grad_w[v0:v1] = gw_chunk.to(grad_w.dtype)
    if grad_h is not None:
        grad_h = grad_h.to(hidden.dtype)
    return grad_h, grad_w


class ChunkedLogprobEntropy(torch.autograd.Function):
    """autograd.Function over valid rows only: hidden [N, d], weight [V, d], targets [N] in [0, V)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        vocab_chunk: int,
        token_chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logp, entropy, logz = chunked_forward(
            hidden, weight, targets, temperature, vocab_chunk, token_chunk
        )
        ctx.save_for_backward(hidden, weight, targets, logz, entropy)
        ctx.temperature = temperature
        ctx.chunks = (vocab_chunk, token_chunk)
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
        nothing = (None, None, None, None, None, None)
        if hidden.shape[0] == 0 or (grad_logp is None and grad_ent is None):
            return nothing
        if not (need_h or need_w):
            return nothing
        grad_h, grad_w = chunked_backward(
            hidden, weight, targets, logz, entropy, grad_logp, grad_ent,
            ctx.temperature, *ctx.chunks, need_h, need_w,
        )
        return grad_h, grad_w, None, None, None, None
