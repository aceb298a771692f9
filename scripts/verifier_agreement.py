"""Agreement of ``rewards.math.math_reward`` with other graders' own test suites.

    python scripts/verifier_agreement.py                      # the shipped case files
    python scripts/verifier_agreement.py --cases tests/fixtures/grader_cases/mario_eval.json
    python scripts/verifier_agreement.py --suite math-verify=PATH/tests \\
        --suite lighteval=PATH/tests/unit/metrics/test_extractive_match.py [--json out.json]

Two kinds of input. ``--cases``: rlvr's own case files (``tests/fixtures/grader_cases/*.json``,
the default when neither option is given), cases written from peers' grader tests (MARIO_EVAL,
open-instruct, verl, rllm, Qwen2.5-Math) with each file's provenance (repo, path, commit,
licence) and how its rows were derived. A file's ``pred_kind`` is ``"answer"`` (the peer
grades an extracted answer: the prediction is scored as ``\\boxed{pred}``, outer ``$`` removed)
or ``"response"`` (a whole completion); ``extraction`` (default ``"auto"``) is the mode its
rows run under; a ``gold`` that is a list is correct when any item matches (rllm's rule).

``--suite NAME=PATH``: a directory of (or a single) pytest file(s) from a peer project,
read as text and parsed with :mod:`ast` (nothing of it is imported or executed). Every
``@pytest.mark.parametrize`` whose argument names include ``gold``, ``pred`` and
``expected`` gives one case per row, read with :func:`ast.literal_eval` (rows that are not
literals are skipped and counted). A case scores ``math_reward(pred, gold)`` (the
prediction is the completion, the gold the reference) under a 10 s deadline and agrees when
the score equals ``expected`` (0/1, False/True). Rows with a ``language`` other than English
and functions whose names mark a different task (letter-index extraction: ``abc``) are
left out and counted. The peers' test files are not part of this project; fetch them
(e.g. ``git clone https://github.com/huggingface/Math-Verify``) and point ``--suite`` at them.

Reported: cases, agreement, false positives (expected 0, scored 1), misses (expected 1,
scored 0), and per-function figures; ``--list`` prints every disagreement.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CASES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "grader_cases"
_SKIP_FUNCTION_WORDS = ("abc",)  # letter-index extraction tests (another task)
_ENGLISH = {"en", "english", "Language.ENGLISH", "ENGLISH"}


@dataclass
class Case:
    suite: str
    file: str
    function: str
    line: int
    gold: str | list[str]
    pred: str
    expected: int
    extra: dict[str, Any] = field(default_factory=dict)
    extraction: str | None = None  # None: the run's --extraction
    pred_kind: str = "response"  # "answer": the prediction is an extracted answer


_CASE_KEYS = ("suite", "source", "pred_kind", "cases")


def read_case_file(path: Path) -> list[Case]:
    """Cases of one rlvr case file (see ``tests/fixtures/grader_cases``); errors name the row."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON case file ({e})") from e
    missing = [k for k in _CASE_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}")
    if data["pred_kind"] not in ("answer", "response"):
        raise ValueError(f"{path}: pred_kind must be 'answer' or 'response'")
    out = []
    for i, row in enumerate(data["cases"]):
        for key in ("id", "gold", "pred", "expected"):
            if key not in row:
                raise ValueError(f"{path}: case {i} has no {key!r}")
        gold = row["gold"]
        if not (
            isinstance(gold, str)
            or (isinstance(gold, list) and all(isinstance(g, str) for g in gold))
        ):
            raise ValueError(
                f"{path}: case {i} ({row['id']}): gold must be a string or a list of strings"
            )
        if row["expected"] not in (0, 1):
            raise ValueError(f"{path}: case {i} ({row['id']}): expected must be 0 or 1")
        out.append(
            Case(
                suite=data["suite"],
                file=path.name,
                function=str(row.get("function", row["id"])),
                line=int(row.get("line", 0)),
                gold=gold,
                pred=row["pred"],
                expected=int(row["expected"]),
                extra={"id": row["id"], "label": row.get("label", "peer")},
                extraction=row.get("extraction", data.get("extraction")),
                pred_kind=data["pred_kind"],
            )
        )
    return out


def read_case_files(path: Path) -> list[Case]:
    """Every ``*.json`` case file in ``path`` (a file or a directory), in name order."""
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    if not files:
        raise ValueError(f"{path}: no case files (*.json)")
    return [c for f in files for c in read_case_file(f)]


def completion_of(case: Case) -> str:
    """The completion scored: an extracted answer is boxed (outer ``$`` removed)."""
    if case.pred_kind == "answer":
        inner = case.pred.strip()
        if len(inner) > 1 and inner.startswith("$") and inner.endswith("$"):
            inner = inner.strip("$").strip()
        return "\\boxed{" + inner + "}"
    return case.pred


def _argnames(node: ast.expr) -> list[str] | None:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",")]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    return None


def _language(node: ast.expr) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    return ast.unparse(node).split(".")[-1]


def read_cases(suite: str, path: Path) -> tuple[list[Case], dict[str, int]]:
    """Cases of every ``gold, pred, expected`` parametrize in ``path`` (file or directory)."""
    files = [path] if path.is_file() else sorted(path.rglob("test_*.py"))
    cases: list[Case] = []
    skipped = {"not_literal": 0, "other_language": 0, "other_task": 0}
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for dec in fn.decorator_list:
                if not (
                    isinstance(dec, ast.Call) and ast.unparse(dec.func).endswith("parametrize")
                ):
                    continue
                if len(dec.args) < 2:
                    continue
                names = _argnames(dec.args[0])
                if not names or not {"gold", "pred", "expected"} <= set(names):
                    continue
                rows = dec.args[1]
                if not isinstance(rows, (ast.List, ast.Tuple)):
                    continue
                for row in rows.elts:
                    if any(w in fn.name for w in _SKIP_FUNCTION_WORDS):
                        skipped["other_task"] += 1
                        continue
                    if not isinstance(row, ast.Tuple) or len(row.elts) != len(names):
                        skipped["not_literal"] += 1
                        continue
                    values: dict[str, Any] = {}
                    ok = True
                    for name, elt in zip(names, row.elts, strict=True):
                        if name == "language":
                            values[name] = _language(elt)
                            continue
                        try:
                            values[name] = ast.literal_eval(elt)
                        except ValueError:
                            values[name] = ast.unparse(elt)
                            ok = ok and name not in ("gold", "pred", "expected")
                    if not ok or not isinstance(values["gold"], str):
                        skipped["not_literal"] += 1
                        continue
                    if "language" in values and values["language"] not in _ENGLISH:
                        skipped["other_language"] += 1
                        continue
                    extra = {
                        k: v for k, v in values.items() if k not in ("gold", "pred", "expected")
                    }
                    cases.append(
                        Case(
                            suite=suite,
                            file=f.name,
                            function=fn.name,
                            line=row.lineno,
                            gold=values["gold"],
                            pred=str(values["pred"]),
                            expected=int(bool(values["expected"])),
                            extra={k: str(v) for k, v in extra.items()},
                        )
                    )
    return cases, skipped


def score(cases: list[Case], extraction: str) -> list[dict[str, Any]]:
    from rewards.math import math_reward, warmup

    warmup()
    out = []
    for c in cases:
        t0 = time.perf_counter()
        golds = [c.gold] if isinstance(c.gold, str) else c.gold
        completion = completion_of(c)
        mode = c.extraction or extraction
        got = max(
            (math_reward(completion, g, extraction=mode, timeout_s=10.0) for g in golds),
            default=0.0,
        )
        out.append({**asdict(c), "got": int(got), "seconds": round(time.perf_counter() - t0, 3)})
    return out


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    def block(rows: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(rows)
        agree = sum(r["got"] == r["expected"] for r in rows)
        return {
            "cases": n,
            "agree": agree,
            "agreement": round(agree / n, 4) if n else None,
            "false_positives": sum(r["got"] == 1 and r["expected"] == 0 for r in rows),
            "misses": sum(r["got"] == 0 and r["expected"] == 1 for r in rows),
            "max_seconds": max((r["seconds"] for r in rows), default=0.0),
        }

    report: dict[str, Any] = {"all": block(results), "suites": {}}
    for suite in dict.fromkeys(r["suite"] for r in results):
        rows = [r for r in results if r["suite"] == suite]
        per_fn = {}
        for fn in dict.fromkeys(f"{r['file']}::{r['function']}" for r in rows):
            per_fn[fn] = block([r for r in rows if f"{r['file']}::{r['function']}" == fn])
        report["suites"][suite] = {**block(rows), "functions": per_fn}
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", action="append", default=[], help="NAME=PATH (file or dir)")
    ap.add_argument(
        "--cases",
        action="append",
        default=[],
        help=f"rlvr case file or directory (default, with no --suite: {CASES_DIR})",
    )
    ap.add_argument("--extraction", default="auto", choices=("auto", "answer", "boxed"))
    ap.add_argument("--json", help="write every case and the summary here")
    ap.add_argument("--list", action="store_true", help="print every disagreement")
    args = ap.parse_args(argv)
    cases: list[Case] = []
    skipped: dict[str, dict[str, int]] = {}
    for spec in args.suite:
        name, _, path = spec.partition("=")
        p = Path(path)
        if not name or not p.exists():
            ap.error(f"--suite {spec!r}: expected NAME=PATH with an existing PATH")
        got, skip = read_cases(name, p)
        cases += got
        skipped[name] = skip
    case_paths = args.cases or ([] if args.suite else [str(CASES_DIR)])
    for spec in case_paths:
        try:
            cases += read_case_files(Path(spec))
        except ValueError as e:
            ap.error(f"--cases {spec!r}: {e}")
    results = score(cases, args.extraction)
    report = summarise(results)
    report["skipped"] = skipped
    print(json.dumps({k: v for k, v in report.items()}, indent=1))
    if args.list:
        for r in results:
            if r["got"] != r["expected"]:
                print(
                    f"{r['suite']} {r['file']}:{r['line']} {r['function']} expected={r['expected']} "
                    f"got={r['got']} gold={r['gold']!r} pred={r['pred'][:160]!r}",
                    file=sys.stderr,
                )
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": report, "cases": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
