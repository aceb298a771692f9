"""Seeded synthetic arithmetic task: prompts with an exact integer reference answer.

Problems ``a op b`` with operands of 1..digits digits, drawn from a seeded ``random.Random``
so that train and held-out splits are reproducible and disjoint (held-out problems are
drawn first and excluded from the train split). The worked solution used for SFT writes the
result's digits least-significant first inside ``<think>`` (the order in which column
addition produces them, which a small causal model learns easily), then the answer in
``\\boxed{}``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclass(frozen=True)
class ArithmeticTask:
    digits: int = 2
    operations: tuple[str, ...] = ("+",)
    seed: int = 1234

    def _draw(self, rng: random.Random) -> tuple[int, str, int]:
        hi = 10**self.digits - 1
        a, b = rng.randint(0, hi), rng.randint(0, hi)
        op = rng.choice(self.operations)
        return a, op, b

    def splits(self, num_train: int, num_eval: int) -> tuple[list[dict], list[dict]]:
        """Disjoint (train, held-out) example lists, deterministic in ``seed``."""
        for op in self.operations:
            if op not in _OPS:
                raise ValueError(f"unknown arithmetic operation {op!r}; use one of {list(_OPS)}")
        rng = random.Random(self.seed)
        space = (10**self.digits) ** 2 * len(self.operations)
        if num_eval >= space:
            raise ValueError(f"num_eval={num_eval} leaves no train problems (space {space})")
        held: dict[tuple[int, str, int], None] = {}
        while len(held) < num_eval:
            held[self._draw(rng)] = None
        train = []
        while len(train) < num_train:
            p = self._draw(rng)
            if p not in held:
                train.append(p)
        return [make_example(*p) for p in train], [make_example(*p) for p in held]


def make_example(a: int, op: str, b: int) -> dict:
    result = _OPS[op](a, b)
    return {
        "prompt": f"{a}{op}{b}=",
        "answer": str(result),
        "solution": worked_solution(result),
        "id": f"{a}{op}{b}",
    }


def worked_solution(result: int) -> str:
    """SFT target: reversed digits as the 'thinking', then the boxed answer."""
    sign = "-" if result < 0 else ""
    digits = str(abs(result))[::-1]
    return f"<think>{sign}{digits}</think>\\boxed{{{result}}}"


def arithmetic_examples(
    digits: int = 2,
    operations: tuple[str, ...] | list[str] = ("+",),
    num_train: int = 1000,
    num_eval: int = 100,
    seed: int = 1234,
) -> tuple[list[dict], list[dict]]:
    return ArithmeticTask(digits, tuple(operations), seed).splits(num_train, num_eval)
