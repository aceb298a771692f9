"""Scoring of eval samples with the training reward code (one scorer, two uses).

* Math suites: the registered ``"math"`` reward (:func:`rewards.math.math_accuracy`, i.e.
  ``math_reward(completion, example["answer"])``: answer after the last ``</think>``, the
  last group of ``\\boxed{}``, then answer phrases, then the last math expression
  (:mod:`rewards.math_extract`), exact integer comparison or math-verify ``verify(gold, pred)``)
  run by :class:`rewards.runner.RewardRunner` in worker processes under a hard per-call time
  limit; a call that fails or times out scores 0 and is counted.  The "extracted" column is
  :func:`rewards.math.extract_answer` of the completion.
* maj@k answer classes: extracted answers of one problem are grouped greedily in sample
  order; answer ``a_j`` joins the first earlier class whose representative ``a_i`` satisfies
  ``math_reward("\\boxed{a_j}", a_i) == 1`` (the representative plays the gold, as math-verify
  is asymmetric).  Identical normalised strings are merged without a call.  The pairwise
  checks run through the same reward runner, so they share its time limit.
* IF suites: :func:`if_verdicts`, a module-level reward run by the same runner, applies
  ``rewards.ifeval.check`` / ``rewards.ifbench.check`` strict and loose (``loose=True``: any
  of the 8 IFEval response variants passes) to every instruction of the prompt.  The text
  after the last ``</think>`` is scored (an unclosed ``<think>`` leaves an empty response,
  which fails every instruction, as IFBench's ``empty_output``), unless thinking is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from eval.suites.base import DataError, Suite

__all__ = ["Scorer", "if_verdicts", "if_response_text"]

_IF_OK = "ok"


def if_response_text(completion: str, strip_thinking: bool = True) -> str:
    """The response IF verifiers see: text after the last ``</think>`` ("" if unclosed)."""
    if not strip_thinking:
        return completion
    close = completion.rfind("</think>")
    if close >= 0:
        return completion[close + len("</think>") :]
    if "<think>" in completion:
        return ""
    return completion


def _checker(benchmark: str) -> Any:
    if benchmark == "ifbench":
        from rewards.ifbench import check

        return check
    from rewards.ifeval import check

    return check


def _registry(benchmark: str) -> Any:
    if benchmark == "ifbench":
        import rewards.ifbench as mod
    else:
        import rewards.ifeval as mod
    return getattr(mod, "REGISTRY", None)


def if_verdicts(
    completion: str, example: dict, *, benchmark: str = "ifeval", strip_thinking: bool = True
) -> dict[str, float]:
    """Strict and loose verdict of every instruction: ``{"s0", "l0", "s1", "l1", ..., "ok"}``.

    ``"ok"`` is 1.0 on success; a failed or timed-out call leaves it at the runner's failure
    score (0), which marks the sample as failed (all instructions then count as not followed).
    """
    check = _checker(benchmark)
    response = if_response_text(completion, strip_thinking)
    prompt = example.get("prompt")
    out: dict[str, float] = {}
    for j, (inst, kwargs) in enumerate(
        zip(example["instruction_id_list"], example["kwargs"], strict=True)
    ):
        if not response.strip():
            out[f"s{j}"] = out[f"l{j}"] = 0.0
            continue
        out[f"s{j}"] = float(bool(check(inst, kwargs, response, prompt)))
        out[f"l{j}"] = float(bool(check(inst, kwargs, response, prompt, loose=True)))
    out[_IF_OK] = 1.0
    return out


_WS = re.compile(r"\s+")


def _norm(answer: str) -> str:
    return _WS.sub("", answer).rstrip(".").removeprefix("$").removesuffix("$")


class Scorer:
    """Scores samples of any suite; owns the reward runners (one per scorer kind)."""

    def __init__(self, settings: Any) -> None:
        self.num_workers = int(getattr(settings, "score_workers", 2))
        self.timeout_s = float(getattr(settings, "score_timeout_s", 5.0))
        self.strip_thinking = bool(getattr(settings, "strip_thinking", True))
        self._runners: dict[str, Any] = {}
        self.failed = 0
        self.timed_out = 0
        self.errors: list[str] = []

    # -- runners ------------------------------------------------------------------------------

    def _runner(self, kind: str) -> Any:
        if kind not in self._runners:
            from rewards.runner import RewardRunner

            if kind == "math":
                specs = [{"name": "math"}]
            else:
                specs = [
                    {
                        "name": "eval.scoring:if_verdicts",
                        "key": kind,
                        "params": {"benchmark": kind, "strip_thinking": self.strip_thinking},
                    }
                ]
            self._runners[kind] = RewardRunner(
                specs, num_workers=self.num_workers, timeout_s=self.timeout_s
            )
        return self._runners[kind]

    def _run(
        self,
        kind: str,
        completions: Sequence[Sequence[str]],
        examples: Sequence[dict[str, Any]],
        num_tokens: Sequence[Sequence[int]] | None = None,
        finish_reasons: Sequence[Sequence[str]] | None = None,
    ) -> Any:
        batch = self._runner(kind).score(
            completions, examples, num_tokens=num_tokens, finish_reasons=finish_reasons
        )
        self.failed += batch.n_failed
        self.timed_out += batch.n_timeout
        for e in batch.errors:
            if len(self.errors) < 20 and e not in self.errors:
                self.errors.append(e)
        return batch

    # -- public API ---------------------------------------------------------------------------

    def validate(self, suite: Suite, examples: Sequence[dict[str, Any]]) -> None:
        """Fail before generation when an IF row names an instruction the verifiers lack."""
        if suite.is_math:
            return
        registry = _registry(suite.scorer)
        if registry is None:
            return
        for ex in examples:
            for inst in ex["instruction_id_list"]:
                if inst not in registry:
                    raise DataError(
                        f"{suite.name} row with key {ex['id']!r}: unknown instruction id {inst!r} "
                        f"(rewards.{suite.scorer} has {len(registry)} ids)"
                    )

    def score(
        self,
        suite: Suite,
        examples: Sequence[dict[str, Any]],
        completions: Sequence[Sequence[str]],
        num_tokens: Sequence[Sequence[int]],
        finish_reasons: Sequence[Sequence[str]],
    ) -> list[list[dict[str, Any]]]:
        """Per-sample score fields ``[B][G]`` to merge into the JSONL rows."""
        if suite.is_math:
            from rewards.math import extract_answer

            batch = self._run("math", completions, examples, num_tokens, finish_reasons)
            return [
                [
                    {"extracted": extract_answer(c), "score": float(batch.total[b][g])}
                    for g, c in enumerate(row)
                ]
                for b, row in enumerate(completions)
            ]
        batch = self._run(suite.scorer, completions, examples, num_tokens, finish_reasons)
        key = suite.scorer

        def verdict(name: str, b: int, g: int) -> float:
            arr = batch.components.get(f"{key}/{name}")
            return 0.0 if arr is None else arr[b][g]

        out = []
        for b, row in enumerate(completions):
            m = len(examples[b]["instruction_id_list"])
            rows = []
            for g in range(len(row)):
                ok = verdict(_IF_OK, b, g) == 1.0
                strict = [ok and verdict(f"s{j}", b, g) == 1.0 for j in range(m)]
                loose = [ok and verdict(f"l{j}", b, g) == 1.0 for j in range(m)]
                rows.append(
                    {
                        "score": float(all(strict)),
                        "if_strict": strict,
                        "if_loose": loose,
                        "instruction_id_list": list(examples[b]["instruction_id_list"]),
                        "score_failed": not ok,
                    }
                )
            out.append(rows)
        return out

    def answer_classes(self, answers: Sequence[Sequence[str | None]]) -> list[list[int | None]]:
        """Equivalence-class index of every sample's extracted answer (None: no answer)."""
        uniques: list[list[str]] = []  # per problem: distinct normalised answers, first-seen
        index: list[list[int | None]] = []  # per sample: position in uniques
        for row in answers:
            seen: dict[str, int] = {}
            u: list[str] = []
            idx: list[int | None] = []
            for a in row:
                if a is None or not a.strip():
                    idx.append(None)
                    continue
                k = _norm(a)
                if k not in seen:
                    seen[k] = len(u)
                    u.append(a.strip())
                idx.append(seen[k])
            uniques.append(u)
            index.append(idx)
        # pairwise checks: gold = earlier unique i, prediction = later unique j
        comps: list[list[str]] = []
        exs: list[dict[str, Any]] = []
        where: list[tuple[int, int]] = []
        for p, u in enumerate(uniques):
            for i in range(len(u) - 1):
                comps.append([f"\\boxed{{{u[j]}}}" for j in range(i + 1, len(u))])
                exs.append({"answer": u[i]})
                where.append((p, i))
        equal: dict[tuple[int, int, int], bool] = {}
        if comps:
            batch = self._run("math", comps, exs)
            for (p, i), row in zip(where, batch.total, strict=True):
                for off, v in enumerate(row):
                    equal[(p, i, i + 1 + off)] = v > 0.5
        result = []
        for p, (u, idx) in enumerate(zip(uniques, index, strict=True)):
            cls: list[int] = []
            for j in range(len(u)):
                rep = next((c for c in dict.fromkeys(cls) if equal.get((p, c, j))), j)
                cls.append(rep)
            result.append([None if x is None else cls[x] for x in idx])
        return result

    def describe(self) -> dict[str, Any]:
        return {
            "math": "rewards.math:math_accuracy via rewards.runner.RewardRunner",
            "ifeval": "rewards.ifeval.check strict/loose via eval.scoring:if_verdicts",
            "ifbench": "rewards.ifbench.check strict/loose via eval.scoring:if_verdicts",
            "timeout_s": self.timeout_s,
            "workers": self.num_workers,
            "strip_thinking_for_if": self.strip_thinking,
            "failed_calls": self.failed,
            "timed_out_calls": self.timed_out,
            "errors": self.errors,
        }

    def close(self) -> None:
        for r in self._runners.values():
            r.close()
        self._runners = {}
