"""rewards.runner: composition end to end, hard time limits, failures, state, bulk hostile input."""

from __future__ import annotations

import math
import random
import textwrap
import time
from pathlib import Path

import pytest

from rewards.runner import RewardRunner

RECIPE = [
    {"name": "math", "weight": 1.0},
    {"name": "format", "weight": 0.5},
    {"name": "overlong", "params": {"max_len": 100, "cache_len": 20}},
    {"name": "compression", "params": {"delta": 0.1, "lam": 0.5}},
    {"name": "effort", "weight": 0.5, "key": "aec", "params": {"measure": "completion"}},
]
COMPLETIONS = [
    ["<think>x</think> \\boxed{4}", "<think>x</think> \\boxed{4}", "<think>x</think> \\boxed{5}"],
    [
        "<think>y</think><answer>7</answer>",
        "<think>y</think><answer>7</answer> extra",
        "<think>y</think> \\boxed{7}",
    ],
]
EXAMPLES = [
    {"id": "p0", "prompt": "2+2?", "answer": "4", "effort": 1.0},
    {"id": "p1", "prompt": "3+4?", "answer": "7", "effort": 0.5},
]
NUM_TOKENS = [[10, 90, 85], [20, 40, 23]]
FINISH = [["stop"] * 3, ["stop"] * 3]


@pytest.fixture(scope="module")
def recipe_runner():
    with RewardRunner(RECIPE, num_workers=2, timeout_s=5.0) as runner:
        yield runner


def test_composed_recipe_end_to_end(recipe_runner: RewardRunner) -> None:
    batch = recipe_runner.score(COMPLETIONS, EXAMPLES, num_tokens=NUM_TOKENS, finish_reasons=FINISH)
    c = batch.components
    assert c["math"] == [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    assert c["format"] == [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    assert c["overlong"] == [[0.0, -0.5, -0.25], [0.0, 0.0, 0.0]]
    # prompt 0 not mastered; prompt 1: L_ref 20, tol 2 -> -0.5*(18/20), -0.5*(1/20)
    assert c["compression"][0] == [0.0, 0.0, 0.0]
    assert c["compression"][1] == pytest.approx([0.0, -0.45, -0.025])
    # effort: T0 = 185/3, r = 1 -> only the short correct one ; T1 = 83/3, r = 0.5 -> none
    assert c["aec"] == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert batch.total[0] == pytest.approx([2.0, 1.0, 0.25])
    assert batch.total[1] == pytest.approx([1.5, 0.55, 1.475])
    assert batch.n_failed == 0 and batch.n_timeout == 0
    assert batch.metrics["reward/math/mean"] == pytest.approx(5 / 6)
    assert batch.metrics["reward/format/std"] == pytest.approx(math.sqrt(5 / 36))
    assert batch.metrics["reward/n_failed"] == 0.0
    state = recipe_runner.state_dict()
    assert state["rewards"]["aec"]["p0"] == {"mean": pytest.approx(185 / 3), "n": 1}
    assert state["rewards"]["aec"]["p1"] == {"mean": pytest.approx(83 / 3), "n": 1}

    # resume: a fresh (inline) runner with the saved state scores the next step identically
    import json

    saved = json.loads(json.dumps(state))
    nxt = [["<think>x</think> \\boxed{4}"] * 3, ["<think>y</think> \\boxed{7}"] * 3]
    toks = [[60, 62, 64], [10, 13, 30]]
    fin = [["stop"] * 3] * 2
    again = recipe_runner.score(nxt, EXAMPLES, num_tokens=toks, finish_reasons=fin)
    with RewardRunner(RECIPE, num_workers=0) as fresh:
        fresh.load_state_dict(saved)
        resumed = fresh.score(nxt, EXAMPLES, num_tokens=toks, finish_reasons=fin)
        assert resumed.total == again.total
        assert fresh.state_dict() == recipe_runner.state_dict()
    # second visit of p1: T = 83/3 (before update), r = 0.5 -> budget 13.83: only 10 and 13
    assert again.components["aec"][1] == [1.0, 1.0, 0.0]


def test_same_prompt_twice_in_a_batch_updates_in_order() -> None:
    with RewardRunner([{"name": "effort", "params": {"length_unit": "chars"}}], num_workers=0) as r:
        ex = {"id": "q", "prompt": "p", "answer": "1"}
        r.score([["\\boxed{1}"], ["\\boxed{1}"]], [ex, ex])
        assert r.state_dict()["rewards"]["effort"]["q"]["n"] == 2


STUB = """
import math, os, signal, time

def stub(completion, example, num_tokens=None):
    if completion == "stall":          # ignores the soft alarm: needs the hard kill
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        time.sleep(60)
    if completion == "spin":           # plain Python loop: the soft alarm interrupts it
        while True:
            pass
    if completion == "swallow":        # catches Exception, still interrupted
        try:
            while True:
                pass
        except Exception:
            return 5.0
    if completion == "crash":
        os._exit(3)
    if completion == "boom":
        raise RuntimeError("boom")
    if completion == "nan":
        return math.nan
    if completion == "hog":            # beyond the worker's address-space limit
        return float(len(bytearray(4 * 1024**3)))
    return float(num_tokens)
"""


def test_time_limits_failures_and_respawn(tmp_path: Path) -> None:
    path = tmp_path / "stub_reward.py"
    path.write_text(textwrap.dedent(STUB))
    spec = [{"name": f"{path}:stub", "weight": 2.0}]
    row = ["ok", "stall", "spin", "swallow", "crash", "boom", "nan", "hog", "ok"]
    toks = [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    with RewardRunner(
        spec, num_workers=2, timeout_s=0.6, failure_score=-1.0, chunk_size=9, memory_limit_mb=1024
    ) as r:
        t0 = time.monotonic()
        batch = r.score([row], [{"prompt": "p", "answer": "0"}], num_tokens=toks)
        elapsed = time.monotonic() - t0
        assert batch.components["stub"] == [[1.0] + [-1.0] * 7 + [9.0]]
        assert batch.total == [[2.0] + [-2.0] * 7 + [18.0]]
        assert batch.n_timeout == 3 and batch.n_failed == 4
        assert any("MemoryError" in e for e in batch.errors)
        assert any("hard time limit" in e for e in batch.errors)
        assert any("worker died" in e for e in batch.errors)
        assert elapsed < 15.0
        assert r.n_respawns >= 2
        # the pool keeps working after kills
        again = r.score([["ok", "ok"]], [{"prompt": "p"}], num_tokens=[[3, 4]])
        assert again.total == [[6.0, 8.0]] and again.n_failed == 0
        workers = list(r._pool._workers)
    assert all(w.proc.poll() is not None for w in workers)  # closed by the context manager


def test_construction_errors_before_workers_start() -> None:
    with pytest.raises(ValueError, match=r"rewards\[1\]\.name"):
        RewardRunner([{"name": "math"}, {"name": "nope_reward"}])
    with pytest.raises(ValueError, match="num_workers"):
        RewardRunner([{"name": "math"}], num_workers=-1)
    with pytest.raises(ValueError, match="timeout_s"):
        RewardRunner([{"name": "math"}], timeout_s=0)
    with RewardRunner([{"name": "math"}], num_workers=0) as r:
        with pytest.raises(ValueError, match="examples"):
            r.score([["a"]], [])
        with pytest.raises(ValueError, match="num_tokens"):
            r.score([["a"]], [{"answer": "1"}], num_tokens=[[1, 2]])
        r.load_state_dict({})  # nothing saved: no-op
        with pytest.raises(ValueError, match="load_state_dict"):
            r.load_state_dict({"rewards": [1]})


def _hostile_corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pieces = [
        r"\boxed{10^{10^{10}}}",
        r"\boxed{(10^{10})!}",
        "\\boxed{" + "{" * 3000 + "}" * 3000 + "}",
        "<think>" * 50 + "</think>",
        "\ud800 lone surrogate \\boxed{\udfff}",
        "\\boxed{__import__('os').system('true')}",
        "<answer>" + "9" * 3000 + "</answer>",
        "\\boxed{" + "x^" * 40 + "x}",
        r"\fbox{\frac{1}{0}}",
        r"\boxed{\infty - \infty}",
    ]
    alphabet = "0123456789{}()^!\\boxedfrac<>/think answer$+-*=.,xyz \n\u00e9\u4e2d\U0001f600"
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))))
        elif kind == 1:
            out.append(rng.choice(pieces))
        elif kind == 2:
            out.append(f"<think>work</think> \\boxed{{{rng.randint(-50, 50)}}}")
        else:
            body = "".join(rng.choice("0123456789+-*/^{}()x") for _ in range(rng.randint(1, 40)))
            out.append("\\boxed{" + body + "}")
    out[7] = "y" * 1_000_000 + "\\boxed{3}"  # one megabyte string
    return out


def test_bulk_random_and_hostile_strings_through_runner() -> None:
    texts = _hostile_corpus(2400)
    G = 8
    groups = [texts[i : i + G] for i in range(0, len(texts), G)]
    examples = [{"prompt": f"p{b}", "answer": str(b % 7)} for b in range(len(groups))]
    toks = [[len(t) % 200 for t in g] for g in groups]
    spec = [
        {"name": "math"},
        {"name": "format"},
        {"name": "overlong", "params": {"max_len": 150, "cache_len": 50}},
        {"name": "length_penalty"},
    ]
    with RewardRunner(spec, num_workers=2, timeout_s=10.0) as r:
        t0 = time.monotonic()
        batch = r.score(groups, examples, num_tokens=toks)
        elapsed = time.monotonic() - t0
    assert elapsed < 60.0
    assert batch.n_failed == 0 and batch.n_timeout == 0, batch.errors
    assert len(batch.total) == len(groups) and all(len(row) == G for row in batch.total)
    assert all(math.isfinite(v) for row in batch.total for v in row)
    assert batch.components["math"][0][7] == 0.0  # megabyte string, answer "0" vs 3


def test_unpicklable_input_and_interrupted_score_leave_the_pool_usable() -> None:
    good = [["<think>a</think>\\boxed{1}", "no"]]
    with RewardRunner([{"name": "format"}], num_workers=1) as r:
        with pytest.raises(TypeError, match="picklable"):
            r.score([["a"]], [{"prompt": "p", "bad": lambda: 0}])
        assert r.score(good, [{"prompt": "p"}]).total == [[1.0, 0.0]]
        real_drain = r._pool._drain
        calls = {"n": 0}

        def interrupting_drain(w, results):  # Ctrl-C while a chunk is in flight
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real_drain(w, results)

        r._pool._drain = interrupting_drain  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            r.score([["x"] * 50], [{"prompt": "p"}])
        r._pool._drain = real_drain  # type: ignore[method-assign]
        assert r.score(good, [{"prompt": "p"}]).total == [[1.0, 0.0]]


def test_specs_are_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe's rewards are parsed when it loads; the runner takes those specs as they are
    and scores exactly like the runner built from the mappings."""
    import rewards.base as base
    import rewards.runner as runner_mod
    from rlvr.config import Recipe

    calls: list[int] = []
    real = base.parse_specs

    def counting(specs):
        calls.append(1)
        return real(specs)

    monkeypatch.setattr(runner_mod, "parse_specs", counting)
    monkeypatch.setattr(base, "parse_specs", counting)
    recipe = Recipe.model_validate({"model": {"path": "m"}, "rewards": RECIPE})
    assert len(calls) == 1
    specs = recipe.reward_specs
    with RewardRunner(specs, num_workers=0) as given:
        assert len(calls) == 1 and given.specs == specs
        got = given.score(COMPLETIONS, EXAMPLES, NUM_TOKENS, FINISH)
    with RewardRunner(RECIPE, num_workers=0) as parsed:
        assert len(calls) == 2
        want = parsed.score(COMPLETIONS, EXAMPLES, NUM_TOKENS, FINISH)
    assert got.total == want.total and got.components == want.components
    # a changed reward is parsed again, not served stale
    recipe.rewards[1].weight = 2.0
    assert recipe.reward_specs[1].weight == 2.0 and len(calls) == 3
    with pytest.raises(ValueError, match="indices must be 0..K-1"):
        RewardRunner(specs[1:], num_workers=0)
