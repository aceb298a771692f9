"""`rlvr redi | specs | int` recipes and pipeline stage kinds, on the bundled quickstart model
(2-digit addition, ~35 % greedy: it produces both correct and incorrect answers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rewards.format import format_reward
from rewards.math import math_reward
from rlvr.cli import main
from rlvr.config import RecipeError, load_recipe
from rlvr.data.tiny import build_tokenizer
from rlvr.pipeline import stage_kind
from rlvr.stages.intervention import (
    build_intervention_rows,
    parse_intervention,
    reference_diff_proposer,
    sft_rows_without_eos,
    split_substeps,
)
from rlvr.stages.registry import STAGES

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "quickstart"
SMALL_EVAL = ["eval.num_problems=16", "eval.samples=2", "eval.max_new_tokens=16"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def weights_changed(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return any(not wa[k].equal(wb[k]) for k in wa)


# ------------------------------------------------------------------ InT pieces, by hand


R86 = "<think>68</think>\\boxed{86}"
R70 = "<think>07</think>\\boxed{70}"


@pytest.mark.parametrize(
    ("reference", "attempt", "content"),
    [
        (R86, "<think>58</think>\\boxed{85}", "<think>6"),  # first digit wrong
        (R70, "<think>08</think>\\boxed{80}", "<think>07"),  # second digit wrong
        (R70, "58\\boxed{85}", "<think>"),  # missing tag: the tag is one unit
        (R70, "<think>07</think>\\fbox{70}", "<think>07</think>\\boxed"),  # command: one unit
    ],
)
def test_reference_diff_proposer_one_unit_correction(reference, attempt, content) -> None:
    row = {"reference_solution": reference}
    [proposal] = reference_diff_proposer(row, split_substeps(attempt))
    parsed = parse_intervention(proposal, 1)
    assert parsed is not None and (parsed.content, parsed.location) == (content, 1)


def test_reference_diff_proposer_finds_the_first_wrong_substep() -> None:
    ref = "Let x = 3.\n\nThen 2x = 6.\n\nSo \\boxed{6}."
    attempt = "Let x = 3.\n\nThen 2x = 5.\n\nSo \\boxed{5}."
    [proposal] = reference_diff_proposer({"reference_solution": ref}, split_substeps(attempt))
    parsed = parse_intervention(proposal, 3)
    assert parsed is not None and (parsed.content, parsed.location) == ("Then 2x = 6", 2)
    same = split_substeps(ref)
    assert reference_diff_proposer({"reference_solution": ref}, same) == []


def test_int_sft_rows_have_no_eos_and_train_only_the_guided_prefix() -> None:
    tok = build_tokenizer()
    kept = [{"prompt": "12+34=", "completion": "<think>6", "answer": "46"}]
    [row] = sft_rows_without_eos(tok, kept, max_length=256)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "12+34="}], tokenize=False, add_generation_prompt=True
    )
    assert row["input_ids"] == tok(prompt + "<think>6", add_special_tokens=False)["input_ids"]
    target = [t for t, m in zip(row["input_ids"], row["completion_mask"], strict=True) if m]
    assert target == [tok.convert_tokens_to_ids("<think>"), tok.convert_tokens_to_ids("6")]
    assert tok.eos_token_id not in row["input_ids"][-2:]

    # TRL's SFTTrainer takes these rows as they are: no EOS appended, labels = the mask
    import datasets
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl import SFTConfig, SFTTrainer

    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tok),
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=64,
        )
    )
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir="/tmp/_unused",
            report_to="none",
            use_cpu=True,
            completion_only_loss=True,
            max_length=256,
        ),
        train_dataset=datasets.Dataset.from_list([row]),
        processing_class=tok,
    )
    assert trainer.train_dataset[0]["input_ids"] == row["input_ids"]


def test_reference_diff_rows_through_the_leak_filter() -> None:
    """An intervention that spells the answer is dropped; the engine is never asked."""

    class NoEngine:
        def generate(self, *a, **k):  # pragma: no cover - must not be called
            raise AssertionError("leaked rows must not reach the counterfactual check")

    row = {
        "prompt": "11+11=",
        "answer": "22",
        "reference_solution": "<think>22</think>\\boxed{22}",
        "incorrect_attempt": "<think>21</think>\\boxed{12}",
    }
    kept, counts = build_intervention_rows([row], reference_diff_proposer, NoEngine(), None)
    assert kept == [] and counts["leaked"] == counts["leaked_proposals"] == 1
    assert counts["no_intervention"] == 0


# ------------------------------------------------------------------ recipes and the CLI


def test_every_stage_kind_has_a_schema_and_a_runner() -> None:
    kinds = STAGES.names()
    assert {"train", "sft", "redi", "specs", "int", "abstain-train"} <= set(kinds)
    for kind in kinds:
        schema, runner = stage_kind(kind)
        assert "model" in schema.model_fields and callable(runner)


def test_stage_recipe_errors_name_the_key(tmp_path: Path) -> None:
    from rlvr.stages.redi_recipe import REDIRecipe

    bad = tmp_path / "redi.yaml"
    bad.write_text("model: {path: x}\nredi: {alpah: 0.5}\n")
    with pytest.raises(RecipeError, match=r"redi\.alpah.*redi\.alpha"):
        load_recipe(bad, schema=REDIRecipe)
    with pytest.raises(RecipeError, match=r"redi\.alpha"):
        load_recipe(bad, ["redi={alpha: 1.5}"], schema=REDIRecipe)


def test_stage_backend_is_the_old_name_of_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``backend:`` in a stage section is read as ``engine`` with one deprecation warning per
    section kind; both keys with different values are refused, naming the key."""
    import logging

    import rlvr.config
    from rlvr.stages.redi_recipe import REDIRecipe

    monkeypatch.setattr(rlvr.config, "_warned_renames", set())
    old = tmp_path / "redi.yaml"
    old.write_text("model: {path: x}\neval: {backend: vllm}\n")
    with caplog.at_level(logging.WARNING, logger="rlvr"):
        assert load_recipe(old, schema=REDIRecipe).eval.engine == "vllm"
        assert load_recipe(old, schema=REDIRecipe).eval.engine == "vllm"
    warned = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert warned == ["StageEval: 'backend' is deprecated, write 'engine' (same values)"]
    with pytest.raises(RecipeError, match=r"eval.*set engine once"):
        load_recipe(old, ["eval.engine=hf"], schema=REDIRecipe)
    assert load_recipe(old, ["eval.engine=vllm"], schema=REDIRecipe).eval.engine == "vllm"


def test_rlvr_redi_from_self_sampled_traces(tmp_path: Path) -> None:
    rc = main(
        [
            "redi",
            str(REPO / "recipes" / "redi_arithmetic_cpu.yaml"),
            f"model.path={MODEL}",
            f"output_dir={tmp_path}",
            "traces.sampling.num_problems=24",
            "traces.sampling.max_new_tokens=16",
            "sft.steps=2",
            "sft.batch_size=8",
            "redi.steps=3",
            "redi.batch_size=4",
            "redi.micro_batch_size=3",
            "model.gradient_checkpointing=true",
            "threads=1",
            *SMALL_EVAL,
        ]
    )
    assert rc == 0
    run = tmp_path / "redi_arithmetic"
    summary = json.loads((run / "summary.json").read_text())
    counts = summary["counts"]
    assert counts["traces"] == 24 * 4 == counts["positives"] + counts["negatives"]
    assert counts["pairs"] >= 1 and len(read_jsonl(run / "pairs.jsonl")) == counts["pairs"]
    for pair in read_jsonl(run / "pairs.jsonl"):  # the verifier labelled both sides
        assert math_reward(pair["chosen"], pair["answer"]) == 1.0
        assert math_reward(pair["rejected"], pair["answer"]) == 0.0
    steps = read_jsonl(run / "metrics.jsonl")
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all({"logp_pos", "logp_neg", "loss"} <= set(s) for s in steps)
    assert {"eval_before", "eval_after_sft", "eval_after"} <= set(summary)
    assert weights_changed(MODEL, run / "sft_model") and weights_changed(
        run / "sft_model", run / "model"
    )


def test_rlvr_redi_from_a_traces_file(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    rows = [
        {
            "prompt": "1+1=",
            "answer": "2",
            "completions": ["\\boxed{3}", "\\boxed{2}", "\\boxed{4}"],
        },
        {"prompt": "2+2=", "answer": "4", "completions": ["\\boxed{4}", "\\boxed{4}"]},
        {"prompt": "3+3=", "answer": "6", "completion": "\\boxed{5}"},
    ]
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {{path: {MODEL}}}\noutput_dir: {tmp_path}\ntraces: {{path: {traces}}}\n"
        "redi: {steps: 1, batch_size: 1}\n"
    )
    assert main(["redi", str(recipe)]) == 0
    summary = json.loads((tmp_path / "redi" / "summary.json").read_text())
    assert summary["counts"] == {
        "problems": 3,
        "traces": 6,
        "positives": 3,
        "negatives": 3,
        "pairs": 1,
    }
    assert "eval_before" not in summary  # the file's problems have no held-out split
    [pair] = read_jsonl(tmp_path / "redi" / "pairs.jsonl")
    assert (pair["chosen"], pair["rejected"]) == ("\\boxed{2}", "\\boxed{3}")
    traces.write_text(json.dumps({"prompt": "1+1=", "answer": "2", "text": "x"}) + "\n")
    with pytest.raises(Exception, match=r"traces\.jsonl: row 1 has no 'completions'"):
        from rlvr.stages.redi_recipe import REDIRecipe, run_redi_recipe

        run_redi_recipe(load_recipe(recipe, schema=REDIRecipe))


def test_rlvr_specs_pairs_and_dpo(tmp_path: Path) -> None:
    rc = main(
        [
            "specs",
            str(REPO / "recipes" / "specs_arithmetic_cpu.yaml"),
            f"model.path={MODEL}",
            f"output_dir={tmp_path}",
            "specs.sampling.num_problems=16",
            "specs.sampling.max_new_tokens=16",
            "specs.steps=2",
            "specs.batch_size=2",
            "specs.grad_accum=2",
            "model.gradient_checkpointing=true",
            "threads=1",
            *SMALL_EVAL,
        ]
    )
    assert rc == 0
    run = tmp_path / "specs_arithmetic"
    summary = json.loads((run / "summary.json").read_text())
    stats = summary["pair_stats"]
    assert stats["samples"] == 16 * 8 and stats["pairs"] == len(read_jsonl(run / "pairs.jsonl"))
    answers = {s["id"]: None for s in read_jsonl(run / "samples.jsonl")}
    assert len(answers) == 16
    for pair in read_jsonl(run / "pairs.jsonl"):
        a, b = pair["id"].split("+")
        gold = str(int(a) + int(b))
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert math_reward(chosen, gold) == 1.0 and format_reward(chosen, {}) == 1.0
        assert math_reward(rejected, gold) == 0.0 or format_reward(rejected, {}) == 0.0
    assert len(read_jsonl(run / "metrics.jsonl")) == 2 and summary["dpo"]["steps"] == 2
    assert weights_changed(MODEL, run / "model")


def test_rlvr_int_on_own_failures(tmp_path: Path) -> None:
    rc = main(
        [
            "int",
            str(REPO / "recipes" / "int_arithmetic_cpu.yaml"),
            f"model.path={MODEL}",
            f"output_dir={tmp_path}",
            "attempts.sampling.num_problems=24",
            "attempts.sampling.max_new_tokens=16",
            "intervention.k_check=4",
            "intervention.check_tokens=16",
            "intervention.steps=2",
            "intervention.batch_size=4",
            "model.gradient_checkpointing=true",
            "threads=1",
            *SMALL_EVAL,
        ]
    )
    assert rc == 0
    run = tmp_path / "int_arithmetic"
    summary = json.loads((run / "summary.json").read_text())
    attempts = read_jsonl(run / "attempts.jsonl")
    assert summary["counts"]["attempts"] == len(attempts) > 0
    assert all(math_reward(a["incorrect_attempt"], a["answer"]) == 0.0 for a in attempts)
    c = summary["counts"]
    assert c["attempts"] == c["no_intervention"] + c["leaked"] + c["failed_check"] + c["kept"]
    kept = read_jsonl(run / "kept.jsonl")
    assert len(kept) == c["kept"] >= 1 and summary["trained"]
    refs = {a["prompt"]: a["reference_solution"] for a in attempts}
    for row in kept:  # the target is a start of the worked reference solution
        assert refs[row["prompt"]].startswith(row["completion"])
        assert row["answer"] not in row["completion"]
    assert weights_changed(MODEL, run / "model")


def test_specs_then_grpo_pipeline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(
        f"name: p\noutput_dir: {tmp_path}\nstages:\n"
        "  - name: cold\n    kind: specs\n    recipe: recipes/specs_arithmetic_cpu.yaml\n"
        "    overrides: ['specs.sampling.num_problems=8', 'specs.steps=1', 'specs.batch_size=2',"
        " 'eval.before=false', 'eval.after=false', 'threads=1']\n"
        "  - name: grpo\n    kind: train\n    recipe: recipes/quickstart.yaml\n"
        "    overrides: ['train.steps=1', 'train.prompts_per_step=2', 'rollout.group_size=4',"
        " 'rollout.engine=hf', 'logging.progress=false', 'logging.tensorboard=false',"
        " 'logging.plots=false', 'eval.before=false', 'eval.after=false']\n"
    )
    assert main(["pipeline", str(pipe)]) == 0
    cold = json.loads((tmp_path / "p" / "cold" / "stage_done.json").read_text())
    grpo = json.loads((tmp_path / "p" / "grpo" / "stage_done.json").read_text())
    assert cold["kind"] == "specs" and cold["model"] == str(tmp_path / "p" / "cold" / "model")
    assert grpo["input"] == cold["model"]
    assert (tmp_path / "p" / "cold" / "summary.json").is_file()
    assert (tmp_path / "p" / "grpo" / "summary.json").is_file()


# ------------------------------------------------------------------ the optional LLM judge


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("The steps check out. \\boxed{yes}", True),
        ("\\boxed{yes} at first, but step 2 is wrong: \\boxed{ No }", False),
        ("Final verdict: no.", False),
        ("yes, consistent", True),
        ("I cannot tell.", None),
        ("\\boxed{7}", None),
    ],
)
def test_parse_verdict(text, verdict) -> None:
    from rlvr.stages.judge import parse_verdict

    assert parse_verdict(text) is verdict


def test_judge_prompt_and_unparsable_count_as_no() -> None:
    from rlvr.rollout import Completion
    from rlvr.stages.judge import JUDGE_PROMPT, judge_prompt, judge_verdicts

    text = judge_prompt(JUDGE_PROMPT, "1+1=", "2", "\\boxed{2}")
    assert "Problem:\n1+1=" in text and "Reference final answer: 2" in text
    with pytest.raises(ValueError, match="response"):
        judge_prompt("{problem} {answer}", "p", "a", "r")

    class Scripted:
        tokenizer = build_tokenizer()

        def generate(self, prompts, sp):
            replies = ["\\boxed{yes}", "\\boxed{no}", "hmm"]
            return [[Completion([], [], "stop", replies[i])] for i in range(len(prompts))]

    items = [("p", "a", "r1"), ("p", "a", "r2"), ("p", "a", "r3")]
    assert judge_verdicts(Scripted(), items) == ([True, False, False], 1)


def test_redi_judge_moves_rejected_positives_to_negatives(tmp_path: Path) -> None:
    """The quickstart model cannot judge: every verdict is unparsable, so every verifier-
    correct trace becomes a negative and no pair is left; the error says so."""
    from rlvr.data.datasets import DataError
    from rlvr.stages.redi_recipe import REDIRecipe, run_redi_recipe

    recipe = load_recipe(
        REPO / "recipes" / "redi_arithmetic_cpu.yaml",
        [
            f"model.path={MODEL}",
            f"output_dir={tmp_path}",
            "traces.sampling.num_problems=8",
            "traces.sampling.max_new_tokens=16",
            f"traces.judge.model={MODEL}",
            "traces.judge.max_new_tokens=4",
            "eval.before=false",
        ],
        schema=REDIRecipe,
    )
    with pytest.raises(DataError, match=r"'positives': 0.*'judge_unparsable': [1-9]"):
        run_redi_recipe(recipe)


def test_specs_chosen_must_pass_the_judge(tmp_path: Path, monkeypatch) -> None:
    import rlvr.stages.specs_recipe as sr

    calls = []

    def every_other(cfg, items):
        calls.append(items)
        return [i % 2 == 0 for i in range(len(items))], 0

    monkeypatch.setattr(sr, "run_judge", every_other)
    monkeypatch.setattr(sr, "check_model", lambda *a, **k: None)  # "some/judge" is not loaded
    recipe = load_recipe(
        REPO / "recipes" / "specs_arithmetic_cpu.yaml",
        [
            f"model.path={MODEL}",
            f"output_dir={tmp_path}",
            "specs.sampling.num_problems=16",
            "specs.sampling.max_new_tokens=16",
            "specs.judge.model=some/judge",
            "specs.steps=1",
            "specs.batch_size=2",
            "eval.before=false",
            "eval.after=false",
        ],
        schema=sr.SPECSRecipe,
    )
    summary = sr.run_specs_recipe(recipe)
    samples = read_jsonl(tmp_path / "specs_arithmetic" / "samples.jsonl")
    judged = [s for s in samples if "judged" in s]
    assert len(judged) == len(calls[0]) == sum(s["correct"] and s["well_formed"] for s in samples)
    assert summary["pair_stats"]["judge_rejected"] == sum(not s["judged"] for s in judged)
    approved = {s["text"] for s in judged if s["judged"]}
    for pair in read_jsonl(tmp_path / "specs_arithmetic" / "pairs.jsonl"):
        assert pair["chosen"][0]["content"] in approved


def test_int_model_proposer_and_attempts_file(tmp_path: Path) -> None:
    """Attempts from a file; the tiny model as its own proposer cannot write a parsable
    intervention, so nothing is kept and the input model is handed on unchanged."""
    from rlvr.data.datasets import DataError
    from rlvr.stages.int_recipe import INTRecipe, run_int_recipe

    attempts = tmp_path / "attempts.jsonl"
    rows = [
        {
            "problem": "12+34=",
            "answer": "46",
            "incorrect_attempt": "<think>56</think>\\boxed{65}",
            "reference_solution": "<think>64</think>\\boxed{46}",
        },
        {
            "problem": "40+25=",
            "answer": "65",
            "incorrect_attempt": "<think>55</think>\\boxed{55}",
            "reference_solution": "<think>56</think>\\boxed{65}",
        },
    ]
    attempts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [
        f"model.path={MODEL}",
        f"output_dir={tmp_path}",
        f"attempts.path={attempts}",
        "data.prompt_field=problem",
        "intervention.k_interv=1",
        "intervention.propose_tokens=16",
        "intervention.k_check=2",
        "intervention.check_tokens=16",
        *SMALL_EVAL,
    ]
    recipe_file = REPO / "recipes" / "int_arithmetic_cpu.yaml"
    recipe = load_recipe(
        recipe_file,
        [*overrides, "intervention.proposer=model", "attempts.reference_field=reference_solution"],
        schema=INTRecipe,
    )
    summary = run_int_recipe(recipe)
    assert summary["counts"]["attempts"] == 2 and summary["counts"]["no_intervention"] == 2
    assert summary["trained"] is False and summary["model_dir"] == str(MODEL)
    assert "eval_before" in summary  # the recipe names its own (arithmetic) data section
    # the recipe's default reference field ('solution', the arithmetic data's) is not in the file
    recipe = load_recipe(recipe_file, [*overrides, "intervention.steps=1"], schema=INTRecipe)
    with pytest.raises(
        DataError, match=r"attempts\.jsonl: row 1: no reference solution in 'solution'"
    ):
        run_int_recipe(recipe)


def test_stage_sampling_and_eval_on_vllm(tmp_path: Path) -> None:
    """The same REDI stage with its traces and its held-out eval sampled by in-process vLLM."""
    pytest.importorskip("vllm")
    from rlvr.stages.redi_recipe import REDIRecipe, run_redi_recipe

    recipe = load_recipe(
        REPO / "recipes" / "redi_arithmetic_cpu.yaml",
        [
            f"model.path={MODEL}",
            f"output_dir={tmp_path}",
            "traces.sampling.engine=vllm",
            "traces.sampling.num_problems=32",
            "traces.sampling.max_new_tokens=16",
            "eval.engine=vllm",
            "eval.before=false",
            "sft.steps=0",
            "redi.steps=1",
            "redi.batch_size=2",
            "threads=1",
            *SMALL_EVAL,
        ],
        schema=REDIRecipe,
    )
    summary = run_redi_recipe(recipe)
    assert summary["counts"]["traces"] == 32 * 4 and summary["counts"]["pairs"] >= 1
    # the bundled model is right about a third of the time, whichever engine samples it
    assert 0.1 < summary["counts"]["positives"] / summary["counts"]["traces"] < 0.6
    assert 0.0 <= summary["eval_after"]["eval/greedy"] <= 1.0
    traces = read_jsonl(tmp_path / "redi_arithmetic" / "traces.jsonl")
    assert sum(t["completion"].startswith("<think>") for t in traces) > len(traces) / 2  # decoded


# ------------------------------------------------------------------ nothing lost on a crash


def test_cached_rows_reuse_only_with_the_same_key(tmp_path: Path) -> None:
    from rlvr.stages.common import cached_rows, fingerprint

    calls = []

    def compute() -> list[dict]:
        calls.append(1)
        return [{"a": len(calls)}]

    path = tmp_path / "rows.jsonl"
    key = fingerprint("model", {"n": 4}, 0)
    assert fingerprint("model", {"n": 4}, 0) == key != fingerprint("model", {"n": 5}, 0)
    assert cached_rows(path, key, compute, what="t") == [{"a": 1}]
    assert cached_rows(path, key, compute, what="t") == [{"a": 1}] and len(calls) == 1
    assert cached_rows(path, "other", compute, what="t") == [{"a": 2}]
    (tmp_path / "rows.jsonl.key").unlink()  # as if the run died before stamping the key
    assert cached_rows(path, "other", compute, what="t") == [{"a": 3}]


def test_int_journal_resumes_after_a_crash(tmp_path: Path) -> None:
    tok = build_tokenizer()
    rows = [
        {
            "prompt": f"{a}+{b}=",
            "answer": str(a + b),
            "reference_solution": f"<think>{str(a + b)[::-1]}</think>\\boxed{{{a + b}}}",
            "incorrect_attempt": f"<think>9{a}</think>\\boxed{{{a}9}}",
        }
        for a, b in [(12, 30), (21, 11), (40, 3), (5, 5)]
    ]

    def verifying_engine(answers):
        """Continues every guided attempt with the right boxed answer (so checks pass)."""

        class E:
            tokenizer = tok

            def generate(self, prompts, sp):
                from rlvr.rollout import Completion

                text = tok.decode(prompts[0])
                gold = answers[text.split("user\n")[1].split("<|im_end|>")[0]]
                return [[Completion([], [], "stop", f"</think>\\boxed{{{gold}}}")] * sp.n]

        return E()

    answers = {r["prompt"]: r["answer"] for r in rows}
    proposed = []

    def propose(row, substeps):
        proposed.append(row["prompt"])
        if len(proposed) == 3:
            raise RuntimeError("the machine went away")
        return reference_diff_proposer(row, substeps)

    journal = tmp_path / "interventions.jsonl"
    engine = verifying_engine(answers)
    with pytest.raises(RuntimeError):
        build_intervention_rows(
            rows, propose, engine, tok, k_check=2, journal=journal, journal_key="k"
        )
    assert len(journal.read_text().splitlines()) == 1 + 2  # key line + two decided attempts
    proposed.clear()
    kept, counts = build_intervention_rows(
        rows,
        reference_diff_proposer_spy(proposed),
        engine,
        tok,
        k_check=2,
        journal=journal,
        journal_key="k",
    )
    assert proposed == ["40+3=", "5+5="]  # only the undecided attempts were proposed again
    fresh, fresh_counts = build_intervention_rows(
        rows, reference_diff_proposer, engine, tok, k_check=2
    )
    assert (kept, counts) == (fresh, fresh_counts) and counts["attempts"] == 4
    proposed.clear()
    build_intervention_rows(  # another key: the journal is not trusted
        rows,
        reference_diff_proposer_spy(proposed),
        engine,
        tok,
        k_check=2,
        journal=journal,
        journal_key="other",
    )
    assert len(proposed) == 4


def reference_diff_proposer_spy(seen: list):
    def propose(row, substeps):
        seen.append(row["prompt"])
        return reference_diff_proposer(row, substeps)

    return propose


def test_redi_rerun_reuses_traces_and_stage_one(tmp_path: Path, monkeypatch) -> None:
    import rlvr.stages.redi_recipe as rr

    overrides = [
        f"model.path={MODEL}",
        f"output_dir={tmp_path}",
        "traces.sampling.num_problems=16",
        "traces.sampling.max_new_tokens=16",
        "sft.steps=1",
        "sft.batch_size=4",
        "redi.steps=1",
        "redi.batch_size=2",
        "eval.before=false",
        "eval.after=false",
    ]
    recipe_file = REPO / "recipes" / "redi_arithmetic_cpu.yaml"
    first = rr.run_redi_recipe(load_recipe(recipe_file, overrides, schema=rr.REDIRecipe))
    run = tmp_path / "redi_arithmetic"
    stamp = (run / "sft_model" / "model.safetensors").stat().st_mtime_ns

    def no_sampling(*a, **k):
        raise AssertionError("the traces should have been reused")

    monkeypatch.setattr(rr, "sample_completions", no_sampling)
    second = rr.run_redi_recipe(
        load_recipe(recipe_file, [*overrides, "redi.steps=2"], schema=rr.REDIRecipe)
    )
    assert second["counts"] == first["counts"] and second["sft"] == first["sft"]
    assert (run / "sft_model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert len(read_jsonl(run / "metrics.jsonl")) == 2
    with pytest.raises(AssertionError, match="reused"):  # other sampling settings: sample again
        rr.run_redi_recipe(
            load_recipe(recipe_file, [*overrides, "traces.sampling.n=2"], schema=rr.REDIRecipe)
        )


@pytest.mark.parametrize(
    ("command", "override", "message"),
    [
        ("redi", "model.path=/no/such/model", "model.path '/no/such/model': not a local model"),
        ("redi", "traces.path=/no/such.jsonl", "teacher traces file not found (traces.path)"),
        ("redi", "traces.teacher=/no/such/model", "traces.teacher '/no/such/model'"),
        ("redi", "traces.judge.model=/no/such/judge", "traces.judge.model '/no/such/judge'"),
        ("specs", "specs.judge.model=/no/such/judge", "specs.judge.model '/no/such/judge'"),
        ("int", "attempts.path=/no/such.jsonl", "attempts file not found (attempts.path)"),
        ("sft", "model.path=/no/such/model", "model.path '/no/such/model': not a local model"),
    ],
)
def test_stage_errors_name_the_key(command, override, message, tmp_path, capsys) -> None:
    recipe = REPO / "recipes" / f"{command}_arithmetic_cpu.yaml"
    overrides = [f"model.path={MODEL}", f"output_dir={tmp_path}", "eval.before=false", override]
    assert main([command, str(recipe), *overrides]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["sft", "redi", "specs", "int"])
def test_print_recipe_resolves_without_running(command, tmp_path, capsys) -> None:
    import yaml

    recipe = REPO / "recipes" / f"{command}_arithmetic_cpu.yaml"
    args = [command, str(recipe), f"output_dir={tmp_path}", "seed=7", "--print-recipe"]
    assert main(args) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["seed"] == 7 and resolved["output_dir"] == str(tmp_path)
    assert "eval" in resolved and not any(tmp_path.iterdir())  # nothing ran
