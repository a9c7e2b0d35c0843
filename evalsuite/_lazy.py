"""Lazy package faces: a package lists ``{name: module}`` and imports a module on first use of a name.

Keeps ``import evalsuite`` (and its sub-packages) free of torch, models and servers until they are used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(namespace: dict[str, Any], exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the package whose ``globals()`` is ``namespace``.

    Each name of ``exports`` is imported from its module on first use and then kept in the namespace.
    """
    package = namespace["__name__"]

    def module_getattr(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip this hook
        return value

    return module_getattr
