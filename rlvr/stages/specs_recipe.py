"""The ``rlvr specs`` recipe: SPECS's self-distilled preference cold start (DPO) before RL.

Formula and source: :mod:`rlvr.stages.specs` (arXiv 2510.25801): the model samples ``n``
answers per problem of the recipe's ``data``; chosen = correct (math verifier) and
well-formed (``<think>...</think>`` then one ``\\boxed{}``), rejected = wrong or ill-formed;
then TRL's DPOTrainer minimises ``L_DPO(beta) + sft_weight * NLL(chosen)`` against a frozen
copy of the start model. Run a short GRPO first (a pipeline stage) to follow the paper's
GRPO-zero step.

Outputs in ``<output_dir>/<name>/``: ``recipe.yaml``, ``samples.jsonl`` (every sample with
its correctness and format), ``pairs.jsonl``, ``metrics.jsonl`` (TRL's DPO log per step:
loss, rewards/chosen, rewards/rejected, rewards/margins, ...), ``summary.json`` (pair counts,
held-out accuracy and well-formed share before / after) and ``model/``. A re-run with the same
model, data and sampling settings reuses ``samples.jsonl`` instead of sampling again.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field

from rlvr.config import Section
from rlvr.data.datasets import DataError, load_examples
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


class SPECSConfig(Section):
    sampling: Sampling = Sampling(n=8)
    max_pairs_per_prompt: int = Field(4, ge=1)
    pairing: Literal["decoupled", "coupled"] = Field(
        "decoupled",
        description="decoupled (the paper): rejected = the chosen response with its format "
        "corrupted; coupled: rejected = a natural wrong or ill-formed sample.",
    )
    synthesize_rejected: bool = Field(
        False,
        description="coupled pairing only: prompts with no rejected sample get a "
        "format-corrupted copy of a chosen one.",
    )
    judge: JudgeConfig = Field(
        JudgeConfig(),
        description="Optional LLM judge of the reasoning path: chosen iff correct, "
        "well-formed AND judged consistent (else the sample counts as rejected).",
    )
    beta: float = Field(0.1, gt=0)
    sft_weight: float = Field(1.0, ge=0, description="lambda of L_DPO + lambda * L_SFT.")
    lr: float = Field(1e-6, gt=0)
    steps: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1, description="Pairs per forward/backward.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(512, ge=8)


class SPECSRecipe(StageRecipe):
    name: str = "specs"
    specs: SPECSConfig = SPECSConfig()


def _judge_chosen(cfg: JudgeConfig, problems: list[dict], groups: list[list[dict]]) -> dict:
    """Judge every correct, well-formed sample; sets ``judged`` on each record."""
    todo = [
        (i, j)
        for i, g in enumerate(groups)
        for j, r in enumerate(g)
        if r["correct"] and r["well_formed"]
    ]
    items = [
        (problems[i]["messages"][-1]["content"], str(problems[i]["answer"]), groups[i][j]["text"])
        for i, j in todo
    ]
    verdicts, unparsable = run_judge(cfg, items)
    for (i, j), ok in zip(todo, verdicts, strict=True):
        groups[i][j]["judged"] = ok
    counts = {"judge_rejected": verdicts.count(False), "judge_unparsable": unparsable}
    log.info("specs judge: %s", counts)
    return counts


@register_stage(
    "specs",
    schema=SPECSRecipe,
    help="SPECS self-distilled preference (DPO) cold start",
    description="SPECS (arXiv 2510.25801) from a YAML recipe (see recipes/specs_*.yaml): the "
    "model samples answers to data's problems; chosen = correct and well-formed, rejected = "
    "wrong or ill-formed; DPO (TRL DPOTrainer) with beta and an SFT term on chosen. "
    "Writes samples.jsonl, pairs.jsonl, metrics.jsonl, summary.json and model/.",
)
def run_specs_recipe(recipe: SPECSRecipe) -> dict[str, Any]:
    """Self-generate, pair, DPO; see the module docstring for the files written. Returns the
    summary, with ``model_dir``."""
    from rlvr.stages.specs import build_preference_pairs, run_specs

    run_dir = start_stage(recipe)
    if recipe.specs.judge.model is not None:  # fail before sampling, not after
        check_model(
            recipe.specs.judge.model, "specs.judge.model", recipe.specs.judge.trust_remote_code
        )
    cfg = recipe.specs
    train, heldout = load_examples(recipe.data)
    problems = [
        {**ex, "messages": prompt_messages(ex, recipe.data)}
        for ex in train[: cfg.sampling.num_problems]
    ]
    summary: dict[str, Any] = {}
    if recipe.eval.before:
        eval_into(summary, "eval_before", recipe, recipe.model.path, heldout)

    def sample() -> list[dict]:
        engine = open_engine(recipe.model, cfg.sampling.engine, seed=recipe.seed)
        try:
            groups = sample_completions(
                engine, problems, recipe.data, cfg.sampling, seed=recipe.seed
            )
        finally:
            engine.close()
        return [
            {"problem": i, "id": ex.get("id", i), **rec}
            for i, (ex, group) in enumerate(zip(problems, groups, strict=True))
            for rec in group
        ]

    key = fingerprint(
        recipe.model.path, recipe.data.model_dump(), cfg.sampling.model_dump(), recipe.seed
    )
    flat = cached_rows(run_dir / "samples.jsonl", key, sample, what="specs samples")
    groups: list[list[dict]] = [[] for _ in problems]
    for rec in flat:
        groups[rec["problem"]].append(rec)
    stats: dict[str, int] = {}
    if cfg.judge.model is not None:
        stats.update(_judge_chosen(cfg.judge, problems, groups))
        write_metrics(run_dir / "samples.jsonl", flat)  # now with the judge's verdicts
    pairs = build_preference_pairs(
        [[r["text"] for r in g] for g in groups],
        problems,
        [[float(r["correct"] and r.get("judged", True)) for r in g] for g in groups],
        [[r["well_formed"] for r in g] for g in groups],
        max_pairs_per_prompt=cfg.max_pairs_per_prompt,
        synthesize_rejected=cfg.synthesize_rejected,
        pairing=cfg.pairing,
        stats=stats,
    )
    write_metrics(run_dir / "pairs.jsonl", pairs)
    samples = [r for g in groups for r in g]
    stats["samples_correct"] = sum(r["correct"] for r in samples)
    stats["samples_well_formed"] = sum(r["well_formed"] for r in samples)
    stats["samples"] = len(samples)
    summary["pair_stats"] = stats
    log.info("specs pairs: %s", stats)
    if not pairs:
        raise DataError(
            f"SPECS: no preference pair could be built ({stats}); sample more answers "
            "(specs.sampling.n) or set specs.synthesize_rejected=true"
        )
    report = run_specs(
        recipe.model.path,
        problems,
        run_dir / "model",
        pairs=pairs,
        beta=cfg.beta,
        lr=cfg.lr,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        sft_weight=cfg.sft_weight,
        max_length=cfg.max_length,
        seed=recipe.seed,
        grad_accum=cfg.grad_accum,
        gradient_checkpointing=recipe.model.gradient_checkpointing,
    )
    write_metrics(run_dir / "metrics.jsonl", report["log_history"])
    summary["dpo"] = {"steps": report["steps"], "loss": report["loss"]}
    if recipe.eval.after:
        eval_into(summary, "eval_after", recipe, report["model_dir"], heldout)
    summary["model_dir"] = report["model_dir"]
    write_json(run_dir / "summary.json", summary)
    return summary
