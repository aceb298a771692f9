"""The sampler: prompts -> rollouts -> rewards -> filters -> advantages -> one TrainBatch.

One call of :meth:`Sampler.next_batch` is the rollout side of an RL step (../DESIGN.md steps
1-5): B prompts from the recipe's dataset; G completions each from the rollout engine, with
their sampling log-probs (``rollout.cure``: plus continuations branched from critical tokens,
rlvr/rollout/cure.py, whose entropies come from a function the learner hands over); reward
modules in a process pool under time limits; batch filters (``algo.filters``, e.g. DAPO's
dynamic sampling) that may drop groups and generate more; ``algo.mask_truncated``; the
advantage estimator (rewards [B, G] -> advantages). It returns the tensor-only
:class:`~rlvr.batch.TrainBatch` and the step's rollout-side metrics. It never touches the
policy's parameters: weights reach its engine only through the trainer's sync.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from rlvr.algos import AdvantageContext, build_advantage, build_filter
from rlvr.batch import RolloutBatch, TrainBatch
from rlvr.config import Recipe
from rlvr.data import PromptFormatter, PromptStream, load_examples
from rlvr.rollout import RolloutEngine, SamplingParams
from rlvr.rollout.base import Completion
from rlvr.rollout.cure import CureBrancher
from rlvr.soft_policy import soft_step_fraction

log = logging.getLogger("rlvr")

# (prompt ids [B], groups [B][G]) -> per-token entropies [B][G][tokens] of the current policy
EntropyFn = Callable[[list[list[int]], list[list[Completion]]], list[list[list[float]]]]


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def build_reward_runner(recipe: Recipe) -> Any:
    from rewards.runner import RewardRunner

    rr = recipe.reward_runner
    return RewardRunner(
        recipe.reward_specs,  # validated when the recipe loaded
        num_workers=rr.num_workers,
        timeout_s=rr.timeout_s,
        failure_score=rr.failure_score,
        memory_limit_mb=rr.memory_limit_mb,
        max_abs_score=rr.max_abs_score,
    )


class Sampler:
    def __init__(
        self,
        recipe: Recipe,
        tokenizer: Any,
        engine: RolloutEngine,
        *,
        pad_id: int,
        token_entropies: EntropyFn | None = None,
    ) -> None:
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.engine = engine
        self.pad_id = pad_id
        self.token_entropies = token_entropies
        d = recipe.data
        self.formatter = PromptFormatter.from_data(tokenizer, d)
        from rlvr.data.datasets import DataReport, check_prompt_lengths
        from rlvr.preflight import model_context, prompt_token_budget

        self.data_report = DataReport()
        train_examples, self.eval_examples = load_examples(d, self.data_report)
        # every prompt tokenized once at load: overlong ones reported per row, never cut silently
        context = model_context(recipe.model.path, recipe.rollout.max_model_len)
        budget = prompt_token_budget(d.max_prompt_tokens, recipe.rollout.max_new_tokens, context)
        self.formatter.max_prompt_tokens = budget
        train_examples = check_prompt_lengths(
            train_examples,
            self.formatter.token_ids_untruncated,
            budget,
            policy=d.overlong_prompts,
            report=self.data_report,
            where=d.path or d.hf_name or d.source,
        )
        self.data = PromptStream(
            train_examples, seed=recipe.seed, shuffle=d.shuffle, effort_levels=d.effort_levels
        )
        self.rewards = build_reward_runner(recipe)
        self.advantage = build_advantage(recipe.algo.advantage, **recipe.algo.advantage_params)
        self.filters = [(f.name, build_filter(f.name, **f.params)) for f in recipe.algo.filters]
        for _, batch_filter in self.filters:  # filters that work on tokens (lc_r1's crop)
            if getattr(batch_filter, "needs_tokenizer", False):
                batch_filter.bind_tokenizer(tokenizer)
        self.abstention = recipe.rollout.abstention
        if self.abstention is not None:  # rlvr's own reading, off by default
            from rlvr.abstention import AbstentionGate, attach_gate

            a = self.abstention
            gate = AbstentionGate.from_file(
                a.head, a.threshold, enforce=True, trace=False, min_tokens=a.min_tokens
            )
            attach_gate(engine, gate)
        c = recipe.rollout.cure
        self.brancher = (
            CureBrancher(c.branches, c.top_k, c.min_chars, c.seed) if c is not None else None
        )

    # ------------------------------------------------------------------ one step's batch

    def next_batch(self, step: int) -> tuple[TrainBatch, dict[str, float]]:
        """Roll out, score, filter and compute advantages for RL step ``step``."""
        batch, metrics = self.rollout(step)
        metrics.update(self.compute_advantages(batch, step))
        metrics.update(self.batch_metrics(batch))
        return batch.to_train_batch(self.pad_id, self.correct(batch)), metrics

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
            acc = self.accuracy(batch.reward_components)
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
        scored = self.score(examples, groups)
        totals = scored.total
        if self.abstention is not None:
            from rlvr.abstention.rl import abstention_rewards, strip_forced_eos

            abstained = strip_forced_eos(groups)
            totals = abstention_rewards(totals, groups, self.abstention.r_abstain)
            timings["abstention/rate"] = abstained / max(1, sum(len(g) for g in groups))
        timings["time/reward"] = time.perf_counter() - t0
        batch = RolloutBatch(
            examples=examples,
            prompt_ids=prompt_ids,
            completions=groups,
            rewards=torch.tensor(totals, dtype=torch.float32),
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
        groups: list[list[Completion]],
        sampling: SamplingParams,
        step: int,
    ) -> dict[str, float]:
        """CURE stage 1 (``rollout.cure``): extend ``groups`` in place with continuations from
        critical tokens; entropies come from the learner's ``token_entropies``."""
        c = self.recipe.rollout.cure
        if self.brancher is None or c is None:
            return {}
        if c.stage1_steps is not None and step > c.stage1_steps:
            return {"cure/stage": 2.0}
        if self.token_entropies is None:
            raise RuntimeError("rollout.cure needs the policy's token entropies")
        extended, metrics = self.brancher(
            self.engine,
            prompt_ids,
            groups,
            self.token_entropies(prompt_ids, groups),
            sampling,
            decode=lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
            special_ids=frozenset(self.tokenizer.all_special_ids),
            step=step,
        )
        groups[:] = extended
        return {"cure/stage": 1.0, **{f"cure/{k}": v for k, v in metrics.items()}}

    def score(self, examples: list[dict], groups: list[list[Completion]]) -> Any:
        return self.rewards.score(
            [[c.text for c in g] for g in groups],
            examples,
            num_tokens=[[c.generated_len for c in g] for g in groups],
            finish_reasons=[[c.finish_reason for c in g] for g in groups],
        )

    def compute_advantages(self, batch: RolloutBatch, step: int) -> dict[str, float]:
        context = AdvantageContext(
            prompt_ids=[str(ex.get("id", ex["prompt"])) for ex in batch.examples],
            lengths=batch.generated_lengths,
            step=step,
            truncated=batch.truncated,
            components=batch.reward_components,
        )
        batch.advantages = self.advantage(batch.rewards, context)
        return {f"advantage/{k}": v for k, v in self.advantage.metrics().items()}

    # ------------------------------------------------------------------ metrics

    def correct(self, batch: RolloutBatch) -> torch.Tensor | None:
        key = self.recipe.reward_runner.accuracy_key
        return batch.reward_components.get(key) if key else None

    def accuracy(self, components: dict[str, torch.Tensor]) -> float | None:
        key = self.recipe.reward_runner.accuracy_key
        if key is None or key not in components:
            return None
        return float((components[key] > 0.5).float().mean())

    def batch_metrics(self, batch: RolloutBatch) -> dict[str, float]:
        lengths = batch.lengths
        out = {
            "reward/mean": float(batch.rewards.mean()),
            "reward/std": float(batch.rewards.std()) if batch.rewards.numel() > 1 else 0.0,
            "length/mean": float(lengths.mean()),
            "length/max": float(lengths.max()),
            "length/truncated_fraction": _mean(
                [float(c.truncated) for c in batch.flat_completions]
            ),
            "advantage/zero_fraction": float((batch.advantages == 0).float().mean())
            if batch.advantages is not None
            else 0.0,
        }
        acc = self.accuracy(batch.reward_components)
        if acc is not None:
            out["accuracy"] = acc
        soft = soft_step_fraction(batch.flat_completions)
        if soft is not None:
            out["rollout/soft_fraction"] = soft
        return out

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, tag: str) -> dict[str, float]:
        """Held-out accuracy (rlvr/heldout.py): greedy, and pass@1 averaged over
        ``eval.samples`` samples; correct = the ``reward_runner.accuracy_key`` component > 0.5.
        Without an ``accuracy_key`` nothing is generated (``{}``): no pass could be scored."""
        from rlvr.heldout import heldout_accuracy

        e = self.recipe.eval
        examples = self.eval_examples[: e.num_problems]
        if not examples:
            log.warning("eval: the dataset has no held-out split; skipping %s eval", tag)
            return {}
        key = self.recipe.reward_runner.accuracy_key
        if key is None:
            log.warning("eval: reward_runner.accuracy_key is unset; skipping %s eval", tag)
            return {}

        def score(exs: list[dict], groups: list[list[Completion]]) -> Any:
            components = self.score(exs, groups).components
            if key not in components:  # known only once the first (greedy) pass is scored
                log.warning("eval: reward_runner.accuracy_key is not a reward component")
                return None
            return [[float(v) > 0.5 for v in row] for row in components[key]], None

        def params(n: int, temperature: float) -> SamplingParams:
            return self.sampling(
                0, n=n, temperature=temperature, max_tokens=e.max_new_tokens, seed_offset=104729
            )

        return heldout_accuracy(
            self.engine,
            examples,
            [self.formatter.token_ids(ex) for ex in examples],
            score,
            greedy=params(1, 0.0),
            sampled=params(e.samples, e.temperature),
        )

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        return {
            "data": self.data.state_dict(),
            "rewards": self.rewards.state_dict(),
            "advantage": self.advantage.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data.load_state_dict(state["data"])
        self.rewards.load_state_dict(state.get("rewards", {}))
        self.advantage.load_state_dict(state.get("advantage", {}))

    def close(self) -> None:
        self.engine.close()
        self.rewards.close()
