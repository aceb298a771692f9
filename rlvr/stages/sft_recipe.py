"""The ``rlvr sft`` recipe schema and runner: supervised fine-tuning from a local file.

Data rows are either prompt / completion pairs (``data.prompt_field`` /
``data.completion_field``) or chat transcripts (``data.messages_field``, a list of
``{"role", "content"}``); the loss is on completion / assistant tokens only (TRL's
completion-only loss). LoRA comes from peft when ``lora.enabled``; the saved model is then
the adapter merged into the base weights, in safetensors. With arithmetic data, held-out
accuracy before and after training goes to ``summary.json`` (``eval`` section).

The recipe shares :class:`rlvr.stages.common.StageRecipe` with the other stage kinds (``name``,
``output_dir``, ``seed``, ``threads``, ``model``, ``eval``); its ``data`` section is the SFT file
or the arithmetic task's worked solutions rather than RL problems.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from rlvr.config import ArithmeticConfig, DataConfig, Section, renamed_key
from rlvr.data.datasets import DataError, _read_jsonl, _read_parquet
from rlvr.data.prompts import prompt_messages
from rlvr.stages.common import StageEval, StageRecipe, heldout_eval, start_stage, write_json
from rlvr.stages.registry import register_stage

log = logging.getLogger("rlvr")


class SFTData(Section):
    path: str | None = Field(None, description="jsonl / parquet file (or use `arithmetic`).")
    arithmetic: ArithmeticConfig | None = Field(
        None, description="Generate worked solutions of the seeded arithmetic task instead."
    )
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    messages_field: str | None = Field(None, description="Use chat transcripts from this field.")
    system_prompt: str | None = None


class SFTTrain(Section):
    steps: int = Field(100, ge=1)
    lr: float = Field(2e-5, gt=0)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant_with_warmup", "cosine", "linear"] = "constant_with_warmup"
    max_length: int = Field(1024, ge=8)
    packing: bool = False


class LoraConfig(Section):
    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


class SFTRecipe(StageRecipe):
    name: str = "sft"
    data: SFTData  # type: ignore[assignment]  # SFT rows, not RL problems
    train: SFTTrain = SFTTrain()
    lora: LoraConfig = LoraConfig()
    eval: StageEval = Field(
        StageEval(), description="Held-out accuracy before / after (arithmetic data only)."
    )

    @model_validator(mode="before")
    @classmethod
    def _threads_moved(cls, data: Any) -> Any:
        """``train.threads`` (before the stages shared one base) is now top-level ``threads``:
        read as such by :func:`rlvr.config.renamed_key` (its deprecation warning, and its
        refusal of both names with different values)."""
        train = data.get("train") if isinstance(data, dict) else None
        if not (isinstance(train, dict) and "threads" in train):
            return data
        train = dict(train)
        data = {**data, "train": train, "train.threads": train.pop("threads")}
        if data.get("threads") is None:  # an explicit null is the default, not a second value
            data.pop("threads", None)
        return renamed_key(data, "train.threads", "threads", "SFTRecipe")


def load_sft_rows(cfg: SFTData) -> list[dict[str, Any]]:
    """Rows in TRL's conversational prompt-completion or messages format."""
    if cfg.arithmetic is not None:
        from rlvr.data.arithmetic import arithmetic_examples

        a = cfg.arithmetic
        train, _ = arithmetic_examples(a.digits, a.operations, a.num_train, a.num_eval, a.seed)
        return [
            {
                "prompt": prompt_messages(ex["prompt"]),
                "completion": [{"role": "assistant", "content": ex["solution"]}],
            }
            for ex in train
        ]
    if cfg.path is None:
        raise DataError("SFT data: set data.path (a jsonl / parquet file) or data.arithmetic")
    p = Path(cfg.path)
    if not p.is_file():
        raise DataError(f"{p}: SFT data file not found (data.path)")
    if p.suffix in (".jsonl", ".json"):
        raw = _read_jsonl(p)
    elif p.suffix == ".parquet":
        raw = _read_parquet(p)
    else:
        raise DataError(f"{p}: unsupported data file type '{p.suffix}' (use .jsonl or .parquet)")
    system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    rows, problems = [], []
    for num, row, err in raw:
        where = f"{p}:{num}"
        if err is not None:
            problems.append(err)
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: row is {type(row).__name__}, expected an object")
            continue
        if cfg.messages_field:
            msgs = row.get(cfg.messages_field)
            if not isinstance(msgs, list) or not msgs:
                problems.append(f"{where}: '{cfg.messages_field}' is not a list of messages")
                continue
            rows.append({"messages": system + msgs})
            continue
        prompt, completion = row.get(cfg.prompt_field), row.get(cfg.completion_field)
        if prompt in (None, "") or completion in (None, ""):
            problems.append(f"{where}: missing '{cfg.prompt_field}' or '{cfg.completion_field}'")
            continue
        rows.append(
            {
                "prompt": prompt_messages(str(prompt), cfg.system_prompt),
                "completion": [{"role": "assistant", "content": str(completion)}],
            }
        )
    if problems:
        shown = "\n  ".join(problems[:5])
        msg = f"{p}: skipped {len(problems)} malformed row(s) of {len(raw)}:\n  {shown}"
        if not rows:
            raise DataError(msg)
        import logging

        logging.getLogger("rlvr").warning(msg)
    return rows


@register_stage(
    "sft",
    schema=SFTRecipe,
    help="supervised fine-tuning (TRL SFTTrainer; LoRA via peft)",
    description="Supervised fine-tuning from a YAML recipe (see recipes/sft_*.yaml): "
    "model, data (jsonl/parquet prompt/completion or messages), train, lora sections; "
    "completion-only loss; the model is saved to runs/<name>/model (safetensors).",
)
def run_sft_recipe(recipe: SFTRecipe) -> dict[str, Any]:
    """Fine-tune, with held-out accuracy before / after for arithmetic data; returns TRL's
    report (``log_history``, ``steps``, ``loss``) with ``model_dir`` and the evals."""
    from rlvr.stages.sft import run_sft

    run_dir = start_stage(recipe)  # type: ignore[arg-type]
    t, lora = recipe.train, recipe.lora
    peft_config = None
    if lora.enabled:
        from rlvr.lora import peft_lora_config

        peft_config = peft_lora_config(lora.r, lora.alpha, lora.dropout, lora.target_modules)
    heldout: list[dict] = []
    eval_data = DataConfig(system_prompt=recipe.data.system_prompt)
    if recipe.data.arithmetic is not None:
        from rlvr.data.arithmetic import arithmetic_examples

        a = recipe.data.arithmetic
        heldout = arithmetic_examples(a.digits, a.operations, a.num_train, a.num_eval, a.seed)[1]
    summary: dict[str, Any] = {}
    if recipe.eval.before and heldout:
        summary["eval_before"] = heldout_eval(
            recipe.model.path, heldout, eval_data, recipe.eval, seed=recipe.seed, model=recipe.model
        )
    report = run_sft(
        recipe.model.path,
        load_sft_rows(recipe.data),
        run_dir / "model",
        **t.model_dump(exclude={"steps"}),  # the other `train` keys are run_sft's parameters
        max_steps=t.steps,
        seed=recipe.seed,
        peft_config=peft_config,
        trust_remote_code=recipe.model.trust_remote_code,
        logging_dir=run_dir,
        gradient_checkpointing=recipe.model.gradient_checkpointing,
    )
    if recipe.eval.after and heldout:
        summary["eval_after"] = heldout_eval(
            report["model_dir"],
            heldout,
            eval_data,
            recipe.eval,
            seed=recipe.seed,
            model=recipe.model,
        )
    summary.update(steps=report["steps"], loss=report["loss"], model_dir=report["model_dir"])
    write_json(run_dir / "summary.json", summary)
    return {**report, **summary}
