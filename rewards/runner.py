"""Process-pool reward runner: scores [B][G] completions with a hard wall-clock limit per call.

For reward specs k with weights w_k (see :mod:`rewards.base`):

    total[b][g] = sum_k w_k * r_k(completion[b][g], example[b])

where r_k is ``failure_score`` when the call raised, returned a non-finite / non-numeric value
or one outside ``[-max_abs_score, max_abs_score]`` (default 1e6: a reward of 1e100 would
overflow float32 downstream), crashed its worker, or ran past its time limit.
:meth:`RewardRunner.failure_summary` keeps the counts over the runner's life (for the run's
final table); each batch's metrics hold ``reward/<key>/failure_rate`` (failed + timed-out
share of that reward's scored entries).

Design (read for background: verl's reward-manager process pools, the AReaL / TRL notes on
math-verify timeouts; the code is our own):

* Workers are fresh interpreters (``subprocess`` + a socket pair; like multiprocessing's
  ``spawn``, never ``fork``: the trainer holds torch and possibly vLLM threads; unlike
  ``spawn`` / ``forkserver`` they do not re-import the trainer's ``__main__`` script, so an
  unguarded script cannot recurse). Each worker imports the reward functions itself by the
  spec's import target, so ``path/to/file.py:fn`` rewards work there too, and is SIGKILLed by
  the kernel if the trainer dies (Linux ``PR_SET_PDEATHSIG``).
* Work is sent in chunks (several calls per message, results flushed back every ~0.1 s), but
  each call has its own limit: ``timeout_s`` for a per-sample call, ``group_timeout_s``
  (default ``timeout_s * G``) for a per-group call. A worker arms ``SIGALRM`` at 90 % of the
  limit (it runs rewards in its main thread, so Python-level loops are interrupted cheaply);
  the parent watches a shared progress record and SIGKILLs a worker whose current call passes
  the full limit (C-level work such as a huge integer power cannot be interrupted by signals),
  then respawns it and re-queues the chunk's unfinished calls. The limit therefore holds for
  any reward code.
* Failures and time-outs are counted per scored entry (a failed group call counts G entries).
* Per-group rewards that declare ``components`` run after the per-sample ones and receive their
  values for the group; stateful rewards run last, their per-prompt state lives in the parent and
  is saved / restored by :meth:`RewardRunner.state_dict` / :meth:`RewardRunner.load_state_dict`.
* ``num_workers=0`` runs inline in the caller (debugging only: only the soft SIGALRM limit, and
  only from the main thread).
"""

from __future__ import annotations

import itertools
import logging
import math
import mmap
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from rewards.base import (
    RewardSpec,
    call_reward,
    example_key,
    load_target,
    parse_specs,
    weighted_total,
)

__all__ = ["RewardRunner", "RewardBatch", "RewardTimeout"]

log = logging.getLogger(__name__)

_SOFT_FRACTION = 0.9
_FLUSH_S = 0.1
_STARTUP_TIMEOUT_S = 180.0


class RewardTimeout(BaseException):
    """Raised inside a worker when a reward call passes its soft deadline.

    A ``BaseException`` so that rewards catching ``Exception`` do not swallow it.
    """


@dataclass
class RewardBatch:
    """Scores of one batch. Lists are indexed ``[b][g]`` like the completions."""

    total: list[list[float]]
    components: dict[str, list[list[float]]]
    n_failed: int
    n_timeout: int
    metrics: dict[str, float]
    errors: list[str] = field(default_factory=list)  # first few failure messages


@dataclass
class _Call:
    id: int
    spec: int
    b: int
    g: int | None  # None: a group call
    payload: dict[str, Any]
    limit: float


# ---------------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------------


def _on_alarm(signum: int, frame: Any) -> None:
    raise RewardTimeout()


def _execute(
    fn: Callable,
    spec: RewardSpec,
    payload: dict[str, Any],
    limit: float | None,
    install_handler: bool = False,
) -> tuple[str, Any]:
    """Run one call; returns (status, value|message). status in ok / error / timeout.

    Arms a SIGALRM soft deadline (``limit * 0.9``) when running in a main thread; in a worker
    the handler is installed once at start-up, inline it is installed around the call.
    """
    armed = False
    old_handler: Any = None
    try:
        if (
            limit is not None
            and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0
        ):
            if install_handler:
                old_handler = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, max(0.01, limit * _SOFT_FRACTION))
            armed = True
        try:
            out = call_reward(fn, spec, payload)
        finally:
            if armed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                if install_handler:
                    signal.signal(signal.SIGALRM, old_handler)
        return "ok", out
    except RewardTimeout:
        return "timeout", f"{spec.key}: soft time limit {limit:.3g}s"
    except Exception as e:  # a reward error never stops the run
        msg = f"{spec.key}: {type(e).__name__}: {e}"
        return "error", msg[:500]


_PROGRESS = struct.Struct("3d")  # chunk id, index of the running call, its start (0 = idle)

# Bootstrap of a worker: a fresh interpreter (never a fork of the trainer, and unlike
# multiprocessing's spawn / forkserver it does not re-import the trainer's __main__ script).
_BOOTSTRAP = (
    "import sys\n"
    "from multiprocessing.connection import Connection\n"
    "conn = Connection(int(sys.argv[1]))\n"
    "sys.path[:] = conn.recv()\n"
    "from rewards.runner import _worker_main\n"
    "_worker_main(conn, int(sys.argv[2]), int(sys.argv[3]))\n"
)


def _warmup(fns: Sequence[Callable]) -> None:
    """Call each reward's optional ``__rlvr_warmup__()`` hook once, before any time limit."""
    done: set[int] = set()
    for fn in fns:
        hook = getattr(fn, "__rlvr_warmup__", None)
        if callable(hook) and id(hook) not in done:
            done.add(id(hook))
            try:
                hook()
            except Exception as e:  # a broken warm-up is not fatal; the calls will say more
                log.warning("reward warm-up %r failed: %s", hook, e)


def _worker_main(conn: Connection, progress_fd: int, memory_limit_mb: int = 0) -> None:
    """Worker entry point: serve chunks until told to stop or the parent goes away."""
    try:
        _worker_loop(conn, progress_fd, memory_limit_mb)
    except (EOFError, OSError):  # the parent closed the pipe (shutdown or crash): just exit
        return


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the parent process dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_loop(conn: Connection, progress_fd: int, memory_limit_mb: int) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    signal.signal(signal.SIGALRM, _on_alarm)
    if memory_limit_mb > 0:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    progress = mmap.mmap(progress_fd, _PROGRESS.size)
    try:
        specs: list[RewardSpec] = conn.recv()
        fns = [load_target(s.target) for s in specs]
    except BaseException as e:
        conn.send(("init_error", f"{type(e).__name__}: {e}"))
        return
    _warmup(fns)
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        chunk_id, examples, calls = msg
        out: list[tuple[int, str, Any]] = []
        last = time.monotonic()
        for i, (call_id, spec_idx, b, payload, limit) in enumerate(calls):
            _PROGRESS.pack_into(progress, 0, float(chunk_id), float(i), time.monotonic())
            payload = dict(payload)
            payload["example"] = examples[b]
            signal.signal(signal.SIGALRM, _on_alarm)  # a previous reward may have replaced it
            status, value = _execute(fns[spec_idx], specs[spec_idx], payload, limit)
            _PROGRESS.pack_into(progress, 0, float(chunk_id), float(i), 0.0)
            out.append((call_id, status, value))
            now = time.monotonic()
            if now - last > _FLUSH_S and i + 1 < len(calls):
                conn.send(("results", chunk_id, out))
                out = []
                last = now
        conn.send(("done", chunk_id, out))


# ---------------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, specs: list[RewardSpec], memory_limit_mb: int = 0) -> None:
        self._progress_file = tempfile.TemporaryFile()
        self._progress_file.truncate(_PROGRESS.size)
        pfd = self._progress_file.fileno()
        self.progress = mmap.mmap(pfd, _PROGRESS.size)
        parent_sock, child_sock = socket.socketpair()
        cfd = child_sock.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(cfd), str(pfd), str(memory_limit_mb)],
            pass_fds=(cfd, pfd),
            close_fds=True,
        )
        child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.conn.send(list(sys.path))
        self.conn.send(specs)
        self.started = time.monotonic()
        self.ready = False
        self.chunk_id: int | None = None
        self.calls: list[_Call] = []

    @property
    def busy(self) -> bool:
        return self.chunk_id is not None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def current(self) -> tuple[int, float] | None:
        """(index in chunk, start time) of the running call, or None between calls."""
        cid, idx, start = _PROGRESS.unpack_from(self.progress, 0)
        if start <= 0.0 or int(cid) != self.chunk_id:
            return None
        return int(idx), start

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            pass

    def stop(self) -> None:
        try:
            if self.alive():
                self.conn.send(None)
            self.proc.wait(timeout=1.0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()
        self.release()

    def release(self) -> None:
        for res in (self.conn, self.progress, self._progress_file):
            try:
                res.close()
            except (OSError, ValueError, BufferError):
                pass


class RewardRunner:
    """Score completions with the recipe's rewards in a pool of worker processes.

    Args:
        specs: ``[{"name": ..., "weight": 1.0, "params": {...}, "key": ...}, ...]`` (see
            :func:`rewards.base.parse_specs`); bad specs raise ``ValueError`` here.
        num_workers: worker processes (0 = inline, debugging only).
        timeout_s: hard wall-clock limit of one per-sample call.
        failure_score: score of a call that raised or timed out.
        group_timeout_s: limit of one per-group call (default ``timeout_s * G``).
        chunk_size: calls per message (default: spread the batch over ~4 chunks per worker,
            at most 64 calls each).
        memory_limit_mb: optional address-space limit (RLIMIT_AS) of each worker; a reward
            that exceeds it fails with MemoryError or kills its worker (counted as failed).
        max_abs_score: a value (or a dict entry) with a larger magnitude counts as failed.
    """

    def __init__(
        self,
        specs: Sequence[Mapping[str, Any]],
        num_workers: int = 2,
        timeout_s: float = 5.0,
        failure_score: float = 0.0,
        *,
        group_timeout_s: float | None = None,
        chunk_size: int | None = None,
        memory_limit_mb: int | None = None,
        max_abs_score: float = 1e6,
    ) -> None:
        self.specs = parse_specs(specs)
        if not isinstance(max_abs_score, int | float) or not 0 < max_abs_score < math.inf:
            raise ValueError(f"max_abs_score: expected a positive number, got {max_abs_score!r}")
        self.max_abs_score = float(max_abs_score)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers: expected an int >= 0, got {num_workers!r}")
        for name, v in (("timeout_s", timeout_s), ("group_timeout_s", group_timeout_s)):
            if v is not None and (not isinstance(v, int | float) or not v > 0 or math.isinf(v)):
                raise ValueError(f"{name}: expected a positive number of seconds, got {v!r}")
        if not isinstance(failure_score, int | float) or not math.isfinite(failure_score):
            raise ValueError(f"failure_score: expected a finite number, got {failure_score!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
        self.num_workers = num_workers
        self.timeout_s = float(timeout_s)
        self.group_timeout_s = None if group_timeout_s is None else float(group_timeout_s)
        self.failure_score = float(failure_score)
        self.chunk_size = chunk_size
        if memory_limit_mb is not None and (
            not isinstance(memory_limit_mb, int) or memory_limit_mb < 64
        ):
            raise ValueError(f"memory_limit_mb: expected an int >= 64, got {memory_limit_mb!r}")
        self.memory_limit_mb = memory_limit_mb or 0
        self.keys = [s.key for s in self.specs]
        self.weights = {s.key: s.weight for s in self.specs}
        self._state: dict[str, dict[str, Any]] = {s.key: {} for s in self.specs if s.info.stateful}
        self._totals = {s.key: {"entries": 0, "failed": 0, "timeout": 0} for s in self.specs}
        self._closed = False
        self._chunk_seq = 0
        self._ids = itertools.count()
        self.n_respawns = 0
        self._startup_failures = 0
        self._inline_fns: list[Callable] | None = None
        self._workers: list[_Worker] = []
        if num_workers == 0:
            self._inline_fns = [load_target(s.target) for s in self.specs]
        else:
            self._workers = [_Worker(self.specs, self.memory_limit_mb) for _ in range(num_workers)]

    # -- public API -------------------------------------------------------------------------

    def score(
        self,
        completions: Sequence[Sequence[str]],
        examples: Sequence[Mapping[str, Any]],
        num_tokens: Sequence[Sequence[int]] | None = None,
        finish_reasons: Sequence[Sequence[str]] | None = None,
    ) -> RewardBatch:
        """Score ``completions[b][g]`` of prompt ``examples[b]``; see :class:`RewardBatch`."""
        if self._closed:
            raise RuntimeError("RewardRunner is closed")
        t0 = time.monotonic()
        B = len(completions)
        if len(examples) != B:
            raise ValueError(f"score: {B} completion groups but {len(examples)} examples")
        shape = [len(row) for row in completions]
        for nm, arr in (("num_tokens", num_tokens), ("finish_reasons", finish_reasons)):
            if arr is not None and [len(r) for r in arr] != shape:
                raise ValueError(f"score: {nm} must have the shape of completions [B][G]")
        for b, row in enumerate(completions):
            for g, c in enumerate(row):
                if not isinstance(c, str):
                    raise TypeError(f"score: completions[{b}][{g}] is {type(c).__name__}, not str")
        exs = [dict(e) for e in examples]
        ntok = (
            [list(r) for r in num_tokens] if num_tokens is not None else [[None] * n for n in shape]
        )
        fin = (
            [list(r) for r in finish_reasons]
            if finish_reasons is not None
            else [[None] * n for n in shape]
        )

        fs = self.failure_score
        comp: dict[str, list[list[float]]] = {s.key: [[fs] * n for n in shape] for s in self.specs}
        subs: dict[str, list[list[float]]] = {}
        status_count = {s.key: {"failed": 0, "timeout": 0} for s in self.specs}
        errors: list[str] = []

        limit = self.max_abs_score

        def record(spec: RewardSpec, b: int, g: int, status: str, value: Any, msg: str) -> None:
            if status == "ok":
                v, sub = value
                bad = [x for x in (v, *(sub or {}).values()) if not abs(x) <= limit]
                if bad:
                    status = "error"
                    msg = (
                        f"{spec.key}: value {bad[0]:.3g} outside [-{limit:g}, {limit:g}] "
                        "(reward_runner.max_abs_score)"
                    )
            if status == "ok":
                comp[spec.key][b][g] = v
                if sub:
                    for name, sv in sub.items():
                        arr = subs.setdefault(f"{spec.key}/{name}", [[fs] * n for n in shape])
                        arr[b][g] = sv
                return
            status_count[spec.key]["timeout" if status == "timeout" else "failed"] += 1
            if len(errors) < 20 and msg not in errors:
                errors.append(msg)

        # phase 1: per-sample rewards and group rewards that need nothing computed first;
        # phase 2: group rewards reading other components; phase 3: stateful rewards.
        phase1 = [s for s in self.specs if not s.is_group]
        phase1 += [
            s
            for s in self.specs
            if s.is_group and not s.info.stateful and "components" not in s.runtime_kwargs
        ]
        phase2 = [
            s
            for s in self.specs
            if s.is_group and not s.info.stateful and "components" in s.runtime_kwargs
        ]
        phase3 = [s for s in self.specs if s.info.stateful]

        def group_payload(spec: RewardSpec, b: int) -> dict[str, Any]:
            p: dict[str, Any] = {"completions": list(completions[b])}
            if "num_tokens" in spec.runtime_kwargs:
                p["num_tokens"] = ntok[b]
            if "finish_reasons" in spec.runtime_kwargs:
                p["finish_reasons"] = fin[b]
            if "components" in spec.runtime_kwargs:
                done = {**comp, **subs}
                p["components"] = {k: list(v[b]) for k, v in done.items() if k not in pending_keys}
            return p

        pending_keys: set[str] = {s.key for s in phase2 + phase3}

        def run_phase(calls: list[_Call]) -> None:
            if not calls:
                return
            results = self._run(calls, exs)
            for call in calls:
                spec = self.specs[call.spec]
                status, value = results[call.id]
                msg = value if isinstance(value, str) else ""
                if call.g is not None:
                    record(spec, call.b, call.g, status, value, msg)
                    continue
                n = shape[call.b]
                if status == "ok" and spec.info.stateful:
                    value, new_state = value
                    self._state[spec.key][call.payload["state_key"]] = new_state
                for g in range(n):
                    record(spec, call.b, g, status, value[g] if status == "ok" else None, msg)

        ids = self._ids  # unique across calls of score()
        calls: list[_Call] = []
        for spec in phase1:
            if spec.is_group:
                for b in range(B):
                    calls.append(
                        _Call(
                            next(ids),
                            spec.index,
                            b,
                            None,
                            group_payload(spec, b),
                            self._group_limit(shape[b]),
                        )
                    )
                continue
            for b in range(B):
                for g in range(shape[b]):
                    p: dict[str, Any] = {"completion": completions[b][g]}
                    if "num_tokens" in spec.runtime_kwargs:
                        p["num_tokens"] = ntok[b][g]
                    if "finish_reason" in spec.runtime_kwargs:
                        p["finish_reason"] = fin[b][g]
                    calls.append(_Call(next(ids), spec.index, b, g, p, self.timeout_s))
        run_phase(calls)

        run_phase(
            [
                _Call(next(ids), s.index, b, None, group_payload(s, b), self._group_limit(shape[b]))
                for s in phase2
                for b in range(B)
            ]
        )
        pending_keys.difference_update(s.key for s in phase2)

        for spec in phase3:
            # the same prompt twice in a batch: later visits must see the earlier update
            rounds: list[list[int]] = []
            seen: dict[str, int] = {}
            for b in range(B):
                k = example_key(exs[b])
                r = seen.get(k, 0)
                seen[k] = r + 1
                while len(rounds) <= r:
                    rounds.append([])
                rounds[r].append(b)
            for bs in rounds:
                calls = []
                for b in bs:
                    sk = example_key(exs[b])
                    p = group_payload(spec, b)
                    p["state"] = self._state[spec.key].get(sk)
                    p["state_key"] = sk
                    calls.append(
                        _Call(next(ids), spec.index, b, None, p, self._group_limit(shape[b]))
                    )
                run_phase(calls)
            pending_keys.discard(spec.key)

        components = {**comp, **subs}
        total = weighted_total(comp, self.weights)
        n_failed = sum(c["failed"] for c in status_count.values())
        n_timeout = sum(c["timeout"] for c in status_count.values())
        entries = sum(shape)
        for key, c in status_count.items():
            t = self._totals[key]
            t["entries"] += entries
            t["failed"] += c["failed"]
            t["timeout"] += c["timeout"]
        metrics = _metrics(components, total, status_count, entries)
        metrics["reward/n_failed"] = float(n_failed)
        metrics["reward/n_timeout"] = float(n_timeout)
        metrics["reward/time_s"] = time.monotonic() - t0
        if errors:
            log.warning(
                "%d reward call(s) failed, %d timed out; first: %s", n_failed, n_timeout, errors[0]
            )
        return RewardBatch(total, components, n_failed, n_timeout, metrics, errors)

    def failure_summary(self) -> dict[str, dict[str, float]]:
        """Per reward key over every :meth:`score` call so far: scored entries, failed,
        timed out, and their share (``rate``)."""
        return {
            key: {**t, "rate": (t["failed"] + t["timeout"]) / t["entries"] if t["entries"] else 0.0}
            for key, t in self._totals.items()
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state of stateful rewards (per reward key, per prompt key)."""
        import copy

        return {"version": 1, "rewards": copy.deepcopy(self._state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (``{}`` is a no-op). Rewards absent from the
        recipe are ignored with a warning."""
        if not isinstance(state, Mapping):
            raise ValueError("load_state_dict: expected the dict returned by state_dict()")
        if not state:  # nothing saved (e.g. a checkpoint from before rewards had state)
            return
        if not isinstance(state.get("rewards"), Mapping):
            raise ValueError("load_state_dict: expected the dict returned by state_dict()")
        import copy

        for key, per_prompt in state["rewards"].items():
            if key in self._state:
                if not isinstance(per_prompt, Mapping):
                    raise ValueError(f"load_state_dict: state of {key!r} must be a mapping")
                self._state[key] = copy.deepcopy(dict(per_prompt))
            else:
                log.warning("load_state_dict: no stateful reward %r in this recipe; ignored", key)

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            w.stop()
        self._workers = []

    def __enter__(self) -> RewardRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- scheduling -------------------------------------------------------------------------

    def _group_limit(self, g: int) -> float:
        return (
            self.group_timeout_s if self.group_timeout_s is not None else self.timeout_s * max(1, g)
        )

    def _run(self, calls: list[_Call], examples: list[dict]) -> dict[int, tuple[str, Any]]:
        if self._inline_fns is not None:
            return {
                c.id: _execute(
                    self._inline_fns[c.spec],
                    self.specs[c.spec],
                    {**c.payload, "example": examples[c.b]},
                    c.limit,
                    install_handler=True,
                )
                for c in calls
            }
        for i, w in enumerate(self._workers):
            if w.busy:  # left over from an interrupted score(): its results are stale
                w.chunk_id, w.calls = None, []
                self._respawn(i)
        results: dict[int, tuple[str, Any]] = {}
        size = self.chunk_size or max(1, min(64, math.ceil(len(calls) / (4 * len(self._workers)))))
        queue: deque[list[_Call]] = deque(calls[i : i + size] for i in range(0, len(calls), size))
        by_id = {c.id: c for c in calls}
        # a failing signal handler install in the worker must not hang us: bounded start-up
        while len(results) < len(calls):
            for i, w in enumerate(self._workers):
                if not w.alive() and not w.busy:
                    self._drain(w, results)
                    self._respawn(i)
            for w in self._workers:
                if w.ready and not w.busy and queue:
                    self._assign(w, queue.popleft(), examples)
            waitables: list[Any] = [w.conn for w in self._workers]
            wait(waitables, timeout=0.02)
            now = time.monotonic()
            for i, w in enumerate(self._workers):
                self._drain(w, results)
                if not w.ready and now - w.started > _STARTUP_TIMEOUT_S:
                    raise RuntimeError(
                        f"reward worker did not start within {_STARTUP_TIMEOUT_S:.0f}s"
                    )
                if not w.busy:
                    continue
                cur = w.current()
                overran = cur is not None and now - cur[1] > w.calls[cur[0]].limit
                dead = not w.alive()
                if not (overran or dead):
                    continue
                if overran:
                    w.kill()
                self._drain(w, results)  # results sent before the kill are still in the pipe
                if not w.busy:  # it finished the chunk just in time
                    continue
                cur = w.current() if cur is None else cur
                if cur is not None and w.calls[cur[0]].id not in results:
                    bad = w.calls[cur[0]]
                    if overran:
                        results[bad.id] = (
                            "timeout",
                            f"{self.specs[bad.spec].key}: hard time limit {bad.limit:.3g}s",
                        )
                    else:
                        results[bad.id] = (
                            "error",
                            f"{self.specs[bad.spec].key}: worker died (exit code {w.proc.returncode})",
                        )
                rest = [c for c in w.calls if c.id not in results]
                if rest:
                    queue.appendleft(rest)
                w.chunk_id, w.calls = None, []
                self._respawn(i)
        return {cid: results[cid] for cid in by_id}

    def _assign(self, w: _Worker, chunk: list[_Call], examples: list[dict]) -> None:
        self._chunk_seq += 1
        w.chunk_id = self._chunk_seq
        w.calls = chunk
        exs = {c.b: examples[c.b] for c in chunk}
        msg = (w.chunk_id, exs, [(c.id, c.spec, c.b, c.payload, c.limit) for c in chunk])
        try:
            data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            w.chunk_id, w.calls = None, []
            raise TypeError(f"score: examples and completions must be picklable: {e}") from e
        try:
            w.conn.send_bytes(data)
        except OSError:
            pass  # the death is handled by the watch loop

    def _drain(self, w: _Worker, results: dict[int, tuple[str, Any]]) -> None:
        while True:
            try:
                if not w.conn.poll():
                    return
                msg = w.conn.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            if kind == "ready":
                w.ready = True
            elif kind == "init_error":
                self.close()
                raise RuntimeError(f"reward worker could not load the rewards: {msg[1]}")
            elif kind in ("results", "done"):
                _, chunk_id, items = msg
                if chunk_id != w.chunk_id:
                    continue
                for call_id, status, value in items:
                    results.setdefault(call_id, (status, value))
                if kind == "done":
                    w.chunk_id, w.calls = None, []

    def _respawn(self, i: int) -> None:
        old = self._workers[i]
        old.kill()
        old.release()
        if not old.ready:
            self._startup_failures += 1
            if self._startup_failures > 3:
                self.close()
                raise RuntimeError(
                    "reward workers keep dying before they are ready (exit code "
                    f"{old.proc.returncode}); see their stderr above"
                )
        else:
            self._startup_failures = 0
        self.n_respawns += 1
        self._workers[i] = _Worker(self.specs, self.memory_limit_mb)


def _metrics(
    components: Mapping[str, list[list[float]]],
    total: list[list[float]],
    status: Mapping[str, Mapping[str, int]],
    entries: int,
) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, arr in {**components, "total": total}.items():
        flat = [v for row in arr for v in row]
        if not flat:
            continue
        mean = math.fsum(flat) / len(flat)
        try:
            var = math.fsum((v - mean) ** 2 for v in flat) / len(flat)
        except OverflowError:  # only reachable with a huge max_abs_score
            var = math.inf
        out[f"reward/{key}/mean"] = mean
        out[f"reward/{key}/std"] = math.sqrt(var)
    for key, c in status.items():
        out[f"reward/{key}/failed"] = float(c["failed"])
        out[f"reward/{key}/timeout"] = float(c["timeout"])
        out[f"reward/{key}/failure_rate"] = (
            (c["failed"] + c["timeout"]) / entries if entries else 0.0
        )
    return out
