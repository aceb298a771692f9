"""The registry of stage kinds: what ``rlvr pipeline`` chains and what ``rlvr <kind>`` runs.

A stage kind is one module ``<name>_recipe.py`` in this package (its schema and runner; the
heavy work lives in modules it imports lazily, so ``--help`` stays fast) whose runner carries
the decorator

    @register_stage("my_kind", schema=MyRecipe, help="one line", description="the --help text")
    def run_my_recipe(recipe: MyRecipe) -> dict[str, Any]: ...

``schema`` is a pydantic recipe schema (fields ``name``, ``output_dir``, ``model``; usually a
:class:`rlvr.stages.common.StageRecipe` subclass) and the runner returns at least
``{"model_dir": ...}``. The first lookup of a kind that is not registered yet imports every
``*_recipe`` module of the package (:class:`rlvr.registry.Registry`), so the new module is found without an
import line, a ``Literal`` of kinds or a help table to edit: it becomes a pipeline stage kind
and an ``rlvr my_kind RECIPE`` command (``command=False``: pipeline only). Outside the package,
a pipeline stage may name a decorated runner as ``kind: pkg.module:run_fn`` or
``kind: path/to/file.py:run_fn``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rlvr.registry import Registry

F = TypeVar("F", bound=Callable[..., dict[str, Any]])


@dataclass(frozen=True)
class StageKind:
    """One stage kind: its recipe schema, its runner and its command-line help."""

    kind: str
    schema: type
    runner: Callable[[Any], dict[str, Any]]
    help: str
    description: str
    command: bool = True  # an ``rlvr <kind>`` subcommand (False: only a pipeline stage)
    pipeline_overrides: tuple[str, ...] = field(default=())  # applied after the stage's own


STAGES = Registry("stage kind", "rlvr.stages", suffix="_recipe")


def register_stage(
    kind: str,
    *,
    schema: type,
    help: str,
    description: str,
    command: bool = True,
    pipeline_overrides: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Register the decorated runner as stage ``kind`` (see the module docstring)."""

    def deco(runner: F) -> F:
        spec = StageKind(kind, schema, runner, help, description, command, pipeline_overrides)
        old = STAGES.registered(kind)
        # the same file imported again (as a module and as a file target) replaces itself
        STAGES.register(kind, replace=old is not None and _same_source(old.runner, runner))(spec)
        runner.stage_kind = spec  # type: ignore[attr-defined]  # found by a pkg.mod:fn target
        return runner

    return deco


def _same_source(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        code_a is not None
        and code_b is not None
        and (code_a.co_filename, a.__qualname__) == (code_b.co_filename, b.__qualname__)
    )


def get_stage(kind: str) -> StageKind:
    """The stage kind registered as ``kind`` or named by a ``pkg.mod:fn`` / ``file.py:fn``
    target of a decorated runner; ``KeyError`` (with a close match) otherwise."""
    obj = STAGES.get(kind)
    spec = obj if isinstance(obj, StageKind) else getattr(obj, "stage_kind", None)
    if not isinstance(spec, StageKind):
        raise KeyError(
            f"{kind!r} is not a stage runner: decorate it with "
            "@rlvr.stages.registry.register_stage(...)"
        )
    return spec


def stage_kinds() -> list[StageKind]:
    """Every registered stage kind, by name."""
    return [STAGES.get(name) for name in STAGES.names()]


__all__ = ["STAGES", "StageKind", "get_stage", "register_stage", "stage_kinds"]
