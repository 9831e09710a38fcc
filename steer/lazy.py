"""Lazy public names for a package: ``__getattr__`` that imports each name's module on first access (used by
``steer`` and ``steer.eval``, so that importing them and every ``--help`` load no torch)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, providers: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__``: a name of ``providers`` is imported from its module and cached in ``namespace``;
    any other name of a submodule is that submodule (as when the package imported everything eagerly)."""

    def getattr_(name: str) -> Any:
        provider = providers.get(name)
        if provider is None:
            if name.isidentifier() and not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}"):
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(provider), name)
        namespace[name] = value
        return value

    return getattr_
