"""Instruction-following suites: IFEval and IFBench.

Fields (identical in both): ``key`` (int in IFEval, string in IFBench), ``prompt``,
``instruction_id_list`` (verifier ids) and ``kwargs`` (one dict of verifier arguments per
instruction).  IFBench rows and the hub copy of IFEval list every kwarg name with ``null``
for unused ones; like the reference scorers (allenai/IFBench ``evaluation_lib.py``,
lighteval) these are dropped before the verifier is built.  Prompt: the row's prompt as the
user turn, unchanged.  Scorer: ``rewards.instruction_following`` (strict and loose verdicts,
loose = any of the 8 IFEval response variants passes).

Defaults: greedy decoding (temperature 0, n = 1) as in the IFEval and IFBench papers, with a
reasoning-model budget of 32,768 new tokens.  Headline metric: prompt-level strict for IFEval
(Qwen3 / DeepSeek-R1 tables), prompt-level loose for IFBench (the IFBench paper).
"""

from __future__ import annotations

from typing import Any

from eval.suites.base import DataError, Suite, SuiteDefaults

_IF_FIELDS: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt",),
    "instruction_id_list": ("instruction_id_list",),
    "kwargs": ("kwargs",),
}


def _validate_if(ex: dict[str, Any], where: str) -> None:
    ids = ex["instruction_id_list"]
    kwargs = ex["kwargs"]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise DataError(f"{where}: 'instruction_id_list' must be a non-empty list of strings")
    if not isinstance(kwargs, list) or not all(isinstance(k, dict) for k in kwargs):
        raise DataError(f"{where}: 'kwargs' must be a list of objects")
    if len(kwargs) != len(ids):
        raise DataError(f"{where}: 'kwargs' has {len(kwargs)} entries for {len(ids)} instructions")
    ex["kwargs"] = [{k: v for k, v in kw.items() if v is not None} for kw in kwargs]


IF_DEFAULTS = SuiteDefaults(n=1, temperature=0.0, top_p=1.0, max_tokens=32768)

IFEVAL = Suite(
    name="ifeval",
    description="IFEval (541 prompts, 25 verifiable instruction types)",
    scorer="ifeval",
    files=(
        "ifeval_input.jsonl",
        "ifeval_input_data.jsonl",
        "ifeval.jsonl",
        "input_data.jsonl",
        "ifeval.parquet",
    ),
    fields=_IF_FIELDS,
    required=("prompt", "instruction_id_list", "kwargs"),
    defaults=IF_DEFAULTS,
    prompt_template="plain",
    headline="prompt_level_strict",
    id_fields=("key", "id"),
    hub=("google/IFEval", None, "train"),
    validate=_validate_if,
)

IFBENCH = Suite(
    name="ifbench",
    description="IFBench test (out-of-distribution verifiable constraints)",
    scorer="ifbench",
    files=("ifbench_test.jsonl", "IFBench_test.jsonl", "ifbench.jsonl", "ifbench_test.parquet"),
    fields=_IF_FIELDS,
    required=("prompt", "instruction_id_list", "kwargs"),
    defaults=IF_DEFAULTS,
    prompt_template="plain",
    headline="prompt_level_loose",
    id_fields=("key", "id"),
    hub=("allenai/IFBench_test", None, "train"),
    validate=_validate_if,
)
