"""Benchmark suites: registry, prompt templates and prompt rendering.

Templates (``{prompt}`` is the suite's problem / prompt text):

* ``boxed`` (default for math; DeepSeek-R1 usage recommendations, Qwen ``qwen-boxed`` user
  turn): ``{prompt}\\nPlease reason step by step, and put your final answer within \\boxed{}.``
* ``simple_evals`` (open-r1 ``MATH_QUERY_TEMPLATE`` / lighteval <= v0.11 AIME prompt):
  ``Solve the following math problem efficiently and clearly. ... Therefore, the final answer
  is: $\\boxed{ANSWER}$. I hope it is correct ...\\n\\n{prompt}``
* ``plain``: ``{prompt}`` unchanged (IF suites, arithmetic).

A custom template is any string containing ``{prompt}``, the placeholder of training's
``data.prompt_template`` too (rlvr/data/prompts.py fills both); the old ``{problem}`` is still
accepted, with a deprecation warning.
"""

from __future__ import annotations

from typing import Any

from eval.suites.arithmetic import ARITHMETIC
from eval.suites.base import DataError, DataSource, Suite, SuiteDefaults, load_examples
from eval.suites.instruction import IFBENCH, IFEVAL
from eval.suites.math import AIME24, AIME25, MATH500

__all__ = [
    "PROMPT_TEMPLATES",
    "SUITES",
    "DataError",
    "DataSource",
    "Suite",
    "SuiteDefaults",
    "get_suite",
    "load_examples",
    "render_prompt",
    "resolve_template",
]

SUITES: dict[str, Suite] = {
    s.name: s for s in (AIME24, AIME25, MATH500, IFEVAL, IFBENCH, ARITHMETIC)
}

PROMPT_TEMPLATES: dict[str, str] = {
    "boxed": "{prompt}\nPlease reason step by step, and put your final answer within \\boxed{}.",
    "simple_evals": (
        "Solve the following math problem efficiently and clearly.  The last line of your "
        "response should be of the following format: 'Therefore, the final answer is: "
        "$\\boxed{ANSWER}$. I hope it is correct' (without quotes) where ANSWER is just the "
        "final number or expression that solves the problem. Think step by step before "
        "answering.\n\n{prompt}"
    ),
    "plain": "{prompt}",
}


def get_suite(name: str) -> Suite:
    """The registered suite ``name`` (case-insensitive; ``math_500`` / ``math-500`` accepted)."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    for suite_name, suite in SUITES.items():
        if suite_name.replace("_", "") == key:
            return suite
    raise KeyError(f"unknown suite {name!r}; available: {', '.join(SUITES)}")


def resolve_template(suite: Suite, template: str | None) -> str:
    """The template text for a suite: its default, a registered name, or a literal.

    IF suites always use their prompts unchanged (the instructions are the prompt), so a
    math template given for a whole run does not touch them.
    """
    if not suite.is_math:
        return PROMPT_TEMPLATES["plain"]
    if template is None:
        return PROMPT_TEMPLATES[suite.prompt_template]
    if template in PROMPT_TEMPLATES:
        return PROMPT_TEMPLATES[template]
    from rlvr.data.prompts import check_template

    check_template(template, "prompt template", names=list(PROMPT_TEMPLATES))
    return template


def render_prompt(suite: Suite, example: dict[str, Any], template: str) -> str:
    """The user-turn text of one example under a template text."""
    text = example["problem"] if suite.is_math else example["prompt"]
    from rlvr.data.prompts import fill_template

    return fill_template(template, text)
