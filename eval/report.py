"""Suite metrics from per-sample rows, the summary JSON and the markdown table.

Per suite (definitions in :mod:`eval.metrics`):

* math suites: avg@n with its standard error across problems, unbiased pass@k and maj@k for
  k = 1, 2, 4, ... <= n (and n), the share of samples with no extracted answer, length and
  truncation statistics, and avg@n / pass@n per value of each breakdown field (MATH-500
  ``subject`` and ``level``);
* IF suites: prompt- and instruction-level accuracy, strict and loose, pass@k of the
  prompt-level strict verdict when n > 1, length statistics, and instruction-level accuracy
  per instruction category (the id prefix before ``:``, as allenai/IFBench ``run_eval``
  prints it).

The summary JSON holds the run settings (the defaults that applied included), the model,
data provenance (path, sha256, rows), metrics and timings; the markdown table lists each
suite's headline numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from eval import metrics as M

__all__ = ["compute_suite_metrics", "markdown_report", "summary_engine"]


def _group_rows(
    rows: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]], n: int
) -> list[list[dict[str, Any]]]:
    """Rows grouped per example (in example order), samples 0..n-1 each, all present."""
    by_id: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_id[str(r["id"])][int(r["sample"])] = r
    grouped = []
    for ex in examples:
        samples = by_id.get(ex["id"], {})
        missing = [s for s in range(n) if s not in samples]
        if missing:
            raise ValueError(
                f"example {ex['id']!r} lacks samples {missing[:5]}{'...' if len(missing) > 5 else ''}"
            )
        grouped.append([samples[s] for s in range(n)])
    return grouped


def _pass_and_maj(
    correct: list[list[bool]], classes: list[list[Hashable | None]] | None, n: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    counts = [(n, sum(row)) for row in correct]
    for k in M.default_ks(n):
        out[f"pass@{k}"] = M.mean_pass_at_k(counts, k)
    if classes is not None:
        for k in M.default_ks(n):
            out[f"maj@{k}"] = M.maj_at_k(classes, correct, k)
    return out


def compute_suite_metrics(
    suite_name: str,
    scorer: str,
    rows: Sequence[dict[str, Any]],
    examples: Sequence[dict[str, Any]],
    n: int,
    breakdown: Sequence[str] = (),
    classes: list[list[Hashable | None]] | None = None,
) -> dict[str, Any]:
    """Metrics of one suite from its per-sample rows (first n samples of each example).

    ``classes[i][j]`` is the answer-equivalence class of sample j of example i (math suites;
    None = no answer); without it maj@k is not reported.
    """
    grouped = _group_rows(rows, examples, n)
    flat = [r for g in grouped for r in g]
    out: dict[str, Any] = {"num_problems": len(grouped), "n": n, "num_samples": len(flat)}
    if scorer == "math":
        correct = [[M.is_correct(r["score"]) for r in g] for g in grouped]
        per_problem = [sum(c) / n for c in correct]
        out["avg@n"] = sum(per_problem) / len(per_problem)
        out["avg@n_stderr"] = M.standard_error(per_problem)
        out.update(_pass_and_maj(correct, classes, n))
        out["no_answer_rate"] = sum(r.get("extracted") in (None, "") for r in flat) / len(flat)
    else:
        strict = [list(map(bool, r["if_strict"])) for r in flat]
        loose = [list(map(bool, r["if_loose"])) for r in flat]
        out.update(M.if_accuracy(strict, loose))
        if n > 1:
            correct = [[all(r["if_strict"]) for r in g] for g in grouped]
            out.update(_pass_and_maj(correct, None, n))
    out.update(
        M.length_stats(
            [int(r["num_tokens"]) for r in flat], [str(r["finish_reason"]) for r in flat]
        )
    )
    out["breakdown"] = _breakdown(scorer, grouped, examples, breakdown, n)
    return out


def _breakdown(
    scorer: str,
    grouped: list[list[dict[str, Any]]],
    examples: Sequence[dict[str, Any]],
    fields: Sequence[str],
    n: int,
) -> dict[str, dict[str, dict[str, float]]]:
    result: dict[str, dict[str, dict[str, float]]] = {}
    if scorer == "math":
        for field in fields:
            groups: dict[str, list[list[bool]]] = defaultdict(list)
            for ex, g in zip(examples, grouped, strict=True):
                if field in ex:
                    groups[str(ex[field])].append([M.is_correct(r["score"]) for r in g])
            if groups:
                result[field] = {
                    key: {
                        "num_problems": len(rows),
                        "avg@n": sum(sum(c) / n for c in rows) / len(rows),
                        f"pass@{n}": M.mean_pass_at_k([(n, sum(c)) for c in rows], n),
                    }
                    for key, rows in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))
                }
        return result
    cats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # strict, loose, total
    for ex, g in zip(examples, grouped, strict=True):
        for r in g:
            for j, inst in enumerate(ex["instruction_id_list"]):
                c = cats[inst.split(":")[0]]
                c[0] += bool(r["if_strict"][j])
                c[1] += bool(r["if_loose"][j])
                c[2] += 1
    result["category"] = {
        cat: {"num_instructions": t, "inst_level_strict": s / t, "inst_level_loose": lo / t}
        for cat, (s, lo, t) in sorted(cats.items())
    }
    return result


def _sort_key(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def summary_engine(summary: dict[str, Any]) -> str:
    """The rollout engine of a run summary: ``engine``, or ``backend`` in summaries written
    before the key was renamed."""
    return str(summary.get("engine", summary.get("backend")))


def markdown_report(summary: dict[str, Any]) -> str:
    """Markdown tables of a run summary: math suites, IF suites, breakdowns, settings."""
    lines = [f"# Evaluation of `{summary['model']}`", ""]
    lines.append(
        f"engine `{summary_engine(summary)}`, seed {summary['settings']['seed']}, "
        f"chat template {'on' if summary['settings']['chat_template'] else 'off'}"
        + (", system prompt set" if summary["settings"].get("system_prompt") else "")
    )
    lines.append("")
    suites = summary["suites"]
    math_suites = {k: v for k, v in suites.items() if v["scorer"] == "math"}
    if_suites = {k: v for k, v in suites.items() if v["scorer"] != "math"}
    if math_suites:
        ks = sorted({k for v in math_suites.values() for k in M.default_ks(v["metrics"]["n"])})
        head = ["suite", "problems", "n", "T", "avg@n ± se"]
        head += [f"pass@{k}" for k in ks] + ["maj@n"]
        head += ["mean tok", "max tok", "trunc %", "no-ans %"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, s in math_suites.items():
            m, st = s["metrics"], s["settings"]
            maj_key = f"maj@{m['n']}"
            cells = [
                name,
                str(m["num_problems"]),
                str(m["n"]),
                f"{st['temperature']:g}",
                f"{_pct(m['avg@n'])} ± {_pct(m['avg@n_stderr'])}",
            ]
            cells += [_pct(m.get(f"pass@{k}")) for k in ks]
            cells += [_pct(m.get(maj_key))]
            cells += [
                f"{m['mean_tokens']:.0f}",
                str(m["max_tokens"]),
                _pct(m["truncation_rate"]),
                _pct(m["no_answer_rate"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if if_suites:
        head = [
            "suite",
            "prompts",
            "n",
            "T",
            "prompt strict",
            "inst strict",
            "prompt loose",
            "inst loose",
            "headline",
            "mean tok",
            "trunc %",
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, s in if_suites.items():
            m, st = s["metrics"], s["settings"]
            cells = [
                name,
                str(m["num_problems"]),
                str(m["n"]),
                f"{st['temperature']:g}",
                _pct(m["prompt_level_strict"]),
                _pct(m["inst_level_strict"]),
                _pct(m["prompt_level_loose"]),
                _pct(m["inst_level_loose"]),
                s["headline"],
                f"{m['mean_tokens']:.0f}",
                _pct(m["truncation_rate"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for name, s in suites.items():
        for field, groups in s["metrics"].get("breakdown", {}).items():
            if s["scorer"] != "math" or not groups:
                continue
            n = s["metrics"]["n"]
            lines += [
                f"**{name} by {field}**",
                "",
                f"| {field} | problems | avg@n | pass@{n} |",
                "|---|---|---|---|",
            ]
            for key, g in groups.items():
                lines.append(
                    f"| {key} | {g['num_problems']} | {_pct(g['avg@n'])} | {_pct(g[f'pass@{n}'])} |"
                )
            lines.append("")
    lines.append("Settings per suite:")
    lines.append("")
    for name, s in suites.items():
        st = s["settings"]
        lines.append(
            f"- {name}: n={st['n']}, temperature={st['temperature']:g}, top_p={st['top_p']:g}, "
            f"top_k={st['top_k']}, max_tokens={st['max_tokens']}, template `{st['prompt_template']}`, "
            f"data `{s['data']['path']}` (sha256 {str(s['data']['sha256'])[:16]})"
        )
    lines.append("")
    lines += _abstention_lines(suites)
    return "\n".join(lines)


def _abstention_lines(suites: dict[str, Any]) -> list[str]:
    """Per suite with an ``abstention`` section: the gated run and the rules at c."""
    lines: list[str] = []
    for name, s in suites.items():
        ab = s.get("abstention")
        if not ab:
            continue
        lines.append(
            f"Abstention on {name} at c = {ab['threshold']:.3f}, r = {ab['r_abstain']:.3f} "
            f"(gated tokens equal to the full run's: {_pct(ab['gated_matches_full'])} %):"
        )
        lines.append("")
        head = ["rule", "coverage %", "selective acc %", "tokens saved %", "utility"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        rows = [("gated run (measured)", ab["gated"])]
        rows += [(f"{k} (replayed)", v) for k, v in ab["rules"].items()]
        for label, m in rows:
            cells = [
                label,
                _pct(m["coverage"]),
                _pct(m["selective_accuracy"]),
                _pct(m["tokens_saved"]),
                f"{m['utility']:.3f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines
