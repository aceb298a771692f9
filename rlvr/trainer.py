"""The RL loop, readable top to bottom.

One step (see ../shared/DESIGN.md):
  0. an optional supervised warm-up (``warmup``, rlvr/stages/warmup.py) runs once first;
  1. sample B prompts;  2. the rollout engine generates G completions each, with sampling
  log-probs (``rollout.cure``: plus branches from critical tokens, rlvr/rollout/cure.py);
  3. reward modules score them in a process pool under time limits;
  3b. batch filters (``algo.filters``) may drop groups and generate more (DAPO dynamic
  sampling); ``algo.mask_truncated`` leaves truncated samples out of the loss;
  4. the advantage module maps rewards [B, G] to advantages;  5-8. token-weight rules
  (``algo.token_weights``) make their whole-batch choices from one no-grad pass; then per
  micro-batch, the policy's per-token log-probs and entropies come from the fused kernel and
  the clipped surrogate (eps_low / eps_high, the rules' multipliers and penalties, optional k3
  KL to a frozen reference, batch-level token-mean aggregation) is back-propagated;
  grad-norm clipping, AdamW, LR schedule;
  9. new weights go to the rollout engine in memory; metrics are logged; a checkpoint is
  written every N steps atomically so that a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlvr.algos import (
    AdvantageContext,
    build_advantage,
    build_filter,
    policy_loss,
    token_weights,
)
from rlvr.algos.token_weighting import BatchTokenStats, MicroBatchTokens, build_token_weights
from rlvr.batch import RolloutBatch
from rlvr.checkpoint import latest_checkpoint, load_training_state, save_checkpoint
from rlvr.config import Recipe, dump_recipe
from rlvr.data import PromptFormatter, PromptStream, load_examples
from rlvr.metrics import MetricsLogger, entropy_metrics, write_plots
from rlvr.rollout import RolloutEngine, SamplingParams, build_engine
from rlvr.rollout.cure import CureBrancher
from rlvr.soft_policy import policy_logprobs, soft_step_fraction
from rlvr.stages.warmup import apply_warmup

log = logging.getLogger("rlvr")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(step: int, *, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine decay to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


class Trainer:
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
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.recipe = recipe
        self.run_dir: Path = recipe.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_recipe(recipe, self.run_dir / "recipe.yaml")
        self.show_progress = recipe.logging.progress if progress is None else progress
        if recipe.train.threads:
            torch.set_num_threads(recipe.train.threads)
        seed_everything(recipe.seed)
        if recipe.warmup is not None:  # a supervised stage before RL (rlvr/stages/warmup.py)
            recipe = self.recipe = apply_warmup(recipe)

        m = recipe.model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                m.path, trust_remote_code=m.trust_remote_code, revision=m.revision
            )
        except (OSError, ValueError) as e:
            raise FileNotFoundError(
                f"model.path {m.path!r}: not a local model directory (relative paths start at "
                f"{Path.cwd()}) and not loadable from the Hugging Face hub: {e}"
            ) from e
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.resume_from = latest_checkpoint(self.run_dir) if recipe.resume else None
        weights_path = str(self.resume_from) if self.resume_from else m.path
        self.model = AutoModelForCausalLM.from_pretrained(
            weights_path,
            dtype=DTYPES[m.dtype],
            trust_remote_code=m.trust_remote_code,
            revision=None if self.resume_from else m.revision,
            use_safetensors=True,
        )
        if m.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.model.train()
        self.ref_model = None
        if recipe.algo.kl_coef > 0:
            self.ref_model = AutoModelForCausalLM.from_pretrained(
                m.path,
                dtype=DTYPES[m.dtype],
                trust_remote_code=m.trust_remote_code,
                revision=m.revision,
                use_safetensors=True,
            ).eval()
            self.ref_model.requires_grad_(False)

        d = recipe.data
        self.formatter = PromptFormatter(
            self.tokenizer,
            template=d.prompt_template,
            system_prompt=d.system_prompt,
            use_chat_template=d.use_chat_template,
            max_prompt_tokens=d.max_prompt_tokens,
        )
        train_examples, self.eval_examples = load_examples(d)
        self.data = PromptStream(
            train_examples, seed=recipe.seed, shuffle=d.shuffle, effort_levels=d.effort_levels
        )

        self.rewards = self._build_rewards()
        self.advantage = build_advantage(recipe.algo.advantage, **recipe.algo.advantage_params)
        self.filters = [(f.name, build_filter(f.name, **f.params)) for f in recipe.algo.filters]
        self.token_rules = build_token_weights(recipe.algo.token_weights)
        self.token_entropies: torch.Tensor | None = None  # last step's, for the histogram
        c = recipe.rollout.cure
        self.brancher = (
            CureBrancher(c.branches, c.top_k, c.min_chars, c.seed) if c is not None else None
        )

        t = recipe.train
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=t.lr,
            betas=t.betas,
            weight_decay=t.weight_decay,
        )
        schedule: Callable[[int], float] = lambda s: lr_lambda(  # noqa: E731
            s, warmup=t.warmup_steps, total=t.steps, schedule=t.schedule, min_ratio=t.min_lr_ratio
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

        self.step = 0
        if self.resume_from is not None:
            state = load_training_state(
                self.resume_from, optimizer=self.optimizer, scheduler=self.scheduler
            )
            self.step = int(state["step"])
            self.data.load_state_dict(state["data"])
            self.rewards.load_state_dict(state.get("rewards", {}))
            self.advantage.load_state_dict(state.get("advantage", {}))
            log.info("resumed from %s at step %d", self.resume_from, self.step)

        r = recipe.rollout
        if engine is not None:
            self.engine = engine
            self.engine_shares_model = False
            self.sync_weights()
            self._stop_requested = False
            return
        self.engine = build_engine(
            r.engine,
            weights_path,
            dtype=m.dtype,
            seed=recipe.seed,
            max_model_len=r.max_model_len,
            trust_remote_code=m.trust_remote_code,
            gpu_memory_utilization=r.gpu_memory_utilization,
            kv_cache_gib=r.kv_cache_gib,
            model=self.model if r.engine == "hf" else None,
            tokenizer=self.tokenizer,
            soft=r.soft_thinking.params() if r.soft_thinking is not None else None,
        )
        self.engine_shares_model = r.engine == "hf"
        self._stop_requested = False

    # ------------------------------------------------------------------ building blocks

    def _build_rewards(self) -> Any:
        from rewards.runner import RewardRunner

        rr = self.recipe.reward_runner
        specs = [spec.model_dump() for spec in self.recipe.rewards]
        return RewardRunner(
            specs,
            num_workers=rr.num_workers,
            timeout_s=rr.timeout_s,
            failure_score=rr.failure_score,
        )

    def sampling(
        self,
        step: int,
        *,
        n: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed_offset: int = 0,
    ) -> SamplingParams:
        r = self.recipe.rollout
        return SamplingParams(
            n=r.group_size if n is None else n,
            temperature=r.temperature if temperature is None else temperature,
            top_p=r.top_p,
            top_k=r.top_k,
            max_tokens=r.max_new_tokens if max_tokens is None else max_tokens,
            seed=(self.recipe.seed * 1_000_003 + step * 7919 + seed_offset) % (2**31 - 1),
        )

    def _score(self, examples: list[dict], groups: list[list[Any]]) -> Any:
        return self.rewards.score(
            [[c.text for c in g] for g in groups],
            examples,
            num_tokens=[[len(c.token_ids) for c in g] for g in groups],
            finish_reasons=[[c.finish_reason for c in g] for g in groups],
        )

    # ------------------------------------------------------------------ one RL step

    def rollout(self, step: int) -> tuple[RolloutBatch, dict[str, float]]:
        """Generate and score one batch, then run the batch filters, which may call
        ``generate`` for more groups (times add up; reward metrics are the first round's)."""
        metrics: dict[str, float] = {"time/generate": 0.0, "time/reward": 0.0}

        def generate(num_prompts: int, round_: int) -> RolloutBatch:
            batch, round_metrics = self._generate(num_prompts, step, round_)
            for key in ("time/generate", "time/reward"):
                metrics[key] += round_metrics.pop(key)
            if round_ == 0:
                metrics.update(round_metrics)
            return batch

        batch = generate(self.recipe.train.prompts_per_step, 0)
        if self.filters:  # what the policy scored before filters picked groups
            metrics["reward/unfiltered_mean"] = float(batch.rewards.mean())
            acc = self._accuracy(batch.reward_components)
            if acc is not None:
                metrics["unfiltered_accuracy"] = acc
        for name, batch_filter in self.filters:
            batch, filter_metrics = batch_filter(batch, generate)
            metrics.update({f"filter/{name}/{k}": v for k, v in filter_metrics.items()})
        if self.recipe.algo.mask_truncated:
            batch.loss_mask = (~batch.truncated).to(torch.float32)
            metrics["loss/masked_truncated_fraction"] = float(1 - batch.loss_mask.mean())
        return batch, metrics

    def _generate(
        self, num_prompts: int, step: int, round_: int = 0
    ) -> tuple[RolloutBatch, dict[str, float]]:
        timings: dict[str, float] = {}
        examples = self.data.next_batch(num_prompts)
        prompt_ids = [self.formatter.token_ids(ex) for ex in examples]
        t0 = time.perf_counter()
        sampling = self.sampling(step, seed_offset=round_ * 15485863)
        groups = self.engine.generate(prompt_ids, sampling)
        branch_metrics = self._branch(prompt_ids, groups, sampling, step)
        timings["time/generate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scored = self._score(examples, groups)
        timings["time/reward"] = time.perf_counter() - t0
        batch = RolloutBatch(
            examples=examples,
            prompt_ids=prompt_ids,
            completions=groups,
            rewards=torch.tensor(scored.total, dtype=torch.float32),
            reward_components={
                k: torch.tensor(v, dtype=torch.float32) for k, v in scored.components.items()
            },
        )
        metrics = dict(timings)
        metrics.update({k: float(v) for k, v in scored.metrics.items()})
        metrics.update(branch_metrics)
        return batch, metrics

    def _branch(
        self,
        prompt_ids: list[list[int]],
        groups: list[list[Any]],
        sampling: SamplingParams,
        step: int,
    ) -> dict[str, float]:
        """CURE stage 1 (``rollout.cure``): extend ``groups`` in place with continuations from
        critical tokens; entropies come from a no-grad pass of the current policy."""
        c = self.recipe.rollout.cure
        if self.brancher is None or c is None:
            return {}
        if c.stage1_steps is not None and step > c.stage1_steps:
            return {"cure/stage": 2.0}
        probe = RolloutBatch([{}] * len(groups), prompt_ids, groups, torch.zeros(len(groups)))
        probe.build_tokens(self.pad_id)
        _, ent = self._no_grad_pass(self.model, probe)
        rows = [(len(p), c_) for p, g in zip(prompt_ids, groups, strict=True) for c_ in g]
        flat = [
            ent[i, lp - 1 : lp - 1 + len(comp.token_ids)].tolist()
            for i, (lp, comp) in enumerate(rows)
        ]
        size = len(groups[0])
        entropies = [flat[b * size : (b + 1) * size] for b in range(len(groups))]
        extended, metrics = self.brancher(
            self.engine,
            prompt_ids,
            groups,
            entropies,
            sampling,
            decode=lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
            special_ids=frozenset(self.tokenizer.all_special_ids),
            step=step,
        )
        groups[:] = extended
        return {"cure/stage": 1.0, **{f"cure/{k}": v for k, v in metrics.items()}}

    def compute_advantages(self, batch: RolloutBatch, step: int) -> dict[str, float]:
        context = AdvantageContext(
            prompt_ids=[str(ex.get("id", ex["prompt"])) for ex in batch.examples],
            lengths=batch.lengths,
            step=step,
            truncated=batch.truncated,
            components=batch.reward_components,
        )
        batch.advantages = self.advantage(batch.rewards, context)
        return {f"advantage/{k}": v for k, v in self.advantage.metrics().items()}

    def _micro_batches(self, n: int) -> list[torch.Tensor]:
        size = self.recipe.train.micro_batch_size
        return [torch.arange(i, min(i + size, n)) for i in range(0, n, size)]

    def _logprobs(
        self, model: Any, batch: RolloutBatch, idx: torch.Tensor, ln: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token (log-prob, entropy) [M, ln-1] of rows ``idx``; soft-thinking steps get
        the reparameterised log-prob (rlvr/soft_policy.py)."""
        assert batch.input_ids is not None and batch.attention_mask is not None
        assert batch.completion_mask is not None
        soft = batch.soft_tokens.rows(idx, ln) if batch.soft_tokens is not None else None
        st = self.recipe.rollout.soft_thinking
        return policy_logprobs(
            model,
            batch.input_ids[idx, :ln],
            batch.attention_mask[idx, :ln],
            batch.completion_mask[idx, :ln],
            soft,
            temperature=self.recipe.rollout.temperature,
            soft_temperature=st.temperature if st is not None else 1.0,
            impl=self.recipe.train.logprob_impl,
        )

    def _frozen_logprobs(self, model: Any, batch: RolloutBatch) -> torch.Tensor:
        return self._no_grad_pass(model, batch)[0]

    @torch.no_grad()
    def _no_grad_pass(self, model: Any, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token (log-prob, entropy) [N, L-1] of ``model`` over the whole batch."""
        assert batch.input_ids is not None and batch.attention_mask is not None
        assert batch.completion_mask is not None
        n, width = batch.input_ids.shape
        out = torch.zeros((n, width - 1), dtype=torch.float32)
        ent_out = torch.zeros((n, width - 1), dtype=torch.float32)
        for idx in self._micro_batches(n):
            ln = int(batch.attention_mask[idx].sum(dim=1).max())
            logp, ent = self._logprobs(model, batch, idx, ln)
            out[idx, : ln - 1] = logp
            ent_out[idx, : ln - 1] = ent
        return out, ent_out

    def _prepare_token_rules(
        self, batch: RolloutBatch, token_adv: torch.Tensor, loss_mask: torch.Tensor
    ) -> dict[str, float]:
        """Token-weight rules choose over the whole batch from one no-grad pass (see
        rlvr/algos/token_weighting/base.py); returns their metrics."""
        logp, ent = self._no_grad_pass(self.model, batch)
        old = logp if batch.old_logprobs is None else batch.old_logprobs
        a = self.recipe.algo
        stats = BatchTokenStats(
            logp, old, ent, token_adv, loss_mask.float(), self.step, a.eps_low, a.eps_high
        )
        return self.token_rules.prepare(stats)

    def update_policy(self, batch: RolloutBatch) -> dict[str, float]:
        """Forward/backward over micro-batches, then optimizer step(s)."""
        a, t = self.recipe.algo, self.recipe.train
        batch.build_tokens(self.pad_id)
        assert batch.input_ids is not None and batch.completion_mask is not None
        assert batch.attention_mask is not None and batch.rollout_logprobs is not None
        n = batch.input_ids.shape[0]
        target_mask = batch.completion_mask[:, 1:]
        # tokens that enter the loss: all completion tokens unless a sample is masked out
        loss_mask = target_mask * batch.sample_loss_weights().unsqueeze(1)
        num_tokens = int((loss_mask > 0).sum())
        num_target = int(target_mask.sum())
        token_adv = batch.token_advantages()
        rollout_lp = batch.rollout_logprobs[:, 1:]
        if self.ref_model is not None:
            batch.ref_logprobs = self._frozen_logprobs(self.ref_model, batch)
        if a.old_logprobs == "rollout":
            batch.old_logprobs = rollout_lp
        elif a.updates_per_batch > 1:
            batch.old_logprobs = self._frozen_logprobs(self.model, batch)
        rule_metrics: dict[str, float] = {}
        if self.token_rules:  # algo.token_weights: whole-batch selections before the loop
            rule_metrics = self._prepare_token_rules(batch, token_adv, loss_mask)
        batch.entropies = torch.zeros_like(rollout_lp)
        sums = {"clip": 0.0, "kl": 0.0, "ratio": 0.0, "loss": 0.0, "mismatch": 0.0, "ent": 0.0}
        grad_norms = []
        for update in range(a.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            for idx in self._micro_batches(n):
                ln = int(batch.attention_mask[idx].sum(dim=1).max())
                mask = target_mask[idx, : ln - 1]
                logp, ent = self._logprobs(self.model, batch, idx, ln)
                old = (
                    logp.detach()
                    if batch.old_logprobs is None
                    else batch.old_logprobs[idx, : ln - 1]
                )
                ref = None if batch.ref_logprobs is None else batch.ref_logprobs[idx, : ln - 1]
                weights = token_weights(
                    loss_mask[idx, : ln - 1],
                    a.loss_aggregation,
                    n,
                    num_tokens,
                    self.recipe.rollout.max_new_tokens,
                )
                if batch.token_weights is not None:
                    weights = weights * batch.token_weights[idx, : ln - 1]
                rules = self.token_rules.apply(
                    MicroBatchTokens(
                        idx, logp, old, ent.detach(), token_adv[idx, : ln - 1], mask.float()
                    )
                )
                terms = policy_loss(
                    logp,
                    old,
                    token_adv[idx, : ln - 1],
                    weights,
                    eps_low=a.eps_low,
                    eps_high=a.eps_high,
                    ref_logp=ref,
                    kl_coef=a.kl_coef,
                    entropy=ent,
                    entropy_coef=a.entropy_coef,
                    multipliers=rules.weights if self.token_rules else None,
                    penalty=rules.penalty,
                )
                terms.loss.backward()
                if update == 0:
                    fmask = mask.float()
                    batch.entropies[idx, : ln - 1] = ent.detach() * fmask
                    sums["mismatch"] += float(
                        ((logp.detach() - rollout_lp[idx, : ln - 1]).abs() * fmask).sum()
                    )
                    sums["ent"] += float((ent.detach() * fmask).sum())
                sums["clip"] += float(terms.clip_fraction_sum)
                sums["kl"] += float(terms.kl_sum)
                sums["ratio"] += float(terms.ratio_sum)
                sums["loss"] += float(terms.loss.detach())
            if t.max_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
            else:
                norm = torch.sqrt(
                    sum(
                        (p.grad.float() ** 2).sum()
                        for p in self.model.parameters()
                        if p.grad is not None
                    )
                )
            grad_norms.append(float(norm))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)  # free gradients before the next rollout
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        denom = max(num_tokens, 1)
        updates = a.updates_per_batch
        return {
            "loss": sums["loss"] / updates,
            "clip_fraction": sums["clip"] / (denom * updates),
            "kl": sums["kl"] / (denom * updates),
            "ratio/mean": sums["ratio"] / (denom * updates),
            "entropy": sums["ent"] / max(num_target, 1),
            "logprob_mismatch": sums["mismatch"] / max(num_target, 1),
            "grad_norm": _mean(grad_norms),
            "lr": lr,
            **rule_metrics,
        }

    def sync_weights(self) -> float:
        """Push the new policy weights to the rollout engine (in memory)."""
        if self.engine_shares_model:
            return 0.0
        t0 = time.perf_counter()
        self.engine.update_weights(self.model.state_dict().items())
        return time.perf_counter() - t0

    def train_step(self, step: int) -> dict[str, float]:
        start = time.perf_counter()
        batch, metrics = self.rollout(step)
        metrics.update(self.compute_advantages(batch, step))
        t0 = time.perf_counter()
        metrics.update(self.update_policy(batch))
        metrics["time/train"] = time.perf_counter() - t0
        metrics["time/sync"] = self.sync_weights()
        metrics.update(self._batch_metrics(batch))
        metrics["time/step"] = time.perf_counter() - start
        metrics["tokens_per_s"] = float(batch.lengths.sum()) / max(metrics["time/step"], 1e-9)
        return metrics

    def _batch_metrics(self, batch: RolloutBatch) -> dict[str, float]:
        lengths = batch.lengths
        truncated = [c.truncated for c in batch.flat_completions]
        out = {
            "reward/mean": float(batch.rewards.mean()),
            "reward/std": float(batch.rewards.std()) if batch.rewards.numel() > 1 else 0.0,
            "length/mean": float(lengths.mean()),
            "length/max": float(lengths.max()),
            "length/truncated_fraction": _mean([float(x) for x in truncated]),
            "advantage/zero_fraction": float((batch.advantages == 0).float().mean())
            if batch.advantages is not None
            else 0.0,
        }
        acc = self._accuracy(batch.reward_components)
        if acc is not None:
            out["accuracy"] = acc
        if batch.soft_tokens is not None and batch.completion_mask is not None:
            out["rollout/soft_fraction"] = soft_step_fraction(
                batch.soft_tokens, batch.completion_mask
            )
        if batch.entropies is not None and batch.completion_mask is not None:
            key = self.recipe.reward_runner.accuracy_key
            correct = batch.reward_components.get(key) if key else None
            target = batch.completion_mask[:, 1:] > 0
            out.update(entropy_metrics(batch.entropies, target, correct))
            self.token_entropies = batch.entropies[target]
        return out

    def _accuracy(self, components: dict[str, torch.Tensor]) -> float | None:
        key = self.recipe.reward_runner.accuracy_key
        if key is None or key not in components:
            return None
        return float((components[key] > 0.5).float().mean())

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, tag: str) -> dict[str, float]:
        """Held-out accuracy: greedy, and pass@1 averaged over ``eval.samples`` samples."""
        e = self.recipe.eval
        examples = self.eval_examples[: e.num_problems]
        if not examples:
            log.warning("eval: the dataset has no held-out split; skipping %s eval", tag)
            return {}
        prompt_ids = [self.formatter.token_ids(ex) for ex in examples]
        results: dict[str, float] = {}
        for name, n, temperature in (("greedy", 1, 0.0), ("pass@1", e.samples, e.temperature)):
            groups = self.engine.generate(
                prompt_ids,
                self.sampling(
                    0, n=n, temperature=temperature, max_tokens=e.max_new_tokens, seed_offset=104729
                ),
            )
            acc = self._accuracy(
                {k: torch.tensor(v) for k, v in self._score(examples, groups).components.items()}
            )
            if acc is None:
                log.warning("eval: reward_runner.accuracy_key is not a reward component")
                return {}
            results[f"eval/{name}"] = acc
        return results

    # ------------------------------------------------------------------ the loop

    def _checkpoint(self) -> Path:
        return save_checkpoint(
            self.run_dir,
            self.step,
            model=self.model,
            tokenizer=self.tokenizer,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            trainer_state={
                "data": self.data.state_dict(),
                "rewards": self.rewards.state_dict(),
                "advantage": self.advantage.state_dict(),
            },
            keep_last=self.recipe.checkpoint.keep_last,
        )

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop_requested:  # second signal: stop now
            raise KeyboardInterrupt
        self._stop_requested = True
        log.warning("signal %d: finishing this step, writing a checkpoint, then stopping", signum)

    def train(self) -> dict[str, Any]:
        """Run until ``train.steps``; returns a summary (final metrics, eval, interrupted)."""
        r = self.recipe
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "interrupted": False}
        logger = MetricsLogger(
            self.run_dir,
            tensorboard=r.logging.tensorboard,
            wandb=r.logging.wandb,
            wandb_project=r.logging.wandb_project,
            run_name=r.name,
            config=r.model_dump(mode="json"),
            resume_step=self.step,
        )
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for s in previous:
                signal.signal(s, self._request_stop)
        except ValueError:  # not the main thread: no signal handling
            previous = {}
        try:
            if r.eval.before and self.step == 0:
                summary["eval_before"] = self.evaluate("before")
                log.info("eval before training: %s", summary["eval_before"])
            last: dict[str, float] = {}
            started = time.perf_counter()
            with _progress(self.show_progress, r.train.steps, self.step) as advance:
                while self.step < r.train.steps:
                    limit = r.train.time_limit_s
                    if limit is not None and time.perf_counter() - started >= limit:
                        log.info("train.time_limit_s=%s reached at step %d", limit, self.step)
                        summary["time_limited"] = True
                        break
                    metrics = self.train_step(self.step + 1)
                    self.step += 1
                    logger.log(self.step, metrics)
                    if self.token_entropies is not None:
                        logger.histogram(self.step, "entropy/tokens", self.token_entropies)
                    last = metrics
                    advance(metrics)
                    if self.step % r.checkpoint.every == 0 and self.step < r.train.steps:
                        self._checkpoint()
                    if self._stop_requested:
                        self._checkpoint()
                        summary["interrupted"] = True
                        break
            summary["final_metrics"] = last
            if not summary["interrupted"]:
                if r.checkpoint.save_final:
                    summary["checkpoint"] = str(self._checkpoint())
                if r.eval.after:
                    summary["eval_after"] = self.evaluate("after")
                    log.info("eval after training: %s", summary["eval_after"])
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            logger.close()
            if r.logging.plots:
                summary["plots"] = [str(p) for p in write_plots(self.run_dir)]
        return summary

    def close(self) -> None:
        self.engine.close()
        self.rewards.close()


def train_recipe(recipe: Recipe, **kwargs: Any) -> tuple[dict[str, Any], Trainer]:
    """Build a :class:`Trainer` for ``recipe``, train it, and always release its engine and
    reward workers. Returns the run summary and the closed trainer (its model stays usable)."""
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


class _progress:
    """A rich progress bar over steps (or nothing), as a context manager yielding ``advance``."""

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self.enabled, self.total, self.start = enabled, total, start
        self._bar: Any = None

    def __enter__(self) -> Callable[[dict[str, float]], None]:
        if not self.enabled:
            return lambda metrics: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        self._bar.start()
        task = self._bar.add_task("train", total=self.total, completed=self.start, info="")

        def advance(metrics: dict[str, float]) -> None:
            info = f"reward {metrics.get('reward/mean', 0):.3f}"
            if "accuracy" in metrics:
                info += f"  acc {metrics['accuracy']:.2f}"
            info += f"  len {metrics.get('length/mean', 0):.0f}  {metrics.get('time/step', 0):.1f}s/step"
            self._bar.update(task, advance=1, info=info)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
