"""The REDCap-compatible API, driven by the real REDCap client PyCap against a live `peerlens serve`.

Values PyCap reads are checked against the REST reads of the same data; imports go through the
submission path (scores computed, audit written); roles, sites and the analysts' de-identification
apply as on the REST routes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

redcap = pytest.importorskip("redcap")

SECRET = "test-secret"  # the suite's app settings (tests/conftest.py): the same date shift for analysts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(db_url, tmp_path_factory):
    """`peerlens serve` in its own process on the module's database."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "PEERLENS_SECRET_KEY": SECRET,
        "PEERLENS_ENV": "dev",
        "PEERLENS_ARTIFACT_DIR": str(tmp_path_factory.mktemp("live-artifacts")),
        "PEERLENS_BASE_URL": f"http://127.0.0.1:{port}",
    }
    exe = Path(sys.executable).with_name("peerlens")
    log = tmp_path_factory.mktemp("live") / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 60
            with httpx.Client(timeout=2) as poll:  # one client for every probe (each new one loads the CA bundle)
                while True:
                    try:
                        if poll.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                    time.sleep(0.3)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def _redcap_token(engine, role: str, site_ids=()) -> str:
    from sqlmodel import Session

    from api.auth.service import create_user, issue_token

    with Session(engine) as s:
        user = create_user(s, f"{role}-rc-{os.urandom(4).hex()}@test.peerlens.org", role, list(site_ids))
        token = issue_token(s, user, redcap=True)
        s.commit()
    assert len(token) == 32
    return token


@pytest.fixture(scope="module")
def study(client, admin, make_study, enrol):
    s = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "gad7"]), ("m3", 90, 14, 14, ["phq9"])))
    people = []
    for i, site in enumerate(("north", "north", "south")):
        p = enrol(s, site=site, enrolled_on="2026-01-05")
        people.append(p)
        for wave, inst, n, at in (
            ("baseline", "phq9", 9, "2026-01-06T10:00:00Z"),
            ("baseline", "gad7", 7, "2026-01-06T10:05:00Z"),
            ("m3", "phq9", 9, "2026-04-06T10:00:00Z"),
        ):
            answers = {f"{inst}_{k}": (i + k) % 4 for k in range(1, n + 1)}
            r = client.post(
                f"/participants/{p['id']}/responses",
                json={"wave": wave, "instrument": inst, "answers": answers, "completed_at": at},
                headers=admin.headers,
            )
            assert r.status_code == 201, r.text
    # A fourth person stopped after 4 of 9 PHQ-9 items: a partial response, REDCap status 0.
    p = enrol(s, site="south", enrolled_on="2026-01-05")
    people.append(p)
    r = client.post(
        f"/participants/{p['id']}/responses",
        json={"wave": "baseline", "instrument": "phq9", "answers": {f"phq9_{k}": 1 for k in range(1, 5)}},
        headers=admin.headers,
    )
    assert r.status_code == 201 and r.json()["status"] == "partial", r.text
    return {"study": s, "people": people}


def _project(live, study, token):
    return redcap.Project(f"{live}/studies/{study['study'].id}/redcap/api/", token)


def test_pycap_reads_metadata_events_and_mappings(live, engine, study):
    proj = _project(live, study, _redcap_token(engine, "admin"))
    meta = proj.export_metadata(format_type="df")
    assert meta.index[0] == "record_id" and proj.def_field == "record_id"
    assert meta.loc["phq9_1", "form_name"] == "phq9" and meta.loc["phq9_1", "field_type"] == "radio"
    assert meta.loc["phq9_1", "select_choices_or_calculations"].startswith("0, Not at all")
    assert proj.is_longitudinal
    mapping = proj.export_instrument_event_mappings()
    assert {(m["unique_event_name"], m["form"]) for m in mapping} == {
        ("baseline_arm_1", "phq9"),
        ("baseline_arm_1", "gad7"),
        ("m3_arm_1", "phq9"),
    }
    events = proj.export_events()
    assert [e["unique_event_name"] for e in events] == ["baseline_arm_1", "m3_arm_1"]
    assert [i["instrument_name"] for i in proj.export_instruments()] == ["phq9", "gad7"]
    assert proj.export_version().major >= 0  # Peerlens' own release number


def test_pycap_records_equal_the_rest_reads(live, engine, client, admin, study):
    proj = _project(live, study, _redcap_token(engine, "admin"))
    df = proj.export_records(format_type="df")
    assert df.index.names == ["record_id", "redcap_event_name"]
    for p in study["people"]:
        rest = client.get(f"/participants/{p['id']}/responses", headers=admin.headers).json()
        for r in rest:
            row = df.loc[(p["study_code"], f"{r['wave']}_arm_1")]
            for item, value in r["answers"].items():
                assert row[item] == value, (p["study_code"], r["wave"], item)
            assert row[f"{r['instrument']}_complete"] == (2 if r["status"] == "complete" else 0)
    # Filters: one record, one form, one event.
    assert df.loc[(study["people"][3]["study_code"], "baseline_arm_1"), "phq9_complete"] == 0
    code = study["people"][0]["study_code"]
    one = proj.export_records(records=[code], forms=["gad7"], events=["baseline_arm_1"])
    assert len(one) == 1 and one[0]["record_id"] == code and "phq9_1" not in one[0] and one[0]["gad7_1"] != ""
    labelled = proj.export_records(records=[code], fields=["phq9_1"], raw_or_label="label")
    assert {r["phq9_1"] for r in labelled} <= {
        "Not at all",
        "Several days",
        "More than half the days",
        "Nearly every day",
    }


def test_pycap_import_goes_through_the_submission_path(live, engine, client, admin, study):
    proj = _project(live, study, _redcap_token(engine, "admin"))
    code = study["people"][2]["study_code"]
    new = {"record_id": code, "redcap_event_name": "m3_arm_1", "gad7_complete": "2"}
    new.update({f"gad7_{k}": "3" for k in range(1, 8)})
    # gad7 is not listed at m3: the importer adds it to the wave and warns, as the REDCap import does.
    assert proj.import_records([new]) == {"count": 1}
    rest = client.get(f"/participants/{study['people'][2]['id']}/responses", headers=admin.headers).json()
    gad = next(r for r in rest if r["wave"] == "m3" and r["instrument"] == "gad7")
    assert {s["scale"]: s["value"] for s in gad["scores"]}["gad7"] == 21  # scored on import
    audit = client.get("/audit", params={"entity": "response", "entity_id": gad["id"]}, headers=admin.headers)
    events = audit.json()
    assert audit.status_code == 200 and [e["action"] for e in events] == ["create"]
    assert events[0]["source"] == "import" and events[0]["entity_id"] == str(gad["id"])
    # A value outside the options is refused in REDCap's error shape, and nothing is written.
    bad = dict(new, redcap_event_name="baseline_arm_1", gad7_1="9")
    with pytest.raises(redcap.RedcapError, match="gad7_1"):
        proj.import_records([bad])


def test_roles_sites_and_deidentification_hold(live, engine, client, analyst, study):
    from api.auth.service import hash_token  # noqa: F401 (the token format is checked above)

    url = f"{live}/studies/{study['study'].id}/redcap/api/"
    north = study["study"].sites["north"]
    coordinator = _project(live, study, _redcap_token(engine, "coordinator", [north]))
    codes = {r["record_id"] for r in coordinator.export_records(fields=["record_id"])}
    assert codes == {p["study_code"] for p in study["people"][:2]}  # site north only
    analyst_proj = _project(live, study, _redcap_token(engine, "analyst"))
    with pytest.raises(redcap.RedcapError):
        analyst_proj.import_records([{"record_id": "X", "redcap_event_name": "baseline_arm_1"}])
    stamps = analyst_proj.export_records(export_survey_fields=True, fields=["phq9_1"])
    assert stamps and all(not r.get("phq9_timestamp", "").startswith("2026-01-06") for r in stamps)
    bad = httpx.post(url, data={"token": "0" * 32, "content": "record", "format": "json"})
    assert bad.status_code == 403 and bad.json() == {"error": "You do not have permissions to use the API"}
    other = httpx.post(url, data={"token": "0" * 32, "content": "record", "format": "csv"})
    assert other.text.startswith("ERROR:")
    unsupported = httpx.post(url, data={"token": _redcap_token(engine, "admin"), "content": "log", "format": "json"})
    assert unsupported.status_code == 400 and "not supported" in unsupported.json()["error"]
