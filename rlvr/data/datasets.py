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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr.config import DataConfig
from rlvr.data.arithmetic import arithmetic_examples

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A data file problem, naming the file and the row."""


@dataclass
class DataReport:
    """What loading did to the rows: counts for the run summary, first examples per kind."""

    rows: int = 0
    used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    numeric_answers: int = 0  # answers given as numbers, used as their text
    overlong_prompts: int = 0  # prompts over the token budget
    overlong_policy: str = ""
    examples: list[str] = field(default_factory=list)  # the first few row messages

    def note(self, message: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(message)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "used": self.used}
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        if self.numeric_answers:
            out["numeric_answers"] = self.numeric_answers
        if self.overlong_prompts:
            out["overlong_prompts"] = self.overlong_prompts
            out["overlong_policy"] = self.overlong_policy
        return out


def _unencodable(text: str) -> int | None:
    """Index of the first character UTF-8 cannot encode (an unpaired surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def _map_row(
    row: Any, cfg: DataConfig, where: str, report: DataReport | None = None
) -> tuple[dict | None, str | None]:
    """Map one row to an example, or return the reason it cannot be used (per-row message).

    A missing field, an empty one (``""`` or whitespace), a prompt that is not a string, an
    answer that is neither a string nor a number, and text with an unpaired surrogate (no
    tokenizer can encode it) are refused; a numeric answer is used as its text and counted."""
    if not isinstance(row, dict):
        return None, f"{where}: row is {type(row).__name__}, expected an object"
    missing = [f for f in (cfg.prompt_field, cfg.answer_field) if row.get(f) is None]
    if missing:
        return None, f"{where}: missing field(s) {missing} (have {sorted(row)[:8]})"
    empty = [
        f
        for f in (cfg.prompt_field, cfg.answer_field)
        if isinstance(row[f], str) and not row[f].strip()
    ]
    if empty:
        return None, f"{where}: empty field(s) {empty}"
    prompt, answer = row[cfg.prompt_field], row[cfg.answer_field]
    if not isinstance(prompt, str):
        return None, (
            f"{where}: field {cfg.prompt_field!r} is {type(prompt).__name__}, expected a string"
        )
    numeric = isinstance(answer, int | float) and not isinstance(answer, bool)
    if not isinstance(answer, str) and not numeric:
        return None, (
            f"{where}: field {cfg.answer_field!r} is {type(answer).__name__} ({answer!r:.40}), "
            "expected a string or a number"
        )
    for name, value in ((cfg.prompt_field, prompt), (cfg.answer_field, answer)):
        bad = _unencodable(value) if isinstance(value, str) else None
        if bad is not None:
            return None, (
                f"{where}: field {name!r} has an unpaired surrogate "
                f"({value[bad]!r} at character {bad}), which no tokenizer can encode"
            )
    out = dict(row)
    out["prompt"] = prompt
    out["answer"] = str(answer)
    if numeric and report is not None:
        report.numeric_answers += 1
        if report.numeric_answers <= 3:
            report.note(f"{where}: numeric answer {answer!r} used as the text {str(answer)!r}")
    return out, None


def _reason(message: str) -> str:
    """The kind of a per-row problem, for the counts."""
    for kind in ("not valid JSON", "missing field", "empty field", "unpaired surrogate", "row is"):
        if kind in message:
            return kind.replace("row is", "not an object")
    return "wrong type" if "expected a string" in message else "other"


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


def load_file(path: str | Path, cfg: DataConfig, report: DataReport | None = None) -> list[dict]:
    """Examples of a jsonl / parquet file; unusable rows are skipped, each reported with its
    line (the first five in the warning) and counted by reason in ``report``."""
    report = report if report is not None else DataReport()
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: data file not found (data.path)")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the data file is empty (data.path)")
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
            ex, err = _map_row(row, cfg, f"{p}:{unit} {num}", report)
            if ex is not None:
                examples.append(ex)
                continue
        problems.append(err)
        reason = _reason(err)
        report.skipped[reason] = report.skipped.get(reason, 0) + 1
    report.rows += len(rows)
    report.used += len(examples)
    if problems:
        shown = "\n  ".join(problems[:5])
        more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        counts = ", ".join(f"{n} {k}" for k, n in sorted(report.skipped.items()))
        msg = (
            f"{p}: skipped {len(problems)} malformed row(s) of {len(rows)} ({counts}):"
            f"\n  {shown}{more}"
        )
        if not examples:
            raise DataError(msg)
        log.warning(msg)
        report.note(msg)
    if report.numeric_answers:
        log.warning(
            "%s: %d row(s) give the answer as a number; used as its text (e.g. %s)",
            p,
            report.numeric_answers,
            report.examples[0] if report.examples else "",
        )
    if not examples:
        raise DataError(f"{p}: no rows")
    return examples


def load_hf(cfg: DataConfig, report: DataReport | None = None) -> list[dict]:
    import datasets

    report = report if report is not None else DataReport()
    ds = datasets.load_dataset(cfg.hf_name, cfg.hf_config, split=cfg.hf_split)
    out, problems = [], 0
    for i, row in enumerate(ds):
        ex, err = _map_row(row, cfg, f"{cfg.hf_name}[{cfg.hf_split}] row {i}", report)
        report.rows += 1
        if ex is None:
            problems += 1
            reason = _reason(err or "")
            report.skipped[reason] = report.skipped.get(reason, 0) + 1
            if problems <= 5:
                log.warning(err)
        else:
            report.used += 1
            out.append(ex)
    if problems:
        log.warning("%s: skipped %d malformed row(s)", cfg.hf_name, problems)
    if not out:
        raise DataError(f"{cfg.hf_name}[{cfg.hf_split}]: no usable rows")
    return out


def load_examples(
    cfg: DataConfig, report: DataReport | None = None
) -> tuple[list[dict], list[dict]]:
    """(train, held-out) examples. Files and HF datasets have no held-out split here.
    ``report`` (optional) receives the row counts."""
    report = report if report is not None else DataReport()
    if cfg.source == "arithmetic":
        a = cfg.arithmetic
        train, held = arithmetic_examples(a.digits, a.operations, a.num_train, a.num_eval, a.seed)
        report.rows += len(train)
        report.used += len(train)
        return train, held
    if cfg.source == "file":
        assert cfg.path is not None
        return load_file(cfg.path, cfg, report), []
    return load_hf(cfg, report), []


def check_prompt_lengths(
    examples: list[dict],
    token_ids: Callable[[dict], list[int]],
    budget: int,
    *,
    policy: str = "skip",
    report: DataReport | None = None,
    where: str = "data",
) -> list[dict]:
    """Tokenize every prompt once at load and deal with those longer than ``budget`` tokens
    (the room the context leaves after ``max_new_tokens``): ``skip`` drops them, ``truncate``
    keeps their last ``budget`` tokens, ``error`` refuses the data. Each is reported with its
    row (the first five), and counted in ``report``; an unencodable prompt is an error."""
    report = report if report is not None else DataReport()
    kept, over = [], []
    for i, ex in enumerate(examples):
        try:
            n = len(token_ids(ex))
        except Exception as e:  # a row the tokenizer cannot take is named, not a crash later
            raise DataError(
                f"{where} row {i + 1} ({ex.get('id', '')}): cannot tokenize: {e}"
            ) from e
        if n > budget:
            over.append(f"row {i + 1}{' id ' + str(ex['id']) if 'id' in ex else ''}: {n} tokens")
            if policy == "skip":
                continue
        kept.append(ex)
    report.overlong_prompts += len(over)
    report.overlong_policy = policy
    if over:
        shown = "; ".join(over[:5]) + (f"; ... and {len(over) - 5} more" if len(over) > 5 else "")
        action = {
            "skip": "skipped",
            "truncate": f"cut to their last {budget} tokens",
            "error": "refused",
        }[policy]
        msg = (
            f"{where}: {len(over)} of {len(examples)} prompt(s) are longer than {budget} tokens "
            f"(data.max_prompt_tokens, or the context left after rollout.max_new_tokens); "
            f"{action} (data.overlong_prompts={policy}): {shown}"
        )
        if policy == "error" or not kept:
            raise DataError(msg)
        log.warning(msg)
        report.note(msg)
    if policy == "skip":
        report.used -= len(over)
    return kept


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
