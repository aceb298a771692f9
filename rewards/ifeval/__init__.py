"""IFEval verifiers: the 25 instruction ids of google-research ``instruction_following_eval``.

``check(instruction_id, kwargs, response, prompt=None, loose=False) -> bool`` scores one
instruction on one response, strict by default, loose with ``loose=True`` (see
``rewards.ifeval._core`` for the scoring contract). ``REGISTRY`` maps every id to its
``Constraint``; ``IDS`` lists them. Source read to restate the semantics:
google-research/google-research ``instruction_following_eval/{instructions,evaluation_lib,
instructions_util}.py`` (Apache-2.0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rewards.ifeval import case_language, formats, keywords, length
from rewards.ifeval._core import Constraint, run_check

REGISTRY: dict[str, Constraint] = {
    c.id: c for module in (keywords, case_language, length, formats) for c in module.CONSTRAINTS
}
IDS: tuple[str, ...] = tuple(sorted(REGISTRY))


def check(
    instruction_id: str,
    kwargs: Mapping[str, Any] | None,
    response: str,
    prompt: str | None = None,
    loose: bool = False,
) -> bool:
    """True when ``response`` follows the IFEval instruction ``instruction_id``.

    ``kwargs`` entries that are None are ignored; a missing or ill-typed kwarg raises
    ValueError and an unknown id raises KeyError, both naming the id.
    """
    return run_check(REGISTRY, "IFEval", instruction_id, kwargs, response, prompt, loose)


__all__ = ["IDS", "REGISTRY", "check"]
