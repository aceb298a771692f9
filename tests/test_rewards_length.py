"""rewards.length: DAPO overlong, Kimi length penalty, mastery-gated compression, LC-R1."""

from __future__ import annotations

import pytest

from rewards.length import (
    compression_penalty,
    compression_reward,
    kimi_length_penalty,
    kimi_penalty,
    lc_r1_reward,
    overlong_reward,
    truncation_mask,
    valid_thinking_prefix,
)


@pytest.mark.parametrize(
    ("length", "expected"), [(10, 0.0), (80, 0.0), (90, -0.5), (100, -1.0), (120, -1.0)]
)
def test_overlong_dapo_vector(length: int, expected: float) -> None:
    # DAPO Eq. 13 with L_max = 100, L_cache = 20 (TRL docstring vector)
    assert overlong_reward("", {}, num_tokens=length, max_len=100, cache_len=20) == expected


def test_overlong_truncation() -> None:
    kw = {"max_len": 100, "cache_len": 20}
    assert overlong_reward("", {}, num_tokens=50, finish_reason="length", **kw) == 0.0
    assert (
        overlong_reward(
            "", {}, num_tokens=50, finish_reason="length", penalize_truncated=True, **kw
        )
        == -1.0
    )
    with pytest.raises(ValueError, match="num_tokens"):
        overlong_reward("", {}, **kw)
    assert truncation_mask([["stop", "length"], ["length"]]) == [[1.0, 0.0], [0.0]]


def test_kimi_vector() -> None:
    # lengths [100, 200, 300], correctness [T, T, F] -> lambda [0.5, 0, -0.5]
    assert kimi_penalty([100, 200, 300], [True, True, False]) == [0.5, 0.0, -0.5]
    # wrong answers never get a positive term: min(0, 0.5) = 0
    assert kimi_penalty([100, 200, 300], [False, True, True]) == [0.0, 0.0, -0.5]
    assert kimi_penalty([50, 50], [True, False]) == [0.0, 0.0]
    comps = {"math": [1.0, 1.0, 0.0]}
    out = kimi_length_penalty(["a", "b", "c"], {}, num_tokens=[100, 200, 300], components=comps)
    assert out == [0.5, 0.0, -0.5]


def test_kimi_computes_correctness_without_component() -> None:
    completions = ["\\boxed{4}", "\\boxed{4} " + "x" * 10, "\\boxed{5}"]
    out = kimi_length_penalty(completions, {"answer": "4"}, length_unit="chars")
    # chars: 9, 20, 9 -> lambda: 0.5, -0.5, 0.5 ; third is wrong -> min(0, 0.5) = 0
    assert out == [0.5, -0.5, 0.0]


def test_compression_vector() -> None:
    # all correct (mastered), L_ref = 100, tol = 10: 120 -> -0.5 * (120-110)/100 = -0.05 ;
    # 300 -> -0.5 * min(1, 1.9) = -0.5
    out = compression_penalty([100, 105, 120, 300], [True] * 4, delta=0.1, lam=0.5)
    assert out == pytest.approx([0.0, 0.0, -0.05, -0.5])
    # not mastered: no length pressure at all
    assert compression_penalty([100, 105, 120, 300], [True, True, False, True]) == [0.0] * 4
    # mastery 0.75: only correct rollouts are penalised
    out = compression_penalty([100, 300, 120, 300], [True, False, True, True], mastery=0.75)
    assert out == pytest.approx([0.0, 0.0, -0.05, -0.5])
    comps = {"math": [1.0, 1.0]}
    assert compression_reward(["a", "b"], {}, num_tokens=[10, 30], components=comps) == [0.0, -0.5]


def _lc(think: str, answer_box: str) -> str:
    return "<think>" + think + "</think>\\boxed{" + answer_box + "}"


def test_lc_r1_vector() -> None:
    think0 = "A=4." + " x" * 8  # 20 chars; answer stated in the first sentence (4 chars)
    c0 = _lc(think0, "4")  # 7 + 20 + 8 + 9 = 44 chars
    c1 = _lc(" y" * 10, "4")  # correct but the thinking never states the answer
    c2 = _lc("hmm", "5")  # wrong, 27 chars
    assert len(c0) == 44 and len(c1) == 44 and len(c2) == 27
    assert valid_thinking_prefix(c0, "4") == 4
    assert valid_thinking_prefix(c1, "4") is None
    out = lc_r1_reward([c0, c1, c2], {"answer": "4"}, num_tokens=[44, 44, 27])
    # cropped lengths: c0 = 44 * (1 - 16/44) = 28, c1 = 44, c2 = 27 ; max correct = 44
    assert out[0]["length"] == pytest.approx(1 - 28 / 44)
    assert out[1]["length"] == pytest.approx(0.0)
    assert out[2]["length"] == pytest.approx(1 - 27 / 44)
    # compress: 1 - 4/20 = 0.8 ; -1 (never derived) ; 0 (wrong)
    assert [o["compress"] for o in out] == pytest.approx([0.8, -1.0, 0.0])
    # no correct rollout: both terms vanish
    out = lc_r1_reward([c2], {"answer": "4"}, num_tokens=[27])
    assert out == [{"length": 0.0, "compress": 0.0}]


def test_lc_r1_box_in_thinking_and_coefs() -> None:
    c = _lc("so \\boxed{\\frac{1}{2}} done. more words", "0.5")
    assert valid_thinking_prefix(c, "0.5") == len("so \\boxed{\\frac{1}{2}} done.")
    out = lc_r1_reward([c], {"answer": "0.5"}, length_unit="chars", len_coef=2.0, cmp_coef=0.5)
    think_len = len("so \\boxed{\\frac{1}{2}} done. more words")
    assert out[0]["compress"] == pytest.approx(0.5 * (1 - 28 / think_len))
    assert out[0]["length"] == pytest.approx(0.0)  # the only correct rollout is the longest


def test_lc_r1_valid_prefix_skips_operands_before_the_answer_is_derived() -> None:
    """Answer 1: "x+1=2" holds the digit as an operand (skipped); "so x = 1." derives it."""
    c = _lc("We have x+1=2 here. Then 1 + x = 2 again. So x = 1. Check it.", "1")
    think = "We have x+1=2 here. Then 1 + x = 2 again. So x = 1."
    assert valid_thinking_prefix(c, "1") == len(think)
    # answer 4 in "2+2=4": the 2s are operands, the 4 after "=" is the result
    assert valid_thinking_prefix(_lc("2+2=4. more", "4"), "4") == len("2+2=4.")
    assert valid_thinking_prefix(_lc("4*3 = 12 no", "4"), "4") is None
