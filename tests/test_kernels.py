"""Fused log-prob + entropy kernel vs a float64 naive reference (values and gradients).

Reference: ``naive_logprob_entropy`` on float64 copies of the inputs, which materialises
log_softmax(h W^T / T) and lets autograd differentiate it. Tolerances: float32 inputs
rtol 1e-4 / atol 1e-5 (values) and rtol 1e-4 / atol 1e-5 (grads); float64 inputs 1e-10;
bf16/fp16 inputs: values rtol 1e-4 / atol 1e-4 (the CPU path computes in float32 from the
exactly representable half-precision inputs), gradients rtol/atol 1e-2 (they are returned in
the inputs' half-precision dtype, ~3 significant digits); the bf16-matmul branch (used on
accelerators, forced here) 2e-2 for values and gradients (its logits are rounded to bf16).
Triton kernels (CPU interpreter, or CUDA when present): relative L2 error of logp and entropy
< 1e-5, of gradients < 1e-5 (fp32) / 2e-2 (fp16, bf16).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import rlvr.kernels.api as kernels_api
from rlvr.kernels import logprob_entropy, naive_logprob_entropy
from rlvr.kernels.chunked import auto_chunks

FP32_TOL = {"rtol": 1e-4, "atol": 1e-5}


def _inputs(n: int, d: int, v: int, seed: int = 0, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale
    weight = torch.randn(v, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
    targets = torch.randint(0, v, (n,), generator=gen)
    a = torch.randn(n, generator=gen, dtype=torch.float64)
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    return hidden, weight, targets, a, b


def _run(fn, hidden, weight, targets, a, b, dtype, temperature, **kw):
    """Values and grads of sum(a * logp + b * entropy) w.r.t. hidden and weight."""
    h = hidden.to(dtype).requires_grad_()
    w = weight.to(dtype).requires_grad_()
    logp, ent = fn(h, w, targets, temperature, **kw)
    loss = (a.to(logp.dtype) * logp + b.to(ent.dtype) * ent).sum()
    gh, gw = torch.autograd.grad(loss, (h, w))
    return logp, ent, gh, gw


def _reference(hidden, weight, targets, a, b, temperature, **kw):
    return _run(
        naive_logprob_entropy,
        hidden.double(),
        weight.double(),
        targets,
        a,
        b,
        torch.float64,
        temperature,
        **kw,
    )


def _close(got, ref, **tol):
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g.double(), r, **tol)


def test_hand_computed_values():
    # logits [0, ln 3] -> p = [1/4, 3/4]; at T = 2 -> logits [0, ln(3)/2], p ∝ [1, sqrt(3)].
    hidden = torch.tensor([[1.0], [1.0]])
    weight = torch.tensor([[0.0], [math.log(3.0)]])
    targets = torch.tensor([1, 0])
    logp, ent = logprob_entropy(hidden, weight, targets)
    h_ref = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    torch.testing.assert_close(logp, torch.tensor([math.log(0.75), math.log(0.25)]))
    torch.testing.assert_close(ent, torch.tensor([h_ref, h_ref]))
    logp, ent = logprob_entropy(hidden, weight, targets, temperature=2.0)
    p1 = math.sqrt(3.0) / (1.0 + math.sqrt(3.0))
    h_ref = -(p1 * math.log(p1) + (1 - p1) * math.log(1 - p1))
    torch.testing.assert_close(logp, torch.tensor([math.log(p1), math.log(1 - p1)]))
    torch.testing.assert_close(ent, torch.tensor([h_ref, h_ref]))
    assert logp.dtype == ent.dtype == torch.float32


def test_hand_computed_gradient():
    # d logp / dz = onehot - p, dH/dz = -p (z - E_p z); z = h W^T with d = 1, h = 1.
    hidden = torch.tensor([[1.0]], requires_grad=True)
    weight = torch.tensor([[0.0], [math.log(3.0)]], requires_grad=True)
    logp, ent = logprob_entropy(hidden, weight, torch.tensor([1]))
    (logp.sum() + ent.sum()).backward()
    p = torch.tensor([0.25, 0.75])
    z = torch.tensor([0.0, math.log(3.0)])
    dz = torch.tensor([0.0, 1.0]) - p - p * (z - (p * z).sum())
    torch.testing.assert_close(weight.grad, dz.unsqueeze(1))  # dL/dW = dz^T h, h = 1
    torch.testing.assert_close(hidden.grad, (dz.unsqueeze(0) @ weight.detach()))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
@pytest.mark.parametrize("chunks", [(None, None), (7, 5), (13, 64), (1000, 1)])
def test_fp32_matches_float64_reference(temperature, chunks):
    vocab_chunk, token_chunk = chunks  # 7 and 13 divide neither V = 61 nor N = 23
    hidden, weight, targets, a, b = _inputs(23, 16, 61, seed=1, scale=2.0)
    got = _run(
        logprob_entropy,
        hidden,
        weight,
        targets,
        a,
        b,
        torch.float32,
        temperature,
        vocab_chunk=vocab_chunk,
        token_chunk=token_chunk,
    )
    ref = _reference(hidden, weight, targets, a, b, temperature)
    assert got[0].dtype == got[1].dtype == torch.float32
    assert got[2].dtype == got[3].dtype == torch.float32
    _close(got, ref, **FP32_TOL)


@pytest.mark.parametrize("temperature", [0.5, 1.7])
def test_float64_inputs_match_to_1e10(temperature):
    # float64 end to end: any error in the online update or the gradient formula shows here.
    hidden, weight, targets, a, b = _inputs(19, 8, 53, seed=2, scale=3.0)
    got = _run(
        logprob_entropy,
        hidden,
        weight,
        targets,
        a,
        b,
        torch.float64,
        temperature,
        vocab_chunk=6,
        token_chunk=4,
    )
    ref = _reference(hidden, weight, targets, a, b, temperature)
    _close(got, ref, rtol=1e-10, atol=1e-10)


def test_large_logits_are_stable():
    # logits of order 1e3 with the max in a late chunk: the running max must move.
    hidden, weight, targets, a, b = _inputs(11, 8, 97, seed=3, scale=300.0)
    weight = weight[torch.argsort(weight[:, 0])]  # push large logits toward the last chunks
    got = _run(
        logprob_entropy,
        hidden,
        weight,
        targets,
        a,
        b,
        torch.float32,
        1.0,
        vocab_chunk=10,
        token_chunk=3,
    )
    ref = _reference(hidden, weight, targets, a, b, 1.0)
    assert all(torch.isfinite(x).all() for x in got)
    _close(got[:2], ref[:2], rtol=1e-4, atol=2e-3)  # |logp| ~ 1e3: atol relative to that
    _close(got[2:], ref[2:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("output", ["logp", "entropy"])
def test_single_output_gradients(output):
    hidden, weight, targets, _, _ = _inputs(17, 8, 40, seed=4)
    grads = []
    for fn, dtype in ((logprob_entropy, torch.float32), (naive_logprob_entropy, torch.float64)):
        h = hidden.to(dtype).requires_grad_()
        w = weight.to(dtype).requires_grad_()
        logp, ent = fn(h, w, targets, 0.8)
        ((logp if output == "logp" else ent) * torch.arange(17, dtype=dtype)).sum().backward()
        grads.append((h.grad, w.grad))
    _close(grads[0], grads[1], **FP32_TOL)


@pytest.mark.parametrize("tied", [True, False])
def test_tied_and_untied_embeddings(tied):
    # A tiny LM: hidden = tanh(E[ids] A); the head is E itself (tied) or a separate matrix.
    gen = torch.Generator().manual_seed(5)
    n, d, v = 21, 12, 37
    emb0 = torch.randn(v, d, generator=gen, dtype=torch.float64)
    mix0 = torch.randn(d, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
    head0 = torch.randn(v, d, generator=gen, dtype=torch.float64)
    ids = torch.randint(0, v, (n,), generator=gen)
    targets = torch.randint(0, v, (n,), generator=gen)
    targets[[2, 9]] = -100
    results = []
    for fn, dtype in ((logprob_entropy, torch.float32), (naive_logprob_entropy, torch.float64)):
        emb = emb0.to(dtype).requires_grad_()
        mix = mix0.to(dtype).requires_grad_()
        head = emb if tied else head0.to(dtype).requires_grad_()
        hidden = torch.tanh(emb[ids] @ mix)
        logp, ent = fn(
            hidden,
            head,
            targets,
            temperature=1.3,
            **({"vocab_chunk": 8, "token_chunk": 6} if fn is logprob_entropy else {}),
        )
        (logp.sum() - 0.3 * ent.sum()).backward()
        results.append((logp, ent, emb.grad, mix.grad, head.grad))
    _close(results[0], results[1], **FP32_TOL)
    assert results[0][2].abs().sum() > 0


def test_ignore_index_masks_and_skips_compute(monkeypatch):
    hidden, weight, targets, a, b = _inputs(15, 8, 29, seed=6)
    targets[[0, 4, 5, 14]] = -100
    seen_rows = []
    original = kernels_api.ChunkedLogprobEntropy

    class Spy(torch.autograd.Function):
        @staticmethod
        def apply(h, *args):  # type: ignore[override]
            seen_rows.append(h.shape[0])
            return original.apply(h, *args)

    monkeypatch.setattr(kernels_api, "ChunkedLogprobEntropy", Spy)
    got = _run(
        logprob_entropy,
        hidden,
        weight,
        targets,
        a,
        b,
        torch.float32,
        1.0,
        vocab_chunk=5,
        token_chunk=4,
    )
    assert seen_rows == [11]  # only the valid rows reach the kernel
    logp, ent, gh, _ = got
    masked = targets == -100
    assert (logp[masked] == 0).all() and (ent[masked] == 0).all()
    assert (gh[masked] == 0).all() and (gh[~masked].abs().sum(1) > 0).all()
    _close(got, _reference(hidden, weight, targets, a, b, 1.0), **FP32_TOL)
    # custom ignore_index
    t2 = torch.where(masked, torch.full_like(targets, 28), targets)
    got2 = _run(logprob_entropy, hidden, weight, t2, a, b, torch.float32, 1.0, ignore_index=28)
    _close(got2, _reference(hidden, weight, t2, a, b, 1.0, ignore_index=28), **FP32_TOL)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_half_precision_inputs(dtype, temperature):
    hidden, weight, targets, a, b = _inputs(18, 16, 45, seed=7)
    # reference on the half-precision-rounded inputs, so only kernel error is measured
    hidden, weight = hidden.to(dtype).double(), weight.to(dtype).double()
    logp, ent, gh, gw = _run(
        logprob_entropy,
        hidden,
        weight,
        targets,
        a,
        b,
        dtype,
        temperature,
        vocab_chunk=7,
        token_chunk=5,
    )
    assert logp.dtype == ent.dtype == torch.float32
    assert gh.dtype == gw.dtype == dtype
    ref = _reference(hidden, weight, targets, a, b, temperature)
    _close((logp, ent), ref[:2], rtol=1e-4, atol=1e-4)
    _close((gh, gw), ref[2:], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("temperature", [0.5, 1.7])
def test_half_precision_matmul_branch(monkeypatch, temperature):
    # On accelerators the torch path multiplies in bf16/fp16 and scales each fp32 tile by 1/T
    # (instead of pre-scaling h); force that branch on CPU to check it.
    import rlvr.kernels.chunked as chunked

    monkeypatch.setattr(chunked, "_compute_dtype", lambda h, w: torch.bfloat16)
    hidden, weight, targets, a, b = _inputs(18, 16, 45, seed=13)
    hidden, weight = hidden.bfloat16().double(), weight.bfloat16().double()
    logp, ent, gh, gw = _run(
        logprob_entropy,
        hidden,
        weight,
        targets,
        a,
        b,
        torch.bfloat16,
        temperature,
        vocab_chunk=7,
        token_chunk=5,
    )
    ref = _reference(hidden, weight, targets, a, b, temperature)
    # bf16 matmul output rounds the logits (~3 digits), hence the looser value tolerance
    _close((logp, ent), ref[:2], rtol=2e-2, atol=2e-2)
    _close((gh, gw), ref[2:], rtol=2e-2, atol=2e-2)


def test_mixed_dtype_and_frozen_weight():
    hidden, weight, targets, a, b = _inputs(9, 8, 20, seed=8)
    h = hidden.to(torch.bfloat16).requires_grad_()
    w = weight.float()  # frozen fp32 head, bf16 activations
    logp, ent = logprob_entropy(h, w, targets, 1.0, vocab_chunk=6)
    (a.float() * logp + b.float() * ent).sum().backward()
    ref = _reference(h.detach().double(), w.double(), targets, a, b, 1.0)
    _close((logp, ent, h.grad), (ref[0], ref[1], ref[2]), rtol=1e-2, atol=1e-2)


def test_batched_shapes():
    hidden, weight, targets, a, b = _inputs(24, 8, 30, seed=9)
    logp, ent = logprob_entropy(hidden.float().view(4, 6, 8), weight.float(), targets.view(4, 6))
    assert logp.shape == ent.shape == (4, 6)
    ref = naive_logprob_entropy(hidden, weight, targets)
    _close((logp.reshape(-1), ent.reshape(-1)), ref, **FP32_TOL)


def test_empty_and_all_masked():
    w = torch.randn(10, 4, requires_grad=True)
    h = torch.randn(0, 4, requires_grad=True)
    logp, ent = logprob_entropy(h, w, torch.zeros(0, dtype=torch.long))
    assert logp.shape == ent.shape == (0,) and logp.dtype == torch.float32
    (logp.sum() + ent.sum()).backward()
    assert w.grad is None or (w.grad == 0).all()
    h2 = torch.randn(5, 4, requires_grad=True)
    logp, ent = logprob_entropy(h2, w, torch.full((5,), -100))
    assert (logp == 0).all() and (ent == 0).all()
    (logp.sum() + ent.sum()).backward()
    assert h2.grad is None or (h2.grad == 0).all()


def test_no_grad_and_validation():
    hidden, weight, targets, _, _ = _inputs(6, 4, 9, seed=10)
    with torch.no_grad():
        logp, ent = logprob_entropy(hidden.float(), weight.float(), targets)
    assert not logp.requires_grad
    with pytest.raises(ValueError):
        logprob_entropy(hidden, weight, torch.full((6,), 9))
    with pytest.raises(ValueError):
        logprob_entropy(hidden, weight, targets, temperature=0.0)
    with pytest.raises(ValueError):
        logprob_entropy(hidden, weight[:, :3], targets)
    with pytest.raises(ValueError):
        logprob_entropy(hidden, weight, targets, backend="cuda")


def test_auto_chunks():
    vc, tc = auto_chunks(4096, 151936, torch.device("cpu"))
    assert 1 <= vc <= 151936 and 1 <= tc <= 4096 and vc * tc <= 1 << 22
    assert auto_chunks(3, 5, torch.device("cpu")) == (5, 3)
    assert auto_chunks(10, 100, torch.device("cpu"), vocab_chunk=7, token_chunk=2) == (7, 2)


# --- Triton path -------------------------------------------------------------------------
# On CPU the Triton kernels run under TRITON_INTERPRET=1 (set before triton is imported, hence
# a subprocess); on a CUDA machine the gpu-marked test runs the compiled kernels.

_TRITON_CHECK = textwrap.dedent(
    """
    import json, sys, torch
    from rlvr.kernels import logprob_entropy, naive_logprob_entropy
    device = sys.argv[1]
    out = {}
    gen = torch.Generator().manual_seed(11)
    # none a multiple of the 64 / 64 / 128 blocks; V = 1000 gives 4 vocabulary splits of two
    # 128-column blocks each, so both the in-kernel online update and the merge are exercised.
    n, d, v = 70, 40, 1000
    cases = [(torch.float32, 0.7), (torch.float32, 1.7), (torch.float16, 1.7),
             (torch.bfloat16, 0.7)]
    for dtype, temperature in cases:
        h = torch.randn(n, d, generator=gen).to(dtype)
        w = (torch.randn(v, d, generator=gen) / d**0.5).to(dtype)
        y = torch.randint(0, v, (n,), generator=gen)
        y[[3, 40]] = -100
        a, b = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
        hh = h.to(device).clone().requires_grad_()
        ww = w.to(device).clone().requires_grad_()
        lp, en = logprob_entropy(hh, ww, y.to(device), temperature, backend="triton",
                                 vocab_chunk=384)
        (lp * a.to(device) + en * b.to(device)).sum().backward()
        hr = h.double().requires_grad_()
        wr = w.double().requires_grad_()
        lr, er = naive_logprob_entropy(hr, wr, y, temperature)
        (lr * a.double() + er * b.double()).sum().backward()
        def rel(x, r):
            x = x.detach().double().cpu()
            return ((x - r).norm() / r.norm().clamp_min(1e-12)).item()
        out[f"{dtype}-{temperature}"] = {
            "dtypes_ok": lp.dtype == en.dtype == torch.float32 and hh.grad.dtype == dtype,
            "logp": rel(lp, lr.detach()), "ent": rel(en, er.detach()),
            "gh": rel(hh.grad, hr.grad), "gw": rel(ww.grad, wr.grad),
        }
    print("RESULT " + json.dumps(out))
    """
)


def _check_triton_results(stdout: str) -> None:
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    import json

    for key, r in json.loads(line[len("RESULT ") :]).items():
        grad_tol = 1e-5 if "float32" in key else 2e-2  # half-precision gradients: ~3 digits
        assert r["dtypes_ok"], key
        assert r["logp"] < 1e-5 and r["ent"] < 1e-5, (key, r)
        assert r["gh"] < grad_tol and r["gw"] < grad_tol, (key, r)


def test_triton_kernels_in_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-c", _TRITON_CHECK, "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_triton_results(proc.stdout)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_kernels_on_gpu():
    pytest.importorskip("triton")
    proc = subprocess.run(
        [sys.executable, "-c", _TRITON_CHECK, "cuda"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_triton_results(proc.stdout)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auto_backend_matches_torch_path():
    hidden, weight, targets, a, b = _inputs(300, 64, 1000, seed=12)
    got = _run(
        logprob_entropy,
        hidden.cuda(),
        weight.cuda(),
        targets.cuda(),
        a.cuda(),
        b.cuda(),
        torch.float32,
        1.3,
    )
    ref = _run(
        logprob_entropy,
        hidden.cuda(),
        weight.cuda(),
        targets.cuda(),
        a.cuda(),
        b.cuda(),
        torch.float32,
        1.3,
        backend="torch",
    )
    _close([x.cpu() for x in got], [x.double().cpu() for x in ref], rtol=1e-4, atol=1e-5)
