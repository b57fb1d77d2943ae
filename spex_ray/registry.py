"""A tiny registry mapping names to lazily imported factories.

Backends (engines, rewards, search algorithms) register under a short name; the config
validates names against the registry, and the factory's module is imported only when the
backend is first built, so optional heavy dependencies (sglang, torch) stay optional.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class Registry:
    """Names to factories; a factory is a callable or a "module:attr" path imported on use."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any] | str] = {}

    def register(self, name: str, target: Callable[..., Any] | str | None = None):
        """Register `target` under `name`; without a target, works as a decorator."""
        if target is not None:
            self._entries[name] = target
            return target

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._entries[name] = fn
            return fn

        return decorator

    def unregister(self, name: str) -> None:
        """Forget `name` (a no-op when unknown); for tests that register a temporary entry."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., Any]:
        """The factory registered as `name`; a clear error lists the known names."""
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
        target = self._entries[name]
        if isinstance(target, str):
            target = load_target(target)
            self._entries[name] = target
        return target

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the factory of `name` (positional-only, so factories may take a `name=` keyword)."""
        return self.get(name)(*args, **kwargs)


def load_target(path: str) -> Any:
    """The object a "module:attr" path names, importing its module."""
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def lazy_attributes(package: str, modules: dict[str, str]) -> Callable[[str], Any]:
    """A package's module-level `__getattr__` that imports `modules[name]` on first access
    (so a package face can re-export names without importing heavy modules up front)."""

    def getattr_(name: str) -> Any:
        if name in modules:
            return getattr(importlib.import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return getattr_
