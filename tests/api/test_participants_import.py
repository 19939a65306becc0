"""Enrolment from a participants CSV: dry run, one transaction, row and column named, identifiers to the vault."""

from __future__ import annotations


def _upload(client, user, study, text, dry_run=False):
    return client.post(
        f"/studies/{study.id}/imports/participants",
        files={"file": ("people.csv", text.encode(), "text/csv")},
        data={"dry_run": str(dry_run).lower()},
        headers=user.headers,
    )


def _count(client, admin, study):
    r = client.get(f"/studies/{study.id}/participants", headers=admin.headers)
    assert r.status_code == 200
    body = r.json()
    return len(body["items"] if isinstance(body, dict) else body)


GOOD = (
    "study_code,site,enrolled_on,consent_date,consent_version,arm,name,email,phone,preferred_channel\n"
    "IMP-001,north,2026-02-02,2026-02-01,v1,,Ada Quillfeather,ada.q@example.org,,email\n"
    "IMP-002,south,2026-02-03,2026-02-03,v1,usual_care,,,+44 7700 900123,sms\n"
    ",north,2026-02-04,2026-02-04,v1,group,,,,\n"
)


def test_dry_run_then_import_enrols_randomises_and_vaults_identifiers(client, admin, analyst, make_study):
    study = make_study()
    before = _count(client, admin, study)
    dry = _upload(client, admin, study, GOOD, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.json()["counts"] == {"rows": 3, "participants_created": 3, "randomised": 1}
    assert dry.json()["committed"] is False and _count(client, admin, study) == before
    real = _upload(client, admin, study, GOOD)
    assert real.status_code == 200 and real.json()["committed"] is True
    assert _count(client, admin, study) == before + 3
    people = client.get(f"/studies/{study.id}/participants", headers=admin.headers).json()
    people = people["items"] if isinstance(people, dict) else people
    by_code = {p["study_code"]: p for p in people}
    assert by_code["IMP-002"]["arm"] == "usual_care" and by_code["IMP-001"]["arm"] is not None  # randomised
    staff = client.get(f"/participants/{by_code['IMP-001']['id']}", headers=admin.headers).json()
    assert staff["contact"]["email"] == "ada.q@example.org"
    seen = client.get(f"/participants/{by_code['IMP-001']['id']}", headers=analyst.headers)
    assert "ada.q@example.org" not in seen.text and "Quillfeather" not in seen.text
    audit = client.get("/audit", params={"entity": "study", "action": "import"}, headers=admin.headers).json()
    assert any(e["after"].get("format") == "participants_csv" for e in audit)


def test_a_bad_file_writes_nothing_and_names_row_and_column_without_identifiers(client, admin, make_study):
    study = make_study()
    before = _count(client, admin, study)
    text = (
        "study_code,site,enrolled_on,consent_date,consent_version,email\n"
        "OK-1,north,2026-02-02,2026-02-02,v1,\n"
        "BAD-1,north,2099-01-01,2026-02-02,v1,\n"  # enrolment in the future
        "BAD-2,east,2026-02-02,2026-02-02,v1,\n"  # no such site
        "BAD-3,north,2026-02-02,2026-02-02,v1,not-an-address-secretname\n"
        "OK-1,south,2026-02-02,2026-02-02,v1,\n"  # the code is taken by row 1
        "BAD-4,north,2026-02-02,2026-02-05,v1,\n"  # consent after enrolment
    )
    r = _upload(client, admin, study, text)
    assert r.status_code == 422, r.text
    got = {(d["loc"][2], d["loc"][3]) for d in r.json()["detail"]}
    assert {(2, "enrolled_on"), (3, "site"), (4, "email"), (5, "study_code")} <= got
    assert any(row == 6 for row, _ in got)
    assert "secretname" not in r.text  # a rejected identifier is not echoed
    assert _count(client, admin, study) == before


def test_a_coordinator_imports_into_their_own_sites_only(client, admin, make_study, make_user):
    study = make_study()
    north = make_user("coordinator", site_ids=[study.sites["north"]])
    text = "site,enrolled_on,consent_date,consent_version\nsouth,2026-02-02,2026-02-02,v1\n"
    r = _upload(client, north, study, text)
    assert r.status_code == 422 and [(d["loc"][2], d["loc"][3]) for d in r.json()["detail"]] == [(1, "site")]
    missing = _upload(client, admin, study, "site,enrolled_on\nnorth,2026-02-02\n")
    assert missing.status_code == 422
    assert {d["loc"][3] for d in missing.json()["detail"]} == {"consent_date", "consent_version"}
