"""CURE stage-1 branching: re-generate from high-entropy critical tokens of sampled rollouts.

Source: Li et al. 2025, "CURE: Critical-token-gUided Re-concatenation for Entropy-collapse
prevention" (arXiv 2508.11016); public code bytedance/CURE
(``recipe/CURE_First_Stage/dapo_ray_trainer.py``, ``get_critic_key_token_mask``), read to
understand it.

For each prompt q and each of its G sampled completions o = (o_1 .. o_T):
  1. candidates: the ``top_k`` positions t >= 1 of highest token entropy H_t, skipping
     special tokens and tokens whose text is at most one visible character (CURE's filter);
  2. the critical position t* is drawn uniformly from the candidates (t* = 0, i.e. a plain
     resample from q, when there is none, as CURE's fallback);
  3. the branch prompt is q + o_<t* (the prefix before the critical token is concatenated to
     the prompt) and the engine samples ``branches`` continuations c from it;
  4. each branch is re-concatenated into a completion of q: o_<t* + c, whose sampling
     log-probs are those of o_<t* followed by those of c (both drawn from the same policy).
The group of q then holds its G originals followed by G * branches branched completions, and
all are scored and optimised jointly (one group: the advantage baseline spans both).

Choices: a branched completion is stored as prefix + continuation of the original prompt, so
one prompt per group stays true and the reward sees the whole solution; the shared prefix
therefore enters the loss again (CURE's code keeps the prefix in the prompt and trains only
on the continuation). Lengths follow CURE: the prefix is context (``Completion.context_len``),
so length rewards (``num_tokens``, e.g. ``overlong``) and ADORA's lengths count the
continuation only (``Completion.generated_len``); a branch is never penalised for its prefix. The continuation gets the full ``max_tokens`` budget, as in CURE, and a
sampling seed offset from the first draw's. Entropies come from the caller (the trainer's
no-grad pass of the current policy, ``Trainer._branch``); the critical-token draw uses a
private RNG seeded with (seed, step). Stage 2 of CURE is plain DAPO sampling: the recipe key
``rollout.cure.stage1_steps`` ends branching after that step.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rlvr.rollout.base import Completion, RolloutEngine, SamplingParams


def critical_position(
    entropies: Sequence[float],
    token_ids: Sequence[int],
    rng: random.Random,
    *,
    top_k: int = 20,
    decode: Callable[[list[int]], str] | None = None,
    special_ids: frozenset[int] = frozenset(),
    min_chars: int = 2,
) -> int:
    """The critical position t* of one completion (0 when no position qualifies)."""
    order = sorted(range(len(token_ids)), key=lambda t: (-entropies[t], t))
    candidates: list[int] = []
    for t in order:
        if len(candidates) >= top_k:
            break
        if t == 0 or token_ids[t] in special_ids:
            continue
        if decode is not None and len(decode([token_ids[t]]).strip()) < min_chars:
            continue
        candidates.append(t)
    return rng.choice(candidates) if candidates else 0


def rejoin(original: Completion, position: int, continuation: Completion, text: str) -> Completion:
    """o_<t* + c as one completion of the original prompt."""
    return Completion(
        token_ids=list(original.token_ids[:position]) + list(continuation.token_ids),
        logprobs=list(original.logprobs[:position]) + list(continuation.logprobs),
        finish_reason=continuation.finish_reason,
        text=text,
        context_len=position,
    )


@dataclass
class CureBrancher:
    """Stage-1 CURE: ``branches`` continuations from one critical token per completion."""

    branches: int = 1
    top_k: int = 20
    min_chars: int = 2
    seed: int = 0

    def __call__(
        self,
        engine: RolloutEngine,
        prompt_ids: list[list[int]],
        groups: list[list[Completion]],
        entropies: list[list[Sequence[float]]],
        sampling: SamplingParams,
        *,
        decode: Callable[[list[int]], str],
        special_ids: frozenset[int] = frozenset(),
        step: int = 0,
    ) -> tuple[list[list[Completion]], dict[str, float]]:
        """Return the groups extended to G * (1 + branches) completions, and metrics."""
        if self.branches < 1:
            raise ValueError("CureBrancher.branches must be >= 1")
        rng = random.Random(self.seed * 1_000_003 + step)
        requests: list[list[int]] = []
        plan: list[tuple[int, int, int]] = []  # (group, sample, position)
        for b, group in enumerate(groups):
            for g, comp in enumerate(group):
                pos = critical_position(
                    entropies[b][g],
                    comp.token_ids,
                    rng,
                    top_k=self.top_k,
                    decode=decode,
                    special_ids=special_ids,
                    min_chars=self.min_chars,
                )
                requests.append(list(prompt_ids[b]) + list(comp.token_ids[:pos]))
                plan.append((b, g, pos))
        seed = None if sampling.seed is None else sampling.seed + 7919  # not the first draw's
        outs = engine.generate(requests, replace(sampling, n=self.branches, seed=seed))
        new_groups = [list(group) for group in groups]
        for (b, g, pos), conts in zip(plan, outs, strict=True):
            original = groups[b][g]
            for cont in conts:
                ids = list(original.token_ids[:pos]) + list(cont.token_ids)
                new_groups[b].append(rejoin(original, pos, cont, decode(ids)))
        positions = [pos for _, _, pos in plan]
        lengths = [max(1, len(groups[b][g].token_ids)) for b, g, _ in plan]
        return new_groups, {
            "branched": float(len(plan) * self.branches),
            "fallback_fraction": sum(p == 0 for p in positions) / max(1, len(positions)),
            "relative_position": sum(p / n for p, n in zip(positions, lengths, strict=True))
            / max(1, len(positions)),
        }
