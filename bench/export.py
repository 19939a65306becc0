"""Cohort export throughput and memory against PostgreSQL's own COPY, measured in the same run.

For each cohort size (10,000 and 20,000 participants by default) the script

1. creates a fresh PostgreSQL database, migrates it and bulk-loads participants × 6 waves × 6
   instruments (answers and scores) with COPY — no HTTP, no ORM;
2. starts a real ``uvicorn`` server subprocess on it and downloads the ``long`` and ``wide`` CSV
   exports as an analyst with httpx streaming, timing each download;
3. times ``COPY (SELECT …) TO STDOUT`` producing the same rows (the baseline);
4. reads the server process's RSS after start-up (``VmRSS``, before any export) and its high-water
   mark (``VmHWM``) after the exports; the difference is the exports' own working memory.

It prints both times, the ratio export / COPY (aim ≤ 1.3×) and the peak RSS (aim < 250 MB, flat
when the cohort doubles), with the load average before each cohort: other work on the machine
moves the figures.

Run: ``.venv/bin/python bench/export.py`` (PostgreSQL on 127.0.0.1:5432, user postgres).
Options: ``--sizes 10000 20000``, ``--keep`` to leave the databases, ``--repeat 3`` alternated
export/COPY runs per shape (the figures are their medians; each run's ratio is printed too).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import instruments  # noqa: E402

PG = os.environ.get("PEERLENS_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres")
INSTRUMENTS = ["phq9", "gad7", "semcd6", "gse", "eheals", "phq4"]
WAVES = [("baseline", 0), ("m1", 30), ("m3", 90), ("m6", 180), ("m9", 270), ("m12", 365)]
SITES = ["north", "south", "east", "west"]
ARMS = [("group", "intervention"), ("online", "intervention"), ("usual_care", "control")]


def _url(db: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


def build(db: str, n: int, seed: int = 7) -> str:
    """Create ``db`` and load the cohort; returns an analyst token."""
    with psycopg.connect(PG + " dbname=postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{db}"')
    from api.migrate import upgrade

    upgrade(_url(db))
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    defs = [instruments.get(c) for c in INSTRUMENTS]
    with psycopg.connect(PG + f" dbname={db}") as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO study (id, title, design, blinding, time_zone, status, randomisation_seed, "
            "created_at, updated_at) VALUES (1, 'Bench', 'rct', 'none', 'Europe/London', 'follow_up', "
            "'bench', %s, %s)",
            (now, now),
        )
        for i, s in enumerate(SITES, 1):
            cur.execute(
                "INSERT INTO site (id, study_id, code, name, created_at) VALUES (%s, 1, %s, %s, %s)",
                (i, s, s.title(), now),
            )
        for i, (a, kind) in enumerate(ARMS, 1):
            cur.execute(
                "INSERT INTO arm (id, study_id, code, name, kind, allocation_ratio, created_at) "
                "VALUES (%s, 1, %s, %s, %s, 1, %s)",
                (i, a, a, kind, now),
            )
        for i, (w, off) in enumerate(WAVES, 1):
            cur.execute(
                "INSERT INTO wave (id, study_id, code, offset_days, window_before_days, window_after_days, "
                "instruments, created_at) VALUES (%s, 1, %s, %s, 7, 14, %s, %s)",
                (i, w, off, json.dumps(INSTRUMENTS), now),
            )
        start = date(2024, 1, 1)
        enrolled = [start + timedelta(days=int(d)) for d in rng.integers(0, 300, n)]
        with cur.copy(
            "COPY participant (id, study_id, site_id, arm_id, study_code, enrolled_on, consent_date, "
            "consent_version, randomised, status, created_at, updated_at) FROM STDIN"
        ) as cp:
            for pid in range(1, n + 1):
                cp.write_row(
                    (
                        pid,
                        1,
                        1 + pid % len(SITES),
                        1 + pid % len(ARMS),
                        f"P-{pid:06d}",
                        enrolled[pid - 1],
                        enrolled[pid - 1],
                        "v1",
                        True,
                        "active",
                        now,
                        now,
                    )
                )
        rid = 0
        with cur.copy(
            "COPY response (id, study_id, site_id, participant_id, wave_id, instrument, "
            "instrument_version, answers, status, mode, completed_at, out_of_window, version, created_at, "
            "updated_at) FROM STDIN"
        ) as cp:
            for pid in range(1, n + 1):
                base = datetime.combine(enrolled[pid - 1], datetime.min.time(), tzinfo=UTC)
                for wi, (_, off) in enumerate(WAVES, 1):
                    at = base + timedelta(days=off, hours=int(rng.integers(8, 20)))
                    for inst in defs:
                        rid += 1
                        answers = {
                            it.code: int(it.options[int(rng.integers(0, len(it.options)))].code)
                            for it in inst.items
                            if it.options
                        }
                        cp.write_row(
                            (
                                rid,
                                1,
                                1 + pid % len(SITES),
                                pid,
                                wi,
                                inst.code,
                                str(inst.version),
                                json.dumps(answers),
                                "complete",
                                "import",
                                at,
                                False,
                                1,
                                now,
                                now,
                            )
                        )
        n_resp = rid
        sid = 0
        with cur.copy(
            "COPY score (id, response_id, scale, value, band, level, items_answered, items_expected, "
            "prorated, flags) FROM STDIN"
        ) as cp:
            rid = 0
            for _pid in range(1, n + 1):
                for _w in WAVES:
                    for inst in defs:
                        rid += 1
                        for sc in inst.scales:
                            sid += 1
                            lo, hi = sc.range
                            v = float(rng.integers(int(lo), int(hi) + 1))
                            band = next((b.label for b in sc.bands if b.contains(v)), None)
                            cp.write_row((sid, rid, sc.code, v, band, None, len(sc.items), len(sc.items), False, "[]"))
        for table, last in (
            ("participant", n),
            ("response", n_resp),
            ("score", sid),
            ("study", 1),
            ("site", len(SITES)),
            ("arm", len(ARMS)),
            ("wave", len(WAVES)),
        ):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", (last,))
        conn.commit()
    cur_engine_url = _url(db)
    from sqlmodel import Session

    from api.auth.service import create_user, issue_token
    from api.db import make_engine

    eng = make_engine(cur_engine_url, pool_size=1, max_overflow=0)
    with Session(eng) as s:
        user = create_user(s, "analyst@bench.peerlens.org", "analyst")
        token = issue_token(s, user)
        s.commit()
    eng.dispose()
    with psycopg.connect(PG + f" dbname={db}", autocommit=True) as c:
        c.execute("ANALYZE")
    return token


def _scales() -> list[str]:
    return [sc.code for c in INSTRUMENTS for sc in instruments.get(c).scales]


LONG_SQL = """
SELECT p.study_code AS participant, si.code AS site, a.code AS arm, a.kind AS arm_kind, w.code AS wave,
       w.offset_days AS wave_offset,
       ((r.completed_at AT TIME ZONE 'Europe/London')::date - p.enrolled_on)::float AS days,
       NULL::timestamptz AS completed_at, r.out_of_window, r.instrument, s.scale, s.value, s.band,
       s.level::float, s.items_answered::float, s.prorated, p.status, NULL::float AS status_days
FROM score s JOIN response r ON r.id = s.response_id JOIN participant p ON p.id = r.participant_id
JOIN site si ON si.id = p.site_id LEFT JOIN arm a ON a.id = p.arm_id JOIN wave w ON w.id = r.wave_id
WHERE r.study_id = 1 ORDER BY p.id, w.offset_days, w.code, r.instrument, s.id
"""


def wide_sql() -> str:
    cols = ",\n".join(f"max(s.value) FILTER (WHERE s.scale = '{sc}') AS \"{sc}\"" for sc in _scales())
    return f"""
SELECT p.study_code AS participant, si.code AS site, a.code AS arm, a.kind AS arm_kind, w.code AS wave,
       w.offset_days AS wave_offset,
       min(((r.completed_at AT TIME ZONE 'Europe/London')::date - p.enrolled_on))::float AS days,
       NULL::timestamptz AS completed_at, bool_or(r.out_of_window) AS out_of_window, p.status,
       NULL::float AS status_days, {cols}
FROM score s JOIN response r ON r.id = s.response_id JOIN participant p ON p.id = r.participant_id
JOIN site si ON si.id = p.site_id LEFT JOIN arm a ON a.id = p.arm_id JOIN wave w ON w.id = r.wave_id
WHERE r.study_id = 1 GROUP BY p.id, si.code, a.code, a.kind, w.id ORDER BY p.id, w.offset_days
"""


def copy_time(db: str, sql: str) -> tuple[float, int, int]:
    with psycopg.connect(PG + f" dbname={db}") as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        size, lines = 0, 0
        with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)") as cp:
            for block in cp:
                size += len(block)
                lines += bytes(block).count(b"\n")
        return time.perf_counter() - t0, lines - 1, size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of the server process (threads included): steadier than wall time
    when other work shares the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def serve(db: str):
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=_url(db), PEERLENS_SECRET_KEY="bench-secret", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def download(base: str, token: str, shape: str) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    size, lines = 0, 0
    with httpx.stream(
        "GET",
        f"{base}/studies/1/exports/{shape}",
        params={"format": "csv"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=600,
    ) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    return time.perf_counter() - t0, lines - 1, size


def run(n: int, keep: bool, repeat: int = 1) -> dict:
    db = f"peerlens_bench_export_{n}"
    t0 = time.perf_counter()
    token = build(db, n)
    load = os.getloadavg()
    print(
        f"\n== {n:,} participants x {len(WAVES)} waves x {len(INSTRUMENTS)} instruments "
        f"(loaded with COPY in {time.perf_counter() - t0:.1f} s); load average {load[0]:.2f} {load[1]:.2f}"
    )
    proc, base = serve(db)
    out = {"n": n, "load": load[0]}
    try:
        idle = _rss_kb(proc.pid)
        for shape, sql in (("long", LONG_SQL), ("wide", wide_sql())):
            # Export and COPY alternate ``repeat`` times; the medians damp other work on the machine.
            runs = []
            for _ in range(repeat):
                cpu0 = _cpu_s(proc.pid)
                api_t, api_rows, api_size = download(base, token, shape)
                cpu = _cpu_s(proc.pid) - cpu0
                copy_t, copy_rows, copy_size = copy_time(db, sql)
                if api_rows != copy_rows:
                    raise SystemExit(f"{shape}: export has {api_rows} rows, COPY {copy_rows}")
                runs.append((api_t, copy_t, cpu))
            api_t, copy_t, cpu = (statistics.median(r[i] for r in runs) for i in range(3))
            ratios = " ".join(f"{a / c:.2f}" for a, c, _ in runs)
            out[shape] = (api_t, copy_t, api_rows)
            print(
                f"{shape:5s} CSV: API {api_t:6.2f} s ({api_size / 1e6:6.1f} MB, {api_rows:,} rows)   "
                f"COPY {copy_t:6.2f} s ({copy_size / 1e6:6.1f} MB)   ratio {api_t / copy_t:4.2f}x   "
                f"server CPU {cpu:5.2f} s" + (f"   (medians of {repeat}; ratios {ratios})" if repeat > 1 else "")
            )
        hwm = _hwm_kb(proc.pid)
        out["peak_mb"] = hwm / 1024
        out["idle_mb"] = idle / 1024
        # The peak includes what start-up imports hold; the increment is the exports' own working memory.
        print(
            f"server RSS: {idle / 1024:.0f} MB after start-up, peak {hwm / 1024:.0f} MB during the exports "
            f"(+{(hwm - idle) / 1024:.0f} MB for the exports)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if not keep:
            with psycopg.connect(PG + " dbname=postgres", autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000])
    ap.add_argument("--keep", action="store_true", help="keep the bench databases")
    ap.add_argument("--repeat", type=int, default=3, help="alternated export/COPY runs per shape (medians)")
    args = ap.parse_args()
    results = [run(n, args.keep, args.repeat) for n in args.sizes]
    print("\nsummary")
    for r in results:
        print(
            f"  n={r['n']:>6,}: long {r['long'][0]:.2f} s vs COPY {r['long'][1]:.2f} s "
            f"({r['long'][0] / r['long'][1]:.2f}x); wide {r['wide'][0]:.2f} s vs COPY {r['wide'][1]:.2f} s "
            f"({r['wide'][0] / r['wide'][1]:.2f}x); RSS start-up {r['idle_mb']:.0f} MB, peak {r['peak_mb']:.0f} MB "
            f"(+{r['peak_mb'] - r['idle_mb']:.0f} MB); load {r['load']:.2f}"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(
            f"  when the cohort grows {last['n'] / first['n']:.0f}x: "
            f"peak RSS {last['peak_mb'] / first['peak_mb']:.2f}x, "
            f"export increment {last['peak_mb'] - last['idle_mb']:.0f} MB "
            f"vs {first['peak_mb'] - first['idle_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
