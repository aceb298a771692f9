"""The ``rlvr abstain-train`` recipe: fit a dynamic-abstention value head for a model.

Dynamic abstention ("Knowing When to Quit", arXiv 2604.18419; spec §8): abstain at prefix s_t
iff V(s_t) < r_⊥, with V(s_t) = P(correct | s_t) estimated by a head on the frozen policy's
post-final-norm hidden state (:mod:`rlvr.abstention`). The stage:

1. samples ``sampling.n`` rollouts per problem from the deployed model on the hf engine, the
   gate capturing each completion's features at decode time (not by a prefill), in chunks of
   ``chunk_size`` problems; each chunk is written to ``rollouts/chunk_NNNNN.{jsonl,safetensors}``
   as it finishes, so a crash loses at most one chunk and a re-run with the same settings
   samples only the missing ones;
2. labels every rollout with the math verifier (y = 1[``math_reward`` = 1]);
3. splits by unique prompt into train / validation (early stopping) / calibration;
4. trains the head (:mod:`rlvr.abstention.train`; loss focal(0.7, 1) + 0.1·TD);
5. calibrates on the calibration prompts: isotonic regression of y on σ(z_t), then the
   threshold c = the coverage quantile for ``calibration.target_coverage`` (when set) or
   c = ``calibration.r_abstain`` (a calibrated V̂ is compared with r_⊥ directly);
6. writes ``head.safetensors`` + ``head.json`` (feature spec, threshold, calibration knots,
   counts), ``metrics.jsonl`` (one line per epoch) and ``summary.json`` (counts, losses, and
   the calibration split's coverage / selective accuracy / tokens saved at c for the dynamic
   rule and the baselines, replayed from its traces).

The model is not changed: as a pipeline stage, its output model is its input model.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from rlvr.config import DataConfig, ModelConfig, Section, dump_recipe
from rlvr.data.datasets import DataError, load_examples
from rlvr.stages.common import (
    Sampling,
    check_model,
    example_prompt_ids,
    fingerprint,
    open_engine,
    score,
    write_json,
    write_metrics,
)
from rlvr.stages.registry import register_stage

log = logging.getLogger("rlvr")


class HeadConfig(Section):
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(128, ge=1, description="Rollouts per optimizer step.")
    epochs: int = Field(10, ge=1)
    patience: int = Field(3, ge=1, description="Early stopping on the validation loss.")
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(1e-2, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    focal_alpha: float = Field(0.7, gt=0, lt=1)
    focal_gamma: float = Field(1.0, ge=0)
    td_coef: float = Field(0.1, ge=0)


class SplitConfig(Section):
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of prompts, early stopping.")
    calib_fraction: float = Field(0.2, gt=0, lt=1, description="Share of prompts, calibration.")


class CalibrationConfig(Section):
    isotonic: bool = True
    target_coverage: float | None = Field(
        None, gt=0, le=1, description="Threshold = the quantile giving this coverage."
    )
    r_abstain: float = Field(
        0.5, ge=0, le=1, description="Abstention reward r_⊥: the threshold without a target."
    )
    min_tokens: int = Field(0, ge=0, description="Tokens before the gate may abstain.")


class AbstentionRecipe(Section):
    name: str = "abstain"
    output_dir: str = "runs"
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads.")
    model: ModelConfig
    data: DataConfig = DataConfig()
    sampling: Sampling = Sampling()
    chunk_size: int = Field(64, ge=1, description="Problems per cached sampling chunk.")
    split: SplitConfig = SplitConfig()
    head: HeadConfig = HeadConfig()
    calibration: CalibrationConfig = CalibrationConfig()

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _sample_chunks(recipe: AbstentionRecipe, problems: list[dict]) -> list[dict]:
    """Rollout records ``{group, correct, length, ...}`` with ``features`` [T, H] fp16,
    sampled chunk by chunk into ``rollouts/`` (reused when present with the same key)."""
    from safetensors.torch import load_file, save_file

    from rlvr.abstention import AbstentionGate, attach_gate
    from rlvr.rollout import HFEngine, SamplingParams

    s = recipe.sampling
    if s.engine != "hf":
        raise DataError(
            "abstain-train: sampling.engine must be 'hf': features are captured at decode time "
            "and vLLM exposes no per-step hidden states"
        )
    cache = recipe.run_dir / "rollouts"
    key = fingerprint(
        recipe.model.path, recipe.model.dtype, recipe.data.model_dump(), s.model_dump(),
        recipe.seed, recipe.chunk_size,
    )  # fmt: skip
    key_file = cache / "key"
    if cache.is_dir() and (not key_file.is_file() or key_file.read_text().strip() != key):
        log.warning("abstain-train: %s holds rollouts of other settings; resampling", cache)
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    chunks = [
        problems[i : i + recipe.chunk_size] for i in range(0, len(problems), recipe.chunk_size)
    ]
    engine: HFEngine | None = None
    records: list[dict] = []
    try:
        for k, chunk in enumerate(chunks):
            base = cache / f"chunk_{k:05d}"
            meta_path, feat_path = base.with_suffix(".jsonl"), base.with_suffix(".safetensors")
            if not (meta_path.is_file() and feat_path.is_file()):
                if engine is None:
                    engine = open_engine(recipe.model, "hf", seed=recipe.seed)
                    attach_gate(
                        engine, AbstentionGate(None, enforce=False, trace=False, capture=True)
                    )
                ids = example_prompt_ids(engine.tokenizer, chunk, recipe.data)
                sp = SamplingParams(
                    n=s.n, temperature=s.temperature, top_p=s.top_p,
                    max_tokens=s.max_new_tokens, seed=recipe.seed * 1_000_003 + k,
                )  # fmt: skip
                rows, tensors = [], {}
                for ex, group in zip(chunk, engine.generate(ids, sp), strict=True):
                    for j, c in enumerate(group):
                        correct, _ = score(c.text, ex)
                        name = f"r{len(rows)}"
                        assert c.features is not None
                        tensors[name] = c.features.contiguous()
                        rows.append({
                            "group": str(ex.get("id", ex["prompt"])), "sample": j,
                            "prompt": ex["prompt"], "answer": str(ex["answer"]),
                            "text": c.text, "length": len(c.token_ids),
                            "finish_reason": c.finish_reason, "correct": correct >= 1.0,
                            "tensor": name,
                        })  # fmt: skip
                tmp = feat_path.with_suffix(".safetensors.tmp")
                save_file(tensors, str(tmp))
                tmp.replace(feat_path)
                tmp = meta_path.with_suffix(".jsonl.tmp")
                write_metrics(tmp, rows)
                tmp.replace(meta_path)  # the chunk counts as done only now
                state = "sampled"
            else:
                state = "cached"
            rows = [json.loads(line) for line in meta_path.read_text().splitlines() if line]
            feats = load_file(str(feat_path))
            for r in rows:
                r["features"] = feats[r["tensor"]]
            records.extend(rows)
            done = sum(r["correct"] for r in records)
            log.info(
                "abstain-train: chunk %d/%d %s (%d rollouts, %.1f %% correct so far)",
                k + 1, len(chunks), state, len(records), 100 * done / max(len(records), 1),
            )  # fmt: skip
    finally:
        if engine is not None:
            engine.close()
    return records


@register_stage(
    "abstain-train",
    schema=AbstentionRecipe,
    help="dynamic abstention: train and calibrate a value head (hf engine)",
    description="Dynamic abstention (arXiv 2604.18419) from a YAML recipe (see "
    "recipes/abstention_*.yaml): samples rollouts with decode-time features (hf engine), "
    "labels them with the math verifier, splits by prompt, trains the value head (focal "
    "+ TD loss), calibrates on held-out prompts (isotonic + coverage quantile or "
    "threshold = r_abstain) and writes head.safetensors + head.json to runs/<name>/; "
    "rollouts and features are cached in rollouts/ so a re-run resumes. Use the head "
    "with: rlvr eval --engine hf --abstain runs/<name>/head.safetensors.",
)
def run_abstention_recipe(recipe: AbstentionRecipe) -> dict[str, Any]:
    """Sample, label, split, train, calibrate, write the head; returns the summary (with
    ``model_dir`` = the unchanged input model and ``head``)."""
    import numpy as np
    import torch

    from rlvr.abstention import IsotonicCalibrator, coverage_threshold, save_head
    from rlvr.abstention.replay import RULES, rule_metrics
    from rlvr.abstention.train import HeadTraining, split_by_prompt, train_head, value_traces

    check_model(recipe.model.path, "model.path", recipe.model.trust_remote_code)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    run_dir = recipe.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_recipe(recipe, run_dir / "recipe.yaml")  # type: ignore[arg-type]
    train_examples, _ = load_examples(recipe.data)
    problems = train_examples[: recipe.sampling.num_problems]
    if not problems:
        raise DataError("abstain-train: no problems in data")
    records = _sample_chunks(recipe, problems)
    tr, va, ca = split_by_prompt(
        [r["group"] for r in records],
        [recipe.split.val_fraction, recipe.split.calib_fraction],
        seed=recipe.seed,
    )

    def part(idx: list[int]) -> tuple[list[torch.Tensor], list[float]]:
        return [records[i]["features"] for i in idx], [float(records[i]["correct"]) for i in idx]

    labels = [r["correct"] for r in records]
    counts = {
        "problems": len(problems),
        "rollouts": len(records),
        "correct": int(sum(labels)),
        "train_rollouts": len(tr),
        "val_rollouts": len(va),
        "calib_rollouts": len(ca),
        "tokens": int(sum(r["length"] for r in records)),
    }
    log.info("abstain-train data: %s", counts)
    if len(set(labels)) < 2:
        raise DataError(
            f"abstain-train: every rollout is {'correct' if labels[0] else 'wrong'} ({counts}); "
            "the head needs both outcomes: use harder / easier problems or more samples"
        )
    h = recipe.head
    cfg = HeadTraining(**h.model_dump())

    def show(rec: dict) -> None:
        log.info(
            "abstain-train epoch %d/%d: train loss %.4f, val loss %.4f",
            rec["epoch"], h.epochs, rec["train_loss"], rec["val_loss"],
        )  # fmt: skip

    head, history = train_head(part(tr), part(va), cfg, seed=recipe.seed, log=show)
    write_metrics(run_dir / "metrics.jsonl", history)

    c_feats, c_labels = part(ca)
    raw = value_traces(head, c_feats)
    cal_cfg = recipe.calibration
    calibrator = None
    if cal_cfg.isotonic:
        xs = [v for t in raw for v in t]
        ys = [y for t, y in zip(raw, c_labels, strict=True) for _ in t]
        calibrator = IsotonicCalibrator.fit(xs, ys)
        traces = [calibrator(t).tolist() for t in raw]
    else:
        traces = raw
    if cal_cfg.target_coverage is not None:
        minima = [min(t[cal_cfg.min_tokens :] or t[-1:]) for t in traces]
        threshold = coverage_threshold(minima, cal_cfg.target_coverage)
        rule = f"coverage quantile {cal_cfg.target_coverage:g}"
    else:
        threshold, rule = cal_cfg.r_abstain, "threshold = r_abstain (calibrated value)"
    c_correct = [bool(y) for y in c_labels]
    calib = {
        name: rule_metrics(
            name, traces, c_correct, threshold, cal_cfg.r_abstain, cal_cfg.min_tokens
        )
        for name in RULES
    }
    flat_v = np.array([v for t in traces for v in t])
    flat_y = np.array([y for t, y in zip(traces, c_labels, strict=True) for _ in t])
    calib_stats = {
        "threshold": threshold,
        "rule": rule,
        "token_brier": float(np.mean((flat_v - flat_y) ** 2)),
        "base_accuracy": float(np.mean(c_labels)),
        "rules": calib,
    }
    meta = {
        "threshold": threshold,
        "r_abstain": cal_cfg.r_abstain,
        "min_tokens": cal_cfg.min_tokens,
        "calibration": calibrator.to_dict() if calibrator is not None else None,
        "info": {
            "model": recipe.model.path,
            "recipe": recipe.name,
            "counts": counts,
            "label": "1[math_reward == 1] (value = P(correct | prefix))",
            "threshold_rule": rule,
        },
    }
    head_path = save_head(head, run_dir / "head", meta)
    summary = {
        "counts": counts,
        "history": history,
        "calibration": calib_stats,
        "head": str(head_path),
        "model_dir": recipe.model.path,
    }
    write_json(run_dir / "summary.json", summary)
    log.info(
        "abstain-train: head %s, threshold %.3f; calibration split: dynamic coverage %.3f, "
        "selective accuracy %s, tokens saved %.3f",
        head_path, threshold, calib["dynamic"]["coverage"],
        calib["dynamic"]["selective_accuracy"], calib["dynamic"]["tokens_saved"],
    )  # fmt: skip
    return summary
