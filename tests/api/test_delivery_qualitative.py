"""Process evaluation feeds the qualitative layer: a supporter's vault name is redacted from
transcripts, and each participant's dose is a case variable of the REFI-QDA export."""

from __future__ import annotations

import io
import zipfile

from lxml import etree


def ok(r, status=201):
    assert r.status_code == status, r.text
    return r.json()


def test_supporter_names_are_redacted_and_dose_travels_as_a_case_variable(
    client, admin, analyst, make_study, enrol, engine
):
    study = make_study()
    sid, h = study.id, admin.headers
    plan = {"planned_sessions": 4, "session_minutes": 60, "frequency_days": 14, "adherence_threshold": 2}
    ok(client.put(f"/studies/{sid}/arms/group/delivery-plan", json=plan, headers=h), 200)
    supporter = {
        "code": "PS-Q1",
        "site": "north",
        "arm": "group",
        "prior_role": "volunteer",
        "start_date": "2025-11-01",
        "status": "active",
        "identifiers": {"name": "Philippa Ormerod-Vance"},
    }
    sup = ok(client.post(f"/studies/{sid}/delivery/supporters", json=supporter, headers=h))
    from sqlmodel import Session

    from api.studies.models import Study
    from api.transcripts.terms import study_terms

    with Session(engine) as s:
        assert "Philippa Ormerod-Vance" in study_terms(s, s.get(Study, sid))["PERSON"]  # from the supporter vault
    p = enrol(study, site="north", enrolled_on="2026-01-05", arm="group", study_code="DQ-001")
    group_body = {"code": "GQ", "site": "north", "arm": "group", "supporter_ids": [sup["id"]]}
    group = ok(client.post(f"/studies/{sid}/delivery/groups", json=group_body, headers=h))
    member = {"participant_id": p["id"], "joined_on": "2026-01-06"}
    ok(client.post(f"/delivery/groups/{group['id']}/members", json=member, headers=h))
    body = {"group_id": group["id"], "planned_date": "2026-01-20", "delivered_on": "2026-01-20", "duration_minutes": 60}
    session = ok(client.post(f"/studies/{sid}/delivery/sessions", json=body, headers=h))
    records = {"records": [{"participant_id": p["id"], "status": "attended"}]}
    ok(client.put(f"/delivery/sessions/{session['id']}/attendance", json=records, headers=h), 200)
    text = "Interviewer: Who helped you?\nDQ-001: Philippa was brilliant, Philippa Ormerod-Vance ran our group.\n"
    r = client.post(
        f"/studies/{sid}/transcripts",
        headers=h,
        data={"participants": "DQ-001"},
        files={"file": ("dq.txt", text.encode(), "text/plain")},
    )
    assert r.status_code == 201, r.text
    seen = client.get(f"/transcripts/{r.json()['id']}", headers=analyst.headers).json()["text"]
    assert "Philippa" not in seen and "Ormerod" not in seen
    qdpx = client.get(f"/studies/{sid}/refi/project.qdpx", headers=analyst.headers)
    assert qdpx.status_code == 200, qdpx.text
    with zipfile.ZipFile(io.BytesIO(qdpx.content)) as z:
        qde = etree.fromstring(z.read("project.qde"))
    ns = {"q": "urn:QDA-XML:project:1.0"}
    names = {v.get("guid"): v.get("name") for v in qde.findall("q:Variables/q:Variable", ns)}
    case = next(c for c in qde.findall("q:Cases/q:Case", ns) if c.get("name") == "DQ-001")
    values = {
        names[vv.find("q:VariableRef", ns).get("targetGUID")]: vv[1].text for vv in case.findall("q:VariableValue", ns)
    }
    assert values["sessions_attended"] == "1" and values["arm"] in ("A", "B", "C")
