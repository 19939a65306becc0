"""Joint displays through the service: trajectory × theme, case matrix, HTML, GET writes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from api.audit.models import AuditEvent
from tests.conftest import phq9_answers

# PHQ-9 totals at baseline and m3 (lower is better): changes of -9 per step of 1 in every item.
PLAN = {"JM-1": (2, 1), "JM-2": (2, 0), "JM-3": (1, 1), "JM-4": (1, 2), "JM-5": (3, 2), "JM-6": (1, 1)}
THEMED = {"JM-1", "JM-2", "JM-4"}


@pytest.fixture
def study(client, make_study, enrol, admin):
    s = make_study()
    code = client.post(
        f"/studies/{s.id}/codes", headers=admin.headers, json={"name": "Reduced isolation", "key": "reduced_isolation"}
    ).json()
    for sc, (b, f) in PLAN.items():
        p = enrol(s, site="north", study_code=sc, enrolled_on="2025-06-02")
        for wave, v, when in (("baseline", b, "2025-06-03T10:00:00Z"), ("m3", f, "2025-09-01T10:00:00Z")):
            r = client.post(
                f"/participants/{p['id']}/responses",
                headers=admin.headers,
                json={"wave": wave, "instrument": "phq9", "answers": phq9_answers(v), "completed_at": when},
            )
            assert r.status_code == 201, r.text
        text = f"Interviewer: How are you?\n{sc}: Since the group I feel less alone, number {sc[-1]}.\n"
        r = client.post(
            f"/studies/{s.id}/transcripts",
            headers=admin.headers,
            data={"participants": sc},
            files={"file": (f"{sc}.txt", text.encode(), "text/plain")},
        )
        assert r.status_code == 201, r.text
        t = r.json()
        if sc in THEMED:
            start = t["text"].index("Since")
            r = client.post(
                f"/transcripts/{t['id']}/codings",
                headers=admin.headers,
                json={"code_id": code["id"], "start": start, "end": len(t["text"].rstrip())},
            )
            assert r.status_code == 201, r.text
    return s


def _audit_count(engine):
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(AuditEvent)).one()


def test_trajectory_matrix_and_html(client, study, analyst, engine):
    params = {"theme": "reduced_isolation", "scale": "phq9", "mcid": 5, "higher_is_better": "false"}
    before = _audit_count(engine)
    r = client.get(f"/studies/{study.id}/qualitative/trajectory-matrix", params=params, headers=analyst.headers)
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    # Changes: JM-1 -9, JM-2 -18, JM-5 -9 improved; JM-3, JM-6 0 no change; JM-4 +9 worsened.
    by = {}
    for row in rows:
        by.setdefault(row["trajectory"], [0, 0, []])
        by[row["trajectory"]][0] += row["n_group"]
        by[row["trajectory"]][1] += row["n_theme"]
        by[row["trajectory"]][2] += row["quotes"]
    assert by["improved"][:2] == [3, 2] and by["no change"][:2] == [2, 0] and by["worsened"][:2] == [1, 1]
    quotes = [q for v in by.values() for q in v[2]]
    assert len(quotes) == len(set(quotes)) == 3
    html = client.get(
        f"/studies/{study.id}/qualitative/trajectory-matrix",
        params={**params, "format": "html"},
        headers=analyst.headers,
    )
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.text.startswith('<table class="joint-display"><caption>phq9: improved')
    # Reads write nothing: no audit rows.
    g = client.get(
        f"/studies/{study.id}/qualitative/joint-display",
        params={"theme": "reduced_isolation", "scale": "phq9"},
        headers=analyst.headers,
    )
    assert g.status_code == 200 and g.json()["plot_url"] is None
    row = g.json()["rows"][0]
    assert row["p"] is not None and row["p_bh"] is not None and "small groups" in row["warning"]
    assert _audit_count(engine) == before


def test_case_matrix_sort_and_errors(client, study, analyst):
    base = {"theme": "reduced_isolation", "scale": "phq9", "mcid": 5, "higher_is_better": "false"}
    r = client.get(
        f"/studies/{study.id}/qualitative/case-matrix",
        params={**base, "sort": "change,participant"},
        headers=analyst.headers,
    )
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert [x["participant"] for x in rows] == ["JM-2", "JM-1", "JM-5", "JM-3", "JM-6", "JM-4"]
    assert {x["participant"]: x["theme:reduced_isolation"] for x in rows} == {k: int(k in THEMED) for k in PLAN}
    assert {"site", "status", "trajectory"} <= set(rows[0])
    for params, loc in (
        ({**base, "sort": "nope"}, ["query", "sort"]),
        ({**base, "scale": "zzz"}, ["query", "scale"]),
        ({**base, "mcid": 0}, ["query", "mcid"]),
        ({**base, "theme": "nope"}, ["query", "theme", 0]),
    ):
        rr = client.get(f"/studies/{study.id}/qualitative/case-matrix", params=params, headers=analyst.headers)
        assert rr.status_code == 422 and rr.json()["detail"][0]["loc"] == loc, rr.text


def test_meta_inferences_are_stored_audited_shown_and_exported(client, study, admin, analyst, engine):
    url = f"/studies/{study.id}/qualitative/meta-inferences"
    body = {"theme": "reduced_isolation", "scale": "phq9", "inference": "confirmation", "note": "=both agree"}
    r = client.put(url, json=body, headers=admin.headers)
    assert r.status_code == 200, r.text
    r = client.put(
        url, json={**body, "inference": "discordance", "note": "themed JM-4 worsened"}, headers=admin.headers
    )
    assert r.status_code == 200 and r.json()["inference"] == "discordance"
    assert client.put(url, json=body, headers=analyst.headers).status_code == 403
    for bad, loc in (
        ({**body, "inference": "maybe"}, ["body", "inference"]),
        ({**body, "theme": "nope"}, ["body", "theme"]),
        ({**body, "extra": 1}, ["body", "extra"]),
    ):
        rr = client.put(url, json=bad, headers=admin.headers)
        assert rr.status_code == 422 and rr.json()["detail"][0]["loc"] == loc, rr.text
    listed = client.get(url, headers=analyst.headers).json()
    assert [(m["theme"], m["scale"], m["inference"]) for m in listed] == [("reduced_isolation", "phq9", "discordance")]
    csv_ = client.get(url, params={"format": "csv"}, headers=analyst.headers)
    assert csv_.content.startswith(b"\xef\xbb\xbf") and "discordance" in csv_.text
    g = client.get(
        f"/studies/{study.id}/qualitative/joint-display",
        params={"theme": "reduced_isolation", "scale": "phq9"},
        headers=analyst.headers,
    ).json()
    assert g["rows"][0]["meta_inference"] == "discordance" and g["rows"][0]["meta_note"] == "themed JM-4 worsened"
    with Session(engine) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.entity == "meta_inference")).all()
    assert [e.action for e in events][-2:] == ["create", "update"]
    assert events[-1].before["inference"] == "confirmation" and events[-1].after["inference"] == "discordance"


def test_reliable_change_instead_of_mcid(client, study, analyst):
    base = {"theme": "reduced_isolation", "scale": "phq9", "higher_is_better": "false"}
    url = f"/studies/{study.id}/qualitative/case-matrix"
    r = client.get(url, params={**base, "reliability": 0.84}, headers=analyst.headers)
    assert r.status_code == 200, r.text
    # Baseline PHQ-9 totals 18, 18, 9, 9, 27, 9: SD 7.35; 1.96 * 7.35 * sqrt(0.32) = 8.15, so the
    # changes of 9 and 18 points are reliable and 0 is not.
    got = {x["participant"]: x["trajectory"] for x in r.json()["rows"]}
    assert got == {
        "JM-1": "improved",
        "JM-2": "improved",
        "JM-3": "no change",
        "JM-4": "worsened",
        "JM-5": "improved",
        "JM-6": "no change",
    }
    for params in ({**base}, {**base, "mcid": 5, "reliability": 0.8}):
        rr = client.get(url, params=params, headers=analyst.headers)
        assert rr.status_code == 422 and rr.json()["detail"][0]["loc"] == ["query", "mcid"], rr.text
    rr = client.get(url, params={**base, "reliability": 1}, headers=analyst.headers)
    assert rr.status_code == 422 and rr.json()["detail"][0]["loc"] == ["query", "reliability"]
