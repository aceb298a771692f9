"""InT: substep split, intervention parsing, prefix construction, filtering, counterfactual
check with a stub engine, and a run on the bundled quickstart model."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoModelForCausalLM

from rlvr.rollout import Completion, RolloutEngine, SamplingParams
from rlvr.stages.intervention import (
    Intervention,
    build_intervention_rows,
    guided_attempt,
    leaks_answer,
    parse_intervention,
    run_int,
    self_correct_prompt,
    split_substeps,
)

TRACE = "Let x = 3.\n\nThen 2x = 5.\n\n\n\nSo the answer is \\boxed{5}."
MODEL = Path(__file__).resolve().parents[1] / "models" / "quickstart"


def test_split_and_prompt_numbering() -> None:
    steps = split_substeps(TRACE)
    assert steps == ["Let x = 3.", "Then 2x = 5.", "So the answer is \\boxed{5}."]
    prompt = self_correct_prompt("6", steps)
    assert "**Substep 2:** Then 2x = 5." in prompt and "<intervention>" in prompt
    assert 'does it contain "6"?' in prompt  # the self-check names the gold answer


def test_parse_takes_the_last_block_and_repairs() -> None:
    text = (
        'draft <intervention>{"content": "old", "location": 1}</intervention> then final '
        '<intervention>{"content": "Then 2x = 6, since\n2*3 = 6.", "location": "2"}</intervention>'
    )
    assert parse_intervention(text, 3) == Intervention("Then 2x = 6, since\n2*3 = 6.", 2)
    assert parse_intervention("no block", 3) is None
    substep = '<intervention>{"content": "c", "location": "Substep 3"}</intervention>'
    assert parse_intervention(substep, 3) == Intervention("c", 3)
    assert (
        parse_intervention('<intervention>{"content": "x", "location": 9}</intervention>', 3)
        is None
    )
    assert (
        parse_intervention('<intervention>{"content": "", "location": 1}</intervention>', 3) is None
    )


def test_guided_prefix_and_leakage() -> None:
    steps = split_substeps(TRACE)
    assert guided_attempt(steps, Intervention("Then 2x = 6.", 2)) == "Let x = 3.\n\nThen 2x = 6."
    assert guided_attempt(steps, Intervention("Start over.", 1)) == "Start over."
    assert leaks_answer("so it is 6", "6") and not leaks_answer("double it", "6")


class StubEngine(RolloutEngine):
    """Continues every prompt with fixed texts (records the prompts it saw)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts, self.seen = texts, []

    def generate(self, prompt_token_ids, sampling: SamplingParams):
        self.seen.extend(prompt_token_ids)
        return [
            [Completion([1], [0.0], "stop", t) for t in self.texts[: sampling.n]]
            for _ in prompt_token_ids
        ]

    def update_weights(self, named_tensors) -> None:
        raise NotImplementedError


class CharTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return (
            "".join(("U:" if m["role"] == "user" else "A:") + m["content"] + "\n" for m in messages)
            + "A:"
        )

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_build_rows_filters_and_checks() -> None:
    rows = [
        {"prompt": "2*3?", "answer": "6", "incorrect_attempt": TRACE, "reference_solution": "r"},
        {"prompt": "leak", "answer": "6", "incorrect_attempt": TRACE, "reference_solution": "r"},
        {"prompt": "none", "answer": "6", "incorrect_attempt": TRACE, "reference_solution": "r"},
    ]
    proposals = {
        "2*3?": ['<intervention>{"content": "Then 2x = 2*3.", "location": 2}</intervention>'],
        "leak": ['<intervention>{"content": "It is 6.", "location": 2}</intervention>'],
        "none": ["I cannot find an error."],
    }
    engine = StubEngine([" So \\boxed{6}.", " So \\boxed{7}."])
    kept, counts = build_intervention_rows(
        rows, lambda row, steps: proposals[row["prompt"]], engine, CharTokenizer(), k_check=2
    )
    assert kept == [{"prompt": "2*3?", "completion": "Let x = 3.\n\nThen 2x = 2*3.", "answer": "6"}]
    assert counts == {
        "attempts": 3,
        "no_intervention": 1,
        "leaked": 1,
        "failed_check": 0,
        "kept": 1,
        "leaked_proposals": 1,
    }
    # the check continued the guided attempt as the assistant's own partial answer
    assert "".join(map(chr, engine.seen[0])).endswith("A:Let x = 3.\n\nThen 2x = 2*3.")
    failing = StubEngine([" So \\boxed{7}."])
    kept, counts = build_intervention_rows(
        rows[:1], lambda row, steps: proposals[row["prompt"]], failing, CharTokenizer(), k_check=1
    )
    assert kept == [] and counts["failed_check"] == 1


def test_run_int_on_the_quickstart_model(tmp_path: Path) -> None:
    """Wrong arithmetic answers; the intervention restates the worked digits; the model's own
    continuation must then verify before the row is trained on."""
    rows = [
        {
            "prompt": p,
            "answer": a,
            "reference_solution": "add the columns",
            "incorrect_attempt": f"<think>{a[::-1]}</think>\n\n\\boxed{{{int(a) + 1}}}",
        }
        for p, a in [("12+34=", "46"), ("21+13=", "34"), ("40+25=", "65")]
    ]

    def propose(row: dict, substeps: list[str]) -> list[str]:
        content = substeps[0]  # restate the (correct) reversed digits before the bad box
        block = json.dumps({"content": content, "location": 1})
        return [f"<intervention>{block}</intervention>"]

    report = run_int(
        MODEL,
        rows,
        tmp_path / "int",
        propose=propose,
        k_check=4,
        check_tokens=16,
        lr=1e-4,
        steps=2,
        batch_size=2,
    )
    assert report["counts"]["attempts"] == 3
    assert report["counts"]["kept"] >= 1  # the model completes at least one guided attempt
    tuned = AutoModelForCausalLM.from_pretrained(report["model_dir"])
    assert tuned.config.model_type == "qwen2"


def test_model_proposer_prompt_and_sampling() -> None:
    """The policy is shown the problem, the reference and the numbered substeps, and samples
    K proposals with the public code's settings (T 0.7, top-p 0.8, top-k 20)."""
    from rlvr.stages.intervention import model_proposer

    class Recorder:
        def __init__(self) -> None:
            self.prompts, self.params = [], []

        def generate(self, prompt_token_ids, sampling: SamplingParams):
            self.prompts.extend(prompt_token_ids)
            self.params.append(sampling)
            block = '<intervention>{"content": "Then 2x = 6.", "location": 2}</intervention>'
            return [[Completion([1], [0.0], "stop", block)] * sampling.n for _ in prompt_token_ids]

    engine = Recorder()
    propose = model_proposer(engine, CharTokenizer(), k=3, max_tokens=99, seed=5)
    row = {"prompt": "Solve 2x for x = 3.", "reference_solution": "Double 3.", "answer": "6"}
    texts = propose(row, split_substeps(TRACE))
    assert len(texts) == 3 and parse_intervention(texts[0], 3) == Intervention("Then 2x = 6.", 2)
    shown = "".join(map(chr, engine.prompts[0]))
    assert "Solve 2x for x = 3." in shown and "Double 3." in shown
    assert "**Substep 2:** Then 2x = 5." in shown and shown.endswith("\nA:")
    # turn 1 (solve with the reference), the attempt as the answer, turn 2 with the gold answer
    assert shown.index("Double 3.") < shown.index("A:Let x = 3.") < shown.index("answer is 6")
    sp = engine.params[0]
    assert (sp.n, sp.temperature, sp.top_p, sp.top_k, sp.max_tokens, sp.seed) == (
        3,
        0.7,
        0.8,
        20,
        99,
        5,
    )


def test_counterfactual_grades_the_continuation_alone() -> None:
    """A gold answer already in the prefix must not keep an intervention whose continuations
    never reach it (the source grades the generated text only)."""
    from rlvr.stages.intervention import counterfactual_passes

    class Fixed:
        def generate(self, prompt_token_ids, sampling: SamplingParams):
            texts = ["and so on.", "so \\boxed{6}", "\\boxed{7}"]
            return [[Completion([1], [0.0], "stop", t) for t in texts]]

    guided = "We get \\boxed{6} early.\n\nThen"
    args = (Fixed(), CharTokenizer(), "2*3?", guided, "6")
    assert counterfactual_passes(*args, k=3) == 1  # only "so \boxed{6}"
    # graded with the prefix, "and so on." inherits the prefix's \boxed{6}: 2 passes
    assert counterfactual_passes(*args, k=3, grade_prefix=True) == 2
