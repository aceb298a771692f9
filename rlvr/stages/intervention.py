"""InT: self-proposed interventions for credit assignment, as an SFT stage before RL.

"Self-Proposed Interventions Enable Credit Assignment in LLM Reasoning" (Yang, Bai, Wu, Yang,
Setlur, Kumar, arXiv 2601.14209; public code intervention-training/int; notes in
../shared/specs/rewards_and_stages.md §7). Pipeline, per incorrect attempt of a problem:

1. split the attempt into substeps on blank lines (``"\\n\\n"``), numbered from 1;
2. the *same* model, shown the problem, the reference solution and the numbered substeps,
   names the first critical error and writes a one-step intervention, answering
   ``<intervention>{"content": ..., "location": k}</intervention>``; the **last** block is
   parsed (location strings become integers);
3. ``guided = "\\n\\n".join(substeps[:k-1]) + "\\n\\n" + content`` (content alone for k = 1);
   interventions that contain the gold answer are dropped (oracle leakage), one per attempt;
4. counterfactual check: continue ``guided`` as the assistant's own partial answer K times and
   keep the row iff at least one continuation verifies (rlvr's math verifier);
5. SFT on the kept rows: input = problem, target = the guided prefix + intervention only (the
   continuation is not trained on), then hand the model to RL.

Defaults follow the public code where the spec gives them (K_interv = 4, K_check = 32,
T = 0.7, top-p = 0.8, top-k = 20); the prompt below is our own condensed wording of the
paper's self-correct prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.math import math_reward
from rlvr.rollout import RolloutEngine, SamplingParams

SELF_CORRECT_PROMPT = """\
You are an expert mathematician grading a student's attempt against a reference solution.

Problem:
{problem}

Reference solution (high level):
{reference}

Student attempt, in numbered substeps:
{substeps}

Check every substep against the reference. Find the first critical error: a factual error or
logical fallacy that invalidates the reasoning and is not recovered from later. Then write one
intervention step in the student's voice, to be inserted before that error, that sketches the
right next step without stating the final answer. End with
<intervention>{{"content": "<the step>", "location": <substep number>}}</intervention>"""

_BLOCK = re.compile(r"<intervention>(.*?)</intervention>", re.DOTALL)


@dataclass(frozen=True)
class Intervention:
    content: str
    location: int  # 1-based substep index the intervention replaces (inserted before it)


def split_substeps(attempt: str) -> list[str]:
    return [s for s in attempt.split("\n\n") if s.strip()]


def self_correct_prompt(problem: str, reference: str, substeps: Sequence[str]) -> str:
    numbered = "\n\n".join(f"**Substep {i}:** {s}" for i, s in enumerate(substeps, start=1))
    return SELF_CORRECT_PROMPT.format(problem=problem, reference=reference, substeps=numbered)


def parse_intervention(text: str, num_substeps: int) -> Intervention | None:
    """The last ``<intervention>`` block, JSON repaired; None when missing or unusable."""
    blocks = _BLOCK.findall(text[-50_000:])
    if not blocks:
        return None
    raw = blocks[-1].strip()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        try:  # the usual breakage: raw newlines / backslashes inside the content string
            data = json.loads(raw.replace("\\", "\\\\").replace("\n", "\\n"))
        except json.JSONDecodeError:
            return None
    if not isinstance(data, dict):
        return None
    content = data.get("content")
    try:
        location = int(str(data.get("location", "")).strip())
    except ValueError:
        return None
    if not isinstance(content, str) or not content.strip():
        return None
    if not 1 <= location <= max(num_substeps, 1):
        return None
    return Intervention(content.strip(), location)


def guided_attempt(substeps: Sequence[str], intervention: Intervention) -> str:
    prefix = list(substeps[: intervention.location - 1])
    return "\n\n".join([*prefix, intervention.content])


def leaks_answer(content: str, answer: str) -> bool:
    a = answer.strip()
    return bool(a) and a in content


def _chat_ids(tokenizer: Any, user: str, assistant_prefix: str = "") -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(text + assistant_prefix, add_special_tokens=False)["input_ids"])


ProposeFn = Callable[[dict, list[str]], list[str]]


def model_proposer(
    engine: RolloutEngine, tokenizer: Any, *, k: int = 4, max_tokens: int = 2048, seed: int = 0
) -> ProposeFn:
    """K intervention proposals per attempt from the policy itself (temperature 0.7, top-p 0.8,
    top-k 20, as in the public code)."""

    def propose(row: dict, substeps: list[str]) -> list[str]:
        prompt = self_correct_prompt(row["prompt"], row.get("reference_solution", ""), substeps)
        sp = SamplingParams(
            n=k, temperature=0.7, top_p=0.8, top_k=20, max_tokens=max_tokens, seed=seed
        )
        return [c.text for c in engine.generate([_chat_ids(tokenizer, prompt)], sp)[0]]

    return propose


def counterfactual_passes(
    engine: RolloutEngine,
    tokenizer: Any,
    problem: str,
    guided: str,
    answer: str,
    *,
    k: int = 32,
    max_tokens: int = 1024,
    seed: int = 0,
) -> int:
    """How many of K continuations of ``guided`` (as the assistant's partial answer) verify."""
    sp = SamplingParams(n=k, temperature=0.7, top_p=0.8, top_k=20, max_tokens=max_tokens, seed=seed)
    group = engine.generate([_chat_ids(tokenizer, problem, guided)], sp)[0]
    return sum(int(math_reward(guided + c.text, answer) == 1.0) for c in group)


def build_intervention_rows(
    rows: Sequence[dict],
    propose: ProposeFn,
    engine: RolloutEngine,
    tokenizer: Any,
    *,
    k_check: int = 32,
    check_tokens: int = 1024,
    seed: int = 0,
) -> tuple[list[dict], dict[str, int]]:
    """Rows ``{prompt, answer, incorrect_attempt, reference_solution}`` -> SFT rows
    ``{prompt, completion=guided}`` that pass the counterfactual check, plus counts."""
    counts = {"attempts": 0, "no_intervention": 0, "leaked": 0, "failed_check": 0, "kept": 0}
    out = []
    for i, row in enumerate(rows):
        counts["attempts"] += 1
        substeps = split_substeps(row["incorrect_attempt"])
        chosen = None
        for text in propose(row, substeps):
            parsed = parse_intervention(text, len(substeps))
            if parsed is None:
                continue
            if leaks_answer(parsed.content, str(row["answer"])):
                counts["leaked"] += 1
                continue
            chosen = parsed  # one intervention per attempt
            break
        if chosen is None:
            counts["no_intervention"] += 1
            continue
        guided = guided_attempt(substeps, chosen)
        passes = counterfactual_passes(
            engine,
            tokenizer,
            row["prompt"],
            guided,
            str(row["answer"]),
            k=k_check,
            max_tokens=check_tokens,
            seed=seed + i,
        )
        if passes == 0:
            counts["failed_check"] += 1
            continue
        counts["kept"] += 1
        out.append({"prompt": row["prompt"], "completion": guided, "answer": row["answer"]})
    return out, counts


def run_int(
    model_path: str | Path,
    rows: Sequence[dict],
    out_dir: str | Path,
    *,
    propose: ProposeFn | None = None,
    k_interv: int = 4,
    k_check: int = 32,
    check_tokens: int = 1024,
    lr: float = 1e-6,
    steps: int = 100,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Propose -> filter -> counterfactual check -> SFT (TRL) on prefix + intervention."""
    from rlvr.rollout import build_engine
    from rlvr.stages.sft import run_sft

    engine = build_engine("hf", str(model_path))
    tokenizer = engine.tokenizer  # type: ignore[attr-defined]
    propose = propose or model_proposer(engine, tokenizer, k=k_interv, seed=seed)
    kept, counts = build_intervention_rows(
        rows, propose, engine, tokenizer, k_check=k_check, check_tokens=check_tokens, seed=seed
    )
    engine.close()
    if not kept:
        return {"counts": counts, "model_dir": None, "steps": 0}
    sft_rows = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "completion": [{"role": "assistant", "content": r["completion"]}],
        }
        for r in kept
    ]
    report = run_sft(
        model_path,
        sft_rows,
        out_dir,
        lr=lr,
        max_steps=steps,
        batch_size=batch_size,
        seed=seed,
        warmup_steps=0,
    )
    return {"counts": counts, **report}
