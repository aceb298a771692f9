"""Prompt datasets, chat formatting, the synthetic arithmetic task and tiny-model factory."""

from rlvr.data.arithmetic import ArithmeticTask, arithmetic_examples
from rlvr.data.datasets import DataError, PromptStream, load_examples
from rlvr.data.prompts import PromptFormatter

__all__ = [
    "ArithmeticTask",
    "DataError",
    "PromptFormatter",
    "PromptStream",
    "arithmetic_examples",
    "load_examples",
]
