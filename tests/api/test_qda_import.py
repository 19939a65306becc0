"""Imports from Taguette (its own files) and code conflicts: report, then merge, rename or skip."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "qualitative" / "data" / "taguette"


@pytest.fixture
def study(make_study, enrol):
    s = make_study()
    enrol(s, site="north", study_code="TG-001")
    enrol(s, site="north", study_code="TG-002")
    return s


def _import(client, study, headers, name, expect=201, **form):
    r = client.post(
        f"/studies/{study.id}/refi/import",
        headers=headers,
        data=form,
        files={"file": (name, (DATA / name).read_bytes(), "application/octet-stream")},
    )
    assert r.status_code == expect, r.text
    return r.json()


def _codes(client, study, headers):
    rows = client.get(f"/studies/{study.id}/codes", headers=headers).json()
    by_id = {c["id"]: c for c in rows}
    return {
        c["key"]: (c["name"], by_id[c["parent_id"]]["key"] if c.get("parent_id") else None, c["codable"]) for c in rows
    }


def test_taguette_project_import_keeps_documents_hierarchy_and_highlights(client, study, admin, analyst):
    report = _import(client, study, admin.headers, "project.sqlite3")
    assert report["format"] == "taguette"
    assert (report["codes_created"], report["transcripts"], report["codings"]) == (5, 2, 6)
    assert report["unmatched_participants"] == 0
    assert _codes(client, study, admin.headers) == {
        "barriers": ("Barriers", None, False),
        "barriers_travel": ("Travel", "barriers", True),
        "benefits": ("Benefits", None, True),
        "benefits_physical_activity": ("Physical activity", "benefits", True),
        "benefits_reduced_isolation": ("Reduced isolation", "benefits", True),
    }
    ts = client.get(f"/studies/{study.id}/transcripts", headers=analyst.headers).json()
    assert sorted(t["participants"] for t in ts) == [["TG-001"], ["TG-002"]]
    code_id = next(
        c["id"]
        for c in client.get(f"/studies/{study.id}/codes", headers=admin.headers).json()
        if c["key"] == "benefits_reduced_isolation"
    )
    segs = client.get(f"/studies/{study.id}/codes/{code_id}/segments", headers=analyst.headers)
    assert segs.status_code == 200, segs.text
    texts = sorted(s["text"] for s in segs.json())
    assert texts == ["Honestly I was lonely before.", "I felt less alone after the second session."]


def test_taguette_codebook_csv_import_and_export_with_bom(client, study, admin, analyst):
    report = _import(client, study, admin.headers, "codebook.csv")
    assert report["format"] == "codebook_csv" and report["codes_created"] == 5
    r = client.get(f"/studies/{study.id}/codebook.csv", headers=analyst.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("tag,description,number of highlights,number of documents,key")
    assert any(line.startswith("Barriers.Travel,Getting to sessions,0,0,barriers_travel") for line in lines)


def test_a_clashing_code_is_reported_then_merged_renamed_or_skipped(client, study, admin):
    r = client.post(f"/studies/{study.id}/codes", headers=admin.headers, json={"name": "Benefits", "codable": False})
    assert r.status_code == 201 and r.json()["key"] == "benefits"
    r = client.post(
        f"/studies/{study.id}/refi/import",
        headers=admin.headers,
        files={"file": ("codebook.qdc", (DATA / "codebook.qdc").read_bytes(), "application/xml")},
    )
    assert r.status_code == 409, r.text
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "on_conflict"] and err["type"] == "code_conflict"
    assert err["conflicts"] == [
        {
            "key": "benefits",
            "differs": ["codable"],
            "study": {"name": "Benefits", "codable": False, "parent": None},
            "incoming": {"name": "Benefits", "codable": True, "parent": None},
        }
    ]
    assert list(_codes(client, study, admin.headers)) == ["benefits"]  # nothing written

    renamed = _import(client, study, admin.headers, "codebook.qdc", on_conflict="rename")
    assert renamed["codes_renamed"] == 1 and renamed["conflicts"][0]["key"] == "benefits"
    codes = _codes(client, study, admin.headers)
    assert codes["benefits"] == ("Benefits", None, False) and codes["benefits_2"] == ("Benefits", None, True)
    assert codes["benefits_reduced_isolation"][1] == "benefits_2"


def test_merge_and_skip(client, make_study, enrol, admin):
    for choice in ("merge", "skip"):
        s = make_study()
        enrol(s, site="north", study_code="TG-001")
        client.post(f"/studies/{s.id}/codes", headers=admin.headers, json={"name": "Benefits", "codable": False})
        report = _import(client, s, admin.headers, "project.sqlite3", on_conflict=choice)
        codes = _codes(client, s, admin.headers)
        if choice == "merge":
            assert report["codes_existing"] == 1 and report["codings_skipped"] == 0 and report["codings"] == 6
            assert codes["benefits_reduced_isolation"][1] == "benefits" and codes["benefits"][2] is False
        else:
            assert report["codes_skipped"] == 1 and report["codings_skipped"] == 2 and report["codings"] == 4
            assert codes["benefits_reduced_isolation"][1] is None  # its parent was skipped


def test_bad_files_and_choices_are_422(client, study, admin):
    for name, content in (("x.csv", b"code,description\nA,b\n"), ("x.sqlite3", b"SQLite format 3\x00" + b"\x00" * 100)):
        r = client.post(
            f"/studies/{study.id}/refi/import", headers=admin.headers, files={"file": (name, content, "text/csv")}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"], r.text
    r = client.post(
        f"/studies/{study.id}/refi/import",
        headers=admin.headers,
        data={"on_conflict": "overwrite"},
        files={"file": ("codebook.csv", (DATA / "codebook.csv").read_bytes(), "text/csv")},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "on_conflict"]


def test_qdpx_export_carries_cases_and_variables_with_registered_sources(client, study, admin, analyst):
    import io
    import zipfile

    from lxml import etree

    from api.transcripts.cases import register_case_variables, unregister_case_variables

    _import(client, study, admin.headers, "project.sqlite3")

    def dose(session, study_, participants):
        return {p.study_code: {"sessions_attended": 4 + i} for i, p in enumerate(participants)}

    register_case_variables(dose)
    try:
        r = client.get(f"/studies/{study.id}/refi/project.qdpx", headers=analyst.headers)
    finally:
        unregister_case_variables(dose)
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        qde = etree.fromstring(z.read("project.qde"))
    schema = etree.XMLSchema(etree.parse(str(DATA.parent / "Project.xsd")))
    schema.assertValid(qde)
    ns = {"q": "urn:QDA-XML:project:1.0"}
    variables = {
        v.get("guid"): (v.get("name"), v.get("typeOfVariable")) for v in qde.findall("q:Variables/q:Variable", ns)
    }
    assert sorted(variables.values()) == [
        ("arm", "Text"),
        ("sessions_attended", "Integer"),
        ("site", "Text"),
        ("status", "Text"),
    ]
    cases = {}
    for case in qde.findall("q:Cases/q:Case", ns):
        values = {}
        for vv in case.findall("q:VariableValue", ns):
            name = variables[vv.find("q:VariableRef", ns).get("targetGUID")][0]
            values[name] = vv[1].text
        cases[case.get("name")] = (values, len(case.findall("q:SourceRef", ns)))
    arms = {}
    for code, (values, _) in cases.items():
        arms[code] = values.pop("arm")  # randomised at enrolment
    # an analyst-facing export: the blinded study's arms are its neutral letters, as analysts read them
    assert set(arms.values()) <= {"A", "B", "C"}
    participants = client.get(f"/studies/{study.id}/participants", headers=analyst.headers).json()
    assert arms == {p["study_code"]: p["arm"] for p in participants}
    assert cases == {
        "TG-001": ({"site": "north", "status": "active", "sessions_attended": "4"}, 1),
        "TG-002": ({"site": "north", "status": "active", "sessions_attended": "5"}, 1),
    }
