"""CURE stage-1 branch construction on a hand-made trajectory, with a recording fake engine."""

from __future__ import annotations

import random
from collections.abc import Iterable

import torch

from rlvr.rollout.base import Completion, RolloutEngine, SamplingParams
from rlvr.rollout.cure import CureBrancher, critical_position

TEXT = {10: "xx", 11: "a", 12: "yy", 13: "<eos>", 14: "zz", 20: "cc", 21: "dd"}


def decode(ids: list[int]) -> str:
    return "".join(TEXT.get(i, "?") for i in ids)


class FakeEngine(RolloutEngine):
    """Continues every prompt with tokens 20, 21 (log-probs -1, -2); records the requests."""

    def __init__(self) -> None:
        self.requests: list[list[int]] = []
        self.sampling: SamplingParams | None = None

    def generate(
        self, prompt_token_ids: list[list[int]], sampling: SamplingParams
    ) -> list[list[Completion]]:
        self.requests = [list(p) for p in prompt_token_ids]
        self.sampling = sampling
        cont = Completion([20, 21], [-1.0, -2.0], "stop", "ccdd")
        return [[cont for _ in range(sampling.n)] for _ in prompt_token_ids]

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        pass


ORIGINAL = Completion([10, 11, 12, 13, 14], [-0.1, -0.2, -0.3, -0.4, -0.5], "stop", "")
# position 0 is never critical, 13 is special, 11 is a one-character token
ENTROPY = [5.0, 0.2, 3.0, 4.0, 2.0]


def test_critical_position_skips_first_special_and_short_tokens() -> None:
    rng = random.Random(0)
    pos = critical_position(
        ENTROPY, ORIGINAL.token_ids, rng, top_k=1, decode=decode, special_ids=frozenset({13})
    )
    assert pos == 2  # highest entropy after skipping t = 0 (5.0) and the special token (4.0)
    ent = [0.0, 9.0, 0.0, 0.0, 0.0]  # only the one-character token stands out
    picks = {
        critical_position(ent, ORIGINAL.token_ids, random.Random(s), top_k=1, decode=decode)
        for s in range(5)
    }
    assert picks == {2}  # 11 ("a") is filtered; ties at 0.0 break by position
    draws = {
        critical_position(
            ENTROPY, ORIGINAL.token_ids, random.Random(s), top_k=2, special_ids=frozenset({13})
        )
        for s in range(20)
    }
    assert draws == {2, 4}  # uniform among the top-2 candidates
    assert critical_position([1.0], [10], random.Random(0)) == 0  # nothing qualifies


def test_brancher_builds_prefix_prompts_and_rejoins_completions() -> None:
    engine = FakeEngine()
    brancher = CureBrancher(branches=2, top_k=1)
    groups, metrics = brancher(
        engine,
        [[1, 2, 3]],
        [[ORIGINAL]],
        [[ENTROPY]],
        SamplingParams(n=1, max_tokens=8, seed=5),
        decode=decode,
        special_ids=frozenset({13}),
    )
    # prompt + prefix before the critical token (t* = 2), two branches asked for
    assert engine.requests == [[1, 2, 3, 10, 11]]
    assert engine.sampling is not None and engine.sampling.n == 2
    assert engine.sampling.max_tokens == 8 and engine.sampling.seed == 5 + 7919
    assert len(groups[0]) == 3 and groups[0][0] is ORIGINAL
    for branch in groups[0][1:]:
        assert branch.token_ids == [10, 11, 20, 21]
        assert branch.logprobs == [-0.1, -0.2, -1.0, -2.0]
        assert branch.text == "xxaccdd" and branch.finish_reason == "stop"
        # the prefix [10, 11] was context: lengths count the 2 continuation tokens (CURE)
        assert branch.context_len == 2 and branch.generated_len == 2
    assert ORIGINAL.generated_len == len(ORIGINAL.token_ids)
    from rlvr.batch import RolloutBatch

    batch = RolloutBatch(
        examples=[{"prompt": "q"}], prompt_ids=[[1]], completions=groups, rewards=torch.zeros(1, 3)
    )
    assert batch.generated_lengths.tolist() == [[len(ORIGINAL.token_ids), 2.0, 2.0]]
    assert batch.lengths.tolist() == [[len(ORIGINAL.token_ids), 4.0, 4.0]]
    assert metrics["branched"] == 2.0
    assert metrics["fallback_fraction"] == 0.0
    assert metrics["relative_position"] == 2 / 5


def test_brancher_falls_back_to_resampling_from_the_prompt() -> None:
    engine = FakeEngine()
    short = Completion([11], [-0.7], "length", "a")
    groups, metrics = CureBrancher(branches=1)(
        engine, [[7]], [[short, ORIGINAL]], [[[9.0], ENTROPY]], SamplingParams(), decode=decode
    )
    assert engine.requests[0] == [7]  # no critical token: branch from the bare prompt
    assert groups[0][2].token_ids == [20, 21]
    assert len(groups[0]) == 4 and metrics["fallback_fraction"] == 0.5
