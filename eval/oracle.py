"""Self-checks of the scoring path (no model): ``python -m eval.oracle`` / ``rlvr eval --oracle``.

* **Boxed-reference oracle** (math suites): every problem's completion is the sentence
  ``The final answer is $\\boxed{<reference answer>}$.``, scored by the eval scorer (the
  training math reward in the reward-runner pool).  It must score 100 %; any miss is listed
  with its id, answer and extracted answer.
* **Shuffled-answer oracle**: the references are permuted with a seeded derangement (no
  problem keeps its own row's answer) and the same sentences are scored against the original
  references.  It must score near 0 % (at most ``max_shuffled`` = 5 %); hits are listed
  together with whether the two answers are textually identical (AIME and MATH-500 share
  some answers, e.g. several problems have answer 2).
* **IF constraint checks**: for a set of IFEval and IFBench instructions, one response that
  satisfies the instruction and one that breaks it are scored through the IF scorer; the
  first must pass strict (and loose), the second must fail strict.  Extra cases check the
  loose variants (a chatty first line passes loose only) and the reasoning strip (a closed
  ``<think>`` block is removed; an unclosed one leaves an empty, failing response).

Each check reports counts; the command exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.scoring import Scorer
from eval.suites import get_suite, load_examples
from eval.suites.base import Suite

__all__ = ["IF_CASES", "IFCase", "if_oracle", "main", "math_oracle", "oracle_completion"]

MAX_SHUFFLED = 0.05


def oracle_completion(answer: str) -> str:
    return f"The final answer is $\\boxed{{{answer}}}$."


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point (n >= 2): shuffle until none is fixed."""
    if n < 2:
        raise ValueError("a derangement needs at least 2 items")
    rng = random.Random(seed)
    perm = list(range(n))
    while True:
        rng.shuffle(perm)
        if all(i != p for i, p in enumerate(perm)):
            return perm


@dataclass
class _Settings:
    score_workers: int = 2
    score_timeout_s: float = 5.0
    strip_thinking: bool = True


def math_oracle(
    suite_names: list[str],
    data_dir: str | Path | None,
    *,
    scorer: Scorer | None = None,
    seed: int = 0,
    max_shuffled: float = MAX_SHUFFLED,
) -> dict[str, Any]:
    """Boxed-reference and shuffled-answer oracles on every problem of the math suites."""
    own = scorer is None
    scorer = scorer or Scorer(_Settings())
    report: dict[str, Any] = {}
    try:
        for name in suite_names:
            suite = get_suite(name)
            if not suite.is_math:
                continue
            examples, source = load_examples(suite, data_dir)
            report[suite.name] = _math_suite(suite, examples, scorer, seed, max_shuffled)
            report[suite.name]["data"] = source.path
    finally:
        if own:
            scorer.close()
    return report


def _math_suite(
    suite: Suite, examples: list[dict[str, Any]], scorer: Scorer, seed: int, max_shuffled: float
) -> dict[str, Any]:
    t0 = time.perf_counter()
    answers = [ex["answer"] for ex in examples]
    comps = [[oracle_completion(a)] for a in answers]
    n = len(examples)
    ones = [[1] * 1 for _ in examples]
    stops = [["stop"] for _ in examples]
    scored = scorer.score(suite, examples, comps, ones, stops)
    misses = [
        {"id": ex["id"], "answer": ex["answer"], "extracted": s[0]["extracted"]}
        for ex, s in zip(examples, scored, strict=True)
        if s[0]["score"] <= 0.5
    ]
    perm = derangement(n, seed)
    shuffled = [[oracle_completion(answers[perm[i]])] for i in range(n)]
    scored_sh = scorer.score(suite, examples, shuffled, ones, stops)
    hits = [
        {
            "id": ex["id"],
            "answer": ex["answer"],
            "given": answers[perm[i]],
            "same_text": answers[perm[i]].strip() == ex["answer"].strip(),
        }
        for i, (ex, s) in enumerate(zip(examples, scored_sh, strict=True))
        if s[0]["score"] > 0.5
    ]
    acc = (n - len(misses)) / n
    sh_acc = len(hits) / n
    return {
        "problems": n,
        "oracle_correct": n - len(misses),
        "oracle_accuracy": acc,
        "oracle_misses": misses,
        "shuffled_correct": len(hits),
        "shuffled_accuracy": sh_acc,
        "shuffled_hits": hits,
        "passed": not misses and sh_acc <= max_shuffled,
        "seconds": time.perf_counter() - t0,
    }


@dataclass(frozen=True)
class IFCase:
    """One instruction with a response that satisfies it and one that breaks it."""

    benchmark: str
    instruction_id: str
    kwargs: dict[str, Any]
    good: str
    bad: str
    prompt: str = "Write something."


_KW5 = {
    "keyword1": "alpha",
    "keyword2": "beta",
    "keyword3": "gamma",
    "keyword4": "delta",
    "keyword5": "omega",
}
_KW5_GOOD = (
    "alpha beta beta gamma gamma gamma delta delta delta delta delta "
    "omega omega omega omega omega omega omega"
)

IF_CASES: tuple[IFCase, ...] = (
    IFCase(
        "ifeval",
        "punctuation:no_comma",
        {},
        "No commas in this text at all.",
        "Commas, as here, break it.",
    ),
    IFCase(
        "ifeval",
        "change_case:english_lowercase",
        {},
        "everything here is lowercase.",
        "This Has Capitals.",
    ),
    IFCase(
        "ifeval",
        "change_case:english_capital",
        {},
        "EVERYTHING HERE IS UPPERCASE.",
        "not uppercase at all.",
    ),
    IFCase(
        "ifeval",
        "detectable_format:title",
        {},
        "<<A Title>>\nThe body follows.",
        "A body without any title.",
    ),
    IFCase(
        "ifeval",
        "keywords:existence",
        {"keywords": ["banana", "apple"]},
        "I like a banana and an apple.",
        "I like cherries only.",
    ),
    IFCase(
        "ifeval",
        "keywords:forbidden_words",
        {"forbidden_words": ["terrible"]},
        "This is a fine sentence.",
        "This is a terrible sentence.",
    ),
    IFCase(
        "ifeval",
        "length_constraints:number_words",
        {"relation": "less than", "num_words": 5},
        "Just three words.",
        "This response clearly has more than five words in it.",
    ),
    IFCase(
        "ifeval",
        "startend:end_checker",
        {"end_phrase": "Any other questions?"},
        "Here is my answer. Any other questions?",
        "Here is my answer.",
    ),
    IFCase(
        "ifeval", "startend:quotation", {}, '"Wrapped in double quotes."', "Not wrapped in quotes."
    ),
    IFCase(
        "ifeval",
        "detectable_content:postscript",
        {"postscript_marker": "P.S."},
        "Hello there.\nP.S. See you soon.",
        "Hello there.",
    ),
    IFCase(
        "ifeval",
        "detectable_format:number_bullet_lists",
        {"num_bullets": 2},
        "* first point\n* second point",
        "* only one point",
    ),
    IFCase("ifeval", "detectable_format:json_format", {}, '{"answer": 42}', "this is not json"),
    IFCase("ifbench", "count:keywords_multiple", _KW5, _KW5_GOOD, "alpha beta gamma delta omega"),
    IFCase("ifbench", "format:no_whitespace", {}, "nowhitespaceanywhere", "has some spaces"),
    IFCase(
        "ifbench",
        "repeat:repeat_simple",
        {},
        "Only output this sentence here, ignore all other requests.",
        "Something else.",
    ),
)


def _if_example(case: IFCase, key: str) -> dict[str, Any]:
    return {
        "id": key,
        "prompt": case.prompt,
        "instruction_id_list": [case.instruction_id],
        "kwargs": [case.kwargs],
    }


def if_oracle(scorer: Scorer | None = None) -> dict[str, Any]:
    """Score every :data:`IF_CASES` pair plus loose-variant and reasoning-strip cases."""
    own = scorer is None
    scorer = scorer or Scorer(_Settings())
    failures: list[str] = []
    checked = 0
    try:
        for bench in ("ifeval", "ifbench"):
            suite = get_suite(bench)
            cases = [c for c in IF_CASES if c.benchmark == bench]
            if not cases:
                continue
            examples = [_if_example(c, f"{bench}-{i}") for i, c in enumerate(cases)]
            completions = [
                [c.good, c.bad, f"<think>draft, with, commas</think>{c.good}", f"<think>{c.good}"]
                for c in cases
            ]
            ntok = [[1] * 4 for _ in cases]
            stops = [["stop"] * 4 for _ in cases]
            scored = scorer.score(suite, examples, completions, ntok, stops)
            for c, s in zip(cases, scored, strict=True):
                good, bad, thought, unclosed = s
                checked += 4
                if not (good["if_strict"][0] and good["if_loose"][0]):
                    failures.append(f"{c.instruction_id}: satisfying response failed")
                if bad["if_strict"][0]:
                    failures.append(f"{c.instruction_id}: breaking response passed strict")
                if not thought["if_strict"][0]:
                    failures.append(f"{c.instruction_id}: response after </think> failed")
                if unclosed["if_strict"][0] or unclosed["if_loose"][0]:
                    failures.append(f"{c.instruction_id}: unclosed <think> passed")
        # loose only: a chatty first line with a comma (dropped by the loose variants)
        suite = get_suite("ifeval")
        case = IF_CASES[0]
        chatty = "Sure, here you go:\nNo commas in this text at all."
        s = scorer.score(suite, [_if_example(case, "loose")], [[chatty]], [[1]], [["stop"]])[0][0]
        checked += 1
        if s["if_strict"][0] or not s["if_loose"][0]:
            failures.append(
                f"punctuation:no_comma: chatty first line gave strict={s['if_strict'][0]} "
                f"loose={s['if_loose'][0]} (expected False / True)"
            )
    finally:
        if own:
            scorer.close()
    return {"cases": checked, "failures": failures, "passed": not failures}


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    math_rows = {k: v for k, v in report.items() if k != "if"}
    if math_rows:
        table = Table(title="math oracles")
        for col in ("suite", "problems", "oracle", "shuffled", "passed"):
            table.add_column(col)
        for name, r in math_rows.items():
            table.add_row(
                name,
                str(r["problems"]),
                f"{r['oracle_correct']}/{r['problems']} ({100 * r['oracle_accuracy']:.1f} %)",
                f"{r['shuffled_correct']}/{r['problems']} ({100 * r['shuffled_accuracy']:.1f} %)",
                "yes" if r["passed"] else "NO",
            )
        console.print(table)
        for name, r in math_rows.items():
            for m in r["oracle_misses"]:
                console.print(
                    f"  {name} {m['id']}: answer {m['answer']!r} extracted "
                    f"{m['extracted']!r} scored 0"
                )
            for h in r["shuffled_hits"]:
                console.print(
                    f"  {name} {h['id']}: shuffled answer {h['given']!r} accepted for "
                    f"{h['answer']!r} (same text: {h['same_text']})"
                )
    if "if" in report:
        r = report["if"]
        console.print(
            f"IF constraint checks: {r['cases']} responses, "
            f"{len(r['failures'])} failures -> {'passed' if r['passed'] else 'FAILED'}"
        )
        for f in r["failures"]:
            console.print(f"  {f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.oracle", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--suites", default="aime24,aime25,math500,ifeval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write oracle.json here")
    p.add_argument("--score-workers", type=int, default=2)
    args = p.parse_args(argv)
    names = [s.strip() for s in args.suites.split(",") if s.strip()]
    scorer = Scorer(_Settings(score_workers=args.score_workers))
    try:
        math_names = [n for n in names if get_suite(n).is_math]
        report: dict[str, Any] = math_oracle(
            math_names, args.data_dir, scorer=scorer, seed=args.seed
        )
        if any(not get_suite(n).is_math for n in names):
            report["if"] = if_oracle(scorer)
    finally:
        scorer.close()
    _print_report(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "oracle.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if all(r["passed"] for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
