"""pandas imported on first use: ``analysis.frame``'s column constants are read by the service at
start-up, which need not load pandas for them. Same pattern as the service's ``api.lazyimport``
(the library does not import the service)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name`` and imports it when an attribute is first read (thread-safe:
    :func:`importlib.import_module` holds the module's import lock)."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)


pandas = LazyModule("pandas")
