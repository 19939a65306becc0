"""REDCap interoperability: import a data dictionary and a longitudinal records export through
submit_response(mode="import"), the report of what could not be mapped, dry runs and all-or-nothing
transactions, and a Peerlens → REDCap → Peerlens round trip."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from sqlmodel import Session, func, select

import instruments
from api.audit.models import AuditEvent
from api.participants.models import Participant
from api.responses.models import Response, Score

DATA = Path(__file__).parent / "data"
EVENTS = {"baseline_arm_1": "baseline", "month_3_arm_1": "m3"}
PHQ = {
    ("RC-001", "baseline"): [1, 2, 1, 0, 3, 1, 2, 1, 0],
    ("RC-001", "m3"): [0, 1, 1, 0, 1, 1, 0, 1, 0],
    ("RC-002", "baseline"): [3, 3, 2, 2, 3, 3, 2, 2, 1],
    ("RC-003", "baseline"): [0, 0, 1, 0, 0, 1, 0, 0, 0],
}


@pytest.fixture(autouse=True, scope="module")
def _forget_imported():
    yield
    instruments.unregister("wellbeing_rc")


def _post(client, user, study_id, records: bytes, *, events=EVENTS, dictionary: bytes | None = None, **form):
    files = {"records": ("records.csv", records, "text/csv")}
    if dictionary is not None:
        files["dictionary"] = ("dictionary.csv", dictionary, "text/csv")
    data = {
        "event_map": json.dumps(events) if isinstance(events, dict) else events,
        **{k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()},
    }
    return client.post(f"/studies/{study_id}/imports/redcap", files=files, data=data, headers=user.headers)


def _count(engine, model, **where):
    with Session(engine) as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return s.exec(stmt).one()


def _study_counts(engine, study_id):
    return (_count(engine, Participant, study_id=study_id), _count(engine, Response, study_id=study_id))


def test_dry_run_reports_and_writes_nothing(client, admin, make_study, engine):
    study = make_study()
    r = _post(
        client,
        admin,
        study.id,
        (DATA / "redcap_records.csv").read_bytes(),
        dictionary=(DATA / "redcap_dictionary.csv").read_bytes(),
        default_site="north",
        dry_run=True,
    )
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["ok"] and rep["dry_run"] and not rep["committed"]
    # RC-002's baseline PHQ-9: item 9 = 1 and total 21, two alert rules met (rolled back with the dry run)
    assert rep["counts"] == {"rows": 6, "participants_created": 3, "responses": 6, "safety_alerts": 2}
    assert rep["unmapped_events"] == {"screening_arm_1": 1}
    assert rep["unmapped_fields"] == ["legacy_flag"]
    assert rep["instruments"] in (
        {"phq9": "built-in", "wellbeing_rc": "imported"},
        {"phq9": "built-in", "wellbeing_rc": "shared"},
    )
    kinds = {w["kind"] for w in rep["warnings"]}
    assert {"repeating_instance_skipped", "unsupported_field_type", "form_added_to_wave"} <= kinds
    rep_row = next(w for w in rep["warnings"] if w["kind"] == "repeating_instance_skipped")
    assert rep_row["row"] == 3 and rep_row["record"] == "RC-001"
    assert _study_counts(engine, study.id) == (0, 0)
    with pytest.raises(instruments.InstrumentError):
        instruments.get("wellbeing_rc")  # a dry run leaves no instrument registered


def test_import_scores_through_the_submission_service(client, admin, make_study, engine):
    study = make_study()
    r = _post(
        client,
        admin,
        study.id,
        (DATA / "redcap_records.csv").read_bytes(),
        dictionary=(DATA / "redcap_dictionary.csv").read_bytes(),
        default_site="north",
    )
    assert r.status_code == 200, r.text
    assert r.json()["committed"] is True
    with Session(engine) as s:
        people = {p.study_code: p for p in s.exec(select(Participant).where(Participant.study_id == study.id))}
        assert set(people) == {"RC-001", "RC-002", "RC-003"}
        assert people["RC-002"].site_id == study.sites["south"] and people["RC-003"].site_id == study.sites["north"]
        # enrolment back-dated from the baseline timestamp (offset 0)
        assert str(people["RC-001"].enrolled_on) == "2026-01-06"
        rows = s.exec(select(Response).where(Response.study_id == study.id)).all()
        assert {r.mode for r in rows} == {"import"}
        waves = {w: i for w, i in study.waves.items()}
        inv = {i: w for w, i in waves.items()}
        for resp in rows:
            if resp.instrument != "phq9":
                continue
            code = next(c for c, p in people.items() if p.id == resp.participant_id)
            score = s.exec(select(Score).where(Score.response_id == resp.id, Score.scale == "phq9")).one()
            assert score.value == sum(PHQ[(code, inv[resp.wave_id])])
        wb = [r for r in rows if r.instrument == "wellbeing_rc"]
        assert len(wb) == 2 and {r.answers["wb_steps"] for r in wb} == {5200, 800}
        assert str(next(r for r in wb if r.answers["wb_steps"] == 5200).completed_at) == "2026-01-06 10:00:00+00:00"
        audits = s.exec(
            select(AuditEvent).where(
                AuditEvent.study_id == study.id, AuditEvent.source == "import", AuditEvent.entity == "response"
            )
        ).all()
        assert len(audits) == 6
        # identifier items are audited by marker, never by value
        assert all("ZQX" not in json.dumps(a.after) for a in audits)
        imp = s.exec(select(AuditEvent).where(AuditEvent.study_id == study.id, AuditEvent.action == "import")).one()
        assert imp.after["responses"] == 6


def test_invalid_value_rejects_the_whole_file_with_row_and_field(client, admin, make_study, engine):
    study = make_study()
    text = (
        (DATA / "redcap_records.csv")
        .read_text()
        .replace("RC-002,baseline_arm_1,,,south,3,3,2,2,3,3,2,2,1", "RC-002,baseline_arm_1,,,south,3,3,7,2,3,3,2,2,1")
    )
    r = _post(
        client,
        admin,
        study.id,
        text.encode(),
        dictionary=(DATA / "redcap_dictionary.csv").read_bytes(),
        default_site="north",
    )
    assert r.status_code == 422, r.text
    body = r.json()
    err = body["report"]["errors"][0]
    assert (err["kind"], err["row"], err["field"], err["record"]) == ("invalid_value", 4, "phq9_3", "RC-002")
    assert body["detail"][0]["loc"] == ["body", "records", 4, "phq9_3"] and body["detail"][0]["type"] == "invalid_value"
    assert _study_counts(engine, study.id) == (0, 0)


def test_new_record_without_site_is_an_error_not_a_500(client, admin, make_study, engine):
    study = make_study()
    r = _post(
        client,
        admin,
        study.id,
        (DATA / "redcap_records.csv").read_bytes(),
        dictionary=(DATA / "redcap_dictionary.csv").read_bytes(),
    )
    assert r.status_code == 422
    err = r.json()["report"]["errors"][0]
    assert err["kind"] == "unknown_site" and err["record"] == "RC-003" and err["row"] == 6
    assert _study_counts(engine, study.id) == (0, 0)


@pytest.mark.parametrize(
    "events,field", [("{not json", "event_map"), ('{"baseline_arm_1": "m99"}', "event_map"), ("[]", "event_map")]
)
def test_bad_event_map(client, admin, make_study, events, field):
    study = make_study()
    r = _post(client, admin, study.id, (DATA / "redcap_records.csv").read_bytes(), events=events, default_site="north")
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["detail"][0]["loc"])


def test_analyst_cannot_import_and_non_utf8_is_422(client, admin, analyst, make_study):
    study = make_study()
    r = _post(client, analyst, study.id, b"record_id\n1\n", events={"*": "baseline"})
    assert r.status_code == 403
    r = _post(
        client, admin, study.id, "record_id,phq9_1\nR1,\xff\n".encode("latin-1") + b"\xff", events={"*": "baseline"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "records"]
    r = client.post(f"/studies/{study.id}/imports/redcap", data={"event_map": "{}"}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "records"]


def test_round_trip_peerlens_redcap_peerlens(client, admin, make_study, enrol, engine):
    src = make_study()
    answers = {}
    for i, site in enumerate(("north", "south")):
        p = enrol(src, site=site, enrolled_on="2026-01-05")
        for wave, at, inst, vals in (
            ("baseline", "2026-01-06T10:00:00Z", "phq9", {f"phq9_{k}": (i + k) % 4 for k in range(1, 10)}),
            ("baseline", "2026-01-06T10:05:00Z", "gad7", {f"gad7_{k}": (k + i) % 4 for k in range(1, 8)}),
            ("m3", "2026-04-07T08:00:00Z", "phq9", {**{f"phq9_{k}": k % 4 for k in range(1, 10)}, "phq9_9": None}),
        ):
            r = client.post(
                f"/participants/{p['id']}/responses",
                json={"wave": wave, "instrument": inst, "answers": vals, "completed_at": at},
                headers=admin.headers,
            )
            assert r.status_code == 201, r.text
            answers[(p["study_code"], wave, inst)] = {k: v for k, v in vals.items() if v is not None}
    exported = client.get(f"/studies/{src.id}/exports/redcap", headers=admin.headers)
    assert exported.status_code == 200
    dictionary = client.get(f"/studies/{src.id}/exports/redcap/dictionary", headers=admin.headers)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0])[:3] == ["record_id", "redcap_event_name", "redcap_data_access_group"]
    assert {r["redcap_event_name"] for r in rows} == {"baseline_arm_1", "m3_arm_1"}
    first = next(r for r in rows if r["redcap_event_name"] == "m3_arm_1")
    assert first["phq9_complete"] == "2" and first["gad7_complete"] == "" and first["phq9_9"] == ""
    assert first["phq9_timestamp"] == "2026-04-07 08:00:00"
    dd = pd.read_csv(io.StringIO(dictionary.text), dtype=str)
    assert dd.columns[0] == "Variable / Field Name" and len(dd.columns) == 18 and dd.iloc[0, 0] == "record_id"

    dst = make_study()
    r = _post(
        client,
        admin,
        dst.id,
        exported.content,
        dictionary=dictionary.content,
        events={"baseline_arm_1": "baseline", "m3_arm_1": "m3"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["responses"] == 6 and not r.json()["unmapped_fields"]
    again = client.get(f"/studies/{dst.id}/exports/redcap", headers=admin.headers)
    assert again.text == exported.text
    with Session(engine) as s:
        got = {}
        for resp, code in s.exec(
            select(Response, Participant.study_code)
            .join(Participant, Participant.id == Response.participant_id)
            .where(Response.study_id == dst.id)
        ).all():
            wave = next(w for w, i in dst.waves.items() if i == resp.wave_id)
            got[(code, wave, resp.instrument)] = {k: v for k, v in resp.answers.items() if v is not None}
    assert got == answers


def test_analyst_redcap_export_is_deidentified(client, admin, analyst, make_study, enrol):
    study = make_study()
    p = enrol(study, contact={"name": "Octavia Plumtree", "email": "octavia.p@example.org"})
    r = client.post(
        f"/participants/{p['id']}/responses",
        json={
            "wave": "baseline",
            "instrument": "phq9",
            "answers": {f"phq9_{k}": 1 for k in range(1, 10)},
            "completed_at": "2026-01-06T10:00:00Z",
        },
        headers=admin.headers,
    )
    assert r.status_code == 201
    out = client.get(f"/studies/{study.id}/exports/redcap", headers=analyst.headers)
    assert out.status_code == 200 and "Plumtree" not in out.text and "octavia" not in out.text
    row = next(csv.DictReader(io.StringIO(out.text)))
    assert row["phq9_timestamp"] == "" and row["phq9_1"] == "1"


CONSORTIUM_DD = (
    "Variable / Field Name,Form Name,Section Header,Field Type,Field Label,"
    '"Choices, Calculations, OR Slider Labels",Field Note,Text Validation Type OR Show Slider Number,'
    "Text Validation Min,Text Validation Max,Identifier?\n"
    "record_id,intake_tc,,text,Record ID,,,,,,\n"
    'country_tc,intake_tc,,dropdown,Country of birth,"GB, United Kingdom | FR, France | US, United States",'
    "ISO 3166 code,autocomplete,,,\n"
    'cohort_tc,intake_tc,,radio,Cohort,"adult, Adult | ped, Paediatric",,,,,\n'
    'change_tc,intake_tc,,slider,Change since last visit,"Much worse | Same | Much better",,number,-10,10,\n'
)


def test_text_coded_choices_slider_limits_and_notes_round_trip(client, admin, analyst, make_study, enrol):
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]),))
    records = (
        "record_id,redcap_event_name,redcap_data_access_group,country_tc,cohort_tc,change_tc,intake_tc_complete\n"
        "TC-001,baseline_arm_1,north,FR,ped,-7,2\n"
    )
    try:
        r = _post(
            client,
            admin,
            study.id,
            records.encode(),
            events={"baseline_arm_1": "baseline"},
            dictionary=CONSORTIUM_DD.encode(),
        )
        assert r.status_code == 200, r.text
        inst = instruments.get("intake_tc")
        country = inst.item("country_tc")
        assert [(o.code, o.value, o.label) for o in country.options][:2] == [
            (1, "GB", "United Kingdom"),
            (2, "FR", "France"),
        ]
        assert "Field note: ISO 3166 code" in country.notes
        slider = inst.item("change_tc")
        assert (slider.min, slider.max) == (-10, 10) and "Much worse | Same | Much better" in slider.notes
        # Stored as the option's position, shown with its label, written back to REDCap as the text code.
        people = client.get(f"/studies/{study.id}/participants", headers=admin.headers).json()
        people = people["items"] if isinstance(people, dict) else people
        pid = next(p["id"] for p in people if p["study_code"] == "TC-001")
        stored = client.get(f"/participants/{pid}/responses", headers=admin.headers).json()
        answers = next(x for x in stored if x["instrument"] == "intake_tc")["answers"]
        assert answers == {"country_tc": 2, "cohort_tc": 2, "change_tc": -7}
        back = client.get(f"/studies/{study.id}/exports/redcap", headers=admin.headers).text
        row = dict(zip(*[line.split(",") for line in back.strip().splitlines()[:2]], strict=True))
        assert (row["country_tc"], row["cohort_tc"], row["change_tc"]) == ("FR", "ped", "-7")
        dd = client.get(f"/studies/{study.id}/exports/redcap/dictionary", headers=admin.headers).text
        assert "GB, United Kingdom | FR, France | US, United States" in dd
        wide = client.get(
            f"/studies/{study.id}/exports/wide/dictionary",
            params={"format": "json", "items": "true"},
            headers=analyst.headers,
        ).json()
        values = {c["name"]: c["values"] for c in wide["columns"]}
        assert {"code": 2, "label": "France"} in values["country_tc"]
        # A code that is not among the choices is refused, naming the field.
        bad = _post(
            client,
            admin,
            study.id,
            records.replace("TC-001", "TC-002").replace(",FR,", ",XX,").encode(),
            events={"baseline_arm_1": "baseline"},
        )
        assert bad.status_code == 422 and any(d["loc"][-1] == "country_tc" for d in bad.json()["detail"])
    finally:
        instruments.unregister("intake_tc")
