"""Running a recipe: seeding, the tokenizer, the rollout engine a recipe asks for, and training a recipe to the end
(:func:`train_recipe`) or reusing a finished run of it (:func:`train_cached`, for comparison
scripts). The loop itself is rlvr/trainer.py."""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rlvr.config import Recipe
from rlvr.distributed import current as current_dist

log = logging.getLogger("rlvr")

if TYPE_CHECKING:
    from rlvr.rollout import RolloutEngine
    from rlvr.trainer import Trainer


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_tokenizer(recipe: Recipe) -> Any:
    from transformers import AutoTokenizer

    m = recipe.model
    try:
        return AutoTokenizer.from_pretrained(
            m.path, trust_remote_code=m.trust_remote_code, revision=m.revision
        )
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            f"model.path {m.path!r}: not a local model directory (relative paths start at "
            f"{Path.cwd()}) and not loadable from the Hugging Face hub: {e}"
        ) from e


def train_recipe(recipe: Recipe, **kwargs: Any) -> tuple[dict[str, Any], Trainer]:
    """Build a :class:`Trainer` for ``recipe``, train it, and always release its engine and
    reward workers. Returns the run summary and the closed trainer (its model stays usable)."""
    from rlvr.trainer import Trainer

    trainer = Trainer(recipe, **kwargs)
    try:
        return trainer.train(), trainer
    finally:
        trainer.close()


def train_cached(recipe: Recipe, steps: int) -> list[dict[str, Any]]:
    """Metrics of ``recipe`` run for ``steps`` steps, reusing a finished run in its run
    directory when it covers exactly those steps (with a constant LR schedule, the first
    ``steps`` steps of a longer run are the same run). For comparison scripts."""
    from rlvr.metrics import read_metrics

    done = recipe.run_dir / "metrics.jsonl"
    if done.is_file():
        rows = read_metrics(done)
        same = len(rows) == steps or recipe.train.schedule == "constant"
        if (
            same
            and len(rows) >= steps
            and [r["step"] for r in rows[:steps]] == list(range(1, steps + 1))
        ):
            return rows[:steps]
    if recipe.run_dir.exists():
        shutil.rmtree(recipe.run_dir)
    train_recipe(recipe)
    return read_metrics(done)


def rollout_engine(
    recipe: Recipe, model: Any, tokenizer: Any, weights_path: str, show_progress: bool
) -> tuple[RolloutEngine, bool]:
    """The rollout engine of ``recipe`` (vLLM servers, in-process vLLM, or HF generate) and
    whether it shares the learner's ``model`` (no sync needed): only the colocated HF engine
    at the training dtype, synchronous (one-step off-policy generates during the update, so
    it needs its own copy)."""
    from rlvr.console import status
    from rlvr.rollout import model_engine
    from rlvr.rollout.server import server_engine

    m, r = recipe.model, recipe.rollout
    # rollout.dtype other than model.dtype: the HF engine holds its own copy, synced
    rollout_dtype = r.dtype or m.dtype
    shares = (
        r.mode == "colocate"
        and r.engine == "hf"
        and rollout_dtype == m.dtype
        and not r.max_staleness
        and not current_dist().sharded  # FSDP2: rank 0 generates with a whole copy
    )
    check_lora_sync(recipe, shares)
    lora_config = None
    if recipe.lora is not None and recipe.lora.sync == "adapter" and not shares:
        from rlvr.lora import adapter_config

        lora_config = adapter_config(model)  # the engine samples through vLLM LoRA requests
    if r.mode == "server":  # vLLM servers (rlvr serve), pre-flight
        return server_engine(recipe, tokenizer, lora_config), False
    with status(f"starting the {r.engine} rollout engine", show_progress):
        engine = model_engine(
            m,
            r.engine,
            # a LoRA checkpoint holds the adapter only: the engine loads the base, then syncs
            path=m.path if recipe.lora is not None else weights_path,
            dtype=rollout_dtype,
            seed=recipe.seed,
            max_model_len=r.max_model_len,
            gpu_memory_utilization=r.gpu_memory_utilization,
            kv_cache_gib=r.kv_cache_gib,
            model=model if shares else None,
            tokenizer=tokenizer,
            soft=r.soft_thinking.params() if r.soft_thinking is not None else None,
            enforce_eager=r.enforce_eager,
            sleep=r.sleep,
            lora_config=lora_config,
        )
    if not shares and isinstance(getattr(engine, "model", None), torch.nn.Module):
        engine.model.to(next(model.parameters()).device)  # an HF copy: beside the policy
    return engine, shares


def check_lora_sync(recipe: Recipe, shares_model: bool) -> None:
    """``lora.sync=adapter`` works where the engine is the learner's own peft model, the
    colocated vLLM engine, or vLLM rollout servers (versioned LoRA requests; each server's
    pre-flight refuses one started without LoRA: rlvr serve --lora-rank R); a separate HF copy
    takes merged weights."""
    if recipe.lora is None or recipe.lora.sync != "adapter" or shares_model:
        return
    r = recipe.rollout
    if r.mode == "server":
        return  # the servers' pre-flight checks LoRA (rlvr.rollout.receipt.check_lora_server)
    if r.engine != "vllm":
        raise ValueError(
            "lora.sync=adapter needs rollout.engine=vllm (LoRA requests) when the HF engine "
            "holds its own copy (rollout.dtype or max_staleness set): use lora.sync=merged"
        )


def resume_training_state(
    checkpoint: Path, learner: Any, sampler: Any, changes: dict[str, tuple]
) -> dict[str, Any]:
    """Continue from ``checkpoint``: optimizer, schedule and sampler state (data stream,
    estimator state, RNG), the learner's update count, and the recipe changes allowed on
    resume (rlvr/run_dir.py). Refuses weights holding NaN / inf. Returns the loaded state."""
    from rlvr.checkpoint import load_training_state
    from rlvr.guard import parameters_finite
    from rlvr.run_dir import apply_resume_changes

    state = load_training_state(
        checkpoint,
        optimizer=learner.optimizer,
        scheduler=learner.scheduler,
        load_optimizer=learner.load_optimizer_state,
    )
    learner.updates_done = int(state["step"])
    if not parameters_finite(learner.model):  # e.g. written before the guard existed
        raise ValueError(
            f"{checkpoint}: the checkpoint's weights hold NaN or inf; delete it "
            "to resume from the checkpoint before it"
        )
    sampler.load_state_dict(state)
    log.info("resumed from %s at step %d", checkpoint, learner.updates_done)
    apply_resume_changes(changes, learner.optimizer, learner.scheduler)
    return state


def start_rollout(trainer: Any, engine: Any, injected: bool, state: dict[str, Any]) -> Any:
    """Before the first step: rollout servers pass the probe gate (and receive the trainer's
    weights when resuming or shared); an injected engine, or a resumed LoRA run's base,
    receives this run's weights. Returns the one-step off-policy driver
    (``rollout.max_staleness >= 1``; the batch in flight at a resume is generated again) or
    None."""
    from rlvr.off_policy import OneStepOffPolicy
    from rlvr.rollout.server import VLLMServerEngine, start_servers

    recipe, resumed = trainer.recipe, trainer.resume_from
    if isinstance(engine, VLLMServerEngine):
        try:
            sync = injected or trainer.step > 0
            start_servers(engine, trainer.learner, trainer.sampler, step=trainer.step, sync=sync)
        except Exception:
            trainer.close()
            raise
    elif injected or (recipe.lora is not None and resumed is not None):
        trainer.sync_weights()
    if recipe.rollout.max_staleness < 1:
        return None
    off_policy = OneStepOffPolicy(
        trainer.sampler,
        trainer.learner,
        trainer.sync_weights,
        steps=recipe.train.steps,
        engine_version=trainer.learner.updates_done,
    )
    if resumed is not None:
        off_policy.resume(state, resumed, engine)
    return off_policy
