"""Ingest benchmark: scored PAM-13 submissions against a bare one-INSERT route, same run.

Starts the service (uvicorn subprocess, uvloop and httptools as ``peerlens serve`` runs it) on a
scratch PostgreSQL database, drives it with 16 concurrent connections submitting PAM-13 responses
(13 items plus the external activation score, each with an Idempotency-Key, every request a new
participant × wave slot) for ``--seconds``, then does the same against a bare FastAPI route that
performs one INSERT on the same database, and prints responses/s, p50, p99 and the ratio, the
server's and the database's CPU per request, and whether the audit trail the run wrote verifies
(sealed, every MAC and the chain checked as ``peerlens audit verify`` does).

The load comes from ``wrk`` (Debian package, installed by ``make bench``): a native client that
leaves the server its core. ``--driver httpx`` uses 16 Python threads instead (they share the
cores with the server and flatter the ratio; kept for machines without wrk). The load average is
printed with the figures: other work on the machine moves them.

Usage::

    python bench/ingest.py [--seconds 30] [--clients 16] [--driver wrk|httpx]
                           [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL process of this machine so far (the server runs here; Linux)."""
    import pwd

    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return float("nan")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    total += cpu_seconds(int(entry.name))
            except (OSError, ValueError):
                continue  # the process ended meanwhile
    return total


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


WRK_SCRIPT = r"""
local pids = {%(pids)s}
local token = "%(token)s"
local waves = %(waves)d
local nthreads = %(threads)d
local offset = 0
local counter = 0
local made = 0

function setup(thread)
  thread:set("tid", made)
  made = made + 1
end

function init(args)
  offset = tonumber(args[1] or "0")
end

function request()
  if "%(kind)s" == "bare" then
    local items = {}
    for i = 1, 13 do items[#items + 1] = string.format('"pam13_%%d":3', i) end
    return wrk.format("POST", "/bare", {["Content-Type"] = "application/json"},
      '{"wave":"w0","instrument":"pam13","answers":{' .. table.concat(items, ",") .. '}}')
  end
  local slot = offset + counter * nthreads + tid
  counter = counter + 1
  local n = #pids
  local pid = pids[(slot %% n) + 1]
  local wave = math.floor(slot / n) %% waves
  local v = 1 + slot %% 4
  local items = {}
  for i = 1, 13 do items[#items + 1] = string.format('"pam13_%%d":%%d', i, 1 + (v + i) %% 4) end
  local body = string.format(
    '{"wave":"w%%d","instrument":"pam13","answers":{%%s},"external_scores":{"pam13_activation":%%.1f},'
    .. '"completed_at":"2026-01-06T10:00:00Z"}',
    wave, table.concat(items, ","), 40.0 + (v * 7 + pid) %% 50)
  return wrk.format("POST", "/participants/" .. pid .. "/responses",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token,
     ["Idempotency-Key"] = "bench-" .. pid .. "-" .. wave}, body)
end

function response(status, headers, body)
  if status ~= 201 and status ~= 200 then
    wrk.thread:stop()
  end
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def drive_wrk(url: str, kind: str, clients: int, seconds: float, *, token: str = "", pids=(), offset: int = 0) -> dict:
    """``wrk`` with ``clients`` connections on 2 threads for ``seconds``; every request is a new slot."""
    threads = min(2, clients)
    script = WRK_SCRIPT % {
        "pids": ",".join(str(p) for p in pids) or "1",
        "token": token,
        "waves": WAVES,
        "threads": threads,
        "kind": kind,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(clients),
                "-d",
                f"{seconds:.0f}s",
                "--latency",
                "-s",
                f.name,
                url,
                "--",
                str(offset),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    n = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {
        "n": n,
        "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),
        "p50": _ms(pct.get("50", "nan")),
        "p99": _ms(pct.get("99", "nan")),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def verify_audit(url: str) -> bool:
    """Seal the audit rows the run wrote and verify every MAC and the chain (``peerlens audit verify``)."""
    from sqlmodel import Session

    from api.audit import chain
    from api.config import Settings
    from api.db import engine_from_settings

    engine = engine_from_settings(Settings(DATABASE_URL=url, PEERLENS_SECRET_KEY="bench"))
    try:
        chain.seal(engine)
        with Session(engine) as s:
            report = chain.verify(s)
    finally:
        engine.dispose()
    print(
        f"  audit trail: {report.lines()[0]}; {'intact' if report.ok else 'FAILED: ' + '; '.join(report.lines()[1:])}"
    )
    return report.ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per target (default 30)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--participants", type=int, default=1000, help="participants (x40 response slots)")
    ap.add_argument("--driver", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx")
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
    # One audit key for the set-up, the server and the verification at the end.
    os.environ["PEERLENS_SECRET_KEY"] = "bench"
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

        load = os.getloadavg()
        print(
            f"ingest bench: {args.clients} clients ({args.driver}), {args.seconds:.0f} s per target, "
            f"PostgreSQL scratch db {name}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        if args.driver == "wrk":
            service = f"http://127.0.0.1:{service_port}"
            half = len(participant_ids) * WAVES // 2  # warm-up slots first, measured ones after: no replays
            drive_wrk(f"http://127.0.0.1:{bare_port}", "bare", args.clients, 2)
            cpu, db = cpu_seconds(procs[1].pid), database_cpu_seconds()
            bare = drive_wrk(f"http://127.0.0.1:{bare_port}", "bare", args.clients, args.seconds)
            bare["cpu"], bare["db"] = cpu_seconds(procs[1].pid) - cpu, database_cpu_seconds() - db
            drive_wrk(service, "pam", args.clients, 2, token=token, pids=participant_ids)
            cpu, db = cpu_seconds(procs[0].pid), database_cpu_seconds()
            real = drive_wrk(service, "pam", args.clients, args.seconds, token=token, pids=participant_ids, offset=half)
            real["cpu"], real["db"] = cpu_seconds(procs[0].pid) - cpu, database_cpu_seconds() - db
        else:
            bare = drive(f"http://127.0.0.1:{bare_port}", bare_request, args.clients, args.seconds)
            real = drive(f"http://127.0.0.1:{service_port}", pam_request, args.clients, args.seconds)
        for label, r in (("bare INSERT route", bare), ("PAM-13 submission", real)):
            sock = f", socket errors {r['socket_errors']}" if r.get("socket_errors") else ""
            # CPU of the server process per request: what the ratio is made of, and less moved by
            # other work on the machine than the rates are.
            cpu = f", server CPU {1000 * r['cpu'] / r['n']:.2f} ms/request" if r.get("cpu") and r["n"] else ""
            # PostgreSQL shares the 2 cores too: its CPU per request limits the rate as well.
            cpu += f", database CPU {1000 * r['db'] / r['n']:.2f} ms/request" if r.get("db") and r["n"] else ""
            print(
                f"  {label:<20} {r['rps']:8.1f} responses/s   p50 {r['p50']:6.1f} ms   p99 {r['p99']:6.1f} ms"
                f"   ({r['n']} requests, {r['errors']} errors{sock}{cpu})"
            )
        ratio = real["rps"] / bare["rps"] if bare["rps"] else float("nan")
        load = os.getloadavg()
        print(
            f"  ratio (submission / bare) {ratio:.2f}x   target >= 0.60x, p99 < 100 ms   "
            f"(load average after: {load[0]:.2f})"
        )
        intact = verify_audit(url)
        return 0 if real["errors"] == 0 and intact else 1
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
