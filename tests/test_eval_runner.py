"""Runner with a scripted engine: outputs, metrics end to end, resume, settings guard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eval.runner import EvalSettings, ResumeError, read_samples, run_eval
from eval.scoring import Scorer
from rlvr.rollout import Completion, SamplingParams


class ScriptedEngine:
    """Answers "a+b=" prompts: even samples right (\\boxed{a+b}), odd ones off by one."""

    def __init__(self, tokenizer: Any, fail_after: int | None = None) -> None:
        self.tok = tokenizer
        self.calls: list[tuple[int, SamplingParams]] = []
        self.fail_after = fail_after

    def generate(self, prompt_ids: list[list[int]], sp: SamplingParams) -> list[list[Completion]]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls.append((len(prompt_ids), sp))
        out = []
        for ids in prompt_ids:
            a, b = map(int, re.search(r"(\d+)\+(\d+)=", self.tok.decode(ids)).groups())
            group = []
            for j in range(sp.n):
                value = a + b if j % 2 == 0 else a + b + 1
                text = f"<think>add</think>\\boxed{{{value}}}"
                toks = self.tok(text, add_special_tokens=False)["input_ids"]
                group.append(
                    Completion(toks + [self.tok.eos_token_id], [0.0] * (len(toks) + 1), "stop")
                )
            out.append(group)
        return out

    def close(self) -> None:
        pass


class _SharedScorer(Scorer):
    def close(self) -> None:  # kept open across runs of one test module
        pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlvr.data.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), num_layers=1)


@pytest.fixture(scope="module")
def tokenizer(tiny: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


@pytest.fixture(scope="module")
def scorer() -> Iterator[Scorer]:
    s = _SharedScorer(EvalSettings(model="x"))
    yield s
    Scorer.close(s)


def _settings(tiny: Path, out: Path, **kw: Any) -> EvalSettings:
    base = dict(
        model=str(tiny),
        suites=["arithmetic"],
        out=str(out),
        engine="hf",
        n=4,
        limit=6,
        max_tokens=16,
        chunk_size=2,
    )
    base.update(kw)
    return EvalSettings(**base)


def _run(settings: EvalSettings, engine: Any, tokenizer: Any, scorer: Scorer) -> dict[str, Any]:
    return run_eval(
        settings,
        engine=engine,
        tokenizer=tokenizer,
        scorer_factory=lambda s: scorer,
        progress=False,
        log=lambda m: None,
    )


def test_outputs_and_metrics(tiny: Path, tokenizer: Any, scorer: Scorer, tmp_path: Path) -> None:
    engine = ScriptedEngine(tokenizer)
    summary = _run(_settings(tiny, tmp_path), engine, tokenizer, scorer)
    m = summary["suites"]["arithmetic"]["metrics"]
    # every problem: samples 0,2 right, 1,3 wrong -> c = 2 of n = 4
    assert m["avg@n"] == pytest.approx(0.5)
    assert m["pass@1"] == pytest.approx(0.5)
    assert m["pass@2"] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert m["pass@4"] == pytest.approx(1.0)
    # votes tie 2:2 between the right and the wrong answer; the first seen (right) wins
    assert m["maj@4"] == pytest.approx(1.0) and m["maj@2"] == pytest.approx(1.0)
    assert m["no_answer_rate"] == 0 and m["truncation_rate"] == 0
    rows = read_samples(tmp_path / "samples" / "arithmetic.jsonl")
    assert len(rows) == 24
    r0 = rows[0]
    assert {
        "suite",
        "id",
        "sample",
        "prompt",
        "completion",
        "extracted",
        "score",
        "num_tokens",
        "finish_reason",
        "answer",
    } <= set(r0)
    assert r0["prompt"].startswith("<|im_start|>user\n") and r0["prompt"].endswith(
        "<|im_start|>assistant\n"
    )
    assert r0["completion"].startswith("<think>add</think>")
    assert r0["extracted"] == r0["answer"] and r0["score"] == 1.0
    # generate calls: 6 problems in chunks of 2, seeds base + p * n
    assert [c[0] for c in engine.calls] == [2, 2, 2]
    seeds = [c[1].seed for c in engine.calls]
    assert seeds[1] - seeds[0] == 2 * 4 and seeds[2] - seeds[1] == 2 * 4
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["suites"]["arithmetic"]["settings"]["temperature"] == 0.6  # suite default
    assert saved["suites"]["arithmetic"]["data"]["num_evaluated"] == 6
    assert "| arithmetic | 6 | 4 |" in (tmp_path / "results.md").read_text()


def test_resume_skips_finished_samples(
    tiny: Path, tokenizer: Any, scorer: Scorer, tmp_path: Path
) -> None:
    settings = _settings(tiny, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _run(settings, ScriptedEngine(tokenizer, fail_after=2), tokenizer, scorer)
    path = tmp_path / "samples" / "arithmetic.jsonl"
    assert len(read_samples(path)) == 16  # two chunks of 2 problems x 4 samples saved
    engine = ScriptedEngine(tokenizer)
    summary = _run(settings, engine, tokenizer, scorer)
    assert [c[0] for c in engine.calls] == [2]  # only the last chunk was generated
    assert summary["suites"]["arithmetic"]["metrics"]["num_samples"] == 24
    # a finished run generates nothing
    idle = ScriptedEngine(tokenizer, fail_after=0)
    again = _run(settings, idle, tokenizer, scorer)
    assert again["suites"]["arithmetic"]["metrics"]["avg@n"] == pytest.approx(0.5)
    # more samples per problem: only the missing indices 4..7 are generated
    more = ScriptedEngine(tokenizer)
    summary = _run(_settings(tiny, tmp_path, n=8), more, tokenizer, scorer)
    assert {c[1].n for c in more.calls} == {4}
    rows = read_samples(path)
    assert sorted({r["sample"] for r in rows}) == list(range(8)) and len(rows) == 48
    assert summary["suites"]["arithmetic"]["metrics"]["n"] == 8


def test_resume_reads_run_json_written_with_backend(
    tiny: Path, tokenizer: Any, scorer: Scorer, tmp_path: Path
) -> None:
    """A run directory from before the rename (``backend`` in run.json) resumes; a run there
    with another engine is still refused."""
    import json

    settings = _settings(tiny, tmp_path, limit=2)
    _run(settings, ScriptedEngine(tokenizer), tokenizer, scorer)
    run = tmp_path / "run.json"
    ident = json.loads(run.read_text())
    ident["backend"] = ident.pop("engine")
    run.write_text(json.dumps(ident))
    idle = ScriptedEngine(tokenizer, fail_after=0)
    summary = _run(settings, idle, tokenizer, scorer)
    assert summary["engine"] == "hf" and summary["suites"]["arithmetic"]["metrics"]["n"] == 4
    assert json.loads(run.read_text())["engine"] == "hf" and "backend" not in run.read_text()
    ident = json.loads(run.read_text())
    ident["backend"] = ident.pop("engine").replace("hf", "vllm")
    run.write_text(json.dumps(ident))
    with pytest.raises(ResumeError, match="engine: 'vllm' -> 'hf'"):
        _run(settings, ScriptedEngine(tokenizer), tokenizer, scorer)


def test_torn_last_line_is_dropped(
    tiny: Path, tokenizer: Any, scorer: Scorer, tmp_path: Path
) -> None:
    settings = _settings(tiny, tmp_path, limit=2)
    _run(settings, ScriptedEngine(tokenizer), tokenizer, scorer)
    path = tmp_path / "samples" / "arithmetic.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:20])  # killed mid-write
    engine = ScriptedEngine(tokenizer)
    summary = _run(settings, engine, tokenizer, scorer)
    assert engine.calls and engine.calls[0][1].n == 1  # regenerated the one lost sample
    assert summary["suites"]["arithmetic"]["metrics"]["num_samples"] == 8


def test_changed_settings_refuse_to_resume(
    tiny: Path, tokenizer: Any, scorer: Scorer, tmp_path: Path
) -> None:
    _run(_settings(tiny, tmp_path, limit=2), ScriptedEngine(tokenizer), tokenizer, scorer)
    with pytest.raises(ResumeError, match="temperature"):
        _run(
            _settings(tiny, tmp_path, limit=2, temperature=1.0),
            ScriptedEngine(tokenizer),
            tokenizer,
            scorer,
        )
    engine = ScriptedEngine(tokenizer)
    _run(
        _settings(tiny, tmp_path, limit=2, temperature=1.0, overwrite=True),
        engine,
        tokenizer,
        scorer,
    )
    assert sum(c[0] * c[1].n for c in engine.calls) == 8


def test_settings_validation(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="temperature 0 are identical"):
        _settings(tiny, tmp_path, temperature=0.0).sampling_for(
            __import__("eval.suites", fromlist=["get_suite"]).get_suite("aime24")
        )


def test_if_suite_scoring(tiny: Path, tokenizer: Any, scorer: Scorer, tmp_path: Path) -> None:
    """IF rows carry strict/loose verdicts; a lowercase response passes english_lowercase."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [
        {
            "key": 1,
            "prompt": "Answer in lowercase only.",
            "instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"],
            "kwargs": [{}, {}],
        },
        {
            "key": 2,
            "prompt": "No commas please.",
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": [{}],
        },
    ]
    (data / "ifeval_input.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    class Fixed:
        def generate(self, ids: list[list[int]], sp: SamplingParams) -> list[list[Completion]]:
            texts = ["Sure, here it is:\nall lowercase here", "<think>x</think>yes, commas"]
            return [
                [Completion(tokenizer(t, add_special_tokens=False)["input_ids"], [], "stop")]
                for t in texts[: len(ids)]
            ]

    summary = _run(
        EvalSettings(
            model=str(tiny),
            suites=["ifeval"],
            out=str(tmp_path / "o"),
            data_dir=str(data),
            engine="hf",
            max_tokens=8,
        ),
        Fixed(),
        tokenizer,
        scorer,
    )
    m = summary["suites"]["ifeval"]["metrics"]
    # response 1: lowercase fails strict (capital S) and passes loose (first line dropped);
    # no_comma fails strict, passes loose. Response 2: comma -> fails both.
    assert m["prompt_level_strict"] == 0.0 and m["inst_level_strict"] == 0.0
    assert m["prompt_level_loose"] == pytest.approx(0.5)
    assert m["inst_level_loose"] == pytest.approx(2 / 3)
    cats = m["breakdown"]["category"]
    assert cats["punctuation"]["num_instructions"] == 2


def test_scoring_text_restores_an_opened_think_block() -> None:
    from eval.runner import scoring_text

    r1_prompt = "<|User|>q<|Assistant|><think>\n"
    assert scoring_text(r1_prompt, "still thinking \\boxed{3}") == (
        "<think>\nstill thinking \\boxed{3}"
    )
    assert scoring_text(r1_prompt, "done</think>\\boxed{3}") == "<think>\ndone</think>\\boxed{3}"
    assert scoring_text("plain prompt", "\\boxed{3}") == "\\boxed{3}"


def test_chat_template_kwargs_reach_the_template(tokenizer: Any) -> None:
    from eval.runner import build_prompt_text

    class Recorder:
        chat_template = "x"

        def apply_chat_template(self, messages: list, **kw: Any) -> str:
            self.kw = kw
            return str(messages)

    rec = Recorder()
    build_prompt_text(rec, "hi", "sys", True, {"enable_thinking": False})
    assert rec.kw == {"tokenize": False, "add_generation_prompt": True, "enable_thinking": False}
    text = build_prompt_text(tokenizer, "hi", "be brief", True)
    assert text == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert build_prompt_text(tokenizer, "hi", "be brief", False) == "be brief\n\nhi"
