"""rewards.effort: adaptive effort control with a per-prompt running mean."""

from __future__ import annotations

import json

import pytest

from rewards.effort import add_effort, effort_reward, effort_scores


def test_effort_vectors() -> None:
    # first visit: T = mean(100, 200, 300, 400) = 250 ; budget 0.5 -> L/T <= 0.5
    scores, state = effort_scores([100, 200, 300, 400], [True, True, True, False], 0.5, None)
    assert scores == [1.0, 0.0, 0.0, 0.0]
    assert state == {"mean": 250.0, "n": 1}
    # second visit: T = 250 (before update) ; new mean = 0.5 * 250 + 0.5 * 100 = 175
    scores, state = effort_scores([100, 100, 100, 100], [True, True, False, True], 0.5, state)
    assert scores == [1.0, 1.0, 0.0, 1.0]
    assert state == {"mean": 175.0, "n": 2}
    # full effort: anything up to the running mean
    scores, _ = effort_scores([175, 176], [True, True], 1.0, state)
    assert scores == [1.0, 0.0]
    _, frozen = effort_scores([10, 10], [True, True], 1.0, state, freeze=True)
    assert frozen["mean"] == 175.0
    json.dumps(state)


def test_effort_reward_uses_components_and_example_effort() -> None:
    ex = {"prompt": "p", "effort": 0.5}
    scores, state = effort_reward(
        ["a", "b"], ex, num_tokens=[10, 30], components={"math": [1.0, 1.0]}, state=None
    )
    assert scores == [1.0, 0.0] and state == {"mean": 20.0, "n": 1}
    scores, _ = effort_reward(
        ["a", "b"],
        {"prompt": "p"},
        num_tokens=[10, 30],
        components={"math": [1.0, 1.0]},
        state=None,
    )
    assert scores == [1.0, 0.0]  # default effort 1.0: 10/20 <= 1, 30/20 > 1
    with pytest.raises(ValueError, match="positive fraction"):
        effort_reward(["a"], {"effort": -1}, num_tokens=[1], components={"math": [1.0]}, state=None)


def test_add_effort() -> None:
    ex = add_effort({"prompt": "Solve 1+1.", "answer": "2"}, 0.25)
    assert ex["prompt"] == "Solve 1+1.\n\nReasoning effort: 0.25" and ex["effort"] == 0.25
    chat = add_effort({"prompt": [{"role": "user", "content": "Q"}]}, 0.5, template=" [e={effort}]")
    assert chat["prompt"][0]["content"] == "Q [e=0.5]"
    with pytest.raises(ValueError):
        add_effort({"prompt": "x"}, 1.5)


def test_effort_measures_the_chain_of_thought() -> None:
    """l(h) is the CoT: "<think>" + 12 chars + "</think>" + a 20-char answer = 47 chars, CoT =
    19 chars (before "</think>"); with 47 tokens that is 19 tokens. Completion B has no
    </think>: it counts whole (20 tokens). Group mean T = (19 + 20) / 2 = 19.5; at r = 1,
    19/19.5 <= 1 (reward 1) and 20/19.5 > 1 (reward 0). Measured whole, A (47 tokens) fails."""
    a = "<think>" + "x" * 12 + "</think>" + "y" * 20
    assert len(a) == 47 and a.find("</think>") == 19
    b = "z" * 20
    comp = {"math": [1.0, 1.0]}
    scores, state = effort_reward([a, b], {"prompt": "p"}, num_tokens=[47, 20], components=comp)
    assert scores == [1.0, 0.0] and state == {"mean": 19.5, "n": 1}
    whole, st = effort_reward(
        [a, b], {"prompt": "p"}, num_tokens=[47, 20], components=comp, measure="completion"
    )
    assert whole == [0.0, 1.0] and st["mean"] == 33.5
    with pytest.raises(ValueError, match="measure"):
        effort_reward([a], {"prompt": "p"}, num_tokens=[1], components=comp, measure="x")
