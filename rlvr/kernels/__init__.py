"""Fused per-token log-prob + entropy of a linear softmax head (LM head) without [N, V] logits.

    logp_i = log softmax(h_i W^T / T)[y_i],    H_i = -sum_v p_iv log p_iv

``logprob_entropy`` streams over vocabulary/token chunks with an online log-sum-exp (chunked
torch autograd.Function on CPU, Triton kernels on CUDA); ``naive_logprob_entropy`` is the
materialising reference. Formulas and sources: ``rlvr/kernels/chunked.py``.
"""

from rlvr.kernels.api import logprob_entropy
from rlvr.kernels.naive import naive_logprob_entropy

__all__ = ["logprob_entropy", "naive_logprob_entropy"]
