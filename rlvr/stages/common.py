"""What the REDI, SPECS and InT stage recipes share: problems, prompts, self-sampling,
held-out evaluation and per-stage output files.

- Problems come from a recipe ``data`` section (the RL recipe's, :class:`rlvr.config.DataConfig`:
  the arithmetic task, a jsonl / parquet file or a hub dataset), so a stage sees the same
  prompts (template, system prompt) as the RL stage after it.
- :func:`prompt_messages` turns an example into the chat prompt of TRL's conversational format.
- :func:`sample_completions` samples ``n`` completions per problem from a model and scores each
  with ``rewards.math.math_reward`` (correctness) and ``rewards.format.format_reward``
  (``<think>...</think>`` then one ``\\boxed{}``).
- :func:`heldout_eval` measures held-out accuracy with the RL trainer's code (rlvr/heldout.py):
  greedy accuracy and pass@1 = mean_i (c_i / n) over ``n`` samples at temperature T, plus the
  share of well-formed samples; the numbers a stage writes to its ``summary.json`` before and
  after training.
- Prompts are built by rlvr/data/prompts.py, as training builds them (``use_chat_template``,
  ``max_prompt_tokens``); :func:`open_engine` builds engines with rlvr/rollout's
  ``model_engine`` from the recipe's ``model`` section.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from rlvr.config import DataConfig, ModelConfig, Section, dump_recipe, renamed_key

log = logging.getLogger("rlvr")


EngineName = Literal["hf", "vllm"]
ENGINE_HELP = "Rollout engine: hf (transformers.generate) or vllm (in-process; GPUs)."


class EngineSection(Section):
    """A section with an ``engine`` key (the rollout engine, as ``rollout.engine`` of an RL
    recipe); ``backend``, its old name in stage recipes, is read as ``engine`` with a
    deprecation warning."""

    @model_validator(mode="before")
    @classmethod
    def _backend_is_engine(cls, data: Any) -> Any:
        return renamed_key(data, "backend", "engine", cls.__name__)


class StageEval(EngineSection):
    """Held-out accuracy around a stage (needs a held-out split: ``data.source: arithmetic``)."""

    engine: EngineName = Field("hf", description=ENGINE_HELP)
    before: bool = True
    after: bool = True
    num_problems: int = Field(200, ge=1)
    samples: int = Field(4, ge=1, description="Samples per problem for pass@1.")
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(64, ge=1)


class Sampling(EngineSection):
    """Self-sampling settings: ``n`` completions per problem on the first ``num_problems``."""

    engine: EngineName = Field("hf", description=ENGINE_HELP)
    num_problems: int = Field(512, ge=1)
    n: int = Field(4, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(64, ge=1)


class StageRecipe(Section):
    """The fields every stage recipe has (a stage kind adds its own sections)."""

    name: str = "stage"
    output_dir: str = "runs"
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads.")
    model: ModelConfig
    data: DataConfig = DataConfig()
    eval: StageEval = StageEval()

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def check_model(path: str, key: str, trust_remote_code: bool = False) -> None:
    """Fail early, naming the recipe key, when ``path`` is neither a local model directory nor
    loadable from the hub (the tokenizer is the cheap part to load)."""
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            f"{key} {path!r}: not a local model directory (relative paths start at "
            f"{Path.cwd()}) and not loadable from the Hugging Face hub: {e}"
        ) from e


def start_stage(recipe: StageRecipe) -> Path:
    """Check ``model.path``, apply ``threads``, create the run directory and write the resolved
    recipe into it."""
    import torch

    check_model(recipe.model.path, "model.path", recipe.model.trust_remote_code)

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    recipe.run_dir.mkdir(parents=True, exist_ok=True)
    dump_recipe(recipe, recipe.run_dir / "recipe.yaml")  # type: ignore[arg-type]
    return recipe.run_dir


def eval_into(
    summary: dict, key: str, recipe: StageRecipe, model_path: str | Path, heldout: list[dict]
) -> None:
    """``summary[key]`` = held-out accuracy of ``model_path`` (when there is a held-out split)."""
    if heldout:
        summary[key] = heldout_eval(
            model_path, heldout, recipe.data, recipe.eval, seed=recipe.seed, model=recipe.model
        )
        log.info("%s %s: %s", recipe.name, key, summary[key])


def open_engine(
    model: ModelConfig,
    engine: str = "hf",
    *,
    path: str | Path | None = None,
    seed: int = 0,
) -> Any:
    """A rollout engine on ``model`` (or other weights at ``path``: a teacher, a stage's
    output) for a stage's own sampling, closed by the caller; built by
    :func:`rlvr.rollout.model_engine` (the section's dtype, trust_remote_code and, for
    ``model.path``, revision). vLLM takes 80 % of the GPU here: a stage samples first and
    trains after the engine is closed."""
    from rlvr.rollout import model_engine

    return model_engine(
        model,
        engine,
        path=None if path is None else str(path),
        seed=seed,
        gpu_memory_utilization=0.8,
    )


def prompt_messages(example: dict, data: DataConfig) -> list[dict]:
    """The chat prompt of an example: optional system message, then the templated user turn
    (rlvr/data/prompts.py, as training builds it)."""
    from rlvr.data.prompts import example_messages

    return example_messages(example, data.prompt_template, data.system_prompt)


def prompt_ids(tokenizer: Any, messages: list[dict], assistant_prefix: str = "") -> list[int]:
    """Token ids of a fixed chat prompt (the judge's) with the generation prompt, plus an
    assistant prefix (rlvr/data/prompts.py). Dataset rows go through
    :func:`example_prompt_ids` instead, which honours the ``data`` section."""
    from rlvr.data.prompts import chat_prompt_ids

    return chat_prompt_ids(tokenizer, messages, assistant_prefix=assistant_prefix)


def example_prompt_ids(tokenizer: Any, examples: list[dict], data: DataConfig) -> list[list[int]]:
    """Prompt token ids of ``examples`` exactly as the RL trainer builds them from ``data``."""
    from rlvr.data.prompts import PromptFormatter

    formatter = PromptFormatter.from_data(tokenizer, data)
    return [formatter.token_ids(ex) for ex in examples]


def score(text: str, example: dict) -> tuple[float, bool]:
    """(correctness from the math verifier, well-formed per the format reward)."""
    from rewards.format import format_reward
    from rewards.math import math_reward

    return math_reward(text, str(example["answer"])), format_reward(text, example) == 1.0


def sample_completions(
    engine: Any,
    examples: list[dict],
    data: DataConfig,
    sampling: Sampling,
    *,
    seed: int = 0,
) -> list[list[dict]]:
    """``[len(examples)][n]`` records ``{text, correct, well_formed}`` sampled from ``engine``."""
    import time

    from rlvr.rollout import SamplingParams

    start = time.perf_counter()
    log.info("sampling %d x %d completions ...", len(examples), sampling.n)
    ids = example_prompt_ids(engine.tokenizer, examples, data)
    sp = SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_new_tokens,
        seed=seed,
    )
    out = []
    for ex, group in zip(examples, engine.generate(ids, sp), strict=True):
        recs = []
        for c in group:
            correct, well_formed = score(c.text, ex)
            recs.append({"text": c.text, "correct": correct >= 1.0, "well_formed": well_formed})
        out.append(recs)
    n_correct = sum(r["correct"] for recs in out for r in recs)
    total = len(examples) * sampling.n
    log.info(
        "sampled %d completions in %.0f s: %d correct (%.1f %%)",
        total,
        time.perf_counter() - start,
        n_correct,
        100 * n_correct / max(total, 1),
    )
    return out


def score_groups(
    examples: list[dict], groups: list[list[Any]]
) -> tuple[list[list[bool]], list[list[bool]]]:
    """(correct, well-formed) per completion: the stages' held-out scorer
    (math verifier >= 1.0, format reward == 1.0)."""
    scored = [
        [score(c.text, ex) for c in group] for ex, group in zip(examples, groups, strict=True)
    ]
    return [[c >= 1.0 for c, _ in g] for g in scored], [[f for _, f in g] for g in scored]


def heldout_eval(
    model_path: str | Path,
    examples: list[dict],
    data: DataConfig,
    cfg: StageEval,
    *,
    seed: int = 0,
    model: ModelConfig | None = None,
) -> dict[str, float]:
    """Greedy accuracy, pass@1 over ``cfg.samples`` samples and the well-formed share of
    ``model_path`` (rlvr/heldout.py, the trainer's held-out eval), on prompts built as training
    builds them. ``model`` is the recipe's model section (dtype, trust_remote_code, revision
    of ``model.path``); without it the weights load in float32."""
    from rlvr.heldout import heldout_accuracy
    from rlvr.rollout import SamplingParams

    examples = examples[: cfg.num_problems]
    if not examples:
        return {}
    section = model if model is not None else ModelConfig(path=str(model_path))
    engine = open_engine(section, cfg.engine, path=model_path, seed=seed)
    try:
        return heldout_accuracy(
            engine,
            examples,
            example_prompt_ids(engine.tokenizer, examples, data),
            score_groups,
            greedy=SamplingParams(temperature=0.0, max_tokens=cfg.max_new_tokens),
            sampled=SamplingParams(
                n=cfg.samples,
                temperature=cfg.temperature,
                max_tokens=cfg.max_new_tokens,
                seed=seed + 104729,
            ),
        )
    finally:
        engine.close()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def write_metrics(path: Path, history: list[dict]) -> None:
    """One JSON object per training step (the RL trainer's ``metrics.jsonl`` format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for rec in history:
            f.write(json.dumps(rec, default=str) + "\n")


def fingerprint(*parts: Any) -> str:
    """sha256 (16 hex digits) of JSON-serialisable parts: what a cached result depends on."""
    import hashlib

    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_rows(path: Path, key: str, compute: Any, *, what: str) -> list[dict]:
    """``compute()``'s rows, or the rows saved at ``path`` by an earlier run with the same
    ``key`` (a :func:`fingerprint`), so a re-run after a crash does not sample again. The rows
    are written through a temporary file and the key last, so a half-written cache is never
    read."""
    stamp = path.with_name(path.name + ".key")
    if path.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        log.info("%s: reusing %d rows from %s", what, len(rows), path)
        return rows
    stamp.unlink(missing_ok=True)
    rows = compute()
    tmp = path.with_name(path.name + ".tmp")
    write_metrics(tmp, rows)
    tmp.replace(path)
    stamp.write_text(key + "\n")
    return rows
