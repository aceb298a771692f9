"""Agreement of ``rewards.math.math_reward`` with other graders' own test suites.

    python scripts/verifier_agreement.py --suite math-verify=PATH/tests \\
        --suite lighteval=PATH/tests/unit/metrics/test_extractive_match.py [--json out.json]

A suite is a directory of (or a single) pytest file(s) from a peer project, read as text and
parsed with :mod:`ast` (nothing of it is imported or executed). Every
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

_SKIP_FUNCTION_WORDS = ("abc",)  # letter-index extraction tests (another task)
_ENGLISH = {"en", "english", "Language.ENGLISH", "ENGLISH"}


@dataclass
class Case:
    suite: str
    file: str
    function: str
    line: int
    gold: str
    pred: str
    expected: int
    extra: dict[str, Any] = field(default_factory=dict)


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
        got = math_reward(c.pred, c.gold, extraction=extraction, timeout_s=10.0)
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
    ap.add_argument("--suite", action="append", required=True, help="NAME=PATH (file or dir)")
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
