"""Set-up snags a new coordinator hits on the command line and with ``make run``.

The commands run as subprocesses, as a person runs them: from another directory, without the
environment the repository's Makefile sets, against a missing or empty database, in production
mode without a key, and ``peerlens serve`` on a non-default port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PEERLENS = [sys.executable, "-m", "api.cli"]


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERLENS_") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run(args, cwd, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PEERLENS, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=120, check=False
    )


def test_db_sidecar_files_are_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "check-ignore", "peerlens.db", "peerlens.db-wal", "peerlens.db-shm", "x/other.db-wal"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.stdout.split() == ["peerlens.db", "peerlens.db-wal", "peerlens.db-shm", "x/other.db-wal"]


def test_default_database_is_the_checkouts_whatever_the_directory(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", "from api.config import default_database_url as d; print(d())"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"sqlite:///{ROOT / 'peerlens.db'}"


def test_cli_outside_the_repository_fails_in_one_line_and_creates_nothing(tmp_path):
    home = tmp_path / "home"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    r = _run(["users", "create", "ana@example.org", "--role", "admin"], cwd, PEERLENS_HOME=str(home))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no database file at ") and "peerlens migrate" in lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert not list(cwd.iterdir()) and not (home / "peerlens.db").exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_cli_on_an_empty_database_names_the_missing_schema(tmp_path, backend):
    from tests.conftest import create_pg_database, drop_pg_database, pg_url

    if backend == "sqlite":
        db = tmp_path / "empty.db"
        db.touch()
        url, name = f"sqlite:///{db}", None
    else:
        name = create_pg_database()
        url = pg_url(name)
    try:
        r = _run(["users", "token", "ana@example.org"], tmp_path, DATABASE_URL=url)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "has no Peerlens schema; run `peerlens migrate` first" in lines[0], r.stderr
        r = _run(["serve", "--port", "1"], tmp_path, DATABASE_URL=url)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        if name:
            drop_pg_database(name)


def test_production_refuses_to_start_without_an_explicit_secret(tmp_path):
    from pydantic import ValidationError

    from api.config import Settings

    secrets_file = tmp_path / "secrets"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PEERLENS_SECRETS_FILE", str(secrets_file))
        with pytest.raises(ValidationError, match="needs an explicit PEERLENS_SECRET_KEY"):
            Settings(PEERLENS_ENV="production")
        with pytest.raises(ValidationError, match="at least 32 characters"):
            Settings(PEERLENS_ENV="production", PEERLENS_SECRET_KEY="short")
        assert not secrets_file.exists()  # no key was generated on the way
        assert Settings(PEERLENS_ENV="production", PEERLENS_SECRET_KEY="k" * 48).secret_key == "k" * 48
        assert Settings(PEERLENS_ENV="dev").secret_key  # development still generates one
    r = _run(["serve"], tmp_path, PEERLENS_ENV="production", PEERLENS_SECRETS_FILE=str(secrets_file))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: PEERLENS_ENV=production needs an explicit PEERLENS_SECRET_KEY (at least 32 characters); "
        "refusing to start with a generated one"
    ]


def test_make_run_port_reaches_links_and_emails(tmp_path):
    """``make run PORT=8101``: migrate, demo and serve all see PEERLENS_BASE_URL on port 8101."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls"
    stub = venv / "bin" / "peerlens"
    stub.write_text(f'#!/bin/sh\necho "$PEERLENS_BASE_URL $*" >> {log}\n')
    stub.chmod(0o755)
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (time.time() + 3600, time.time() + 3600))  # newer than pyproject.toml
    env = _env()
    r = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "run", "PORT=8101", f"VENV={venv}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert calls == [
        "http://127.0.0.1:8101 migrate",
        "http://127.0.0.1:8101 demo",
        "http://127.0.0.1:8101 serve --host 127.0.0.1 --port 8101",
    ]
    # an explicit PEERLENS_BASE_URL (a proxy's public name) wins
    log.unlink()
    env["PEERLENS_BASE_URL"] = "https://trial.example.org"
    subprocess.run(["make", "-s", "-C", str(ROOT), "run", "PORT=8101", f"VENV={venv}"], env=env, check=True)
    assert all(line.startswith("https://trial.example.org ") for line in log.read_text().splitlines())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_on_another_port_links_there_and_trusts_no_forwarded_header(tmp_path):
    """``peerlens serve --port P`` without PEERLENS_BASE_URL issues links on P; the failed-attempt
    limiter counts the socket's address, whatever X-Forwarded-For says."""
    from datetime import date, timedelta

    db = tmp_path / "p.db"
    env = {"DATABASE_URL": f"sqlite:///{db}", "PEERLENS_SECRET_KEY": "s" * 40, "PEERLENS_FAIL_LIMIT": "5"}
    assert _run(["migrate"], tmp_path, **env).returncode == 0
    made = _run(["users", "create", "admin@example.org", "--role", "admin"], tmp_path, **env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    proc = subprocess.Popen(
        [*PEERLENS, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        h = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 120  # a loaded machine can take a while to import the stack
        with httpx.Client() as poll:  # one client for every probe (each new one loads the CA bundle)
            while True:
                try:
                    if poll.get(f"{base}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
        with httpx.Client(base_url=base, headers=h) as c:
            sid = c.post("/studies", json={"title": "Port check", "design": "cohort"}).json()["id"]
            assert c.post(f"/studies/{sid}/sites", json={"code": "a", "name": "A"}).status_code == 201
            arm = {"code": "peer", "name": "Peer", "kind": "intervention"}
            assert c.post(f"/studies/{sid}/arms", json=arm).status_code == 201
            w = {"code": "baseline", "offset_days": 0, "window_after_days": 14, "instruments": ["phq9"]}
            assert c.post(f"/studies/{sid}/waves", json=w).status_code == 201
            day = str(date.today() - timedelta(days=1))
            p = c.post(
                f"/studies/{sid}/participants",
                json={"site": "a", "enrolled_on": day, "consent": {"date": day, "version": "v1"}},
            )
            assert p.status_code == 201, p.text
            p = p.json()
            link = c.post(f"/participants/{p['id']}/links", json={"wave": "baseline"})
            assert link.status_code == 201, link.text
            assert link.json()["url"].startswith(f"http://127.0.0.1:{port}/f/")
        # five bad tokens, each claiming another client address: still one client to the limiter
        for i in range(5):
            r = httpx.get(f"{base}/me", headers={"Authorization": "Bearer plk_bad", "X-Forwarded-For": f"10.0.0.{i}"})
            assert r.status_code == 401
        r = httpx.get(f"{base}/me", headers={"Authorization": "Bearer plk_bad", "X-Forwarded-For": "10.9.9.9"})
        assert r.status_code == 429
        assert httpx.get(f"{base}/me", headers=h).status_code == 200  # the valid token is never refused
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"links and emails: http://127.0.0.1:{port}" in out
