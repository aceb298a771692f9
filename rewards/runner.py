"""Reward runner: scores [B][G] completions with the recipe's rewards, each call under a hard
wall-clock limit (the process pool of :mod:`rewards.pool`).

For reward specs k with weights w_k (see :mod:`rewards.base`):

    total[b][g] = sum_k w_k * r_k(completion[b][g], example[b])

where r_k is ``failure_score`` when the call raised, returned a non-finite / non-numeric value
or one outside ``[-max_abs_score, max_abs_score]`` (default 1e6: a reward of 1e100 would
overflow float32 downstream), crashed its worker, or ran past its time limit.
:meth:`RewardRunner.failure_summary` keeps the counts over the runner's life (for the run's
final table); each batch's metrics hold ``reward/<key>/failure_rate`` (failed + timed-out
share of that reward's scored entries). Failures and time-outs are counted per scored entry
(a failed group call counts G entries).

Limits: ``timeout_s`` for a per-sample call, ``group_timeout_s`` (default ``timeout_s * G``)
for a per-group call; :class:`rewards.pool.WorkerPool` enforces them.

:meth:`RewardRunner.score` runs three phases, each one method:

1. :meth:`RewardRunner._score_per_sample`: per-sample rewards, and per-group rewards that need
   nothing computed first;
2. :meth:`RewardRunner._score_per_group`: per-group rewards that declare ``components``; they
   receive the values of phase 1 for their group;
3. :meth:`RewardRunner._score_stateful`: stateful rewards, whose per-prompt state lives in the
   parent and is saved / restored by :meth:`RewardRunner.state_dict` /
   :meth:`RewardRunner.load_state_dict` (the same prompt twice in a batch: the later visit sees
   the earlier update).

The specs are validated once: a list of :class:`rewards.base.RewardSpec` (what
:func:`rewards.base.parse_specs` returns, e.g. ``Recipe.reward_specs``) is taken as it is;
mappings are validated here.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewards.base import RewardSpec, example_key, parse_specs, weighted_total
from rewards.pool import RewardTimeout, WorkerPool, _Call

__all__ = ["RewardRunner", "RewardBatch", "RewardTimeout"]

log = logging.getLogger(__name__)


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
class _Scoring:
    """The inputs and partial results of one :meth:`RewardRunner.score` call."""

    completions: list[list[str]]
    examples: list[dict[str, Any]]
    num_tokens: list[list[int | None]]
    finish_reasons: list[list[str | None]]
    comp: dict[str, list[list[float]]]  # per reward key, failure_score until scored
    subs: dict[str, list[list[float]]] = field(default_factory=dict)  # "key/name" sub-scores
    status_count: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    pending_keys: set[str] = field(default_factory=set)  # not yet visible as components

    @property
    def shape(self) -> list[int]:
        return [len(row) for row in self.completions]


def _as_specs(specs: Sequence[Mapping[str, Any] | RewardSpec]) -> list[RewardSpec]:
    """Validated specs as given, otherwise :func:`parse_specs` of the mappings."""
    if (
        not isinstance(specs, Mapping)
        and isinstance(specs, Sequence)
        and len(specs) > 0
        and all(isinstance(s, RewardSpec) for s in specs)
    ):
        out = list(specs)
        if [s.index for s in out] != list(range(len(out))):
            raise ValueError("rewards: RewardSpec indices must be 0..K-1 in order")
        return out
    return parse_specs(specs)  # type: ignore[arg-type]


class RewardRunner:
    """Score completions with the recipe's rewards in a pool of worker processes.

    Args:
        specs: ``[{"name": ..., "weight": 1.0, "params": {...}, "key": ...}, ...]`` (see
            :func:`rewards.base.parse_specs`; bad specs raise ``ValueError`` here), or the
            :class:`rewards.base.RewardSpec` list it returns (used as it is).
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
        specs: Sequence[Mapping[str, Any] | RewardSpec],
        num_workers: int = 2,
        timeout_s: float = 5.0,
        failure_score: float = 0.0,
        *,
        group_timeout_s: float | None = None,
        chunk_size: int | None = None,
        memory_limit_mb: int | None = None,
        max_abs_score: float = 1e6,
    ) -> None:
        self.specs = _as_specs(specs)
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
        self.chunk_size = chunk_size
        self.failure_score = float(failure_score)
        if memory_limit_mb is not None and (
            not isinstance(memory_limit_mb, int) or memory_limit_mb < 64
        ):
            raise ValueError(f"memory_limit_mb: expected an int >= 64, got {memory_limit_mb!r}")
        self.memory_limit_mb = memory_limit_mb or 0
        self.keys = [s.key for s in self.specs]
        self.weights = {s.key: s.weight for s in self.specs}
        self._state: dict[str, dict[str, Any]] = {s.key: {} for s in self.specs if s.info.stateful}
        self._totals = {s.key: {"entries": 0, "failed": 0, "timeout": 0} for s in self.specs}
        self._ids = itertools.count()  # call ids, unique across score() calls
        self._pool = WorkerPool(
            self.specs,
            num_workers,
            chunk_size=self.chunk_size,
            memory_limit_mb=self.memory_limit_mb,
        )

    @property
    def n_respawns(self) -> int:
        """Workers respawned so far (after a hard time-out or a crash)."""
        return self._pool.n_respawns

    # -- public API -------------------------------------------------------------------------

    def score(
        self,
        completions: Sequence[Sequence[str]],
        examples: Sequence[Mapping[str, Any]],
        num_tokens: Sequence[Sequence[int]] | None = None,
        finish_reasons: Sequence[Sequence[str]] | None = None,
    ) -> RewardBatch:
        """Score ``completions[b][g]`` of prompt ``examples[b]``; see :class:`RewardBatch`."""
        if self._pool.closed:
            raise RuntimeError("RewardRunner is closed")
        t0 = time.monotonic()
        st = self._start(completions, examples, num_tokens, finish_reasons)
        self._score_per_sample(st)
        self._score_per_group(st)
        self._score_stateful(st)
        return self._finish(st, t0)

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
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()

    def __enter__(self) -> RewardRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- phases -----------------------------------------------------------------------------

    def _start(
        self,
        completions: Sequence[Sequence[str]],
        examples: Sequence[Mapping[str, Any]],
        num_tokens: Sequence[Sequence[int]] | None,
        finish_reasons: Sequence[Sequence[str]] | None,
    ) -> _Scoring:
        """Check the inputs' shapes and types; every entry starts at ``failure_score``."""
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
        fs = self.failure_score
        return _Scoring(
            completions=[list(row) for row in completions],
            examples=[dict(e) for e in examples],
            num_tokens=(
                [list(r) for r in num_tokens]
                if num_tokens is not None
                else [[None] * n for n in shape]
            ),
            finish_reasons=(
                [list(r) for r in finish_reasons]
                if finish_reasons is not None
                else [[None] * n for n in shape]
            ),
            comp={s.key: [[fs] * n for n in shape] for s in self.specs},
            status_count={s.key: {"failed": 0, "timeout": 0} for s in self.specs},
            pending_keys={
                s.key
                for s in self.specs
                if s.info.stateful or (s.is_group and "components" in s.runtime_kwargs)
            },
        )

    def _score_per_sample(self, st: _Scoring) -> None:
        """Phase 1: per-sample rewards, then the group rewards that read no components."""
        phase = [s for s in self.specs if not s.is_group]
        phase += [
            s
            for s in self.specs
            if s.is_group and not s.info.stateful and "components" not in s.runtime_kwargs
        ]
        calls: list[_Call] = []
        for spec in phase:
            if spec.is_group:
                calls += [self._group_call(st, spec, b) for b in range(len(st.completions))]
                continue
            for b, row in enumerate(st.completions):
                for g, completion in enumerate(row):
                    p: dict[str, Any] = {"completion": completion}
                    if "num_tokens" in spec.runtime_kwargs:
                        p["num_tokens"] = st.num_tokens[b][g]
                    if "finish_reason" in spec.runtime_kwargs:
                        p["finish_reason"] = st.finish_reasons[b][g]
                    calls.append(_Call(next(self._ids), spec.index, b, g, p, self.timeout_s))
        self._run_calls(st, calls)

    def _score_per_group(self, st: _Scoring) -> None:
        """Phase 2: per-group rewards reading the phase-1 components of their group (they do
        not see each other's)."""
        phase = [
            s
            for s in self.specs
            if s.is_group and not s.info.stateful and "components" in s.runtime_kwargs
        ]
        self._run_calls(
            st, [self._group_call(st, s, b) for s in phase for b in range(len(st.completions))]
        )
        st.pending_keys.difference_update(s.key for s in phase)

    def _score_stateful(self, st: _Scoring) -> None:
        """Phase 3: stateful rewards, in rounds so that the same prompt twice in a batch sees
        its earlier visit's state."""
        for spec in (s for s in self.specs if s.info.stateful):
            rounds: list[list[int]] = []
            seen: dict[str, int] = {}
            for b, ex in enumerate(st.examples):
                k = example_key(ex)
                r = seen.get(k, 0)
                seen[k] = r + 1
                while len(rounds) <= r:
                    rounds.append([])
                rounds[r].append(b)
            for bs in rounds:
                calls = []
                for b in bs:
                    sk = example_key(st.examples[b])
                    call = self._group_call(st, spec, b)
                    call.payload["state"] = self._state[spec.key].get(sk)
                    call.payload["state_key"] = sk
                    calls.append(call)
                self._run_calls(st, calls)
            st.pending_keys.discard(spec.key)

    def _finish(self, st: _Scoring, t0: float) -> RewardBatch:
        """Weighted total, metrics and the life-long failure counts."""
        components = {**st.comp, **st.subs}
        total = weighted_total(st.comp, self.weights)
        n_failed = sum(c["failed"] for c in st.status_count.values())
        n_timeout = sum(c["timeout"] for c in st.status_count.values())
        entries = sum(st.shape)
        for key, c in st.status_count.items():
            t = self._totals[key]
            t["entries"] += entries
            t["failed"] += c["failed"]
            t["timeout"] += c["timeout"]
        metrics = _metrics(components, total, st.status_count, entries)
        metrics["reward/n_failed"] = float(n_failed)
        metrics["reward/n_timeout"] = float(n_timeout)
        metrics["reward/time_s"] = time.monotonic() - t0
        if st.errors:
            log.warning(
                "%d reward call(s) failed, %d timed out; first: %s",
                n_failed,
                n_timeout,
                st.errors[0],
            )
        return RewardBatch(total, components, n_failed, n_timeout, metrics, st.errors)

    # -- calls and their results ----------------------------------------------------------------

    def _group_limit(self, g: int) -> float:
        return (
            self.group_timeout_s if self.group_timeout_s is not None else self.timeout_s * max(1, g)
        )

    def _group_call(self, st: _Scoring, spec: RewardSpec, b: int) -> _Call:
        """One per-group call on prompt ``b``; its payload has the runtime values the reward
        accepts (components: those already scored and not pending)."""
        p: dict[str, Any] = {"completions": list(st.completions[b])}
        if "num_tokens" in spec.runtime_kwargs:
            p["num_tokens"] = st.num_tokens[b]
        if "finish_reasons" in spec.runtime_kwargs:
            p["finish_reasons"] = st.finish_reasons[b]
        if "components" in spec.runtime_kwargs:
            done = {**st.comp, **st.subs}
            p["components"] = {k: list(v[b]) for k, v in done.items() if k not in st.pending_keys}
        limit = self._group_limit(len(st.completions[b]))
        return _Call(next(self._ids), spec.index, b, None, p, limit)

    def _run_calls(self, st: _Scoring, calls: list[_Call]) -> None:
        """Run ``calls`` in the pool and record their results (a group call: one per entry)."""
        if not calls:
            return
        results = self._pool.run(calls, st.examples)
        for call in calls:
            spec = self.specs[call.spec]
            status, value = results[call.id]
            msg = value if isinstance(value, str) else ""
            if call.g is not None:
                self._record(st, spec, call.b, call.g, status, value, msg)
                continue
            if status == "ok" and spec.info.stateful:
                value, new_state = value
                self._state[spec.key][call.payload["state_key"]] = new_state
            for g in range(len(st.completions[call.b])):
                v = value[g] if status == "ok" else None
                self._record(st, spec, call.b, g, status, v, msg)

    def _record(
        self, st: _Scoring, spec: RewardSpec, b: int, g: int, status: str, value: Any, msg: str
    ) -> None:
        """Store one entry's (score, sub-scores), or count its failure (a value outside
        ``[-max_abs_score, max_abs_score]`` is one)."""
        limit = self.max_abs_score
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
            st.comp[spec.key][b][g] = v
            if sub:
                fs = self.failure_score
                for name, sv in sub.items():
                    arr = st.subs.setdefault(f"{spec.key}/{name}", [[fs] * n for n in st.shape])
                    arr[b][g] = sv
            return
        st.status_count[spec.key]["timeout" if status == "timeout" else "failed"] += 1
        if len(st.errors) < 20 and msg not in st.errors:
            st.errors.append(msg)


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
