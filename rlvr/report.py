"""``rlvr report RUN [RUN ...] [--out report.html]``: one self-contained HTML page.

Each RUN is a run directory (``metrics.jsonl``, ``recipe.yaml``, ``summary.json`` as
``rlvr train`` writes them), a directory holding run directories (every ``*/metrics.jsonl``
one level down, e.g. ``scripts/reproduce_signatures.py --out``), or an eval output directory
(``summary.json`` with ``suites``, as ``rlvr eval`` writes it). The page holds:

* **runs**: path, steps logged, how the run ended (finished, stopped and why, or no
  ``summary.json``: still running or killed), non-finite steps skipped, reward failures,
  malformed data rows;
* **curves**: one panel per metric of ``rlvr.metrics.PLOTTED`` (plus loss, gradient norm),
  runs overlaid. Runs whose recipes differ only in ``seed`` (and ``name`` / ``output_dir``)
  form one series: the line is the mean over seeds at each step all of them logged, the band
  spans their min..max;
* **configuration**: the recipe settings that differ between runs (one run: all of them);
* **evaluation**: the held-out accuracy before / after training from each ``summary.json``,
  and each eval-harness summary found in a RUN (or in a sub-directory of one) as a suite table;
* **signatures**: the method-signature table when a RUN holds the ``summary.json`` of
  ``scripts/reproduce_signatures.py`` (per method: first-quarter -> last-quarter mean of each
  signature metric, ± the standard deviation over seeds of the last-quarter mean).

Self-contained: CSS inline, figures as PNG data URIs, no script, nothing fetched. Every text
taken from a file is HTML-escaped. Numbers are rounded as the terminal's tables are
(:func:`rlvr.console.fmt`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from rlvr.console import fmt
from rlvr.metrics import PLOTTED, read_metrics
from rlvr.run_dir import _flatten

CURVES = [*PLOTTED, ("loss", "policy loss"), ("grad_norm", "gradient norm")]
# settings that name a run rather than define it
NOT_SETTINGS = {"name", "output_dir", "resume", "overwrite"}
EVAL_HEADLINES = [
    "num_problems",
    "n",
    "avg@n",
    "pass@1",
    "prompt_level_strict",
    "inst_level_strict",
    "prompt_level_loose",
    "inst_level_loose",
    "mean_tokens",
    "truncation_rate",
    "no_answer_rate",
]


class ReportError(ValueError):
    """A RUN argument that holds nothing a report can show."""


@dataclass
class Run:
    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)  # flattened recipe.yaml
    summary: dict[str, Any] | None = None  # the train summary.json
    evals: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (where, summary)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Series:
    label: str
    runs: list[Run]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_eval_summary(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("suites"), dict)


def _is_signatures(data: Any) -> bool:
    """The summary.json of scripts/reproduce_signatures.py: method -> metric -> first/last."""
    return (
        isinstance(data, dict)
        and bool(data)
        and all(
            isinstance(v, dict)
            and all(isinstance(m, dict) and "first" in m and "last" in m for m in v.values())
            for v in data.values()
        )
    )


def load_run(path: Path) -> Run:
    run = Run(path)
    if (path / "metrics.jsonl").is_file():
        run.rows = [r for r in read_metrics(path / "metrics.jsonl") if "step" in r]
    if (path / "recipe.yaml").is_file():
        try:
            tree = yaml.safe_load((path / "recipe.yaml").read_text())
        except yaml.YAMLError:
            tree = None
        if isinstance(tree, dict):
            run.recipe = _flatten(tree)
    data = _read_json(path / "summary.json")
    if _is_eval_summary(data):
        run.evals.append((".", data))
    elif isinstance(data, dict) and "run_dir" in data:
        run.summary = data
    for sub in sorted(path.glob("*/summary.json")) + sorted(path.glob("*/*/summary.json")):
        data = _read_json(sub)
        if _is_eval_summary(data):
            run.evals.append((str(sub.parent.relative_to(path)), data))
    return run


def collect(paths: list[Path]) -> tuple[list[Run], list[tuple[Path, dict[str, Any]]]]:
    """The runs named by ``paths`` (see the module docstring) and any signatures tables."""
    runs: list[Run] = []
    signatures: list[tuple[Path, dict[str, Any]]] = []
    for path in paths:
        if not path.is_dir():
            raise ReportError(f"{path}: not a directory")
        data = _read_json(path / "summary.json")
        if _is_signatures(data):
            signatures.append((path, data))
        if (path / "metrics.jsonl").is_file() or _is_eval_summary(data):
            runs.append(load_run(path))
            continue
        children = sorted(p.parent for p in path.glob("*/metrics.jsonl"))
        runs.extend(load_run(p) for p in children)
        if not children and not _is_signatures(data):
            raise ReportError(
                f"{path}: no metrics.jsonl, eval summary.json or run directories inside; "
                "pass a run directory (runs/<name>) or a directory of them"
            )
    return runs, signatures


def group_seeds(runs: list[Run]) -> list[Series]:
    """Runs whose settings differ only in ``seed`` form one series (order of first run)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if not run.rows:
            continue
        key = json.dumps(
            {k: v for k, v in run.recipe.items() if k not in NOT_SETTINGS | {"seed"}},
            sort_keys=True,
            default=str,
        )
        groups.setdefault(key if run.recipe else f"path:{run.path}", []).append(run)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(Series(members[0].name, members))
            continue
        names = {re.sub(r"[_-]?seed[_-]?\d+$", "", r.name) for r in members}
        base = names.pop() if len(names) == 1 else members[0].name
        seeds = ", ".join(str(r.recipe.get("seed")) for r in members)
        out.append(Series(f"{base} (seeds {seeds})", members))
    return out


def series_curve(
    series: Series, key: str
) -> tuple[list[int], list[float], list[float], list[float]]:
    """(steps, mean, min, max) over the series' runs at every step all of them logged."""
    per_run = [
        {r["step"]: float(r[key]) for r in run.rows if isinstance(r.get(key), int | float)}
        for run in series.runs
    ]
    steps = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
    values = [[p[s] for p in per_run] for s in steps]
    return (
        steps,
        [statistics.fmean(v) for v in values],
        [min(v) for v in values],
        [max(v) for v in values],
    )


def curves_png(series: list[Series], key: str, title: str) -> bytes | None:
    """One panel: every series' mean curve with its seed band; None when no run logged it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves = [(s, series_curve(s, key)) for s in series]
    curves = [(s, c) for s, c in curves if c[0]]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for s, (steps, mean, lo, hi) in curves:
        line = ax.plot(steps, mean, lw=1.4, label=s.label)[0]
        if len(s.runs) > 1:
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def config_differences(runs: list[Run]) -> tuple[list[str], list[list[Any]]]:
    """(keys, one row of values per run) of the settings that differ between ``runs``;
    for a single run, all of its settings."""
    with_recipe = [r for r in runs if r.recipe]
    keys = sorted({k for r in with_recipe for k in r.recipe} - NOT_SETTINGS)
    if len(with_recipe) > 1:
        keys = [k for k in keys if len({json.dumps(r.recipe.get(k)) for r in with_recipe}) > 1]
    return keys, [[r.recipe.get(k) for k in keys] for r in with_recipe]


# ---------------------------------------------------------------------- HTML


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(key: str, value: Any) -> str:
    if isinstance(value, list | dict):
        text = json.dumps(value, default=str)
        return _e(text if len(text) <= 120 else text[:117] + "...")
    return _e(fmt(key, value))


def _table(head: list[str], rows: list[list[str]]) -> str:
    """``head`` escaped here; ``rows`` hold already escaped cells."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _status(run: Run) -> str:
    s = run.summary
    if s is None:
        return "no summary.json (still running, or killed)" if run.rows else "eval only"
    if s.get("stopped_reason"):
        return f"stopped: {s['stopped_reason']}"
    if s.get("interrupted"):
        return "stopped early (signal); resume=true continues it"
    if s.get("time_limited"):
        return "finished (train.time_limit_s reached)"
    return "finished"


def _problems(run: Run) -> str:
    s = run.summary or {}
    out = []
    if s.get("nonfinite_steps"):
        out.append(f"{s['nonfinite_steps']} non-finite step(s) skipped")
    for key, t in (s.get("reward_failures") or {}).items():
        if isinstance(t, dict) and (t.get("failed") or t.get("timeout")):
            out.append(
                f"reward {key}: {t.get('failed', 0)} failed / {t.get('timeout', 0)} timed out "
                f"of {t.get('entries', '?')}"
            )
    data = s.get("data") or {}
    skipped = sum((data.get("skipped") or {}).values()) if isinstance(data, dict) else 0
    if skipped:
        out.append(f"{skipped} malformed data row(s) skipped")
    if isinstance(data, dict) and data.get("overlong_prompts"):
        out.append(f"{data['overlong_prompts']} overlong prompt(s) ({data.get('overlong_policy')})")
    return _e("; ".join(out) or "none")


def _runs_section(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        last = run.rows[-1] if run.rows else {}
        rows.append(
            [
                _e(run.name),
                f"<code>{_e(run.path)}</code>",
                _e(last.get("step", "–")),
                _e(_status(run)),
                _problems(run),
                _e(fmt("reward/mean", last.get("reward/mean"))),
                _e(fmt("accuracy", last.get("accuracy"))),
            ]
        )
    head = ["run", "directory", "steps", "status", "problems", "last reward", "last accuracy"]
    return "<h2>Runs</h2>" + _table(head, rows)


def _curves_section(series: list[Series]) -> str:
    figures = []
    for key, title in CURVES:
        png = curves_png(series, key, title)
        if png is None:
            continue
        data = base64.b64encode(png).decode("ascii")
        figures.append(
            f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(key)}</figcaption></figure>"
        )
    if not figures:
        return ""
    items = "".join(
        f"<li>{_e(s.label)}"
        + (f": {_e(', '.join(r.name for r in s.runs))}" if len(s.runs) > 1 else "")
        + "</li>"
        for s in series
    )
    note = f"<ul>{items}</ul>"
    if any(len(s.runs) > 1 for s in series):
        note += "<p>Series over seeds: mean line, band from the minimum to the maximum.</p>"
    return "<h2>Curves</h2>" + note + '<div class="grid">' + "".join(figures) + "</div>"


def _config_section(runs: list[Run]) -> str:
    keys, values = config_differences(runs)
    with_recipe = [r for r in runs if r.recipe]
    if not with_recipe:
        return ""
    if len(with_recipe) == 1:
        rows = [[_e(k), _cell(k, v)] for k, v in zip(keys, values[0], strict=True)]
        table = _table(["setting", "value"], rows)
        return f"<h2>Configuration</h2><details><summary>recipe.yaml</summary>{table}</details>"
    if not keys:
        return "<h2>Configuration</h2><p>The runs' settings are identical.</p>"
    rows = [
        [_e(r.name)] + [_cell(k, v) for k, v in zip(keys, vals, strict=True)]
        for r, vals in zip(with_recipe, values, strict=True)
    ]
    return "<h2>Configuration differences</h2>" + _table(["run", *keys], rows)


def _eval_section(runs: list[Run]) -> str:
    parts = []
    trained = [(r, r.summary) for r in runs if r.summary]
    keys = sorted(
        {
            f"{when}: {k}"
            for _, s in trained
            for when in ("before", "after")
            for k in (s.get(f"eval_{when}") or {})
        }
    )
    if keys:
        rows = []
        for run, s in trained:
            cells = [_e(run.name)]
            for key in keys:
                when, name = key.split(": ", 1)
                cells.append(_e(fmt(name, (s.get(f"eval_{when}") or {}).get(name))))
            rows.append(cells)
        parts.append("<h3>Held-out accuracy around training</h3>" + _table(["run", *keys], rows))
    for run in runs:
        for where, summary in run.evals:
            rows = []
            suites = summary.get("suites") or {}
            present = [
                k
                for k in EVAL_HEADLINES
                if any(k in (s.get("metrics") or {}) for s in suites.values())
            ]
            for name, suite in suites.items():
                m = suite.get("metrics") or {}
                rows.append([_e(name)] + [_e(fmt(k, m.get(k))) for k in present])
            where_text = run.name if where == "." else f"{run.name}/{where}"
            model = summary.get("model", "")
            parts.append(
                f"<h3>Eval: {_e(where_text)}</h3><p>model <code>{_e(model)}</code></p>"
                + _table(["suite", *present], rows)
            )
    return "<h2>Evaluation</h2>" + "".join(parts) if parts else ""


def _signatures_section(signatures: list[tuple[Path, dict[str, Any]]]) -> str:
    parts = []
    for path, data in signatures:
        keys = sorted({k for v in data.values() for k in v})
        rows = []
        for method, entry in data.items():
            cells = [_e(method)]
            for k in keys:
                m = entry.get(k)
                if not m:
                    cells.append("–")
                    continue
                cells.append(
                    _e(
                        f"{fmt(k, m['first'])} → {fmt(k, m['last'])} "
                        f"(± {fmt(k, m.get('last_sd', 0.0))})"
                    )
                )
            rows.append(cells)
        parts.append(
            f"<h3><code>{_e(path)}</code></h3><p>first-quarter → last-quarter mean "
            "(± sd over seeds of the last-quarter mean)</p>" + _table(["method", *keys], rows)
        )
    return "<h2>Method signatures</h2>" + "".join(parts) if parts else ""


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; }
td code { word-break: break-all; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr));
        gap: 1em; }
figure { margin: 0; } figure img { width: 100%; height: auto; }
figcaption { font-size: 0.8em; color: #666; }
"""


def render(runs: list[Run], signatures: list[tuple[Path, dict[str, Any]]]) -> str:
    """The report page as one HTML string."""
    names = [r.name for r in runs] or [p.name for p, _ in signatures]
    title = "rlvr report: " + (names[0] if len(names) == 1 else f"{len(names)} runs")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"<h1>{_e(title)}</h1><p>written {_e(stamp)}</p>"
        + (_runs_section(runs) if runs else "")
        + _curves_section(group_seeds(runs))
        + _config_section(runs)
        + _eval_section(runs)
        + _signatures_section(signatures)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def write_report(paths: list[Path], out: Path | None = None) -> Path:
    """Write the report of ``paths``; ``out`` defaults to ``<run>/report.html`` for one
    RUN and ``report.html`` in the working directory for several."""
    runs, signatures = collect(paths)
    if out is None:
        out = paths[0] / "report.html" if len(paths) == 1 else Path("report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(runs, signatures), encoding="utf-8")
    return out
