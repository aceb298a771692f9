"""Registry machinery shared by the IFEval and IFBench verifiers.

A constraint is a pure function ``fn(response, **params) -> bool`` plus a declaration of its
keyword arguments. ``run_check`` reproduces the official scoring contract (google-research
IFEval / allenai IFBench ``evaluation_lib``):

* kwargs whose value is None are dropped (the data files carry every key, unused ones null);
* an empty or whitespace-only response never follows an instruction;
* strict: the check on the response as is;
* loose: the check passes if it passes on any of 8 variants: {response, response with every
  ``*`` removed} x {as is, first line dropped, last line dropped, both dropped}, where the
  line-dropped variants are stripped (``evaluation_lib.test_instruction_following_loose``).

Unlike the reference, a missing, unknown or ill-typed kwarg is an error (the reference fills
missing ones with random values, which is meaningless for scoring).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

INT = "int"
STR = "str"
STR_LIST = "str_list"
RELATION = "relation"

RELATIONS = ("less than", "at least")


@dataclass(frozen=True)
class Constraint:
    """One verifiable instruction: its id, checker and keyword-argument schema."""

    id: str
    fn: Callable[..., bool]
    required: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)
    # kwargs that may be filled from the example's prompt when absent (copy constraints)
    prompt_fallback: str | None = None
    # extra cross-kwarg validation: returns an error message, or None when the kwargs are fine
    validate: Callable[[dict[str, Any]], str | None] | None = None


def _validate(cid: str, name: str, kind: str, value: Any) -> Any:
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{cid}: kwarg {name!r} must be an integer, got {value!r}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{cid}: kwarg {name!r} must be an integer, got {value!r}")
            value = int(value)
        if value < 0:
            raise ValueError(f"{cid}: kwarg {name!r} must be >= 0, got {value!r}")
        return value
    if kind == STR:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{cid}: kwarg {name!r} must be a non-empty string, got {value!r}")
        return value
    if kind == STR_LIST:
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list | tuple)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise ValueError(
                f"{cid}: kwarg {name!r} must be a non-empty list of strings, got {value!r}"
            )
        return list(value)
    if kind == RELATION:
        if value not in RELATIONS:
            raise ValueError(f"{cid}: kwarg {name!r} must be one of {RELATIONS}, got {value!r}")
        return value
    raise AssertionError(kind)


def prepare_kwargs(
    c: Constraint, kwargs: Mapping[str, Any] | None, prompt: str | None = None
) -> dict[str, Any]:
    """Drop None values, then check names and types against the constraint's schema."""
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}
    if c.prompt_fallback and c.prompt_fallback not in given and prompt:
        given[c.prompt_fallback] = prompt
    unknown = sorted(set(given) - set(c.required) - set(c.optional))
    if unknown:
        raise ValueError(
            f"{c.id}: unexpected kwargs {unknown}; accepted: "
            f"{sorted(set(c.required) | set(c.optional))}"
        )
    missing = sorted(set(c.required) - set(given))
    if missing:
        raise ValueError(f"{c.id}: missing required kwargs {missing}")
    out: dict[str, Any] = {}
    for name, value in given.items():
        kind = c.required.get(name) or c.optional[name]
        out[name] = _validate(c.id, name, kind, value)
    if c.validate is not None:
        problem = c.validate(out)
        if problem:
            raise ValueError(f"{c.id}: {problem}")
    return out


def lookup(registry: Mapping[str, Constraint], instruction_id: str, family: str) -> Constraint:
    """The constraint registered under ``instruction_id``; KeyError naming close matches."""
    try:
        return registry[instruction_id]
    except KeyError:
        close = difflib.get_close_matches(str(instruction_id), list(registry), n=3, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        raise KeyError(f"unknown {family} instruction id {instruction_id!r}{hint}") from None


def loose_variants(response: str) -> list[str]:
    """The 8 IFEval loose-mode variants of a response, in the reference order."""
    lines = response.split("\n")
    remove_first = "\n".join(lines[1:]).strip()
    remove_last = "\n".join(lines[:-1]).strip()
    remove_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        remove_first,
        remove_last,
        remove_both,
        remove_first.replace("*", ""),
        remove_last.replace("*", ""),
        remove_both.replace("*", ""),
    ]


def evaluate(c: Constraint, params: Mapping[str, Any], response: str, loose: bool) -> bool:
    """Strict or loose verdict of an already-prepared constraint on one response."""
    if not isinstance(response, str):
        raise TypeError(f"{c.id}: response must be a str, got {type(response).__name__}")
    candidates = loose_variants(response) if loose else [response]
    return any(r.strip() and bool(c.fn(r, **params)) for r in candidates)


def run_check(
    registry: Mapping[str, Constraint],
    family: str,
    instruction_id: str,
    kwargs: Mapping[str, Any] | None,
    response: str,
    prompt: str | None = None,
    loose: bool = False,
) -> bool:
    """Look up, validate kwargs and score one instruction on one response."""
    c = lookup(registry, instruction_id, family)
    params = prepare_kwargs(c, kwargs, prompt)
    return evaluate(c, params, response, loose)
