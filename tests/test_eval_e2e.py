"""End to end on a tiny random model with the real engines: CLI + YAML (HF), vLLM, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from eval.cli import main
from eval.runner import EvalSettings, read_samples, run_eval


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlvr.data.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_e2e"), max_position_embeddings=1024)


def _completions(out: Path, suite: str) -> list[tuple[str, int, str]]:
    rows = read_samples(out / "samples" / f"{suite}.jsonl")
    return sorted((r["id"], r["sample"], r["completion"]) for r in rows)


def test_cli_hf_engine_yaml_resume_and_determinism(
    tiny: Path, tmp_path: Path, shared_data_dir: Path
) -> None:
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny),
                "suites": "arithmetic,aime24",
                "engine": "hf",
                "n": 2,
                "temperature": 0.8,
                "max_tokens": 8,
                "limit": 2,
                "seed": 3,
                "score_workers": 1,
                "data_dir": str(shared_data_dir),
                "suite_overrides": {"aime24": {"n": 1, "temperature": 0.0}},
            }
        )
    )
    out = tmp_path / "run1"
    assert main(["--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    a = summary["suites"]["arithmetic"]
    assert a["settings"]["n"] == 2 and a["settings"]["max_tokens"] == 8
    assert a["metrics"]["num_samples"] == 4
    assert summary["suites"]["aime24"]["settings"]["temperature"] == 0.0
    assert summary["timing"]["generated_tokens"] > 0
    assert (out / "results.md").read_text().startswith("# Evaluation of")
    rows = read_samples(out / "samples" / "arithmetic.jsonl")
    assert all(0 < r["num_tokens"] <= 8 for r in rows)
    assert {r["finish_reason"] for r in rows} <= {"stop", "length"}
    # resume: nothing left to generate, same numbers
    assert main(["--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["timing"]["generated_tokens"] == 0
    assert again["suites"]["arithmetic"]["metrics"] == a["metrics"]
    # same seed, fresh directory: identical samples
    out2 = tmp_path / "run2"
    assert main(["--config", str(cfg), "--out", str(out2), "--no-progress"]) == 0
    assert _completions(out, "arithmetic") == _completions(out2, "arithmetic")
    assert _completions(out, "aime24") == _completions(out2, "aime24")


def test_cli_errors_are_reported(tiny: Path, tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "aime24.jsonl").write_text('{"id": "1", "problem": "p"}\n')
    code = main(
        [
            "--model",
            str(tiny),
            "--suites",
            "aime24",
            "--data-dir",
            str(bad),
            "--out",
            str(tmp_path / "o"),
            "--engine",
            "hf",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "aime24.jsonl:1: missing field" in capsys.readouterr().err


@pytest.mark.vllm
def test_vllm_engine_end_to_end_and_deterministic(
    tiny_model_dir: Path, vllm_engine: Any, tmp_path: Path
) -> None:
    """Uses the session's shared vLLM engine (conftest) on the session tiny model."""
    from eval.scoring import Scorer

    class KeepOpen(Scorer):
        def close(self) -> None:  # shared by both runs below
            pass

    scorer = KeepOpen(EvalSettings(model="x", score_workers=1))
    outs = []
    for name in ("a", "b"):
        settings = EvalSettings(
            model=str(tiny_model_dir),
            suites=["arithmetic"],
            out=str(tmp_path / name),
            engine="vllm",
            n=4,
            max_tokens=8,
            limit=3,
            seed=5,
            score_workers=1,
            chunk_size=2 if name == "b" else None,
        )
        summary = run_eval(
            settings, engine=vllm_engine, scorer_factory=lambda s: scorer, progress=False
        )
        assert summary["suites"]["arithmetic"]["metrics"]["num_samples"] == 12
        assert summary["timing"]["tokens_per_second"] > 0
        outs.append(_completions(tmp_path / name, "arithmetic"))
    Scorer.close(scorer)
    # per-sample seeds (base + p * n + j) make results independent of the chunking
    assert outs[0] == outs[1]
    assert len({c for _, _, c in outs[0]}) > 1  # sampled, not a constant output
