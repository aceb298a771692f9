"""CLI settings: recipe YAML + dotted overrides + flags, suite=file syntax, per-suite defaults,
close-match errors, --print-recipe, hub fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eval.cli import build_parser, load_settings
from eval.suites import get_suite, load_examples


def _settings(argv: list[str]) -> Any:
    # parsed as ``rlvr eval`` parses (eval.cli.main): positionals may follow flags
    return load_settings(build_parser().parse_intermixed_args(argv))[0]


def test_flags_override_yaml_and_suite_files(tmp_path: Path) -> None:
    cfg = tmp_path / "e.yaml"
    cfg.write_text(
        "model: m\nsuites: [aime24, math500]\nn: 8\ntemperature: 0.7\nmax-tokens: 100\n"
        "system_prompt: be brief\nsuite_overrides: {math500: {n: 2}}\n"
    )
    s = _settings(["--config", str(cfg), "--n", "4", "--suites", "aime24=/x/a.jsonl,ifeval"])
    assert s.model == "m" and s.n == 4 and s.temperature == 0.7 and s.max_tokens == 100
    assert s.suites == ["aime24", "ifeval"] and s.data_files == {"aime24": "/x/a.jsonl"}
    assert s.system_prompt == "be brief" and s.engine == "vllm" and s.seed == 0
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
    with pytest.raises(
        ValueError,
        match=r"e\.yaml: invalid recipe\n  unknown key 'temprature' \(did you mean 'temperature'\?\)",
    ):
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


def test_recipe_positional_overrides_and_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "e.yaml"
    cfg.write_text("model: m\nsuites: aime24=/x/a.jsonl,math500\nn: 8\nseed: 1\n")
    s = _settings([str(cfg), "n=3", "suite_overrides.math500.n=2", "top_p=0.9", "--seed", "5"])
    assert (s.model, s.n, s.top_p, s.seed) == ("m", 3, 0.9, 5)  # file < overrides < flags
    assert s.suites == ["aime24", "math500"] and s.data_files == {"aime24": "/x/a.jsonl"}
    assert s.sampling_for(get_suite("math500"))["n"] == 2
    # flags win over a dotted override of the same key
    assert _settings([str(cfg), "n=3", "--n", "6"]).n == 6
    # overrides after a flag, as `rlvr eval e.yaml --seed 5 n=3` (intermixed parsing)
    late = _settings([str(cfg), "--seed", "7", "n=3"])
    assert (late.n, late.seed) == (3, 7)
    # --config is the same file; two files are refused
    assert _settings(["--config", str(cfg)]).n == 8
    with pytest.raises(ValueError, match="one recipe file at most"):
        _settings(["--config", str(cfg), str(cfg)])
    # no file: overrides alone; soft thinking implies the hf engine unless one is given
    s = _settings(["model=m", "soft_thinking=true"])
    assert s.engine == "hf" and s.soft_thinking is True
    assert _settings(["model=m", "soft_thinking=true", "engine=vllm"]).engine == "vllm"


def test_unknown_keys_and_types_are_named(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"command line: invalid recipe\n  unknown key 'max_token' \(did you mean 'max_tokens'\?\)",
    ):
        _settings(["--model", "m", "max_token=10"])
    with pytest.raises(ValueError, match=r"'n': Input should be greater than or equal to 1"):
        _settings(["--model", "m", "--n", "0"])
    with pytest.raises(ValueError, match=r"'engine': Input should be 'vllm' or 'hf'"):
        _settings(["--model", "m", "engine=vlm"])
    with pytest.raises(
        ValueError,
        match=r"suite_overrides\.aime24: unknown key 'temp' \(did you mean 'temperature'",
    ):
        _settings(["--model", "m", "suite_overrides.aime24.temp=0.5"])
    cfg = tmp_path / "e.yaml"
    cfg.write_text("model: m\nsuites: []\n")
    with pytest.raises(ValueError, match=r"e\.yaml: invalid recipe\n  'suites': .*no suites given"):
        _settings([str(cfg)])


def test_print_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from eval.cli import main
    from eval.runner import EvalSettings

    cfg = tmp_path / "e.yaml"
    cfg.write_text("model: m\nmax-tokens: 100\n")
    assert main([str(cfg), "--suites", "ifeval", "limit=3", "--print-recipe"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == "m" and printed["max_tokens"] == 100 and printed["limit"] == 3
    assert printed["suites"] == ["ifeval"] and printed["engine"] == "vllm"
    # the printed recipe is a recipe: loading it gives the same settings
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(printed))
    assert _settings([str(again)]) == EvalSettings(**printed)
    assert main(["--model", "m", "temprature=1", "--print-recipe"]) == 2
    assert "did you mean 'temperature'" in capsys.readouterr().err


def test_recipe_section_is_the_settings() -> None:
    """The runner takes the eval section itself: keys and defaults are defined once."""
    from eval.config import EvalRecipe
    from eval.runner import EvalSettings

    assert EvalSettings is EvalRecipe
    assert _settings(["--model", "m"]) == EvalRecipe(model="m")
    # the checks of the section apply to settings built in Python too
    with pytest.raises(ValueError, match="no suites given"):
        EvalSettings(model="m", suites=[])


def test_backend_is_the_old_name_of_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``backend:`` in an eval recipe and ``--backend`` are read as ``engine`` / ``--engine``,
    with one deprecation warning each; disagreeing spellings are refused."""
    import logging

    import eval.cli
    import rlvr.config

    monkeypatch.setattr(rlvr.config, "_warned_renames", set())
    monkeypatch.setattr(eval.cli, "_warned", set())
    cfg = tmp_path / "e.yaml"
    cfg.write_text("model: m\nbackend: hf\n")
    with caplog.at_level(logging.WARNING, logger="rlvr"):
        assert _settings([str(cfg)]).engine == "hf"
        assert _settings([str(cfg)]).engine == "hf"
    warned = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert warned == [f"{cfg}: 'backend' is deprecated, write 'engine' (same values)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rlvr"):
        # the flag wins over the file's engine, as every flag does
        assert _settings([str(cfg), "--backend", "vllm"]).engine == "vllm"
    assert "--backend is deprecated: use --engine" in caplog.text
    with pytest.raises(ValueError, match="set engine once"):
        _settings(["--model", "m", "backend=hf", "engine=vllm"])
    with pytest.raises(ValueError, match="--engine vllm and --backend hf disagree"):
        _settings(["--model", "m", "--engine", "vllm", "--backend", "hf"])
    # Python callers: the section's own validator maps the old key
    from eval.config import EvalRecipe

    assert EvalRecipe(model="m", backend="hf").engine == "hf"
    # --engine is documented, --backend is not
    text = build_parser().format_help()
    assert "--engine" in text and "--backend" not in text
