"""The two batches of one RL step.

``RolloutBatch`` is the sampler's working batch: examples, completions (objects), rewards,
advantages. Filters, advantage estimators and CURE read and change it (rlvr/sampler.py).

``TrainBatch`` is what crosses the seam to the learner (rlvr/learner.py): tensors only, so that
it can be sharded over ranks, queued for off-policy training or sent between processes.

Rows are the B*G completions in prompt-major order (row = b * G + g). Token tensors are
right-padded [N, L] with the prompt first and the completion after it; ``completion_mask``
marks completion tokens, ``rollout_logprobs`` holds the engine's sampling log-prob at each
completion token's position; per-target tensors are [N, L-1] (position t predicts token t+1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from rlvr.rollout.base import Completion


@dataclass
class RolloutBatch:
    examples: list[dict]  # B
    prompt_ids: list[list[int]]  # B
    completions: list[list[Completion]]  # [B][G]
    rewards: torch.Tensor  # [B, G] weighted total
    reward_components: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [B, G]
    advantages: torch.Tensor | None = None  # [B, G] or per token [N, L]
    # token tensors (built by :meth:`build_tokens`)
    input_ids: torch.Tensor | None = None  # [N, L]
    attention_mask: torch.Tensor | None = None  # [N, L]
    completion_mask: torch.Tensor | None = None  # [N, L]
    rollout_logprobs: torch.Tensor | None = None  # [N, L]
    loss_mask: torch.Tensor | None = None  # [B, G] 0 = sample left out of the loss (truncated)

    @property
    def num_prompts(self) -> int:
        return len(self.prompt_ids)

    @property
    def group_size(self) -> int:
        return len(self.completions[0]) if self.completions else 0

    @property
    def flat_completions(self) -> list[Completion]:
        return [c for group in self.completions for c in group]

    @property
    def lengths(self) -> torch.Tensor:
        return torch.tensor(
            [[len(c.token_ids) for c in group] for group in self.completions], dtype=torch.float32
        )

    @property
    def generated_lengths(self) -> torch.Tensor:
        """[B, G] tokens generated per completion (a CURE branch: its continuation only)."""
        return torch.tensor(
            [[c.generated_len for c in group] for group in self.completions], dtype=torch.float32
        )

    @property
    def truncated(self) -> torch.Tensor:
        """[B, G] bool: the completion hit ``max_tokens`` (finish reason "length")."""
        return torch.tensor([[c.truncated for c in group] for group in self.completions])

    def select(self, groups: list[int]) -> RolloutBatch:
        """A new batch holding only the given prompt groups (before tokens are built)."""
        idx = torch.tensor(groups, dtype=torch.long)
        return RolloutBatch(
            examples=[self.examples[i] for i in groups],
            prompt_ids=[self.prompt_ids[i] for i in groups],
            completions=[self.completions[i] for i in groups],
            rewards=self.rewards[idx],
            reward_components={k: v[idx] for k, v in self.reward_components.items()},
            loss_mask=None if self.loss_mask is None else self.loss_mask[idx],
        )

    @staticmethod
    def concat(batches: list[RolloutBatch]) -> RolloutBatch:
        """Prompt groups of several batches (same G, same reward components) in order."""
        if not batches:
            raise ValueError("concat needs at least one batch")
        masks = [b.loss_mask for b in batches]
        return RolloutBatch(
            examples=[ex for b in batches for ex in b.examples],
            prompt_ids=[p for b in batches for p in b.prompt_ids],
            completions=[g for b in batches for g in b.completions],
            rewards=torch.cat([b.rewards for b in batches]),
            reward_components={
                k: torch.cat([b.reward_components[k] for b in batches])
                for k in batches[0].reward_components
            },
            loss_mask=torch.cat([m for m in masks if m is not None])
            if all(m is not None for m in masks)
            else None,
        )

    def sample_loss_weights(self) -> torch.Tensor:
        """[N] per-row loss weight (1 unless ``loss_mask`` leaves a sample out)."""
        if self.loss_mask is None:
            return torch.ones(self.rewards.numel())
        return self.loss_mask.reshape(-1).to(torch.float32)

    def build_tokens(self, pad_id: int) -> None:
        rows = []
        for b, group in enumerate(self.completions):
            for c in group:
                rows.append((self.prompt_ids[b], c))
        width = max(len(p) + len(c.token_ids) for p, c in rows)
        n = len(rows)
        ids = torch.full((n, width), pad_id, dtype=torch.long)
        attn = torch.zeros((n, width), dtype=torch.long)
        cmask = torch.zeros((n, width), dtype=torch.long)
        rlp = torch.zeros((n, width), dtype=torch.float32)
        for i, (p, c) in enumerate(rows):
            lp, lc = len(p), len(c.token_ids)
            ids[i, :lp] = torch.tensor(p, dtype=torch.long)
            if lc:
                ids[i, lp : lp + lc] = torch.tensor(c.token_ids, dtype=torch.long)
                rlp[i, lp : lp + lc] = torch.tensor(c.logprobs, dtype=torch.float32)
                cmask[i, lp : lp + lc] = 1
            attn[i, : lp + lc] = 1
        self.input_ids, self.attention_mask, self.completion_mask = ids, attn, cmask
        self.rollout_logprobs = rlp

    def token_advantages(self) -> torch.Tensor:
        """Advantages broadcast to [N, L-1] target positions."""
        assert self.advantages is not None and self.completion_mask is not None
        if self.advantages.dim() == 2 and self.advantages.shape == self.rewards.shape:
            per_row = self.advantages.reshape(-1, 1)
            return per_row.expand(-1, self.completion_mask.shape[1] - 1).clone()
        return self.advantages

    def to_train_batch(self, pad_id: int, correct: torch.Tensor | None = None) -> TrainBatch:
        """The tensor-only batch the learner consumes (advantages zero when not computed)."""
        self.build_tokens(pad_id)
        assert self.input_ids is not None and self.attention_mask is not None
        assert self.completion_mask is not None and self.rollout_logprobs is not None
        n, width = self.input_ids.shape
        if self.advantages is None:
            advantages = torch.zeros((n, width - 1), dtype=torch.float32)
        else:
            advantages = self.token_advantages().to(torch.float32)
        return TrainBatch(
            input_ids=self.input_ids,
            attention_mask=self.attention_mask,
            completion_mask=self.completion_mask,
            rollout_logprobs=self.rollout_logprobs,
            advantages=advantages,
            sample_weights=self.sample_loss_weights(),
            group_size=self.group_size,
            correct=None if correct is None else correct.reshape(-1).to(torch.float32),
        )


@dataclass
class TrainBatch:
    """One step's training data, tensors only (N rows = B prompts x G completions)."""

    input_ids: torch.Tensor  # [N, L] long, right-padded prompt + completion
    attention_mask: torch.Tensor  # [N, L]
    completion_mask: torch.Tensor  # [N, L] 1 on completion tokens
    rollout_logprobs: torch.Tensor  # [N, L] the engine's sampling log-prob at each token
    advantages: torch.Tensor  # [N, L-1] per target position
    sample_weights: torch.Tensor  # [N] 0 = row left out of the loss (e.g. truncated)
    group_size: int = 1  # G: rows b*G .. b*G+G-1 share a prompt
    correct: torch.Tensor | None = None  # [N] verifier score (> 0.5 correct), for metrics
    versions: torch.Tensor | None = None  # [N] weight version that sampled each row
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # [N, ...] per-row fields

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def target_mask(self) -> torch.Tensor:
        """[N, L-1] 1 where the target token is a completion token."""
        return self.completion_mask[:, 1:]

    @property
    def num_completion_tokens(self) -> int:
        return int(self.completion_mask.sum())

    def rows(self, idx: torch.Tensor) -> TrainBatch:
        """The rows ``idx`` (e.g. whole groups for one rank), same width."""
        return replace(
            self,
            input_ids=self.input_ids[idx],
            attention_mask=self.attention_mask[idx],
            completion_mask=self.completion_mask[idx],
            rollout_logprobs=self.rollout_logprobs[idx],
            advantages=self.advantages[idx],
            sample_weights=self.sample_weights[idx],
            correct=None if self.correct is None else self.correct[idx],
            versions=None if self.versions is None else self.versions[idx],
            extras={k: v[idx] for k, v in self.extras.items()},
        )
