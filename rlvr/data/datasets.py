"""Prompt datasets: local jsonl / parquet files, Hugging Face datasets, the arithmetic task.

Every example is a dict with at least ``prompt`` and ``answer`` (mapped from the recipe's
``data.prompt_field`` / ``data.answer_field``); other columns are kept for rewards that need
them. Malformed rows are reported with file and line number and counted; a file with no
usable row is an error. :class:`PromptStream` yields batches in a seeded order and exposes
its position so a resumed run continues with the very next prompt.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from rlvr.config import DataConfig
from rlvr.data.arithmetic import arithmetic_examples

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A data file problem, naming the file and the row."""


def _map_row(row: Any, cfg: DataConfig, where: str) -> tuple[dict | None, str | None]:
    if not isinstance(row, dict):
        return None, f"{where}: row is {type(row).__name__}, expected an object"
    missing = [f for f in (cfg.prompt_field, cfg.answer_field) if row.get(f) in (None, "")]
    if missing:
        return None, f"{where}: missing field(s) {missing} (have {sorted(row)[:8]})"
    out = dict(row)
    out["prompt"] = str(row[cfg.prompt_field])
    out["answer"] = str(row[cfg.answer_field])
    return out, None


def _read_jsonl(path: Path) -> list[tuple[int, Any, str | None]]:
    rows = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rows.append((lineno, json.loads(raw.decode("utf-8")), None))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                rows.append((lineno, None, f"{path}:{lineno}: not valid JSON ({e})"))
    return rows


def _read_parquet(path: Path) -> list[tuple[int, Any, str | None]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return [(i + 1, row, None) for i, row in enumerate(table.to_pylist())]


def load_file(path: str | Path, cfg: DataConfig) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: data file not found (data.path)")
    if p.suffix == ".jsonl" or p.suffix == ".json":
        rows = _read_jsonl(p)
        unit = "line"
    elif p.suffix == ".parquet":
        rows = _read_parquet(p)
        unit = "row"
    else:
        raise DataError(f"{p}: unsupported data file type '{p.suffix}' (use .jsonl or .parquet)")
    examples, problems = [], []
    for num, row, err in rows:
        if err is None:
            ex, err = _map_row(row, cfg, f"{p}:{unit} {num}")
            if ex is not None:
                examples.append(ex)
                continue
        problems.append(err)
    if problems:
        shown = "\n  ".join(problems[:5])
        more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        msg = f"{p}: skipped {len(problems)} malformed row(s) of {len(rows)}:\n  {shown}{more}"
        if not examples:
            raise DataError(msg)
        log.warning(msg)
    if not examples:
        raise DataError(f"{p}: no rows")
    return examples


def load_hf(cfg: DataConfig) -> list[dict]:
    import datasets

    ds = datasets.load_dataset(cfg.hf_name, cfg.hf_config, split=cfg.hf_split)
    out, problems = [], 0
    for i, row in enumerate(ds):
        ex, err = _map_row(row, cfg, f"{cfg.hf_name}[{cfg.hf_split}] row {i}")
        if ex is None:
            problems += 1
            if problems <= 5:
                log.warning(err)
        else:
            out.append(ex)
    if problems:
        log.warning("%s: skipped %d malformed row(s)", cfg.hf_name, problems)
    if not out:
        raise DataError(f"{cfg.hf_name}[{cfg.hf_split}]: no usable rows")
    return out


def load_examples(cfg: DataConfig) -> tuple[list[dict], list[dict]]:
    """(train, held-out) examples. Files and HF datasets have no held-out split here."""
    if cfg.source == "arithmetic":
        a = cfg.arithmetic
        return arithmetic_examples(a.digits, a.operations, a.num_train, a.num_eval, a.seed)
    if cfg.source == "file":
        assert cfg.path is not None
        return load_file(cfg.path, cfg), []
    return load_hf(cfg), []


class PromptStream:
    """Seeded, resumable stream of prompt batches; reshuffles at each epoch."""

    def __init__(
        self,
        examples: list[dict],
        *,
        seed: int,
        shuffle: bool = True,
        effort_levels: list[float] | None = None,
    ) -> None:
        if not examples:
            raise DataError("the prompt dataset is empty")
        self.examples = examples
        self.seed = seed
        self.shuffle = shuffle
        self.effort_levels = effort_levels
        self.epoch = 0
        self.index = 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        order = list(range(len(self.examples)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return order

    def next_batch(self, size: int) -> list[dict]:
        batch = []
        while len(batch) < size:
            if self.index >= len(self._order):
                self.epoch += 1
                self.index = 0
                self._order = self._make_order()
            example = self.examples[self._order[self.index]]
            if self.effort_levels:
                example = self._with_effort(example)
            batch.append(example)
            self.index += 1
        return batch

    def _with_effort(self, example: dict) -> dict:
        """Adaptive effort control: draw this visit's effort fraction (seeded by position)."""
        from rewards.effort import add_effort

        assert self.effort_levels
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.index}")
        return add_effort(example, rng.choice(self.effort_levels))

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index, "size": len(self.examples)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("size") != len(self.examples):
            raise DataError(
                f"checkpoint was taken on a dataset of {state.get('size')} prompts, "
                f"this one has {len(self.examples)}"
            )
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])
        self._order = self._make_order()
