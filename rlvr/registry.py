"""Name -> object registries for pluggable parts (advantage estimators, batch filters,
token-weight rules, stage kinds), and the check that binds a recipe's names and parameters at
load.

A new module is one file in the registry's package that decorates its class with
``@register_advantage("name")`` (``@register_filter``, ``@register_token_weight``,
``@register_stage``): a lookup
that misses imports every module of the package (``pkgutil.iter_modules``) and looks again, so
no ``__init__`` import list or ``Literal`` has to change. Outside the package a recipe names the
class directly, as rewards allow: ``pkg.module:Class`` or ``path/to/file.py:Class``.

``bind(name, params)`` resolves the name and constructs the class with the recipe's parameters
(constructors only check and store values; nothing heavy loads), so a misspelt name or
parameter fails when the recipe loads, with a close match.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class BindError(ValueError):
    """A recipe names a method or a parameter that does not resolve; ``field`` is the part of
    the section at fault (``"advantage"``, ``"advantage_params"``, ``"name"``, ``"params"``)."""

    def __init__(self, field: str, message: str, error: Exception | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.error = error  # the constructor's own TypeError / ValueError, if it raised

    def reraise(self, where: str) -> None:
        """Raise as the plain error a direct caller expects (KeyError for a name, else the
        constructor's exception type, TypeError for an unknown parameter)."""
        text = f"{where}.{self.field}: {self.message}"
        if self.field in ("advantage", "name"):
            raise KeyError(self.message) from None
        if isinstance(self.error, ValueError):
            raise ValueError(text) from None
        raise TypeError(text) from None


def _close(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry:
    def __init__(self, kind: str, package: str | None = None, *, suffix: str = "") -> None:
        self.kind = kind
        self.package = package  # modules discovered here on a missed lookup
        self.suffix = suffix  # only modules whose name ends so (keeps discovery light)
        self._items: dict[str, Any] = {}
        self._discovered = False

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Register the decorated object as ``name``; a different object already under that
        name is refused (``ValueError``) unless ``replace``."""

        def deco(obj: T) -> T:
            if not replace and name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def registered(self, name: str) -> Any | None:
        """The object registered as ``name`` so far, or None: no discovery, no targets."""
        return self._items.get(name)

    def unregister(self, name: str) -> None:
        """Forget ``name`` (no error if it is not registered)."""
        self._items.pop(name, None)

    def discover(self) -> None:
        """Import every module of ``package`` (ending in ``suffix``) once; each registers its
        own names."""
        if self._discovered or self.package is None:
            return
        self._discovered = True  # set first: a module may look a name up while it imports
        try:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__, self.package + "."):
                if not info.ispkg and info.name.endswith(self.suffix):
                    importlib.import_module(info.name)
        except BaseException:  # the real import error, and the next lookup tries again
            self._discovered = False
            raise

    def get(self, name: str) -> Any:
        """The class registered as ``name``, or named by ``pkg.mod:Class`` / ``file.py:Class``."""
        if ":" in name:
            from rewards.base import load_target  # the same loader rewards use

            try:
                return load_target(name)
            except Exception as e:
                raise KeyError(f"cannot load {self.kind} {name!r}: {type(e).__name__}: {e}") from e
        if name not in self._items:
            self.discover()
        if name not in self._items:
            raise KeyError(
                f"unknown {self.kind} {name!r}{_close(name, list(self._items))}; "
                f"known: {self.names()}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def bind(self, name: str, params: dict[str, Any], *, name_field: str, params_field: str) -> Any:
        """Resolve ``name`` and construct it with ``params``; ``BindError`` on failure."""
        try:
            cls = self.get(name)
        except KeyError as e:
            raise BindError(name_field, str(e.args[0])) from None
        try:
            sig = inspect.signature(cls)
        except (TypeError, ValueError):
            sig = None
        if sig is not None and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
        ):
            accepted = [
                n
                for n, p in sig.parameters.items()
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            for key in params:
                if key not in accepted:
                    raise BindError(
                        f"{params_field}.{key}",
                        f"{self.kind} {name!r} has no parameter {key!r}"
                        f"{_close(key, accepted)}; parameters: {accepted}",
                    )
        try:
            return cls(**params)
        except (TypeError, ValueError) as e:
            raise BindError(params_field, f"{self.kind} {name!r}: {e}", e) from None
