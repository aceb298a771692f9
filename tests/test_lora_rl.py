"""LoRA in RL (rlvr/lora.py): the merged weights W + (alpha/r) B A give peft's log-probs and
leave the learner's frozen base untouched; only the adapter trains; the reference is the base;
checkpoints hold the adapter and a resumed run continues the same run; merged syncs reach a
vLLM engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rlvr.config import Recipe
from rlvr.lora import merged_state_dict, trainable_parameters
from rlvr.metrics import read_metrics
from rlvr.policy import token_logprobs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dist_cases import PAD, case_batch, case_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LORA = {"rank": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj", "up_proj"]}


def lora_learner(model_dir: Path, **algo):
    from rlvr.learner import Learner

    recipe = case_recipe(str(model_dir), {"algo": algo})
    recipe = Recipe.model_validate({**recipe.model_dump(), "lora": LORA})
    torch.manual_seed(0)
    return Learner(recipe, pad_id=PAD, weights_path=str(model_dir), resumed=False)


def test_merged_weight_is_w_plus_scaled_ba(tiny_model_dir: Path) -> None:
    learner = lora_learner(tiny_model_dir)
    learner.update(case_batch({}))  # B leaves zero
    layer = learner.model.get_base_model().model.layers[0].self_attn.q_proj
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert float(b.abs().max()) > 0
    want = layer.base_layer.weight + (8.0 / 4) * b @ a  # alpha / r = 2
    got = dict(learner.weights())["model.layers.0.self_attn.q_proj.weight"]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-7)


def test_merged_path_gives_peft_logprobs_and_base_stays_exact(tiny_model_dir: Path) -> None:
    learner = lora_learner(tiny_model_dir, kl_coef=0.05)
    trainable, total = trainable_parameters(learner.model)
    assert 0 < trainable < 0.1 * total
    batch = case_batch({})
    for _ in range(2):
        metrics = learner.update(batch).metrics
    assert metrics["kl"] > 0  # the reference (adapters disabled) differs from the policy now
    merged = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    missing, unexpected = merged.load_state_dict(merged_state_dict(learner.model), strict=True)
    assert not missing and not unexpected
    args = (batch.input_ids, batch.attention_mask, batch.completion_mask)
    learner.model.eval()
    with torch.no_grad():
        peft_lp, _ = token_logprobs(learner.model, *args)
        merged_lp, _ = token_logprobs(merged, *args)
        base_lp, _ = token_logprobs(AutoModelForCausalLM.from_pretrained(tiny_model_dir), *args)
    assert float((peft_lp - merged_lp).abs().max()) <= 1e-5
    assert float((peft_lp - base_lp).abs().max()) > 1e-3  # the adapter changed the policy
    # the frozen base was never merged/unmerged: bit-exact with the file after the syncs
    on_disk = load_file(tiny_model_dir / "model.safetensors")
    base = {
        k.replace(".base_layer.", "."): v
        for k, v in learner.model.get_base_model().state_dict().items()
        if "lora_" not in k
    }
    assert all(torch.equal(base[k], on_disk[k]) for k in on_disk)
    # peft's own merge agrees
    reference = learner.model.merge_and_unload()
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(merged.state_dict()[name], tensor, rtol=0, atol=1e-6)


def _run(tiny_model_dir: Path, out: Path, fixtures: Path, steps: int, **extra) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "lora",
            "output_dir": str(out),
            "seed": 3,
            "model": {"path": str(tiny_model_dir)},
            "data": {"source": "arithmetic", "arithmetic": {"digits": 1, "num_eval": 8}},
            "rollout": {"engine": "hf", "group_size": 4, "max_new_tokens": 8},
            "rewards": [
                {"name": "math"},
                {"name": f"{fixtures / 'rewards_fixture.py'}:digit_fraction", "key": "digits"},
            ],
            "reward_runner": {"num_workers": 1},
            "algo": {"kl_coef": 0.05},
            "lora": LORA,
            "train": {"steps": steps, "prompts_per_step": 3, "micro_batch_size": 6, "lr": 1e-2},
            "checkpoint": {"every": 100},
            "logging": {"plots": False, "tensorboard": False, "progress": False},
            **extra,
        }
    )


def test_lora_checkpoint_holds_the_adapter_and_resume_continues(
    tiny_model_dir: Path, tmp_path: Path, fixtures_dir: Path
) -> None:
    from rlvr.trainer import train_recipe

    full = _run(tiny_model_dir, tmp_path / "a", fixtures_dir, 3)
    train_recipe(full)
    expected = read_metrics(full.run_dir / "metrics.jsonl")

    lora = {**LORA, "save_merged": True}
    part = _run(tiny_model_dir, tmp_path / "b", fixtures_dir, 2, lora=lora)
    _, trainer = train_recipe(part)
    ckpt = part.run_dir / "checkpoints" / "step_000002"
    merged = AutoModelForCausalLM.from_pretrained(ckpt / "merged", dtype=torch.float32).eval()
    assert (ckpt / "merged" / "tokenizer_config.json").is_file()  # servable as is
    ids = torch.tensor([[1, 5, 9, 13, 17, 21, 25]])
    with torch.no_grad():
        want_logits = trainer.model.eval()(input_ids=ids).logits
        got_logits = merged(input_ids=ids).logits
    torch.testing.assert_close(got_logits, want_logits, rtol=0, atol=1e-5)  # W + (a/r) B A
    assert (ckpt / "adapter_model.safetensors").is_file()
    assert (ckpt / "adapter_config.json").is_file()
    assert not (ckpt / "model.safetensors").exists()  # the adapter alone
    assert (ckpt / "adapter_model.safetensors").stat().st_size < 0.1 * (
        tiny_model_dir / "model.safetensors"
    ).stat().st_size
    train_recipe(
        Recipe.model_validate(
            {**part.model_dump(), "resume": True, "train": {**part.train.model_dump(), "steps": 3}}
        )
    )
    rows = read_metrics(part.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert any(r["grad_norm"] > 0 for r in expected)
    for want, got in zip(expected, rows, strict=True):
        for key in ("reward/mean", "loss", "kl", "grad_norm", "entropy"):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), (got["step"], key)


def test_lora_adapter_sync_without_lora_requests_is_refused(
    tiny_model_dir: Path, tmp_path: Path, fixtures_dir: Path
) -> None:
    from rlvr.run import check_lora_sync
    from rlvr.trainer import Trainer

    recipe = _run(tiny_model_dir, tmp_path, fixtures_dir, 1)
    tree = recipe.model_dump()
    tree["lora"]["sync"] = "adapter"
    tree["rollout"]["dtype"] = "bfloat16"  # the HF engine keeps its own copy: a real sync
    with pytest.raises(ValueError, match="lora.sync=adapter needs rollout.engine=vllm"):
        Trainer(Recipe.model_validate(tree))
    tree["rollout"].update(mode="server", engine="vllm", server={"urls": ["http://127.0.0.1:1"]})
    check_lora_sync(Recipe.model_validate(tree), False)  # the servers' LoRA pre-flight decides


@pytest.mark.vllm
def test_merged_sync_reaches_vllm(
    tiny_model_dir: Path, tmp_path: Path, fixtures_dir: Path, vllm_engine
) -> None:
    """After each merged sync the vLLM engine samples with the LoRA policy: its sampling
    log-probs equal the learner's (peft) on the same tokens."""
    from rlvr.trainer import Trainer

    tree = _run(tiny_model_dir, tmp_path, fixtures_dir, 3).model_dump()
    tree["rollout"]["engine"] = "vllm"
    trainer = Trainer(Recipe.model_validate(tree), engine=vllm_engine)
    try:
        trainer.train()
    finally:
        trainer.rewards.close()  # the shared engine stays open, back on the tiny model
        vllm_engine.update_weights(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict().items()
        )
    rows = read_metrics(trainer.run_dir / "metrics.jsonl")
    assert rows[-1]["grad_norm"] > 0
    assert all(r["logprob_mismatch"] <= 1e-5 for r in rows), [r["logprob_mismatch"] for r in rows]


@pytest.mark.vllm
def test_adapter_sync_reaches_vllm_as_versioned_lora_requests(
    tiny_model_dir: Path, tmp_path: Path, fixtures_dir: Path
) -> None:
    """``lora.sync=adapter``: the in-process vLLM engine samples through LoRA request version
    k after the k-th sync (the old one removed), and its sampling log-probs equal the
    learner's (peft) on the same tokens at every step."""
    from rlvr.trainer import Trainer

    tree = _run(tiny_model_dir, tmp_path, fixtures_dir, 3).model_dump()
    tree["rollout"]["engine"] = "vllm"
    tree["lora"]["sync"] = "adapter"
    trainer = Trainer(Recipe.model_validate(tree))
    try:
        trainer.train()
        engine = trainer.engine
        request = engine.lora_request
        assert request is not None and engine.adapter_version >= 2
        assert (request.lora_name, request.lora_int_id) == (
            f"policy-v{engine.adapter_version}",
            engine.adapter_version,
        )
        assert engine.llm.llm_engine.list_loras() == {engine.adapter_version}
    finally:
        trainer.close()
    rows = read_metrics(trainer.run_dir / "metrics.jsonl")
    assert rows[-1]["grad_norm"] > 0
    assert all(r["logprob_mismatch"] <= 1e-5 for r in rows), [r["logprob_mismatch"] for r in rows]


@pytest.mark.slow
def test_lora_grpo_learns_the_quickstart_task(tmp_path: Path, monkeypatch) -> None:
    """LoRA (rank 16, all-linear, lr 5e-4 = 5x the recipe's full fine-tuning lr) on the
    quickstart task: the batch reward rises over 40 GRPO steps (HF rollouts, no eval)."""
    from rlvr.config import load_recipe
    from rlvr.trainer import Trainer

    monkeypatch.chdir(REPO)
    recipe = load_recipe(
        REPO / "recipes" / "quickstart.yaml",
        [
            f"output_dir={tmp_path}",
            "rollout.engine=hf",
            "train.steps=40",
            "train.prompts_per_step=16",
            "train.lr=5e-4",
            "train.threads=1",
            "lora={rank: 16, alpha: 32, target_modules: all-linear}",
            "eval.before=false",
            "eval.after=false",
            "logging.progress=false",
            "logging.plots=false",
            "logging.tensorboard=false",
        ],
    )
    trainer = Trainer(recipe)
    try:
        trainer.train()
    finally:
        trainer.close()
    rewards = [r["reward/mean"] for r in read_metrics(recipe.run_dir / "metrics.jsonl")]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-10:]) / 10
    assert last > first + 0.12, (first, last, rewards)


def test_vllm_max_lora_rank_is_one_vllm_accepts() -> None:
    from rlvr.rollout.vllm_engine import max_lora_rank

    assert [max_lora_rank(r) for r in (1, 4, 8, 16, 17, 300)] == [1, 8, 8, 16, 32, 320]
    with pytest.raises(ValueError, match="up to 512"):
        max_lora_rank(600)


def test_vllm_adapter_sync_wakes_the_weights_and_keeps_the_prefix_cache(monkeypatch) -> None:
    """``lora.sync=adapter`` on the colocated vLLM engine (no vLLM needed: a stand-in LLM): the
    weights wake (the adapter is copied into LoRA buffers allocated with them), the prefix cache
    is not reset (its block hashes carry the LoRA version); a full-weight sync resets it."""
    from unittest.mock import MagicMock

    from rlvr.rollout.vllm_engine import VLLMEngine

    def engine(lora_config):
        e = object.__new__(VLLMEngine)
        e.llm, e.lora_config, e._asleep = MagicMock(), lora_config, {"weights", "kv_cache"}
        return e

    loaded = []
    monkeypatch.setattr(VLLMEngine, "_load_adapter", lambda self, w: loaded.append(w))
    a = torch.zeros(2, 3)
    e = engine({"r": 4})
    e.update_weights([("base_model.model.q_proj.lora_A.weight", a)])
    assert [n for n, _ in loaded[0]] == ["base_model.model.q_proj.lora_A.weight"]
    e.llm.wake_up.assert_called_once_with(tags=["weights"])
    assert e._asleep == {"kv_cache"}
    e.llm.reset_prefix_cache.assert_not_called()
    e.llm.collective_rpc.assert_not_called()
    full = engine(None)
    full.update_weights([("model.embed_tokens.weight", a)])
    full.llm.collective_rpc.assert_called_once()
    full.llm.reset_prefix_cache.assert_called_once_with()


def test_adapter_state_dict_hands_out_the_live_adapter(tiny_model_dir: Path) -> None:
    """No copies: the adapter tensors share the trainable parameters' storage."""
    from rlvr.lora import adapter_state_dict

    learner = lora_learner(tiny_model_dir)
    live = {p.data_ptr() for p in learner.model.parameters() if p.requires_grad}
    state = adapter_state_dict(learner.model)
    assert state and all("lora_" in k for k in state)
    assert {t.data_ptr() for t in state.values()} == live
    assert not any(t.requires_grad for t in state.values())
