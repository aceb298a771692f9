"""An LLM judge as a second filter on verifier-correct traces (REDI positives, SPECS chosen).

Sources: REDI counts a teacher trace as correct
iff *both* a Llama judge and Math-Verify say so; SPECS keeps a chosen response only when an
LLM judge (Gemini-2.5-flash there) finds its reasoning path consistent. Neither judge prompt is
public in the notes, so :data:`JUDGE_PROMPT` is our own wording; a recipe can replace it.

Rule: a local chat model is shown the problem, the reference answer and the response and must
end with ``\\boxed{yes}`` or ``\\boxed{no}``. :func:`parse_verdict` reads the last such box
(else the last standalone yes / no word). An unparsable verdict counts as *no* (a filter must
fail closed) and is counted separately, so a judge that cannot follow the prompt is visible in
the stage's summary. Greedy decoding by default, so verdicts are reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from rlvr.config import ModelConfig
from rlvr.stages.common import ENGINE_HELP, EngineName, EngineSection

JUDGE_PROMPT = """\
You are checking a student's solution to a math problem.

Problem:
{problem}

Reference final answer: {answer}

Student solution:
{response}

Is the student's reasoning correct and consistent from start to end, with the final answer
following from it (not guessed, not contradicted by earlier steps)? Answer with \\boxed{{yes}}
or \\boxed{{no}} at the end."""

_BOXED = re.compile(r"\\boxed\{\s*(yes|no)\s*\}", re.IGNORECASE)
_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


class JudgeConfig(EngineSection):
    """Optional LLM judge; unset ``model`` = no judge (verifier only)."""

    model: str | None = Field(None, description="Local judge model (chat); unset: no judge.")
    prompt: str = Field(
        JUDGE_PROMPT, description="Template with {problem}, {answer} and {response}."
    )
    max_new_tokens: int = Field(512, ge=1)
    trust_remote_code: bool = False
    engine: EngineName = Field("hf", description=ENGINE_HELP)


def parse_verdict(text: str) -> bool | None:
    """True / False from the judge's last ``\\boxed{yes|no}`` (else last yes/no word); None
    when there is neither."""
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1].lower() == "yes"
    words = _WORD.findall(text[-200:])
    return words[-1].lower() == "yes" if words else None


def judge_prompt(template: str, problem: str, answer: str, response: str) -> str:
    for key in ("{problem}", "{answer}", "{response}"):
        if key not in template:
            raise ValueError(f"judge.prompt must contain {key}")
    return (
        template.replace("{problem}", problem)
        .replace("{answer}", answer)
        .replace("{response}", response)
    )


def judge_verdicts(
    engine: Any,
    items: Sequence[tuple[str, str, str]],
    *,
    template: str = JUDGE_PROMPT,
    max_new_tokens: int = 512,
) -> tuple[list[bool], int]:
    """Verdicts for ``(problem, answer, response)`` items and the number unparsable (those
    count as False). One greedy generation per item with ``engine`` (any RolloutEngine)."""
    from rlvr.rollout import SamplingParams
    from rlvr.stages.common import prompt_ids

    if not items:
        return [], 0
    ids = [
        prompt_ids(engine.tokenizer, [{"role": "user", "content": judge_prompt(template, *it)}])
        for it in items
    ]
    outs = engine.generate(ids, SamplingParams(temperature=0.0, max_tokens=max_new_tokens))
    parsed = [parse_verdict(group[0].text) for group in outs]
    return [v is True for v in parsed], sum(v is None for v in parsed)


def run_judge(cfg: JudgeConfig, items: Sequence[tuple[str, str, str]]) -> tuple[list[bool], int]:
    """Load ``cfg.model`` and judge ``items``; see :func:`judge_verdicts`."""
    from rlvr.stages.common import check_model, open_engine

    assert cfg.model is not None
    check_model(cfg.model, "judge.model", cfg.trust_remote_code)
    engine = open_engine(
        ModelConfig(path=cfg.model, trust_remote_code=cfg.trust_remote_code), cfg.engine
    )
    try:
        return judge_verdicts(engine, items, template=cfg.prompt, max_new_tokens=cfg.max_new_tokens)
    finally:
        engine.close()
