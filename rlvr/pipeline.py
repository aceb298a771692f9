"""Multi-stage pipelines: one recipe chains stages (e.g. SFT -> GRPO), each stage's output
model feeding the next.

A pipeline recipe lists stages; each names a stage kind (``train``, ``sft``, ``redi``, ``specs``,
``int``, ``abstain-train``: every kind in :data:`rlvr.stages.registry.STAGES`), a recipe file
of that kind plus dotted overrides. Stage i runs in ``<output_dir>/<name>/<stage>/``
with ``model.path`` set to stage i-1's output model (the first stage keeps its own). A finished
stage writes ``stage_done.json`` (its output model path) last, so a re-run skips finished
stages and an interrupted RL stage resumes from its own checkpoints (``resume=true``): the
pipeline is resumable at stage granularity and inside RL stages. Every stage writes its
recipe, metrics and summary into its own directory. A finished stage whose recipe file,
overrides or input model changed since is still skipped, with a warning naming the
``stage_done.json`` to delete to run it again.

A new stage kind is one module in rlvr/stages/ with a pydantic recipe schema (fields ``name``,
``output_dir``, ``model.path``) and a runner ``recipe -> {"model_dir": ...}`` decorated with
``@register_stage(kind, schema=..., help=..., description=...)`` (rlvr/stages/registry.py):
no list of kinds to edit here or in the command line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from rlvr.config import Recipe, Section, dump_recipe, load_recipe
from rlvr.registry import BindError
from rlvr.stages.common import fingerprint, write_json
from rlvr.stages.registry import get_stage

log = logging.getLogger("rlvr")


def stage_kind(kind: str) -> tuple[type, Callable[[Any], dict[str, Any]]]:
    """(recipe schema, runner) of a stage kind (``KeyError`` with a close match if unknown)."""
    spec = get_stage(kind)
    return spec.schema, spec.runner


class StageConfig(Section):
    name: str = Field(description="Stage name: its run directory under the pipeline's.")
    kind: str = Field(
        description="Stage kind: train, sft, redi, specs, int, abstain-train (any registered "
        "kind), or a decorated runner as pkg.module:fn / file.py:fn."
    )
    recipe: str = Field(description="The stage's recipe file (relative paths: from the cwd).")
    overrides: list[str] = []

    @model_validator(mode="after")
    def _known_kind(self) -> StageConfig:
        try:
            get_stage(self.kind)
        except KeyError as e:
            raise BindError("kind", str(e.args[0])) from None
        return self


class PipelineRecipe(Section):
    name: str = "pipeline"
    output_dir: str = "runs"
    stages: list[StageConfig] = Field(min_length=1)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _stage_overrides(pipe: PipelineRecipe, stage: StageConfig, model: str | None) -> list[str]:
    forced = [f"output_dir={pipe.run_dir}", f"name={stage.name}"]
    if model is not None:
        forced.append(f"model.path={model}")
    return [*stage.overrides, *forced]


def run_stage(pipe: PipelineRecipe, stage: StageConfig, model: str | None) -> str:
    """Run one stage; return the path of the model it produced."""
    spec = get_stage(stage.kind)
    overrides = [*_stage_overrides(pipe, stage, model), *spec.pipeline_overrides]
    return str(spec.runner(load_recipe(stage.recipe, overrides, schema=spec.schema))["model_dir"])


def stage_fingerprint(stage: StageConfig, model: str | None) -> str:
    """sha256 of what a stage's result depends on: kind, recipe file text, overrides, input."""
    path = Path(stage.recipe)
    text = path.read_text() if path.is_file() else ""
    return fingerprint(stage.kind, text, stage.overrides, model)


def run_pipeline(pipe: PipelineRecipe) -> list[dict[str, Any]]:
    """Run every stage in order, skipping finished ones; returns one record per stage."""
    pipe.run_dir.mkdir(parents=True, exist_ok=True)
    dump_recipe(pipe, pipe.run_dir / "pipeline.yaml")  # type: ignore[arg-type]
    model: str | None = None
    records = []
    for stage in pipe.stages:
        done = pipe.run_dir / stage.name / "stage_done.json"
        fingerprint = stage_fingerprint(stage, model)
        if done.is_file():
            record = json.loads(done.read_text())
            log.info("stage %s already done: %s", stage.name, record["model"])
            if record.get("fingerprint", fingerprint) != fingerprint:
                log.warning(
                    "stage %s is done, but its recipe, overrides or input model changed since; "
                    "its old output is used. Delete %s to run it again.",
                    stage.name,
                    done,
                )
        else:
            log.info("stage %s (%s) from %s", stage.name, stage.kind, model or "its recipe's model")
            out = run_stage(pipe, stage, model)
            record = {
                "stage": stage.name,
                "kind": stage.kind,
                "input": model,
                "model": out,
                "fingerprint": fingerprint,
            }
            write_json(done, record)  # written last: the stage counts as done only now
        model = record["model"]
        records.append(record)
    return records


__all__ = ["PipelineRecipe", "Recipe", "StageConfig", "run_pipeline"]
