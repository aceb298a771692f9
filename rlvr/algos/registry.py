"""Name -> class registries for pluggable modules (advantage estimators, batch filters).

A new module is one file that decorates its class with ``@register_advantage("name")`` (or
``@register_filter("name")``); the recipe names it (``algo.advantage: name``,
``algo.filters: [{name: ...}]``) and the trainer never changes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint}; known: {sorted(self._items)}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)


ADVANTAGES = Registry("advantage estimator")
register_advantage = ADVANTAGES.register

FILTERS = Registry("batch filter")
register_filter = FILTERS.register
