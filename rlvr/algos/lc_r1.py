"""``lc_r1`` batch filter: LC-R1's crop and its compress reward at the ``</think>`` token.

Source: LC-R1 (arXiv 2506.14755), code zxiangx/LC-R1 @ 7a6bd8b ``trl/trainer/grpo_trainer.py``
(crop at lines ~1307-1320, advantage at ~1386-1412). For each *correct* rollout (accuracy and
exactly one ``</think>``, LC-R1's ``r_base == 2``) with valid thinking prefix V (the thinking up
to the sentence that first derives the reference answer, :func:`rewards.length.
valid_thinking_prefix`; LC-R1 uses a frozen extractor LLM) and thinking length T:

    cropped ids  = ids[:v] + ids[t:]          (v: token where V ends, t: the ``</think>`` token)
    r_cmp        = 1 - V / T                  (V = 0, i.e. never derived: r_cmp = -1, no crop)
    A_{i, </think>} += cmp_coef * r_cmp        after the group-centred sequence advantage

so the redundant reflection between V and ``</think>`` is deleted from the trained sequence and
the compress reward reaches only the ``</think>`` token, uncentred (LC-R1 ``add_adv = 1``).
Wrong rollouts are neither cropped nor given r_cmp. The filter runs after rewards and before
advantages (where ``algo.filters`` run), so the ``lc_r1`` reward's length term, which LC-R1
computes on the cropped lengths, uses the same V (mapped from characters to tokens in
proportion); pair it with ``rewards: [{name: lc_r1, params: {cmp_coef: 0}}]`` so the compress
term is not also in the sequence reward (the recipe check insists). V and T are in characters
(of the decoded thinking); token positions are found by decoding prefixes (binary search).

The rollout's sampling log-probs of kept tokens are kept; after the crop they belong to another
context, so use ``algo.old_logprobs: trainer`` (the default: recomputed on the cropped
sequence), as LC-R1 recomputes them. Logged: ``cropped_fraction`` (of correct rollouts),
``removed_tokens`` (mean over cropped rollouts), ``compress_mean`` (r_cmp over correct ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rlvr.algos.filters import BatchFilter, Generate
from rlvr.algos.registry import register_filter
from rlvr.rollout.base import Completion

if TYPE_CHECKING:
    from rlvr.batch import RolloutBatch

THINK_END = "</think>"


def first_token_reaching(ids: list[int], decode: Callable[[list[int]], str], chars: int) -> int:
    """Smallest j with len(decode(ids[:j])) >= chars (len(ids) if none): binary search."""
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(decode(ids[:mid])) >= chars:
            hi = mid
        else:
            lo = mid + 1
    return lo


def crop(
    comp: Completion, answer: str, decode: Callable[[list[int]], str]
) -> tuple[Completion, float, int | None]:
    """(cropped completion, r_cmp, index of the ``</think>`` token in it) for one correct
    rollout; unchanged completion and r_cmp = -1 when the answer is never derived."""
    from rewards.length import valid_thinking_prefix

    text = comp.text
    close = text.find(THINK_END)
    start = text.find("<think>", 0, close)
    begin = start + len("<think>") if start >= 0 else 0
    think = close - begin
    valid = valid_thinking_prefix(text, answer)
    ids = list(comp.token_ids)
    t = first_token_reaching(ids, decode, close + 1) - 1  # the token holding "</think>"'s "<"
    if valid is None or valid <= 0 or think <= 0:
        return comp, -1.0, t if 0 <= t < len(ids) else None
    v = first_token_reaching(ids, decode, begin + valid)
    if v >= t:  # nothing redundant between V and </think>
        return comp, 1.0 - valid / think, t
    keep = ids[:v] + ids[t:]
    out = Completion(
        token_ids=keep,
        logprobs=list(comp.logprobs[:v]) + list(comp.logprobs[t:]),
        finish_reason=comp.finish_reason,
        text=decode(keep),
        context_len=comp.context_len,
    )
    return out, 1.0 - valid / think, v


@register_filter("lc_r1")
class LCR1Crop(BatchFilter):
    """Needs the policy's tokenizer: the sampler calls :meth:`bind_tokenizer`."""

    needs_tokenizer = True

    def __init__(
        self, cmp_coef: float = 1.0, correct_key: str = "math", answer_field: str = "answer"
    ) -> None:
        self.cmp_coef = float(cmp_coef)
        self.correct_key = correct_key
        self.answer_field = answer_field
        self._decode: Callable[[list[int]], str] | None = None

    def bind_tokenizer(self, tokenizer: Any) -> None:
        self._decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=False)

    def __call__(
        self, batch: RolloutBatch, generate: Generate
    ) -> tuple[RolloutBatch, dict[str, float]]:
        if self._decode is None:
            raise RuntimeError("lc_r1: bind_tokenizer must run before the filter")
        if self.correct_key not in batch.reward_components:
            raise KeyError(
                f"lc_r1: reward component {self.correct_key!r} not found "
                f"(have {sorted(batch.reward_components)}); set params.correct_key"
            )
        acc = batch.reward_components[self.correct_key] > 0.5
        bonus: dict[tuple[int, int, int], float] = dict(batch.token_bonus or {})
        n_correct = n_cropped = removed = 0
        r_sum = 0.0
        for b, group in enumerate(batch.completions):
            answer = str(batch.examples[b].get(self.answer_field, ""))
            for g, comp in enumerate(group):
                if not bool(acc[b, g]) or comp.text.count(THINK_END) != 1:
                    continue
                n_correct += 1
                new, r_cmp, pos = crop(comp, answer, self._decode)
                r_sum += r_cmp
                if len(new.token_ids) < len(comp.token_ids):
                    n_cropped += 1
                    removed += len(comp.token_ids) - len(new.token_ids)
                    group[g] = new
                if pos is not None and self.cmp_coef != 0:
                    key = (b, g, pos)
                    bonus[key] = bonus.get(key, 0.0) + self.cmp_coef * r_cmp
        batch.token_bonus = bonus
        return batch, {
            "cropped_fraction": n_cropped / n_correct if n_correct else 0.0,
            "removed_tokens": removed / n_cropped if n_cropped else 0.0,
            "compress_mean": r_sum / n_correct if n_correct else 0.0,
        }
