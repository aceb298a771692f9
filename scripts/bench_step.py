"""One GRPO step of rlvr against one step of TRL's GRPOTrainer, same model, same task, one run.

Three sides (``--sides``), each in its own worker process:

- ``rlvr_best``: rlvr's defaults, which do less work: ``--best-engine`` rollouts (vLLM by
  default), rows with zero advantage left out of forward/backward (``train.skip_zero_rows``,
  exact: they carry no gradient), length-ordered micro-batches (less padding);
- ``rlvr``: rlvr doing TRL's work (HF generate, every row trained, batch order): the
  same-engine pair;
- ``trl``: TRL's GRPOTrainer with HF generate, the best TRL configuration that runs here (TRL's
  own vLLM weight sync crashes on vLLM 0.32).

``step_ratio`` (in ``--json``'s top level) is the median over repetitions of rlvr_best's step
time over TRL's in the same repetition; ``memory_ratio`` the ratio of peak RSS (rlvr's reward
workers included). ``--scale quickstart|25m|100m|0.5b`` picks a preset: the bundled partly
trained quickstart model (math reward), a random 24M model with 128-token completions, a random
~102M model whose vocabulary is real-size (151,936 ids, most of the parameters), or a random
Qwen2.5-0.5B-shaped model (d 896, 24 layers, 14 / 2 heads, intermediate 4864, V 151936, tied
embeddings; 494M parameters, built locally) at B=8 x G=8 x 256 tokens, meant for
``--device cuda``; random models use ``scripts/bench_reward.py``'s paired coin reward on both
sides (27 % of the prompts, chosen by their hash, have all-zero rewards, as a partly trained
model's groups often do; the others a fair coin per completion), so every side skips the same
groups (``--reward coin``: a coin per completion, p = 0.15, each side its own groups).

``--device cpu`` (the default): all sides run on CPU in fp32 (rlvr ``train.device=cpu``,
``rollout.engine=hf`` unless rlvr_best's engine is vLLM; TRL ``use_cpu=True``,
``use_vllm=False``). ``--device cuda``: both sides on the GPU (rlvr ``train.device=cuda``, its
HF / vLLM engines there too; TRL ``use_cpu=False``), in ``--dtype`` (default bfloat16 on cuda:
rlvr ``model.dtype=bfloat16``, rollouts bf16; TRL loads the model in bfloat16 with
``bf16=True``; ``--dtype float32``: fp32 on both); rlvr_best's engine defaults to vLLM when it
imports, else HF; peak memory is ``torch.cuda.max_memory_allocated`` of each worker over the
step (reset before it) instead of RSS (RSS is still recorded), and every timed phase and step
end waits for the GPU (``torch.cuda.synchronize``). It stops with a message when no CUDA device
is visible. Both sides use the same Qwen2 model (built with :func:`rlvr.data.tiny.build_tiny_model`
into a temp dir, or ``--model``), the same arithmetic prompts in the same order (step k uses
train problems k*B .. k*B+B-1 of :func:`rlvr.data.arithmetic_examples` on both sides; no
shuffling), B prompts x G completions, exactly ``--new-tokens`` generated tokens per completion
(``min_new_tokens = max_new_tokens`` on both, so EOS cannot end a completion early), the same
reward (rlvr's ``math`` reward through its process-pool runner; TRL calls
:func:`rewards.math.math_reward` in-process as a TRL reward function), and equivalent updates:
beta = 0 (no reference model), clipped surrogate eps 0.2 / 0.2, token-mean loss over the whole
rollout batch (rlvr ``token_mean`` = TRL ``loss_type="dapo"``), group-scaled advantages, one
optimizer step per B*G completions (TRL: per_device_train_batch_size = micro-batch,
gradient_accumulation_steps = B*G / micro-batch, generation once per step), AdamW lr 1e-5, constant
schedule, grad-norm clip 1.0, the same dtype, no gradient checkpointing, no logging / saving.

Method: each side lives in its own worker process (started once, set up, then driven step by step
over a pipe), so its memory is its own. ``--warmup`` steps per side are run and discarded, then
``--reps`` measured steps alternate between the sides (the order flips every repetition), so
background load on a shared machine hits both alike; medians are reported. Step time is the wall
time of one full step: rlvr ``Trainer.train_step``; TRL one iteration of the Trainer loop (from
the end of the previous optimizer step to the end of this one, i.e. batch fetch, generation,
reward, advantages, forward/backward over the micro-batches, clip, AdamW, scheduler, the loop's
log/save check). Peak memory of a step is the peak RSS of the worker during that step: the kernel's
high-water mark (VmHWM) is reset through /proc/self/clear_refs before the step and read after it;
for rlvr the reward-runner worker processes are added (their lifetime VmHWM, as they exist only
for rlvr). Whole-process peaks (ru_maxrss, including set-up) are printed too.

Phases are timed by wrapping, inside each worker: ``model.generate`` (both), the rollout
(rlvr ``Trainer.rollout``; TRL ``_generate_and_score_completions``), the reward call (rlvr
``RewardRunner.score``; TRL ``_calculate_rewards``), the training forward (rlvr
``token_logprobs``; TRL ``_get_per_token_logps_and_entropies``), ``Tensor.backward``,
``clip_grad_norm_`` and the optimizer step; weight sync is rlvr's ``time/sync`` (zero for both when
the generator is the trained module itself). ``other`` is the rest of the step.

    python scripts/bench_step.py --scale 25m --json bench.json  # one preset, figures to JSON
    python scripts/bench_step.py                             # B=8, G=8, 32 tokens, 5 reps
    python scripts/bench_step.py --prompts 16 --group 8 --new-tokens 64 --reps 7
    python scripts/bench_step.py --profile /tmp/prof          # + cProfile of the measured steps
    python scripts/bench_step.py --scale 0.5b --device cuda --json bench.json  # one GPU

``--profile`` inflates the times it measures (use it to find where time goes, not for the ratio).
Each worker runs torch with ``--threads 1`` by default: on a small shared machine, two OpenMP
threads per process next to other jobs made single steps 5-100x slower and erratic (2 to 80 s
for a 0.6 s step); ``--threads 0`` keeps torch's default. Results: docs/bench_step.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = ["rollout", "generate", "reward", "forward", "backward", "clip", "optimizer", "sync"]

# ----------------------------------------------------------------------------- memory helpers


def _status_kib(field: str, pid: int | str = "self") -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _mib(kib: float) -> float:
    return kib / 1024.0


# ----------------------------------------------------------------------------- timing helpers


class Clock:
    """Accumulates wall time per phase name; ``wrap`` times every call of a callable."""

    def __init__(self) -> None:
        self.acc: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        # (phase, VmHWM in KiB when one of its calls ended), in order: the first phase whose mark
        # equals the step's peak is where the peak was reached (the innermost, for nested ones)
        self.hwm_marks: list[tuple[str, int]] = []
        # --device cuda: torch.cuda.synchronize, called before and after every timed call so that
        # a phase's wall time covers its kernels (CUDA launches return before the work is done)
        self.sync: Any = None

    def reset(self) -> None:
        self.acc.clear()
        self.calls.clear()
        self.hwm_marks.clear()

    def peak_phase(self, peak_kib: int) -> str:
        """The phase during which the process's resident memory first reached ``peak_kib``
        ("other": outside every timed phase)."""
        return next((name for name, kib in self.hwm_marks if kib >= peak_kib), "other")

    def barrier(self) -> None:
        """Wait for queued CUDA work (no-op on CPU): step times end after their kernels."""
        if self.sync is not None:
            self.sync()

    def wrap(self, name: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.sync is not None:
                self.sync()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.sync is not None:
                    self.sync()
                self.acc[name] += time.perf_counter() - t0
                self.calls[name] += 1
                self.hwm_marks.append((name, _status_kib("VmHWM")))

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed


def _patch_common(clock: Clock) -> None:
    """Backward and grad-clip timing, identical on both sides."""
    import torch

    torch.Tensor.backward = clock.wrap("backward", torch.Tensor.backward)
    torch.nn.utils.clip_grad_norm_ = clock.wrap("clip", torch.nn.utils.clip_grad_norm_)


# ----------------------------------------------------------------------------- workers


def _examples(args: argparse.Namespace) -> list[dict]:
    from rlvr.data import arithmetic_examples

    train, _ = arithmetic_examples(
        digits=args.digits, operations=("+",), num_train=args.num_train, num_eval=100, seed=1234
    )
    return train


def _reward_spec(args: argparse.Namespace) -> dict:
    if args.reward in ("coin", "paired"):
        name = "coin_reward" if args.reward == "coin" else "paired_coin_reward"
        return {"name": f"{ROOT / 'scripts' / 'bench_reward.py'}:{name}"}
    return {"name": "math"}


PROMPT_TOKENS = 64  # a bound on the arithmetic prompts' length with the chat template (~30)


def kv_cache_gib_for(model_dir: str, rows: int, new_tokens: int, dtype: str) -> float:
    """The vLLM CPU KV cache one step needs, doubled, in 1/16 GiB units: rows x (prompt bound +
    completion + a 16-token block) tokens x 2 (K, V) x layers x kv_heads x head_dim x dtype
    bytes, and at least one sequence of the model's full length (vLLM's start-up check)."""
    import math

    config = json.loads((Path(model_dir) / "config.json").read_text())
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    per_token = 2 * config["num_hidden_layers"] * config.get("num_key_value_heads", heads)
    per_token *= head_dim * (2 if dtype == "bfloat16" else 4)
    tokens = max(rows * (PROMPT_TOKENS + new_tokens + 16), config["max_position_embeddings"])
    return max(1, math.ceil(2 * tokens * per_token / 2**26)) / 16


def rlvr_recipe(args: argparse.Namespace, workdir: Path, best: bool) -> dict[str, Any]:
    """The rlvr side's recipe (validated by :class:`rlvr.config.Recipe` in the worker)."""
    engine = args.best_engine if best else "hf"
    kv = args.kv_cache_gib if best and engine == "vllm" and args.device == "cpu" else None
    return {
        "name": "bench_rlvr_best" if best else "bench_rlvr",
        "output_dir": str(workdir),
        "seed": args.seed,
        "model": {"path": args.model, "dtype": args.dtype},
        "data": {
            "source": "arithmetic",
            "shuffle": False,
            "arithmetic": {
                "digits": args.digits,
                "operations": ["+"],
                "num_train": args.num_train,
                "num_eval": 100,
                "seed": 1234,
            },
        },
        "rollout": {
            "engine": engine,
            # rlvr_best may roll out in another dtype (its own engine copy, synced)
            "dtype": (args.rollout_dtype or args.dtype) if best else args.dtype,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "group_size": args.group,
            "max_new_tokens": args.new_tokens,
            "temperature": 1.0,
            "top_p": 1.0,
            "top_k": -1,
            **({"kv_cache_gib": kv} if kv is not None else {}),
        },
        "rewards": [_reward_spec(args)],
        "reward_runner": {"num_workers": args.reward_workers, "timeout_s": 5.0},
        "algo": {
            "advantage": "grpo",
            "filters": [],
            "mask_truncated": False,
            "eps_low": 0.2,
            "eps_high": 0.2,
            "kl_coef": 0.0,
            "loss_aggregation": "token_mean",
            "updates_per_batch": 1,
            "old_logprobs": "trainer",
        },
        "train": {
            "steps": 1_000_000,
            "prompts_per_step": args.prompts,
            "micro_batch_size": args.micro_batch,
            "lr": 1e-5,
            "max_grad_norm": 1.0,
            "logprob_impl": args.rlvr_logprob_impl,
            "threads": args.threads or None,
            "device": args.device,
            "skip_zero_rows": best,
            "micro_batch_order": "length" if best else "index",
        },
        "logging": {"tensorboard": False, "plots": False, "progress": False},
        "checkpoint": {"save_final": False},
    }


class RlvrSide:
    """rlvr's trainer. ``best=False``: the same work as TRL (HF generate, every row through
    forward/backward, batch order); ``best=True``: rlvr's defaults that do less work
    (``train.skip_zero_rows``, length-ordered micro-batches) on ``--best-engine``."""

    def __init__(
        self, args: argparse.Namespace, workdir: Path, clock: Clock, best: bool = False
    ) -> None:
        import rlvr.soft_policy as policy_mod
        import rlvr.trainer as trainer_mod
        from rlvr.config import Recipe

        engine = args.best_engine if best else "hf"
        recipe = Recipe.model_validate(rlvr_recipe(args, workdir, best))
        policy_mod.token_logprobs = clock.wrap("forward", policy_mod.token_logprobs)
        self.trainer = trainer_mod.Trainer(recipe, progress=False)
        t = self.trainer
        # the same number of generated tokens on both sides: EOS is masked until max_new_tokens
        t.model.generation_config.min_new_tokens = args.new_tokens
        if engine == "vllm":  # after vLLM is loaded: its own modules type-check SamplingParams
            import vllm

            base_params = vllm.SamplingParams

            def exact_length(*a: Any, **kw: Any) -> Any:
                # the same number of generated tokens on every side: EOS only after max_tokens
                kw.setdefault("min_tokens", kw.get("max_tokens", 0))
                return base_params(*a, **kw)

            vllm.SamplingParams = exact_length  # rlvr's engine imports it at each call
        if engine == "hf":  # its own copy when rollout.dtype differs: the same setting there
            t.engine.model.generation_config.min_new_tokens = args.new_tokens
            t.engine.model.generate = clock.wrap("generate", t.engine.model.generate)
        else:
            t.engine.llm.generate = clock.wrap("generate", t.engine.llm.generate)
        t.sampler.rollout = clock.wrap("rollout", t.sampler.rollout)
        t.rewards.score = clock.wrap("reward", t.rewards.score)
        opt_t0 = [0.0]

        def _pre(*a: Any) -> None:
            clock.barrier()
            opt_t0[0] = time.perf_counter()

        def _post(*a: Any) -> None:
            clock.barrier()
            clock.acc["optimizer"] += time.perf_counter() - opt_t0[0]
            clock.calls["optimizer"] += 1

        t.optimizer.register_step_pre_hook(_pre)
        t.optimizer.register_step_post_hook(_post)
        self.clock = clock
        self.index = 0
        self.last: dict[str, float] = {}

    def step(self) -> float:
        self.index += 1
        t0 = time.perf_counter()
        self.last = self.trainer.train_step(self.index)
        self.clock.barrier()
        return time.perf_counter() - t0

    def extra(self) -> dict[str, float]:
        return {
            "sync": self.last.get("time/sync", 0.0),
            "length_mean": self.last.get("length/mean", 0.0),
            "truncated_fraction": self.last.get("length/truncated_fraction", 0.0),
            "reward_mean": self.last.get("reward/mean", 0.0),
            "zero_adv_fraction": self.last.get("advantage/zero_fraction", float("nan")),
            "skipped_rows": self.last.get("train/skipped_rows", 0.0),
        }

    def helper_peaks_kib(self) -> int:
        """Sum of the reward-runner worker processes' peak RSS (VmHWM)."""
        import psutil

        total = 0
        for child in psutil.Process().children(recursive=True):
            try:
                total += _status_kib("VmHWM", child.pid)
            except (OSError, psutil.Error):
                pass
        return total

    def close(self) -> None:
        self.trainer.close()


def _trl_reward(prompts: list, completions: list, answer: list, **kwargs: Any) -> list[float]:
    """rlvr's math reward as a TRL reward function (conversational completions)."""
    from rewards.math import math_reward

    out = []
    for c, a in zip(completions, answer, strict=True):
        text = c[-1]["content"] if isinstance(c, list) else c
        out.append(math_reward(text, str(a)))
    return out


def _trl_coin_reward(prompts: list, completions: list, answer: list, **kwargs: Any) -> list[float]:
    """scripts/bench_reward.py's coin reward as a TRL reward function."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_reward import coin_reward

    return [coin_reward(c[-1]["content"] if isinstance(c, list) else c) for c in completions]


def _trl_paired_reward(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """scripts/bench_reward.py's paired coin reward as a TRL reward function (keyed on the
    prompt text rlvr's example holds as ``prompt``)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_reward import paired_coin_reward

    out = []
    for prompt, c in zip(prompts, completions, strict=True):
        text = c[-1]["content"] if isinstance(c, list) else c
        question = prompt[-1]["content"] if isinstance(prompt, list) else prompt
        out.append(paired_coin_reward(text, {"prompt": question}))
    return out


def trl_config_kwargs(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The TRL side's GRPOConfig arguments."""
    n = args.prompts * args.group
    return dict(
        output_dir=str(workdir / "bench_trl"),
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=n // args.micro_batch,
        num_generations=args.group,
        max_completion_length=args.new_tokens,
        generation_kwargs={"min_new_tokens": args.new_tokens},
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        use_vllm=False,
        beta=0.0,
        epsilon=0.2,
        epsilon_high=0.2,
        loss_type="dapo",
        scale_rewards="group",
        num_iterations=1,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        max_grad_norm=1.0,
        optim="adamw_torch",
        gradient_checkpointing=False,
        bf16=args.dtype == "bfloat16",  # --dtype bfloat16: bf16 weights (below) and autocast
        fp16=False,
        use_cpu=args.device == "cpu",
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        log_completions=False,
        shuffle_dataset=False,
        dataloader_num_workers=0,
        max_steps=1_000_000,
        seed=args.seed,
    )


def _trl_worker(args: argparse.Namespace, workdir: Path, clock: Clock, link: Link) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlvr.data import PromptFormatter

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = GRPOConfig(**trl_config_kwargs(args, workdir))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=getattr(torch, args.dtype), use_safetensors=True
    )
    examples = _examples(args)
    dataset = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": ex["prompt"]}], "answer": ex["answer"]}
            for ex in examples
        ]
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs={"coin": _trl_coin_reward, "paired": _trl_paired_reward}.get(
            args.reward, _trl_reward
        ),
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    # the rlvr side's prompt token ids for the same rows, to check that the inputs are identical
    formatter = PromptFormatter(tokenizer)
    expected = [formatter.token_ids(ex) for ex in examples]
    check = {"rows_checked": 0, "mismatch": 0}
    tokenize = trainer._tokenize_prompts

    def checked_tokenize(prompts: list) -> Any:
        out = tokenize(prompts)
        for ids, prompt in zip(out[0], prompts, strict=True):
            want = next(
                e
                for e, ex in zip(expected, examples, strict=True)
                if ex["prompt"] == prompt[-1]["content"]
            )
            check["rows_checked"] += 1
            check["mismatch"] += int(list(ids) != want)
        return out

    trainer._tokenize_prompts = checked_tokenize
    model.generate = clock.wrap("generate", model.generate)
    trainer._generate_and_score_completions = clock.wrap(
        "rollout", trainer._generate_and_score_completions
    )
    trainer._calculate_rewards = clock.wrap("reward", trainer._calculate_rewards)
    trainer._get_per_token_logps_and_entropies = clock.wrap(
        "forward", trainer._get_per_token_logps_and_entropies
    )
    state: dict[str, Any] = {"t0": 0.0, "opt0": 0.0, "lengths": []}

    class Gate(TrainerCallback):
        def _wait(self, control: Any) -> Any:
            if not link.wait_command():
                control.should_training_stop = True
                return control
            state["t0"] = time.perf_counter()
            return control

        def on_train_begin(self, a: Any, s: Any, control: Any, **kw: Any) -> Any:
            link.send({"ready": True})
            return self._wait(control)

        def on_pre_optimizer_step(self, a: Any, s: Any, control: Any, **kw: Any) -> Any:
            clock.barrier()
            state["opt0"] = time.perf_counter()
            return control

        def on_optimizer_step(self, a: Any, s: Any, control: Any, **kw: Any) -> Any:
            clock.barrier()
            clock.acc["optimizer"] += time.perf_counter() - state["opt0"]
            return control

        def on_step_end(self, a: Any, s: Any, control: Any, **kw: Any) -> Any:
            clock.barrier()
            elapsed = time.perf_counter() - state["t0"]
            metrics = trainer._metrics["train"]
            extra = {
                "sync": 0.0,
                "length_mean": float(metrics["completions/mean_length"][-1])
                if metrics.get("completions/mean_length")
                else float("nan"),
                "reward_mean": float(metrics["reward"][-1]) if metrics.get("reward") else 0.0,
                "zero_adv_fraction": float(metrics["frac_reward_zero_std"][-1])
                if metrics.get("frac_reward_zero_std")
                else float("nan"),
                "prompt_rows_checked": check["rows_checked"],
                "prompt_rows_mismatch": check["mismatch"],
            }
            link.report(elapsed, extra)
            return self._wait(control)

    trainer.add_callback(Gate())
    trainer.train()


class Link:
    """Worker side of the pipe to the parent: commands in, JSON results out."""

    def __init__(
        self,
        cmd_fd: int,
        res_fd: int,
        clock: Clock,
        profile: str | None,
        side: str,
        cuda: bool = False,
    ) -> None:
        self.cuda = cuda
        self.cuda0 = 0
        self.cmd = os.fdopen(cmd_fd, "r")
        self.res = os.fdopen(res_fd, "w")
        self.clock = clock
        self.side = side
        self.helper_peaks: Any = None
        self.profiler: Any = None
        self.profile_path = None
        self.measuring = False
        if profile:
            import cProfile

            self.profiler = cProfile.Profile()
            self.profile_path = Path(profile) / f"{side}.prof"
        self.rss0 = 0
        self.peak_reset = False

    def send(self, obj: dict) -> None:
        self.res.write(json.dumps(obj) + "\n")
        self.res.flush()

    def wait_command(self) -> bool:
        """Block for the next command; True = run a step (memory peak reset, clock cleared)."""
        line = self.cmd.readline().strip()
        if not line or line == "quit":
            return False
        self.measuring = line == "measure"
        self.clock.reset()
        self.rss0 = _status_kib("VmRSS")
        self.peak_reset = _reset_peak()
        if self.cuda:  # this process's CUDA allocator: peak from here, over the step
            import torch

            torch.cuda.synchronize()
            self.cuda0 = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        if self.profiler is not None and self.measuring:
            self.profiler.enable()
        return True

    def report(self, elapsed: float, extra: dict) -> None:
        if self.profiler is not None and self.measuring:
            self.profiler.disable()
        peak = _status_kib("VmHWM")
        out = {
            "time": elapsed,
            "phases": dict(self.clock.acc),
            "calls": dict(self.clock.calls),
            "rss_before_mib": _mib(self.rss0),
            "step_peak_mib": _mib(peak) if self.peak_reset else float("nan"),
            "peak_phase": self.clock.peak_phase(peak) if self.peak_reset else "unknown",
            "helpers_peak_mib": _mib(self.helper_peaks()) if self.helper_peaks else 0.0,
            **extra,
        }
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            out["cuda_before_mib"] = self.cuda0 / 2**20
            out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            out["cuda_reserved_peak_mib"] = torch.cuda.max_memory_reserved() / 2**20
        self.send(out)

    def finish(self) -> None:
        if self.profiler is not None and self.profile_path is not None:
            self.profiler.dump_stats(str(self.profile_path))
        self.send(
            {
                "final": True,
                "process_peak_mib": _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
            }
        )


def worker_main(args: argparse.Namespace) -> None:
    clock = Clock()
    if args.device == "cuda":
        import torch

        clock.sync = torch.cuda.synchronize
    _patch_common(clock)
    link = Link(
        args.cmd_fd, args.res_fd, clock, args.profile, args.worker, cuda=args.device == "cuda"
    )
    workdir = Path(args.workdir)
    t0 = time.perf_counter()
    if args.worker in ("rlvr", "rlvr_best"):
        side = RlvrSide(args, workdir, clock, best=args.worker == "rlvr_best")
        link.helper_peaks = side.helper_peaks_kib
        link.send({"ready": True, "setup_s": time.perf_counter() - t0})
        while link.wait_command():
            elapsed = side.step()
            link.report(elapsed, side.extra())
        link.finish()
        side.close()
    else:
        _trl_worker(args, workdir, clock, link)
        link.finish()


# ----------------------------------------------------------------------------- parent


class WorkerHandle:
    def __init__(self, side: str, args: argparse.Namespace, workdir: Path) -> None:
        self.side = side
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        self.log_path = workdir / f"{side}.log"
        self._log = self.log_path.open("w")
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            side,
            "--cmd-fd",
            str(cmd_r),
            "--res-fd",
            str(res_w),
            "--workdir",
            str(workdir),
            *_shared_argv(args),
        ]
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, pass_fds=(cmd_r, res_w), env=env
        )
        os.close(cmd_r)
        os.close(res_w)
        self.cmd = os.fdopen(self._cmd_w, "w")
        self.res = os.fdopen(self._res_r, "r")

    def recv(self) -> dict:
        line = self.res.readline()
        if not line:
            self.proc.wait(timeout=30)
            tail = self.log_path.read_text()[-4000:]
            raise RuntimeError(f"{self.side} worker exited ({self.proc.returncode}):\n{tail}")
        return json.loads(line)

    def command(self, what: str) -> dict:
        self.cmd.write(what + "\n")
        self.cmd.flush()
        return self.recv()

    def quit(self) -> dict:
        self.cmd.write("quit\n")
        self.cmd.flush()
        final = self.recv()
        self.proc.wait(timeout=120)
        return final


def _shared_argv(args: argparse.Namespace) -> list[str]:
    out = [
        "--model", args.model,
        "--prompts", str(args.prompts),
        "--group", str(args.group),
        "--new-tokens", str(args.new_tokens),
        "--micro-batch", str(args.micro_batch),
        "--digits", str(args.digits),
        "--num-train", str(args.num_train),
        "--reward-workers", str(args.reward_workers),
        "--seed", str(args.seed),
        "--rlvr-logprob-impl", args.rlvr_logprob_impl,
        "--reward", args.reward,
        "--best-engine", args.best_engine,
        "--device", args.device,
        "--dtype", args.dtype,
        "--gpu-memory-utilization", str(args.gpu_memory_utilization),
    ]  # fmt: skip
    if args.rollout_dtype:
        out += ["--rollout-dtype", args.rollout_dtype]
    if args.kv_cache_gib is not None:
        out += ["--kv-cache-gib", str(args.kv_cache_gib)]
    out += ["--threads", str(args.threads)]
    if args.profile:
        out += ["--profile", args.profile]
    return out


def _load() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average n/a"


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def _phase_table(results: dict[str, list[dict]], sides: list[str]) -> list[str]:
    rows = []
    med: dict[str, dict[str, float]] = {}
    for side in sides:
        rs = results[side]
        med[side] = {}
        for p in PHASES:
            vals = [r["phases"].get(p, 0.0) if p != "sync" else r.get("sync", 0.0) for r in rs]
            med[side][p] = _median(vals)
        # "other": per step, the time not in a top-level phase
        top = ["rollout", "forward", "backward", "clip", "optimizer", "sync"]
        other = []
        for r in rs:
            accounted = sum(r["phases"].get(p, 0.0) for p in top if p != "sync") + r.get(
                "sync", 0.0
            )
            other.append(r["time"] - accounted)
        med[side]["other"] = _median(other)
    labels = {
        "rollout": "rollout (all)",
        "generate": "  generate",
        "reward": "  reward",
        "forward": "forward (logprobs)",
        "backward": "backward",
        "clip": "grad-norm clip",
        "optimizer": "optimizer step",
        "sync": "weight sync",
        "other": "other",
    }
    rows.append(f"{'phase (median s)':<22}" + "".join(f"{SIDE_LABEL[x]:>12}" for x in sides))
    for p in [*PHASES, "other"]:
        rows.append(f"{labels[p]:<22}" + "".join(f"{med[x][p]:>12.3f}" for x in sides))
    rows.append(
        "  rollout (all) = generate + reward + prompt formatting, decoding, advantages, padding"
    )
    return rows


def _print_profile(path: Path, limit: int) -> None:
    import pstats

    if path.is_file():
        print(f"\n--- cProfile {path.name} (measured steps, cumulative) ---")
        pstats.Stats(str(path)).sort_stats("cumulative").print_stats(limit)


def parent_main(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench_step_"))
    try:
        if args.model is None:
            from rlvr.data.tiny import build_tiny_model

            shape = SCALES[args.scale].get("shape", {}) if args.scale else {}
            args.model = str(build_tiny_model(workdir / "tiny_model", **shape))
        if args.kv_cache_gib is None and args.best_engine == "vllm" and args.device == "cpu":
            rows = args.prompts * args.group
            dtype = args.rollout_dtype or args.dtype
            args.kv_cache_gib = kv_cache_gib_for(args.model, rows, args.new_tokens, dtype)
        sides = [x.strip() for x in args.sides.split(",") if x.strip()]
        if "trl" not in sides or any(x not in SIDE_LABEL for x in sides):
            raise SystemExit(f"--sides: a comma list of {sorted(SIDE_LABEL)} including trl")
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
        n = args.prompts * args.group
        if n % args.micro_batch:
            raise SystemExit(f"--micro-batch {args.micro_batch} must divide B*G = {n}")
        steps = args.warmup + args.reps
        args.num_train = max(args.num_train, steps * args.prompts)
        load_before = _load()
        # both set up concurrently (set-up is not measured), then they take turns
        handles: dict[str, WorkerHandle] = {}
        ready: dict[str, dict] = {}
        for side in sides:  # one at a time: two vLLM / model loads at once thrash 2 cores
            handles[side] = WorkerHandle(side, args, workdir)
            ready[side] = handles[side].recv()
        setup_s = time.perf_counter() - start
        results: dict[str, list[dict]] = {x: [] for x in sides}
        warm: dict[str, list[dict]] = {x: [] for x in sides}
        for i in range(steps):
            measured = i >= args.warmup
            order = sides if i % 2 == 0 else sides[::-1]
            for side in order:
                r = handles[side].command("measure" if measured else "warmup")
                (results if measured else warm)[side].append(r)
                tag = "step" if measured else "warm-up"
                print(f"  {tag} {i + 1}/{steps} {side:<9} {r['time']:.3f}s", flush=True)
        finals = {s: h.quit() for s, h in handles.items()}
        load_after = _load()
        summary = _summarize(args, sides, results, warm, finals, load_before, load_after)
        summary["setup_s"] = setup_s
        summary["wall_s"] = time.perf_counter() - start
        _print(args, sides, summary, results)
        if args.profile:
            for side in sides:
                _print_profile(Path(args.profile) / f"{side}.prof", args.profile_lines)
        if args.json:
            out = {
                "step_ratio": summary["step_ratio"],
                "memory_ratio": summary["memory_ratio"],
                "summary": summary,
                "steps": results,
            }
            Path(args.json).write_text(json.dumps(out, indent=1))
            print(f"figures written to {args.json}")
        return summary
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")


def _summarize(
    args: argparse.Namespace,
    sides: list[str],
    results: dict[str, list[dict]],
    warm: dict[str, list[dict]],
    finals: dict[str, dict],
    load_before: str,
    load_after: str,
) -> dict:
    s: dict[str, Any] = {
        "config": {
            "scale": args.scale,
            "model": args.model,
            "parameters": _param_count(args.model),
            "B": args.prompts,
            "G": args.group,
            "new_tokens": args.new_tokens,
            "micro_batch": args.micro_batch,
            "reps": args.reps,
            "warmup": args.warmup,
            "reward": args.reward,
            "best_engine": args.best_engine,
            "kv_cache_gib": args.kv_cache_gib,  # rlvr_best's vLLM on CPU (None: not used)
            "vllm_installed": _vllm_installed(),
            "reward_workers": args.reward_workers,
            "threads": args.threads,
            "rlvr_logprob_impl": args.rlvr_logprob_impl,
            "device": args.device,
            "dtype": args.dtype,
            "precision": _precision(args),
        },
        "sides": sides,
        "memory_basis": "cuda_max_memory_allocated" if args.device == "cuda" else "rss",
        "load_before": load_before,
        "load_after": load_after,
    }
    for side in sides:
        rs = results[side]
        times = [r["time"] for r in rs]
        s[side] = {
            "median_step_s": _median(times),
            "min_step_s": min(times),
            "max_step_s": max(times),
            "steps_s": times,
            "warmup_s": [r["time"] for r in warm[side]],
            "step_peak_mib": max(r["step_peak_mib"] for r in rs),
            "rss_before_step_mib": _median([r["rss_before_mib"] for r in rs]),
            "helpers_peak_mib": max(r["helpers_peak_mib"] for r in rs),
            "process_peak_mib": max(
                finals[side]["process_peak_mib"], *(r["step_peak_mib"] for r in rs)
            ),
            "length_mean": _median([r.get("length_mean", float("nan")) for r in rs]),
            "reward_mean": _median([r.get("reward_mean", float("nan")) for r in rs]),
            "zero_adv_fraction": _median([r.get("zero_adv_fraction", float("nan")) for r in rs]),
            "skipped_rows": _median([r.get("skipped_rows", 0.0) for r in rs]),
            "step_increment_mib": max(r["step_peak_mib"] - r["rss_before_mib"] for r in rs),
            # where the highest step's peak was reached (a phase of the table below)
            "peak_phase": max(rs, key=lambda r: r["step_peak_mib"]).get("peak_phase", "unknown"),
        }
        s[side]["step_peak_total_mib"] = s[side]["step_peak_mib"] + s[side]["helpers_peak_mib"]
        if args.device == "cuda":  # the worker's CUDA allocator (reward workers use no GPU)
            s[side]["cuda_step_peak_mib"] = max(r["cuda_peak_mib"] for r in rs)
            s[side]["cuda_before_step_mib"] = _median([r["cuda_before_mib"] for r in rs])
            s[side]["cuda_step_increment_mib"] = max(
                r["cuda_peak_mib"] - r["cuda_before_mib"] for r in rs
            )
            s[side]["cuda_reserved_peak_mib"] = max(r["cuda_reserved_peak_mib"] for r in rs)
    trl_rows = [r.get("prompt_rows_checked", 0) for r in results["trl"] + warm["trl"]]
    trl_bad = [r.get("prompt_rows_mismatch", 0) for r in results["trl"] + warm["trl"]]
    s["prompt_ids_checked"] = max(trl_rows) if trl_rows else 0
    s["prompt_ids_mismatch"] = max(trl_bad) if trl_bad else 0
    ratios: dict[str, dict[str, float]] = {}
    for side in sides:
        if side == "trl":
            continue
        paired = [a["time"] / b["time"] for a, b in zip(results[side], results["trl"], strict=True)]
        ratios[side] = {
            "time": s[side]["median_step_s"] / s["trl"]["median_step_s"],
            "time_paired_median": _median(paired),
            "time_paired_min": min(paired),
            "time_paired_max": max(paired),
            "peak_memory": s[side]["step_peak_total_mib"] / s["trl"]["step_peak_mib"],
        }
        if args.device == "cuda":  # GPU memory is the ratio; host RSS kept beside it
            ratios[side]["peak_rss"] = ratios[side]["peak_memory"]
            ratios[side]["peak_memory"] = (
                s[side]["cuda_step_peak_mib"] / s["trl"]["cuda_step_peak_mib"]
            )
    s["ratios_vs_trl"] = ratios
    head = "rlvr_best" if "rlvr_best" in ratios else next(iter(ratios))
    s["step_ratio"] = ratios[head]["time_paired_median"]
    s["memory_ratio"] = ratios[head]["peak_memory"]
    s["ratio_side"] = head
    return s


def _vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _precision(args: argparse.Namespace) -> str:
    """What each side computes in, in words (summary.config.precision)."""
    rollout = args.rollout_dtype or args.dtype
    if args.dtype == "bfloat16":
        trl = "TRL: model loaded in bfloat16, bf16=True (autocast), generate in bfloat16"
    else:
        trl = f"TRL: model in {args.dtype}, bf16=False"
    rlvr = f"rlvr: model.dtype={args.dtype}, rlvr_best rollout.dtype={rollout}"
    return f"{rlvr}; {trl}; both on {args.device}"


def _param_count(model_dir: str) -> int | None:
    try:
        from safetensors import safe_open

        total = 0
        for f in Path(model_dir).glob("*.safetensors"):
            with safe_open(str(f), "pt") as h:
                for k in h.keys():
                    n = 1
                    for d in h.get_slice(k).get_shape():
                        n *= d
                    total += n
        return total or None
    except (OSError, ImportError):
        return None


def _print(
    args: argparse.Namespace, sides: list[str], s: dict, results: dict[str, list[dict]]
) -> None:
    c = s["config"]
    params = f"{c['parameters'] / 1e6:.1f}M parameters" if c["parameters"] else c["model"]
    print()
    print(
        f"one GRPO step ({c['scale'] or 'custom'}: {params}), B={c['B']} prompts x G={c['G']} "
        f"completions x {c['new_tokens']} tokens, micro-batch {c['micro_batch']}, reward "
        f"{c['reward']}, torch threads {c['threads'] or 'default'}; {c['reps']} measured steps "
        f"per side after {c['warmup']} warm-up, alternating; {c['device']}, {c['dtype']}"
    )
    if c["device"] == "cuda":
        print(f"  precision: {c['precision']}")
    for side in sides:
        print(f"  {SIDE_LABEL[side]:<10} {SIDE_HELP[side].format(engine=c['best_engine'])}")
    print(f"{s['load_before']} (start)   {s['load_after']} (end)")
    w = 30
    print()
    print(f"{'':<{w}}" + "".join(f"{SIDE_LABEL[x]:>12}" for x in sides))

    def row(label: str, key: str, fmt: str = "{:.3f}") -> None:
        print(f"{label:<{w}}" + "".join(f"{fmt.format(s[x][key]):>12}" for x in sides))

    row("median step time (s)", "median_step_s")
    row("  min (s)", "min_step_s")
    row("  max (s)", "max_step_s")
    row("generated tokens / completion", "length_mean", "{:.1f}")
    row("mean reward", "reward_mean")
    row("zero-advantage fraction", "zero_adv_fraction", "{:.2f}")
    row("rows skipped (median)", "skipped_rows", "{:.0f}")
    row("peak RSS during step (MiB)", "step_peak_mib", "{:.0f}")
    row("  + reward workers (MiB)", "helpers_peak_mib", "{:.0f}")
    row("  = total (MiB)", "step_peak_total_mib", "{:.0f}")
    row("RSS before step (MiB)", "rss_before_step_mib", "{:.0f}")
    row("  peak reached in phase", "peak_phase", "{}")
    row("process peak incl. set-up (MiB)", "process_peak_mib", "{:.0f}")
    if c["device"] == "cuda":
        row("CUDA max allocated, step (MiB)", "cuda_step_peak_mib", "{:.0f}")
        row("  allocated before step (MiB)", "cuda_before_step_mib", "{:.0f}")
        row("  step increment (MiB)", "cuda_step_increment_mib", "{:.0f}")
        row("CUDA max reserved, step (MiB)", "cuda_reserved_peak_mib", "{:.0f}")
    print(
        f"prompt token ids identical (rlvr formatter vs TRL): "
        f"{s['prompt_ids_checked'] - s['prompt_ids_mismatch']}/{s['prompt_ids_checked']} rows"
    )
    print()
    for side, r in s["ratios_vs_trl"].items():
        print(
            f"{SIDE_LABEL[side]}/TRL: step time {r['time_paired_median']:.2f} (per-repetition "
            f"ratios {r['time_paired_min']:.2f}..{r['time_paired_max']:.2f}; medians "
            f"{r['time']:.2f}), peak memory {r['peak_memory']:.2f}"
        )
    basis = "CUDA max allocated" if c["device"] == "cuda" else "peak RSS"
    print(
        f"step_ratio {s['step_ratio']:.2f} (goal <= 0.50), memory_ratio "
        f"{s['memory_ratio']:.2f} ({basis}; goal <= 1.00)  [{SIDE_LABEL[s['ratio_side']]} vs TRL]"
    )
    print()
    for line in _phase_table(results, sides):
        print(line)
    print()
    print("per-step times (s):")
    for side in sides:
        print(f"  {SIDE_LABEL[side]:<10}" + " ".join(f"{x:.3f}" for x in s[side]["steps_s"]))
    print(f"wall time {s['wall_s']:.0f}s (set-up {s['setup_s']:.0f}s)")


SIDE_LABEL = {"rlvr_best": "rlvr best", "rlvr": "rlvr same", "trl": "TRL"}
SIDE_HELP = {
    "rlvr_best": "rlvr's defaults: {engine} rollouts, zero-advantage rows skipped, "
    "length-ordered micro-batches",
    "rlvr": "rlvr on TRL's work: HF generate, every row trained, batch order",
    "trl": "TRL GRPOTrainer, HF generate (its vLLM weight sync crashes on vLLM 0.32)",
}

# --scale presets: model shape (rlvr.data.tiny.build_tiny_model), batch and reward
SCALES: dict[str, dict[str, Any]] = {
    "quickstart": {
        "model": str(ROOT / "models" / "quickstart"),
        "prompts": 8, "group": 8, "new_tokens": 32, "micro_batch": 16, "reward": "math",
    },
    "25m": {
        "shape": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "num_kv_heads": 4,
                  "intermediate_size": 1408},
        "prompts": 8, "group": 8, "new_tokens": 128, "micro_batch": 16, "reward": "paired",
    },
    "100m": {
        "shape": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "num_kv_heads": 4,
                  "intermediate_size": 1408, "vocab_size": 151936},
        "prompts": 4, "group": 8, "new_tokens": 64, "micro_batch": 8, "reward": "paired",
    },
    # Qwen2.5-0.5B's shape, random weights built locally (tied embeddings: tiny_config); sized
    # for one GPU (--device cuda). vLLM's KV cache: 0.1 of the GPU is far more than 64 x ~300
    # tokens need (~0.25 GiB at bf16), and rlvr's default 0.3 would dominate memory_ratio.
    "0.5b": {
        "shape": {"hidden_size": 896, "num_layers": 24, "num_heads": 14, "num_kv_heads": 2,
                  "intermediate_size": 4864, "vocab_size": 151936,
                  "max_position_embeddings": 1024},
        "prompts": 8, "group": 8, "new_tokens": 256, "micro_batch": 16, "reward": "paired",
        "gpu_memory_utilization": 0.1,
    },
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--scale", choices=sorted(SCALES), default=None,
        help="preset: quickstart (the bundled partly trained model, math reward), 25m (random "
        "24M model, 128 tokens), 100m (random model with a 151,936-token vocabulary, ~102M "
        "parameters), 0.5b (random Qwen2.5-0.5B-shaped model, 494M parameters, 256 tokens: "
        "for --device cuda); the coin reward on random models. Explicit flags override the "
        "preset.",
    )  # fmt: skip
    p.add_argument("--model", default=None, help="model dir (default: build a tiny model)")
    p.add_argument(
        "--sides", default="rlvr_best,rlvr,trl",
        help="comma list of rlvr_best, rlvr (same work as TRL), trl",
    )  # fmt: skip
    p.add_argument(
        "--best-engine", choices=["hf", "vllm"], default=None,
        help="rollout engine of rlvr_best (default: vllm; on --device cuda vllm when it imports, "
        "else hf)",
    )  # fmt: skip
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu",
        help="where both sides run: rlvr train.device (and its engines), TRL's model",
    )  # fmt: skip
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default=None,
        help="weights and compute on both sides (default: float32 on cpu, bfloat16 on cuda): "
        "rlvr model.dtype; TRL loads the model in it, bf16=True for bfloat16",
    )  # fmt: skip
    p.add_argument(
        "--rollout-dtype", choices=["float32", "bfloat16"], default=None,
        help="rlvr_best's rollout.dtype (default: --dtype; another dtype = its own engine copy)",
    )  # fmt: skip
    p.add_argument(
        "--kv-cache-gib", type=float, default=None,
        help="rlvr_best's vLLM CPU KV cache (rollout.kv_cache_gib; default: twice what one step "
        "needs, kv_cache_gib_for; rlvr's own default is 1 GiB)",
    )  # fmt: skip
    p.add_argument(
        "--gpu-memory-utilization", type=float, default=0.3,
        help="rlvr rollout.gpu_memory_utilization (vLLM on CUDA only)",
    )  # fmt: skip
    p.add_argument(
        "--reward", choices=["math", "coin", "paired"], default="math",
        help="math: rlvr's math verifier; coin / paired: scripts/bench_reward.py's coin rewards "
        "for random models (paired: the same zero-advantage groups on every side, chosen by "
        "prompt; the presets for random models use it)",
    )  # fmt: skip
    p.add_argument("--prompts", "-B", type=int, default=8, help="prompts per step (B)")
    p.add_argument("--group", "-G", type=int, default=8, help="completions per prompt (G)")
    p.add_argument("--new-tokens", type=int, default=32, help="generated tokens per completion")
    p.add_argument("--micro-batch", type=int, default=16, help="sequences per forward/backward")
    p.add_argument("--reps", type=int, default=5, help="measured steps per side")
    p.add_argument("--warmup", type=int, default=1, help="discarded steps per side")
    p.add_argument("--digits", type=int, default=2, help="arithmetic operand digits")
    p.add_argument("--num-train", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--reward-workers", type=int, default=2, help="rlvr reward-runner processes")
    p.add_argument(
        "--threads", type=int, default=1,
        help="torch threads in each worker (0 = torch's default; see the module docstring)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rlvr-logprob-impl", choices=["fused", "naive"], default="fused",
        help="rlvr train.logprob_impl",
    )  # fmt: skip
    p.add_argument("--profile", default=None, help="dir: cProfile the measured steps of each side")
    p.add_argument("--profile-lines", type=int, default=30)
    p.add_argument("--json", default=None, help="write the summary and all steps as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (worker logs)")
    p.add_argument("--worker", choices=["rlvr", "rlvr_best", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--cmd-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--res-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    return p


def _apply_scale(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Preset values for --scale, under any flag given explicitly; then the device's defaults
    (--dtype, --best-engine) for whatever is still unset."""
    args = parser.parse_args(argv)
    if args.scale and not args.worker:
        preset = {k: v for k, v in SCALES[args.scale].items() if k != "shape"}
        parser.set_defaults(**preset)
        args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if args.dtype is None:
        args.dtype = "bfloat16" if cuda else "float32"
    if args.best_engine is None:
        args.best_engine = "vllm" if not cuda or _vllm_installed() else "hf"
    return args


def _require_cuda(args: argparse.Namespace) -> None:
    """--device cuda with no CUDA device: stop before anything is built, saying why."""
    if args.device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            f"bench_step.py --device cuda: no CUDA device is visible (torch "
            f"{torch.__version__}, torch.cuda.is_available() is False); run on a GPU machine "
            "or use --device cpu"
        )


def main(argv: list[str] | None = None) -> None:
    args = _apply_scale(build_parser(), argv)
    if args.worker:
        worker_main(args)
    else:
        _require_cuda(args)
        parent_main(args)


if __name__ == "__main__":
    main()
