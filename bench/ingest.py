"""Ingest benchmark: scored PAM-13 submissions against a bare one-INSERT route, same run.

Starts the service (uvicorn subprocess) on a scratch PostgreSQL database, drives it with 16
concurrent clients submitting PAM-13 responses (13 items plus the external activation score, each
with an Idempotency-Key) for ``--seconds``, then does the same against a bare FastAPI route that
performs one INSERT on the same database, and prints responses/s, p50, p99 and the ratio.

Usage::

    python bench/ingest.py [--seconds 30] [--clients 16] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WAVES = 40  # response slots per participant (one PAM-13 per wave)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_app():
    """The baseline: a FastAPI route doing one INSERT (same engine settings as the service)."""
    from fastapi import FastAPI, Request
    from sqlalchemy import text

    from api.db import make_engine

    engine = make_engine(os.environ["DATABASE_URL"])
    app = FastAPI()

    @app.post("/bare", status_code=201)
    def bare(payload: dict):
        with engine.begin() as conn:
            new_id = conn.execute(
                text("INSERT INTO bench_bare (payload) VALUES (:p) RETURNING id"), {"p": str(payload)[:2000]}
            ).scalar_one()
        return {"id": new_id}

    del Request
    return app


def start_server(target: str, port: int, env: dict) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError(f"{target} exited with {proc.returncode}") from None
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"{target} did not start")


def setup_database(url: str, participants: int) -> tuple[str, list[int]]:
    """Migrate, create a study with WAVES waves of PAM-13, participants and an admin token."""
    from sqlalchemy import text
    from sqlmodel import Session

    from api.auth.service import Actor, create_user, issue_token
    from api.db import make_engine
    from api.migrate import upgrade
    from api.participants.service import enrol
    from api.studies import service as studies
    from api.studies.schemas import ArmCreate, SiteCreate, StudyCreate, WaveCreate

    upgrade(url)
    engine = make_engine(url)
    actor = Actor.system()
    with Session(engine) as s:
        s.exec(text("CREATE TABLE bench_bare (id serial PRIMARY KEY, payload text NOT NULL)"))
        study = studies.create_study(s, StudyCreate(title="bench", design="rct", time_zone="Europe/London"), actor)
        studies.create_site(s, study, SiteCreate(code="north", name="North"), actor)
        studies.create_arm(s, study, ArmCreate(code="group", name="Group", kind="intervention"), actor)
        for w in range(WAVES):
            studies.create_wave(
                s,
                study,
                WaveCreate(
                    code=f"w{w}",
                    offset_days=w * 7,
                    window_before_days=3650,
                    window_after_days=3650,
                    instruments=["pam13"],
                ),
                actor,
            )
        ids = [
            enrol(
                s,
                study=study,
                site_code="north",
                enrolled_on=date(2026, 1, 5),
                consent_date=date(2026, 1, 5),
                consent_version="v1",
                arm_code="group",
                actor=actor,
            ).id
            for _ in range(participants)
        ]
        token = issue_token(s, create_user(s, "bench@peerlens.org", "admin"))
        s.commit()
    engine.dispose()
    return token, ids


def drive(url: str, make_request, clients: int, seconds: float, warmup: float = 2.0) -> dict:
    """Run ``clients`` threads for ``warmup + seconds``; statistics over the measured part."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.monotonic()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    def worker():
        local, bad = [], 0
        with httpx.Client(base_url=url, timeout=30) as c:
            while True:
                t0 = time.monotonic()
                if t0 >= stop_at:
                    break
                method, path, kwargs = make_request()
                r = c.request(method, path, **kwargs)
                t1 = time.monotonic()
                if r.status_code != 201:
                    bad += 1
                    if bad <= 3:
                        print(f"  unexpected {r.status_code}: {r.text[:200]}", file=sys.stderr)
                if t0 >= measure_from:
                    local.append(t1 - t0)
        with lock:
            latencies.extend(local)
            errors[0] += bad

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    n = len(latencies)
    return {
        "n": n,
        "rps": n / seconds,
        "p50": statistics.median(latencies) * 1000 if n else float("nan"),
        "p99": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        "errors": errors[0],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per target (default 30)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--participants", type=int, default=600, help="participants (x40 response slots)")
    ap.add_argument(
        "--pg",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="URL of an existing PostgreSQL database used to create the scratch one",
    )
    args = ap.parse_args(argv)

    import psycopg
    from sqlalchemy.engine import make_url

    admin_url = make_url(args.pg)
    name = f"peerlens_bench_{secrets.token_hex(4)}"
    conninfo = (
        f"host={admin_url.host or '127.0.0.1'} port={admin_url.port or 5432} "
        f"user={admin_url.username or 'postgres'} dbname={admin_url.database or 'postgres'}"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    procs = []
    try:
        token, participant_ids = setup_database(url, args.participants)
        env = {**os.environ, "DATABASE_URL": url, "PEERLENS_SECRET_KEY": "bench", "PYTHONPATH": str(ROOT)}
        service_port, bare_port = free_port(), free_port()
        procs.append(start_server("api.main:create_app", service_port, env))
        procs.append(start_server("bench.ingest:bare_app", bare_port, env))

        slots = itertools.product(range(WAVES), participant_ids)
        slot_lock = threading.Lock()
        auth = {"Authorization": f"Bearer {token}"}
        answers_cycle = itertools.cycle(range(1, 5))

        def pam_request():
            with slot_lock:
                wave, pid = next(slots)
                v = next(answers_cycle)
            body = {
                "wave": f"w{wave}",
                "instrument": "pam13",
                "answers": {f"pam13_{i}": 1 + (v + i) % 4 for i in range(1, 14)},
                "external_scores": {"pam13_activation": 40.0 + (v * 7 + pid) % 50},
                "completed_at": "2026-01-06T10:00:00Z",
            }
            return (
                "POST",
                f"/participants/{pid}/responses",
                {"json": body, "headers": {**auth, "Idempotency-Key": f"bench-{pid}-{wave}"}},
            )

        def bare_request():
            return (
                "POST",
                "/bare",
                {"json": {"wave": "w0", "instrument": "pam13", "answers": {f"pam13_{i}": 3 for i in range(1, 14)}}},
            )

        print(f"ingest bench: {args.clients} clients, {args.seconds:.0f} s per target, PostgreSQL scratch db {name}")
        bare = drive(f"http://127.0.0.1:{bare_port}", bare_request, args.clients, args.seconds)
        real = drive(f"http://127.0.0.1:{service_port}", pam_request, args.clients, args.seconds)
        for label, r in (("bare INSERT route", bare), ("PAM-13 submission", real)):
            print(
                f"  {label:<20} {r['rps']:8.1f} responses/s   p50 {r['p50']:6.1f} ms   p99 {r['p99']:6.1f} ms"
                f"   ({r['n']} requests, {r['errors']} errors)"
            )
        ratio = real["rps"] / bare["rps"] if bare["rps"] else float("nan")
        print(f"  ratio (submission / bare) {ratio:.2f}x   target >= 0.50x, p99 < 100 ms")
        return 0 if real["errors"] == 0 else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    raise SystemExit(main())
