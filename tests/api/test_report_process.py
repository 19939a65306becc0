"""The report's intervention and process section from real delivery records entered through REST.

A small study (dates relative to today): peer support (a delivery plan of 4 sessions of 60 minutes,
"received" = at least 60 minutes of contact) and usual care (no plan, no description).

==  =====  ===================================  =========================================
    arm    one-to-one contacts                   by hand
==  =====  ===================================  =========================================
P1  peer   call 60 min, call 30 min              2 contacts, 90 min: received
P2  peer   call 20 min                           1 contact, 20 min: below the definition
P3  peer   none                                  never attended
U1  usual  none                                  no delivery plan: receipt not recorded
==  =====  ===================================  =========================================

Peer support's TIDieR description types items 1, 2 and 6; item 12 is generated from the plan, the
records and the fidelity ratings, item 10 from the (empty) adaptation log: 5/12 reported. Usual care:
item 10 only, 1/12. One peer supporter
(whose name must never appear) with two training records (3 h and 2.5 h).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from html import unescape

import pytest

OLD = date.today() - timedelta(days=100)
SUPPORTER_NAME = "Zelda Quackenbush"


def _ok(r, status=201):
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture(scope="module")
def small(client, admin):
    h = admin.headers
    sid = _ok(client.post("/studies", json={"title": "Telephone support pilot", "design": "rct"}, headers=h))["id"]
    _ok(client.post(f"/studies/{sid}/sites", json={"code": "north", "name": "North"}, headers=h))
    for code, name, kind in (("peer", "Peer calls", "intervention"), ("usual", "Usual care", "control")):
        body = {"code": code, "name": name, "kind": kind, "allocation_ratio": 1}
        _ok(client.post(f"/studies/{sid}/arms", json=body, headers=h))
    body = {"code": "baseline", "offset_days": 0, "window_before_days": 0, "window_after_days": 14}
    _ok(client.post(f"/studies/{sid}/waves", json=body | {"instruments": ["phq9"]}, headers=h))
    ids = {}
    for code, arm in (("P1", "peer"), ("P2", "peer"), ("P3", "peer"), ("U1", "usual")):
        body = {
            "study_code": code,
            "site": "north",
            "arm": arm,
            "enrolled_on": OLD.isoformat(),
            "consent": {"date": OLD.isoformat(), "version": "v1"},
        }
        ids[code] = _ok(client.post(f"/studies/{sid}/participants", json=body, headers=h))["id"]
    plan = {"planned_sessions": 4, "session_minutes": 60, "adherence_kind": "minutes", "adherence_threshold": 60}
    _ok(client.put(f"/studies/{sid}/arms/peer/delivery-plan", json=plan, headers=h), 200)
    items = {
        "1_name": "Peer calls",
        "2_why": "Social support theory: a peer who lives with diabetes models self-management",
        "6_how": "Telephone, one to one",
    }
    _ok(client.post(f"/studies/{sid}/arms/peer/tidier", json={"items": items}, headers=h))
    for code, minutes in (("P1", 60), ("P1", 30), ("P2", 20)):
        body = {"kind": "call", "on_date": (OLD + timedelta(days=10)).isoformat(), "duration_minutes": minutes}
        _ok(client.post(f"/participants/{ids[code]}/peer-contacts", json=body, headers=h))
    supporter = _ok(
        client.post(
            f"/studies/{sid}/delivery/supporters",
            json={
                "code": "PS-1",
                "site": "north",
                "arm": "peer",
                "start_date": (OLD - timedelta(days=30)).isoformat(),
                "status": "active",
                "identifiers": {"name": SUPPORTER_NAME},
            },
            headers=h,
        )
    )
    for kind, hours in (("certification", 3), ("supervision", 2.5)):
        body = {"kind": kind, "on_date": (OLD - timedelta(days=20)).isoformat(), "hours": hours}
        _ok(client.post(f"/delivery/supporters/{supporter['id']}/training", json=body, headers=h))
    return sid, ids


def _html(client, user, sid) -> str:
    out = _ok(client.post(f"/studies/{sid}/reports", json={"pdf": False}, headers=user.headers))
    return client.get(out["html_url"], headers=user.headers).text


def _section(html: str, key: str) -> str:
    start = html.index(f'<section id="{key}"')
    return html[start : html.index("</section>", start)]


def _text(fragment: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def test_tidier_dose_training_and_receipt_from_delivery_records(client, admin, small):
    sid, _ = small
    html = _html(client, admin, sid)
    sec = _section(html, "intervention")
    text = _text(sec)
    assert (
        "Delivery records: 1 delivery plans, 1 TIDieR description versions, 0 sessions, 3 one-to-one contacts" in text
    )
    assert "Peer calls TIDieR completeness: 5/12 items reported (description version 1)" in text
    assert "Usual care TIDieR completeness: 1/12 items reported (no description recorded)" in text
    assert "Social support theory" in text and "No modification was logged for this arm." in text
    assert (
        "3 participants; median sessions attended 0; 0 attended at least one session; "
        "1 adherent (minutes >= 60 (of 4 planned sessions)); fidelity rated at 0 of 0 delivered sessions"
    ) in text  # item 12, generated
    dose = _text(sec[sec.index('data-table="dose"') :].split("</table>")[0])
    # Peer: contacts 2, 1, 0 -> median 1 [0.5–1.5]; minutes 90, 20, 0 -> 20 [10–55]; 1 of 3 received.
    assert (
        "Peer calls 3 4 sessions of 60 min; received = minutes ≥ 60 0 [0–0] 0 [0–0] 0/3 20 [10–55] 1 [0.5–1.5] 1/3"
        in (dose)
    )
    assert "Usual care 1 no delivery plan 0 [0–0] 0 [0–0] 0/1 0 [0–0] 0 [0–0] no adherence definition" in dose
    assert "Peer supporters: 1, of whom 1 with a training record; 2 training events, 5.5 hours in all" in text
    assert "No fidelity ratings recorded" in text and "Adaptations logged: 0" in text
    assert SUPPORTER_NAME not in html and "PS-1" not in html
    # The CONSORT box: received the allocated intervention by the arm's adherence definition.
    flow = _text(_section(html, "flow"))
    assert "Received allocated intervention (n=1)" in flow and "Did not receive allocated intervention (n=2)" in flow
    assert "never attended (n=1)" in flow and "below the adherence definition (n=1)" in flow
    assert "No delivery records" not in html


def test_a_blind_reader_gets_the_section_withheld(client, analyst, small):
    sid, _ = small
    html = _html(client, analyst, sid)
    text = _text(_section(html, "intervention"))
    assert "withheld while the study is blinded to this reader" in text
    assert "Peer calls" not in html and "Usual care" not in html and "Social support theory" not in html
    assert 'data-table="dose"' not in html
    assert "Delivery records: 1 delivery plans" in text  # counts that do not tell the arms apart


def test_without_delivery_records_the_section_says_so(client, admin, make_study):
    study = make_study()
    html = _html(client, admin, study.id)
    assert "No delivery records: the TIDieR checklist, dose and fidelity need them." in _section(html, "intervention")
