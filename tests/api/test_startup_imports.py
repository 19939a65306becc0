"""The server starts without pandas and Arrow (about 100 MB a process) and imports them on first use."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from fastapi.testclient import TestClient
from api.main import create_app
app = create_app()
before = {m: m in sys.modules for m in ("pandas", "pyarrow")}
with TestClient(app) as client:
    health = client.get("/health").status_code
after_requests = {m: m in sys.modules for m in ("pandas", "pyarrow")}
from api.jsonable import jsonable
audit_value = jsonable({"n": 1, "when": None})
import pandas as pd
print(json.dumps({"before": before, "after_requests": after_requests, "health": health,
                  "audit": audit_value, "na": jsonable([pd.NA, pd.NaT, 1.5])}))
"""


def test_app_starts_without_pandas_and_pyarrow(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLENS_") and k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), PEERLENS_SECRET_KEY="s" * 40, DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}")
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["before"] == {"pandas": False, "pyarrow": False}
    assert got["after_requests"] == {"pandas": False, "pyarrow": False}
    assert got["health"] == 200
    assert got["audit"] == {"n": 1, "when": None}
    assert got["na"] == [None, None, 1.5]  # pandas' missing values still become null once it is loaded


def test_lazy_module_imports_once_from_many_threads():
    import api.lazyimport as lazy

    assert doctest.testmod(lazy).failed == 0
    m = lazy.LazyModule("decimal")
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(m.Decimal("1.5"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    import decimal

    assert seen == [decimal.Decimal("1.5")] * 8
    assert "(imported)" in repr(m)
