"""scripts/bench_eval_throughput.py: the --engines flag and --backends, its deprecated name (no
benchmark is run)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "bench_eval_throughput", ROOT / "scripts" / "bench_eval_throughput.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_eval_throughput"] = mod
    spec.loader.exec_module(mod)
    return mod


def _engines(b, argv: list[str]) -> list[str]:
    p = b.build_parser()
    return b._engine_names(p, p.parse_args(argv))


def test_engines_flag_and_its_deprecated_name(caplog: pytest.LogCaptureFixture) -> None:
    b = _load()
    with caplog.at_level(logging.WARNING, logger="rlvr"):
        assert _engines(b, []) == ["vllm", "hf"]
        assert _engines(b, ["--engines", "hf"]) == ["hf"]
    assert "deprecated" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="rlvr"):
        assert _engines(b, ["--backends", "hf, vllm"]) == ["hf", "vllm"]
        assert _engines(b, ["--engines", "hf", "--backends", "hf"]) == ["hf"]
    assert "--backends is deprecated: use --engines" in caplog.text
    with pytest.raises(SystemExit):
        _engines(b, ["--engines", "hf", "--backends", "vllm"])
    with pytest.raises(SystemExit):
        _engines(b, ["--engines", ","])
    text = b.build_parser().format_help()
    assert "--engines" in text and "--backends" not in text
