"""lora.sync=adapter in server mode without a server: VLLMServerEngine against a fake of vLLM
0.32's HTTP behaviour (runtime LoRA routes, /v1/models, /collective_rpc, the token-in generate
route naming a model), the pre-flight LoRA checks, and the ``rlvr serve`` LoRA options.

The fake follows vLLM's semantics where they are traps: ``/v1/unload_lora_adapter`` drops the
name only (the worker keeps the weights), a worker past its capacity evicts the least recently
used adapter silently, and a request naming a known adapter the worker evicted reloads it from
its directory. A fake "adapter" is one tensor whose sum s sets every probe log-prob to -(1+s)."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from rlvr.rollout.receipt import ServerConfigError, WeightSyncError, check_lora_server
from rlvr.rollout.server import ServerError, _id_set

BASE = "m"
LORA_CONFIG = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "peft_type": "LORA"}
TENSOR = "base_model.model.layers.0.self_attn.q_proj.lora_A.weight"


def _info(lora: dict | None, env: str | None = "True", dp: int = 1, frontends: int = 1) -> dict:
    model = {"logprobs_mode": "processed_logprobs", "dtype": "torch.float32", "max_model_len": 256}
    config: dict[str, Any] = {
        "model_config": model,
        "weight_transfer_config": {"backend": "gloo"},
        "parallel_config": {"data_parallel_size": dp, "_api_process_count": frontends},
        "lora_config": lora,
    }
    vllm_env = {} if env is None else {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": env}
    return {"vllm_config": config, "vllm_env": vllm_env}


class FakeServer:
    """One vLLM server as its HTTP routes behave (see the module docstring)."""

    def __init__(self, url: str, *, info: dict | None = None, workers: int = 1) -> None:
        self.url = url
        self.info = info or _info({"max_lora_rank": 8, "max_loras": 1, "max_cpu_loras": 1})
        self.names: dict[str, tuple[int, str]] = {}  # frontend: name -> (lora id, path)
        self.workers: list[OrderedDict[int, float]] = [OrderedDict() for _ in range(workers)]
        self.capacity = 1
        self.counter = 0
        self.evictions = 0  # LRU evictions: rlvr must never cause one
        self.fail_load = False
        self.ignore_model = False  # serve the base whatever the request names
        self.requests: list[dict] = []  # generate bodies

    # the HTTPControlClient interface
    def get(self, path: str, params: dict | None = None) -> Any:
        if path == "server_info":
            return self.info
        if path == "v1/models":
            cards = [{"id": BASE, "parent": None}]
            return {"data": cards + [{"id": n, "parent": BASE} for n in self.names]}
        raise ServerError(f"{path}: HTTP 404")

    def post(self, path: str, json: Any = None, params: dict | None = None) -> Any:
        if path == "v1/load_lora_adapter":
            return self._load(json["lora_name"], json["lora_path"])
        if path == "v1/unload_lora_adapter":
            if json["lora_name"] not in self.names:
                raise ServerError(f"{path}: HTTP 404: cannot be found")
            del self.names[json["lora_name"]]  # the worker keeps it, as vLLM does
            return None
        if path == "collective_rpc":
            return self._rpc(json["method"], json.get("args", []))
        if path == "inference/v1/generate":
            return self._generate(json)
        raise ServerError(f"{path}: HTTP 404")

    def _load(self, name: str, path: str) -> str:
        if name in self.names:
            raise ServerError("v1/load_lora_adapter: HTTP 400: has already been loaded")
        if self.fail_load or not (Path(path) / "adapter_model.safetensors").is_file():
            raise ServerError("v1/load_lora_adapter: HTTP 404: LoRA adapter not found")
        self.counter += 1
        for worker in self.workers:
            self._worker_add(worker, self.counter, path)
        self.names[name] = (self.counter, path)
        return "Success"

    def _worker_add(self, worker: OrderedDict, lora_id: int, path: str) -> None:
        from safetensors.torch import load_file

        if lora_id in worker:
            worker.move_to_end(lora_id)
            return
        s = float(
            sum(t.sum() for t in load_file(str(Path(path) / "adapter_model.safetensors")).values())
        )
        if len(worker) + 1 > self.capacity:
            worker.popitem(last=False)
            self.evictions += 1
        worker[lora_id] = s

    def _rpc(self, method: str, args: list) -> dict:
        if method == "list_loras":
            return {"results": [str(set(w)) if w else "set()" for w in self.workers]}
        if method == "remove_lora":
            (lora_id,) = args
            assert isinstance(lora_id, int)
            return {"results": [str(w.pop(lora_id, None) is not None) for w in self.workers]}
        raise ServerError(f"collective_rpc: HTTP 500: no method {method}")

    def _generate(self, body: dict) -> dict:
        self.requests.append(body)
        model = body.get("model")
        s = 0.0
        if model is not None and model != BASE:
            if model not in self.names:
                raise ServerError(
                    f"inference/v1/generate: HTTP 404: The model `{model}` does not exist"
                )
            lora_id, path = self.names[model]
            for worker in self.workers:
                self._worker_add(worker, lora_id, path)  # reloaded from disk if evicted
            s = 0.0 if self.ignore_model else self.workers[0][lora_id]
        sp = body["sampling_params"]
        out: dict[str, Any] = {"model": model or BASE}
        if sp.get("prompt_logprobs") is not None:
            ids = body["token_ids"]
            out["prompt_logprobs"] = [None] + [{str(t): {"logprob": -(1 + s)}} for t in ids[1:]]
        n, k = sp.get("n", 1), sp.get("max_tokens", 1)
        content = [{"token_id": 5, "logprob": -(1 + s)}] * k
        out["choices"] = [
            {
                "index": i,
                "token_ids": [5] * k,
                "logprobs": {"content": content},
                "finish_reason": "length",
            }
            for i in range(n)
        ]
        return out


class Trainer:
    """The trainer's side of the probe: every log-prob is -(1+s) for its adapter's sum s."""

    def __init__(self) -> None:
        self.s = 0.0

    def reference(self, ids: list[int]) -> list[float]:
        return [-(1 + self.s)] * (len(ids) - 1)

    def adapter(self, value: float) -> list[tuple[str, torch.Tensor]]:
        self.s = value
        return [(TENSOR, torch.tensor([value]))]


URLS = ["http://s0:1", "http://s1:1"]


def _engine(monkeypatch, servers: dict[str, FakeServer], tmp_path: Path, **kw):
    from rlvr.rollout import server as server_module

    monkeypatch.setattr(server_module, "HTTPControlClient", lambda url, timeout_s: servers[url])
    tokenizer = SimpleNamespace(eos_token_id=0, decode=lambda ids, skip_special_tokens=True: "")
    engine = server_module.VLLMServerEngine(
        list(servers),
        tokenizer=tokenizer,
        timeout_s=5,
        transport="gloo",
        lora_config=kw.pop("lora_config", LORA_CONFIG),
        adapter_dir=str(tmp_path / "adapters"),
        **kw,
    )
    trainer = Trainer()
    engine.attach_probe([1, 2, 3, 4], trainer.reference)
    return engine, trainer


def test_each_sync_loads_version_k_on_every_server_alone_and_requests_name_it(
    monkeypatch, tmp_path: Path
) -> None:
    from rlvr.rollout.base import SamplingParams

    servers = {u: FakeServer(u, workers=2) for u in URLS}  # 2 workers: tensor parallel
    engine, trainer = _engine(monkeypatch, servers, tmp_path)
    assert engine.check_start() == 0.0  # B = 0: the base is the policy
    dirs = []
    for k, value in enumerate([0.25, 0.5, 0.125], start=1):
        engine.update_weights(trainer.adapter(value))
        name = f"policy-v{k}"
        assert engine.lora_name == name and engine.weight_version == k
        assert [r.version for r in engine.last_receipts] == [name, name]
        assert all(r.delta <= 1e-12 for r in engine.last_receipts)
        dirs.append(engine._adapter_path)
        saved = json.loads((engine._adapter_path / "adapter_config.json").read_text())
        assert saved == LORA_CONFIG
        for fake in servers.values():
            assert list(fake.names) == [name]  # only the latest version is served
            assert [set(w) for w in fake.workers] == [{fake.names[name][0]}] * 2
            assert fake.evictions == 0  # unloaded explicitly, never by LRU
        engine.generate([[1, 2], [3]], SamplingParams(n=2, max_tokens=3))
        for fake in servers.values():
            assert fake.requests[-1]["model"] == name
            with pytest.raises(ServerError, match="does not exist"):  # k-1 is gone
                fake.post(
                    "inference/v1/generate", {**fake.requests[-1], "model": f"policy-v{k - 1}"}
                )
    assert not dirs[0].exists() and not dirs[1].exists() and dirs[2].exists()
    # the base is still there, and differs from the policy: the check sees the adapter
    base = engine.server_probe(URLS[0], model=None)
    assert max(abs(a - b) for a, b in zip(base, trainer.reference([1, 2, 3, 4]), strict=True)) > 0.1
    root = Path(engine._adapter_root)
    engine.close()
    assert not root.exists()
    for fake in servers.values():  # close unloads: the servers serve the base again
        assert fake.names == {} and all(not w for w in fake.workers) and fake.evictions == 0


def test_a_server_ignoring_the_adapter_fails_the_receipt(monkeypatch, tmp_path: Path) -> None:
    servers = {u: FakeServer(u) for u in URLS}
    servers[URLS[1]].ignore_model = True  # answers as policy-v1 but with the base's weights
    engine, trainer = _engine(monkeypatch, servers, tmp_path)
    with pytest.raises(WeightSyncError, match="receipt_tol") as info:
        engine.update_weights(trainer.adapter(0.5))
    assert info.value.server == URLS[1] and info.value.delta == pytest.approx(0.5)


def test_a_failed_load_names_the_server(monkeypatch, tmp_path: Path) -> None:
    servers = {u: FakeServer(u) for u in URLS}
    engine, trainer = _engine(monkeypatch, servers, tmp_path)
    engine.update_weights(trainer.adapter(0.5))
    servers[URLS[1]].fail_load = True
    with pytest.raises(WeightSyncError, match="LoRA adapter sync policy-v2 .* failed") as info:
        engine.update_weights(trainer.adapter(0.75))
    assert info.value.server == URLS[1] and "not found" in str(info.value)


def test_answers_from_another_model_are_refused(monkeypatch, tmp_path: Path) -> None:
    from rlvr.rollout.base import SamplingParams

    servers = {URLS[0]: FakeServer(URLS[0])}
    engine, trainer = _engine(monkeypatch, servers, tmp_path)
    engine.update_weights(trainer.adapter(0.5))
    fake = servers[URLS[0]]
    generate = fake._generate
    fake._generate = lambda body: {**generate(body), "model": BASE}
    with pytest.raises(WeightSyncError, match="answered as model 'm'"):
        engine.generate([[1, 2]], SamplingParams(max_tokens=2))


def test_leftover_adapters_are_cleared_and_worker_copies_removed(
    monkeypatch, tmp_path: Path
) -> None:
    fake = FakeServer(URLS[0])
    old = tmp_path / "old"
    old.mkdir()
    from safetensors.torch import save_file

    save_file({TENSOR: torch.tensor([9.0])}, str(old / "adapter_model.safetensors"))
    fake.post("v1/load_lora_adapter", {"lora_name": "policy-v7", "lora_path": str(old)})
    engine, trainer = _engine(monkeypatch, {URLS[0]: fake}, tmp_path)
    engine.update_weights(trainer.adapter(0.5))
    assert list(fake.names) == ["policy-v1"] and fake.evictions == 0
    assert [set(w) for w in fake.workers] == [{2}]


def test_non_adapter_tensors_are_refused(monkeypatch, tmp_path: Path) -> None:
    engine, _ = _engine(monkeypatch, {URLS[0]: FakeServer(URLS[0])}, tmp_path)
    with pytest.raises(ValueError, match="non-adapter tensor"):
        engine.update_weights([("model.embed_tokens.weight", torch.zeros(2))])


@pytest.mark.parametrize(
    ("info", "words"),
    [
        (_info(None), "started without LoRA"),
        (_info({"max_lora_rank": 1}), "max_lora_rank is 1, lora.rank is 4"),
        (_info({"max_lora_rank": 8}, env=None), "VLLM_ALLOW_RUNTIME_LORA_UPDATING"),
        (_info({"max_lora_rank": 8}, env="False"), "runtime LoRA loading is off"),
        (_info({"max_lora_rank": 8}, dp=2), "data_parallel_size is 2"),
        (_info({"max_lora_rank": 8}, frontends=2), "2 API server processes"),
    ],
)
def test_preflight_refuses_a_server_that_cannot_take_the_adapter(
    monkeypatch, tmp_path: Path, info: dict, words: str
) -> None:
    with pytest.raises(ServerConfigError, match="http://s0:1") as err:
        check_lora_server("http://s0:1", info, 4)
    assert words in str(err.value)
    assert (
        "data_parallel" in words
        or "API" in words
        or "rlvr serve MODEL --lora-rank 4" in str(err.value)
    )
    with pytest.raises(ServerConfigError, match="http://s0:1"):
        _engine(monkeypatch, {URLS[0]: FakeServer(URLS[0], info=info)}, tmp_path)
    # a full-weight run does not care
    _engine(monkeypatch, {URLS[0]: FakeServer(URLS[0], info=info)}, tmp_path, lora_config=None)


def test_list_loras_results_parse() -> None:
    assert _id_set("{3}") == {3} and _id_set("{1, 12}") == {1, 12}
    assert _id_set("set()") == set() and _id_set(None) == set() and _id_set([4]) == {4}


def test_serve_lora_options(capsys) -> None:
    from rlvr.serve import main, server_command

    cmd, env = server_command("m", weight_transfer="gloo")
    assert "--enable-lora" not in cmd and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in env
    cmd, env = server_command("m", weight_transfer="gloo", lora_rank=4)
    joined = " ".join(cmd)
    assert "--enable-lora --max-lora-rank 8 --max-loras 1 --max-cpu-loras 1" in joined
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert main(["m", "--lora-rank", "17", "--weight-transfer", "gloo", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in out and "--max-lora-rank 32" in out
    assert main(["m", "--enable-lora", "--weight-transfer", "gloo", "--dry-run"]) == 0
    assert "--max-lora-rank 16" in capsys.readouterr().out
    assert main(["m", "--lora-rank", "600", "--dry-run"]) == 2


def test_check_lora_sync_lets_server_mode_through() -> None:
    from rlvr.config import Recipe
    from rlvr.run import check_lora_sync

    recipe = Recipe.model_validate(
        {
            "model": {"path": "m"},
            "lora": {"rank": 4, "sync": "adapter"},
            "rollout": {"mode": "server", "engine": "vllm", "server": {"urls": ["http://h:1"]}},
        }
    )
    check_lora_sync(recipe, False)  # the servers' pre-flight decides
    assert recipe.rollout.server.adapter_dir is None
