"""Instruction-following rewards and eval scoring over IFEval, IFBench and IFTrain constraints.

Reward (IFBench paper, Sec. 3; open-instruct ``ground_truth_utils.IFEvalVerifier``): for an
example with constraints c_1..c_n (``example["instruction_id_list"]`` with aligned
``example["kwargs"]``) and the response r (the completion after the last ``</think>``, with
``<answer>`` tags and ``<|assistant|>`` removed),

    reward = (1/n) * sum_i followed(c_i, r)          (default, instruction-level fraction)
    reward = prod_i followed(c_i, r)                 (``all_or_nothing=True``)

and 0 for an empty response. ``followed`` is the strict verdict, or the loose one with
``loose=True``. Each id is dispatched to ``rewards.ifeval.check`` (the 25 IFEval ids) or
``rewards.ifbench.check`` (58 IFBench test + 29 IFTrain ids).

Eval scoring (google-research ``evaluation_lib``, lm-eval ``agg_inst_level_acc``):
``score_if_response`` gives per-instruction strict and loose verdicts of one response;
``aggregate_if_scores`` turns many into prompt-level accuracy (mean over prompts of "all
instructions followed") and instruction-level accuracy (followed instructions over all
instructions), strict and loose.

Registered as the reward ``"ifeval"`` (alias ``"ifbench"``) in ``rewards.base``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rewards.base import register_reward
from rewards.ifbench import REGISTRY as _ALL_REGISTRY
from rewards.ifbench import check as ifbench_check
from rewards.ifeval import REGISTRY as _IFEVAL_REGISTRY
from rewards.ifeval import check as ifeval_check

__all__ = [
    "aggregate_if_scores",
    "check_instruction",
    "extract_response",
    "if_reward",
    "known_instruction_ids",
    "score_if_response",
]


def known_instruction_ids() -> tuple[str, ...]:
    """Every instruction id a reward or scorer accepts (IFEval + IFBench + IFTrain)."""
    return tuple(sorted(_ALL_REGISTRY))


def check_instruction(
    instruction_id: str,
    kwargs: Mapping[str, Any] | None,
    response: str,
    prompt: str | None = None,
    loose: bool = False,
) -> bool:
    """One verdict, dispatched to the IFEval or the IFBench/IFTrain checker by id."""
    if instruction_id in _IFEVAL_REGISTRY:
        return ifeval_check(instruction_id, kwargs, response, prompt, loose)
    return ifbench_check(instruction_id, kwargs, response, prompt, loose)


def extract_response(completion: str, strip_thinking: bool = True) -> str:
    """The text the verifiers see: after the last ``</think>``, without answer/role tags.

    A completion with an opened but never closed ``<think>`` yields "" (its reasoning is not
    an answer), as in the eval harness.
    """
    text = completion
    if strip_thinking:
        close = text.rfind("</think>")
        if close >= 0:
            text = text[close + len("</think>") :]
        elif "<think>" in text:
            return ""
    for tag in ("<answer>", "</answer>", "<|assistant|>"):
        text = text.replace(tag, "")
    return text.strip()


def _constraints(example: Mapping[str, Any]) -> tuple[list[str], list[Mapping[str, Any] | None]]:
    ids = example.get("instruction_id_list")
    if ids is None:
        ids = example.get("instruction_id")  # open-instruct label layout
    if ids is None:
        raise KeyError(f"example has no 'instruction_id_list' field (keys: {sorted(example)})")
    if isinstance(ids, str):
        ids = [ids]
    kwargs = example.get("kwargs")
    if kwargs is None:
        kwargs = [None] * len(ids)
    elif isinstance(kwargs, Mapping):
        kwargs = [kwargs]
    if len(kwargs) != len(ids):
        raise ValueError(f"example has {len(ids)} instruction ids but {len(kwargs)} kwargs entries")
    return list(ids), list(kwargs)


def if_reward(
    completion: str,
    example: dict,
    *,
    all_or_nothing: bool = False,
    loose: bool = False,
    strip_thinking: bool = True,
) -> float:
    """Fraction of the example's constraints the completion follows (or 1/0 if all/any not)."""
    ids, kwargs_list = _constraints(example)
    if not ids:
        raise ValueError("example has an empty instruction_id_list")
    response = extract_response(completion, strip_thinking)
    if not response:
        return 0.0
    prompt = example.get("prompt")
    followed = [
        check_instruction(i, kw, response, prompt, loose)
        for i, kw in zip(ids, kwargs_list, strict=True)
    ]
    if all_or_nothing:
        return float(all(followed))
    return sum(followed) / len(followed)


register_reward("ifeval", if_reward)
register_reward("ifbench", if_reward)


def score_if_response(
    instruction_id_list: Sequence[str],
    kwargs_list: Sequence[Mapping[str, Any] | None] | None,
    response: str,
    prompt: str | None = None,
) -> dict[str, Any]:
    """Per-instruction strict and loose verdicts of one response, as the official evaluator.

    Returns ``{"strict": [bool], "loose": [bool], "prompt_strict": bool,
    "prompt_loose": bool}``; the response is scored as given (strip thinking before).
    """
    ids = list(instruction_id_list)
    kws = list(kwargs_list) if kwargs_list is not None else [None] * len(ids)
    if len(kws) != len(ids):
        raise ValueError(f"{len(ids)} instruction ids but {len(kws)} kwargs entries")
    strict = [check_instruction(i, kw, response, prompt) for i, kw in zip(ids, kws, strict=True)]
    loose = [
        check_instruction(i, kw, response, prompt, loose=True)
        for i, kw in zip(ids, kws, strict=True)
    ]
    return {
        "strict": strict,
        "loose": loose,
        "prompt_strict": all(strict),
        "prompt_loose": all(loose),
    }


def aggregate_if_scores(results: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Prompt- and instruction-level accuracy, strict and loose, over ``score_if_response``
    results (lm-eval's ``prompt_level_*_acc`` and ``inst_level_*_acc``)."""
    prompts = prompt_strict = prompt_loose = 0
    insts = inst_strict = inst_loose = 0
    for r in results:
        prompts += 1
        prompt_strict += bool(all(r["strict"]))
        prompt_loose += bool(all(r["loose"]))
        insts += len(r["strict"])
        inst_strict += sum(bool(v) for v in r["strict"])
        inst_loose += sum(bool(v) for v in r["loose"])
    if prompts == 0:
        raise ValueError("aggregate_if_scores: no results")
    return {
        "prompt_level_strict_acc": prompt_strict / prompts,
        "inst_level_strict_acc": inst_strict / insts if insts else 0.0,
        "prompt_level_loose_acc": prompt_loose / prompts,
        "inst_level_loose_acc": inst_loose / insts if insts else 0.0,
        "num_prompts": float(prompts),
        "num_instructions": float(insts),
    }
