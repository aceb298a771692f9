"""Math suites: AIME 2024, AIME 2025 and MATH-500.

Fields: ``problem`` (the statement) and ``answer`` (the reference final answer: an integer
0-999 for AIME, a LaTeX string for MATH-500); MATH-500 also carries ``subject`` and ``level``,
used for per-group breakdowns.  Prompt (DeepSeek-R1 usage recommendations, also Qwen's
``qwen-boxed`` user turn): ``{prompt}\\nPlease reason step by step, and put your final answer
within \\boxed{}.``  Scorer: the training math reward (``rewards.math``: last ``\\boxed{}``
with fallbacks, math-verify equivalence under a hard time limit).

Defaults follow the DeepSeek-R1 / Qwen3 / open-r1 protocol: temperature 0.6, top-p 0.95,
32,768 new tokens; n = 16 samples for the 30-problem AIME sets (DeepScaleR's choice; open-r1
and Qwen3 use 64) and n = 4 for MATH-500 (open-r1).  Hub ids are the ones lighteval uses.
"""

from __future__ import annotations

from typing import Any

from eval.suites.base import DataError, Suite, SuiteDefaults

_MATH_FIELDS: dict[str, tuple[str, ...]] = {
    "problem": ("problem", "Problem", "question", "Question"),
    "answer": ("answer", "Answer", "expected_answer", "final_answer"),
}


def _validate_aime(ex: dict[str, Any], where: str) -> None:
    """AIME answers are integers 0..999; leading zeros ("025") are normalised away."""
    answer = ex["answer"]
    try:
        value = int(answer)
    except ValueError:
        raise DataError(f"{where}: AIME answer {answer!r} is not an integer") from None
    if not 0 <= value <= 999:
        raise DataError(f"{where}: AIME answer {value} is outside 0..999")
    ex["answer"] = str(value)


AIME_DEFAULTS = SuiteDefaults(n=16, temperature=0.6, top_p=0.95, max_tokens=32768)

AIME24 = Suite(
    name="aime24",
    description="AIME 2024 I+II (30 problems)",
    scorer="math",
    files=("aime24.jsonl", "aime24.parquet", "aime_2024.jsonl", "aime24.json"),
    fields=_MATH_FIELDS,
    required=("problem", "answer"),
    defaults=AIME_DEFAULTS,
    prompt_template="boxed",
    headline="avg@n",
    id_fields=("id", "ID", "unique_id"),
    hub=("HuggingFaceH4/aime_2024", None, "train"),
    validate=_validate_aime,
)

AIME25 = Suite(
    name="aime25",
    description="AIME 2025 I+II (30 problems)",
    scorer="math",
    files=("aime25.jsonl", "aime25.parquet", "aime_2025.jsonl", "aime25.json"),
    fields=_MATH_FIELDS,
    required=("problem", "answer"),
    defaults=AIME_DEFAULTS,
    prompt_template="boxed",
    headline="avg@n",
    id_fields=("id", "ID", "unique_id"),
    hub=("yentinglin/aime_2025", None, "train"),
    validate=_validate_aime,
)

MATH500 = Suite(
    name="math500",
    description="MATH-500 (PRM800K test subset of Hendrycks MATH, 500 problems)",
    scorer="math",
    files=("math500.jsonl", "math500.parquet", "math_500.jsonl", "MATH-500.jsonl"),
    fields={**_MATH_FIELDS, "subject": ("subject", "type"), "level": ("level",)},
    required=("problem", "answer"),
    defaults=SuiteDefaults(n=4, temperature=0.6, top_p=0.95, max_tokens=32768),
    prompt_template="boxed",
    headline="avg@n",
    id_fields=("unique_id", "id"),
    breakdown=("subject", "level"),
    hub=("HuggingFaceH4/MATH-500", None, "test"),
)
