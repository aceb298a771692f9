"""The ``rlvr int`` recipe: InT, self-proposed interventions on failed attempts, as an SFT
stage before RL.

Method and source: :mod:`rlvr.stages.intervention` (arXiv 2601.14209). Incorrect attempts
come from a file (``attempts.path``: rows with the problem, answer, ``incorrect_attempt`` and
``reference_solution``) or from the model itself (``n`` samples per problem of the recipe's
``data``, the wrong ones kept, at most ``attempts.max_per_problem`` each). For every attempt
a proposer names the first wrong substep and writes a one-step intervention: the model itself
shown the reference solution (``proposer: model``), or, for tasks whose reference is a full
worked solution in the attempt's format, :func:`~rlvr.stages.intervention.reference_diff_proposer`
(``proposer: reference_diff``). Interventions that contain the answer are dropped; the rest
must pass the counterfactual check (at least one of ``k_check`` continuations verifies);
the kept prefix + intervention targets are trained on with TRL's SFTTrainer (no EOS).

Outputs in ``<output_dir>/<name>/``: ``recipe.yaml``, ``attempts.jsonl``,
``interventions.jsonl`` (each attempt's outcome, appended as it is decided: a re-run with the
same settings resumes there, and reuses sampled attempts), ``kept.jsonl`` (the SFT rows), ``trainer/`` (TRL logs), ``summary.json`` (counts, held-out accuracy before /
after) and ``model/``. When no row passes the check the input model is passed on unchanged
(``summary.json`` says so), so a pipeline goes on to RL.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rlvr.config import Section
from rlvr.data.datasets import DataError, load_examples, load_file
from rlvr.stages.common import (
    ENGINE_HELP,
    EngineName,
    EngineSection,
    Sampling,
    StageRecipe,
    cached_rows,
    eval_into,
    fingerprint,
    open_engine,
    prompt_messages,
    sample_completions,
    start_stage,
    write_json,
    write_metrics,
)
from rlvr.stages.registry import register_stage

log = logging.getLogger("rlvr")


class INTAttempts(Section):
    path: str | None = Field(
        None, description="Incorrect attempts file (jsonl / parquet); else sample the model."
    )
    attempt_field: str = "incorrect_attempt"
    reference_field: str = Field(
        "reference_solution",
        description="Reference solution field (arithmetic data: 'solution', its worked answer).",
    )
    sampling: Sampling = Sampling()
    max_per_problem: int = Field(1, ge=1, description="Incorrect attempts kept per problem.")


class INTConfig(EngineSection):
    engine: EngineName = Field(
        "hf", description="Engine for proposals and counterfactual continuations: " + ENGINE_HELP
    )
    proposer: Literal["model", "reference_diff"] = "model"
    k_interv: int = Field(4, ge=1, description="Proposals per attempt (proposer: model).")
    propose_tokens: int = Field(2048, ge=1)
    k_check: int = Field(32, ge=1, description="Continuations per guided attempt.")
    check_tokens: int = Field(1024, ge=1)
    lr: float = Field(1e-6, gt=0)
    steps: int = Field(100, ge=1)
    batch_size: int = Field(16, ge=1, description="Sequences per forward/backward.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    schedule: Literal["constant_with_warmup", "cosine", "linear"] = "cosine"
    max_length: int = Field(2048, ge=8)


class INTRecipe(StageRecipe):
    name: str = "int"
    attempts: INTAttempts = INTAttempts()
    intervention: INTConfig = INTConfig()


def _row(ex: dict, attempt: str, recipe: INTRecipe, where: str) -> dict:
    ref = ex.get(recipe.attempts.reference_field)
    if ref in (None, ""):
        raise DataError(
            f"{where}: no reference solution in '{recipe.attempts.reference_field}' "
            f"(attempts.reference_field); keys {sorted(ex)[:8]}"
        )
    return {
        "prompt": str(ex["prompt"]),
        "messages": prompt_messages(ex, recipe.data),
        "answer": str(ex["answer"]),
        "reference_solution": str(ref),
        "incorrect_attempt": attempt,
        "id": str(ex.get("id", where)),
    }


def collect_attempts(recipe: INTRecipe, train: list[dict]) -> list[dict]:
    """Incorrect attempts with their problem, answer and reference solution."""
    a = recipe.attempts
    if a.path is not None:
        if not Path(a.path).is_file():
            raise DataError(f"{a.path}: incorrect-attempts file not found (attempts.path)")
        rows = load_file(a.path, recipe.data)
        out = []
        for i, ex in enumerate(rows, start=1):
            attempt = ex.get(a.attempt_field)
            if attempt in (None, ""):
                raise DataError(
                    f"{a.path}: row {i} has no '{a.attempt_field}' (attempts.attempt_field)"
                )
            out.append(_row(ex, str(attempt), recipe, f"{a.path}: row {i}"))
        return out
    problems = train[: a.sampling.num_problems]

    def sample() -> list[dict]:
        engine = open_engine(recipe.model, a.sampling.engine, seed=recipe.seed)
        try:
            groups = sample_completions(engine, problems, recipe.data, a.sampling, seed=recipe.seed)
        finally:
            engine.close()
        out = []
        for ex, group in zip(problems, groups, strict=True):
            wrong = [r["text"] for r in group if not r["correct"]]
            for text in wrong[: a.max_per_problem]:
                out.append(_row(ex, text, recipe, f"problem {ex.get('id', ex['prompt'])}"))
        return out

    key = fingerprint(recipe.model.path, recipe.data.model_dump(), a.model_dump(), recipe.seed)
    return cached_rows(recipe.run_dir / "attempts.jsonl", key, sample, what="int attempts")


@register_stage(
    "int",
    schema=INTRecipe,
    help="InT: interventions on failed attempts, then SFT",
    description="InT (arXiv 2601.14209) from a YAML recipe (see recipes/int_*.yaml): incorrect "
    "attempts (a file or the model's own samples), a one-step intervention per attempt "
    "(proposer: model | reference_diff), answer-leak filter, counterfactual check "
    "(k_check continuations, one must verify), SFT on prefix + intervention (TRL). Writes "
    "attempts.jsonl, kept.jsonl, summary.json and model/.",
)
def run_int_recipe(recipe: INTRecipe) -> dict[str, Any]:
    """Attempts -> interventions -> counterfactual check -> SFT; see the module docstring for
    the files written. Returns the summary, with ``model_dir``."""
    from rlvr.stages.intervention import reference_diff_proposer, run_int

    run_dir = start_stage(recipe)
    train, heldout = load_examples(recipe.data)
    if recipe.attempts.path is not None and "data" not in recipe.model_fields_set:
        heldout = []  # the default arithmetic data is not the attempts' task
    rows = collect_attempts(recipe, train)
    if recipe.attempts.path is not None:
        write_metrics(run_dir / "attempts.jsonl", rows)
    log.info("int: %d incorrect attempts", len(rows))
    if not rows:
        raise DataError(
            "InT: no incorrect attempt to intervene on (the model solved every problem)"
        )
    summary: dict[str, Any] = {}
    if recipe.eval.before:
        eval_into(summary, "eval_before", recipe, recipe.model.path, heldout)
    c = recipe.intervention
    report = run_int(
        recipe.model.path,
        rows,
        run_dir / "model",
        propose=reference_diff_proposer if c.proposer == "reference_diff" else None,
        **c.model_dump(exclude={"proposer"}),  # the other keys are run_int's parameters
        seed=recipe.seed,
        logging_dir=run_dir,
        journal=run_dir / "interventions.jsonl",
        journal_key=fingerprint(
            recipe.model.path,
            fingerprint(rows),
            c.model_dump(
                include={
                    "engine",
                    "proposer",
                    "k_interv",
                    "propose_tokens",
                    "k_check",
                    "check_tokens",
                }
            ),
            recipe.seed,
        ),
        gradient_checkpointing=recipe.model.gradient_checkpointing,
    )
    summary["counts"] = report["counts"]
    log.info("int counts: %s", report["counts"])
    write_metrics(run_dir / "kept.jsonl", report["kept"])
    if report["model_dir"] is None:
        log.warning("int: no intervention passed the counterfactual check; model unchanged")
        summary["model_dir"] = recipe.model.path
        summary["trained"] = False
    else:
        write_metrics(run_dir / "metrics.jsonl", report["log_history"])
        summary["sft"] = {"steps": report["steps"], "loss": report["loss"]}
        summary["model_dir"] = report["model_dir"]
        summary["trained"] = True
        if recipe.eval.after:
            eval_into(summary, "eval_after", recipe, report["model_dir"], heldout)
    write_json(run_dir / "summary.json", summary)
    return summary
