"""rewards.math: brace-free LaTeX arguments (``\\frac12``, ``\\sqrt2``) read as TeX reads them.

Every expectation is checked by hand against TeX's rule: an undelimited macro argument is one
token, so ``\\frac12`` = ``\\frac{1}{2}`` and ``\\frac123`` = ``\\frac{1}{2}3`` = 3/2.
"""

from __future__ import annotations

import time

import pytest

from rewards.math import _expand_shorthand, math_reward

HALF = r"\frac{1}{2}"


@pytest.mark.parametrize(
    "shorthand",
    [
        r"\frac12",
        r"\frac1{2}",
        r"\frac{1}2",
        r"\frac 12",
        r"\frac1 2",
        r"\dfrac12",
        r"\dfrac1{2}",
        r"\tfrac12",
        r"\tfrac{1}{2}",
        r"\dfrac{1}{2}",
    ],
)
def test_half_shorthand_matches_braced_both_ways(shorthand: str) -> None:
    assert math_reward("\\boxed{" + shorthand + "}", HALF) == 1.0
    assert math_reward("\\boxed{" + HALF + "}", shorthand) == 1.0
    assert math_reward(f"so the answer is \\boxed{{{shorthand}}}.", "0.5") == 1.0


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        (r"\sqrt2", r"\sqrt{2}"),
        (r"\sqrt{2}", r"\sqrt2"),
        (r"2\sqrt2", r"2\sqrt{2}"),
        (r"\sqrt23", r"3\sqrt{2}"),  # \sqrt{2}3
        (r"\sqrt[3]2", r"\sqrt[3]{2}"),
        (r"\frac{\sqrt3}2", r"\frac{\sqrt{3}}{2}"),
        (r"\frac1{\sqrt2}", r"\frac{\sqrt{2}}{2}"),
        (r"\frac\pi2", r"\frac{\pi}{2}"),
        (r"\frac x2", r"\frac{x}{2}"),
        (r"\frac{x}{2}", r"\frac x2"),
        (r"\frac34", r"\frac{3}{4}"),
        (r"-\frac12", r"-\frac{1}{2}"),
        (r"(\frac12,\frac13)", r"\left(\frac{1}{2},\frac{1}{3}\right)"),
        (r"\frac123", r"\frac{3}{2}"),  # TeX: \frac{1}{2}3
        (r"\frac{1}{2}3", r"\frac{3}{2}"),
        (r"\frac9{19}", r"\frac{9}{19}"),  # MATH-500 gold style
        (r"\frac{270}7", r"\frac{270}{7}"),
    ],
)
def test_shorthand_equivalents_accepted(pred: str, gold: str) -> None:
    assert math_reward("\\boxed{" + pred + "}", gold) == 1.0


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        (r"\frac13", HALF),
        (r"\frac21", HALF),
        (r"\dfrac13", HALF),
        (r"\tfrac14", HALF),
        (r"\frac{1}{3}", r"\frac12"),
        (r"-\frac12", HALF),
        (r"\sqrt3", r"\sqrt{2}"),
        (r"\sqrt{3}", r"\sqrt2"),
        (r"\sqrt[3]2", r"\sqrt{2}"),
        (r"\frac123", r"\frac{1}{23}"),  # 3/2, not 1/23
        (r"\frac{1}{23}", r"\frac123"),
        (r"\frac\pi3", r"\frac{\pi}{2}"),
    ],
)
def test_wrong_values_in_shorthand_rejected(pred: str, gold: str) -> None:
    assert math_reward("\\boxed{" + pred + "}", gold) == 0.0


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        (r"\frac12", r"\frac{1}{2}"),
        (r"\frac123", r"\frac{1}{2}3"),
        (r"\dfrac12+\tfrac34", r"\dfrac{1}{2}+\tfrac{3}{4}"),
        (r"\sqrt[3]2", r"\sqrt[3]{2}"),
        (r"\frac{\sqrt3}2", r"\frac{\sqrt{3}}{2}"),
        (r"\frac\pi2", r"\frac{\pi}{2}"),
        (r"\frac{1}{2}", r"\frac{1}{2}"),  # already braced: unchanged
        (r"\frac{a}{b", r"\frac{a}{b"),  # unbalanced: unchanged
        (r"\frac\sqrt2 3", r"\frac\sqrt{2} 3"),  # an operator is not an argument
        (r"\sqrtx \fracture", r"\sqrtx \fracture"),  # other control words
        (r"\frac(1)(2)", r"\frac(1)(2)"),  # left to math-verify
    ],
)
def test_expand_shorthand(text: str, expanded: str) -> None:
    assert _expand_shorthand(text) == expanded


def test_expansion_is_linear_and_guards_still_apply() -> None:
    t0 = time.perf_counter()
    for text in ("\\frac1{" * 5000, "\\sqrt{)" * 5000 + "}" * 5000, "\\sqrt[" * 5000):
        _expand_shorthand(text)
    assert time.perf_counter() - t0 < 2.0
    # the hostile-input guards see the shorthand too
    assert math_reward(r"\boxed{\sqrt2^{1000000}}", "2") == 0.0
    assert math_reward(r"\boxed{\frac12^{2^{100}}}", "0") == 0.0
    deep = "\\boxed{" + "\\sqrt{)" * 140 + "2" + "}" * 140 + "}"
    assert math_reward(deep, "1") == 0.0
    assert math_reward("x", "\\sqrt{)" * 1400 + "2" + "}" * 1400) == 0.0
