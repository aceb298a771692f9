"""Stage kinds come from one registry (rlvr/stages/registry.py): every registered kind is a
pipeline stage and, unless ``command=False``, an ``rlvr <kind>`` command; a misspelt kind fails
at load with a close match; a throwaway stage file is chained by a pipeline recipe."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from rlvr.cli import build_parser, main
from rlvr.config import RecipeError, load_recipe
from rlvr.pipeline import PipelineRecipe, run_pipeline
from rlvr.stages.registry import STAGES, get_stage, stage_kinds

STAGE_FILE = textwrap.dedent(
    '''
    """Throwaway stage: writes a note and hands its input model on unchanged."""
    from pathlib import Path

    from rlvr.config import Section
    from rlvr.stages.common import StageRecipe, write_json
    from rlvr.stages.registry import register_stage


    class Note(Section):
        text: str = "hello"


    class NoteRecipe(StageRecipe):
        note: Note = Note()


    @register_stage("note_test", schema=NoteRecipe, help="test", description="test stage")
    def run_note(recipe: NoteRecipe) -> dict:
        recipe.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(recipe.run_dir / "summary.json", {"note": recipe.note.text})
        return {"model_dir": recipe.model.path}
    '''
)


def _subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def test_every_registered_kind_is_a_command_and_the_builtins_are_there() -> None:
    kinds = {s.kind for s in stage_kinds()}
    assert {"train", "sft", "redi", "specs", "int", "abstain-train"} <= kinds
    commands = _subcommands()
    assert {s.kind for s in stage_kinds() if s.command} <= commands
    assert not get_stage("train").command  # `rlvr train` is its own command
    assert get_stage("train").pipeline_overrides == ("resume=true", "checkpoint.save_final=true")
    for spec in stage_kinds():
        assert "model" in spec.schema.model_fields and spec.help and spec.description


def test_a_misspelt_kind_fails_at_load_with_a_close_match(tmp_path: Path, capsys) -> None:
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text("stages:\n  - {name: a, kind: sftt, recipe: x.yaml}\n")
    with pytest.raises(RecipeError, match=r"'stages\.0\.kind': unknown stage kind 'sftt' \(did"):
        load_recipe(pipe, schema=PipelineRecipe)
    assert main(["pipeline", str(pipe)]) == 2
    assert "did you mean 'sft'?" in capsys.readouterr().err


def test_a_throwaway_stage_file_is_chained_by_a_pipeline(tmp_path: Path) -> None:
    stage_file = tmp_path / "note_stage.py"
    stage_file.write_text(STAGE_FILE)
    (tmp_path / "note.yaml").write_text("model: {path: /models/base}\nnote: {text: hi}\n")
    pipe = tmp_path / "pipe.yaml"
    kind = f"{stage_file}:run_note"
    pipe.write_text(
        f"name: p\noutput_dir: {tmp_path / 'runs'}\nstages:\n"
        f"  - {{name: first, kind: '{kind}', recipe: '{tmp_path / 'note.yaml'}'}}\n"
        f"  - {{name: second, kind: note_test, recipe: '{tmp_path / 'note.yaml'}',"
        " overrides: ['note.text=bye']}\n"
    )
    with pytest.raises(RecipeError, match=r"note\.txt.*note\.text"):
        load_recipe(tmp_path / "note.yaml", ["note.txt=x"], schema=get_stage(kind).schema)
    try:
        records = run_pipeline(load_recipe(pipe, schema=PipelineRecipe))
        # the second stage's model is the first's output: the recipe's model, handed on
        assert [(r["stage"], r["input"], r["model"]) for r in records] == [
            ("first", None, "/models/base"),
            ("second", "/models/base", "/models/base"),
        ]
        notes = [
            json.loads((tmp_path / "runs" / "p" / s / "summary.json").read_text())["note"]
            for s in ("first", "second")
        ]
        assert notes == ["hi", "bye"]
    finally:
        STAGES.unregister("note_test")  # registered by loading the file; leave no trace


def test_recipe_sections_passed_whole_match_their_runners() -> None:
    """The ``redi``, ``intervention`` and SFT ``train`` / ``sft`` sections go to their runners
    as ``**section`` (``steps`` as ``max_steps`` for run_sft): every other key must be a
    parameter of the runner (a new key without one would fail at run time)."""
    import inspect

    from rlvr.stages.int_recipe import INTConfig
    from rlvr.stages.intervention import run_int
    from rlvr.stages.redi import run_redi
    from rlvr.stages.redi_recipe import REDISFT, REDIObjective
    from rlvr.stages.sft import run_sft
    from rlvr.stages.sft_recipe import SFTTrain

    cases = [
        (REDIObjective, run_redi, set()),
        (INTConfig, run_int, {"proposer"}),
        (SFTTrain, run_sft, {"steps"}),
        (REDISFT, run_sft, {"steps"}),
    ]
    for section, runner, exclude in cases:
        params = set(inspect.signature(runner).parameters)
        assert set(section.model_fields) - exclude <= params, (section.__name__, runner.__name__)


def test_sft_train_threads_is_accepted_as_the_old_name(caplog, monkeypatch, tmp_path):
    """``train.threads`` is read as top-level ``threads`` through rlvr.config.renamed_key: one
    deprecation warning (as every renamed key), both names with different values refused."""
    import rlvr.config
    from rlvr.config import RecipeError, load_recipe
    from rlvr.stages.sft_recipe import SFTRecipe

    monkeypatch.setattr(rlvr.config, "_warned_renames", set())
    data = {"model": {"path": "m"}, "data": {"path": "x.jsonl"}, "train": {"threads": 3}}
    old = tmp_path / "sft.yaml"
    old.write_text("model: {path: m}\ndata: {path: x.jsonl}\ntrain: {threads: 3, steps: 2}\n")
    with caplog.at_level("WARNING", logger="rlvr"):
        recipe = load_recipe(old, schema=SFTRecipe)
        assert (recipe.threads, recipe.train.steps) == (3, 2)
        assert load_recipe(old, schema=SFTRecipe).threads == 3
        assert SFTRecipe.model_validate({**data, "threads": None}).threads == 3
        assert SFTRecipe.model_validate({**data, "threads": 3}).threads == 3
    warned = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert warned == ["SFTRecipe: 'train.threads' is deprecated, write 'threads' (same values)"]
    with pytest.raises(ValueError, match="set threads once"):
        SFTRecipe.model_validate({**data, "threads": 2})
    with pytest.raises(RecipeError, match="set threads once"):
        load_recipe(old, ["threads=2"], schema=SFTRecipe)
    assert SFTRecipe.model_validate({**data, "train": {}}).threads is None
