"""InT: self-proposed interventions for credit assignment, as an SFT stage before RL.

"Self-Proposed Interventions Enable Credit Assignment in LLM Reasoning" (Yang, Bai, Wu, Yang,
Setlur, Kumar, arXiv 2601.14209; public code intervention-training/int). Pipeline, per incorrect attempt of a problem:

1. split the attempt into substeps on blank lines (``"\\n\\n"``), numbered from 1;
2. the *same* model, in the source's two turns (``propose_interventions.py``:
   ``apply_self_correct_template``): (i) asked to solve the problem with a high-level reference,
   answered by its own attempt; (ii) told the gold answer and shown the numbered substeps, it
   logs a verification, names the first critical error, drafts a one-step intervention and
   self-checks the draft (no gold answer in it, no missed insight, placed before the error),
   answering ``<intervention>{"content": ..., "location": k}</intervention>``; the **last**
   block is parsed (the first integer of the location: ``"Substep 3"`` -> 3);
3. ``guided = "\\n\\n".join(substeps[:k-1]) + "\\n\\n" + content`` (content alone for k = 1);
   interventions that contain the gold answer are dropped (oracle leakage), one per attempt;
4. counterfactual check: continue ``guided`` as the assistant's own partial answer K times and
   keep the row iff at least one continuation verifies (rlvr's math verifier on the
   continuation alone, as the source grades it);
5. SFT on the kept rows: input = problem, target = the guided prefix + intervention only (the
   continuation is not trained on, and no EOS follows the target), then hand the model to RL.

:func:`reference_diff_proposer` is a rule-based stand-in for step 2 on tasks whose reference
solution is a full worked solution in the attempt's format (the arithmetic task, where a
1M-parameter model cannot follow the grading prompt): the intervention is the reference's text
up to the first character the attempt got wrong.

Defaults follow the public code where the spec gives them (K_interv = 4, K_check = 32,
T = 0.7, top-p = 0.8, top-k = 20); the prompts below are our own wording of the source's
two turns. Empty interventions are dropped here (the source keeps them).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.math import math_reward
from rlvr.data.prompts import chat_prompt_ids
from rlvr.rollout import RolloutEngine, SamplingParams

SOLVE_PROMPT = """\
Solve the problem below. A high-level reference solution is given as a guide.

Problem:
{problem}

Reference solution (high level):
{reference}"""

SELF_CORRECT_PROMPT = """\
Your answer above is incorrect: the correct final answer is {answer}. Here is your attempt
again, split into numbered substeps:

{substeps}

1. Verify each substep against the reference solution and write a short verification log.
2. Name the first critical error: a factual error or logical fallacy that invalidates the line
   of reasoning and is not recovered from later.
3. Draft one intervention step, in your own voice as the solver, to be inserted before that
   error, that sets the reasoning on the right track without stating the final answer.
4. Self-check the draft: does it contain "{answer}"? Does it miss a key insight? Is it placed
   after the critical error? If any answer is yes, redo the draft until all are no.

End with the final draft only, as
<intervention>{{"content": "<the step>", "location": <substep number>}}</intervention>
(content may be empty if no intervention helps)."""

log = logging.getLogger(__name__)

_BLOCK = re.compile(r"<intervention>(.*?)</intervention>", re.DOTALL)


@dataclass(frozen=True)
class Intervention:
    content: str
    location: int  # 1-based substep index the intervention replaces (inserted before it)


def split_substeps(attempt: str) -> list[str]:
    return [s for s in attempt.split("\n\n") if s.strip()]


def self_correct_prompt(answer: str, substeps: Sequence[str]) -> str:
    """The second user turn: numbered substeps, the gold answer, the self-check."""
    numbered = "\n\n".join(f"**Substep {i}:** {s}" for i, s in enumerate(substeps, start=1))
    return SELF_CORRECT_PROMPT.format(answer=answer, substeps=numbered)


def proposal_messages(row: dict, substeps: Sequence[str]) -> list[dict]:
    """The source's two turns: (1) solve with the reference, answered by the attempt itself;
    (2) the self-correct request with the gold answer and the draft self-check."""
    return [
        {
            "role": "user",
            "content": SOLVE_PROMPT.format(
                problem=row["prompt"], reference=row.get("reference_solution", "")
            ),
        },
        {"role": "assistant", "content": "\n\n".join(substeps)},
        {"role": "user", "content": self_correct_prompt(str(row["answer"]), substeps)},
    ]


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
    digits = re.search(r"\d+", str(data.get("location", "")))  # "Substep 3" -> 3, as the source
    if digits is None:
        return None
    location = int(digits.group())
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


def _chat_ids(tokenizer: Any, user: str | list[dict], assistant_prefix: str = "") -> list[int]:
    """Chat prompt (a user message, or a list of messages) plus a partial assistant answer
    (rlvr/data/prompts.py)."""
    return chat_prompt_ids(tokenizer, user, assistant_prefix=assistant_prefix)


_UNIT = re.compile(r"<[^<>\s]{1,20}>|\\[A-Za-z]+|.", re.DOTALL)


def reference_diff_proposer(row: dict, substeps: list[str]) -> list[str]:
    """A rule-based stand-in for the model's proposal, for tasks whose reference solution is a
    complete worked solution in the attempt's own format (e.g. the arithmetic task).

    The first substep k that differs from the reference's substep k holds the error. Both are
    cut into units (a tag such as ``<think>``, a LaTeX command such as ``\\boxed``, or one
    character); the intervention is the reference's substep k up to and including its first
    unit that the attempt got wrong (the shared start plus a one-unit correction), at
    location k. Returns one proposal in the model's ``<intervention>`` format, or none when
    the attempt agrees with the reference on every substep it has.
    """
    reference = split_substeps(str(row.get("reference_solution", "")))
    for k, (attempt_step, ref_step) in enumerate(zip(substeps, reference, strict=False), start=1):
        if attempt_step == ref_step:
            continue
        mine, ref = _UNIT.findall(attempt_step), _UNIT.findall(ref_step)
        shared = 0
        while shared < min(len(mine), len(ref)) and mine[shared] == ref[shared]:
            shared += 1
        content = "".join(ref[: shared + 1])
        block = json.dumps({"content": content, "location": k})
        return [f"<intervention>{block}</intervention>"]
    return []


ProposeFn = Callable[[dict, list[str]], list[str]]


def model_proposer(
    engine: RolloutEngine, tokenizer: Any, *, k: int = 4, max_tokens: int = 2048, seed: int = 0
) -> ProposeFn:
    """K intervention proposals per attempt from the policy itself (temperature 0.7, top-p 0.8,
    top-k 20, as in the public code)."""

    def propose(row: dict, substeps: list[str]) -> list[str]:
        messages = proposal_messages(row, substeps)
        sp = SamplingParams(
            n=k, temperature=0.7, top_p=0.8, top_k=20, max_tokens=max_tokens, seed=seed
        )
        return [c.text for c in engine.generate([_chat_ids(tokenizer, messages)], sp)[0]]

    return propose


def counterfactual_passes(
    engine: RolloutEngine,
    tokenizer: Any,
    problem: str | list[dict],
    guided: str,
    answer: str,
    *,
    k: int = 32,
    max_tokens: int = 1024,
    seed: int = 0,
    grade_prefix: bool = False,
) -> int:
    """How many of K continuations of ``guided`` (as the assistant's partial answer) verify.

    The continuation alone is graded, as in the source (``filter_guided_rollouts`` scores the
    generated text's last ``boxed{}``), so a gold answer already in the prefix cannot keep a
    useless intervention; ``grade_prefix=True`` grades ``guided + continuation`` (rlvr's earlier
    reading). ``problem`` is the user message, or the whole chat prompt as messages."""
    sp = SamplingParams(n=k, temperature=0.7, top_p=0.8, top_k=20, max_tokens=max_tokens, seed=seed)
    group = engine.generate([_chat_ids(tokenizer, problem, guided)], sp)[0]
    graded = [(guided + c.text) if grade_prefix else c.text for c in group]
    return sum(int(math_reward(text, answer) == 1.0) for text in graded)


def _intervene(
    i: int,
    row: dict,
    propose: ProposeFn,
    engine: RolloutEngine,
    tokenizer: Any,
    k_check: int,
    check_tokens: int,
    seed: int,
) -> dict:
    """One attempt's outcome: ``{outcome, leaked, kept}`` (``kept``: the SFT row or None)."""
    substeps = split_substeps(row["incorrect_attempt"])
    chosen, leaked = None, 0
    for text in propose(row, substeps):
        parsed = parse_intervention(text, len(substeps))
        if parsed is None:
            continue
        if leaks_answer(parsed.content, str(row["answer"])):
            leaked += 1
            continue
        chosen = parsed  # one intervention per attempt
        break
    if chosen is None:
        return {"outcome": "leaked" if leaked else "no_intervention", "leaked": leaked}
    guided = guided_attempt(substeps, chosen)
    passes = counterfactual_passes(
        engine,
        tokenizer,
        row.get("messages") or row["prompt"],
        guided,
        str(row["answer"]),
        k=k_check,
        max_tokens=check_tokens,
        seed=seed + i,
    )
    if passes == 0:
        return {"outcome": "failed_check", "leaked": leaked}
    kept = {"prompt": row["prompt"], "completion": guided, "answer": row["answer"]}
    if row.get("messages"):
        kept["messages"] = row["messages"]
    return {"outcome": "kept", "leaked": leaked, "kept": kept, "passes": passes}


def _read_journal(journal: Path, key: str) -> dict[int, dict]:
    """Outcomes recorded by an interrupted run with the same key (else none)."""
    if not journal.is_file():
        return {}
    lines = journal.read_text().splitlines()
    if not lines or json.loads(lines[0]).get("key") != key:
        return {}
    done = {}
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the crash
            break
        done[rec["i"]] = rec
    return done


def build_intervention_rows(
    rows: Sequence[dict],
    propose: ProposeFn,
    engine: RolloutEngine,
    tokenizer: Any,
    *,
    k_check: int = 32,
    check_tokens: int = 1024,
    seed: int = 0,
    journal: Path | None = None,
    journal_key: str = "",
) -> tuple[list[dict], dict[str, int]]:
    """Rows ``{prompt, answer, incorrect_attempt, reference_solution}`` -> SFT rows
    ``{prompt, completion=guided}`` that pass the counterfactual check, plus counts.

    Every attempt lands in exactly one of ``no_intervention`` (no proposal parsed),
    ``leaked`` (every parsed proposal contained the answer), ``failed_check`` and ``kept``;
    ``leaked_proposals`` counts the dropped proposals themselves. With a ``journal`` file,
    each attempt's outcome is appended as it is decided, and a re-run with the same
    ``journal_key`` skips the attempts already decided (the check is the costly part)."""
    counts = {
        "attempts": 0,
        "no_intervention": 0,
        "leaked": 0,
        "failed_check": 0,
        "kept": 0,
        "leaked_proposals": 0,
    }
    done = _read_journal(journal, journal_key) if journal is not None else {}
    sink = None
    if journal is not None:
        if not done:
            journal.parent.mkdir(parents=True, exist_ok=True)
            journal.write_text(json.dumps({"key": journal_key}) + "\n")
        sink = journal.open("a")
    out = []
    try:
        for i, row in enumerate(rows):
            rec = done.get(i)
            if rec is None:
                rec = _intervene(i, row, propose, engine, tokenizer, k_check, check_tokens, seed)
                if sink is not None:
                    sink.write(json.dumps({"i": i, **rec}) + "\n")
                    sink.flush()
            counts["attempts"] += 1
            counts[rec["outcome"]] += 1
            counts["leaked_proposals"] += rec["leaked"]
            if rec["outcome"] == "kept":
                out.append(rec["kept"])
            if (i + 1) % max(1, len(rows) // 10) == 0 or i + 1 == len(rows):
                log.info("int: %d/%d attempts decided, %d kept", i + 1, len(rows), counts["kept"])
    finally:
        if sink is not None:
            sink.close()
    return out, counts


def sft_rows_without_eos(tokenizer: Any, kept: Sequence[dict], max_length: int) -> list[dict]:
    """Pre-tokenized SFT rows: chat prompt + guided prefix, loss on the guided prefix only.

    No end-of-turn or EOS token follows the target (the public code's ``*_noeos`` template):
    the model learns to *start* its answer with the prefix and intervention, not to stop there.
    Rows are ``{input_ids, completion_mask}``, the format TRL's SFTTrainer takes as is.
    """
    out = []
    for r in kept:
        messages = r.get("messages") or [{"role": "user", "content": r["prompt"]}]
        prompt = _chat_ids(tokenizer, messages)
        full = _chat_ids(tokenizer, messages, r["completion"])
        shared = 0
        while shared < min(len(prompt), len(full)) and prompt[shared] == full[shared]:
            shared += 1
        ids = full[:max_length]
        mask = [0] * min(shared, len(ids)) + [1] * max(0, len(ids) - shared)
        if any(mask):
            out.append({"input_ids": ids, "completion_mask": mask})
    return out


def run_int(
    model_path: str | Path,
    rows: Sequence[dict],
    out_dir: str | Path,
    *,
    propose: ProposeFn | None = None,
    k_interv: int = 4,
    k_check: int = 32,
    check_tokens: int = 1024,
    propose_tokens: int = 2048,
    lr: float = 1e-6,
    steps: int = 100,
    batch_size: int = 16,
    grad_accum: int = 1,
    schedule: str = "cosine",
    max_length: int = 2048,
    seed: int = 0,
    logging_dir: str | Path | None = None,
    gradient_checkpointing: bool = False,
    engine: str = "hf",
    journal: Path | None = None,
    journal_key: str = "",
) -> dict[str, Any]:
    """Propose -> filter -> counterfactual check -> SFT (TRL) on prefix + intervention.

    Returns ``counts`` (attempts, no_intervention, leaked, failed_check, kept), the ``kept``
    rows and, when any row was kept, the SFT report with ``model_dir``; ``model_dir`` is None
    when nothing passed the counterfactual check (no training happens then).
    """
    from rlvr.config import ModelConfig
    from rlvr.stages.common import open_engine
    from rlvr.stages.sft import run_sft

    sampler = open_engine(ModelConfig(path=str(model_path)), engine, seed=seed)
    try:
        tokenizer = sampler.tokenizer
        propose = propose or model_proposer(
            sampler, tokenizer, k=k_interv, max_tokens=propose_tokens, seed=seed
        )
        kept, counts = build_intervention_rows(
            rows,
            propose,
            sampler,
            tokenizer,
            k_check=k_check,
            check_tokens=check_tokens,
            seed=seed,
            journal=journal,
            journal_key=journal_key,
        )
    finally:
        sampler.close()
    if not kept:
        return {"counts": counts, "kept": [], "model_dir": None, "steps": 0}
    report = run_sft(
        model_path,
        sft_rows_without_eos(tokenizer, kept, max_length),
        out_dir,
        lr=lr,
        max_steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        seed=seed,
        warmup_steps=0,
        schedule=schedule,
        max_length=max_length,
        logging_dir=logging_dir,
        gradient_checkpointing=gradient_checkpointing,
    )
    return {"counts": counts, "kept": kept, **report}
