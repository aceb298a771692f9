"""Evaluation run: prompts -> rollout engine -> scorer -> per-sample JSONL -> summary.

One run evaluates one model on several suites:

1. load and validate every suite's data first (a broken file fails before any model loads);
2. render prompts (suite template, optional system prompt, the tokenizer's chat template with
   ``add_generation_prompt=True`` unless disabled) and tokenize them;
3. generate ``n`` samples per problem with an ``rlvr.rollout`` engine (vLLM batched over all
   prompts of a chunk x n, or transformers.generate), in chunks of contiguous problems;
4. score every sample with the training reward code (``eval.scoring``: ``rewards.math``
   through the process-pool ``RewardRunner`` under hard time limits; the IF verifiers);
5. append one JSON line per sample to ``<out>/samples/<suite>.jsonl`` after each chunk, so a
   killed run loses at most one chunk; a rerun with the same ``--out`` skips finished
   samples (and generates only the missing sample indices when ``n`` grew);
6. compute metrics (``eval.report``) from the JSONL rows and write ``summary.json`` and
   ``results.md``.

Seeding: the generate call for problems ``p0..p1`` of a suite gets seed
``base + p0 * n`` with ``base = (seed * 1_000_003 + crc32(suite)) mod 2^31``; the vLLM engine
gives prompt i of a call seed ``call_seed + i * n`` and its samples ``+ j``, so sample j of
problem p always has seed ``base + p * n + j`` whatever the chunking or resume point.  The HF
engine seeds torch's RNG per call, so its samples are reproducible for the same chunking.

Dynamic abstention (``abstain`` = a value head from ``rlvr abstain-train``; hf engine only,
vLLM exposes no per-step hidden states): every generate call runs twice with the same seed,
once with the gate (EOS forced where V̂_t < c) and once without it, recording the value trace.
The full run's completion is scored as usual (its verdict is the sample's correct-if-answered
y; the gated completion of an abstained sample is withheld, not scored as wrong); the row gains
``abstained``, ``abstain_step``, ``abstain_tokens`` (tokens the gated run used), ``value_trace``
and ``gated_matches_full`` (the gated tokens are the full run's up to the gate). Each suite's
summary gets an ``abstention`` section: the measured gated run
(:func:`eval.metrics.abstention_metrics`: coverage, selective accuracy, tokens saved, utility at
r_⊥), the baselines never / pre-generation / post-generation and the dynamic rule replayed on
the traces at c, and curves over the threshold (:mod:`rlvr.abstention.replay`).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eval.config import EvalRecipe
from eval.report import compute_suite_metrics, markdown_report
from eval.suites import (
    DataSource,
    Suite,
    get_suite,
    load_examples,
    render_prompt,
)

__all__ = ["EvalSettings", "ResumeError", "SuiteRun", "run_eval"]

VERSION = "0.1.0"


class ResumeError(RuntimeError):
    """The output directory holds a run with different settings (or a corrupt sample file)."""


EvalSettings = EvalRecipe
"""All settings of an eval run: the ``rlvr eval`` recipe section itself
(:class:`eval.config.EvalRecipe`, one definition of the keys, defaults and checks); ``None``
sampling values mean "the suite's default" (:meth:`~eval.config.EvalRecipe.sampling_for`)."""


@dataclass
class SuiteRun:
    """One suite's data, prompts and settings inside a run."""

    suite: Suite
    examples: list[dict[str, Any]]
    source: DataSource
    sampling: dict[str, Any]
    prompts: list[str] = field(default_factory=list)
    prompt_ids: list[list[int]] = field(default_factory=list)
    seed_base: int = 0
    gen_seconds: float = 0.0
    gen_tokens: int = 0
    gen_samples: int = 0
    score_seconds: float = 0.0
    clamped_max_tokens: int | None = None


# --------------------------------------------------------------------------- prompts


def load_tokenizer(model: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)


def build_prompt_text(
    tokenizer: Any,
    user: str,
    system_prompt: str | None,
    chat_template: bool,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> str:
    """Full prompt text: the chat template applied to [system?, user], or the raw text
    (rlvr/data/prompts.py, as training builds it).

    ``chat_template_kwargs`` go to the template (e.g. Qwen3's ``enable_thinking``).
    """
    from rlvr.data.prompts import check_chat_template, prompt_messages, prompt_text

    if chat_template:
        check_chat_template(tokenizer, "pass --no-chat-template to use raw prompts")
    return prompt_text(
        tokenizer,
        prompt_messages(user, system_prompt),
        use_chat_template=chat_template,
        chat_template_kwargs=chat_template_kwargs,
    )


def scoring_text(prompt: str, completion: str) -> str:
    """The text scorers see: a prompt that opens ``<think>`` (R1-style templates end the
    generation prompt with it) has that tag put back in front of the completion, so a
    thought that never closes is recognised as unfinished."""
    if prompt.rstrip().endswith("<think>") and "<think>" not in completion:
        return "<think>\n" + completion
    return completion


def tokenize_prompt(tokenizer: Any, text: str, chat_template: bool) -> list[int]:
    from rlvr.data.prompts import encode_prompt

    # the chat template already holds any BOS; raw prompts get the tokenizer's specials
    return encode_prompt(tokenizer, text, add_special_tokens=not chat_template)


def model_context_length(model: str, settings: EvalSettings) -> int | None:
    if settings.max_model_len is not None:
        return settings.max_model_len
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model, trust_remote_code=settings.trust_remote_code)
    except Exception:  # noqa: BLE001 - no config: no clamping
        return None
    return getattr(cfg, "max_position_embeddings", None)


def decode_completion(tokenizer: Any, token_ids: Sequence[int], finish_reason: str) -> str:
    """Completion text with special tokens kept (so ``<think>`` survives), minus the end token.

    The engines return the EOS token that stopped a sample; it is dropped (whichever special
    token the model's generation config uses, e.g. ``<|im_end|>`` or ``<|eot_id|>``), as are
    trailing pad tokens.
    """
    drop = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}
    ids = list(token_ids)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    if finish_reason == "stop" and ids and ids[-1] in special:
        ids.pop()
    while ids and ids[-1] in drop:
        ids.pop()
    return tokenizer.decode(ids, skip_special_tokens=False)


# --------------------------------------------------------------------------- samples files


def samples_path(out: Path, suite: str) -> Path:
    return out / "samples" / f"{suite}.jsonl"


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Rows of a samples file; a torn last line (killed mid-write) is dropped and truncated."""
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    good_bytes = 0
    with path.open("rb") as f:
        lines = f.readlines()
    for i, raw in enumerate(lines, start=1):
        try:
            row = json.loads(raw)
            if not isinstance(row, dict) or "id" not in row or "sample" not in row:
                raise ValueError("not a sample row")
        except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as e:
            if i == len(lines):  # torn tail: drop it
                with path.open("r+b") as f:
                    f.truncate(good_bytes)
                break
            raise ResumeError(
                f"{path}:{i}: corrupt sample row ({e}); delete the file to redo"
            ) from e
        if not raw.endswith(b"\n"):
            with path.open("ab") as f:
                f.write(b"\n")
        rows.append(row)
        good_bytes += len(raw)
    return rows


def _append_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _identity(settings: EvalSettings, runs: Sequence[SuiteRun]) -> dict[str, Any]:
    """Settings that change samples; a resumed run must match them exactly."""
    return {
        "model": settings.model,
        "engine": settings.engine,
        "soft_thinking": settings.soft_identity(),
        "abstention": settings.abstain_identity(),
        "seed": settings.seed,
        "chat_template": settings.chat_template,
        "system_prompt": settings.system_prompt,
        "chat_template_kwargs": settings.chat_template_kwargs,
        "strip_thinking": settings.strip_thinking,
        "dtype": settings.dtype,
        "suites": {
            r.suite.name: {
                **{
                    k: r.sampling[k]
                    for k in ("temperature", "top_p", "top_k", "max_tokens", "template_text")
                },
                "max_tokens_effective": r.clamped_max_tokens or r.sampling["max_tokens"],
            }
            for r in runs
        },
    }


def _check_resume(out: Path, identity: dict[str, Any], overwrite: bool) -> None:
    path = out / "run.json"
    if overwrite:
        for suite_name in identity["suites"]:
            p = samples_path(out, suite_name)
            if p.exists():
                p.unlink()
    elif path.exists():
        old = json.loads(path.read_text())
        if "backend" in old and "engine" not in old:  # written before the key was renamed
            old["engine"] = old.pop("backend")
        diffs = []
        for key in identity:
            if key == "suites":
                continue
            if old.get(key) != identity[key]:
                diffs.append(f"{key}: {old.get(key)!r} -> {identity[key]!r}")
        for name, cfg in identity["suites"].items():
            prev = old.get("suites", {}).get(name)
            if prev is not None and prev != cfg:
                changed = [k for k in cfg if prev.get(k) != cfg[k]]
                diffs.append(f"{name}: {', '.join(changed)} changed")
        if diffs:
            raise ResumeError(
                f"{out} holds a run with other settings ({'; '.join(diffs)}); "
                "use another --out or pass --overwrite"
            )
        identity = {**old, **identity, "suites": {**old.get("suites", {}), **identity["suites"]}}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=2, ensure_ascii=False))


# --------------------------------------------------------------------------- run


def _seed_base(seed: int, suite: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(suite.encode())) % (2**31)


def _default_chunk(engine: str, n: int) -> int:
    budget = 512 if engine == "vllm" else 32
    return max(1, budget // n)


def _pending(
    examples: Sequence[dict[str, Any]], done: dict[str, set[int]], n: int
) -> list[tuple[int, list[int]]]:
    """(problem index, missing sample indices) for every unfinished problem."""
    out = []
    for i, ex in enumerate(examples):
        missing = [s for s in range(n) if s not in done.get(ex["id"], set())]
        if missing:
            out.append((i, missing))
    return out


def _calls(pending: list[tuple[int, list[int]]], chunk: int) -> list[list[tuple[int, list[int]]]]:
    """Split pending work into generate calls: contiguous problems, same missing samples."""
    calls: list[list[tuple[int, list[int]]]] = []
    for item in pending:
        cur = calls[-1] if calls else None
        if (
            cur is not None
            and len(cur) < chunk
            and cur[-1][0] + 1 == item[0]
            and cur[-1][1] == item[1]
        ):
            cur.append(item)
        else:
            calls.append([item])
    return calls


def prepare_suites(settings: EvalSettings) -> list[SuiteRun]:
    """Load, validate and limit every suite's data and resolve its sampling settings."""
    runs = []
    names = []
    for raw in settings.suites:
        suite = get_suite(raw)
        if suite.name in names:
            raise ValueError(f"suite {suite.name!r} listed twice")
        names.append(suite.name)
        examples, source = load_examples(
            suite, settings.data_dir, settings.data_files.get(suite.name)
        )
        if settings.limit is not None:
            if settings.limit < 1:
                raise ValueError(f"--limit must be >= 1, got {settings.limit}")
            examples = examples[: settings.limit]
        runs.append(SuiteRun(suite, examples, source, settings.sampling_for(suite)))
    return runs


def run_eval(
    settings: EvalSettings,
    *,
    engine: Any = None,
    tokenizer: Any = None,
    scorer_factory: Callable[[EvalSettings], Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) an evaluation and return the summary dict (also written to disk).

    ``engine`` / ``tokenizer`` may be given (tests, benchmarks sharing one engine); otherwise
    they are built from ``settings``. The engine passed in is not closed.
    """
    from eval.scoring import Scorer

    t_start = time.perf_counter()
    if settings.soft_thinking and settings.engine != "hf":
        raise ValueError(
            f"soft thinking runs on the hf engine (vLLM takes no per-step embedding inputs); "
            f"got engine {settings.engine!r}: use --engine hf"
        )
    settings.soft_params()  # validates the soft settings before anything loads
    gate = settings.abstain_gate()  # a missing / broken head fails before anything loads
    if gate is not None and (settings.engine != "hf" or settings.soft_thinking):
        raise ValueError(
            "--abstain needs per-step hidden states, which only the hf engine exposes (vLLM "
            "gives its sampler no hidden states; soft thinking is not supported): use "
            f"--engine hf (got {settings.engine!r}"
            + (" with soft thinking)" if settings.soft_thinking else ")")
        )
    out = Path(settings.out)
    runs = prepare_suites(settings)
    if tokenizer is None:
        tokenizer = load_tokenizer(settings.model, settings.trust_remote_code)
    ctx = model_context_length(settings.model, settings)
    for r in runs:
        r.seed_base = _seed_base(settings.seed, r.suite.name)
        for ex in r.examples:
            user = render_prompt(r.suite, ex, r.sampling["template_text"])
            text = build_prompt_text(
                tokenizer,
                user,
                settings.system_prompt,
                settings.chat_template,
                settings.chat_template_kwargs,
            )
            r.prompts.append(text)
            r.prompt_ids.append(tokenize_prompt(tokenizer, text, settings.chat_template))
        if ctx is not None:
            longest = max(len(p) for p in r.prompt_ids)
            if longest >= ctx:
                idx = max(range(len(r.prompt_ids)), key=lambda i: len(r.prompt_ids[i]))
                raise ValueError(
                    f"{r.suite.name} {r.examples[idx]['id']!r}: prompt has {longest} tokens, "
                    f"the model context is {ctx}; use --limit / --max-model-len"
                )
            if longest + r.sampling["max_tokens"] > ctx:
                r.clamped_max_tokens = ctx - longest
                log(
                    f"[{r.suite.name}] max_tokens {r.sampling['max_tokens']} clamped to "
                    f"{r.clamped_max_tokens} (model context {ctx}, longest prompt {longest})"
                )
    scorer = (scorer_factory or Scorer)(settings)
    try:
        for r in runs:
            scorer.validate(r.suite, r.examples)
        _check_resume(out, _identity(settings, runs), settings.overwrite)
    except BaseException:
        scorer.close()
        raise

    done_rows: dict[str, list[dict[str, Any]]] = {}
    pending_total = 0
    for r in runs:
        rows = read_samples(samples_path(out, r.suite.name))
        done_rows[r.suite.name] = rows
        done: dict[str, set[int]] = {}
        for row in rows:
            done.setdefault(str(row["id"]), set()).add(int(row["sample"]))
        pending_total += sum(len(m) for _, m in _pending(r.examples, done, r.sampling["n"]))

    own_engine = False
    try:
        if pending_total:
            if engine is None:
                from rlvr.console import status
                from rlvr.rollout import build_engine

                with status(f"starting the {settings.engine} engine on {settings.model}", progress):
                    engine = build_engine(
                        settings.engine,
                        settings.model,
                        dtype=settings.dtype,
                        seed=settings.seed,
                        max_model_len=settings.max_model_len,
                        trust_remote_code=settings.trust_remote_code,
                        gpu_memory_utilization=settings.gpu_memory_utilization,
                        kv_cache_gib=settings.kv_cache_gib,
                        soft=settings.soft_params(),
                    )
                own_engine = True
            _generate_all(
                settings,
                runs,
                done_rows,
                engine,
                tokenizer,
                scorer,
                out,
                pending_total,
                progress,
                gate,
            )
        summary = _summarize(settings, runs, done_rows, scorer, tokenizer, ctx)
    finally:
        if own_engine and engine is not None:
            engine.close()
        scorer.close()
    summary["timing"]["total_seconds"] = time.perf_counter() - t_start
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    (out / "results.md").write_text(markdown_report(summary))
    return summary


def _generate_all(
    settings: EvalSettings,
    runs: Sequence[SuiteRun],
    done_rows: dict[str, list[dict[str, Any]]],
    engine: Any,
    tokenizer: Any,
    scorer: Any,
    out: Path,
    total: int,
    progress: bool,
    gate: Any = None,
) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from rlvr.console import console
    from rlvr.rollout import SamplingParams

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        console=console(),  # the log's console: log lines print above the bar
    )
    with bar:
        for r in runs:
            n = r.sampling["n"]
            rows = done_rows[r.suite.name]
            done: dict[str, set[int]] = {}
            for row in rows:
                done.setdefault(str(row["id"]), set()).add(int(row["sample"]))
            pending = _pending(r.examples, done, n)
            todo = sum(len(m) for _, m in pending)
            if not todo:
                continue
            task = bar.add_task(r.suite.name, total=todo)
            chunk = settings.chunk_size or _default_chunk(settings.engine, n)
            max_tokens = r.clamped_max_tokens or r.sampling["max_tokens"]
            for call in _calls(pending, chunk):
                idxs = [i for i, _ in call]
                missing = call[0][1]
                params = SamplingParams(
                    n=len(missing),
                    temperature=r.sampling["temperature"],
                    top_p=r.sampling["top_p"],
                    top_k=r.sampling["top_k"],
                    max_tokens=max_tokens,
                    seed=r.seed_base + idxs[0] * n + missing[0],
                )
                t0 = time.perf_counter()
                gated = None
                if gate is not None:
                    gated, outs = _generate_with_gate(
                        engine, gate, [r.prompt_ids[i] for i in idxs], params
                    )
                else:
                    outs = engine.generate([r.prompt_ids[i] for i in idxs], params)
                r.gen_seconds += time.perf_counter() - t0
                if len(outs) != len(idxs) or any(len(o) != len(missing) for o in outs):
                    raise RuntimeError(
                        f"engine returned {[len(o) for o in outs]} completions for "
                        f"{len(idxs)} prompts x {len(missing)}"
                    )
                examples = [r.examples[i] for i in idxs]
                texts = [
                    [decode_completion(tokenizer, c.token_ids, c.finish_reason) for c in o]
                    for o in outs
                ]
                ntok = [[len(c.token_ids) for c in o] for o in outs]
                reasons = [[c.finish_reason for c in o] for o in outs]
                t0 = time.perf_counter()
                to_score = [
                    [scoring_text(r.prompts[i], t) for t in row]
                    for i, row in zip(idxs, texts, strict=True)
                ]
                scored = scorer.score(r.suite, examples, to_score, ntok, reasons)
                r.score_seconds += time.perf_counter() - t0
                new_rows = []
                for b, i in enumerate(idxs):
                    ex = r.examples[i]
                    for j, s in enumerate(missing):
                        row = {
                            "suite": r.suite.name,
                            "id": ex["id"],
                            "sample": s,
                            "prompt": r.prompts[i],
                            "completion": texts[b][j],
                            "num_tokens": ntok[b][j],
                            "finish_reason": reasons[b][j],
                            **scored[b][j],
                        }
                        if r.suite.is_math:
                            row["answer"] = ex["answer"]
                        if gated is not None:
                            row.update(_abstention_fields(gated[b][j], outs[b][j]))
                        new_rows.append(row)
                _append_rows(samples_path(out, r.suite.name), new_rows)
                rows.extend(new_rows)
                r.gen_tokens += sum(map(sum, ntok))
                r.gen_samples += len(new_rows)
                bar.advance(task, len(new_rows))


def _generate_with_gate(
    engine: Any, gate: Any, prompts: list[list[int]], params: Any
) -> tuple[list[list[Any]], list[list[Any]]]:
    """(gated, full) completions of the same call and seed: the gate enforcing, then only
    recording the value trace."""
    from rlvr.abstention import AbstentionGate, attach_gate

    observe = AbstentionGate(
        gate.head, gate.threshold, calibrator=gate.calibrator, enforce=False, trace=True
    )
    try:
        attach_gate(engine, gate)
        gated = engine.generate(prompts, params)
        attach_gate(engine, observe)
        full = engine.generate(prompts, params)
    finally:
        if hasattr(engine, "abstention"):
            engine.abstention = None
    return gated, full


def _abstention_fields(gated: Any, full: Any) -> dict[str, Any]:
    used = len(gated.token_ids)
    shared = used - 1 if gated.abstained else used  # the forced EOS is the gate's own token
    return {
        "abstained": bool(gated.abstained),
        "abstain_step": gated.abstain_step,
        "abstain_tokens": used,
        "value_trace": [round(float(v), 6) for v in full.value_trace or []],
        "gated_matches_full": gated.token_ids[:shared] == full.token_ids[:shared]
        and (gated.abstained or gated.token_ids == full.token_ids),
    }


def abstention_section(
    rows: Sequence[dict[str, Any]], threshold: float, r_abstain: float, min_tokens: int
) -> dict[str, Any]:
    """A suite's abstention results from its rows (see the module docstring)."""
    from eval.metrics import abstention_metrics, is_correct
    from rlvr.abstention.replay import RULES, curves, rule_metrics

    correct = [is_correct(row["score"]) for row in rows]
    traces = [row["value_trace"] for row in rows]
    return {
        "threshold": threshold,
        "r_abstain": r_abstain,
        "min_tokens": min_tokens,
        "gated": abstention_metrics(
            [row["abstained"] for row in rows],
            correct,
            [row["abstain_tokens"] for row in rows],
            [row["num_tokens"] for row in rows],
            r_abstain,
        ),
        "rules": {
            rule: rule_metrics(rule, traces, correct, threshold, r_abstain, min_tokens)
            for rule in RULES
        },
        "gated_matches_full": sum(bool(row["gated_matches_full"]) for row in rows)
        / max(len(rows), 1),
        "curves": curves(traces, correct, min_tokens=min_tokens),
    }


def _summarize(
    settings: EvalSettings,
    runs: Sequence[SuiteRun],
    done_rows: dict[str, list[dict[str, Any]]],
    scorer: Any,
    tokenizer: Any,
    ctx: int | None,
) -> dict[str, Any]:
    suites: dict[str, Any] = {}
    total_gen_s = total_tok = 0.0
    for r in runs:
        n = r.sampling["n"]
        wanted = {ex["id"] for ex in r.examples}
        rows = [
            row
            for row in done_rows[r.suite.name]
            if str(row["id"]) in wanted and int(row["sample"]) < n
        ]
        classes = None
        if r.suite.is_math and n > 1:
            by_id: dict[str, dict[int, Any]] = {}
            for row in rows:
                by_id.setdefault(str(row["id"]), {})[int(row["sample"])] = row.get("extracted")
            answers = [[by_id[ex["id"]][s] for s in range(n)] for ex in r.examples]
            classes = scorer.answer_classes(answers)
        metrics = compute_suite_metrics(
            r.suite.name, r.suite.scorer, rows, r.examples, n, r.suite.breakdown, classes
        )
        sampling = {k: v for k, v in r.sampling.items() if k != "template_text"}
        if r.clamped_max_tokens is not None:
            sampling["max_tokens_effective"] = r.clamped_max_tokens
        abstention = None
        if settings.abstain is not None:
            ident = settings.abstain_identity() or {}
            c = ident["threshold"]
            r_abs = settings.r_abstain if settings.r_abstain is not None else c
            abstention = abstention_section(rows, c, r_abs, ident["min_tokens"])
        suites[r.suite.name] = {
            "abstention": abstention,
            "scorer": r.suite.scorer,
            "headline": r.suite.headline,
            "headline_value": metrics.get(r.suite.headline),
            "settings": {**sampling, "template_text": r.sampling["template_text"]},
            "data": {**asdict(r.source), "num_evaluated": len(r.examples)},
            "metrics": metrics,
            "timing": {
                "generate_seconds": r.gen_seconds,
                "generated_tokens": r.gen_tokens,
                "generated_samples": r.gen_samples,
                "tokens_per_second": r.gen_tokens / r.gen_seconds if r.gen_seconds else None,
                "score_seconds": r.score_seconds,
            },
        }
        total_gen_s += r.gen_seconds
        total_tok += r.gen_tokens
    global_settings = settings.model_dump(mode="json")
    return {
        "harness": f"rlvr-eval {VERSION}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": settings.model,
        "engine": settings.engine,
        "model_context": ctx,
        "settings": global_settings,
        "scoring": scorer.describe(),
        "suites": suites,
        "timing": {
            "generate_seconds": total_gen_s,
            "generated_tokens": int(total_tok),
            "tokens_per_second": total_tok / total_gen_s if total_gen_s else None,
        },
    }
