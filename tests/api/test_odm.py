"""CDISC ODM 1.3.2 export: valid against the schema CDISC publishes, read back by a third-party ODM
library (odmlib), values equal to the REST reads, and the same role rules as every export."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import pam13_answers, phq9_answers

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}


def _schema_dir() -> Path:
    """The ODM 1.3.2 schema files (ODM1-3-2.xsd, its foundation, xml.xsd, xmldsig) as odmlib ships them."""
    import odmlib

    return Path(odmlib.__file__).parent / "schemas" / "odm" / "1.3.2"


def odm_schema() -> etree.XMLSchema:
    # odmlib's copy is CDISC's published 1.3.2 schema with one extra optional OID attribute on KeySet
    # (an element this export never writes); no_network: the schema must resolve from these files alone.
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(_schema_dir() / "ODM1-3-2.xsd"), parser))


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return odm_schema()


def _valid(schema: etree.XMLSchema, body: bytes) -> etree._Element:
    doc = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    if not schema.validate(doc):
        pytest.fail("ODM does not validate:\n" + "\n".join(str(e) for e in list(schema.error_log)[:10]))
    return doc


@pytest.fixture(scope="module")
def populated(client, admin, make_study, enrol):
    """A study with two sites, PHQ-9 (wording shipped) and PAM-13 (licensed: no wording) at two waves,
    a HbA1c measure with a unit, one withdrawn-consent participant and one named in the vault."""
    study = make_study(
        waves=(
            ("baseline", 0, 0, 14, ["pam13", "phq9", "hba1c"]),
            ("m3", 90, 14, 14, ["pam13", "phq9"]),
        )
    )
    people = [
        enrol(study, contact={"name": "Octavia Plumtree", "email": "octavia.p@example.org"}),
        enrol(study, site="south", enrolled_on="2026-02-10"),
        enrol(study, enrolled_on="2026-01-20"),
    ]

    def submit(p, wave, instrument, answers, when):
        r = client.post(
            f"/participants/{p['id']}/responses",
            json={"wave": wave, "instrument": instrument, "answers": answers, "completed_at": when},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text

    submit(people[0], "baseline", "phq9", phq9_answers(2), "2026-01-06T10:00:00Z")
    submit(people[0], "baseline", "pam13", pam13_answers(3), "2026-01-06T10:05:00Z")
    submit(people[0], "baseline", "hba1c", {"hba1c_mmol": 53, "hba1c_source": 2}, "2026-01-07T09:00:00Z")
    submit(people[0], "m3", "phq9", phq9_answers(1), "2026-04-06T10:00:00Z")
    submit(people[1], "baseline", "phq9", phq9_answers(0), "2026-02-11T08:30:00Z")
    submit(people[2], "baseline", "phq9", phq9_answers(3), "2026-01-21T12:00:00Z")
    r = client.post(
        f"/participants/{people[2]['id']}/withdrawals",
        json={"kind": "consent", "date": "2026-03-01", "reason": "asked for her data not to be used"},
        headers=admin.headers,
    )
    assert r.status_code in (200, 201), r.text
    return study, people


def _get(client, user, study, **params):
    r = client.get(f"/studies/{study.id}/exports/odm", params=params, headers=user.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    return r


def test_admin_export_validates_and_matches_rest_reads(client, admin, populated, schema):
    study, people = populated
    r = _get(client, admin, study)
    doc = _valid(schema, r.content)
    assert doc.get("ODMVersion") == "1.3.2" and doc.get("FileType") == "Snapshot"
    assert doc.get("Granularity") == "All"
    subjects = {s.get("SubjectKey"): s for s in doc.iterfind("odm:ClinicalData/odm:SubjectData", NS)}
    # The participant who withdrew consent for the use of her data is not in the file.
    assert set(subjects) == {people[0]["study_code"], people[1]["study_code"]}
    for p in people[:2]:
        subject = subjects[p["study_code"]]
        site = subject.find("odm:SiteRef", NS).get("LocationOID")
        assert site == ("LOC.NORTH" if p is people[0] else "LOC.SOUTH")
        enrolment = {
            i.get("ItemOID"): i.get("Value")
            for i in subject.iterfind("odm:StudyEventData[@StudyEventOID='SE.ENROLMENT']//odm:ItemData", NS)
        }
        assert enrolment["I.ENROLMENT.ENROLLED_ON"] == p["enrolled_on"]
        rest = client.get(f"/participants/{p['id']}/responses", headers=admin.headers).json()
        assert rest, "the REST read returns the participant's responses"
        for resp in rest:
            wave_oid = f"SE.{resp['wave'].upper()}"
            form = subject.find(
                f"odm:StudyEventData[@StudyEventOID='{wave_oid}']/odm:FormData[@FormOID='F.{resp['instrument'].upper()}']",
                NS,
            )
            assert form is not None, (wave_oid, resp["instrument"])
            values = {i.get("ItemOID"): i.get("Value") for i in form.iterfind(".//odm:ItemData", NS)}
            for item, value in resp["answers"].items():
                if value is not None:
                    assert float(values[f"I.{resp['instrument'].upper()}.{item.upper()}"]) == float(value)
            for score in resp["scores"]:
                if score["value"] is not None:
                    key = f"I.{resp['instrument'].upper()}.SC.{score['scale'].upper()}"
                    assert float(values[key]) == pytest.approx(score["value"])
            assert values["I.RESPONSE.STATUS"] == resp["status"]
            stamp = form.find("odm:AuditRecord/odm:DateTimeStamp", NS).text
            # The study's local clock with its offset (London: +01:00 in April), the same instant.
            assert datetime.fromisoformat(stamp) == datetime.fromisoformat(resp["completed_at"].replace("Z", "+00:00"))
            assert stamp.endswith("+01:00" if resp["wave"] == "m3" else "+00:00")
    # PHQ-9 total of 2 on each of 9 items = 18, stated independently of the scoring engine.
    base = subjects[people[0]["study_code"]].find(
        "odm:StudyEventData[@StudyEventOID='SE.BASELINE']/odm:FormData[@FormOID='F.PHQ9']", NS
    )
    assert base.find(".//odm:ItemData[@ItemOID='I.PHQ9.SC.PHQ9']", NS).get("Value") == "18"
    # Identifiers never reach the file, even for an admin (the vault is not exported).
    assert b"Plumtree" not in r.content and b"octavia" not in r.content


def test_design_describes_items_codelists_units_and_licensed_wording(client, admin, populated, schema):
    study, _ = populated
    doc = _valid(schema, _get(client, admin, study, content="metadata").content)
    assert doc.get("Granularity") == "Metadata" and doc.find("odm:ClinicalData", NS) is None
    mdv = doc.find("odm:Study/odm:MetaDataVersion", NS)
    events = [r.get("StudyEventOID") for r in mdv.iterfind("odm:Protocol/odm:StudyEventRef", NS)]
    assert events == ["SE.ENROLMENT", "SE.BASELINE", "SE.M3"]
    forms = [f.get("FormOID") for f in mdv.iterfind("odm:StudyEventDef[@OID='SE.BASELINE']/odm:FormRef", NS)]
    assert forms == ["F.PAM13", "F.PHQ9", "F.HBA1C"]
    phq1 = mdv.find("odm:ItemDef[@OID='I.PHQ9.PHQ9_1']", NS)
    assert phq1.get("DataType") == "integer"
    assert "interest or pleasure" in phq1.find("odm:Question/odm:TranslatedText", NS).text.lower()
    codes = mdv.find(f"odm:CodeList[@OID='{phq1.find('odm:CodeListRef', NS).get('CodeListOID')}']", NS)
    assert [c.get("CodedValue") for c in codes.iterfind("odm:CodeListItem", NS)] == ["0", "1", "2", "3"]
    # PAM-13 wording is licensed: no Question element anywhere in its items.
    pam = [i for i in mdv.iterfind("odm:ItemDef", NS) if i.get("OID").startswith("I.PAM13.PAM13_")]
    assert len(pam) == 13 and all(i.find("odm:Question", NS) is None for i in pam)
    # Scores are derived items with a computation method.
    ref = mdv.find("odm:ItemGroupDef[@OID='IG.PHQ9.SCORES']/odm:ItemRef[@ItemOID='I.PHQ9.SC.PHQ9']", NS)
    method = mdv.find(f"odm:MethodDef[@OID='{ref.get('MethodOID')}']", NS)
    assert method.get("Type") == "Computation" and "phq9_1" in method.findtext(".//odm:TranslatedText", "", NS)
    # HbA1c carries its unit and LOINC code.
    units = {u.get("Name") for u in doc.iterfind("odm:Study/odm:BasicDefinitions/odm:MeasurementUnit", NS)}
    assert "mmol/mol" in units


def test_odmlib_reads_the_export_and_every_oid_resolves(client, admin, populated, tmp_path):
    from odmlib import loader, odm_loader
    from odmlib.oid_generator import create_oid_checker

    study, people = populated
    path = tmp_path / "study.xml"
    path.write_bytes(_get(client, admin, study).content)
    reader = loader.ODMLoader(odm_loader.XMLODMLoader(model_package="odm_1_3_2", ns_uri=NS["odm"]))
    reader.open_odm_document(str(path))
    odm = reader.root()
    assert odm.ODMVersion == "1.3.2"
    checker = create_oid_checker("odm_1_3_2")
    assert odm.verify_oids(checker)  # every ...OID reference names a definition in the file
    mdv = odm.Study[0].MetaDataVersion[0]
    assert {f.OID for f in mdv.FormDef} >= {"F.ENROLMENT", "F.PHQ9", "F.PAM13", "F.HBA1C"}
    keys = [s.SubjectKey for s in odm.ClinicalData[0].SubjectData]
    assert sorted(keys) == sorted(p["study_code"] for p in people[:2])


def test_analyst_export_is_deidentified_and_blind(client, admin, analyst, populated, schema):
    study, people = populated
    # Default date mode (relative): no calendar date or time of any kind.
    body = _get(client, analyst, study).content
    doc = _valid(schema, body)
    assert b"Plumtree" not in body and b"octavia" not in body
    for stamp in ("2026-01-05", "2026-01-06", "2026-02-10", "2026-04-06"):
        assert stamp.encode() not in body
    assert doc.find(".//odm:AuditRecord", NS) is None
    assert doc.find(".//odm:ItemData[@ItemOID='I.ENROLMENT.ENROLLED_ON']", NS) is None
    # Blind to the arms: neutral letters only, never the arm codes or names.
    arms = [c.get("CodedValue") for c in doc.iterfind(".//odm:CodeList[@OID='CL.ARM']/odm:CodeListItem", NS)]
    assert arms and all(len(a) == 1 for a in arms)
    assert b"usual_care" not in body and b"online" not in body
    # Shifted dates: valid, and each participant's dates move back by the same whole days.
    r = client.put(f"/studies/{study.id}/export-settings", json={"date_mode": "shift"}, headers=admin.headers)
    assert r.status_code == 200, r.text
    try:
        body = _get(client, analyst, study).content
        doc = _valid(schema, body)
        subject = doc.find(f".//odm:SubjectData[@SubjectKey='{people[0]['study_code']}']", NS)
        enrolled = subject.find(".//odm:ItemData[@ItemOID='I.ENROLMENT.ENROLLED_ON']", NS).get("Value")
        assert enrolled != people[0]["enrolled_on"]
        from datetime import date

        shift = (date.fromisoformat(people[0]["enrolled_on"]) - date.fromisoformat(enrolled)).days
        assert 0 < shift < 365
        first = subject.find(".//odm:FormData[@FormOID='F.PHQ9']/odm:AuditRecord/odm:DateTimeStamp", NS).text
        assert (date(2026, 1, 6) - date.fromisoformat(first[:10])).days == shift
    finally:
        client.put(f"/studies/{study.id}/export-settings", json={"date_mode": "relative"}, headers=admin.headers)


def test_coordinator_sees_own_site_and_filters_name_the_field(client, make_user, populated, admin, schema):
    study, people = populated
    coordinator = make_user("coordinator", site_ids=[study.sites["south"]])
    doc = _valid(schema, _get(client, coordinator, study).content)
    keys = [s.get("SubjectKey") for s in doc.iterfind("odm:ClinicalData/odm:SubjectData", NS)]
    assert keys == [people[1]["study_code"]]
    assert [loc.get("OID") for loc in doc.iterfind("odm:AdminData/odm:Location", NS)] == ["LOC.SOUTH"]
    subset = _get(client, admin, study, waves="m3", instruments="phq9")
    doc = _valid(schema, subset.content)
    assert doc.get("Granularity") is None and "waves m3" in doc.get("Description")
    assert {e.get("StudyEventOID") for e in doc.iterfind(".//odm:StudyEventData", NS)} <= {"SE.ENROLMENT", "SE.M3"}
    bad = client.get(f"/studies/{study.id}/exports/odm", params={"waves": "m99"}, headers=admin.headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "waves"]
    bad = client.get(f"/studies/{study.id}/exports/odm", params={"content": "everything"}, headers=admin.headers)
    assert bad.status_code == 422 and "content" in bad.json()["detail"][0]["loc"]


def test_export_is_audited_with_its_digest(client, admin, populated):
    study, _ = populated
    r = _get(client, admin, study)
    receipt = client.get(r.headers["Peerlens-Export-Receipt"], headers=admin.headers)
    assert receipt.status_code == 200, receipt.text
    got = receipt.json()
    assert got["complete"] is True and got["shape"] == "odm"
    assert got["sha256"] == hashlib.sha256(r.content).hexdigest() and got["bytes"] == len(r.content)


TEXT_CODED_DD = (
    "Variable / Field Name,Form Name,Section Header,Field Type,Field Label,"
    '"Choices, Calculations, OR Slider Labels",Field Note,Text Validation Type OR Show Slider Number,'
    "Text Validation Min,Text Validation Max,Identifier?\n"
    "record_id,intake_odm,,text,Record ID,,,,,,\n"
    'country_odm,intake_odm,,dropdown,Country of birth,"GB, United Kingdom | FR, France",,autocomplete,,,\n'
    "seen_odm,intake_odm,,text,Date first seen,,,date_ymd,,,\n"
)


def test_text_coded_choices_and_dates_keep_their_codes(client, admin, analyst, make_study, schema):
    import json

    import instruments

    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]),))
    records = (
        "record_id,redcap_event_name,redcap_data_access_group,country_odm,seen_odm,intake_odm_complete\n"
        "TX-001,baseline_arm_1,north,FR,2026-01-09,2\n"
    )
    try:
        r = client.post(
            f"/studies/{study.id}/imports/redcap",
            files={
                "records": ("r.csv", records.encode(), "text/csv"),
                "dictionary": ("d.csv", TEXT_CODED_DD.encode(), "text/csv"),
            },
            data={"event_map": json.dumps({"baseline_arm_1": "baseline"})},
            headers=admin.headers,
        )
        assert r.status_code == 200, r.text
        doc = _valid(schema, _get(client, admin, study).content)
        country = doc.find(".//odm:ItemDef[@OID='I.INTAKE_ODM.COUNTRY_ODM']", NS)
        assert country.get("DataType") == "text"
        codes = doc.find(".//odm:CodeList[@OID='CL.INTAKE_ODM.COUNTRY_ODM']", NS)
        assert [c.get("CodedValue") for c in codes.iterfind("odm:CodeListItem", NS)] == ["GB", "FR"]
        value = doc.find(".//odm:ItemData[@ItemOID='I.INTAKE_ODM.COUNTRY_ODM']", NS).get("Value")
        assert value == "FR"
        assert doc.find(".//odm:ItemDef[@OID='I.INTAKE_ODM.SEEN_ODM']", NS).get("DataType") == "date"
        assert doc.find(".//odm:ItemData[@ItemOID='I.INTAKE_ODM.SEEN_ODM']", NS).get("Value") == "2026-01-09"
        # The analyst (relative dates): the date is days since enrolment, typed integer.
        doc = _valid(schema, _get(client, analyst, study).content)
        assert doc.find(".//odm:ItemDef[@OID='I.INTAKE_ODM.SEEN_ODM']", NS).get("DataType") == "integer"
        days = doc.find(".//odm:ItemData[@ItemOID='I.INTAKE_ODM.SEEN_ODM']", NS).get("Value")
        enrolled = client.get(f"/studies/{study.id}/participants", headers=admin.headers).json()
        enrolled = enrolled["items"] if isinstance(enrolled, dict) else enrolled
        from datetime import date

        expected = (date(2026, 1, 9) - date.fromisoformat(enrolled[0]["enrolled_on"])).days
        assert int(days) == expected
    finally:
        instruments.unregister("intake_odm")


def test_design_module_doctests():
    import doctest

    from api.interop import odm_design

    result = doctest.testmod(odm_design)
    assert result.attempted >= 3 and result.failed == 0
