"""``peerlens serve``: uvloop and httptools (uvicorn[standard]) and ``--workers`` processes.

The server runs as a subprocess, as an operator starts it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_pg_database, drop_pg_database, pg_url

ROOT = Path(__file__).resolve().parents[2]
PEERLENS = [sys.executable, "-m", "api.cli"]


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLENS_") and k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), PEERLENS_SECRET_KEY="s" * 40, **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers(pid: int) -> list[int]:
    """Child processes started by multiprocessing's spawn (uvicorn's workers; not its resource tracker)."""
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            out.append(int(child))
    return out


def test_standard_server_parts_are_installed():
    assert importlib.util.find_spec("uvloop") is not None
    assert importlib.util.find_spec("httptools") is not None


def test_workers_on_sqlite_are_refused_with_the_reason(tmp_path):
    r = subprocess.run(
        [*PEERLENS, "serve", "--workers", "2", "--port", str(_free_port())],
        cwd=tmp_path,
        env=_env(DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "--workers > 1 needs PostgreSQL" in r.stderr
    assert not (tmp_path / "p.db").exists()  # refused before anything touched the database


def test_workers_below_one_are_refused(tmp_path):
    r = subprocess.run(
        [*PEERLENS, "serve", "--workers", "0"],
        cwd=tmp_path,
        env=_env(DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "--workers" in r.stderr


@pytest.mark.slow
def test_serve_with_two_workers_on_postgresql(tmp_path):
    """Two worker processes on uvloop/httptools answer the API on one port."""
    name = create_pg_database()  # skips (or fails under PEERLENS_REQUIRE_POSTGRES=1) without PostgreSQL
    url = pg_url(name)
    env = _env(DATABASE_URL=url)
    proc = None
    try:
        migrated = subprocess.run(
            [*PEERLENS, "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert migrated.returncode == 0, migrated.stderr
        port = _free_port()
        proc = subprocess.Popen(
            [*PEERLENS, "serve", "--port", str(port), "--workers", "2"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2) as poll:  # one client for every probe (each new one loads the CA bundle)
            while True:
                try:
                    if poll.get(f"{base}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
        for _ in range(20):
            assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        assert httpx.get(f"{base}/me", timeout=5).status_code == 401  # the API, not only a health probe
        # uvicorn's supervisor (the serve process) with its two workers beneath it
        while len(_workers(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_workers(proc.pid)) == 2
    finally:
        out = ""
        if proc is not None:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        drop_pg_database(name)
    assert "with 2 workers (uvloop, httptools)" in out
