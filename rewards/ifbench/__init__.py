"""IFBench verifiers: the 58 out-of-distribution test constraints of allenai/IFBench and the
29 IFTrain training constraints released with it (open-instruct ``IFEvalG``).

``check(instruction_id, kwargs, response, prompt=None, loose=False) -> bool`` has the same
contract as ``rewards.ifeval.check`` (strict by default; ``loose=True`` applies the IFEval
loose response variants; None kwargs ignored; bad kwargs raise ValueError and unknown ids
KeyError, naming the id). The 25 classic IFEval ids are accepted too (delegated to
``rewards.ifeval``), as the IFBench and open-instruct registries also carry them.

Sources read to restate the semantics: allenai/IFBench ``instructions.py`` as of commit
1d62c1d (the current code, which the shipped test data follows: word-index spans for
``repeat:repeat_span``, word trigrams for ``ratio:overlap``, whole-word counts for
``count:keywords_multiple``, ...; the older ``ifbench`` 0.2.0 package at db69a6f differs on
those ids), ``instructions_test.py``, ``instructions_util.py``, ``evaluation_lib.py``; and
allenai/open-instruct ``open_instruct/IFEvalG/{instructions,instructions_registry,
instructions_util}.py`` for the IFTrain ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rewards.ifbench import count_ratio, custom_repeat, formats, iftrain, words_sentence
from rewards.ifeval import REGISTRY as IFEVAL_REGISTRY
from rewards.ifeval._core import Constraint, run_check

TEST_REGISTRY: dict[str, Constraint] = {
    c.id: c
    for module in (count_ratio, words_sentence, formats, custom_repeat)
    for c in module.CONSTRAINTS
}
TRAIN_REGISTRY: dict[str, Constraint] = {c.id: c for c in iftrain.CONSTRAINTS}
TEST_IDS: tuple[str, ...] = tuple(sorted(TEST_REGISTRY))
TRAIN_IDS: tuple[str, ...] = tuple(sorted(TRAIN_REGISTRY))
IDS: tuple[str, ...] = tuple(sorted(TEST_REGISTRY.keys() | TRAIN_REGISTRY.keys()))

REGISTRY: dict[str, Constraint] = {**IFEVAL_REGISTRY, **TEST_REGISTRY, **TRAIN_REGISTRY}


def check(
    instruction_id: str,
    kwargs: Mapping[str, Any] | None,
    response: str,
    prompt: str | None = None,
    loose: bool = False,
) -> bool:
    """True when ``response`` follows the IFBench / IFTrain (or IFEval) instruction."""
    return run_check(REGISTRY, "IFBench", instruction_id, kwargs, response, prompt, loose)


__all__ = ["IDS", "REGISTRY", "TEST_IDS", "TRAIN_IDS", "check"]
