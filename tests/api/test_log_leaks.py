"""Database errors on routes that carry identifiers leave no identifier in any log line.

The app is served by a real uvicorn server on loopback (so the server's own error logging is
exercised, not only the app's) with every log record captured. Database objects installed for
the test make the database itself refuse: on PostgreSQL a CHECK constraint, whose error quotes the
whole failing row (``DETAIL: Failing row contains (…)``), on SQLite a trigger. They fire on
the contact vault (enrolment, contact change), the transcript vault (upload) and the audit trail
(an amendment whose before/after hold free text). Every request answers 500, the log says which
route failed and why (type, SQLSTATE, constraint, code location), and no seeded identifier, no
statement parameter and no query value appears anywhere in the captured output.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

import instruments
from instruments.model import Instrument, Item

EMAIL = "probe.hollingsworth.6624@example.org"
PHONE = "+44 7700 900736"
NAME = "Araminta Probe-Hollingsworth"
STORY = "Probe story: Florian Quintavalle took me to the Ashgrove clinic"
TRANSCRIPT = "Interviewer: How are you?\nParticipant: Crispin Probe-Dunmore visits every Tuesday.\n"
SEEDS = ["hollingsworth", "6624", "900736", "Araminta", "Quintavalle", "Ashgrove", "Crispin", "Dunmore"]

NOTES = Instrument(
    code="leaknotes",
    name="Notes",
    version="1",
    citation="test",
    licence="test",
    items=(Item(code="leaknotes_story", text="Your week", kind="text", scored=False),),
    scales=(),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app):
    import uvicorn

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "sqlalchemy"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.disabled = False
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=True, log_level="debug", lifespan="off"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", buf
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture(scope="module")
def world(client, make_study, enrol, admin, engine, backend):
    instruments.register(NOTES, replace=True)
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "leaknotes"]),))
    today = datetime.now(ZoneInfo("Europe/London")).date()
    p = enrol(study, enrolled_on=str(today - timedelta(days=1)), arm="group")
    r = client.post(
        f"/participants/{p['id']}/responses",
        headers=admin.headers,
        json={"wave": "baseline", "instrument": "leaknotes", "answers": {"leaknotes_story": STORY}},
    )
    assert r.status_code == 201, r.text
    # The database refuses anything carrying the word "probe" (any case) in the three vaults.
    with engine.begin() as conn:
        if backend == "postgresql":
            conn.execute(
                text(
                    "ALTER TABLE participant_contact ADD CONSTRAINT ck_leak_probe "
                    "CHECK (coalesce(email, '') NOT ILIKE '%probe%' AND coalesce(name, '') NOT ILIKE '%probe%')"
                )
            )
            conn.execute(
                text("ALTER TABLE transcript_original ADD CONSTRAINT ck_leak_probe CHECK (text NOT ILIKE '%probe%')")
            )
            conn.execute(
                text(
                    "ALTER TABLE audit_event ADD CONSTRAINT ck_leak_probe "
                    "CHECK (coalesce(reason, '') NOT ILIKE '%probe%')"
                )
            )
        else:
            for table, cond in (
                ("participant_contact", "lower(coalesce(NEW.email, '') || coalesce(NEW.name, '')) LIKE '%probe%'"),
                ("transcript_original", "lower(NEW.text) LIKE '%probe%'"),
                ("audit_event", "lower(coalesce(NEW.reason, '')) LIKE '%probe%'"),
            ):
                for when in ("INSERT", "UPDATE"):
                    conn.execute(
                        text(
                            f"CREATE TRIGGER leak_probe_{table}_{when.lower()} BEFORE {when} ON {table} "
                            f"WHEN {cond} BEGIN SELECT RAISE(ABORT, 'probe refused'); END"
                        )
                    )
    yield {"study": study, "p": p, "today": today}
    with engine.begin() as conn:
        if backend == "postgresql":
            for table in ("participant_contact", "transcript_original", "audit_event"):
                conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT ck_leak_probe"))
        else:
            for table in ("participant_contact", "transcript_original", "audit_event"):
                for when in ("insert", "update"):
                    conn.execute(text(f"DROP TRIGGER leak_probe_{table}_{when}"))
    instruments.unregister("leaknotes")


def test_database_errors_leave_no_identifier_in_the_logs(server, world, admin, backend):
    base, buf = server
    sid, pid = world["study"].id, world["p"]["id"]
    day = str(world["today"])
    h = admin.headers
    forced = []
    with httpx.Client(base_url=base, headers=h, timeout=30) as c:
        # identifiers: enrolment with contact details, and a change of contact details
        forced.append(
            c.post(
                f"/studies/{sid}/participants",
                json={
                    "site": "north",
                    "enrolled_on": day,
                    "consent": {"date": day, "version": "v1"},
                    "contact": {"name": NAME, "email": EMAIL, "phone": PHONE, "preferred_channel": "email"},
                },
            )
        )
        forced.append(c.patch(f"/participants/{pid}", json={"contact": {"name": NAME, "phone": PHONE}}))
        # transcript text (the identifier vault of transcripts keeps the original)
        forced.append(
            c.post(
                f"/studies/{sid}/transcripts",
                files={"file": ("week.txt", TRANSCRIPT.encode(), "text/plain")},
                data={"participants": world["p"]["study_code"]},
            )
        )
        # the audit trail: an amendment's before/after hold the free text
        forced.append(
            c.post(
                f"/participants/{pid}/responses",
                json={
                    "wave": "baseline",
                    "instrument": "leaknotes",
                    "answers": {"leaknotes_story": STORY + " Araminta"},
                    "amend": True,
                    "reason": "probe: corrected the story",
                },
            )
        )
        # query values (a transcript search) stay out of access lines too
        searched = c.get(f"/studies/{sid}/transcripts/search", params={"q": "Quintavalle"})
    assert [r.status_code for r in forced] == [500] * 4, [r.text for r in forced]
    assert all(r.json()["detail"][0]["type"] == "internal_error" for r in forced)
    assert searched.status_code in (200, 422)
    time.sleep(0.2)  # let the access log lines of the last requests land
    logged = buf.getvalue()
    leaked = [s for s in SEEDS if s.lower() in logged.lower()]
    assert not leaked, f"identifiers in the log: {leaked}\n{logged[-3000:]}"
    assert "[parameters" not in logged and "Failing row" not in logged
    # ... yet each failure is logged, with what an operator needs to find it
    errors = [line for line in logged.splitlines() if "unhandled error" in line]
    assert len(errors) >= 4, logged[-3000:]
    assert any("/studies/{study_id}/participants" in line for line in errors)
    if backend == "postgresql":
        assert any("sqlstate 23514" in line and "ck_leak_probe" in line for line in errors), errors
    assert "Exception in ASGI application" not in logged
    assert "q=…" in logged  # the search's access line names the filter, not the term
