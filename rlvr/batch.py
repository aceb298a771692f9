"""The rollout batch: one dataclass that every module reads from.

Rows are the B*G completions in prompt-major order (row = b * G + g). Token tensors are
right-padded [N, L] with the prompt first and the completion after it; ``completion_mask``
marks completion tokens, ``rollout_logprobs`` holds the engine's sampling log-prob at each
completion token's position. Modules (advantages, token weights, filters, losses) read what
they need; none reaches into the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlvr.rollout.base import Completion
from rlvr.soft_policy import SoftTokens, build_soft_tokens


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
    old_logprobs: torch.Tensor | None = None  # [N, L-1]
    ref_logprobs: torch.Tensor | None = None  # [N, L-1]
    entropies: torch.Tensor | None = None  # [N, L-1]
    token_weights: torch.Tensor | None = None  # [N, L-1] multiplicative, 1 by default
    loss_mask: torch.Tensor | None = None  # [B, G] 0 = sample left out of the loss (truncated)
    soft_tokens: SoftTokens | None = None  # soft-thinking steps (SofT-GRPO), by build_tokens

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
    def group_index(self) -> torch.Tensor:
        return torch.arange(self.num_prompts).repeat_interleave(self.group_size)

    @property
    def lengths(self) -> torch.Tensor:
        return torch.tensor(
            [[len(c.token_ids) for c in group] for group in self.completions], dtype=torch.float32
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
        self.soft_tokens = build_soft_tokens([len(p) for p, _ in rows], [c for _, c in rows], width)

    def token_advantages(self) -> torch.Tensor:
        """Advantages broadcast to [N, L-1] target positions."""
        assert self.advantages is not None and self.completion_mask is not None
        if self.advantages.dim() == 2 and self.advantages.shape == self.rewards.shape:
            per_row = self.advantages.reshape(-1, 1)
            return per_row.expand(-1, self.completion_mask.shape[1] - 1).clone()
        return self.advantages
