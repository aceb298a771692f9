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
logZ = m + log s and H = log s - t / s.  Only [N]-sized state and two [token_chunk,
vocab_chunk] tile buffers (logits, exponentials) live at a time; the [N, V] logits are never
materialised.

Backward (upstream gradients a_i = dL/dlogp_i and b_i = dL/dH_i) recomputes each tile of
logits from h and W and uses, per logit,

    dlogp_i/dz_iv = 1[v = y_i] - p_iv
    dH_i/dz_iv    = -p_iv (z_iv - E_p[z_i]) = -p_iv (log p_iv + H_i)
    dL/dz_iv      = a_i 1[v = y_i] - p_iv (a_i + b_i (log p_iv + H_i))

then dL/dh = (dL/dz / T) W and dL/dW = (dL/dz / T)^T h, accumulated tile by tile (the 1/T is
the chain rule through z = h W^T / T). Only logZ and H ([N] each) are saved from the forward.

Sources: Milakov & Gimelshein, "Online normalizer calculation for softmax" (2018); Wijmans et
al., "Cut Your Losses in Large-Vocabulary Language Models" (Cut Cross-Entropy, 2024). The same
idea (linear layer + cross-entropy without [N, V] logits) is implemented in Liger Kernel's
fused_linear_cross_entropy and in verl's linear cross-entropy-with-entropy kernel; no code was
copied from them. The gradient formulas above were derived by hand and are checked against
float64 autograd in tests/test_kernels.py.
"""

from __future__ import annotations

import math

import torch

# Elements of one [token_chunk, vocab_chunk] float32 tile. On CPU 2**21 (8 MiB; 512 x 4096):
# the two live tile buffers stay inside a 32 MiB L3 (2**22 was ~1.5x slower on an idle 2-core
# box), while tiles much smaller than this multiply the per-op threading overhead, which
# dominates when the cores are shared. On GPUs larger tiles keep the matmuls efficient.
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


class _Setup:
    """Dtypes, the (possibly pre-scaled) hidden states and the two reusable tile buffers."""

    def __init__(
        self, hidden: torch.Tensor, weight: torch.Tensor, temperature: float, tile: int
    ) -> None:
        self.cdt = _compute_dtype(hidden, weight)
        self.acc = torch.float64 if self.cdt == torch.float64 else torch.float32
        self.inv_t = 1.0 / temperature
        # When matmuls run in the accumulation dtype, 1/T is folded into h once ([N, d]) instead
        # of scaling every tile: h_s = h / T, z = h_s W^T, dL/dW = (dL/dz)^T h_s,
        # dL/dh = (dL/dz) W / T. Otherwise (bf16/fp16 matmuls) tiles are scaled after the cast.
        self.prescaled = self.cdt == self.acc
        h = hidden.to(self.cdt)
        if self.prescaled and self.inv_t != 1.0:
            h = h * self.inv_t
        self.h = h
        self.tile_scale = 1.0 if self.prescaled else self.inv_t
        self.buffers = [
            torch.empty(tile, dtype=self.acc, device=hidden.device) if self.prescaled else None
            for _ in range(2)
        ]

    def logits(self, rows: slice, w_chunk: torch.Tensor) -> torch.Tensor:
        """float32 (float64) logits z = h W_c^T / T of one tile, in the first tile buffer."""
        h_tile = self.h[rows]
        buf = self.buffers[0]
        if buf is not None:
            out = buf[: h_tile.shape[0] * w_chunk.shape[0]].view(h_tile.shape[0], -1)
            return torch.mm(h_tile, w_chunk.T, out=out)
        z = (h_tile @ w_chunk.T).to(self.acc)
        if self.tile_scale != 1.0:
            z.mul_(self.tile_scale)
        return z

    def exp(self, x: torch.Tensor) -> torch.Tensor:
        """exp(x) into the second tile buffer."""
        buf = self.buffers[1]
        if buf is None:
            return torch.exp(x)
        return torch.exp(x, out=buf[: x.numel()].view(x.shape))


def _target_columns(targets: torch.Tensor, v0: int, v1: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(in_chunk [N] bool, column [N, 1] clamped into the chunk) for vocab chunk [v0, v1)."""
    local = targets - v0
    in_chunk = (local >= 0) & (local < v1 - v0)
    return in_chunk, local.clamp(0, v1 - v0 - 1).unsqueeze(1)


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
    st = _Setup(hidden, weight, temperature, min(token_chunk, n_tokens) * min(vocab_chunk, vocab))
    dev = hidden.device
    m = torch.full((n_tokens,), -math.inf, dtype=st.acc, device=dev)
    s = torch.zeros(n_tokens, dtype=st.acc, device=dev)
    t = torch.zeros(n_tokens, dtype=st.acc, device=dev)
    zy = torch.zeros(n_tokens, dtype=st.acc, device=dev)
    for v0 in range(0, vocab, vocab_chunk):  # each slice of W is read (and cast) once
        v1 = min(vocab, v0 + vocab_chunk)
        w_chunk = weight[v0:v1].to(st.cdt)
        in_chunk, col = _target_columns(targets, v0, v1)
        for n0 in range(0, n_tokens, token_chunk):
            rows = slice(n0, min(n_tokens, n0 + token_chunk))
            z = st.logits(rows, w_chunk)
            # target logit from the same tile that feeds logZ (sync-free gather).
            zy[rows] = torch.where(in_chunk[rows], z.gather(1, col[rows]).squeeze(1), zy[rows])
            m_old = m[rows]
            m_new = torch.maximum(m_old, z.amax(dim=1))
            z.sub_(m_new.unsqueeze(1))
            e = st.exp(z)
            s_c = e.sum(dim=1)
            t_c = torch.linalg.vecdot(e, z, dim=1)
            if v0 == 0:
                s[rows] = s_c
                t[rows] = t_c
            else:
                shift = m_old - m_new
                a = torch.exp(shift)
                t[rows] = a * (t[rows] + shift * s[rows]) + t_c
                s[rows] = a * s[rows] + s_c
            m[rows] = m_new
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
    st = _Setup(hidden, weight, temperature, min(token_chunk, n_tokens) * min(vocab_chunk, vocab))
    acc, cdt = st.acc, st.cdt
    dev = hidden.device
    grad_h = torch.zeros(hidden.shape, dtype=acc, device=dev) if need_hidden else None
    grad_w = torch.empty_like(weight) if need_weight else None
    # Per-row coefficients, with the tile scale (1/T when h is not pre-scaled) folded in:
    #   dL/dz = a 1[v = y] - p (a + b (log p + H)) = a 1[v = y] + p (nb log p - c)
    #   with nb = -b and c = a + b H.
    k = st.tile_scale
    a = grad_logp.to(acc) * k if grad_logp is not None else None
    if grad_ent is not None:
        b = grad_ent.to(acc) * k
        nb = (-b).unsqueeze(1)
        c = (b * entropy if a is None else a + b * entropy).unsqueeze(1)
    for v0 in range(0, vocab, vocab_chunk):
        v1 = min(vocab, v0 + vocab_chunk)
        w_chunk = weight[v0:v1].to(cdt)
        gw_chunk = None
        if need_weight:
            if grad_w.dtype == acc:
                gw_chunk = grad_w[v0:v1].zero_()
            else:
                gw_chunk = torch.zeros((v1 - v0, weight.shape[1]), dtype=acc, device=dev)
        if a is not None:
            in_chunk, col = _target_columns(targets, v0, v1)
            a_in_chunk = torch.where(in_chunk, a, torch.zeros_like(a)).unsqueeze(1)
        for n0 in range(0, n_tokens, token_chunk):
            rows = slice(n0, min(n_tokens, n0 + token_chunk))
            g = st.logits(rows, w_chunk)
            g.sub_(logz[rows].unsqueeze(1))  # log p
            p = st.exp(g)
            if grad_ent is not None:
                g.mul_(nb[rows]).sub_(c[rows]).mul_(p)
            else:
                g = p.mul_(-a[rows].unsqueeze(1))
            if a is not None:
                g.scatter_add_(1, col[rows], a_in_chunk[rows])
            if g.dtype == cdt:
                if grad_h is not None:
                    grad_h[rows].addmm_(g, w_chunk)
                if gw_chunk is not None:
                    gw_chunk.addmm_(g.T, st.h[rows])
            else:  # bf16/fp16 matmuls on accelerators, fp32 accumulation
                g_c = g.to(cdt)
                if grad_h is not None:
                    grad_h[rows] += (g_c @ w_chunk).to(acc)
                if gw_chunk is not None:
                    gw_chunk += (g_c.T @ st.h[rows]).to(acc)
        if gw_chunk is not None and gw_chunk.dtype != grad_w.dtype:
            grad_w[v0:v1] = gw_chunk.to(grad_w.dtype)
    if grad_h is not None:
        if st.prescaled and st.inv_t != 1.0:
            grad_h.mul_(st.inv_t)
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
            hidden,
            weight,
            targets,
            logz,
            entropy,
            grad_logp,
            grad_ent,
            ctx.temperature,
            *ctx.chunks,
            need_h,
            need_w,
        )
        return grad_h, grad_w, None, None, None, None
