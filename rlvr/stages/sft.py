"""Supervised fine-tuning stage on TRL's SFTTrainer.

Loss: mean token cross-entropy on completion tokens only (prompt tokens masked),
L = -(1/|C|) sum_{t in C} log p(y_t | y_<t), with the chat template applied to
conversational prompt / completion pairs (TRL's prompt-completion format). rlvr adds a
held-out evaluation callback that can stop training once accuracy reaches a target, which is
how the quickstart model is made "partly right".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def trl_runtime_args(seed: int, gradient_checkpointing: bool = False) -> dict[str, Any]:
    """The TRL config settings every rlvr stage shares: seeded, no checkpoints or reporting
    (rlvr saves the model itself), CPU unless CUDA is there, bf16 autocast on GPUs."""
    import torch

    return {
        "seed": seed,
        "data_seed": seed,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": not torch.cuda.is_available(),
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "gradient_checkpointing": gradient_checkpointing,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def conversational_pairs(examples: list[dict], completion_field: str = "solution") -> list[dict]:
    """Rows ``{prompt, <completion_field>}`` -> TRL prompt-completion conversations (the user
    turn from rlvr/data/prompts.py; TRL applies the chat template)."""
    from rlvr.data.prompts import prompt_messages

    return [
        {
            "prompt": prompt_messages(ex["prompt"]),
            "completion": [{"role": "assistant", "content": ex[completion_field]}],
        }
        for ex in examples
    ]


def run_sft(
    model_path: str | Path,
    train_rows: list[dict],
    out_dir: str | Path,
    *,
    lr: float = 1e-3,
    batch_size: int = 128,
    max_steps: int = 1000,
    warmup_steps: int = 20,
    seed: int = 0,
    eval_fn: Callable[[Any, Any], float] | None = None,
    eval_every: int = 50,
    stop_at: float | None = None,
    max_length: int = 256,
    grad_accum: int = 1,
    schedule: str = "constant_with_warmup",
    packing: bool = False,
    peft_config: Any = None,
    trust_remote_code: bool = False,
    logging_dir: str | Path | None = None,
    gradient_checkpointing: bool = False,
    weight_decay: float = 0.0,
) -> dict[str, Any]:
    """Fine-tune ``model_path`` on conversational rows and save to ``out_dir`` (safetensors).

    ``eval_fn(model, tokenizer) -> accuracy`` runs every ``eval_every`` steps; training stops
    early once it reaches ``stop_at``. Returns the evaluation history and the final step.
    """
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    history: list[tuple[int, float]] = []

    class EvalAndStop(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if eval_fn is None or state.global_step % eval_every:
                return control
            acc = eval_fn(kw["model"], tokenizer)
            kw["model"].train()
            history.append((state.global_step, acc))
            log.info("sft step %d: held-out accuracy %.3f", state.global_step, acc)
            if stop_at is not None and acc >= stop_at:
                control.should_training_stop = True
            return control

    work = Path(logging_dir) if logging_dir is not None else Path(out_dir) / "_sft_tmp"
    config = SFTConfig(
        output_dir=str(work / "trainer"),
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        max_steps=max_steps,
        warmup_steps=warmup_steps,
        lr_scheduler_type=schedule,
        weight_decay=weight_decay,
        packing=packing,
        logging_steps=25,
        max_length=max_length,
        completion_only_loss=True,
        **trl_runtime_args(seed, gradient_checkpointing),
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(train_rows),
        processing_class=tokenizer,
        callbacks=[EvalAndStop()],
        peft_config=peft_config,
    )
    result = trainer.train()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trained = trainer.model
    if peft_config is not None:
        trained = trained.merge_and_unload()  # LoRA adapter folded into the base weights
    trained.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    log_history = [e for e in trainer.state.log_history if "loss" in e]
    return {
        "history": history,
        "steps": trainer.state.global_step,
        "loss": result.training_loss,
        "log_history": log_history,
        "model_dir": str(out),
    }
