"""Personal form links and the participant form, through HTTP (TestClient) on both backends."""

from __future__ import annotations

import hashlib
import io
import logging
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

import instruments
from tests.conftest import phq9_answers

TZ = ZoneInfo("Europe/London")
WAVES = (("baseline", 0, 0, 14, ["phq9", "gad7", "pam13"]), ("m1", 30, 7, 7, ["phq9"]), ("lic", 0, 0, 14, ["pam13"]))


def today() -> date:
    return datetime.now(TZ).date()


@pytest.fixture(scope="module")
def study(make_study):
    return make_study(waves=WAVES)


@pytest.fixture(scope="module")
def coord_north(make_user, study):
    return make_user("coordinator", [study.sites["north"]])


@pytest.fixture(scope="module")
def coord_south(make_user, study):
    return make_user("coordinator", [study.sites["south"]])


@pytest.fixture(autouse=True)
def _fresh_limiter(app):
    app.state.failure_limiter.reset()
    yield
    app.state.failure_limiter.reset()


def _participant(enrol, study, days_ago=2, site="north"):
    return enrol(study, site=site, enrolled_on=str(today() - timedelta(days=days_ago)), arm="group")


def _issue(client, pid, headers, wave="baseline"):
    r = client.post(f"/participants/{pid}/links", json={"wave": wave}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]{64})"', html).group(1)


def test_issue_stores_only_a_hash_and_lists_state(client, engine, enrol, study, coord_north):
    p = _participant(enrol, study)
    body = _issue(client, p["id"], coord_north.headers)
    token = body["token"]
    assert body["url"].endswith("/f/" + token)
    assert len(token) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]+", token)  # a 256-bit HMAC, URL-safe
    assert body["state"] == "active"
    offered = {i["instrument"]: i for i in body["instruments"]}
    assert offered["phq9"]["offered"] and offered["gad7"]["offered"]
    assert offered["pam13"]["offered"] is False and "wording" in offered["pam13"]["reason"]

    from api.links.models import ParticipantLink

    with Session(engine) as s:
        rows = s.exec(select(ParticipantLink).where(ParticipantLink.participant_id == p["id"])).all()
    assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert all(token not in str(r.model_dump()) for r in rows)

    listed = client.get(f"/participants/{p['id']}/links", headers=coord_north.headers)
    assert listed.status_code == 200
    states = {w["wave"]: w["state"] for w in listed.json()}
    assert states == {"baseline": "active", "lic": "none", "m1": "none"}
    # The live link can be shown again (derived from the stored nonce), without re-issuing it.
    urls = {w["wave"]: w["url"] for w in listed.json()}
    assert urls == {"baseline": body["url"], "lic": None, "m1": None}
    with Session(engine) as s:
        assert len(s.exec(select(ParticipantLink).where(ParticipantLink.participant_id == p["id"])).all()) == 1
        assert all(r.nonce and token not in r.nonce for r in rows)
    assert client.get(f"/f/{token}").status_code == 200


def test_reminders_reuse_the_live_link_instead_of_revoking_it(client, engine, enrol, study, coord_north, settings):
    from api.auth.service import Actor
    from api.links.models import ParticipantLink
    from api.links.service import live_link
    from api.participants.models import Participant
    from api.studies.models import Wave

    p = _participant(enrol, study)
    with Session(engine, expire_on_commit=False) as s:
        participant = s.get(Participant, p["id"])
        wave = s.exec(select(Wave).where(Wave.study_id == study.id, Wave.code == "baseline")).one()
        _, first = live_link(s, participant, wave, Actor.system(), settings)
        _, second = live_link(s, participant, wave, Actor.system(), settings)
        s.commit()
        assert first == second
        assert len(s.exec(select(ParticipantLink).where(ParticipantLink.participant_id == p["id"])).all()) == 1
    # The link in the first message still opens the form after the second message went out.
    assert client.get("/f/" + first.rsplit("/", 1)[1]).status_code == 200
    # A coordinator's re-issue revokes it; the next reminder then carries the new link.
    reissued = _issue(client, p["id"], coord_north.headers)["url"]
    assert client.get("/f/" + first.rsplit("/", 1)[1]).status_code == 404
    with Session(engine, expire_on_commit=False) as s:
        participant = s.get(Participant, p["id"])
        wave = s.exec(select(Wave).where(Wave.study_id == study.id, Wave.code == "baseline")).one()
        assert live_link(s, participant, wave, Actor.system(), settings)[1] == reissued


def test_link_opens_the_form_and_reissue_revokes_the_old_one(client, enrol, study, coord_north, admin):
    p = _participant(enrol, study)
    first = _issue(client, p["id"], coord_north.headers)["token"]
    r = client.get(f"/f/{first}")
    assert r.status_code == 200
    assert "Little interest or pleasure in doing things" in r.text  # PHQ-9 item 1 comes first
    assert 'lang="en"' in r.text and "Part 1 of 2" in r.text  # PAM-13 not offered: two parts
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
    second = _issue(client, p["id"], coord_north.headers)["token"]
    assert second != first
    assert client.get(f"/f/{first}").status_code == 404
    assert client.get(f"/f/{second}").status_code == 200
    audit = client.get(
        f"/studies/{study.id}/audit", params={"entity": "participant_link"}, headers=admin.headers
    ).json()["items"]
    mine = [e for e in audit if (e["after"] or {}).get("participant_id") == p["id"]]
    assert [e["action"] for e in mine] == ["create", "revoke", "create"]
    assert all(first not in str(e) and second not in str(e) for e in mine)


def test_unknown_revoked_and_expired_links_look_the_same(client, engine, enrol, study, coord_north, settings):
    p = _participant(enrol, study)
    token = _issue(client, p["id"], coord_north.headers)["token"]
    assert client.delete(f"/participants/{p['id']}/links/baseline", headers=coord_north.headers).status_code == 204
    assert client.delete(f"/participants/{p['id']}/links/baseline", headers=coord_north.headers).status_code == 404
    revoked = client.get(f"/f/{token}")

    # A link issued while the window was open, looked at after window + grace.
    from api.auth.service import Actor
    from api.links.service import issue_link, resolve
    from api.participants.models import Participant
    from api.studies.models import Wave

    old = _participant(enrol, study, days_ago=60)
    three_days = settings.model_copy(update={"link_grace_days": 3})
    with Session(engine, expire_on_commit=False) as s:
        part = s.get(Participant, old["id"])
        wave = s.exec(select(Wave).where(Wave.study_id == study.id, Wave.code == "baseline")).one()
        issued_at = datetime.now(UTC) - timedelta(days=58)
        _, url = issue_link(s, part, wave, Actor.system(), three_days, now=issued_at)
        s.commit()
        expired_token = url.rsplit("/", 1)[1]
        # still valid within the grace period after the close, not after it
        _, _, _, _, closes_at = __import__("api.participants.service", fromlist=["window"]).window(
            s.get(__import__("api.studies.models", fromlist=["Study"]).Study, study.id), part, wave
        )
        assert resolve(s, expired_token, three_days, closes_at + timedelta(days=3) - timedelta(seconds=1)) is not None
        assert resolve(s, expired_token, three_days, closes_at + timedelta(days=3)) is None
    expired = client.get(f"/f/{expired_token}")
    unknown = client.get("/f/" + "A" * 43)
    garbage = client.get("/f/x'%22<script>")
    for r in (revoked, expired, unknown, garbage):
        assert r.status_code == 404
    assert revoked.content == expired.content == unknown.content == garbage.content
    assert "does not work" in unknown.text


def test_roles_and_sites(client, enrol, study, coord_south, analyst):
    p = _participant(enrol, study)
    r = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline"}, headers=coord_south.headers)
    assert r.status_code == 404  # another site's participant does not exist for this coordinator
    r = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline"}, headers=analyst.headers)
    assert r.status_code == 403
    assert client.get(f"/participants/{p['id']}/links", headers=analyst.headers).status_code == 403
    r = client.post(f"/participants/{p['id']}/links", json={"wave": "nope"}, headers=coord_south.headers)
    assert r.status_code == 404


def test_refusals_name_the_rule(client, enrol, study, coord_north):
    p = _participant(enrol, study)
    r = client.post(f"/participants/{p['id']}/links", json={"wave": "lic"}, headers=coord_north.headers)
    assert r.status_code == 409
    d = r.json()["detail"][0]
    assert d["type"] == "nothing_to_offer" and d["loc"] == ["body", "wave"] and "pam13" in d["msg"]
    r = client.post(f"/participants/{p['id']}/links", json={"wave": "zz"}, headers=coord_north.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "wave"]
    r = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline", "x": 1}, headers=coord_north.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "x"]
    old = _participant(enrol, study, days_ago=90)
    r = client.post(f"/participants/{old['id']}/links", json={"wave": "baseline"}, headers=coord_north.headers)
    assert r.status_code == 409 and r.json()["detail"][0]["type"] == "window_closed"


def test_loaded_licensed_wording_is_offered(client, enrol, study, coord_north):
    csv = "item_code,text\n" + "".join(f"pam13_{i},Licensed statement number {i}\n" for i in range(1, 14))
    instruments.load_wording("pam13", io.StringIO(csv))
    try:
        p = _participant(enrol, study)
        body = _issue(client, p["id"], coord_north.headers, wave="lic")
        assert body["instruments"] == [{"instrument": "pam13", "offered": True, "reason": None, "completed": False}]
        page = client.get(f"/f/{body['token']}")
        assert page.status_code == 200 and "Licensed statement number 13" in page.text
    finally:
        instruments.unregister("pam13")
    assert instruments.get("pam13").item("pam13_1").text is None


def _post(client, token, csrf, instrument, answers, action="save"):
    data = {"csrf": csrf, "instrument": instrument, "action": action}
    data.update({f"i_{k}": str(v) for k, v in answers.items() if v is not None})
    return client.post(f"/f/{token}", data=data, follow_redirects=False)


def test_form_flow_missing_rule_csrf_and_scores(client, enrol, study, coord_north, admin):
    p = _participant(enrol, study)
    token = _issue(client, p["id"], coord_north.headers)["token"]
    page = client.get(f"/f/{token}")
    csrf = _csrf(page.text)

    # No CSRF cookie / wrong token: refused, nothing stored.
    r = client.post(
        f"/f/{token}", data={"csrf": "0" * 64, "instrument": "phq9", "i_phq9_1": "1"}, follow_redirects=False
    )
    assert r.status_code == 403
    assert client.get(f"/participants/{p['id']}/responses", headers=admin.headers).json() == []

    # Three PHQ-9 items blank: more than the two the prorating rule allows -> asked again, nothing saved.
    answers = {f"phq9_{i}": 2 for i in range(1, 7)}
    r = _post(client, token, csrf, "phq9", answers, action="save_blank")
    assert r.status_code == 200
    assert "answer needed" in r.text and 'value="save_blank"' not in r.text
    assert re.search(r'value="2"\s+checked', r.text)  # answers given are kept on the page
    assert client.get(f"/participants/{p['id']}/responses", headers=admin.headers).json() == []

    # Two scored items and item 10 blank: allowed, but the page lists them first.
    answers = {f"phq9_{i}": v for i, v in zip(range(1, 8), [3, 2, 2, 1, 0, 1, 2], strict=True)}
    r = _post(client, token, csrf, "phq9", answers)
    assert r.status_code == 200 and "3 questions are not answered yet" in r.text
    # Each open question by number and text, as a link to it.
    for n in (8, 9, 10):
        assert re.search(rf'<a href="#q-phq9_{n}">Question {n}: [^<]{{10,}}</a>', r.text), n
    r = _post(client, token, csrf, "phq9", answers, action="save_blank")
    assert r.status_code == 303 and r.headers["location"] == f"/f/{token}"
    # a double tap replays instead of storing twice
    assert _post(client, token, csrf, "phq9", answers, action="save_blank").status_code == 303

    page = client.get(f"/f/{token}")
    assert "Part 2 of 2" in page.text and "Submit my answers" in page.text
    r = _post(client, token, csrf, "gad7", {"gad7_1": "7"})
    assert r.status_code == 422 and "Please choose one of the answers shown." in r.text
    gad = {f"gad7_{i}": v for i, v in zip(range(1, 9), [1, 1, 2, 0, 3, 1, 2, 0], strict=True)}
    r = _post(client, token, csrf, "gad7", gad)
    assert r.status_code == 303 and r.headers["location"] == f"/f/{token}?done=1"
    assert "Thank you" in client.get(f"/f/{token}?done=1").text
    again = client.get(f"/f/{token}")
    assert again.status_code == 200 and "already answered" in again.text

    rows = {x["instrument"]: x for x in client.get(f"/participants/{p['id']}/responses", headers=admin.headers).json()}
    assert set(rows) == {"phq9", "gad7"}
    assert {x["mode"] for x in rows.values()} == {"web"}
    # PHQ-9: 7 of 9 answered -> mean x 9, rounded half up: (11 / 7) * 9 = 14.14 -> 14
    phq = {s["scale"]: s for s in rows["phq9"]["scores"]}["phq9"]
    assert phq["value"] == 14 and phq["prorated"] is True and phq["items_answered"] == 7
    # GAD-7: sum of items 1-7 (item 8 is the unscored difficulty question) = 1+1+2+0+3+1+2
    gad_score = {s["scale"]: s for s in rows["gad7"]["scores"]}["gad7"]
    assert gad_score["value"] == 10
    assert rows["phq9"]["answers"]["phq9_8"] is None and rows["phq9"]["answers"]["phq9_10"] is None

    events = client.get(f"/studies/{study.id}/audit", params={"entity": "response"}, headers=admin.headers).json()
    web = [e for e in events["items"] if e["source"] == "web" and e["after"]["participant_id"] == p["id"]]
    assert len(web) == 2 and {e["actor_role"] for e in web} == {"participant"}

    # Complete: the link is useless for coordinators too (re-issue refused), and a post changes nothing.
    r = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline"}, headers=coord_north.headers)
    assert r.status_code == 409 and r.json()["detail"][0]["type"] == "wave_completed"
    assert _post(client, token, csrf, "phq9", phq9_answers(0)).status_code == 303
    assert len(client.get(f"/participants/{p['id']}/responses", headers=admin.headers).json()) == 2


def test_withdrawn_participant_link_stops_working(client, enrol, study, coord_north):
    p = _participant(enrol, study)
    token = _issue(client, p["id"], coord_north.headers)["token"]
    r = client.patch(
        f"/participants/{p['id']}",
        headers=coord_north.headers,
        json={"status": "withdrawn", "status_date": str(today()), "reason": "asked to stop"},
    )
    assert r.status_code == 200, r.text
    assert client.get(f"/f/{token}").status_code == 404


def test_failed_link_and_token_attempts_are_rate_limited(client, app, enrol, study, coord_north):
    """Failures are throttled, not the address: a working link or a valid token always gets through."""
    p = _participant(enrol, study)
    good = _issue(client, p["id"], coord_north.headers)["token"]
    limiter = app.state.failure_limiter
    saved = limiter.limit
    limiter.limit = 5
    try:
        for i in range(5):
            assert client.get(f"/f/{'B' * 42}{i}").status_code == 404
        blocked = client.get(f"/f/{'B' * 42}x")
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        assert "B" * 42 not in blocked.text
        # the participant behind the same address still opens their own link
        assert client.get(f"/f/{good}").status_code == 200
        # link guessing does not lock staff at the same address out of the API
        assert client.get("/studies", headers=coord_north.headers).status_code == 200
        assert client.get("/health").status_code == 200
        limiter.reset()
        for _ in range(14):
            client.get("/studies", headers={"Authorization": "Bearer plk_wrong"})
        r = client.get("/studies", headers={"Authorization": "Bearer plk_wrong"})
        assert r.status_code == 429 and r.json()["detail"][0]["type"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1
        # ... and the valid admin or coordinator token at that address is never refused
        assert client.get("/studies", headers=coord_north.headers).status_code == 200
        assert client.get(f"/f/{good}").status_code == 200
    finally:
        limiter.limit = saved
        limiter.reset()


def test_link_tokens_are_redacted_from_log_records(caplog):
    from api.web.logfilter import install_log_redaction

    install_log_redaction()
    token = "Zk3" * 15
    with caplog.at_level(logging.INFO):
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/f/{token}?done=1", "1.1", 200
        )
        logging.getLogger("peerlens.api").error(f"unhandled X in POST /f/{token}")
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert token not in text
    assert text.count("/f/<redacted>") >= 2


def test_live_links_resolves_a_batch_reusing_issuing_and_refusing(
    client, engine, enrol, study, coord_north, backend, settings
):
    from sqlalchemy import event

    from api.audit.models import AuditEvent
    from api.auth.service import Actor
    from api.links.models import ParticipantLink
    from api.links.service import live_links
    from api.participants.models import Participant
    from api.studies.models import Wave

    kept = _participant(enrol, study)
    kept_url = _issue(client, kept["id"], coord_north.headers)["url"]
    revoked = _participant(enrol, study)  # had a link, revoked by a coordinator: gets a new one
    _issue(client, revoked["id"], coord_north.headers)
    assert (
        client.delete(f"/participants/{revoked['id']}/links/baseline", headers=coord_north.headers).status_code == 204
    )
    fresh = _participant(enrol, study)
    late = _participant(enrol, study, days_ago=90)  # window and grace past
    ids = [kept["id"], revoked["id"], fresh["id"], late["id"]]
    with Session(engine, expire_on_commit=False) as s:
        waves = {w.code: w for w in s.exec(select(Wave).where(Wave.study_id == study.id)).all()}
        people = {pid: s.get(Participant, pid) for pid in ids}
        links_before = {r.id for r in s.exec(select(ParticipantLink)).all()}
        audit_before = {e.id for e in s.exec(select(AuditEvent)).all()}
    pairs = [(people[pid], waves["baseline"]) for pid in ids]
    pairs += [
        (people[fresh["id"]], waves["baseline"]),  # twice in one batch: one link
        (people[fresh["id"]], waves["lic"]),
    ]  # nothing the form can offer
    statements = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    with Session(engine, expire_on_commit=False) as s:
        event.listen(engine, "before_cursor_execute", listener)
        try:
            links, refused = live_links(s, pairs, Actor.system(), settings)
            s.commit()
        finally:
            event.remove(engine, "before_cursor_execute", listener)
    base = waves["baseline"].id
    assert set(links) == {(kept["id"], base), (revoked["id"], base), (fresh["id"], base)}
    assert {k: e.errors[0]["type"] for k, e in refused.items()} == {
        (late["id"], base): "window_closed",
        (fresh["id"], waves["lic"].id): "nothing_to_offer",
    }
    # The same statements however many pairs: live links, the study, submitted instruments, one
    # UPDATE; PostgreSQL inserts the new links and their audit events with one statement each.
    kinds = [st.split(None, 1)[0] for st in statements if not st.startswith("BEGIN")]
    assert (kinds.count("SELECT"), kinds.count("UPDATE")) == (3, 1), statements
    if backend == "postgresql":
        assert kinds.count("INSERT") == 2, statements

    assert links[(kept["id"], base)][1] == kept_url  # reused unchanged
    with Session(engine) as s:
        new_links = [r for r in s.exec(select(ParticipantLink)).all() if r.id not in links_before]
        events = [e for e in s.exec(select(AuditEvent)).all() if e.id not in audit_before]
    assert sorted(r.participant_id for r in new_links) == sorted([revoked["id"], fresh["id"]])
    assert all(r.revoked_at is None and r.created_by is None for r in new_links)
    # One audit event per new link, as issue_link writes it; nothing for the reused and refused.
    assert [(e.action, e.entity) for e in events] == [("create", "participant_link")] * 2
    by_link = {int(e.entity_id): e for e in events}
    for r in new_links:
        assert by_link[r.id].after == {
            "participant_id": r.participant_id,
            "wave": "baseline",
            "expires_at": r.expires_at.isoformat(),
            "replaces": [],
        }
        assert by_link[r.id].study_id == study.id and by_link[r.id].source == "system"
    for pid in (kept["id"], revoked["id"], fresh["id"]):
        url = links[(pid, base)][1]
        assert "/f/" in url
        assert client.get("/f/" + url.rsplit("/", 1)[1]).status_code == 200

    # A second batch reuses every link it issued.
    with Session(engine, expire_on_commit=False) as s:
        again, _ = live_links(s, pairs, Actor.system(), settings)
        s.commit()
    assert {k: v[1] for k, v in again.items()} == {k: v[1] for k, v in links.items()}
