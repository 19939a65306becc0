"""Values and tables as plain JSON: the one conversion every response and audit record uses.

NaN, infinities, ``pd.NA`` and ``NaT`` become ``null``; numpy scalars become Python numbers;
dates and times become ISO 8601 strings; categories become their labels; mappings, lists, tuples,
sets and arrays are converted item by item.

Examples
--------
>>> import numpy as np, pandas as pd
>>> jsonable({"n": np.int64(3), "mean": float("nan"), "when": pd.Timestamp("2026-01-05")})
{'n': 3, 'mean': None, 'when': '2026-01-05T00:00:00'}
>>> records(pd.DataFrame({"arm": pd.Categorical(["a"]), "slope": [np.float32(0.5)], "quotes": [["x"]]}))
[{'arm': 'a', 'slope': 0.5, 'quotes': ['x']}]
"""

from __future__ import annotations

import math
import sys
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def jsonable(value: Any) -> Any:
    """``value`` with every part converted to a JSON type (see the module docstring)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return None
    # Read from sys.modules: no pandas value exists before pandas is imported, and an audit record
    # (every change goes through here) must not import it.
    pandas = sys.modules.get("pandas")
    if pandas is not None and (value is pandas.NA or value is pandas.NaT):
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    """A DataFrame as a list of JSON-safe row dicts (an empty list for None or no rows)."""
    if df is None or df.empty:
        return []
    return [jsonable(row) for row in df.astype(object).to_dict(orient="records")]
