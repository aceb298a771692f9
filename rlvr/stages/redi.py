"""REDI: Reinforcement Distillation from teacher data, positives *and* negatives.

Source: "Harnessing Negative Signals: Reinforcement Distillation from Teacher Data for LLM
Reasoning" (arXiv 2505.24850; public code Tim-Siu/reinforcement-distillation,
``dpo2_trainer.py`` with ``loss_type="reinforce"``), as summarised in
``specs/rewards_and_stages.md`` §6 ("Stage 2, REDI loss"). This module is an independent
implementation of that objective; no code was copied.

Objective (reference-free, asymmetric), for a prompt x, a correct teacher trace y_w and an
incorrect teacher trace y_l of the same problem::

    l_w = log pi_theta(y_w | x) / |y_w|     # summed response-token log-probs / #response tokens
    l_l = log pi_theta(y_l | x) / |y_l|
    L_REDI = mean_batch[ -c_w * l_w + alpha * l_l ]

with ``c_w = 1`` (``reinforce_chosen_coef``) and ``alpha`` in [0, 1] (``reinforce_rejected_coef``;
0.8 in the paper's final recipe). alpha = 0 is SFT on positives; alpha = 1 is the symmetric
objective, which the paper reports collapses (both likelihoods fall) at lr 1e-6. Response
lengths are clamped to at least 1. There is no reference model, beta or label smoothing. The
optional ``use_neg_weighting`` extension of the public code (off by default there) is not
implemented. ``l_w`` and ``l_l`` are logged every step so that collapse can be seen.

Data (§6): a teacher trace is positive iff the verifier accepts it (the paper also requires a
Llama judge to agree; :func:`label_traces` uses rlvr's ``rewards.math.math_reward``, and the
``rlvr redi`` recipe adds the optional judge, ``traces.judge``, :mod:`rlvr.stages.judge`).
Each problem with at least one positive and one negative trace gives one pair: its **first**
positive and **first** negative trace (:func:`make_pairs`).

TRL has no REDI loss (its DPO trainer's losses all involve a sigmoid / margin of a policy
vs. reference ratio), so :func:`run_redi` is a compact AdamW loop over
(prompt, chosen, rejected) rows. Completion-only log-probs come from
:func:`rlvr.policy.token_logprobs`.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------- loss


def redi_loss(
    pos_logp_sum: torch.Tensor,
    pos_len: torch.Tensor,
    neg_logp_sum: torch.Tensor,
    neg_len: torch.Tensor,
    *,
    alpha: float,
    chosen_coef: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """REDI loss, ``mean(-chosen_coef * l_w + alpha * l_l)``, and detached metrics.

    ``*_logp_sum`` [B] are summed response-token log-probs; ``*_len`` [B] are the response token
    counts (clamped to >= 1). ``l = logp_sum / len`` is the length-normalised log-likelihood.
    Metrics: ``loss``, ``logp_pos`` (mean l_w), ``logp_neg`` (mean l_l), ``margin``
    (mean l_w - l_l).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"REDI alpha must be in [0, 1], got {alpha}")
    if pos_logp_sum.shape != neg_logp_sum.shape:
        raise ValueError(
            f"positive and negative batches differ: {tuple(pos_logp_sum.shape)} vs "
            f"{tuple(neg_logp_sum.shape)}"
        )
    pos_len = pos_len.to(pos_logp_sum.dtype).clamp(min=1.0)
    neg_len = neg_len.to(neg_logp_sum.dtype).clamp(min=1.0)
    ell_w = pos_logp_sum / pos_len
    ell_l = neg_logp_sum / neg_len
    loss = (-chosen_coef * ell_w + alpha * ell_l).mean()
    metrics = {
        "loss": float(loss.detach()),
        "logp_pos": float(ell_w.detach().mean()),
        "logp_neg": float(ell_l.detach().mean()),
        "margin": float((ell_w - ell_l).detach().mean()),
    }
    return loss, metrics


# ------------------------------------------------------------------------------ labelling


def _traces(row: dict, completion_field: str) -> list[str]:
    if completion_field in row:
        return [str(row[completion_field])]
    plural = completion_field + "s"
    if plural in row:
        return [str(c) for c in row[plural]]
    raise KeyError(f"row has neither {completion_field!r} nor {plural!r}: keys {sorted(row)}")


def label_traces(
    rows: Iterable[dict],
    answer_field: str = "answer",
    *,
    completion_field: str = "completion",
    prompt_field: str = "prompt",
) -> tuple[list[dict], list[dict]]:
    """Split teacher traces into (positives, negatives) with ``rewards.math.math_reward``.

    Each row is one problem with ``prompt``, the reference answer and either one trace
    (``completion``) or several (``completions``). Every trace becomes a row
    ``{prompt, answer, completion, problem}`` (``problem`` = the row's ``id`` if present, else
    its prompt) in positives (reward 1.0) or negatives (otherwise), in input order. The
    positives are the D_SFT set of §6; :func:`make_pairs` turns both lists into D_Pref.
    """
    from rewards.math import math_reward

    positives: list[dict] = []
    negatives: list[dict] = []
    for row in rows:
        prompt = row[prompt_field]
        answer = str(row[answer_field])
        problem = row.get("id", prompt)
        for completion in _traces(row, completion_field):
            trace = {
                "prompt": prompt,
                "answer": answer,
                "completion": completion,
                "problem": problem,
            }
            (positives if math_reward(completion, answer) == 1.0 else negatives).append(trace)
    return positives, negatives


def make_pairs(positives: Sequence[dict], negatives: Sequence[dict]) -> list[dict]:
    """One ``{prompt, chosen, rejected, answer}`` pair per problem with both kinds of trace.

    Takes the first positive and the first negative trace of each problem (as the public code
    does), ordered by the problem's first positive. Traces are matched on ``problem``.
    """
    first_neg: dict[Any, dict] = {}
    for t in negatives:
        first_neg.setdefault(t["problem"], t)
    pairs: list[dict] = []
    seen: set[Any] = set()
    for t in positives:
        key = t["problem"]
        if key in seen or key not in first_neg:
            continue
        seen.add(key)
        pairs.append(
            {
                "prompt": t["prompt"],
                "chosen": t["completion"],
                "rejected": first_neg[key]["completion"],
                "answer": t["answer"],
            }
        )
    return pairs


# ---------------------------------------------------------------------------- batching


def _prompt_ids(
    tokenizer: Any, prompt: str | list[dict], use_chat_template: bool, max_prompt_len: int
) -> list[int]:
    """The prompt's last ``max_prompt_len`` tokens (rlvr/data/prompts.py); a tokenizer
    without a chat template gets the raw text."""
    from rlvr.data.prompts import chat_prompt_ids

    return chat_prompt_ids(
        tokenizer,
        prompt,
        use_chat_template=use_chat_template and bool(getattr(tokenizer, "chat_template", None)),
        max_prompt_tokens=max_prompt_len,
    )


def encode_completions(
    tokenizer: Any,
    prompts: Sequence[Any],
    completions: Sequence[str],
    *,
    max_prompt_len: int = 512,
    max_completion_len: int = 1024,
    use_chat_template: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, target_mask)`` for prompt + completion + EOS.

    The prompt keeps its last ``max_prompt_len`` tokens (the generation prompt must survive);
    the completion (with EOS appended) keeps its first ``max_completion_len`` tokens.
    ``target_mask`` marks completion tokens only.
    """
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    seqs: list[tuple[list[int], list[int]]] = []
    for prompt, completion in zip(prompts, completions, strict=True):
        p = _prompt_ids(tokenizer, prompt, use_chat_template, max_prompt_len)
        c = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
        if eos is not None:
            c.append(eos)
        seqs.append((p, c[:max_completion_len]))
    width = max(len(p) + len(c) for p, c in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    target = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, c) in enumerate(seqs):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(p + c, dtype=torch.long)
        attn[i, :n] = 1
        target[i, len(p) : n] = 1
    return ids, attn, target


def sequence_logps(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    completions: Sequence[str],
    **encode_kw: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed completion log-prob [N], completion token count [N]) under ``model``."""
    from rlvr.policy import token_logprobs

    device = next(model.parameters()).device
    ids, attn, target = encode_completions(tokenizer, prompts, completions, **encode_kw)
    ids, attn, target = ids.to(device), attn.to(device), target.to(device)
    logp, _ = token_logprobs(model, ids, attn, target)
    return logp.sum(dim=1), target[:, 1:].sum(dim=1)


def pair_logps(
    model: Any, tokenizer: Any, pairs: Sequence[dict], **encode_kw: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pos_logp_sum, pos_len, neg_logp_sum, neg_len) for a batch of pairs, one forward pass."""
    n = len(pairs)
    prompts = [p["prompt"] for p in pairs] * 2
    completions = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    sums, lens = sequence_logps(model, tokenizer, prompts, completions, **encode_kw)
    return sums[:n], lens[:n], sums[n:], lens[n:]


@torch.no_grad()
def evaluate_pairs(
    model: Any, tokenizer: Any, pairs: Sequence[dict], *, batch_size: int = 16, **encode_kw: Any
) -> dict[str, float]:
    """Mean length-normalised log-likelihoods of chosen / rejected traces and their margin."""
    was_training = model.training
    model.eval()
    pos, neg = [], []
    for i in range(0, len(pairs), batch_size):
        ps, pl, ns, nl = pair_logps(model, tokenizer, pairs[i : i + batch_size], **encode_kw)
        pos.append(ps / pl.clamp(min=1))
        neg.append(ns / nl.clamp(min=1))
    model.train(was_training)
    lw, ll = torch.cat(pos), torch.cat(neg)
    return {
        "logp_pos": float(lw.mean()),
        "logp_neg": float(ll.mean()),
        "margin": float((lw - ll).mean()),
    }


# ---------------------------------------------------------------------------- training


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1 over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def run_redi(
    model_path: str | Path,
    pairs: Sequence[dict],
    out_dir: str | Path,
    *,
    lr: float = 1e-6,
    steps: int = 100,
    batch_size: int = 32,
    alpha: float = 0.8,
    seed: int = 0,
    chosen_coef: float = 1.0,
    weight_decay: float = 1e-4,
    warmup_ratio: float = 0.1,
    max_grad_norm: float = 1.0,
    max_prompt_len: int = 800,
    max_completion_len: int = 19_000,
    use_chat_template: bool = True,
    device: str | None = None,
    log_every: int = 10,
    trust_remote_code: bool = False,
    micro_batch_size: int | None = None,
    gradient_checkpointing: bool = False,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Train ``model_path`` with the REDI loss on ``{prompt, chosen, rejected}`` rows.

    AdamW (0.9, 0.999, 1e-8) with ``weight_decay``, ``warmup_ratio`` linear warmup then linear
    decay to 0, gradient clipping at ``max_grad_norm``; ``batch_size`` pairs per optimizer step,
    drawn from a seeded reshuffle each epoch, processed ``micro_batch_size`` pairs at a time
    with gradients accumulated (the loss is the same batch mean, whatever the micro-batch).
    ``gradient_checkpointing`` and ``dtype`` (float32 | bfloat16 | float16 weights) are for
    long traces on a GPU. Defaults follow the paper's stage-2 recipe
    (alpha 0.8, lr 1e-6, weight decay 1e-4, 10% warmup). Saves the model (safetensors) and the
    tokenizer to ``out_dir``. Returns the per-step metrics (``history``), the pair metrics of
    :func:`evaluate_pairs` on the training pairs ``before`` and ``after``, and ``model_dir``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not pairs:
        raise ValueError("run_redi needs at least one (prompt, chosen, rejected) pair")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    micro = min(micro_batch_size or batch_size, batch_size)
    if micro < 1:
        raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        model_path,
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
        dtype=getattr(torch, dtype),
    ).to(device)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    encode_kw = {
        "max_prompt_len": max_prompt_len,
        "max_completion_len": max_completion_len,
        "use_chat_template": use_chat_template,
    }
    before = evaluate_pairs(model, tokenizer, pairs, **encode_kw)
    model.train()
    optim = torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay
    )
    warmup = math.ceil(warmup_ratio * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: _lr_factor(s, steps, warmup))
    order: list[int] = []
    history: list[dict[str, float]] = []
    for step in range(steps):
        batch = []
        while len(batch) < batch_size:
            if not order:
                order = list(range(len(pairs)))
                rng.shuffle(order)
            batch.append(pairs[order.pop()])
        optim.zero_grad(set_to_none=True)
        metrics = {"loss": 0.0, "logp_pos": 0.0, "logp_neg": 0.0, "margin": 0.0}
        for start in range(0, len(batch), micro):
            chunk = batch[start : start + micro]
            ps, pl, ns, nl = pair_logps(model, tokenizer, chunk, **encode_kw)
            loss, part = redi_loss(ps, pl, ns, nl, alpha=alpha, chosen_coef=chosen_coef)
            share = len(chunk) / len(batch)  # mean over the batch = share-weighted chunk means
            (loss * share).backward()
            for key in metrics:
                metrics[key] += part[key] * share
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        metrics["grad_norm"] = float(grad_norm)
        metrics["lr"] = sched.get_last_lr()[0]
        optim.step()
        sched.step()
        metrics["step"] = step + 1
        history.append(metrics)
        if log_every and (step + 1) % log_every == 0:
            log.info(
                "redi step %d: loss %.4f l_w %.4f l_l %.4f",
                step + 1,
                metrics["loss"],
                metrics["logp_pos"],
                metrics["logp_neg"],
            )
    after = evaluate_pairs(model, tokenizer, pairs, **encode_kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {
        "steps": steps,
        "history": history,
        "before": before,
        "after": after,
        "model_dir": str(out),
    }
