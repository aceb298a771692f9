"""A supervised warm-up stage run before RL from the same recipe (EGSPO's stage 1).

EGSPO (Hu et al. 2026, arXiv 2602.03309) trains in three stages: (1) SFT on expert
demonstrations with the pure SFT loss, L = -(1/|C|) sum_{t in C} log p(y_t | y_<t) over the
demonstration's completion tokens C; (2) RL rollouts from the warmed policy with per-token
entropies; (3) entropy-gated PPO updates (``egspo_gate``, rlvr/algos/token_weighting). With a
``warmup:`` section a recipe runs stage 1 here, via :func:`rlvr.stages.sft.run_sft`, and the
RL run (stages 2 and 3) then starts from its output, which also becomes the KL reference.

Demonstrations are the recipe's training examples (``prompt`` plus ``warmup.completion_field``,
e.g. the worked ``solution`` of the arithmetic task) or a jsonl file ``warmup.path`` with
those fields. The model is written to ``<run_dir>/warmup_model`` through a temporary folder
renamed at the end, so a run that is killed and resumed reuses a finished warm-up and redoes
an unfinished one. Choice: the demonstrations are formatted with the tokenizer's chat
template (TRL's prompt-completion format), not with ``data.prompt_template``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from rlvr.config import Recipe

log = logging.getLogger(__name__)


def demonstrations(recipe: Recipe) -> list[dict]:
    """(prompt, completion) rows for the warm-up, at most ``warmup.max_examples``."""
    from rlvr.data import load_examples

    w = recipe.warmup
    assert w is not None
    if w.path is not None:
        rows = [json.loads(line) for line in Path(w.path).read_text().splitlines() if line.strip()]
    else:
        rows, _ = load_examples(recipe.data)
    usable = [r for r in rows if r.get("prompt") and r.get(w.completion_field)]
    if not usable:
        raise ValueError(
            f"warmup: no example has both 'prompt' and '{w.completion_field}' "
            f"({w.path or 'the training split'})"
        )
    return usable[: w.max_examples] if w.max_examples else usable


def warmup_model(recipe: Recipe) -> Path:
    """Run the SFT warm-up once; return the warmed model's directory."""
    from rlvr.stages.sft import conversational_pairs, run_sft

    w = recipe.warmup
    assert w is not None
    out = recipe.run_dir / "warmup_model"
    if (out / "config.json").is_file():
        log.info("warm-up: reusing %s", out)
        return out
    tmp = recipe.run_dir / "warmup_model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    rows = conversational_pairs(demonstrations(recipe), w.completion_field)
    report = run_sft(
        recipe.model.path,
        rows,
        tmp,
        lr=w.lr,
        batch_size=w.batch_size,
        max_steps=w.steps,
        warmup_steps=min(20, w.steps // 10),
        seed=recipe.seed,
    )
    shutil.rmtree(tmp / "_sft_tmp", ignore_errors=True)
    (tmp / "warmup_report.json").write_text(json.dumps(report, indent=1, default=str))
    tmp.rename(out)
    log.info("warm-up: %d SFT steps, loss %.4f -> %s", report["steps"], report["loss"], out)
    return out


def apply_warmup(recipe: Recipe) -> Recipe:
    """The recipe with ``model.path`` pointing at the warmed model (unchanged without
    ``warmup``)."""
    if recipe.warmup is None:
        return recipe
    path = warmup_model(recipe)
    return recipe.model_copy(update={"model": recipe.model.model_copy(update={"path": str(path)})})
