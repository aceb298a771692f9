"""The RL loop, readable top to bottom.

    for step in 1..train.steps:
        batch, m = sampler.next_batch(step)    # rollout side: prompts, engine, rewards,
                                               #   filters, advantages -> TrainBatch (tensors)
        m |= learner.update(batch).metrics     # learner side: policy loss, optimizer step
        sync(sampler.engine, learner)          # new weights to the rollout engine, in memory
        log(m); checkpoint every N steps       # atomic; a killed run resumes where it stopped

With ``rollout.max_staleness: 1`` the batch comes from rlvr/off_policy.py instead: generated
during the previous update (one version stale), the sync happens before the next generation
is launched, and that generation overlaps this update.

rlvr/sampler.py holds the rollout side (../DESIGN.md steps 1-5), rlvr/learner.py the learner
side (steps 6-8). An optional supervised warm-up (``warmup``, rlvr/stages/warmup.py) runs once
before the first step. Signals (Ctrl-C, SIGTERM) finish the current step, write a checkpoint
and stop; ``resume=true`` continues from the run directory's latest checkpoint.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from rlvr.checkpoint import latest_checkpoint, save_checkpoint
from rlvr.config import Recipe
from rlvr.console import StepProgress, status
from rlvr.guard import NonFiniteGuard
from rlvr.learner import DTYPES, Learner, lr_lambda
from rlvr.metrics import MetricsLogger, write_plots
from rlvr.off_policy import OneStepOffPolicy
from rlvr.recovery import StepCounter, save_on_crash, snapshot
from rlvr.rollout import RolloutEngine
from rlvr.rollout.receipt import WeightSyncError
from rlvr.run import (
    check_lora_sync,
    load_tokenizer,
    resume_training_state,
    rollout_engine,
    seed_everything,
    start_rollout,
    train_cached,
    train_recipe,
)
from rlvr.run_dir import open_run_dir
from rlvr.sampler import Sampler
from rlvr.stages.warmup import apply_warmup
from rlvr.stopping import StopSignals, reward_failure_stop

log = logging.getLogger("rlvr")

__all__ = ["DTYPES", "Trainer", "lr_lambda", "seed_everything", "train_cached", "train_recipe"]


class Trainer:
    def train(self) -> dict[str, Any]:
        """Run until ``train.steps``; returns a summary (final metrics, eval, interrupted)."""
        r = self.recipe
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "interrupted": False}
        summary["data"] = self.sampler.data_report.as_dict()
        if self.resume_changes:
            summary["resume_changes"] = {k: list(v) for k, v in self.resume_changes.items()}
        logger = MetricsLogger(
            self.run_dir,
            tensorboard=r.logging.tensorboard,
            wandb=r.logging.wandb,
            wandb_project=r.logging.wandb_project,
            run_name=r.name,
            config=r.model_dump(mode="json"),
            resume_step=self.step,
        )
        self.signals.install()
        snap = None  # the state each step starts from (rlvr/recovery.py)
        try:
            if r.eval.before and self.step == 0:
                summary["eval_before"] = self.evaluate("before")
                log.info("eval before training: %s", summary["eval_before"])
            last: dict[str, float] = {}
            started = time.perf_counter()
            with StepProgress(self.show_progress, r.train.steps, self.step) as advance:
                while self.step < r.train.steps:
                    limit = r.train.time_limit_s
                    if limit is not None and time.perf_counter() - started >= limit:
                        log.info("train.time_limit_s=%s reached at step %d", limit, self.step)
                        summary["time_limited"] = True
                        break
                    snap = snapshot(self, self._optimizer_steps)
                    metrics = self.train_step(self.step + 1)
                    self.step += 1
                    logger.log(self.step, metrics)
                    if self.token_entropies is not None:
                        logger.histogram(self.step, "entropy/tokens", self.token_entropies)
                    last = metrics
                    advance(metrics)
                    nonfinite_stop = self.guard.observe(  # NaN / inf steps (rlvr/guard.py)
                        self.step, self.nonfinite, latest_checkpoint(self.run_dir)
                    )
                    due = self.step % r.checkpoint.every == 0 and self.step < r.train.steps
                    if due and not nonfinite_stop:
                        self._checkpoint()
                    threshold = r.reward_runner.stop_failure_rate
                    reason = reward_failure_stop(metrics, threshold, self.step) or nonfinite_stop
                    if reason:
                        summary["stopped_reason"] = reason
                        log.error(reason)
                    if self.signals.requested or reason:
                        if not nonfinite_stop:  # that state is never checkpointed
                            self._checkpoint()
                        summary["interrupted"] = True
                        break
            if self.off_policy is not None:  # the batch in flight is not trained
                self.off_policy.stop()
            summary["final_metrics"] = last
            if not summary["interrupted"]:
                if r.checkpoint.save_final and (final := self._checkpoint()) is not None:
                    summary["checkpoint"] = str(final)
                if r.eval.after:
                    summary["eval_after"] = self.evaluate("after")
                    log.info("eval after training: %s", summary["eval_after"])
        except BaseException as e:  # nothing lost: the last completed step is checkpointed
            if self.off_policy is not None:  # no generation may run while the state is saved
                self.off_policy.drain()
            self.crash_note = save_on_crash(self, snap, self._optimizer_steps, e)
            raise
        finally:
            if self.off_policy is not None:  # an error stopped the loop: no sampler call in flight
                self.off_policy.drain()
            summary["reward_failures"] = self.sampler.rewards.failure_summary()
            if self.guard.total:
                summary["nonfinite_steps"] = self.guard.total
            self.signals.restore()
            logger.close()
            if r.logging.plots:
                summary["plots"] = [str(p) for p in write_plots(self.run_dir)]
        return summary

    def train_step(self, step: int) -> dict[str, float]:
        """One RL step: the sampler's batch, the learner's update, the weight sync."""
        start = time.perf_counter()
        if self.off_policy is None:
            batch, metrics = self.sampler.next_batch(step)
        else:  # generated during the last update; the next one starts now (rlvr/off_policy.py)
            batch, metrics = self.off_policy.next_batch(step)
        t0 = time.perf_counter()
        result = self.learner.update(batch)
        t1 = time.perf_counter()
        self.nonfinite = result.nonfinite  # a NaN/inf that made the update skip (rlvr/guard.py)
        metrics.update(result.metrics)
        self.token_entropies = result.token_entropies
        metrics["time/train"] = t1 - t0
        if self.off_policy is None:
            metrics["time/sync"] = self.sync_weights()
        else:
            metrics["time/sync"] += self.off_policy.after_update(step, t0, t1)
        metrics.update(self.engine.sync_metrics())  # server mode: sync/receipt_max_abs
        metrics["time/step"] = time.perf_counter() - start
        metrics["tokens_per_s"] = batch.num_completion_tokens / max(metrics["time/step"], 1e-9)
        return metrics

    def sync_weights(self) -> float:
        """Push the learner's weights to the rollout engine (in memory, or to the servers with
        a receipt); returns seconds. A sync that did not land stops the run after a
        checkpoint of the update just made (resume once the servers are restarted)."""
        if self.engine_shares_model:
            return 0.0
        t0 = time.perf_counter()
        try:
            self.engine.update_weights(self.learner.weights())
        except WeightSyncError as e:
            if self.learner.updates_done > self.step:  # an update the checkpoint must keep
                self.step = self.learner.updates_done
                e.checkpoint = str(self._checkpoint())
                log.error("%s; checkpoint written: %s", e, e.checkpoint)
            raise
        return time.perf_counter() - t0

    def evaluate(self, tag: str) -> dict[str, float]:
        """Held-out accuracy: greedy, and pass@1 over ``eval.samples`` samples."""
        e = self.recipe.eval
        what = (
            f"eval {tag} training: {e.num_problems} held-out problems, greedy + {e.samples} samples"
        )
        with status(what, self.show_progress):
            return self.sampler.evaluate(tag)

    # ------------------------------------------------------------------ building the run

    def __init__(
        self,
        recipe: Recipe,
        *,
        progress: bool | None = None,
        engine: RolloutEngine | None = None,
    ) -> None:
        """Build everything a run needs. ``engine`` injects an already running rollout
        engine on the same model (tests share one vLLM engine); it receives this run's
        weights before the first step."""
        self.recipe = recipe
        self.run_dir: Path = recipe.run_dir
        self.resume_changes = open_run_dir(recipe)  # never replaces an earlier run silently
        self.show_progress = recipe.logging.progress if progress is None else progress
        if recipe.train.threads:
            torch.set_num_threads(recipe.train.threads)
        seed_everything(recipe.seed)
        if recipe.warmup is not None:  # a supervised stage before RL (rlvr/stages/warmup.py)
            recipe = self.recipe = apply_warmup(recipe)

        m = recipe.model
        self.tokenizer = load_tokenizer(recipe)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.resume_from = latest_checkpoint(self.run_dir) if recipe.resume else None
        weights_path = str(self.resume_from) if self.resume_from else m.path
        with status(f"loading the policy from {weights_path}", self.show_progress):
            self.learner = Learner(
                recipe,
                pad_id=self.pad_id,
                weights_path=weights_path,
                resumed=bool(self.resume_from),
            )
        injected = engine is not None
        self.off_policy: OneStepOffPolicy | None = None  # set below; close() may run first
        if engine is None:
            engine, self.engine_shares_model = rollout_engine(
                recipe, self.model, self.tokenizer, weights_path, self.show_progress
            )
        else:  # injected (tests share one engine): never the learner's own module
            self.engine_shares_model = False
            check_lora_sync(recipe, False)
        self.sampler = Sampler(
            recipe,
            self.tokenizer,
            engine,
            pad_id=self.pad_id,
            token_entropies=self.learner.token_entropies,
        )
        self.token_entropies: torch.Tensor | None = None  # last step's, for the histogram

        self.step = 0
        state: dict[str, Any] = {}
        if self.resume_from is not None:
            try:
                state = resume_training_state(
                    self.resume_from, self.learner, self.sampler, self.resume_changes
                )
            except BaseException:
                self.sampler.close()
                raise
            self.step = self.learner.updates_done
        # the engine's first weights (the servers' probe gate) and the one-step off-policy set-up
        self.off_policy = start_rollout(self, engine, injected, state)
        self.signals = StopSignals()
        self.guard = NonFiniteGuard(recipe.train.max_nonfinite_steps)
        self.nonfinite: str | None = None
        self._optimizer_steps = StepCounter(self.optimizer)
        self.crash_note: str | None = None  # what a crash saved and how to resume

    # ------------------------------------------------------------------ names tests and tools use

    @property
    def model(self) -> Any:
        return self.learner.model

    @property
    def engine(self) -> RolloutEngine:
        return self.sampler.engine

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.learner.optimizer

    @property
    def rewards(self) -> Any:
        return self.sampler.rewards

    @property
    def advantage(self) -> Any:
        return self.sampler.advantage

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step (None: refused, the state is not finite)."""
        if not self.guard.may_checkpoint(self.model, self.step, self.run_dir):
            return None
        off = self.off_policy
        return save_checkpoint(
            self.run_dir,
            self.step,
            model=self.model,
            tokenizer=self.tokenizer,
            optimizer=self.optimizer,
            scheduler=self.learner.scheduler,
            trainer_state=self.sampler.state_dict()
            if off is None
            else {**off.sampler_state(), "off_policy": off.state_dict()},
            keep_last=self.recipe.checkpoint.keep_last,
            write_extra=None if off is None else off.save,
            write_weights=lambda out: self.learner.save_weights(out, self.tokenizer),
        )

    def close(self) -> None:
        if self.off_policy is not None:
            self.off_policy.close()
        self.sampler.close()
