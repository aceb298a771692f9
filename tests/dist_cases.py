"""The fixed global batch and learner settings shared by tests/test_distributed.py (one
process) and tests/dist_learner_worker.py (several ranks)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from rlvr.batch import TrainBatch
from rlvr.config import Recipe
from rlvr.learner import Learner

PAD = 256
GROUP = 4
NUM_ROWS = 16  # 4 groups of 4: ragged lengths, so token balancing is not a plain split


def case_batch(case: dict[str, Any]) -> TrainBatch:
    gen = torch.Generator().manual_seed(int(case.get("seed", 0)))
    n = NUM_ROWS
    lengths = [2 + (5 * i) % 13 for i in range(n)]
    prompt = 4
    width = prompt + max(lengths)
    ids = torch.full((n, width), PAD, dtype=torch.long)
    attn = torch.zeros_like(ids)
    cmask = torch.zeros_like(ids)
    for i, lc in enumerate(lengths):
        ids[i, : prompt + lc] = torch.randint(0, 250, (prompt + lc,), generator=gen)
        attn[i, : prompt + lc] = 1
        cmask[i, prompt : prompt + lc] = 1
    rlp = -torch.rand((n, width), generator=gen) * cmask
    adv = torch.randn(n, generator=gen).unsqueeze(1).expand(n, width - 1).clone()
    weights = torch.ones(n)
    weights[5] = 0.0  # one row out of the loss (e.g. truncated)
    return TrainBatch(
        input_ids=ids,
        attention_mask=attn,
        completion_mask=cmask,
        rollout_logprobs=rlp,
        advantages=adv,
        sample_weights=weights,
        group_size=GROUP,
        correct=(torch.arange(n) % 3 == 0).float(),
    )


def case_recipe(model_dir: str, case: dict[str, Any]) -> Recipe:
    algo = {"kl_coef": 0.0, "loss_aggregation": case.get("aggregation", "token_mean")}
    if case.get("token_rule"):
        algo["token_weights"] = [{"name": case["token_rule"], "params": {}}]
    algo.update(case.get("algo", {}))
    return Recipe.model_validate(
        {
            "model": {"path": model_dir},
            "lora": case.get("lora"),
            "rollout": {"max_new_tokens": 16},
            "algo": algo,
            "train": {
                "micro_batch_size": int(case.get("micro_batch_size", 4)),
                "lr": 1e-3,
                "weight_decay": 0.1,
                **case.get("train", {}),
            },
        }
    )


def case_learner(model_dir: str, case: dict[str, Any], build: bool = True) -> Any:
    recipe = case_recipe(model_dir, case)
    if not build:
        return recipe
    torch.manual_seed(0)
    learner = Learner(recipe, pad_id=PAD, weights_path=model_dir, resumed=False)
    if case.get("inf_penalty"):  # a non-finite loss whose gradient is finite (a constant
        apply = learner.token_rules.apply  # inf per token): the guard must skip the update

        def poisoned(tokens: Any) -> Any:
            out = apply(tokens)
            return dataclasses.replace(out, penalty=torch.full_like(tokens.logp, float("inf")))

        learner.token_rules.apply = poisoned  # type: ignore[method-assign]
    return learner


CASES: dict[str, dict[str, Any]] = {
    f"{agg}_mb{mb}": {"aggregation": agg, "micro_batch_size": mb}
    for agg in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")
    for mb in (1, 4)
}
CASES["high_entropy_only_mb4"] = {"token_rule": "high_entropy_only", "micro_batch_size": 4}
CASES["kl_two_updates_mb4"] = {
    "micro_batch_size": 4,
    "algo": {"kl_coef": 0.05, "updates_per_batch": 2},
}
CASES["lora_kl_mb4"] = {
    "micro_batch_size": 4,
    "algo": {"kl_coef": 0.05},
    "lora": {"rank": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj", "up_proj"]},
}
# FSDP2 (train.strategy=fsdp2): the aggregations at micro-batch 1 (rank 1 runs padding passes:
# its shard has fewer micro-batches), a whole-batch rule, KL, and LoRA (the peft model sharded;
# the reference is the base with its adapters disabled)
FSDP2_CASES = {
    k: CASES[k]
    for k in (
        "token_mean_mb1",
        "seq_mean_token_sum_norm_mb4",
        "high_entropy_only_mb4",
        "kl_two_updates_mb4",
        "lora_kl_mb4",
    )
}
# DeepSpeed ZeRO-2 (train.strategy=deepspeed): the same cases (padding backward passes, the
# whole-batch rule, KL with two updates, LoRA: only the adapters partitioned), and a non-finite
# loss with a finite gradient, which the guard must not step
DEEPSPEED_CASES = {**FSDP2_CASES, "inf_loss_mb4": {"micro_batch_size": 4, "inf_penalty": True}}
