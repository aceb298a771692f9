"""rewards.format: think structure, single final answer, nothing after it."""

from __future__ import annotations

import pytest

from rewards.format import format_checks, format_reward


@pytest.mark.parametrize(
    ("completion", "strict", "partial"),
    [
        ("<think>a</think> \\boxed{42}", 1.0, 1.0),
        ("<think>a</think> The answer is \\boxed{42}.", 1.0, 1.0),
        ("<think>a</think><answer>42</answer>", 1.0, 1.0),
        ("<think>a</think>\n<answer>\n\\boxed{42}\n</answer>\n", 1.0, 1.0),
        ("  <think>\na\n</think>\n$\\boxed{x^{2}}$", 1.0, 1.0),
        ("<answer>42</answer>", 0.0, 0.0),  # no think block: nothing after a </think>
        ("<think>a</think><answer>42</answer> more", 0.0, 2 / 3),
        ("<think>a</think> \\boxed{1} \\boxed{2}", 0.0, 1 / 3),
        ("<think>a<think>b</think>\\boxed{1}", 0.0, 2 / 3),
        ("<think>a</think>\\boxed{1", 0.0, 1 / 3),
        ("<think>a</think><answer></answer>", 0.0, 1 / 3),
        ("<think>a</think><answer>1</answer>\\boxed{1}", 0.0, 1 / 3),
        ("x<think>a</think>\\boxed{1}", 0.0, 2 / 3),
    ],
)
def test_format_reward(completion: str, strict: float, partial: float) -> None:
    assert format_reward(completion, {}) == strict
    assert format_reward(completion, {}, partial=True) == pytest.approx(partial)


def test_prefilled_think_and_structure_only() -> None:
    assert format_reward("reasoning</think> \\boxed{3}", {}, think_prefilled=True) == 1.0
    assert format_reward("<think>r</think> \\boxed{3}", {}, think_prefilled=True) == 0.0
    assert format_reward("<think>r</think> anything", {}, require_answer=False) == 1.0
    assert format_checks("<think>r</think>", require_answer=False) == {"think": True}
