"""Modules imported on first use, so the server starts without pandas and Arrow.

pandas and pyarrow hold about 100 MB once imported; a server process that never exports or
analyses (and every ``--workers`` process until it does) need not carry them. Modules that use
them write::

    if TYPE_CHECKING:
        import pandas as pd
    else:
        from api.lazyimport import pandas as pd

The first attribute read (``pd.DataFrame``) imports the module through :func:`importlib.import_module`,
whose module locks make a first use from two threads at once safe.

>>> from api.lazyimport import LazyModule
>>> LazyModule("json").dumps([1])
'[1]'
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name`` and imports it when an attribute is first read."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (imported)'}>"


pandas = LazyModule("pandas")
pyarrow = LazyModule("pyarrow")
