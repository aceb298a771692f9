"""Suite definition and data loading with row-level validation.

A suite names its data (local file names in ``--data-dir``, an optional Hugging Face dataset
id for online use), the fields it needs (with aliases for the common mirrors, e.g. lm-eval's
``Problem``/``Answer`` for AIME 2024), its prompt template, its scorer kind and its default
sampling settings.  Loading turns every row into a canonical example dict:

* math suites: ``{"id", "problem", "answer", ...breakdown fields}``
* instruction-following suites: ``{"id", "prompt", "instruction_id_list", "kwargs"}``

Any missing or malformed row raises :class:`DataError` with the file and the 1-based line
(JSONL) or row (parquet / hub) number, so a broken mirror is found at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DataError",
    "DataSource",
    "Suite",
    "SuiteDefaults",
    "load_examples",
    "read_rows",
]

ScorerKind = Literal["math", "ifeval", "ifbench"]


class DataError(ValueError):
    """A missing or malformed data file; the message names the file and row."""


@dataclass(frozen=True)
class SuiteDefaults:
    """Sampling defaults for a suite (common practice; CLI / YAML values override them)."""

    n: int
    temperature: float
    top_p: float
    max_tokens: int
    top_k: int = -1


@dataclass(frozen=True)
class DataSource:
    """Where a suite's examples came from (recorded in the summary)."""

    path: str
    sha256: str | None
    num_rows: int


@dataclass(frozen=True)
class Suite:
    """One benchmark: data location, fields, prompt template, scorer and defaults.

    ``fields`` maps each canonical field to the source names tried in order; ``required``
    lists canonical fields every row must have; ``id_fields`` are tried for the example id
    (the row number is used when none is present); ``breakdown`` names canonical fields whose
    values get per-group metrics (e.g. MATH-500 ``subject`` and ``level``).
    """

    name: str
    description: str
    scorer: ScorerKind
    files: tuple[str, ...]
    fields: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    defaults: SuiteDefaults
    prompt_template: str
    headline: str
    id_fields: tuple[str, ...] = ("id",)
    breakdown: tuple[str, ...] = ()
    hub: tuple[str, str | None, str] | None = None  # (dataset id, config, split)
    generator: Callable[[], list[dict[str, Any]]] | None = None
    validate: Callable[[dict[str, Any], str], None] | None = field(default=None, repr=False)

    @property
    def is_math(self) -> bool:
        return self.scorer == "math"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(location, row)`` from a JSONL / JSON / parquet file; location is ``file:line``."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - re-raised with the file name
            raise DataError(f"{path}: cannot read parquet file: {e}") from e
        for i, row in enumerate(table.to_pylist(), start=1):
            yield f"{path} row {i}", row
        return
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from e
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
        for i, row in enumerate(data, start=1):
            if not isinstance(row, dict):
                raise DataError(f"{path} item {i}: expected an object, got {type(row).__name__}")
            yield f"{path} item {i}", row
        return
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from e
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}"
                )
            yield f"{path}:{lineno}", row


def _canonical(suite: Suite, row: dict[str, Any], where: str, index: int) -> dict[str, Any]:
    ex: dict[str, Any] = {}
    for canon, aliases in suite.fields.items():
        for name in aliases:
            if name in row and row[name] is not None:
                ex[canon] = row[name]
                break
    for canon in suite.required:
        if canon not in ex:
            names = " / ".join(repr(a) for a in suite.fields[canon])
            raise DataError(f"{where}: missing field {names} (suite {suite.name})")
    for name in suite.id_fields:
        if name in row and row[name] is not None:
            ex["id"] = str(row[name])
            break
    else:
        ex["id"] = str(index)
    for canon in ("problem", "prompt", "answer"):
        if canon in ex:
            value = ex[canon]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise DataError(
                    f"{where}: field {canon!r} must be a string, got {type(value).__name__}"
                )
            ex[canon] = str(value).strip() if canon == "answer" else str(value)
            if not ex[canon].strip():
                raise DataError(f"{where}: field {canon!r} is empty")
    if suite.validate is not None:
        suite.validate(ex, where)
    return ex


def _find_local(suite: Suite, data_dir: Path) -> Path | None:
    for name in suite.files:
        p = data_dir / name
        if p.is_file():
            return p
    # case-insensitive match (e.g. IFBench_test.jsonl vs ifbench_test.jsonl)
    if data_dir.is_dir():
        wanted = {n.lower() for n in suite.files}
        for p in sorted(data_dir.iterdir()):
            if p.name.lower() in wanted and p.is_file():
                return p
    return None


def _hub_rows(suite: Suite) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    assert suite.hub is not None
    name, config, split = suite.hub
    import datasets

    ds = datasets.load_dataset(name, config, split=split)
    where = f"hf://{name}" + (f"/{config}" if config else "") + f"[{split}]"
    return where, [(f"{where} row {i}", dict(r)) for i, r in enumerate(ds, start=1)]


#: The benchmark files shipped with rlvr (``eval/data``; sources and licences in its
#: ``PROVENANCE.md``).
SHIPPED_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
#: ``data_dir`` value that skips local and shipped files and loads from the Hugging Face hub.
HUB = "hub"


def load_examples(
    suite: Suite,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
    allow_hub: bool | None = None,
) -> tuple[list[dict[str, Any]], DataSource]:
    """Load and validate a suite's examples.

    Lookup order: an explicit ``path``; then the suite's file names in ``data_dir``; then the
    suite's built-in generator (synthetic suites); then, with no ``data_dir``, the files
    shipped in :data:`SHIPPED_DATA_DIR`; then the Hugging Face hub when allowed (default: only
    when no ``data_dir`` is given, or ``data_dir == "hub"`` (:data:`HUB`, which skips the
    shipped files), and neither ``HF_HUB_OFFLINE`` nor ``HF_DATASETS_OFFLINE`` is set: a data
    directory that lacks the file is an error, not a silent download).
    """
    rows: list[tuple[str, dict[str, Any]]]
    from_hub = data_dir is not None and str(data_dir) == HUB
    if from_hub:
        data_dir = None
    elif data_dir is None and _find_local(suite, SHIPPED_DATA_DIR) is not None:
        data_dir, allow_hub = SHIPPED_DATA_DIR, False
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: data file for suite {suite.name!r} not found")
        rows, source_path, digest = list(read_rows(p)), str(p), _sha256(p)
    else:
        local = _find_local(suite, Path(data_dir)) if data_dir is not None else None
        if local is not None:
            rows, source_path, digest = list(read_rows(local)), str(local), _sha256(local)
        elif suite.generator is not None:
            generated = suite.generator()
            rows = [(f"<{suite.name} generator> item {i}", r) for i, r in enumerate(generated, 1)]
            source_path, digest = f"<generated:{suite.name}>", None
        else:
            if allow_hub is None:  # a data directory given means: these files, no download
                allow_hub = data_dir is None and not (
                    os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
                )
            tried = ", ".join(str(Path(data_dir or ".") / n) for n in suite.files)
            if suite.hub is None or not allow_hub:
                why = (
                    "use --data-dir hub to download it"
                    if data_dir is not None
                    else "the hub is off (HF_HUB_OFFLINE)"
                )
                raise DataError(
                    f"suite {suite.name!r}: no data file found (tried {tried})"
                    + ("" if suite.hub is None else f"; not downloading {suite.hub[0]}: {why}")
                )
            try:
                source_path, rows = _hub_rows(suite)
            except Exception as e:  # noqa: BLE001 - re-raised with context
                raise DataError(
                    f"suite {suite.name!r}: no data file found (tried {tried}) and loading "
                    f"{suite.hub[0]} from the Hugging Face hub failed: {e}"
                ) from e
            digest = None
    if not rows:
        raise DataError(f"{source_path}: no rows (suite {suite.name})")
    examples = []
    seen: dict[str, str] = {}
    for i, (where, row) in enumerate(rows):
        ex = _canonical(suite, row, where, i)
        if ex["id"] in seen:
            raise DataError(f"{where}: duplicate id {ex['id']!r} (first at {seen[ex['id']]})")
        seen[ex["id"]] = where
        examples.append(ex)
    return examples, DataSource(path=source_path, sha256=digest, num_rows=len(examples))
