"""Hard-limit process pool of the reward runner: each call gets a wall-clock limit that holds
for any reward code.

Used by :class:`rewards.runner.RewardRunner`, which builds the calls (see there for the scores'
formula and the scoring phases). Design (read for background: verl's reward-manager process
pools, the AReaL / TRL notes on math-verify timeouts; the code is our own):

* Workers are fresh interpreters (``subprocess`` + a socket pair; like multiprocessing's
  ``spawn``, never ``fork``: the trainer holds torch and possibly vLLM threads; unlike
  ``spawn`` / ``forkserver`` they do not re-import the trainer's ``__main__`` script, so an
  unguarded script cannot recurse). Each worker imports the reward functions itself by the
  spec's import target, so ``path/to/file.py:fn`` rewards work there too, and is SIGKILLed by
  the kernel if the trainer dies (Linux ``PR_SET_PDEATHSIG``).
* Work is sent in chunks (several calls per message, results flushed back every ~0.1 s), but
  each call has its own limit (:attr:`_Call.limit`). A worker arms ``SIGALRM`` at 90 % of the
  limit (it runs rewards in its main thread, so Python-level loops are interrupted cheaply);
  the parent watches a shared progress record (``mmap``: chunk id, index of the running call,
  its start) and SIGKILLs a worker whose current call passes the full limit (C-level work such
  as a huge integer power cannot be interrupted by signals), then respawns it and re-queues the
  chunk's unfinished calls.
* A worker that dies (crash, ``RLIMIT_AS`` from ``memory_limit_mb``) fails its running call
  and is respawned; one that keeps dying before it is ready stops the pool.
* ``num_workers=0`` runs inline in the caller (debugging only: only the soft SIGALRM limit, and
  only from the main thread).
"""

from __future__ import annotations

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from rewards.base import RewardSpec, call_reward, load_target

__all__ = ["RewardTimeout", "WorkerPool"]

log = logging.getLogger(__name__)

_SOFT_FRACTION = 0.9
_FLUSH_S = 0.1
_STARTUP_TIMEOUT_S = 180.0


class RewardTimeout(BaseException):
    """Raised inside a worker when a reward call passes its soft deadline.

    A ``BaseException`` so that rewards catching ``Exception`` do not swallow it.
    """


@dataclass
class _Call:
    """One reward call: reward ``spec`` on prompt ``b`` (sample ``g``; None: a group call)."""

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
    "from rewards.pool import _worker_main\n"
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


class WorkerPool:
    """``num_workers`` worker processes that run reward calls under hard time limits
    (``num_workers=0``: inline in the caller, soft limit only).

    Args:
        specs: validated rewards (:func:`rewards.base.parse_specs`); ``_Call.spec`` indexes them.
        num_workers: worker processes (0 = inline).
        chunk_size: calls per message (default: spread the calls over ~4 chunks per worker, at
            most 64 calls each).
        memory_limit_mb: address-space limit (RLIMIT_AS) of each worker; 0 = none.
    """

    def __init__(
        self,
        specs: list[RewardSpec],
        num_workers: int,
        *,
        chunk_size: int | None = None,
        memory_limit_mb: int = 0,
    ) -> None:
        self.specs = specs
        self.chunk_size = chunk_size
        self.memory_limit_mb = memory_limit_mb
        self.closed = False
        self.n_respawns = 0
        self._chunk_seq = 0
        self._startup_failures = 0
        self._inline_fns: list[Callable] | None = None
        self._workers: list[_Worker] = []
        if num_workers == 0:
            self._inline_fns = [load_target(s.target) for s in specs]
        else:
            self._workers = [_Worker(specs, memory_limit_mb) for _ in range(num_workers)]

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for w in self._workers:
            w.stop()
        self._workers = []

    def run(self, calls: list[_Call], examples: list[dict]) -> dict[int, tuple[str, Any]]:
        """Run ``calls`` (``examples[call.b]`` is each call's example); returns
        ``{call.id: (status, value | message)}``, status in ok / error / timeout."""
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
