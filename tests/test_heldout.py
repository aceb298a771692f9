"""The one held-out evaluation (rlvr/heldout.py), used by the trainer's sampler and the stages;
and the one engine builder from a model section (``rlvr.rollout.model_engine``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlvr.rollout import SamplingParams
from rlvr.rollout.base import Completion


class ScriptedEngine:
    """Answers problem i with ``answers[i]`` when greedy and ``samples[i][j]`` when sampling;
    records the sampling params and whether a gate was attached during each call."""

    def __init__(self, tokenizer: Any, greedy: list[str], samples: list[list[str]]) -> None:
        self.tokenizer = tokenizer
        self.greedy, self.samples = greedy, samples
        self.calls: list[tuple[SamplingParams, Any]] = []
        self.prompts: list[list[list[int]]] = []
        self.abstention: Any = None

    def generate(self, prompt_ids: list[list[int]], sp: SamplingParams) -> list[list[Completion]]:
        self.calls.append((sp, self.abstention))
        self.prompts.append(prompt_ids)
        texts = [[g] for g in self.greedy] if sp.temperature == 0 else self.samples
        assert len(texts) == len(prompt_ids)
        return [[Completion([1], [0.0], "stop", text=t) for t in group[: sp.n]] for group in texts]

    def close(self) -> None:
        pass


EXAMPLES = [{"prompt": "1+1", "answer": "2"}, {"prompt": "2+2", "answer": "4"}]


def _by_text(examples: list[dict], groups: list[list[Completion]]) -> Any:
    correct = [[c.text == ex["answer"] for c in g] for ex, g in zip(examples, groups, strict=True)]
    return correct, [[c.text.isdigit() for c in g] for g in groups]


def test_greedy_pass1_and_well_formed() -> None:
    from rlvr.heldout import heldout_accuracy

    engine = ScriptedEngine(None, ["2", "5"], [["2", "x", "2", "3"], ["4", "4", "4", "4"]])
    out = heldout_accuracy(
        engine,
        EXAMPLES,
        [[1], [2]],
        _by_text,
        greedy=SamplingParams(temperature=0.0, max_tokens=4),
        sampled=SamplingParams(n=4, temperature=1.0, max_tokens=4, seed=7),
    )
    # greedy: 1 of 2; pass@1: mean(2/4, 4/4); well-formed: mean(3/4, 4/4)
    assert out == {"eval/greedy": 0.5, "eval/pass@1": 0.75, "eval/well_formed": 0.875}
    assert [sp.temperature for sp, _ in engine.calls] == [0.0, 1.0]


def test_gate_is_off_while_evaluating_and_restored() -> None:
    from rlvr.heldout import heldout_accuracy

    engine = ScriptedEngine(None, ["2", "4"], [["2"], ["4"]])
    gate = object()
    engine.abstention = gate
    out = heldout_accuracy(
        engine,
        EXAMPLES,
        [[1], [2]],
        lambda exs, groups: (_by_text(exs, groups)[0], None),
        greedy=SamplingParams(temperature=0.0),
        sampled=SamplingParams(n=1, temperature=1.0),
    )
    assert out == {"eval/greedy": 1.0, "eval/pass@1": 1.0}  # no well_formed without a scorer
    assert [g for _, g in engine.calls] == [None, None] and engine.abstention is gate


def test_unscorable_or_empty_gives_nothing() -> None:
    from rlvr.heldout import heldout_accuracy

    engine = ScriptedEngine(None, ["2", "4"], [["2"], ["4"]])
    kw = {"greedy": SamplingParams(temperature=0.0), "sampled": SamplingParams(temperature=1.0)}
    assert heldout_accuracy(engine, EXAMPLES, [[1], [2]], lambda e, g: None, **kw) == {}
    assert len(engine.calls) == 1  # stops after the greedy round, as the trainer did
    assert heldout_accuracy(engine, [], [], _by_text, **kw) == {}
    with pytest.raises(ValueError, match="1 prompts for 2 held-out examples"):
        heldout_accuracy(engine, EXAMPLES, [[1]], _by_text, **kw)


def test_stage_heldout_eval_uses_the_shared_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stages' eval: math verifier on the boxed answer, format reward for well-formed,
    prompts as training builds them, the engine from the recipe's model section."""
    from rlvr.config import DataConfig, ModelConfig
    from rlvr.data.prompts import PromptFormatter
    from rlvr.data.tiny import build_tokenizer
    from rlvr.stages import common

    tok = build_tokenizer()
    good = "<think>a</think> \\boxed{2}"
    engine = ScriptedEngine(tok, ["\\boxed{2}", "\\boxed{5}"], [[good, "3"], [good, "\\boxed{4}"]])
    seen: dict[str, Any] = {}

    def fake_model_engine(model: Any, engine_name: str, *, path: Any = None, **kw: Any) -> Any:
        seen.update(model=model, engine=engine_name, path=path, **kw)
        return engine

    monkeypatch.setattr("rlvr.rollout.model_engine", fake_model_engine)
    data = DataConfig(prompt_template="Q {prompt}", max_prompt_tokens=20)
    cfg = common.StageEval(samples=2, max_new_tokens=5, engine="hf")
    model = ModelConfig(path="base", dtype="bfloat16", trust_remote_code=True, revision="r1")
    out = common.heldout_eval("trained", EXAMPLES, data, cfg, seed=3, model=model)
    # greedy: 1/2; pass@1: mean(1/2, 1/2) (problem 2's answer is 4: its "\\boxed{4}" is
    # right, ``good`` is not); well-formed: the <think>...</think> samples only
    assert out["eval/greedy"] == 0.5 and out["eval/pass@1"] == 0.5
    assert out["eval/well_formed"] == 0.5
    assert seen["model"] is model and seen["path"] == "trained" and seen["engine"] == "hf"
    want = PromptFormatter.from_data(tok, data)
    assert engine.prompts[0] == [want.token_ids(ex) for ex in EXAMPLES]
    sent_sp = [sp for sp, _ in engine.calls]
    assert sent_sp[1].n == 2 and sent_sp[1].seed == 3 + 104729 and sent_sp[0].temperature == 0


def test_model_engine_passes_revision_for_the_model_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import rlvr.rollout as rollout
    from rlvr.config import ModelConfig

    calls: list[tuple[str, str, dict]] = []
    monkeypatch.setattr(rollout, "build_engine", lambda b, p, **kw: calls.append((b, p, kw)))
    m = ModelConfig(path="org/model", dtype="bfloat16", trust_remote_code=True, revision="abc")
    rollout.model_engine(m, "vllm", seed=1)
    rollout.model_engine(m, "hf", path="runs/x/checkpoint", dtype="float32")
    (b0, p0, kw0), (b1, p1, kw1) = calls
    assert (b0, p0) == ("vllm", "org/model") and kw0["revision"] == "abc"
    assert kw0["dtype"] == "bfloat16" and kw0["trust_remote_code"] and kw0["seed"] == 1
    assert p1 == "runs/x/checkpoint" and kw1["revision"] is None and kw1["dtype"] == "float32"


def test_trainer_engine_gets_the_revision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """rlvr/run.py ``rollout_engine`` builds through ``model_engine``: ``model.revision``
    reaches the engine (it used to be dropped)."""
    import rlvr.rollout as rollout
    from rlvr.config import load_recipe
    from rlvr.run import rollout_engine

    calls: list[dict] = []
    monkeypatch.setattr(rollout, "build_engine", lambda b, p, **kw: calls.append({"p": p, **kw}))
    recipe = load_recipe(
        Path(__file__).resolve().parents[1] / "recipes" / "grpo_arithmetic_cpu.yaml",
        ["model.path=org/model", "model.revision=abc", "rollout.dtype=bfloat16"],
    )
    rollout_engine(recipe, None, None, "org/model", False)
    assert calls[0]["p"] == "org/model" and calls[0]["revision"] == "abc"
    rollout_engine(recipe, None, None, str(tmp_path / "checkpoint"), False)  # a resumed run
    assert calls[1]["revision"] is None


def test_trainer_evaluate_matches_the_old_formula(
    tiny_model_dir: Path, tmp_path: Path, fixtures_dir: Path
) -> None:
    """``Trainer.evaluate`` (sampler -> rlvr/heldout.py) on the tiny model gives what the
    sampler's own copy computed: flat mean of (accuracy component > 0.5) per round, with the
    same sampling params (seeded, so the HF engine regenerates the same completions)."""
    import torch

    from rlvr.config import Recipe
    from rlvr.trainer import Trainer

    fixtures = fixtures_dir
    recipe = Recipe.model_validate(
        {
            "name": "heldout",
            "output_dir": str(tmp_path),
            "seed": 5,
            "model": {"path": str(tiny_model_dir)},
            "data": {"arithmetic": {"digits": 1, "num_train": 16, "num_eval": 6}},
            "rollout": {"engine": "hf", "group_size": 2, "max_new_tokens": 6},
            "rewards": [{"name": f"{fixtures / 'rewards_fixture.py'}:odd_length", "key": "odd"}],
            "reward_runner": {"num_workers": 1, "accuracy_key": "odd"},
            "eval": {"num_problems": 4, "samples": 3, "max_new_tokens": 6},
            "logging": {"tensorboard": False, "plots": False, "progress": False},
        }
    )
    trainer = Trainer(recipe, progress=False)
    try:
        got = trainer.evaluate("before")
        s, e = trainer.sampler, recipe.eval
        examples = s.eval_examples[: e.num_problems]
        ids = [s.formatter.token_ids(ex) for ex in examples]
        want = {}
        for name, n, temp in (("greedy", 1, 0.0), ("pass@1", e.samples, e.temperature)):
            sp = s.sampling(
                0, n=n, temperature=temp, max_tokens=e.max_new_tokens, seed_offset=104729
            )
            groups = s.engine.generate(ids, sp)
            assert all(len(g) == n for g in groups)
            comp = s.score(examples, groups).components[recipe.reward_runner.accuracy_key]
            want[f"eval/{name}"] = float((torch.tensor(comp) > 0.5).float().mean())
    finally:
        trainer.close()
    assert set(got) == {"eval/greedy", "eval/pass@1"}
    assert got == pytest.approx(want, abs=1e-6)
    assert 0 < got["eval/pass@1"] < 1  # a reward that varies: the comparison can fail


def test_sampler_evaluate_generates_nothing_without_an_accuracy_key() -> None:
    """``reward_runner.accuracy_key: null``: no pass could be scored, so ``Sampler.evaluate``
    returns ``{}`` before generating (it used to run the greedy pass first); with a key that the
    rewards do not produce, only the greedy pass runs (the sampled one is skipped)."""
    from types import SimpleNamespace

    from rlvr.config import EvalConfig, RewardRunnerConfig
    from rlvr.sampler import Sampler

    engine = ScriptedEngine(None, ["2", "5"], [["2", "2"], ["4", "1"]])

    def fake(key: str | None) -> Any:
        recipe = SimpleNamespace(
            eval=EvalConfig(num_problems=2, samples=2),
            reward_runner=RewardRunnerConfig(accuracy_key=key),
        )
        return SimpleNamespace(
            recipe=recipe,
            eval_examples=EXAMPLES,
            engine=engine,
            formatter=SimpleNamespace(token_ids=lambda ex: [1, 2]),
            sampling=lambda step, **kw: SamplingParams(
                n=kw["n"], temperature=kw["temperature"], max_tokens=kw["max_tokens"]
            ),
            score=lambda exs, groups: SimpleNamespace(components={"math": [[1.0] for _ in exs]}),
        )

    assert Sampler.evaluate(fake(None), "before") == {}
    assert engine.calls == []
    assert Sampler.evaluate(fake("other"), "before") == {}
    assert [sp.temperature for sp, _ in engine.calls] == [0.0]
