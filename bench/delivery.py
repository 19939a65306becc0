"""Delivery records: attendance registers and dose, against plain SQL baselines measured in the same run.

1. Attendance: recording the register of a 20-person session through the service
   (:func:`api.delivery.sessions.record_attendance`: membership checks, upsert, audit event, commit),
   repeated for ``--registers`` sessions, against a plain ``INSERT`` of the same 20 rows and a
   commit per session.
2. Dose: :func:`api.delivery.dose.participant_dose` for ``--participants`` participants (default
   10,000) in groups of 20, each group with ``--sessions`` delivered sessions (default 40:
   400,000 attendance rows), against one plain SQL aggregate of the same rows (sessions attended
   and minutes per participant, ``GROUP BY``). Aim: ratio <= 2.

Needs PostgreSQL at ``PEERLENS_BENCH_PG`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``):
a scratch database is created and dropped (every connection is closed first); ``--sqlite`` runs on a
temporary SQLite file instead.

Run: ``.venv/bin/python bench/delivery.py [--participants 10000] [--sessions 40] [--registers 50] [--sqlite]``
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

PG = os.environ.get("PEERLENS_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
GROUP = 20
BASELINE_SQL = (
    "SELECT a.participant_id, COUNT(*), SUM(COALESCE(a.minutes, s.duration_minutes, 0)), "
    "MIN(s.delivered_on), MAX(s.delivered_on) "
    "FROM session_attendance a JOIN delivery_session s ON s.id = a.session_id "
    "WHERE s.study_id = :sid AND s.status = 'delivered' AND a.status IN ('attended', 'late', 'left_early') "
    "GROUP BY a.participant_id"
)


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


def build(engine, n: int, per_group: int, extra_groups: int) -> tuple[int, list[int]]:
    """A study with ``n`` participants in groups of 20, each group with ``per_group`` delivered
    sessions and a full register; plus ``extra_groups`` groups of 20 whose sessions have no register yet."""
    from api.auth.service import Actor
    from api.delivery import service as delivery
    from api.delivery.models import DeliverySession, GroupMembership, PeerGroup
    from api.delivery.schemas import PlanIn
    from api.participants.models import Participant
    from api.studies import service as studies
    from api.studies.schemas import ArmCreate, SiteCreate, StudyCreate, WaveCreate

    actor = Actor.system()
    start = date(2025, 1, 6)
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session:
        study = studies.create_study(
            session, StudyCreate(title="Delivery bench", design="rct", randomisation_seed="bench"), actor
        )
        site = studies.create_site(session, study, SiteCreate(code="s1", name="Site 1"), actor)
        arm = studies.create_arm(session, study, ArmCreate(code="group", name="Groups", kind="intervention"), actor)
        for code, off in (("baseline", 0), ("m3", 90), ("m6", 180), ("m12", 365)):
            studies.create_wave(session, study, WaveCreate(code=code, offset_days=off, instruments=["phq9"]), actor)
        delivery.put_plan(
            session, study, arm, PlanIn(planned_sessions=per_group, session_minutes=90, adherence_threshold=10), actor
        )
        session.commit()
        total = n + extra_groups * GROUP
        session.execute(
            insert(Participant),
            [
                {
                    "study_id": study.id,
                    "site_id": site.id,
                    "arm_id": arm.id,
                    "study_code": f"B{i:06d}",
                    "enrolled_on": start,
                    "consent_date": start,
                    "consent_version": "v1",
                    "randomised": True,
                    "status": "active",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(total)
            ],
        )
        pids = [r[0] for r in session.execute(text("SELECT id FROM participant ORDER BY id"))]
        groups = total // GROUP
        session.execute(
            insert(PeerGroup),
            [
                {
                    "study_id": study.id,
                    "site_id": site.id,
                    "arm_id": arm.id,
                    "code": f"G{g}",
                    "mode": "face_to_face",
                    "supporter_ids": [],
                    "created_at": now,
                }
                for g in range(groups)
            ],
        )
        gids = [r[0] for r in session.execute(text("SELECT id FROM peer_group ORDER BY id"))]
        session.execute(
            insert(GroupMembership),
            [
                {"group_id": gids[i // GROUP], "participant_id": pid, "joined_on": start, "created_at": now}
                for i, pid in enumerate(pids)
            ],
        )
        session.execute(
            insert(DeliverySession),
            [
                {
                    "study_id": study.id,
                    "site_id": site.id,
                    "arm_id": arm.id,
                    "group_id": gid,
                    "number": k + 1,
                    "planned_date": start + timedelta(days=7 * k + 1),
                    "delivered_on": start + timedelta(days=7 * k + 1),
                    "duration_minutes": 90,
                    "mode": "face_to_face",
                    "status": "delivered",
                    "created_at": now,
                    "updated_at": now,
                }
                for gid in gids
                for k in range(per_group)
            ],
        )
        register_groups = gids[: n // GROUP]
        session.execute(
            text(
                "INSERT INTO session_attendance (session_id, participant_id, status, minutes, updated_at) "
                "SELECT s.id, m.participant_id, CASE WHEN (s.id + m.participant_id) % 4 = 0 THEN 'absent' "
                "WHEN (s.id + m.participant_id) % 9 = 0 THEN 'late' ELSE 'attended' END, "
                "CASE WHEN (s.id + m.participant_id) % 9 = 0 AND (s.id + m.participant_id) % 4 <> 0 THEN 60 END, "
                ":now FROM delivery_session s JOIN group_membership m ON m.group_id = s.group_id "
                "WHERE s.group_id IN (SELECT id FROM peer_group WHERE id <= :last)"
            ),
            {"now": now, "last": register_groups[-1]},
        )
        session.commit()
        free = [
            r[0]
            for r in session.execute(
                text("SELECT id FROM delivery_session WHERE group_id > :last ORDER BY id"),
                {"last": register_groups[-1]},
            )
        ]
        return study.id, free


def attendance(engine, free_sessions: list[int], registers: int) -> None:
    from api.auth.service import Actor
    from api.delivery import sessions as svc
    from api.delivery.models import DeliverySession
    from api.delivery.schemas import AttendanceEntry, AttendanceIn

    actor = Actor.system()
    service_times, sql_times = [], []
    half = len(free_sessions) // 2
    for sid in free_sessions[: min(registers, half)]:
        with Session(engine) as session:
            members = [
                r[0]
                for r in session.execute(
                    text(
                        "SELECT m.participant_id FROM group_membership m JOIN delivery_session s "
                        "ON s.group_id = m.group_id WHERE s.id = :s"
                    ),
                    {"s": sid},
                )
            ]
            body = AttendanceIn(records=[AttendanceEntry(participant_id=p, status="attended") for p in members])
            t = time.perf_counter()
            row = session.get(DeliverySession, sid)
            assert row is not None
            svc.record_attendance(session, row, body, actor)
            session.commit()
            service_times.append(time.perf_counter() - t)
    now = datetime.now(UTC)
    for sid in free_sessions[half : half + min(registers, half)]:
        with Session(engine) as session:
            members = [
                r[0]
                for r in session.execute(
                    text(
                        "SELECT m.participant_id FROM group_membership m JOIN delivery_session s "
                        "ON s.group_id = m.group_id WHERE s.id = :s"
                    ),
                    {"s": sid},
                )
            ]
            t = time.perf_counter()
            session.execute(
                text(
                    "INSERT INTO session_attendance (session_id, participant_id, status, updated_at) "
                    "VALUES (:s, :p, 'attended', :now)"
                ),
                [{"s": sid, "p": p, "now": now} for p in members],
            )
            session.commit()
            sql_times.append(time.perf_counter() - t)
    svc_ms, sql_ms = statistics.median(service_times) * 1000, statistics.median(sql_times) * 1000
    print(
        f"attendance, 20-person register: service {svc_ms:.1f} ms (median of {len(service_times)}), "
        f"plain INSERT {sql_ms:.1f} ms; ratio {svc_ms / sql_ms:.2f}x"
    )


def dose(engine, study_id: int, n: int, per_group: int, repeats: int) -> None:
    from api.delivery.dose import participant_dose

    base, ours = [], []
    for _ in range(repeats):
        with Session(engine) as session:
            t = time.perf_counter()
            rows = session.execute(text(BASELINE_SQL), {"sid": study_id}).all()
            base.append(time.perf_counter() - t)
        with Session(engine) as session:
            t = time.perf_counter()
            out = participant_dose(session, study_id)
            ours.append(time.perf_counter() - t)
    attended = sum(r["sessions_attended"] for r in out)
    assert attended == sum(r[1] for r in rows), "service and baseline disagree"
    b, o = min(base), min(ours)
    print(
        f"dose, {n:,} participants x {per_group} sessions ({attended:,} attended of {n * per_group:,} rows): "
        f"participant_dose {o:.2f} s, plain SQL aggregate {b:.2f} s (best of {repeats}); ratio {o / b:.2f}x (aim <= 2)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=10_000)
    ap.add_argument("--sessions", type=int, default=40)
    ap.add_argument("--registers", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sqlite", action="store_true")
    args = ap.parse_args()

    from api.db import make_engine
    from api.migrate import upgrade

    name = None
    tmp = None
    if args.sqlite:
        tmp = tempfile.TemporaryDirectory()
        url = f"sqlite:///{tmp.name}/bench.db"
    else:
        name, url = make_database()
    engine = None
    try:
        upgrade(url)
        engine = make_engine(url, pool_size=2, max_overflow=0)
        extra = (2 * args.registers) // args.sessions + 1
        t = time.perf_counter()
        study_id, free = build(engine, args.participants, args.sessions, extra)
        print(f"backend {engine.dialect.name}; built in {time.perf_counter() - t:.1f} s")
        attendance(engine, free, args.registers)
        dose(engine, study_id, args.participants, args.sessions, args.repeats)
    finally:
        if engine is not None:
            engine.dispose()  # no connection left open: the scratch database can be dropped
        if name is not None:
            drop_database(name)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
