"""The rollout-engine interface shared by the transformers and vLLM engines.

An engine takes prompt token ids and returns, for each prompt, ``n`` completions with their
token ids, the sampling log-prob of every generated token (under the processed distribution
softmax(logits / T), after top-k / top-p), and a finish reason ("stop" when the EOS token
ended it, "length" when ``max_tokens`` did, "abstain" when the abstention gate forced the EOS:
rlvr/abstention/gate.py, hf engine only). After each optimizer step the trainer pushes new
weights with :meth:`RolloutEngine.update_weights`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = -1  # -1 = off
    max_tokens: int = 64
    seed: int | None = None


@dataclass
class SoftTrace:
    """What a soft-thinking rollout (rlvr/rollout/soft.py) records per completion token, so
    that the learner can rebuild its inputs: ``soft[t]`` is True for a soft step, whose input
    embedding was sum_i softmax(perturbed[t] / tau_g)_i E[topk_ids[t][i]]; discrete steps have
    ``topk_ids[t] = [token, 0, ...]`` and zero ``perturbed[t]``."""

    soft: list[bool]
    topk_ids: list[list[int]]  # [T][k]
    perturbed: list[list[float]]  # [T][k], g'
    tau_g: float


@dataclass
class Completion:
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    text: str = ""
    context_len: int = 0  # leading tokens that were context for this draw (a CURE branch's prefix)
    soft: SoftTrace | None = None  # soft-thinking engine only
    # dynamic abstention (rlvr/abstention/gate.py; hf engine): the gate forced EOS after
    # ``abstain_step`` generated tokens; ``value_trace[t]`` = V̂ before token t was drawn;
    # ``features`` = [T, H] fp16 decode-time hidden states (when capturing)
    abstained: bool = False
    abstain_step: int | None = None
    value_trace: list[float] | None = None
    features: torch.Tensor | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def generated_len(self) -> int:
        """Tokens generated in this draw: a CURE branch counts its continuation only."""
        return len(self.token_ids) - self.context_len


class RolloutEngine(ABC):
    """Generates completions; receives new weights in memory after each optimizer step."""

    @abstractmethod
    def generate(
        self, prompt_token_ids: list[list[int]], sampling: SamplingParams
    ) -> list[list[Completion]]:
        """Return ``[len(prompts)][sampling.n]`` completions."""

    @abstractmethod
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load new policy weights (Hugging Face parameter names) in place."""

    def sync_metrics(self) -> dict[str, float]:
        """What the last weight sync measured (server mode: ``sync/receipt_max_abs``)."""
        return {}

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing here
        """Release the engine's resources."""

    def __enter__(self) -> RolloutEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
