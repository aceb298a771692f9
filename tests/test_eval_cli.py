"""CLI settings: YAML + flags merge, suite=file syntax, per-suite defaults, hub fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eval.cli import build_parser, load_settings
from eval.suites import get_suite, load_examples


def _settings(argv: list[str]) -> Any:
    return load_settings(build_parser().parse_args(argv))[0]


def test_flags_override_yaml_and_suite_files(tmp_path: Path) -> None:
    cfg = tmp_path / "e.yaml"
    cfg.write_text(
        "model: m\nsuites: [aime24, math500]\nn: 8\ntemperature: 0.7\nmax-tokens: 100\n"
        "system_prompt: be brief\nsuite_overrides: {math500: {n: 2}}\n"
    )
    s = _settings(["--config", str(cfg), "--n", "4", "--suites", "aime24=/x/a.jsonl,ifeval"])
    assert s.model == "m" and s.n == 4 and s.temperature == 0.7 and s.max_tokens == 100
    assert s.suites == ["aime24", "ifeval"] and s.data_files == {"aime24": "/x/a.jsonl"}
    assert s.system_prompt == "be brief" and s.backend == "vllm" and s.seed == 0
    aime = s.sampling_for(get_suite("aime24"))
    assert (aime["n"], aime["temperature"], aime["top_p"], aime["max_tokens"]) == (
        4,
        0.7,
        0.95,
        100,
    )
    # math500 override wins over the global n
    assert s.sampling_for(get_suite("math500"))["n"] == 2


def test_suite_defaults_when_unset() -> None:
    s = _settings(["--model", "m", "--no-chat-template"])
    assert s.chat_template is False and s.suites == ["aime24", "aime25", "math500"]
    aime = s.sampling_for(get_suite("aime25"))
    assert (aime["n"], aime["temperature"], aime["top_p"], aime["max_tokens"]) == (
        16,
        0.6,
        0.95,
        32768,
    )
    assert s.sampling_for(get_suite("math500"))["n"] == 4
    ife = s.sampling_for(get_suite("ifeval"))
    assert (ife["n"], ife["temperature"]) == (1, 0.0)


def test_bad_config_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "e.yaml"
    cfg.write_text("model: m\ntemprature: 0.6\n")
    with pytest.raises(ValueError, match=r"e\.yaml: unknown setting 'temprature'"):
        _settings(["--config", str(cfg)])
    with pytest.raises(ValueError, match="--model is required"):
        _settings([])


def test_hub_fallback_when_no_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load(name: str, config: Any = None, split: str = "train") -> list[dict]:
        calls.append((name, split))
        return [{"id": 60, "problem": "p", "answer": "033"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    examples, source = load_examples(get_suite("aime24"), "hub")
    assert calls == [("HuggingFaceH4/aime_2024", "train")]
    assert examples == [{"id": "60", "problem": "p", "answer": "33"}]
    assert source.path == "hf://HuggingFaceH4/aime_2024[train]"
    # a data directory without the file is an error naming it, never a silent download
    from eval.suites import DataError

    with pytest.raises(DataError, match=r"aime24.*--data-dir hub"):
        load_examples(get_suite("aime24"), tmp_path)
    assert len(calls) == 1


def test_chat_template_kwargs_flag() -> None:
    s = _settings(["--model", "m", "--chat-template-kwargs", '{"enable_thinking": false}'])
    assert s.chat_template_kwargs == {"enable_thinking": False}
    with pytest.raises(SystemExit):
        _settings(["--model", "m", "--chat-template-kwargs", "[1]"])
