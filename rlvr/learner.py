"""The learner: policy (+ frozen reference), optimizer and LR schedule, token rules, policy loss.

It consumes one tensor-only :class:`~rlvr.batch.TrainBatch` per step and knows no estimator,
reward or engine (advantages arrive computed). Per micro-batch the policy's per-token log-probs
and entropies come from the fused kernel (rlvr/kernels), and the clipped surrogate

    L = sum_t w_t * [-min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t)
                     + kl_coef * k3(pi_ref || pi)_t - entropy_coef * H_t]
    r_t = exp(logp_t - logp_old_t)

(rlvr/algos/losses.py; ``w_t`` the batch-level aggregation weights, optionally multiplied by
the token rules' weights, rlvr/algos/token_weighting, and on the surrogate by the rollout
correction's importance weights f(pi_old / mu), rlvr/algos/rollout_correction.py) is back-propagated; then grad-norm
clipping, AdamW and the LR schedule. Token rules make their whole-batch choices from one no-grad
pass first. Rows with soft-thinking steps (SofT-GRPO: ``batch.extras`` soft_*) get inputs
rebuilt from the recorded (ids, g') and the reparameterised log-prob there
(rlvr/soft_policy.py); everything after the log-probs is unchanged.

What it measured flows back as the return value of :meth:`Learner.update` (metrics, and the
completion tokens' entropies for the histogram). :meth:`token_entropies` is the explicit
function CURE's branching (on the sampler side) is handed; :meth:`weights` is the full state
dict (tied weights included) for syncing rollout engines.

Under ``train.strategy=fsdp2`` the policy and the reference are sharded (rlvr/fsdp.py) and
every pass is padded to the same count on every rank (:meth:`Learner._lockstep`): a rank out
of rows runs a zero-weight pass, so each FSDP2 all-gather and reduce-scatter has all ranks.
:meth:`weights`, :meth:`save_weights` and :meth:`load_optimizer_state` are collectives there
(rank 0 asks the followers to join, rlvr/distributed.py); with LoRA the peft model is sharded
and rank 0 merges (or picks the adapter) from the gathered full state dict (rlvr/lora.py).

Under ``train.strategy=deepspeed`` the weights stay whole and the optimizer state (ZeRO-1) and
gradients (ZeRO-2) are partitioned by a DeepSpeed engine over the same module and AdamW
(rlvr/zero.py): backward and the update go through the engine (clipping inside its step),
training passes run in lockstep, forwards and :meth:`weights` stay local, and
:meth:`save_weights` / :meth:`load_optimizer_state` assemble / scatter the whole AdamW state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlvr.algos import aggregation_weights, policy_loss
from rlvr.algos.rollout_correction import CorrectionStats, RolloutCorrection
from rlvr.algos.token_weighting import BatchTokenStats, MicroBatchTokens, build_token_weights
from rlvr.batch import TrainBatch
from rlvr.config import Recipe
from rlvr.distributed import current as current_dist
from rlvr.guard import first_nonfinite
from rlvr.metrics import entropy_metrics
from rlvr.rollout.base import Completion
from rlvr.soft_policy import SoftTokens, policy_logprobs, soft_from_extras

OPTIMIZER_FILE = "optimizer.pt"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


log = logging.getLogger("rlvr")


def lr_lambda(step: int, *, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine decay to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def load_policy(recipe: Recipe, weights_path: str, *, revision: str | None) -> Any:
    from transformers import AutoModelForCausalLM

    m = recipe.model
    return AutoModelForCausalLM.from_pretrained(
        weights_path,
        dtype=DTYPES[m.dtype],
        trust_remote_code=m.trust_remote_code,
        revision=revision,
        use_safetensors=True,
    )


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``train.device``: auto is ``cuda:LOCAL_RANK`` when a GPU is visible, else the CPU."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:  # cuda: this rank's GPU
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device={name}: no CUDA GPU is visible to this process")
        torch.cuda.set_device(device)
    return device


@dataclass
class UpdateResult:
    metrics: dict[str, float]
    token_entropies: torch.Tensor  # [completion tokens] entropies of the update's first pass
    nonfinite: str | None = None  # the NaN/inf quantity that made it skip its update (guard)


class Learner:
    def __init__(self, recipe: Recipe, *, pad_id: int, weights_path: str, resumed: bool) -> None:
        """``weights_path``: the model directory, or the checkpoint being resumed from."""
        m, t = recipe.model, recipe.train
        self.recipe = recipe
        self.pad_id = pad_id
        self.lora = recipe.lora
        self.dist = current_dist()  # several ranks: rlvr/distributed.py (one rank: no-ops)
        if self.dist.loads_together:  # FSDP2 / ZeRO: every rank loads these weights
            init = {"weights_path": weights_path, "resumed": resumed, "model_path": m.path}
            self.dist.command({"cmd": "init", **init})
        if self.lora is None:
            self.model = load_policy(recipe, weights_path, revision=None if resumed else m.revision)
        else:  # the base from model.path; the adapter new, or from the checkpoint resumed
            self.model = load_policy(recipe, m.path, revision=m.revision)
        # the model runs here; batches and the per-token loss math stay on the CPU (_logprobs)
        self.device = resolve_device(t.device, self.dist.local_rank)
        self.model.to(self.device)
        log.info("the policy trains on %s", self.device)
        if m.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if self.lora is not None:
            from rlvr.lora import is_adapter_dir, wrap_policy

            if resumed and not is_adapter_dir(weights_path):
                raise ValueError(
                    f"lora is set but the checkpoint {weights_path} holds no LoRA adapter "
                    "(adapter_config.json): it was written by a run without lora"
                )
            self.model = wrap_policy(self.model, self.lora, weights_path if resumed else None)
        self.model.train()
        self.ref_model = None
        # with LoRA the reference is the base itself: the policy with its adapters disabled
        self.ref_is_base = self.lora is not None and recipe.algo.kl_coef > 0
        if recipe.algo.kl_coef > 0 and self.lora is None:
            self.ref_model = load_policy(recipe, m.path, revision=m.revision).to(self.device).eval()
            self.ref_model.requires_grad_(False)
        if self.dist.sharded:  # train.strategy=fsdp2: parameters become DTensor shards
            from rlvr.fsdp import shard_model

            shard_model(self.model)
            if self.ref_model is not None:
                shard_model(self.ref_model)
        self.token_rules = build_token_weights(recipe.algo.token_weights)
        rc = recipe.algo.rollout_correction
        self.rollout_correction = (  # algo.rollout_correction: w_t = f(pi_old / mu) on the surrogate
            RolloutCorrection(rc.mode, rc.level, rc.threshold, rc.low_threshold)
            if rc.mode not in (None, "off")
            else None
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=t.lr,
            betas=t.betas,
            weight_decay=t.weight_decay,
        )
        schedule: Callable[[int], float] = lambda s: lr_lambda(  # noqa: E731
            s, warmup=t.warmup_steps, total=t.steps, schedule=t.schedule, min_ratio=t.min_lr_ratio
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.engine: Any = None  # train.strategy=deepspeed: the ZeRO engine (rlvr/zero.py)
        if self.dist.strategy == "deepspeed":
            from rlvr import zero

            self.engine = zero.wrap(self.model, self.optimizer, recipe, self.dist.zero_stage)
        self.updates_done = 0  # RL steps trained (seeds token rules' random choices)

    # ------------------------------------------------------------------ what others call

    def weights(self) -> Iterable[tuple[str, torch.Tensor]]:
        """Every tensor of the policy's state dict (tied ``lm_head`` included); with LoRA the
        base model's names with the merged weights W + (alpha/r) B A, or with
        ``lora.sync=adapter`` the adapter's own tensors (rlvr/lora.py)."""
        if self.lora is not None and self.dist.sharded:  # FSDP2: gathered, then on rank 0
            from rlvr.fsdp import full_state_dict
            from rlvr.lora import adapter_from_full, merged_from_full

            self.dist.command({"cmd": "weights"})
            full = full_state_dict(self.model)
            if not self.dist.is_driver:
                return {}.items()
            pick = adapter_from_full if self.lora.sync == "adapter" else merged_from_full
            return pick(self.model, full).items()
        if self.lora is not None:
            from rlvr.lora import adapter_state_dict, merged_state_dict

            if self.lora.sync == "adapter":
                return adapter_state_dict(self.model).items()

            return merged_state_dict(self.model).items()
        if self.dist.sharded:  # collective: the full tensors on rank 0 ({} on the others)
            from rlvr.fsdp import full_state_dict

            self.dist.command({"cmd": "weights"})
            return full_state_dict(self.model).items()
        return self.model.state_dict().items()

    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        """The policy's log-probs of ``token_ids[1:]`` (the rollout servers' sync receipt,
        rlvr/rollout/receipt.py); FSDP2: a forward every rank joins."""
        from rlvr.rollout.receipt import trainer_logprobs

        if self.dist.sharded:
            self.dist.command({"cmd": "probe", "ids": list(token_ids)})
        return trainer_logprobs(self.model, token_ids)

    def save_weights(self, path: Path, tokenizer: Any = None) -> None:
        """The policy (Hugging Face files) and the optimizer state into checkpoint ``path``;
        FSDP2 (collective): ``path/dcp`` from every rank plus the HF files from rank 0. With
        ``lora.save_merged`` also ``path/merged`` (with ``tokenizer``: servable as is)."""
        if self.dist.sharded:
            from rlvr.fsdp import save_checkpoint

            self.dist.command({"cmd": "checkpoint", "dir": str(path)})
            export = (
                None if self.lora is None else lambda full: self._save_lora(path, full, tokenizer)
            )
            save_checkpoint(
                self.model, self.optimizer, path, rank=self.dist.rank, hf_subdir="", export=export
            )
            return
        if self.engine is not None:  # ZeRO (collective): the partitions assembled on rank 0
            from rlvr.zero import full_optimizer_state

            self.dist.command({"cmd": "checkpoint", "dir": str(path)})
            optimizer_state = full_optimizer_state(self.engine, self.model, rank=self.dist.rank)
            if not self.dist.is_driver:
                return
        else:
            optimizer_state = self.optimizer.state_dict()
        self.model.save_pretrained(path, safe_serialization=True)
        torch.save(optimizer_state, path / OPTIMIZER_FILE)
        if self.lora is not None and self.lora.save_merged:  # lora.save_merged: W + (a/r) B A
            from rlvr.fsdp import export_hf
            from rlvr.lora import MERGED_DIR, merged_state_dict

            merged = merged_state_dict(self.model)
            export_hf(self.model, merged, path / MERGED_DIR, tokenizer=tokenizer)

    def _save_lora(self, path: Path, full: dict[str, torch.Tensor], tokenizer: Any) -> None:
        """FSDP2, rank 0: the adapter files (and ``lora.save_merged``'s merged model) from the
        gathered full state dict of the peft model."""
        from rlvr.fsdp import export_hf
        from rlvr.lora import MERGED_DIR, merged_from_full

        self.model.save_pretrained(path, state_dict=full, safe_serialization=True)
        if self.lora is not None and self.lora.save_merged:
            merged = merged_from_full(self.model, full)
            export_hf(self.model, merged, path / MERGED_DIR, tokenizer=tokenizer)

    def load_optimizer_state(self, path: Path) -> None:
        """The optimizer state of checkpoint ``path`` (written at any world size, by either
        strategy): ``optimizer.pt``, or the ``dcp`` directory of an FSDP2 run (FSDP2:
        collective, DCP reshards; one process: read whole)."""
        from rlvr import fsdp

        state: dict[str, Any] = {}
        if self.engine is not None and self.dist.is_driver:  # ZeRO: read (and checked) before
            from rlvr.zero import check_full_optimizer_state  # the followers are asked to join

            state = (
                fsdp.read_full_optimizer_state(self.model, path)
                if (path / fsdp.DCP_DIR).is_dir()
                else torch.load(path / OPTIMIZER_FILE, weights_only=True)
            )
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            check_full_optimizer_state(state, trainable)
        if self.dist.sharded or self.engine is not None:
            self.dist.command({"cmd": "resume", "dir": str(path)})
        if self.engine is not None:  # ZeRO (collective): every rank keeps its part
            from rlvr.zero import load_full_optimizer_state

            load_full_optimizer_state(self.engine, self.model, state, rank=self.dist.rank)
        elif (path / fsdp.DCP_DIR).is_dir():
            fsdp.load_checkpoint(self.model, path, self.optimizer)
        elif self.dist.sharded:
            fsdp.load_full_optimizer_state(
                self.model,
                self.optimizer,
                torch.load(path / OPTIMIZER_FILE, weights_only=True) if self.dist.is_driver else {},
            )
        else:
            self.optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=True))

    def token_entropies(
        self, prompt_ids: list[list[int]], groups: list[list[Completion]]
    ) -> list[list[list[float]]]:
        """Per completion token, the current policy's predictive entropy: [B][G][tokens]."""
        if self.dist.sharded:  # refused at start (rlvr/distributed.py); rank 0 alone would hang
            raise RuntimeError("token_entropies runs on rank 0 alone: not under FSDP2")
        rows = [(p, c) for p, g in zip(prompt_ids, groups, strict=True) for c in g]
        width = max(len(p) + len(c.token_ids) for p, c in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        cmask = torch.zeros_like(ids)
        for i, (p, c) in enumerate(rows):
            lp, lc = len(p), len(c.token_ids)
            ids[i, : lp + lc] = torch.tensor(p + list(c.token_ids), dtype=torch.long)
            attn[i, : lp + lc] = 1
            cmask[i, lp : lp + lc] = 1
        _, ent = self.no_grad_pass(self.model, ids, attn, cmask)
        flat = [
            ent[i, len(p) - 1 : len(p) - 1 + len(c.token_ids)].tolist()
            for i, (p, c) in enumerate(rows)
        ]
        size = len(groups[0])
        return [flat[b * size : (b + 1) * size] for b in range(len(groups))]

    def micro_batches(self, n: int) -> list[torch.Tensor]:
        size = self.recipe.train.micro_batch_size
        return [torch.arange(i, min(i + size, n)) for i in range(0, n, size)]

    def plan_micro_batches(
        self, rows: torch.Tensor, attention_mask: torch.Tensor
    ) -> list[torch.Tensor]:
        """``rows`` split into micro-batches of ``train.micro_batch_size``; with
        ``train.micro_batch_order=length`` rows of similar real length share one (longest
        first, ties in batch order), so each is trimmed to little padding."""
        t = self.recipe.train
        if t.micro_batch_order == "length" and len(rows) > t.micro_batch_size:
            lengths = attention_mask[rows].sum(dim=1)
            rows = rows[torch.sort(-lengths, stable=True).indices]
        size = t.micro_batch_size
        return [rows[i : i + size] for i in range(0, len(rows), size)]

    def _lockstep(
        self, plan: list[torch.Tensor], backward: bool = False
    ) -> list[torch.Tensor | None]:
        """FSDP2 (every pass) and ZeRO (``backward`` passes): ``plan`` padded with ``None`` (a
        zero-weight pass) to the largest count over ranks, so every rank joins every
        all-gather / reduce-scatter; ZeRO runs at least one (its step needs gradients: a
        zero-weight pass gives exact zeros). Otherwise ``plan``."""
        dist = self.dist
        if not (dist.sharded or (backward and self.engine is not None)):
            return list(plan)
        passes = dist.all_reduce_max(len(plan))
        if self.engine is not None:
            passes = max(passes, 1)
        return [*plan, *[None] * (passes - len(plan))]

    def _pad_pass(self, model: Any, batch_tensors: tuple[torch.Tensor, ...], soft: Any) -> Any:
        """A pass over row 0 whose result is unused (FSDP2 lockstep); returns its log-probs."""
        ids, attn, cmask = batch_tensors
        row = torch.tensor([0])
        return self._logprobs(model, ids, attn, cmask, soft, row, int(attn[0].sum()))[0]

    def trained_rows(self, batch: TrainBatch) -> torch.Tensor:
        """Rows that can contribute gradient (all of them unless ``train.skip_zero_rows``).

        A row with zero loss weight has zero weight on every token of every term. A row whose
        advantage is zero on every target token has a zero surrogate gradient; it still has a
        gradient through the KL and entropy terms and may carry a token rule's penalty, so
        it is kept when ``kl_coef > 0``, ``entropy_coef != 0`` or a token rule is set."""
        n = batch.num_rows
        if not self.recipe.train.skip_zero_rows or self.token_rules:
            return torch.arange(n)
        a = self.recipe.algo
        live = batch.sample_weights != 0
        if a.kl_coef == 0 and a.entropy_coef == 0:
            live &= ((batch.advantages != 0) & (batch.target_mask > 0)).any(dim=1)
        return live.nonzero().flatten()

    @torch.no_grad()
    def no_grad_pass(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_mask: torch.Tensor,
        soft: SoftTokens | None = None,
        rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token (log-prob, entropy) [N, L-1] of ``model`` over the whole batch (only
        ``rows`` computed when given; the others stay zero)."""
        n, width = input_ids.shape
        out = torch.zeros((n, width - 1), dtype=torch.float32)
        ent_out = torch.zeros((n, width - 1), dtype=torch.float32)
        rows = torch.arange(n) if rows is None else rows
        for idx in self._lockstep(self.plan_micro_batches(rows, attention_mask)):
            if idx is None:  # FSDP2: this rank is out of rows; the pass joins the collectives
                self._pad_pass(model, (input_ids, attention_mask, completion_mask), soft)
                continue
            ln = int(attention_mask[idx].sum(dim=1).max())
            logp, ent = self._logprobs(
                model, input_ids, attention_mask, completion_mask, soft, idx, ln
            )
            out[idx, : ln - 1] = logp
            ent_out[idx, : ln - 1] = ent
        if self.dist.sharded:  # FSDP2 keeps the root's parameters (embeddings, final norm,
            model.reshard()  # LM head) whole after a forward; a no-grad pass has no backward
        return out, ent_out

    def _logprobs(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_mask: torch.Tensor,
        soft: SoftTokens | None,
        idx: torch.Tensor,
        ln: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-prob, entropy) [M, ln-1] of rows ``idx``, on the CPU; soft-thinking steps
        (SofT-GRPO) get the reparameterised log-prob from inputs rebuilt out of (ids, g'),
        rlvr/soft_policy.py. The rows go to the model's device; the results come back as a
        differentiable copy, so the loss terms ([M, ln-1] floats) are computed on the CPU and
        backward reaches the model wherever it is."""
        st = self.recipe.rollout.soft_thinking
        dev = self.device
        logp, ent = policy_logprobs(
            model,
            input_ids[idx, :ln].to(dev),
            attention_mask[idx, :ln].to(dev),
            completion_mask[idx, :ln].to(dev),
            None if soft is None else soft.rows(idx, ln, dev),
            temperature=self.recipe.rollout.temperature,
            soft_temperature=1.0 if st is None else st.temperature,
            impl=self.recipe.train.logprob_impl,
        )
        return logp.cpu(), ent.cpu()

    def frozen_logprobs(self, model: Any, batch: TrainBatch) -> torch.Tensor:
        return self.no_grad_pass(
            model,
            batch.input_ids,
            batch.attention_mask,
            batch.completion_mask,
            soft_from_extras(batch.extras),
        )[0]

    # ------------------------------------------------------------------ one update

    def update(self, batch: TrainBatch) -> UpdateResult:
        """Forward/backward over micro-batches, then ``algo.updates_per_batch`` optimizer steps."""
        a = self.recipe.algo
        dist = self.dist
        dist.before_update(self, batch)  # rank 0 of several: the global batch to every rank
        n = batch.num_rows
        soft = soft_from_extras(batch.extras)
        target_mask = batch.target_mask
        bad = first_nonfinite({"advantages": batch.advantages[target_mask > 0]})
        if bad is not None:  # rlvr/guard.py: no forward pass, no optimizer step
            return self._skip_update(bad, n)
        # tokens that enter the loss: all completion tokens unless a sample is masked out
        loss_mask = target_mask * batch.sample_weights.unsqueeze(1)
        num_tokens = int((loss_mask > 0).sum())
        token_adv = batch.advantages
        rollout_lp = batch.rollout_logprobs[:, 1:]
        # rows that can contribute gradient; the normalisers above stay whole-batch
        trained_all = self.trained_rows(batch)
        rows = dist.shard_rows(batch, trained_all)  # this rank's whole groups (all: one rank)
        plan = self.plan_micro_batches(rows, batch.attention_mask)
        ids, attn, cmask = batch.input_ids, batch.attention_mask, batch.completion_mask
        ref_lp = None
        if self.ref_model is not None:
            ref_lp = self.no_grad_pass(self.ref_model, ids, attn, cmask, soft, rows)[0]
        elif self.ref_is_base:
            with self.model.disable_adapter():
                ref_lp = self.no_grad_pass(self.model, ids, attn, cmask, soft, rows)[0]
        old_lp: torch.Tensor | None = None
        if a.old_logprobs == "rollout":
            old_lp = rollout_lp
        elif a.updates_per_batch > 1:
            old_lp = self.no_grad_pass(self.model, ids, attn, cmask, soft, rows)[0]
            if self.token_rules:  # the whole-batch statistics need every rank's rows
                dist.all_reduce_sum(old_lp)
        rule_metrics: dict[str, float] = {}
        if self.token_rules:  # algo.token_weights: whole-batch selections before the loop
            logp_all, ent_all = self.no_grad_pass(
                self.model,
                batch.input_ids,
                batch.attention_mask,
                batch.completion_mask,
                soft,
                dist.shard_rows(batch, torch.arange(n)),
            )
            # each rank filled its rows, zeros elsewhere: the SUM is the global pass exactly
            dist.all_reduce_sum(logp_all)
            dist.all_reduce_sum(ent_all)
            stats = BatchTokenStats(
                logp_all,
                logp_all if old_lp is None else old_lp,
                ent_all,
                token_adv,
                loss_mask.float(),
                self.updates_done,
                a.eps_low,
                a.eps_high,
            )
            rule_metrics = self.token_rules.prepare(stats)
        entropies = torch.zeros_like(rollout_lp)
        correction = CorrectionStats()
        sums = {"clip": 0.0, "kl": 0.0, "ratio": 0.0, "loss": 0.0, "mismatch": 0.0, "ent": 0.0}
        grad_norms = []
        skipped: str | None = None
        for update in range(a.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            loss_before = sums["loss"]
            for idx in self._lockstep(plan, backward=True):
                if idx is None:  # FSDP2 / ZeRO: a zero-weight backward (exact zeros) joins the
                    pad = self._pad_pass(self.model, (ids, batch.attention_mask, cmask), soft)
                    self._backward(pad.sum() * 0.0)  # ranks' reduce-scatters
                    continue
                ln = int(batch.attention_mask[idx].sum(dim=1).max())
                mask = target_mask[idx, : ln - 1]
                logp, ent = self._logprobs(
                    self.model,
                    batch.input_ids,
                    batch.attention_mask,
                    batch.completion_mask,
                    soft,
                    idx,
                    ln,
                )
                old = logp.detach() if old_lp is None else old_lp[idx, : ln - 1]
                ref = None if ref_lp is None else ref_lp[idx, : ln - 1]
                weights = aggregation_weights(
                    loss_mask[idx, : ln - 1],
                    a.loss_aggregation,
                    n,
                    num_tokens,
                    self.recipe.rollout.max_new_tokens,
                )
                rules = self.token_rules.apply(
                    MicroBatchTokens(
                        idx, logp, old, ent.detach(), token_adv[idx, : ln - 1], mask.float()
                    )
                )
                multipliers = rules.weights if self.token_rules else None
                if self.rollout_correction is not None:  # rho = pi_old / mu, a constant
                    is_w = self.rollout_correction.weights(
                        old.detach(),
                        rollout_lp[idx, : ln - 1],
                        weights > 0,
                        correction if update == 0 else None,
                    )
                    multipliers = is_w if multipliers is None else multipliers * is_w
                terms = policy_loss(
                    logp,
                    old,
                    token_adv[idx, : ln - 1],
                    weights,
                    eps_low=a.eps_low,
                    eps_high=a.eps_high,
                    ref_logp=ref,
                    kl_coef=a.kl_coef,
                    entropy=ent,
                    entropy_coef=a.entropy_coef,
                    multipliers=multipliers,
                    penalty=rules.penalty,
                )
                self._backward(terms.loss)
                if update == 0:
                    fmask = mask.float()
                    entropies[idx, : ln - 1] = ent.detach() * fmask
                    sums["mismatch"] += float(
                        ((logp.detach() - rollout_lp[idx, : ln - 1]).abs() * fmask).sum()
                    )
                    sums["ent"] += float((ent.detach() * fmask).sum())
                sums["clip"] += float(terms.clip_fraction_sum)
                sums["kl"] += float(terms.kl_sum)
                sums["ratio"] += float(terms.ratio_sum)
                sums["loss"] += float(terms.loss.detach())
            # every rank decides on the same numbers: the summed loss, the reduced grad norm
            step_loss = dist.all_reduce_sum(torch.tensor([sums["loss"] - loss_before]))
            if self.engine is not None:  # ZeRO: clip, the overflow check and AdamW in its step
                from rlvr import zero

                skipped = first_nonfinite({"loss": float(step_loss)})
                if skipped is not None:  # not stepped: the accumulated partitions dropped
                    zero.discard(self.engine)
                    grad_norms.append(float("nan"))
                    break
                grad_norms.append(zero.step(self.engine))
                skipped = first_nonfinite({"grad norm": grad_norms[-1]})
                if skipped is not None:  # DeepSpeed skipped a non-finite gradient itself
                    break
                continue
            if not plan:  # every row skipped: the exact gradient is zero
                self._zero_grads()
            if not dist.sharded:  # FSDP2 reduce-scattered the SUM in each backward
                dist.all_reduce_grads(self.model.parameters())  # SUM of the ranks' partial losses
            grad_norms.append(self._clip_grad_norm())
            skipped = first_nonfinite({"loss": float(step_loss), "grad norm": grad_norms[-1]})
            if skipped is not None:  # rlvr/guard.py: this update is not applied
                self.optimizer.zero_grad(set_to_none=True)
                break
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)  # free gradients before the next rollout
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.updates_done += 1
        sums = dist.all_reduce_sums(sums)
        dist.all_reduce_sum(entropies)
        trained = torch.zeros(n, dtype=torch.bool)
        trained[trained_all] = True
        target = (target_mask > 0) & trained.unsqueeze(1)  # metrics cover the trained rows
        num_target = int(target.sum())
        denom = max(int(((loss_mask > 0) & trained.unsqueeze(1)).sum()), 1)
        updates = len(grad_norms)
        metrics = {
            "loss": sums["loss"] / updates,
            "clip_fraction": sums["clip"] / (denom * updates),
            "kl": sums["kl"] / (denom * updates),
            "ratio/mean": sums["ratio"] / (denom * updates),
            "entropy": sums["ent"] / max(num_target, 1),
            "logprob_mismatch": sums["mismatch"] / max(num_target, 1),
            "grad_norm": sum(grad_norms) / len(grad_norms),
            "lr": lr,
            "train/skipped_rows": float(n - len(trained_all)),
            "world_size": float(dist.world_size),
            "train/nonfinite": float(skipped is not None),
            **rule_metrics,
            **correction.metrics(),
        }
        metrics.update(entropy_metrics(entropies, target, batch.correct))
        return UpdateResult(metrics, entropies[target], skipped)

    def _skip_update(self, quantity: str, n: int) -> UpdateResult:
        """A step whose inputs are non-finite: no update; the LR schedule still moves on."""
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.updates_done += 1
        metrics = {"lr": lr, "train/skipped_rows": float(n), "train/nonfinite": 1.0}
        return UpdateResult(metrics, torch.zeros(0), quantity)

    def _backward(self, loss: torch.Tensor) -> None:
        if self.engine is None:
            loss.backward()
        else:
            from rlvr.zero import backward

            backward(self.engine, loss, self.dist.world_size)

    def _zero_grads(self) -> None:
        """Zero-filled gradients, so that AdamW's moments and weight decay step exactly as
        they would with the (zero) gradient of the skipped rows."""
        for p in self.model.parameters():
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)

    def _clip_grad_norm(self) -> float:
        max_norm = self.recipe.train.max_grad_norm
        if self.dist.sharded:
            return self._clip_sharded_grad_norm(max_norm)
        if max_norm is not None:
            return float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        return float(
            torch.sqrt(
                sum(
                    (p.grad.float() ** 2).sum()
                    for p in self.model.parameters()
                    if p.grad is not None
                )
            )
        )

    def _clip_sharded_grad_norm(self, max_norm: float | None) -> float:
        """FSDP2: ||g|| from each rank's gradient shards (squares summed over ranks), then
        torch's clipping rule g *= min(1, max_norm / (||g|| + 1e-6)) on every shard."""
        from torch.distributed.tensor import DTensor

        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        local = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
        squares = torch.tensor(
            [sum(float((g.double() ** 2).sum()) for g in local)], dtype=torch.float64
        )
        norm = float(self.dist.all_reduce_sum(squares).sqrt())
        if max_norm is not None and max_norm / (norm + 1e-6) < 1.0:
            coef = max_norm / (norm + 1e-6)
            for g in grads:
                g.mul_(coef)
        return norm
