"""Reminder throughput and planner cost on PostgreSQL, against baselines measured in the same run.

1. Dispatch: 10,000 due reminders sent by 4 worker processes (``python -m api.cli worker --once``)
   to a local aiosmtpd server, against a plain ``smtplib`` loop (one connection, one process)
   sending 10,000 messages of the same shape to the same server. Both rates are measured at the
   server, from the first message received to the last, so process start-up is left out of both;
   the workers' wall time including start-up is printed too. Aim: ratio >= 0.5.
2. Planner: 100,000 participants bulk-inserted with one ``INSERT … SELECT generate_series``; time of
   the planner (one set-based upsert per plan) creating 300,000 rows, of a second, idempotent run,
   and of a pure-Python loop computing the same due times (no database) for comparison.

Needs PostgreSQL at ``PEERLENS_BENCH_PG`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``);
a scratch database is created and dropped.

Run: ``.venv/bin/python bench/reminders.py [--reminders 10000] [--workers 4] [--participants 100000]``
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import smtplib
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

PG = os.environ.get("PEERLENS_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
_MID = re.compile(rb"^Message-ID:\s*(\S+)", re.I | re.M)


class Counting:
    """SMTP handler recording each message's Message-ID and arrival time (no full parse)."""

    def __init__(self):
        self.ids: list[bytes] = []
        self.times: list[float] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        m = _MID.search(envelope.content)
        with self.lock:
            self.ids.append(m.group(1) if m else b"")
            self.times.append(time.perf_counter())
        return "250 OK"

    def reset(self):
        with self.lock:
            self.ids.clear()
            self.times.clear()

    def rate(self) -> float:
        with self.lock:
            n, span = len(self.times), self.times[-1] - self.times[0]
        return (n - 1) / span if span > 0 else float("inf")


def smtplib_loop(port: int, n: int) -> None:
    """Baseline (runs in its own process): n messages over one connection, as a plain script would."""
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(n):
            msg = EmailMessage()
            msg["From"] = "Peerlens <no-reply@localhost>"
            msg["To"] = f"p{i:06d}@example.org"
            msg["Subject"] = "Bench study: your baseline questionnaire"
            msg["Message-ID"] = f"<baseline.{i}@bench>"
            msg["List-Unsubscribe"] = "<http://bench/u/token>"
            msg.set_content(
                "Hello, your baseline questionnaire is ready: https://forms.example.org/x\n\n"
                "--\nTo stop these reminders: http://bench/u/token\n"
            )
            smtp.send_message(msg)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_database() -> tuple[str, str]:
    import psycopg

    name = f"peerlens_bench_{secrets.token_hex(4)}"
    admin = PG.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{PG}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    admin = PG.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_study(engine, title: str, steps: list[dict], time_zone: str = "UTC", body: str | None = None):
    from api.auth.service import Actor
    from api.reminders.schemas import PlansIn
    from api.reminders.service import replace_plans
    from api.studies import service
    from api.studies.schemas import SiteCreate, StudyCreate, WaveCreate

    actor = Actor.system()
    with Session(engine, expire_on_commit=False) as s:
        study = service.create_study(s, StudyCreate(title=title, design="cohort", time_zone=time_zone), actor)
        site = service.create_site(s, study, SiteCreate(code="main", name="Main"), actor)
        service.create_wave(
            s,
            study,
            WaveCreate(
                code="baseline", offset_days=0, window_before_days=0, window_after_days=30, instruments=["phq9"]
            ),
            actor,
        )
        replace_plans(
            s,
            study,
            PlansIn(
                plans=[
                    {
                        "wave": "baseline",
                        "steps": steps,
                        "subject": "{study}: your {wave} questionnaire",
                        "body": body or "Hello {name}, your {wave} questionnaire is ready: {link}",
                        "form_url": "https://forms.example.org/x",
                    }
                ]
            ),
            actor,
        )
        s.commit()
        return study.id, site.id


def bulk_participants(engine, study_id: int, site_id: int, n: int, enrolled_on) -> None:
    """n participants and email contacts in two INSERT … SELECT generate_series statements."""
    with engine.begin() as conn:
        conn.execute(
            text("""
INSERT INTO participant (study_id, site_id, study_code, enrolled_on, consent_date, consent_version, randomised,
                         status, created_at, updated_at)
SELECT :sid, :site, 'B' || lpad(g::text, 7, '0'), :d, :d, 'v1', false, 'active', now(), now()
FROM generate_series(1, :n) g"""),
            {"sid": study_id, "site": site_id, "d": enrolled_on, "n": n},
        )
        conn.execute(
            text("""
INSERT INTO participant_contact (participant_id, name, email, preferred_channel, opt_out, updated_at)
SELECT id, 'Bench Person', lower(study_code) || '@example.org', 'email', false, now()
FROM participant WHERE study_id = :sid"""),
            {"sid": study_id},
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reminders", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--participants", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument(
        "--form-url",
        action="store_true",
        help="templates carry the coordinator's URL instead of {link} (no links service calls)",
    )
    ap.add_argument("--skip-dispatch", action="store_true")
    ap.add_argument("--skip-planner", action="store_true")
    ap.add_argument("--smtplib-loop", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.smtplib_loop:
        smtplib_loop(*args.smtplib_loop)
        return

    from api.db import make_engine
    from api.migrate import upgrade

    handler = Counting()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    name, url = make_database()
    try:
        upgrade(url)
        engine = make_engine(url, pool_size=2, max_overflow=2)
        if not args.skip_dispatch:
            dispatch(args, engine, handler, port, url)
        if not args.skip_planner:
            planner(args, engine)
        engine.dispose()
    finally:
        controller.stop()
        drop_database(name)


def dispatch(args, engine, handler, port, url) -> None:
    from api.reminders.clock import SystemClock
    from api.reminders.models import Reminder
    from api.reminders.planner import plan_study
    from api.studies.models import Study

    n = args.reminders
    # -- baseline: plain smtplib loop in its own process ------------------------------------
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--smtplib-loop", str(port), str(n)], check=True)
    base_wall = time.perf_counter() - t0
    assert len(handler.ids) == n
    base_rate = handler.rate()
    handler.reset()

    # -- workers ----------------------------------------------------------------------------
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    body = "Hello {name}, your {wave} questionnaire is ready: https://forms.example.org/x" if args.form_url else None
    sid, site = make_study(engine, "Dispatch bench", [{"offset_days": 0}], body=body)
    bulk_participants(engine, sid, site, n, yesterday)
    with Session(engine) as s:
        plan_study(s, s.get(Study, sid), SystemClock())
        s.commit()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PEERLENS_SECRET_KEY": "bench-secret",
        "PEERLENS_SMTP_HOST": "127.0.0.1",
        "PEERLENS_SMTP_PORT": str(port),
        "PEERLENS_BASE_URL": "http://bench",
    }
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "worker",
                "--once",
                "--no-plan",
                "--quiet",
                "--batch",
                str(args.batch),
                "--study",
                str(sid),
            ],
            cwd=ROOT,
            env=env,
        )
        for _ in range(args.workers)
    ]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"worker exited with {p.returncode}")
    work_wall = time.perf_counter() - t0
    work_rate = handler.rate()
    received, unique = len(handler.ids), len(set(handler.ids))
    with Session(engine) as s:
        sent = s.exec(select(Reminder).where(Reminder.study_id == sid, Reminder.status == "sent")).all()
    print(
        f"dispatch: {n} reminders, {args.workers} workers, batch {args.batch}, "
        f"link from {'the plan (form_url)' if args.form_url else 'the links service (one personal link each)'}"
    )
    print(f"  plain smtplib loop : {base_rate:8.0f} msg/s  (wall {base_wall:.2f} s incl. start-up)")
    print(
        f"  peerlens workers   : {work_rate:8.0f} reminders/s  (wall {work_wall:.2f} s incl. start-up, "
        f"{n / work_wall:.0f}/s)"
    )
    print(f"  ratio workers / smtplib loop: {work_rate / base_rate:.2f}x  (aim >= 0.5x)")
    print(
        f"  received {received}, distinct Message-IDs {unique}, rows sent {len(sent)}, duplicates {received - unique}"
    )


def planner(args, engine) -> None:
    from sqlalchemy import insert

    from api.db import utcnow
    from api.participants.models import Participant, ParticipantContact
    from api.reminders.clock import SystemClock
    from api.reminders.models import Reminder
    from api.reminders.planner import plan_study
    from api.reminders.timing import step_due
    from api.studies.models import Study, Wave

    m = args.participants
    steps = [{"offset_days": 0}, {"offset_days": 3}, {"offset_days": 7}]
    sid2, site2 = make_study(engine, "Planner bench", steps, time_zone="Europe/London")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE reminder_config SET quiet_start_minute = 1260, quiet_end_minute = 480 WHERE study_id = :s"),
            {"s": sid2},
        )
    soon = datetime.now(UTC).date() + timedelta(days=1)
    t0 = time.perf_counter()
    bulk_participants(engine, sid2, site2, m, soon)
    t_insert = time.perf_counter() - t0
    with Session(engine) as s:
        t0 = time.perf_counter()
        stats = plan_study(s, s.get(Study, sid2), SystemClock())
        s.commit()
        t_plan = time.perf_counter() - t0
    with Session(engine) as s:
        t0 = time.perf_counter()
        again = plan_study(s, s.get(Study, sid2), SystemClock())
        s.commit()
        t_again = time.perf_counter() - t0
    # Baseline: the same plan done the forbidden way, a Python loop over participants (the
    # core's window function per participant and step) and a bulk INSERT of the rows.
    sid3, site3 = make_study(engine, "Planner baseline", steps, time_zone="Europe/London")
    bulk_participants(engine, sid3, site3, m, soon)
    t0 = time.perf_counter()
    with Session(engine) as s:
        study = s.get(Study, sid3)
        wave = s.exec(select(Wave).where(Wave.study_id == sid3)).one()
        people = s.exec(
            select(Participant)
            .join(ParticipantContact, ParticipantContact.participant_id == Participant.id)
            .where(Participant.study_id == sid3, Participant.status == "active", ParticipantContact.opt_out.is_(False))
        ).all()
        now = utcnow()
        rows = []
        for p in people:
            for i, st in enumerate(steps):
                due_at, opens_at, closes_at = step_due(study, p, wave, st, (1260, 480))
                rows.append(
                    {
                        "study_id": sid3,
                        "site_id": p.site_id,
                        "participant_id": p.id,
                        "wave_id": wave.id,
                        "step": i,
                        "channel": "email",
                        "due_at": due_at,
                        "window_opens_at": opens_at,
                        "window_closes_at": closes_at,
                        "status": "pending",
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        s.connection().execute(insert(Reminder.__table__), rows)
        s.commit()
    t_py = time.perf_counter() - t0
    print(f"planner: {m} participants x {len(steps)} steps (bulk insert of participants {t_insert:.2f} s)")
    print(
        f"  set-based planner        : {t_plan:6.2f} s for {stats.planned} rows "
        f"({stats.planned / t_plan:,.0f} rows/s); second run {t_again:.2f} s, {again.planned} rows changed"
    )
    print(f"  Python loop + bulk insert: {t_py:6.2f} s for {len(rows)} rows")
    print(f"  speed-up of the set-based planner over the loop: {t_py / t_plan:.2f}x")


if __name__ == "__main__":
    main()
