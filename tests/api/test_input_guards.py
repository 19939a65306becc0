"""Characters that break storage or mail headers are refused with a 422 naming the field.

A NUL (``\\u0000``) cannot be stored by PostgreSQL and was stored silently by SQLite: every way a
client can send one (JSON body, form post, query, path, multipart field, uploaded text file) gets
the same 422 ``null_character`` on both backends, and nothing is written. A line break in a value
that a reminder puts into a mail header is refused at input; one such value stored earlier fails
its own reminder only. Bodies that cannot be decoded answer the documented ``json_invalid``.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlmodel import Session

from api.audit.models import AuditEvent
from api.inputguard import NUL_TYPE, NulInDatabaseValue
from api.reminders.clock import FixedClock
from api.reminders.dispatcher import Dispatcher
from api.reminders.models import Reminder
from api.reminders.planner import plan_study
from api.studies.models import Site, Study
from tests.api.reminders_support import SmtpServer
from tests.conftest import phq9_answers

NUL = "\u0000"


@pytest.fixture(scope="module")
def world(client, admin, make_study, enrol):
    study = make_study()
    today = datetime.now(ZoneInfo("Europe/London")).date()
    p = enrol(study, enrolled_on=str(today - timedelta(days=1)), arm="group")
    r = client.post(
        f"/participants/{p['id']}/responses",
        headers=admin.headers,
        json={"wave": "baseline", "instrument": "phq9", "answers": phq9_answers()},
    )
    assert r.status_code == 201, r.text
    link = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline"}, headers=admin.headers)
    assert link.status_code == 201, link.text
    return {"study": study, "p": p, "link": link.json()["token"], "today": today}


def _audit_count(engine) -> int:
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


def _is_nul_error(r, loc) -> None:
    assert r.status_code == 422, (loc, r.status_code, r.text)
    detail = r.json()["detail"]
    assert detail[0]["type"] == NUL_TYPE, r.text
    assert detail[0]["loc"] == loc, r.text


def test_nul_in_json_bodies_is_422_naming_the_field(client, admin, world, engine):
    sid, pid = world["study"].id, world["p"]["id"]
    day = str(world["today"])
    enrol = {"site": "north", "enrolled_on": day, "consent": {"date": day, "version": "v1"}}
    resp = {"wave": "baseline", "instrument": "gad7", "answers": {f"gad7_{i}": 1 for i in range(1, 8)}}
    cases = [
        ("POST", "/studies", {"title": f"Heart{NUL}study", "design": "rct"}, ["body", "title"]),
        ("PATCH", f"/studies/{sid}", {"title": f"x{NUL}"}, ["body", "title"]),
        ("POST", f"/studies/{sid}/sites", {"code": "east", "name": f"E{NUL}"}, ["body", "name"]),
        (
            "POST",
            f"/studies/{sid}/participants",
            {**enrol, "consent": {"date": day, "version": f"v1{NUL}"}},
            ["body", "consent", "version"],
        ),
        (
            "POST",
            f"/studies/{sid}/participants",
            {**enrol, "contact": {"name": f"Ann{NUL}", "preferred_channel": "none"}},
            ["body", "contact", "name"],
        ),
        ("PATCH", f"/participants/{pid}", {"contact": {"name": f"{NUL}"}}, ["body", "contact", "name"]),
        ("POST", f"/participants/{pid}/responses", {**resp, "wave": f"baseline{NUL}"}, ["body", "wave"]),
        (
            "POST",
            f"/participants/{pid}/responses",
            {**resp, "instrument": "phq9", "answers": phq9_answers(0), "amend": True, "reason": f"typo{NUL}"},
            ["body", "reason"],
        ),
        (
            "POST",
            f"/participants/{pid}/responses",
            {**resp, "answers": {f"gad7_1{NUL}": 1}},
            ["body", "answers", "gad7_1\\u0000"],
        ),
        (
            "PUT",
            f"/studies/{sid}/reminder-plans",
            {
                "plans": [
                    {
                        "wave": "m1",
                        "steps": [{"offset_days": 0}],
                        "subject": f"Your questionnaire{NUL}",
                        "body": "Hello {link}",
                    }
                ]
            },
            ["body", "plans", 0, "subject"],
        ),
        ("POST", f"/studies/{sid}/memos", {"target": "project", "text": f"note{NUL}"}, ["body", "text"]),
        ("POST", f"/studies/{sid}/codes", {"name": f"coping{NUL}"}, ["body", "name"]),
    ]
    before = _audit_count(engine)
    for method, url, body, loc in cases:
        _is_nul_error(client.request(method, url, json=body, headers=admin.headers), loc)
    assert _audit_count(engine) == before  # nothing was written
    titles = [s["title"] for s in client.get("/studies", headers=admin.headers).json()]
    assert not any(NUL in t or t.startswith("Heart") for t in titles)


def test_nul_in_query_and_path_is_422_naming_the_parameter(client, admin, world):
    sid, pid = world["study"].id, world["p"]["id"]
    cases = [
        (f"/participants/{pid}/responses?wave=base%00line", ["query", "wave"]),
        ("/audit?entity=participant%00", ["query", "entity"]),
        (f"/studies/{sid}/audit?entity_id=1%00", ["query", "entity_id"]),
        (f"/studies/{sid}/transcripts/search?q=care%00", ["query", "q"]),
        ("/instruments/phq9%00", ["path", "code"]),
    ]
    for url, loc in cases:
        _is_nul_error(client.get(url, headers=admin.headers), loc)
    r = client.delete(f"/participants/{pid}/links/baseline%00", headers=admin.headers)
    _is_nul_error(r, ["path", "wave_code"])


def test_nul_in_form_posts_and_uploads_is_422_naming_the_field(client, admin, world, engine):
    sid, p = world["study"].id, world["p"]
    before = _audit_count(engine)
    # the participant form (URL-encoded)
    r = client.post(f"/f/{world['link']}", data={"csrf": "x", "instrument": f"gad7{NUL}"})
    _is_nul_error(r, ["body", "instrument"])
    # a multipart field beside a file
    files = {"file": ("interview.txt", b"Interviewer: Hello\nParticipant: Hi\n", "text/plain")}
    r = client.post(
        f"/studies/{sid}/transcripts",
        files=files,
        data={"participants": f"{p['study_code']}{NUL}"},
        headers=admin.headers,
    )
    _is_nul_error(r, ["body", "participants"])
    # an uploaded text file holding a NUL (a .docx may hold zero bytes: files are judged once decoded)
    files = {"file": ("interview.txt", f"Interviewer: Hello\nParticipant: Hi{NUL}\n".encode(), "text/plain")}
    r = client.post(
        f"/studies/{sid}/transcripts", files=files, data={"participants": p["study_code"]}, headers=admin.headers
    )
    _is_nul_error(r, ["body", "file"])
    records = f"record_id,redcap_event_name,phq9_1\n{p['study_code']},baseline_arm_1,1{NUL}\n".encode()
    r = client.post(
        f"/studies/{sid}/imports/redcap",
        files={"records": ("records.csv", io.BytesIO(records), "text/csv")},
        data={"event_map": '{"*": "baseline"}'},
        headers=admin.headers,
    )
    _is_nul_error(r, ["body", "records"])
    assert _audit_count(engine) == before


def test_nul_reaching_the_database_another_way_is_refused_on_both_backends(engine, world):
    """Values that bypass HTTP (command-line imports, background work) meet the same rule."""
    with Session(engine) as s:
        s.add(Site(study_id=world["study"].id, code="west", name=f"W{NUL}"))
        with pytest.raises(NulInDatabaseValue) as e:
            s.flush()
        assert e.value.errors[0]["type"] == NUL_TYPE and "name" in e.value.errors[0]["msg"]
        s.rollback()
    with Session(engine) as s:
        assert s.execute(select(Site).where(Site.code == "west")).first() is None


def test_undecodable_bodies_answer_json_invalid(client, admin):
    h = {**admin.headers, "content-type": "application/json"}
    r = client.post("/studies", content=b'{"title": "\xff\xfe", "design": "rct"}', headers=h)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] == "json_invalid" and r.json()["detail"][0]["loc"] == ["body"]
    deep = b"[" * 20_000 + b"]" * 20_000
    r = client.post("/studies", content=deep, headers=h)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{"loc": ["body"], "msg": "JSON nested too deeply", "type": "json_invalid"}]


# ---- line breaks where a mail header is built ---------------------------------------------------


def test_line_breaks_in_header_values_are_refused(client, admin, world):
    sid, pid = world["study"].id, world["p"]["id"]
    day = str(world["today"])
    cases = [
        ("POST", "/studies", {"title": "Peer\r\nBcc: all@example.org", "design": "rct"}, ["body", "title"]),
        ("PATCH", f"/studies/{sid}", {"title": "Peer\nsupport"}, ["body", "title"]),
        (
            "POST",
            f"/studies/{sid}/participants",
            {
                "site": "north",
                "enrolled_on": day,
                "consent": {"date": day, "version": "v1"},
                "contact": {"name": "Ann\r\nBcc: x@example.org", "preferred_channel": "none"},
            },
            ["body", "contact", "name"],
        ),
        ("PATCH", f"/participants/{pid}", {"contact": {"name": "Ann\nLee"}}, ["body", "contact", "name"]),
        (
            "PUT",
            f"/studies/{sid}/reminder-plans",
            {"plans": [{"wave": "m1", "steps": [{"offset_days": 0}], "subject": "Hi\nthere", "body": "{link}"}]},
            ["body", "plans", 0, "subject"],
        ),
    ]
    for method, url, body, loc in cases:
        r = client.request(method, url, json=body, headers=admin.headers)
        assert r.status_code == 422, (url, r.text)
        assert {"loc": loc, "type": "line_break"} == {k: r.json()["detail"][0][k] for k in ("loc", "type")}, r.text
    # a multi-line body template stays allowed: only header values are single-line
    r = client.put(
        f"/studies/{sid}/reminder-plans",
        json={"plans": [{"wave": "m1", "steps": [{"offset_days": 0}], "subject": "Hi {name}", "body": "a\nb {link}"}]},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text


def test_a_stored_line_break_fails_its_own_reminder_only(client, admin, make_study, enrol, engine, settings):
    """A name stored before line breaks were refused must not stop the other reminders."""
    study = make_study()
    people = [
        enrol(
            study,
            enrolled_on="2026-01-05",
            contact={"name": f"Person {i}", "email": f"p{i}.{study.id}@example.org", "preferred_channel": "email"},
        )
        for i in range(4)
    ]
    plan = {
        "plans": [
            {
                "wave": "baseline",
                "steps": [{"offset_days": 0}],
                "subject": "{name}: your questionnaire",
                "body": "Hello {name}: {link}",
                "form_url": "https://forms.example.org/x",
            }
        ]
    }
    assert client.put(f"/studies/{study.id}/reminder-plans", json=plan, headers=admin.headers).status_code == 200
    with engine.begin() as conn:  # as an older version would have stored it
        conn.execute(
            text("UPDATE participant_contact SET name = :n WHERE participant_id = :p"),
            {"n": "Eve\r\nBcc: everyone@example.org", "p": people[1]["id"]},
        )
    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=UTC))
    with Session(engine, expire_on_commit=False) as s:
        plan_study(s, s.get(Study, study.id), clock)
        s.commit()
    with SmtpServer() as smtp:
        mail = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port})
        disp = Dispatcher(engine, mail, clock=clock, study_ids=[study.id], batch=50)
        try:
            stats = disp.run_once()
        finally:
            disp.close()
        received = smtp.handler.messages
    assert stats.sent == 3 and stats.failed == 1, stats
    assert sorted(m["To"] for m in received) == sorted(f"p{i}.{study.id}@example.org" for i in (0, 2, 3))
    assert all("Bcc" not in m for m in received)
    with Session(engine) as s:
        rows = s.execute(select(Reminder).where(Reminder.study_id == study.id)).scalars().all()
    by_person = {r.participant_id: r for r in rows}
    bad = by_person[people[1]["id"]]
    assert bad.status == "failed" and "line break" in bad.last_error
    assert "Eve" not in bad.last_error and "everyone" not in bad.last_error
    assert not [r for r in rows if r.status == "sending"]  # nothing left stuck until a lease expires
