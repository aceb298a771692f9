"""Per-token log-probs and entropies of a causal LM on completion tokens.

The model's forward stops at the final hidden states (``model.get_decoder()``); the LM head
is applied inside :func:`rlvr.kernels.logprob_entropy`, which streams over the vocabulary so
that [tokens, vocab] logits are never materialised in fp32 at once. ``impl="naive"`` runs the
full LM head and log_softmax instead, for comparison. For sequence position t the target is
token t+1: logp[:, t] = log softmax(h_t W^T / T)[x_{t+1}].

Under FSDP2 the decoder call and ``head.weight`` sit outside the root module's ``forward``, so
the root's parameters (embeddings, final norm, LM head) would stay sharded: a sharded model
carries this computation as a method (:func:`add_sharded_method`) that FSDP2 treats as a
forward (``register_fsdp_forward_method``: all-gather before, gradient reduce-scatter after).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from rlvr.kernels import logprob_entropy, naive_logprob_entropy

IGNORE = -100
SHARDED_METHOD = "rlvr_token_logprobs"  # the FSDP2 forward method (rlvr/fsdp.py)


def _unwrap(model: Any) -> Any:
    """The transformers causal-LM module under DDP / peft wrappers."""
    inner = getattr(model, "module", None)  # DistributedDataParallel
    if isinstance(inner, torch.nn.Module):
        model = inner
    get_base = getattr(model, "get_base_model", None)  # peft
    if callable(get_base) and type(model).__module__.startswith("peft"):
        model = get_base()
    return model


def add_sharded_method(model: torch.nn.Module) -> str:
    """Give ``model`` the log-prob computation as a method (for FSDP2 to register as a
    forward); returns its name."""
    setattr(model, SHARDED_METHOD, functools.partial(token_logprobs, model, _forward=True))
    return SHARDED_METHOD


def token_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    target_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    impl: str = "fused",
    _forward: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (logp, entropy), both [M, L-1] float32, zero where ``target_mask[:, 1:]`` is 0.

    ``target_mask`` [M, L] marks the tokens whose log-prob is wanted (completion tokens).
    """
    sharded = None if _forward else getattr(model, SHARDED_METHOD, None)
    if sharded is not None:  # FSDP2: through the root's forward hooks, then back here
        return sharded(input_ids, attention_mask, target_mask, temperature=temperature, impl=impl)
    core = _unwrap(model)
    decoder = core.get_decoder()
    head = core.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise ValueError("LM heads with a bias are not supported by the fused log-prob path")
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    hidden = hidden[:, :-1]
    targets = input_ids[:, 1:].masked_fill(target_mask[:, 1:] == 0, IGNORE)
    if impl == "fused":
        logp, ent = logprob_entropy(hidden, head.weight, targets, temperature, ignore_index=IGNORE)
    elif impl == "naive":
        logp, ent = naive_logprob_entropy(
            hidden, head.weight, targets, temperature, ignore_index=IGNORE
        )
    else:
        raise ValueError(f"train.logprob_impl must be 'fused' or 'naive', got {impl!r}")
    return logp, ent
