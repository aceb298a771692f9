"""Reward protocol, registry, loading of custom rewards, and weighted composition.

A reward is a plain Python function. Two levels exist:

* per-sample: ``fn(completion: str, example: dict, **params) -> float | dict[str, float]``.
  It may also declare the keyword arguments ``num_tokens: int`` and ``finish_reason: str``;
  they are passed only when the signature names them (or has ``**kwargs``).
* per-group (marked with :func:`group_reward` or ``register_reward(..., group=True)``):
  ``fn(completions: list[str], example: dict, **params) -> list[float] | list[dict]``, one
  value per completion of one prompt. Optional keywords: ``num_tokens: list[int]``,
  ``finish_reasons: list[str]``, ``components: dict[str, list[float]]`` (the per-sample reward
  components already computed for this group, e.g. ``components["math"]``) and, for stateful
  rewards, ``state: dict | None`` (this prompt's saved state; the function then returns
  ``(scores, new_state)`` and the runner keeps ``new_state`` in its checkpointable
  :meth:`rewards.runner.RewardRunner.state_dict`).

A reward may carry two optional hooks: ``fn.__rlvr_validate__(**params)`` (raise
``ValueError`` for bad recipe params; called when the recipe is loaded) and
``fn.__rlvr_warmup__()`` (called once in each worker before any time limit applies).

Composition (the formula the runner implements): for rewards k = 1..K with weights w_k,

    total[b][g] = sum_k w_k * r_k[b][g]

where r_k is the reward's scalar; a reward returning a dict contributes the sum of its
entries as its scalar and each entry is also logged as the component ``"<key>/<entry>"``.
A reward call that raises or times out scores ``failure_score`` for that component.
This is the weighted sum of reward functions used by TRL / open-r1 (``reward_weights``);
the code here is our own.

A recipe names a reward by its registry name (``"math"``), by import path
(``"my_pkg.my_module:my_reward"``) or by file (``"path/to/file.py:my_reward"``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import pkgutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RewardInfo",
    "RewardSpec",
    "group_reward",
    "register_reward",
    "registered_rewards",
    "reward_info",
    "load_target",
    "parse_specs",
    "example_key",
    "normalize_sample_result",
    "normalize_group_result",
    "call_reward",
    "weighted_total",
]

#: Keyword arguments the runner may pass to a per-sample reward (only if the signature has them).
SAMPLE_RUNTIME_KWARGS = ("num_tokens", "finish_reason")
#: Keyword arguments the runner may pass to a per-group reward (only if the signature has them).
GROUP_RUNTIME_KWARGS = ("num_tokens", "finish_reasons", "components", "state")

_LEVEL_ATTR = "__rlvr_reward_level__"
_STATEFUL_ATTR = "__rlvr_reward_stateful__"

# The package's modules register their rewards on import; they are imported lazily on the first
# lookup (so ``import rewards.base`` stays cheap), the common ones first. A new reward file in
# rewards/ is found this way, with no list to edit. A module that fails to import is skipped.
_COMMON_MODULES = ("rewards.math", "rewards.format")


@functools.lru_cache(maxsize=1)
def _builtin_modules() -> tuple[str, ...]:
    """Every top-level module of the ``rewards`` package, ``_COMMON_MODULES`` first (the
    directory is read once per process)."""
    here = os.path.dirname(os.path.abspath(__file__))
    found = [f"rewards.{m.name}" for m in pkgutil.iter_modules([here]) if not m.ispkg]
    return tuple(sorted(found, key=lambda m: (m not in _COMMON_MODULES, m)))


@dataclass(frozen=True)
class RewardInfo:
    """How the runner must call a reward: ``level`` is "sample" or "group"."""

    level: str = "sample"
    stateful: bool = False


@dataclass(frozen=True)
class _Entry:
    target: str  # "pkg.mod:qualname" or "/abs/file.py:qualname"
    info: RewardInfo


_REGISTRY: dict[str, _Entry] = {}
_BUILTIN_ERRORS: dict[str, str] = {}  # built-in module -> why it could not be imported


def group_reward(fn: Callable | None = None, *, stateful: bool = False) -> Any:
    """Mark ``fn`` as a per-group reward (it sees all G completions of one prompt).

    Usable as ``@group_reward`` or ``@group_reward(stateful=True)``. A stateful group reward
    takes ``state: dict | None`` and returns ``(scores, new_state)``.
    """

    def mark(f: Callable) -> Callable:
        setattr(f, _LEVEL_ATTR, "group")
        setattr(f, _STATEFUL_ATTR, bool(stateful))
        return f

    return mark(fn) if fn is not None else mark


def reward_info(fn: Callable) -> RewardInfo:
    """The :class:`RewardInfo` of a reward function (per-sample unless marked)."""
    level = getattr(fn, _LEVEL_ATTR, "sample")
    stateful = bool(getattr(fn, _STATEFUL_ATTR, False))
    return RewardInfo(level=level, stateful=stateful)


def _target_of(fn: Callable) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError(
            f"reward {fn!r} must be a module-level function (worker processes import it by "
            "name); lambdas and nested functions cannot be registered"
        )
    if module == "__main__":
        raise ValueError(
            f"reward {qualname!r} is defined in the __main__ script; worker processes cannot "
            "import it. Put it in a module or a file and name it 'path/to/file.py:function'"
        )
    mod = sys.modules.get(module)
    file_target = getattr(mod, "__rlvr_file_target__", None) if mod is not None else None
    if file_target:
        return f"{file_target}:{qualname}"
    return f"{module}:{qualname}"


def register_reward(
    name: str,
    fn: Callable | None = None,
    *,
    group: bool = False,
    stateful: bool = False,
    overwrite: bool = False,
) -> Any:
    """Register a reward under ``name`` so recipes can say ``rewards: [{name: <name>}]``.

    Use as a decorator::

        @register_reward("my_reward")
        def my_reward(completion: str, example: dict) -> float: ...

    or as a call ``register_reward("my_reward", my_reward)``. ``group=True`` marks a per-group
    reward, ``stateful=True`` (implies group) a group reward with checkpointed state. The
    function must be defined at module level in an importable module (or a file loaded through
    a ``path/to/file.py:fn`` spec): worker processes re-import it by name. Re-registering the
    same function is a no-op; another function under a taken name raises unless
    ``overwrite=True``.
    """

    def do(f: Callable) -> Callable:
        if not callable(f):
            raise TypeError(f"register_reward({name!r}): {f!r} is not callable")
        if group or stateful:
            group_reward(f, stateful=stateful)
        entry = _Entry(target=_target_of(f), info=reward_info(f))
        old = _REGISTRY.get(name)
        if old is not None and old.target != entry.target and not overwrite:
            raise ValueError(
                f"reward name {name!r} is already registered for {old.target}; "
                "pass overwrite=True to replace it"
            )
        _REGISTRY[name] = entry
        return f

    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"reward name must be a non-empty string without ':', got {name!r}")
    return do(fn) if fn is not None else do


def _load_builtins(name: str | None = None) -> None:
    """Import the built-in reward modules (all, or until ``name`` is registered).

    A module that fails to import is skipped and remembered, so that one broken optional
    module (e.g. a missing NLTK for the IF rewards) does not break ``math``.
    """
    for mod in _builtin_modules():
        if name is not None and name in _REGISTRY:
            return
        if mod in sys.modules or mod in _BUILTIN_ERRORS:
            continue
        try:
            importlib.import_module(mod)
        except Exception as e:
            _BUILTIN_ERRORS[mod] = f"{type(e).__name__}: {e}"


def registered_rewards() -> dict[str, str]:
    """Registry name -> import target of every registered reward (built-ins included)."""
    _load_builtins()
    return {k: v.target for k, v in sorted(_REGISTRY.items())}


# ---------------------------------------------------------------------------------------------
# loading by target
# ---------------------------------------------------------------------------------------------


def _load_file_module(path: str) -> Any:
    abspath = os.path.abspath(path)
    digest = hashlib.sha1(abspath.encode()).hexdigest()[:12]
    mod_name = f"_rlvr_reward_file_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, abspath)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load Python file {abspath}")
    module = importlib.util.module_from_spec(spec)
    module.__rlvr_file_target__ = abspath  # type: ignore[attr-defined]
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


def _split_target(target: str) -> tuple[str, str]:
    if target.count(":") < 1:
        raise ValueError("expected 'package.module:function' or 'path/to/file.py:function'")
    mod, _, attr = target.rpartition(":")
    if not mod or not attr:
        raise ValueError("expected 'package.module:function' or 'path/to/file.py:function'")
    return mod, attr


def load_target(target: str) -> Callable:
    """Import and return the function named by ``"pkg.mod:qualname"`` or ``"file.py:qualname"``.

    Raises ``ImportError`` / ``AttributeError`` / ``ValueError`` with a plain message.
    """
    mod_part, attr = _split_target(target)
    if mod_part.endswith(".py") or os.sep in mod_part or "/" in mod_part:
        if not mod_part.endswith(".py"):
            raise ValueError(f"file path {mod_part!r} must end in .py")
        if not os.path.isfile(mod_part):
            raise FileNotFoundError(f"file {os.path.abspath(mod_part)} does not exist")
        module = _load_file_module(mod_part)
    else:
        module = importlib.import_module(mod_part)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_"))
            raise AttributeError(
                f"{mod_part!r} has no attribute {attr!r} (public names: {', '.join(names[:20])})"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target!r} is not callable")
    return obj


# ---------------------------------------------------------------------------------------------
# specs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardSpec:
    """One validated reward of a recipe (what the runner ships to its workers)."""

    index: int
    name: str
    key: str
    weight: float
    params: dict[str, Any]
    target: str
    info: RewardInfo
    runtime_kwargs: tuple[str, ...] = field(default=())

    @property
    def is_group(self) -> bool:
        return self.info.level == "group"


def _resolve(name: str) -> tuple[str, Callable]:
    if ":" in name:
        mod_part, _ = _split_target(name)
        if mod_part.endswith(".py") or "/" in mod_part or os.sep in mod_part:
            target = f"{os.path.abspath(mod_part)}:{name.rpartition(':')[2]}"
        else:
            target = name
        return target, load_target(target)
    _load_builtins(name)
    entry = _REGISTRY.get(name)
    if entry is None:
        import difflib

        _load_builtins()
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        broken = "".join(f"; could not import {m}: {err}" for m, err in _BUILTIN_ERRORS.items())
        raise KeyError(
            f"unknown reward {name!r}{hint}; registered: {', '.join(sorted(_REGISTRY))}; "
            f"or give 'package.module:function' or 'path/to/file.py:function'{broken}"
        )
    return entry.target, load_target(entry.target)


def _accepted_runtime_kwargs(sig: inspect.Signature, candidates: Sequence[str]) -> tuple[str, ...]:
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    out = []
    for name in candidates:
        p = sig.parameters.get(name)
        if p is not None and p.kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            out.append(name)
        elif p is None and has_var_kw:
            out.append(name)
    return tuple(out)


def _check_signature(
    where: str, name: str, fn: Callable, info: RewardInfo, params: Mapping[str, Any]
) -> tuple[str, ...]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}.name: cannot inspect the signature of {name!r}: {e}") from e
    if info.level == "group":
        expected = (
            "fn(completions: list[str], example: dict, *, num_tokens=..., finish_reasons=..., "
            "**params) -> list[float] | list[dict]"
        )
        if info.stateful:
            expected = expected.replace("**params)", "state=..., **params)") + " plus new state"
        dummy: tuple[Any, ...] = ([], {})
        candidates = GROUP_RUNTIME_KWARGS
    else:
        expected = (
            "fn(completion: str, example: dict, **params) -> float | dict[str, float] "
            "(optional keywords num_tokens, finish_reason)"
        )
        dummy = ("", {})
        candidates = SAMPLE_RUNTIME_KWARGS
    clash = [p for p in params if p in candidates]
    if clash:
        raise ValueError(
            f"{where}.params: {clash} are reserved for values the runner passes itself"
        )
    runtime = _accepted_runtime_kwargs(sig, candidates)
    if info.stateful and "state" not in runtime:
        raise ValueError(
            f"{where}.name: stateful reward {name!r} must accept 'state'; expected {expected}"
        )
    try:
        sig.bind(*dummy, **dict(params), **{k: None for k in runtime})
    except TypeError as e:
        accepted = [
            p.name
            for p in list(sig.parameters.values())[2:]
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in candidates
        ]
        try:
            sig.bind_partial(*dummy)
            shape_ok = True
        except TypeError:
            shape_ok = False
        label = f"{where}.params" if shape_ok else f"{where}.name"
        raise ValueError(
            f"{label}: reward {name!r} cannot be called with params {sorted(params)}: {e}. "
            f"Expected {expected}; its params are {accepted}"
        ) from e
    return runtime


def _derive_key(name: str) -> str:
    if ":" in name:
        return name.rpartition(":")[2].split(".")[-1]
    return name


def parse_specs(specs: Sequence[Mapping[str, Any]]) -> list[RewardSpec]:
    """Validate recipe reward specs; raise ``ValueError`` naming ``rewards[i].<field>``.

    Each spec is ``{"name": str, "weight": float = 1.0, "params": dict = {}, "key": str}``.
    Loading happens here (in the caller's process) so that a wrong path, a missing function or
    a wrong signature fails before any worker starts.
    """
    if isinstance(specs, Mapping) or not isinstance(specs, Sequence):
        raise ValueError("rewards: expected a list of {name, weight, params, key} mappings")
    if len(specs) == 0:
        raise ValueError("rewards: at least one reward is required")
    out: list[RewardSpec] = []
    keys: dict[str, int] = {}
    allowed = {"name", "weight", "params", "key"}
    for i, raw in enumerate(specs):
        where = f"rewards[{i}]"
        if hasattr(raw, "model_dump"):  # a pydantic model from the recipe schema
            raw = raw.model_dump()
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected a mapping with 'name', got {type(raw).__name__}")
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                f"{where}.name: expected a registry name, 'package.module:function' or "
                f"'path/to/file.py:function', got {name!r}"
            )
        name = name.strip()
        weight = raw.get("weight", 1.0)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(float(weight))
        ):
            raise ValueError(f"{where}.weight: expected a finite number, got {weight!r}")
        params = raw.get("params") or {}
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            raise ValueError(f"{where}.params: expected a mapping of str -> value, got {params!r}")
        params = dict(params)
        try:
            json.dumps(params)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}.params: values must be plain data (JSON-like): {e}") from e
        try:
            target, fn = _resolve(name)
        except Exception as e:  # import errors of user code surface here, named by key
            raise ValueError(
                f"{where}.name: cannot load reward {name!r}: {type(e).__name__}: {e}"
            ) from e
        info = reward_info(fn)
        runtime = _check_signature(where, name, fn, info, params)
        validate = getattr(fn, "__rlvr_validate__", None)
        if callable(validate):
            try:
                validate(**params)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}.params: reward {name!r}: {e}") from e
        key = raw.get("key") or _derive_key(name)
        if not isinstance(key, str) or not key or "/" in key or key == "total":
            raise ValueError(
                f"{where}.key: expected a non-empty string without '/' (and not 'total', the "
                f"name of the weighted sum), got {key!r}"
            )
        if key in keys:
            raise ValueError(
                f"{where}.key: component name {key!r} is also used by rewards[{keys[key]}]; "
                "set a distinct 'key' for one of them"
            )
        keys[key] = i
        out.append(
            RewardSpec(
                index=i,
                name=name,
                key=key,
                weight=float(weight),
                params=params,
                target=target,
                info=info,
                runtime_kwargs=runtime,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# calling and normalising
# ---------------------------------------------------------------------------------------------


def example_key(example: Mapping[str, Any]) -> str:
    """Stable key of a prompt for stateful rewards: ``example["id"]`` or a hash of the prompt."""
    if "id" in example and example["id"] is not None:
        return str(example["id"])
    prompt = example.get("prompt")
    blob = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)
    return "sha1:" + hashlib.sha1(blob.encode("utf-8", "surrogatepass")).hexdigest()


def _as_float(x: Any, what: str) -> float:
    if isinstance(x, bool):
        return float(x)
    if not isinstance(x, int | float):
        # numpy / torch scalars
        item = getattr(x, "item", None)
        if item is None:
            raise TypeError(f"{what}: expected a number, got {type(x).__name__}")
        x = item()
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{what}: non-finite value {v}")
    return v


def normalize_sample_result(out: Any) -> tuple[float, dict[str, float] | None]:
    """float -> (value, None); dict -> (sum of entries, entries). Raises on anything else."""
    if isinstance(out, Mapping):
        if not out:
            raise ValueError("reward returned an empty dict")
        subs = {str(k): _as_float(v, f"entry {k!r}") for k, v in out.items()}
        return float(sum(subs.values())), subs
    return _as_float(out, "reward"), None


def normalize_group_result(out: Any, n: int) -> list[tuple[float, dict[str, float] | None]]:
    """A group reward's list of n floats or dicts -> list of normalised values."""
    if isinstance(out, str | bytes | Mapping) or not hasattr(out, "__len__"):
        raise TypeError(f"group reward must return a list of {n} values, got {type(out).__name__}")
    if len(out) != n:
        raise ValueError(f"group reward returned {len(out)} values for {n} completions")
    return [normalize_sample_result(v) for v in out]


def call_reward(
    fn: Callable,
    spec: RewardSpec,
    payload: Mapping[str, Any],
) -> Any:
    """Call ``fn`` for one sample or one group and return normalised output.

    ``payload`` holds ``completion``/``completions``, ``example`` and the runtime values
    (``num_tokens``, ``finish_reason(s)``, ``components``, ``state``). Per-sample: returns
    ``(value, subs)``. Group: returns ``list[(value, subs)]``; stateful group: returns
    ``(list[(value, subs)], new_state)``.
    """
    kwargs = {k: payload[k] for k in spec.runtime_kwargs if k in payload}
    kwargs.update(spec.params)
    if spec.is_group:
        completions = payload["completions"]
        out = fn(list(completions), payload["example"], **kwargs)
        if spec.info.stateful:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("stateful reward must return (scores, new_state)")
            scores, new_state = out
            json.dumps(new_state)  # must be checkpointable
            return normalize_group_result(scores, len(completions)), new_state
        return normalize_group_result(out, len(completions))
    return normalize_sample_result(fn(payload["completion"], payload["example"], **kwargs))


def weighted_total(
    components: Mapping[str, Sequence[Sequence[float]]], weights: Mapping[str, float]
) -> list[list[float]]:
    """total[b][g] = sum_k weights[k] * components[k][b][g] over the keys of ``weights``."""
    keys = list(weights)
    if not keys:
        return []
    first = components[keys[0]]
    total = [[0.0] * len(row) for row in first]
    for k in keys:
        w = weights[k]
        for b, row in enumerate(components[k]):
            for g, v in enumerate(row):
                total[b][g] += w * v
    return total
