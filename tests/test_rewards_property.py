"""Property test: every built-in reward survives random and hostile strings, fast, no exception."""

from __future__ import annotations

import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards.effort import effort_reward
from rewards.format import format_reward
from rewards.length import compression_reward, kimi_length_penalty, lc_r1_reward, overlong_reward
from rewards.math import math_accuracy

HOSTILE = st.sampled_from(
    [
        r"\boxed{10^{10^{10}}}",
        r"<think>\boxed{9^9^9}</think>\boxed{(10^{10})!}",
        "\\boxed{" + "{" * 10_000 + "}" * 10_000 + "}",
        "<think>" + "a" * 100_000 + "</think><answer>1</answer>",
        "\ud800\udfff\x00</think>\\boxed{\udc80}",
        "import os; os.system('true')",
        "</think></think><answer><answer>1</answer>",
        "\\boxed{\\frac{1}{\\frac{1}{\\frac{1}{0}}}}",
    ]
)
TEXT = (
    st.text(max_size=200)
    | HOSTILE
    | st.builds(
        lambda a, b: f"<think>{a}</think> \\boxed{{{b}}}",
        st.text(alphabet="0123456789 .=x", max_size=40),
        st.text(alphabet="0123456789^{}()!-x", max_size=20),
    )
)
ANSWER = st.sampled_from(["4", "-7", r"\frac{1}{2}", "x+1", "B", "10^{10^{10}}"])


@settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.lists(TEXT, min_size=1, max_size=4),
    ANSWER,
    st.floats(min_value=0.05, max_value=1.0),
    st.integers(min_value=0, max_value=300),
)
def test_every_reward_total_on_random_input(
    texts: list[str], answer: str, effort: float, base_len: int
) -> None:
    example = {"prompt": "p", "answer": answer, "effort": effort}
    toks = [base_len + 7 * i for i in range(len(texts))]
    t0 = time.perf_counter()
    values: list[float] = []
    for text, n in zip(texts, toks, strict=True):
        values.append(math_accuracy(text, example))
        values.append(format_reward(text, example))
        values.append(format_reward(text, example, partial=True, think_prefilled=True))
        values.append(overlong_reward(text, example, num_tokens=n, max_len=200, cache_len=50))
    values += kimi_length_penalty(texts, example, num_tokens=toks)
    values += compression_reward(texts, example, num_tokens=toks)
    lc = lc_r1_reward(texts, example, num_tokens=toks)
    # LC-R1's length term 1 - L/max(correct L) is unbounded below for long wrong answers
    assert all(d["length"] <= 1.0 and -1.0 <= d["compress"] <= 1.0 for d in lc)
    assert all(math.isfinite(v) for d in lc for v in d.values())
    scores, state = effort_reward(texts, example, num_tokens=toks, state=None)
    values += scores
    assert state["n"] == 1
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)
    assert all(-1.0 <= v <= 1.0 for v in values)
    assert time.perf_counter() - t0 < 10.0
