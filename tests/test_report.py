"""``rlvr report``: seeds grouped into bands, configuration differences, eval and signature
tables, a self-contained page (and, where a Chromium binary exists, one that loads without a
console error)."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from rlvr.cli import main
from rlvr.report import collect, config_differences, group_seeds, render, series_curve

VOID = {"meta", "img", "br", "hr", "link", "input"}


def _run(root: Path, name: str, seed: int, lr: float, rewards: list[float], **summary) -> Path:
    d = root / name
    d.mkdir(parents=True)
    recipe = {"name": name, "output_dir": str(root), "seed": seed, "train": {"lr": lr}}
    (d / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    rows = [
        {"step": i + 1, "reward/mean": r, "accuracy": r / 2, "loss": 0.1}
        for i, r in enumerate(rewards)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary:
        (d / "summary.json").write_text(json.dumps({"run_dir": str(d), **summary}))
    return d


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    a0 = _run(
        tmp_path,
        "grpo_seed0",
        0,
        1e-4,
        [0.1, 0.3, 0.5],
        eval_before={"eval/greedy": 0.25},
        eval_after={"eval/greedy": 0.5},
        nonfinite_steps=2,
        reward_failures={"math": {"failed": 3, "timeout": 1, "entries": 40, "rate": 0.1}},
    )
    a1 = _run(tmp_path, "grpo_seed1", 1, 1e-4, [0.3, 0.5])  # killed after step 2
    b = _run(
        tmp_path,
        "fast",
        0,
        1e-3,
        [0.2, 0.2, 0.2],
        interrupted=True,
        stopped_reason="step 3: non-finite <loss> & more",
    )
    ev = b / "eval"
    ev.mkdir()
    (ev / "summary.json").write_text(
        json.dumps(
            {
                "model": "runs/fast/checkpoints/step_000003",
                "suites": {"math500": {"metrics": {"num_problems": 500, "n": 4, "avg@n": 0.4125}}},
            }
        )
    )
    return [a0, a1, b]


def test_seeds_form_one_series_with_mean_and_min_max_band(runs: list[Path]) -> None:
    loaded, _ = collect(runs)
    series = group_seeds(loaded)
    assert [s.label for s in series] == ["grpo (seeds 0, 1)", "fast"]
    steps, mean, lo, hi = series_curve(series[0], "reward/mean")
    assert steps == [1, 2]  # only the steps every seed logged
    assert mean == pytest.approx([0.2, 0.4]) and lo == [0.1, 0.3] and hi == [0.3, 0.5]
    assert series_curve(series[1], "accuracy")[1] == pytest.approx([0.1, 0.1, 0.1])
    keys, values = config_differences(loaded)
    assert keys == ["seed", "train.lr"]  # name / output_dir name a run, they do not define it
    assert values == [[0, 1e-4], [1, 1e-4], [0, 1e-3]]


def test_page_is_self_contained_escaped_and_holds_every_section(
    runs: list[Path], tmp_path: Path
) -> None:
    sig = tmp_path / "signatures"
    sig.mkdir()
    (sig / "summary.json").write_text(
        json.dumps(
            {"grpo": {"entropy": {"first": 0.195, "last": 0.191, "last_sd": 0.005}}},
        )
    )
    out = tmp_path / "out" / "report.html"
    assert main(["report", *map(str, runs), str(sig), "--out", str(out)]) == 0
    page = out.read_text()

    class Check(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.srcs: list[str] = []
            self.tags: set[str] = set()

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            self.srcs += [v for k, v in attrs if k in ("src", "href")]
            if tag not in VOID:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
            self.stack.pop()

    check = Check()
    check.feed(page)
    assert check.stack == []  # every element closed, in order
    assert "script" not in check.tags and "link" not in check.tags
    assert check.srcs and all(s.startswith("data:image/png;base64,") for s in check.srcs)
    assert "step 3: non-finite &lt;loss&gt; &amp; more" in page  # file text is escaped
    for text in (
        "grpo (seeds 0, 1)",  # the legend is in the PNG; the note names the band
        "band from the minimum to the maximum",
        "Configuration differences",
        "train.lr",
        "2 non-finite step(s) skipped",
        "reward math: 3 failed / 1 timed out of 40",
        "no summary.json (still running, or killed)",
        "before: eval/greedy",
        "25.0 %",
        "Eval: fast/eval",
        "41.2 %",
        "Method signatures",
        "0.195 → 0.191 (± 0.005)",
    ):
        assert text in page, text


def test_default_output_and_clear_errors(runs: list[Path], tmp_path: Path, capsys) -> None:
    assert main(["report", str(runs[0])]) == 0
    assert (runs[0] / "report.html").is_file()
    assert str(runs[0] / "report.html") in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "absent")]) == 2
    # a directory of runs (e.g. scripts/reproduce_signatures.py --out) is expanded
    loaded, _ = collect([tmp_path])
    assert sorted(r.name for r in loaded) == ["fast", "grpo_seed0", "grpo_seed1"]
    assert "grpo_seed0" in render(loaded, [])


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def _load_in_chromium(page: Path, profile: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the browser's console lines) of ``page`` in headless Chromium."""
    proc = subprocess.run(
        [
            _chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(_chromium() is None, reason="no Chromium binary (Debian: apt install chromium)")
def test_page_loads_in_headless_chromium_without_console_errors(
    runs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    dom, console = _load_in_chromium(out, tmp_path / "profile")
    assert "Configuration differences" in dom and dom.count("<img") >= 3  # parsed, laid out
    assert console == []  # the page has no script: any console line is an error
    # the check sees a console error where there is one
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefined_fn();</script></body></html>")
    _, console = _load_in_chromium(bad, tmp_path / "profile")
    assert any("Uncaught ReferenceError" in line for line in console), console
