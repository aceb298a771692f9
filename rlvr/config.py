"""Typed recipe schema, YAML loading and dotted command-line overrides.

A recipe is one YAML file validated against :class:`Recipe`. Unknown keys and wrong types are
rejected with an error that names the file, the dotted key path and, for unknown keys, the
closest valid key. ``key.sub=value`` overrides (values parsed as YAML scalars) are applied
before validation, so they are checked exactly like the file.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("rlvr")
_warned_renames: set[tuple[str, str]] = set()


class RecipeError(ValueError):
    """A recipe problem, with the file and key path in the message."""


class Section(BaseModel):
    """The base of every recipe section (training, stages, eval, plug-ins' own sections):
    unknown keys are refused and assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def renamed_key(data: Any, old: str, new: str, where: str) -> Any:
    """``data`` (a section's raw mapping) with the key ``old``, a former name of ``new``, read as
    ``new``; a deprecation warning is logged once per (``where``, ``old``). Both keys given with
    different values is refused, naming both. Anything but a mapping is returned unchanged."""
    if not isinstance(data, dict) or old not in data:
        return data
    data = dict(data)
    value = data.pop(old)
    if new in data and data[new] != value:
        raise ValueError(
            f"{where}: set {new} once ({old} is its old name; got {old}={value!r} and "
            f"{new}={data[new]!r})"
        )
    data[new] = value
    if (where, old) not in _warned_renames:
        _warned_renames.add((where, old))
        log.warning("%s: '%s' is deprecated, write '%s' (same values)", where, old, new)
    return data


class ModelConfig(Section):
    path: str = Field(description="Local model directory or Hugging Face model name.")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    trust_remote_code: bool = False
    revision: str | None = None
    gradient_checkpointing: bool = False


class ArithmeticConfig(Section):
    digits: int = Field(2, ge=1, le=9, description="Operands have 1..digits digits.")
    operations: list[Literal["+", "-", "*"]] = ["+"]
    num_train: int = Field(20000, ge=1)
    num_eval: int = Field(200, ge=1)
    seed: int = 1234


class DataConfig(Section):
    source: Literal["arithmetic", "file", "hf"] = "arithmetic"
    path: str | None = Field(None, description="jsonl or parquet file when source=file.")
    hf_name: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    prompt_field: str = "prompt"
    answer_field: str = "answer"
    prompt_template: str = Field(
        "{prompt}", description="User turn with {prompt} (rlvr/data/prompts.py; other braces kept)."
    )
    system_prompt: str | None = None
    use_chat_template: bool = True
    max_prompt_tokens: int = Field(512, ge=1)
    overlong_prompts: Literal["skip", "truncate", "error"] = Field(
        "skip",
        description="Prompts longer than max_prompt_tokens (or than the context leaves after "
        "rollout.max_new_tokens), found at load: skip them, keep their last tokens, or stop. "
        "Each is reported with its row either way.",
    )
    shuffle: bool = True
    effort_levels: list[float] | None = Field(
        None,
        description="Adaptive effort control: each prompt visit gets one of these effort "
        "fractions in (0, 1] (appended to the prompt, read by the 'effort' reward).",
    )
    arithmetic: ArithmeticConfig = ArithmeticConfig()

    @model_validator(mode="after")
    def _needs_location(self) -> DataConfig:
        if self.source == "file" and not self.path:
            raise ValueError("data.path is required when data.source is 'file'")
        if self.source == "hf" and not self.hf_name:
            raise ValueError("data.hf_name is required when data.source is 'hf'")
        return self


class CureConfig(Section):
    """CURE branching (rlvr/rollout/cure.py): each completion is continued from a high-entropy
    critical token; the group grows from G to G * (1 + branches)."""

    branches: int = Field(1, ge=1, description="Continuations per sampled completion.")
    top_k: int = Field(20, ge=1, description="Draw the critical token among the top_k by entropy.")
    min_chars: int = Field(2, ge=0, description="Skip tokens with fewer visible characters.")
    stage1_steps: int | None = Field(
        None, ge=0, description="Branch up to this step (stage 1), then plain sampling (stage 2)."
    )
    seed: int = 0


class SoftThinkingConfig(Section):
    """SofT-GRPO soft thinking (rlvr/rollout/soft.py, rlvr/algos/soft.py): while thinking, each
    step feeds sum_i softmax(g'/tau_g)_i E[id_i] over the top-k ids, g' = log p~ + noise_scale *
    Gumbel; after ``think_end`` the answer is sampled with rollout.temperature/top_k/top_p.
    Defaults: the authors' training scripts. Runs on the 'hf' engine."""

    top_k: int = Field(5, ge=1, le=64, description="k: tokens in each soft mixture.")
    top_p: float = Field(0.95, gt=0, le=1, description="Top-p before taking the k ids.")
    tau_g: float = Field(0.1, gt=0, description="Gumbel-softmax temperature of the weights.")
    noise_scale: float = Field(1.0, ge=0, description="Gumbel noise scale (0 = no noise).")
    temperature: float = Field(1.0, gt=0, description="T of softmax(z / T) in soft steps.")
    think_start: str = Field("<think>", description="Token that opens the thinking phase.")
    think_end: str = Field("</think>", description="Token that ends it (then discrete).")

    def params(self) -> Any:
        from rlvr.rollout.soft import SoftThinkingParams

        return SoftThinkingParams(**self.model_dump())


class RolloutAbstentionConfig(Section):
    """Dynamic abstention in RL rollouts (rlvr's own reading, off by default;
    rlvr/abstention/rl.py): the gate stops rollouts whose value falls below the threshold and
    they are scored r_abstain."""

    head: str = Field(description="Value head (head.safetensors from rlvr abstain-train).")
    threshold: float | None = Field(None, description="Default: the head's sidecar.")
    r_abstain: float = Field(0.0, description="Reward of an abstained rollout (r_⊥).")
    min_tokens: int = Field(1, ge=1, description="Policy tokens before the gate may act.")


class ServerConfig(Section):
    """Rollout servers in their own processes (``rollout.mode: server``; rlvr/rollout/server.py):
    each started with ``rlvr serve MODEL``; weights synced after every optimizer step, each
    sync checked by a log-prob receipt (rlvr/rollout/receipt.py)."""

    urls: list[str] = Field(
        [], description="Server base URLs, e.g. [http://127.0.0.1:8000]; prompts spread over them."
    )
    timeout_s: float = Field(
        600.0, gt=0, description="Bound on every request and weight transfer to a server."
    )
    receipt_tol: float = Field(
        1e-4,
        gt=0,
        description="Largest |server - trainer| probe log-prob after a sync (float32; the "
        "measured gap after a correct sync is < 1e-5); above it the run stops with WeightSyncError.",
    )
    transport: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="Weight-transfer data plane: auto = nccl with CUDA, gloo without."
    )
    trainer_host: str = Field(
        "127.0.0.1", description="Address the servers reach this trainer at (data plane)."
    )
    adapter_dir: str | None = Field(
        None,
        description="lora.sync=adapter: where each adapter version is written for the servers "
        "to load (a fresh directory under it per run). Default: the system temporary "
        "directory, readable only by servers on this machine; servers on other machines need "
        "a shared filesystem mounted at the same path.",
    )


class RolloutConfig(Section):
    engine: Literal["hf", "vllm"] = "hf"
    mode: Literal["colocate", "server"] = Field(
        "colocate",
        description="colocate: the engine runs in the trainer process; server: vLLM servers "
        "started by rlvr serve (rollout.server), weights synced over vLLM's control plane.",
    )
    server: ServerConfig = ServerConfig()
    group_size: int = Field(8, ge=1, description="Completions per prompt (G).")
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = -1
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    max_model_len: int | None = None
    kv_cache_gib: float = Field(
        1.0,
        gt=0,
        description="vLLM CPU KV-cache size in GiB (fractions allowed: 0.25 = 256 MiB). vLLM "
        "allocates all of it at start; with rollout.sleep (on CPU by default) its pages go back "
        "after each rollout, so only the blocks a rollout writes stay resident. A step needs "
        "about rows x (prompt + completion) tokens x 2 x layers x kv_heads x head_dim x dtype "
        "bytes (docs/bench_step.md). A VLLM_CPU_KVCACHE_SPACE in the environment (whole GiB) "
        "takes precedence.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None,
        description="Rollout engine dtype (default: model.dtype). bfloat16 rollouts with "
        "float32 training: the engine holds its own copy, synced each step; the gap shows in "
        "logprob_mismatch, and algo.old_logprobs=rollout uses the engine's log-probs as the "
        "ratio's denominator (the IS correction).",
    )
    enforce_eager: bool | None = Field(
        None, description="vLLM eager mode (default: eager on CPU, CUDA graphs on GPU)."
    )
    sleep: bool | None = Field(
        None,
        description="Free the vLLM KV cache's memory between rollouts, for the colocated "
        "update. GPU: vLLM sleep mode (level 1; default off). CPU: its pages go back to the "
        "kernel and the prefix cache is reset (default on; false keeps them resident).",
    )
    max_staleness: int = Field(
        0,
        ge=0,
        le=1,
        description="0: synchronous (generate, then train). 1: one-step off-policy: batch n+1 "
        "is generated (weights of step n-1) while the learner trains on batch n "
        "(rlvr/off_policy.py; docs/off_policy.md).",
    )
    cure: CureConfig | None = Field(None, description="CURE critical-token branching.")
    soft_thinking: SoftThinkingConfig | None = Field(
        None, description="SofT-GRPO soft-thinking rollouts (hf engine)."
    )
    abstention: RolloutAbstentionConfig | None = Field(
        None,
        description="Dynamic abstention in rollouts, scored r_abstain (hf engine; rlvr's own "
        "reading, off by default).",
    )

    @model_validator(mode="after")
    def _soft_thinking_fits(self) -> RolloutConfig:
        if self.mode == "server":
            if not self.server.urls:
                raise ValueError(
                    "rollout.mode=server needs rollout.server.urls, e.g. "
                    "[http://127.0.0.1:8000] (start one with: rlvr serve MODEL)"
                )
            if self.soft_thinking is not None:
                raise ValueError("rollout.soft_thinking runs in-process (hf): not with mode=server")
        if self.soft_thinking is not None:
            if self.engine != "hf":
                raise ValueError(
                    "rollout.soft_thinking needs rollout.engine: hf (vLLM takes no per-step "
                    "embedding inputs)"
                )
            if self.cure is not None:
                raise ValueError("rollout.soft_thinking and rollout.cure cannot be combined")
        if self.abstention is not None:
            if self.engine != "hf":
                raise ValueError(
                    "rollout.abstention needs rollout.engine: hf (vLLM exposes no per-step "
                    "hidden states)"
                )
            if self.soft_thinking is not None or self.cure is not None:
                raise ValueError("rollout.abstention cannot be combined with soft_thinking or cure")
        if self.max_staleness >= 1 and self.cure is not None:
            raise ValueError(
                "rollout.cure needs the policy's entropies while it generates, and with "
                "rollout.max_staleness: 1 the policy is being updated at that time: use "
                "rollout.max_staleness: 0 with rollout.cure"
            )
        return self


class RewardConfig(Section):
    name: str = Field(description="Registry name, 'pkg.module:fn' or 'path/file.py:fn'.")
    weight: float = 1.0
    params: dict[str, Any] = {}
    key: str | None = Field(None, description="Component name in metrics.")


class RewardRunnerConfig(Section):
    num_workers: int = Field(2, ge=1)
    timeout_s: float = Field(5.0, gt=0)
    failure_score: float = 0.0
    memory_limit_mb: int | None = Field(
        None, ge=64, description="Address-space limit of each reward worker (RLIMIT_AS)."
    )
    max_abs_score: float = Field(
        1e6,
        gt=0,
        description="A reward value outside [-max_abs_score, max_abs_score] (or not finite) "
        "counts as a failed call and scores failure_score.",
    )
    stop_failure_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Stop the run (checkpoint kept) when a reward's failed + timed-out share "
        "of a step's calls exceeds this; unset: warn only.",
    )
    accuracy_key: str | None = Field(
        "math", description="Reward component reported as step accuracy (score > 0.5)."
    )


class FilterConfig(Section):
    name: str = Field(description="Batch-filter registry name, e.g. 'dynamic_sampling'.")
    params: dict[str, Any] = {}


class TokenWeightConfig(Section):
    name: str = Field(description="Token-weight rule (rlvr/algos/token_weighting), e.g. 'steer'.")
    params: dict[str, Any] = {}


class RolloutCorrectionConfig(Section):
    """Importance weights pi_old / mu on the surrogate (rlvr/algos/rollout_correction.py)."""

    mode: Literal["off", "truncate", "mask"] | None = Field(
        None,
        description="truncate: w = min(rho, C); mask: w = rho * 1[low <= rho <= C]; off. "
        "Default: truncate when rollout.max_staleness >= 1, off otherwise.",
    )
    level: Literal["token", "sequence"] = Field(
        "token", description="token: rho per token; sequence: the product over the sequence."
    )
    threshold: float = Field(2.0, gt=0, description="C: truncate's cap, mask's upper bound.")
    low_threshold: float = Field(0.0, ge=0, description="mask's lower bound (0: none).")

    @model_validator(mode="before")
    @classmethod
    def _from_mode(cls, value: Any) -> Any:
        """``algo.rollout_correction: truncate`` is short for ``{mode: truncate}``."""
        return {"mode": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _thresholds(self) -> RolloutCorrectionConfig:
        if self.low_threshold >= self.threshold:
            raise ValueError(
                f"low_threshold ({self.low_threshold}) must be below threshold ({self.threshold})"
            )
        return self


class AlgoConfig(Section):
    advantage: str = "grpo"
    advantage_params: dict[str, Any] = {}
    filters: list[FilterConfig] = Field(
        [], description="Batch filters applied in order after rewards (rlvr/algos/filters.py)."
    )
    mask_truncated: bool = Field(
        False, description="Zero loss weight for truncated samples (DAPO overlong filtering)."
    )
    token_weights: list[TokenWeightConfig] = Field(
        [], description="Per-token loss multipliers / penalties, composed in order."
    )
    eps_low: float = Field(0.2, ge=0)
    eps_high: float = Field(0.2, ge=0)
    kl_coef: float = Field(0.0, ge=0)
    entropy_coef: float = 0.0
    loss_aggregation: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"] = (
        "token_mean"
    )
    updates_per_batch: int = Field(1, ge=1, description="Optimizer steps per rollout batch.")
    old_logprobs: Literal["trainer", "rollout"] = Field(
        "trainer", description="Behaviour log-probs for the ratio: recomputed or the engine's."
    )
    rollout_correction: RolloutCorrectionConfig = Field(
        RolloutCorrectionConfig(),
        description="Rollout-policy importance correction (off | truncate | mask, or a "
        "section with mode / level / threshold / low_threshold).",
    )

    @model_validator(mode="after")
    def _bind_methods(self) -> AlgoConfig:
        """Resolve every estimator / filter / token-rule name and bind its parameters now, so
        a misspelling fails at load (``'algo.advantage': ... (did you mean 'grpo'?)``)."""
        from rlvr.algos.registry import ADVANTAGES, FILTERS, BindError
        from rlvr.algos.token_weighting.base import TOKEN_WEIGHTS

        ADVANTAGES.bind(
            self.advantage,
            dict(self.advantage_params),
            name_field="advantage",
            params_field="advantage_params",
        )
        for section, registry in (("filters", FILTERS), ("token_weights", TOKEN_WEIGHTS)):
            for i, spec in enumerate(getattr(self, section)):
                try:
                    registry.bind(
                        spec.name, dict(spec.params), name_field="name", params_field="params"
                    )
                except BindError as e:
                    raise BindError(f"{section}.{i}.{e.field}", e.message, e.error) from None
        return self


class TrainConfig(Section):
    steps: int = Field(100, ge=1)
    prompts_per_step: int = Field(8, ge=1, description="B prompts per step.")
    micro_batch_size: int = Field(16, ge=1, description="Sequences per forward/backward.")
    lr: float = Field(1e-5, ge=0, description="Peak learning rate (0: the policy stays put).")
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the gradient norm to this (None: no clipping)."
    )
    logprob_impl: Literal["fused", "naive"] = "fused"
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="Where the policy trains: auto (cuda, cuda:LOCAL_RANK under torchrun, when "
        "a GPU is visible, else cpu), cpu, cuda or cuda:N.",
    )
    skip_zero_rows: bool = Field(
        True,
        description="Leave out of forward/backward the rows that cannot contribute gradient: "
        "zero loss weight, or zero advantage on every token when kl_coef = 0, entropy_coef = 0 "
        "and no token rule is set. The gradient is unchanged (normalisers are whole-batch); "
        "entropy / ratio / mismatch metrics cover the trained rows, train/skipped_rows counts "
        "the rest.",
    )
    micro_batch_order: Literal["index", "length"] = Field(
        "length",
        description="Rows per micro-batch: 'length' groups rows of similar length (longest "
        "first) so that little padding is computed; 'index' keeps batch order. Same gradient "
        "up to floating-point summation order.",
    )
    time_limit_s: float | None = Field(
        None, gt=0, description="Stop after this much training time (the run ends normally)."
    )
    threads: int | None = Field(None, description="torch CPU threads (default: torch's).")
    world_size: int | None = Field(
        None,
        ge=1,
        description="Trainer ranks this run must be launched with (torchrun / accelerate); "
        "a different launched world size stops with WorldSizeError (None: any).",
    )
    strategy: Literal["ddp", "fsdp2", "deepspeed"] | None = Field(
        None,
        description="Trainer-rank strategy this run must use (None: the launcher's; accelerate "
        "configs set it): ddp = replicated weights, gradient SUM all-reduce; fsdp2 = weights, "
        "gradients and optimizer state sharded (fully_shard, ranks in lockstep, DCP "
        "checkpoints); deepspeed = DeepSpeed ZeRO stage 1/2 (train.zero_stage: optimizer "
        "state, and at stage 2 gradients, partitioned; weights whole; rlvr/zero.py). A "
        "mismatch with the launcher stops with StrategyError.",
    )
    zero_stage: Literal[1, 2] | None = Field(
        None,
        description="train.strategy=deepspeed: ZeRO stage 1 (optimizer state partitioned) or "
        "2 (and gradients); None: the accelerate config's zero_stage, else 2. Stage 3 is "
        "train.strategy=fsdp2.",
    )
    max_nonfinite_steps: int = Field(
        3,
        ge=1,
        description="Stop after this many non-finite steps in a row (NaN/inf advantages, loss "
        "or gradient norm; each is skipped, never applied or checkpointed: rlvr/guard.py).",
    )


class WarmupConfig(Section):
    """Supervised warm-up before RL in the same run (EGSPO stage 1; rlvr/stages/warmup.py)."""

    completion_field: str = Field("solution", description="Demonstration field to imitate.")
    path: str | None = Field(None, description="jsonl demonstrations (default: training split).")
    steps: int = Field(200, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    max_examples: int | None = Field(None, ge=1)


class LoraConfig(Section):
    """LoRA adapters on the policy (peft; rlvr/lora.py). Only the adapters train."""

    rank: int = Field(16, ge=1, description="r: rank of the update B A.")
    alpha: float = Field(32.0, gt=0, description="Scale alpha / r of the update.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="peft target_modules: 'all-linear' or module names."
    )
    sync: Literal["merged", "adapter"] = Field(
        "merged",
        description="How a separate rollout engine gets the policy: merged weights "
        "W + (alpha/r) B A (out of place), or the adapter as a versioned vLLM LoRA "
        "request (the colocated vLLM engine, or rollout servers started with rlvr serve "
        "--lora-rank R).",
    )
    save_merged: bool = Field(
        False,
        description="Checkpoints also hold merged/: the merged model W + (alpha/r) B A as a "
        "plain Hugging Face model (config, safetensors, tokenizer) that transformers and vLLM "
        "load without peft. Checkpoints always hold the adapter.",
    )


class CheckpointConfig(Section):
    every: int = Field(50, ge=1)
    keep_last: int = Field(2, ge=1)
    save_final: bool = True


class LoggingConfig(Section):
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "rlvr"
    plots: bool = True
    progress: bool = True


class EvalConfig(Section):
    before: bool = False
    after: bool = False
    num_problems: int = Field(100, ge=1)
    samples: int = Field(4, ge=1, description="Samples per problem for pass@1.")
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int | None = None


class Recipe(Section):
    name: str = "run"
    output_dir: str = "runs"
    seed: int = 0
    resume: bool = Field(False, description="Continue the run in run_dir from its checkpoint.")
    overwrite: bool = Field(
        False, description="Delete an earlier run in run_dir and start a new one."
    )
    model: ModelConfig
    data: DataConfig = DataConfig()
    rollout: RolloutConfig = RolloutConfig()
    rewards: list[RewardConfig] = [RewardConfig(name="math")]
    reward_runner: RewardRunnerConfig = RewardRunnerConfig()
    warmup: WarmupConfig | None = None
    algo: AlgoConfig = Field(default_factory=AlgoConfig)  # built lazily: it loads the registries
    train: TrainConfig = TrainConfig()
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters instead of all weights.")
    checkpoint: CheckpointConfig = CheckpointConfig()
    logging: LoggingConfig = LoggingConfig()
    eval: EvalConfig = EvalConfig()
    # (rewards as validated, their RewardSpecs): parse_specs runs once per rewards value
    _reward_specs: tuple[list[dict[str, Any]], list[Any]] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _load_rewards(self) -> Recipe:
        """Load every reward (registry name or target) and check its parameters now."""
        from rlvr.registry import BindError

        try:
            self.reward_specs  # noqa: B018 - validates and keeps the specs
        except ValueError as e:
            raise BindError("", str(e)) from None
        crops = any(f.name == "lc_r1" for f in self.algo.filters)
        for i, r in enumerate(self.rewards):
            if crops and r.name == "lc_r1" and r.params.get("cmp_coef", 1.0) != 0:
                raise BindError(
                    "",
                    f"rewards[{i}].params.cmp_coef: the lc_r1 filter adds the compress reward "
                    "at </think> (LC-R1's placement); set cmp_coef: 0 on the lc_r1 reward so "
                    "it is not also in the sequence reward",
                )
        return self

    @model_validator(mode="after")
    def _resolve_rollout_correction(self) -> Recipe:
        """Fill in the default mode (truncate when rollouts may be stale, off otherwise);
        refuse a correction in bypass mode, where mu is already the ratio's denominator."""
        from rlvr.algos.rollout_correction import resolve_mode
        from rlvr.registry import BindError

        rc, a = self.algo.rollout_correction, self.algo
        if rc.mode is None:
            rc.mode = resolve_mode(
                None, max_staleness=self.rollout.max_staleness, old_logprobs=a.old_logprobs
            )
        elif rc.mode != "off" and a.old_logprobs == "rollout":
            raise BindError(
                "",
                f"algo.rollout_correction.mode: {rc.mode} weights pi_old / mu, but "
                "algo.old_logprobs: rollout makes mu the ratio's denominator already (bypass "
                "mode): set algo.rollout_correction: off or algo.old_logprobs: trainer",
            )
        return self

    @property
    def reward_specs(self) -> list[Any]:
        """The :class:`rewards.base.RewardSpec` of ``rewards``, validated by
        :func:`rewards.base.parse_specs` when the recipe loads (again only if ``rewards`` was
        changed since); the reward runner takes them as they are."""
        from rewards.base import parse_specs

        raw = [r.model_dump() for r in self.rewards]
        cached = self._reward_specs
        if cached is None or cached[0] != raw:
            cached = self._reward_specs = (raw, parse_specs(raw))
        return cached[1]

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


# ----------------------------------------------------------------------------- loading


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        keys.append(path)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_valid_keys(ann, path + "."))
    return keys


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _bind_error(e: Any) -> Any:
    from rlvr.registry import BindError

    err = (e.get("ctx") or {}).get("error")
    return err if isinstance(err, BindError) else None


def _format_errors(err: ValidationError, source: str, schema: type[BaseModel]) -> str:
    valid = _valid_keys(schema)
    lines = [f"{source}: invalid recipe"]
    for e in err.errors():
        path = _loc_to_path(e["loc"])
        if e["type"] == "extra_forbidden":
            generic = ".".join(p for p in path.split(".") if not p.isdigit())
            close = difflib.get_close_matches(generic, valid, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            lines.append(f"  unknown key '{path}'{hint}")
        elif _bind_error(e) is not None:
            b = _bind_error(e)
            key = ".".join(p for p in (path, b.field) if p)
            lines.append(f"  '{key}': {b.message}" if b.field else f"  {b.message}")
        elif e["type"] == "missing":
            lines.append(f"  missing required key '{path}'")
        else:
            got = e.get("input")
            got_s = repr(got)
            if len(got_s) > 60:
                got_s = got_s[:57] + "..."
            where = f"'{path}'" if path else "recipe"
            lines.append(f"  {where}: {e['msg']} (got {got_s})")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-parsed value."""
    if "=" not in text:
        raise RecipeError(f"override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            idx = int(part)
            node = node[idx]
            continue
        if part not in node or node[part] is None:
            node[part] = {}
        elif not isinstance(node[part], (dict, list)):
            raise RecipeError(
                f"override '{'.'.join(path)}': '{'.'.join(path[: i + 1])}' is a value"
            )
        node = node[part]
    last = path[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def read_tree(
    path: str | Path | None, overrides: list[str] | None = None
) -> tuple[dict[str, Any], str]:
    """The raw key tree of a recipe file (``{}`` without one) with ``key.sub=value``
    overrides applied, and the source name errors are reported under."""
    tree: dict[str, Any] = {}
    source = "<overrides>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise RecipeError(f"{p}: recipe file not found")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise RecipeError(f"{p}: not valid YAML: {e}") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise RecipeError(f"{p}: a recipe must be a mapping at the top level")
        tree = loaded
    for text in overrides or []:
        keys, value = parse_override(text)
        try:
            apply_override(tree, keys, value)
        except (IndexError, ValueError) as e:
            raise RecipeError(f"override '{text}': {e}") from e
    return tree, source


def validate_tree(tree: dict[str, Any], source: str, schema: type[M]) -> M:
    """Validate a key tree against ``schema``; errors name ``source``, the dotted key and,
    for an unknown key, the closest valid one."""
    try:
        return schema.model_validate(tree)
    except ValidationError as e:
        raise RecipeError(_format_errors(e, source, schema)) from None


def load_recipe(
    path: str | Path | None, overrides: list[str] | None = None, *, schema: type[M] = Recipe
) -> M:
    """Load and validate a recipe file (against ``schema``), applying ``key.sub=value``
    overrides."""
    tree, source = read_tree(path, overrides)
    return validate_tree(tree, source, schema)


def dump_recipe(recipe: Recipe, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = recipe.model_dump(mode="json")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
