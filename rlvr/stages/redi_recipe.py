"""The ``rlvr redi`` recipe: REDI's two stages (SFT on positives, then the REDI objective on
positive / negative pairs) from teacher traces labelled by rlvr's math verifier.

Formula and source: :mod:`rlvr.stages.redi` (arXiv 2505.24850),
``L_REDI = mean[-l_w + alpha * l_l]`` with length-normalised sequence log-likelihoods
``l = log pi(y|x) / |y|``; stage 1 is plain SFT (TRL SFTTrainer) on the positive traces.

Teacher traces come from a file (``traces.path``: rows with the problem's prompt, answer and
``completion`` or a ``completions`` list) or are sampled from a teacher model
(``traces.teacher``; by default the model being trained, i.e. self-distillation) on the
recipe's ``data`` problems. Every trace is labelled positive iff ``math_reward`` = 1.

Outputs in ``<output_dir>/<name>/``: ``recipe.yaml``, ``traces.jsonl`` (labelled),
``pairs.jsonl``, ``sft_model/`` (stage 1, when ``sft.steps`` > 0), ``metrics.jsonl`` (one
line per REDI step: loss, l_w, l_l, margin, grad norm, lr), ``summary.json`` (counts, pair
log-likelihoods and held-out accuracy before / after) and ``model/`` (the output). Sampled
teacher traces (``teacher_samples.jsonl``) and the stage-1 model are reused by a re-run with
the same settings, so a crash in stage 2 costs neither again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import Field

from rlvr.config import Section
from rlvr.data.datasets import DataError, load_examples, load_file
from rlvr.stages.common import (
    Sampling,
    StageRecipe,
    cached_rows,
    check_model,
    eval_into,
    fingerprint,
    open_engine,
    prompt_messages,
    sample_completions,
    start_stage,
    write_json,
    write_metrics,
)
from rlvr.stages.judge import JudgeConfig, run_judge
from rlvr.stages.registry import register_stage

log = logging.getLogger("rlvr")


class REDITraces(Section):
    path: str | None = Field(
        None, description="Teacher traces file (jsonl / parquet); else sample from `teacher`."
    )
    completion_field: str = Field(
        "completions", description="Field with one trace (str) or several (list of str)."
    )
    teacher: str | None = Field(
        None, description="Model to sample traces from (default: the model being trained)."
    )
    sampling: Sampling = Sampling()
    judge: JudgeConfig = Field(
        JudgeConfig(), description="Optional LLM judge: positive iff verifier AND judge agree."
    )


class REDISFT(Section):
    """Stage 1: SFT on the positive traces (0 steps skips it, e.g. when the model already is
    the stage-1 model)."""

    steps: int = Field(0, ge=0)
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(32, ge=1, description="Sequences per forward/backward.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    warmup_steps: int = Field(0, ge=0)
    schedule: str = "linear"
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (TRL's default 0).")
    max_length: int = Field(1024, ge=8)


class REDIObjective(Section):
    alpha: float = Field(0.8, ge=0, le=1, description="Weight of the negative term (paper 0.8).")
    chosen_coef: float = 1.0
    lr: float = Field(1e-6, gt=0)
    steps: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1, description="Pairs per optimizer step.")
    micro_batch_size: int | None = Field(
        None, ge=1, description="Pairs per forward/backward (gradients accumulated)."
    )
    weight_decay: float = 1e-4
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    max_prompt_len: int = Field(800, ge=1)
    max_completion_len: int = Field(19_000, ge=1)


class REDIRecipe(StageRecipe):
    name: str = "redi"
    traces: REDITraces = REDITraces()
    sft: REDISFT = REDISFT()
    redi: REDIObjective = REDIObjective()


def _file_problems(recipe: REDIRecipe) -> list[dict]:
    """Problems with their traces from ``traces.path`` (prompt / answer fields from ``data``)."""
    assert recipe.traces.path is not None
    if not Path(recipe.traces.path).is_file():
        raise DataError(f"{recipe.traces.path}: teacher traces file not found (traces.path)")
    rows = load_file(recipe.traces.path, recipe.data)
    field = recipe.traces.completion_field
    singular = field[:-1] if field.endswith("s") else field
    out = []
    for i, row in enumerate(rows):
        raw = row.get(field, row.get(singular))
        if raw is None:
            raise DataError(
                f"{recipe.traces.path}: row {i + 1} has no '{field}' (traces.completion_field); "
                f"keys {sorted(row)[:8]}"
            )
        out.append({**row, "completions": [raw] if isinstance(raw, str) else list(raw)})
    return out


def _sampled_problems(recipe: REDIRecipe, train: list[dict]) -> list[dict]:
    teacher = recipe.traces.teacher or recipe.model.path
    if recipe.traces.teacher:
        check_model(teacher, "traces.teacher", recipe.model.trust_remote_code)
    s = recipe.traces.sampling
    problems = train[: s.num_problems]

    def sample() -> list[dict]:
        log.info("redi: sampling %d traces for %d problems from %s", s.n, len(problems), teacher)
        engine = open_engine(recipe.model, s.engine, path=teacher, seed=recipe.seed)
        try:
            groups = sample_completions(engine, problems, recipe.data, s, seed=recipe.seed)
        finally:
            engine.close()
        return [
            {**ex, "completions": [r["text"] for r in group]}
            for ex, group in zip(problems, groups, strict=True)
        ]

    key = fingerprint(teacher, recipe.data.model_dump(), s.model_dump(), recipe.seed)
    path = recipe.run_dir / "teacher_samples.jsonl"
    return cached_rows(path, key, sample, what="redi teacher traces")


def _judge_positives(
    cfg: JudgeConfig, positives: list[dict], negatives: list[dict]
) -> tuple[list[dict], list[dict], dict[str, int]]:
    """The paper's rule: a trace is positive iff the verifier AND the judge accept it; the
    verifier-correct traces the judge rejects become negatives."""
    items = [(t["prompt"][-1]["content"], t["answer"], t["completion"]) for t in positives]
    verdicts, unparsable = run_judge(cfg, items)
    kept = [t for t, ok in zip(positives, verdicts, strict=True) if ok]
    moved = [t for t, ok in zip(positives, verdicts, strict=True) if not ok]
    counts = {"judge_rejected": len(moved), "judge_unparsable": unparsable}
    log.info("redi judge: %s", counts)
    return kept, negatives + moved, counts


@register_stage(
    "redi",
    schema=REDIRecipe,
    help="REDI distillation from positive and negative teacher traces",
    description="REDI (arXiv 2505.24850) from a YAML recipe (see recipes/redi_*.yaml): teacher "
    "traces from traces.path or sampled from traces.teacher (default: the model itself), "
    "labelled by the math verifier; optional stage-1 SFT on positives (sft.steps), then the "
    "REDI loss mean[-l_w + alpha*l_l] on one (correct, incorrect) pair per problem. Writes "
    "traces.jsonl, pairs.jsonl, metrics.jsonl, summary.json and model/ to runs/<name>/.",
)
def run_redi_recipe(recipe: REDIRecipe) -> dict[str, Any]:
    """Label traces, build pairs, run stage 1 (optional) and the REDI stage; see the module
    docstring for the files written. Returns the summary, with ``model_dir``."""
    from rlvr.stages.redi import label_traces, make_pairs, run_redi
    from rlvr.stages.sft import run_sft

    run_dir = start_stage(recipe)
    if recipe.traces.judge.model is not None:  # fail before sampling, not after
        check_model(
            recipe.traces.judge.model, "traces.judge.model", recipe.traces.judge.trust_remote_code
        )
    if recipe.traces.path is None:
        train, heldout = load_examples(recipe.data)
        problems = _sampled_problems(recipe, train)
    else:
        problems = _file_problems(recipe)
        # held-out problems for the eval only where the recipe names its own data section
        heldout = load_examples(recipe.data)[1] if "data" in recipe.model_fields_set else []
    rows = [
        {
            "prompt": prompt_messages(ex, recipe.data),
            "answer": ex["answer"],
            "completions": ex["completions"],
            "id": str(ex.get("id", i)),
        }
        for i, ex in enumerate(problems)
    ]
    positives, negatives = label_traces(rows)
    judged: dict[str, int] = {}
    if recipe.traces.judge.model is not None:
        positives, negatives, judged = _judge_positives(recipe.traces.judge, positives, negatives)
    pairs = make_pairs(positives, negatives)
    labelled = [{**t, "correct": True} for t in positives]
    write_metrics(run_dir / "traces.jsonl", labelled + [{**t, "correct": False} for t in negatives])
    write_metrics(run_dir / "pairs.jsonl", pairs)
    counts = {
        "problems": len(rows),
        "traces": len(positives) + len(negatives),
        "positives": len(positives),
        "negatives": len(negatives),
        "pairs": len(pairs),
        **judged,
    }
    log.info("redi data: %s", counts)
    if not pairs:
        raise DataError(
            f"REDI: no problem has both a correct and an incorrect trace ({counts}); "
            "sample more traces per problem (traces.sampling.n) or use a weaker teacher"
        )
    summary: dict[str, Any] = {"counts": counts}
    if recipe.eval.before:
        eval_into(summary, "eval_before", recipe, recipe.model.path, heldout)
    start = recipe.model.path
    if recipe.sft.steps > 0:
        s = recipe.sft
        sft_rows = [
            {
                "prompt": t["prompt"],
                "completion": [{"role": "assistant", "content": t["completion"]}],
            }
            for t in positives
        ]
        sft_dir = run_dir / "sft_model"
        key = fingerprint(start, s.model_dump(), recipe.seed, fingerprint(sft_rows))
        stamp = run_dir / "sft_model.key"
        if stamp.is_file() and stamp.read_text().strip() == key and sft_dir.is_dir():
            log.info("redi: reusing the stage-1 SFT model %s", sft_dir)
            report = json.loads((run_dir / "sft_report.json").read_text())
        else:
            stamp.unlink(missing_ok=True)
            report = run_sft(
                start,
                sft_rows,
                sft_dir,
                **s.model_dump(exclude={"steps"}),  # the other `sft` keys: run_sft's parameters
                max_steps=s.steps,
                seed=recipe.seed,
                trust_remote_code=recipe.model.trust_remote_code,
                logging_dir=run_dir / "sft",
                gradient_checkpointing=recipe.model.gradient_checkpointing,
            )
            report = {k: report[k] for k in ("steps", "loss", "model_dir")}
            write_json(run_dir / "sft_report.json", report)
            stamp.write_text(key + "\n")
        summary["sft"] = {"steps": report["steps"], "loss": report["loss"]}
        start = report["model_dir"]
        if recipe.eval.after:
            eval_into(summary, "eval_after_sft", recipe, start, heldout)
    r = recipe.redi
    report = run_redi(
        start,
        pairs,
        run_dir / "model",
        **r.model_dump(),  # the `redi` section's keys are run_redi's parameters
        use_chat_template=recipe.data.use_chat_template,
        seed=recipe.seed,
        trust_remote_code=recipe.model.trust_remote_code,
        gradient_checkpointing=recipe.model.gradient_checkpointing,
        dtype=recipe.model.dtype,
    )
    write_metrics(run_dir / "metrics.jsonl", report["history"])
    summary["pairs_before"], summary["pairs_after"] = report["before"], report["after"]
    if recipe.eval.after:
        eval_into(summary, "eval_after", recipe, report["model_dir"], heldout)
    summary["model_dir"] = report["model_dir"]
    write_json(run_dir / "summary.json", summary)
    return summary
