"""rewards.math: extraction, comparison, hostile inputs (values checked by hand)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards.math import extract_answer, is_hostile, last_boxed, math_accuracy, math_reward


@pytest.mark.parametrize(
    ("completion", "answer", "expected"),
    [
        (r"<think>6*7</think> \boxed{42}", "42", 1.0),
        ("<answer>42</answer>", "42", 1.0),
        ("<think>x</think><answer>41</answer>", "42", 0.0),
        ("<think>x</think><answer>\\boxed{42}</answer>", "42", 1.0),
        (r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 1.0),  # TRL accuracy_reward vector
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 0.0),
        (r"<think>so \boxed{42}", "42", 0.0),  # unterminated thinking
        (r"<think>\boxed{7}</think> the end", "7", 0.0),  # box only inside thinking
        (r"\boxed{0.5}", r"\frac12", 1.0),
        (r"\boxed{10^{20}}", "100000000000000000001", 0.0),  # exact integers
        (r"\boxed{10^{20}+1}", "100000000000000000001", 1.0),
        ("\\boxed{" + "9" * 5000 + "}", "9" * 5000, 1.0),  # > int str-digits limit
        ("\\boxed{" + "9" * 5000 + "}", "9" * 4999 + "8", 0.0),
        ("The final answer is $42$. I hope it is correct.", "42", 1.0),
        ("Final answer: 17", "17", 1.0),
        ("so it's 42", "42", 1.0),  # last-expression fallback (mode "auto", the default)
        (r"\fbox{7}", "7", 1.0),
        (r"\boxed 7", "7", 1.0),
        (r"\boxed{1,000}", "1000", 1.0),
        (r"\boxed{0,1}", "1", 0.0),  # a tuple is not a thousands separator
        (r"\boxed{42.0}", "42", 1.0),
        (r"\boxed{-3}", "-3", 1.0),
        (r"\boxed{3}", "-3", 0.0),
        (r"\boxed{\{1,2\}}", r"\{1,2\}", 1.0),
        (r"\boxed{B}", "B", 1.0),
        (r"\boxed{x+1}", "1+x", 1.0),
        (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt{2}}{2}", 1.0),
        (r"\boxed{2^{2023}}", "2^{2023}", 1.0),
        (r"\boxed{\text{13}}", "13", 1.0),
        (r"\boxed{50\%}", "50", 1.0),
        (r"\boxed{90^\circ}", "90", 1.0),
        (r"\boxed{x=5}", "5", 1.0),
        (r"\boxed{\frac{84}{2}}", "42", 1.0),
        (r"\boxed{1 \times 10^{20}}", "100000000000000000000", 1.0),
        (r"\boxed{1 \times 10^{20}}", "100000000000000000001", 0.0),
        ("<answer>x^2+2x+1</answer>", "(x+1)^2", 1.0),
        (r"\boxed{3.14}", r"\pi", 0.0),
        (r"first \boxed{1} then \boxed{2}", "2", 1.0),  # last box wins
        (r"first \boxed{1} then \boxed{2", "1", 1.0),  # incomplete last box is skipped
    ],
)
def test_math_reward_cases(completion: str, answer: str, expected: float) -> None:
    assert math_reward(completion, answer) == expected


def test_strict_boxed_mode_and_older_switch() -> None:
    assert math_reward("the answer is 17.", "17") == 1.0
    assert math_reward("the answer is 17.", "17", extraction="boxed") == 0.0
    assert math_reward("so 17", "17", extraction="answer") == 0.0
    assert math_reward("so 17", "17", last_number_fallback=False) == 0.0
    assert math_reward("so 17", "17", last_number_fallback=True) == 1.0
    assert math_reward("I got 1,234 apples", "1234") == 1.0
    assert math_reward(r"\boxed{17}", "17", extraction="boxed") == 1.0
    with pytest.raises(ValueError, match="extraction"):
        math_reward("x", "1", extraction="loose")


def test_extraction_helpers() -> None:
    assert last_boxed(r"a \boxed{\frac{1}{2}} b") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{{a}{b}}") == "{a}{b}"
    assert last_boxed("no box") is None
    assert extract_answer("<think>a</think> Final answer: 5") == "5"
    assert extract_answer("<answer> 12 </answer>") == "12"
    assert extract_answer("<think>open") is None


def test_math_accuracy_registry_function() -> None:
    assert math_accuracy(r"\boxed{5}", {"answer": 5}) == 1.0
    assert math_accuracy(r"\boxed{5}", {"solution": "5"}, answer_field="solution") == 1.0
    with pytest.raises(KeyError):
        math_accuracy(r"\boxed{5}", {})


HOSTILE = [
    r"\boxed{10^{10^{10}}}",
    r"\boxed{9^9^9^9}",
    r"\boxed{2**2**2**2**2**2}",
    r"\boxed{(10^{10})!}",
    r"\boxed{100000000!}",
    r"\boxed{10^{1000000000}}",
    r"\boxed{\binom{1000000000}{500000000}}",
    "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
    "\\boxed{" + "(" * 10_000 + "1" + ")" * 10_000 + "}",
    "\\boxed{" + "\\frac{1}{" * 5000 + "2" + "}" * 5000 + "}",
    "x" * 1_000_000 + r"\boxed{",
    "\\boxed{" + "1+" * 200_000 + "1}",
    "\ud800\udfff\x00 \\boxed{\udc80}",
    "\\boxed{__import__('os').system('touch /tmp/rlvr_pwned')}",
    '\\boxed{exec("import os")}',
    "```python\nimport os\nos.system('touch /tmp/rlvr_pwned')\n```\n\\boxed{eval('1')}",
    "\\boxed{lambda: 0}",
    "\\boxed{" + "x^" * 50 + "x}",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_outputs_score_zero_fast(text: str) -> None:
    t0 = time.perf_counter()
    assert math_reward(text, "7") == 0.0
    assert time.perf_counter() - t0 < 2.0


def test_hostile_guard() -> None:
    assert is_hostile(r"10^{10^{10}}")
    assert is_hostile(r"a^b^c")
    assert is_hostile(r"(5)!")
    assert is_hostile(r"5000!")
    assert not is_hostile(r"2^{2023}")
    assert not is_hostile(r"5!")
    assert not is_hostile(r"\frac{\sqrt{2}}{2}")


def test_never_executes_code(tmp_path) -> None:
    marker = tmp_path / "pwned"
    math_reward(f"\\boxed{{__import__('os').system('touch {marker}')}}", "0")
    math_reward(f"\\boxed{{__import__('os').system('touch {marker}')}}", f"open('{marker}','w')")
    assert not marker.exists()


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.text(max_size=300)
    | st.builds(lambda s: "\\boxed{" + s + "}", st.text(max_size=60))
    | st.builds(
        lambda s: "<think>" + s + "</think>\\boxed{" + s[:20] + "}",
        st.text(alphabet="0123456789^{}()!+-*/\\.,x ", max_size=80),
    ),
    st.sampled_from(["42", r"\frac{1}{2}", "x+1", "B", "-7"]),
)
def test_math_reward_property(text: str, answer: str) -> None:
    t0 = time.perf_counter()
    r = math_reward(text, answer)
    assert r in (0.0, 1.0)
    assert time.perf_counter() - t0 < 3.0


def test_works_outside_the_main_thread() -> None:
    # math-verify's own SIGALRM time-outs would raise "signal only works in main thread"
    import threading

    out: list[float] = []
    t = threading.Thread(target=lambda: out.append(math_reward(r"\boxed{\frac{2}{4}}", "0.5")))
    t.start()
    t.join(30)
    assert out == [1.0]


def test_optional_main_thread_deadline() -> None:
    assert math_reward(r"\boxed{\frac{2}{4}}", "0.5", timeout_s=5.0) == 1.0


def test_brace_free_latex_operators_are_equivalent() -> None:
    """\\frac12 and \\sqrt2 are valid LaTeX: they match \\frac{1}{2} and \\sqrt{2}."""
    from rewards.math import math_reward

    assert math_reward(r"so \boxed{\frac12}", r"\frac{1}{2}") == 1.0
    assert math_reward(r"\boxed{\sqrt2}", r"\sqrt{2}") == 1.0
    assert math_reward(r"\boxed{\frac13}", r"\frac{1}{2}") == 0.0


def test_recipe_params_validated() -> None:
    validate = math_accuracy.__rlvr_validate__
    validate(extraction="boxed")
    validate(last_number_fallback=True, max_answer_chars=50)
    with pytest.raises(ValueError, match="extraction"):
        validate(extraction="strict")
    with pytest.raises(ValueError, match="max_answer_chars"):
        validate(max_answer_chars=0)
    assert math_accuracy("so 5", {"answer": "5"}, extraction="boxed") == 0.0
    assert math_accuracy(r"\boxed{5}", {"answer": "5"}, extraction="boxed") == 1.0
