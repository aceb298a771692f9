"""Synthetic arithmetic suite: the held-out split of the training task ``rlvr.data.arithmetic``.

Fields: ``problem`` (e.g. ``"37+58="``), ``answer`` (the exact integer).  The problems are the
held-out split that ``ArithmeticTask(digits=2, operations=("+",), seed=1234)`` reserves and
excludes from training (200 problems, the recipe default ``num_eval``), so a model trained by
the quickstart recipe is evaluated on problems it never saw.  An ``arithmetic.jsonl`` in
``--data-dir`` replaces the generated set.  Prompt: the problem text unchanged (the training
format).  Scorer: the math reward.  Used for tiny-model end-to-end runs and the throughput
benchmark: its prompts are short enough for a 512-position model.
"""

from __future__ import annotations

from typing import Any

from eval.suites.base import Suite, SuiteDefaults

NUM_EVAL = 200


def generate_arithmetic() -> list[dict[str, Any]]:
    """The held-out arithmetic problems of the default training task (deterministic)."""
    from rlvr.data.arithmetic import ArithmeticTask

    _, held_out = ArithmeticTask(digits=2, operations=("+",), seed=1234).splits(0, NUM_EVAL)
    return held_out


ARITHMETIC = Suite(
    name="arithmetic",
    description="2-digit addition, held-out split of the quickstart training task",
    scorer="math",
    files=("arithmetic.jsonl", "arithmetic.parquet"),
    fields={"problem": ("problem", "prompt"), "answer": ("answer",)},
    required=("problem", "answer"),
    defaults=SuiteDefaults(n=4, temperature=0.6, top_p=0.95, max_tokens=64),
    prompt_template="plain",
    headline="avg@n",
    id_fields=("id",),
    generator=generate_arithmetic,
)
