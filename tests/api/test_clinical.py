"""Clinical measures through the service: one canonical unit whatever unit was entered, 422 naming
the field for implausible values, units in dictionaries and Stata labels, FHIR Observations."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from fhir.resources.R4B.bundle import Bundle


@pytest.fixture(scope="module")
def trial(client, admin, make_study, enrol):
    study = make_study(
        waves=(
            ("baseline", 0, 0, 14, ["hba1c", "anthropometry", "phq9"]),
            ("m6", 180, 21, 21, ["hba1c", "anthropometry", "phq9"]),
        )
    )
    p = enrol(study, site="north", enrolled_on="2026-01-05")
    post = lambda body: client.post(f"/participants/{p['id']}/responses", json=body, headers=admin.headers)  # noqa: E731
    # The lab reported % at baseline and mmol/mol at six months.
    for wave, inst, answers, at in (
        ("baseline", "hba1c", {"hba1c_pct": 8.0, "hba1c_source": 2}, "2026-01-06T09:00:00Z"),
        ("m6", "hba1c", {"hba1c_mmol": 53, "hba1c_source": 1}, "2026-07-05T09:00:00Z"),
        ("baseline", "anthropometry", {"weight_lb": 198.416, "height_cm": 170}, "2026-01-06T09:05:00Z"),
        ("m6", "anthropometry", {"weight_kg": 86, "height_cm": 170}, "2026-07-05T09:05:00Z"),
    ):
        r = post({"wave": wave, "instrument": inst, "answers": answers, "completed_at": at})
        assert r.status_code == 201, r.text
    return {"study": study, "p": p, "post": post}


def _export(client, user, study, shape, **params):
    r = client.get(f"/studies/{study.id}/exports/{shape}", params=params, headers=user.headers)
    assert r.status_code == 200, r.text[:300]
    return r.content


def test_hba1c_in_percent_then_mmol_per_mol_makes_one_trajectory(client, analyst, trial):
    long = pd.read_csv(io.BytesIO(_export(client, analyst, trial["study"], "long", format="csv")))
    hba1c = long[long["scale"] == "hba1c"].set_index("wave")["value"]
    # 8.0 % = 64 mmol/mol (NGSP/IFCC table); 53 mmol/mol entered as such: a fall of 11 mmol/mol.
    assert round(hba1c["baseline"]) == 64 and hba1c["m6"] == 53
    pct = long[long["scale"] == "hba1c_pct"].set_index("wave")["value"]
    assert pct["baseline"] == 8.0 and round(pct["m6"], 1) == 7.0
    weight = long[long["scale"] == "weight"].set_index("wave")["value"]
    assert weight["baseline"] == pytest.approx(90.0, abs=1e-3) and weight["m6"] == 86  # 198.416 lb = 90 kg
    bmi = long[long["scale"] == "bmi"].set_index("wave")["value"]
    assert bmi["baseline"] == pytest.approx(90 / 1.7**2, abs=1e-3)


def test_responder_analysis_reads_the_clinical_mcid_and_direction(client, analyst, trial):
    from analysis import responders

    long = pd.read_csv(io.BytesIO(_export(client, analyst, trial["study"], "long", format="csv")))
    r = responders(long, "hba1c", post="m6")
    # A fall of 11 mmol/mol is an improvement of at least the 5.5 mmol/mol (0.5 %) MCID: lower is better.
    assert r["mcid"].unique().tolist() == [5.5] and r["improved"].sum() == 1 and r["deteriorated"].sum() == 0


def test_implausible_values_and_two_units_are_422_naming_the_field(client, admin, trial):
    post = trial["post"]
    r = post({"wave": "m6", "instrument": "phq9", "answers": {f"phq9_{i}": 0 for i in range(1, 10)}})
    assert r.status_code == 201
    bad = post({"wave": "baseline", "instrument": "hba1c", "answers": {"hba1c_pct": 25}, "reason": "x"})
    assert bad.status_code == 422
    assert [(d["loc"], d["type"]) for d in bad.json()["detail"]] == [(["body", "answers", "hba1c_pct"], "out_of_range")]
    both = post({"wave": "baseline", "instrument": "anthropometry", "answers": {"weight_kg": 70, "weight_lb": 154}})
    assert both.status_code == 422
    assert [(d["loc"], d["type"]) for d in both.json()["detail"]] == [(["body", "answers", "weight_lb"], "one_unit")]


def test_units_travel_in_dictionaries_and_stata_labels(client, analyst, trial, tmp_path):
    import pyreadstat

    study = trial["study"]
    wide = client.get(
        f"/studies/{study.id}/exports/wide/dictionary", params={"format": "json"}, headers=analyst.headers
    )
    cols = {c["name"]: c for c in wide.json()["columns"]}
    assert cols["hba1c"]["unit"] == "mmol/mol" and cols["hba1c_pct"]["unit"] == "%"
    assert cols["bmi"]["unit"] == "kg/m2" and cols["phq9"]["unit"] == "points"
    long = client.get(
        f"/studies/{study.id}/exports/long/dictionary", params={"format": "json"}, headers=analyst.headers
    )
    units = {s["code"]: s["unit"] for i in long.json()["instruments"] for s in i.get("scales", [])}
    assert units["hba1c"] == "mmol/mol" and units["weight"] == "kg"
    path = tmp_path / "wide.dta"
    path.write_bytes(_export(client, analyst, study, "wide", format="dta"))
    _, meta = pyreadstat.read_dta(str(path))
    labels = dict(zip(meta.column_names, meta.column_labels, strict=True))
    assert labels["hba1c"] == "HbA1c (IFCC) (mmol/mol)" and labels["weight"] == "Body weight (kg)"


def test_observations_bundle_validates_with_loinc_and_ucum(client, admin, trial):
    r = client.get(f"/participants/{trial['p']['id']}/observations", headers=admin.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    Bundle.model_validate(bundle)
    got = [
        (
            e["resource"]["code"]["coding"][0]["code"],
            round(e["resource"]["valueQuantity"]["value"], 1),
            e["resource"]["valueQuantity"]["code"],
        )
        for e in bundle["entry"]
        if e["resource"]["code"]["coding"][0]["system"] == "http://loinc.org"
    ]
    assert ("59261-8", 63.9, "mmol/mol") in got and ("4548-4", 8.0, "%") in got
    assert ("59261-8", 53.0, "mmol/mol") in got and ("29463-7", 86.0, "kg") in got
    assert all(
        e["resource"]["subject"]["reference"] == f"ResearchSubject/{trial['p']['study_code']}" for e in bundle["entry"]
    )


def test_a_plausible_but_rare_value_is_stored_with_its_warning_flag(client, admin, make_study, enrol):
    study = make_study(waves=(("baseline", 0, 0, 14, ["hba1c"]),))
    p = enrol(study, site="north", enrolled_on="2026-01-05")
    r = client.post(
        f"/participants/{p['id']}/responses",
        json={"wave": "baseline", "instrument": "hba1c", "answers": {"hba1c_pct": 15}},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    scores = {s["scale"]: s for s in r.json()["scores"]}
    assert scores["hba1c"]["flags"] == ["hba1c_high"] and round(scores["hba1c"]["value"]) == 140


def _upload(client, user, study, text, dry_run=False):
    return client.post(
        f"/studies/{study.id}/imports/measures",
        files={"file": ("labs.csv", text.encode(), "text/csv")},
        data={"dry_run": str(dry_run).lower()},
        headers=user.headers,
    )


def test_lab_results_import_with_a_dry_run_then_for_real(client, admin, make_study, enrol):
    study = make_study(waves=(("baseline", 0, 0, 14, ["hba1c"]), ("m3", 90, 14, 14, ["hba1c"])))
    a = enrol(study, site="north", enrolled_on="2026-01-05")
    b = enrol(study, site="south", enrolled_on="2026-01-12")
    csv_text = (
        "participant,wave,instrument,measured_at,hba1c_pct,hba1c_mmol,hba1c_source\n"
        f"{a['study_code']},baseline,hba1c,2026-01-07,7.5,,2\n"
        f"{b['study_code']},baseline,hba1c,2026-01-13,,61,2\n"
        # A lab date that is not a wave date: stored, out of the m3 window (day 150).
        f"{a['study_code']},m3,hba1c,2026-06-04T08:30:00Z,,55,4\n"
    )
    dry = _upload(client, admin, study, csv_text, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.json()["counts"]["responses"] == 3 and dry.json()["committed"] is False
    listed = client.get(f"/participants/{a['id']}/responses", headers=admin.headers).json()
    assert listed == []  # the dry run wrote nothing
    real = _upload(client, admin, study, csv_text)
    assert real.status_code == 200 and real.json()["committed"] is True
    rows = {r["wave"]: r for r in client.get(f"/participants/{a['id']}/responses", headers=admin.headers).json()}
    assert rows["baseline"]["out_of_window"] is False and rows["m3"]["out_of_window"] is True
    scores = {s["scale"]: s["value"] for s in rows["baseline"]["scores"]}
    assert round(scores["hba1c"]) == 58  # 7.5 % = 58 mmol/mol


def test_a_bad_lab_file_writes_nothing_and_names_row_and_column(client, admin, make_study, enrol):
    study = make_study(waves=(("baseline", 0, 0, 14, ["hba1c"]),))
    a = enrol(study, site="north", enrolled_on="2026-01-05")
    csv_text = (
        "participant,wave,instrument,measured_at,hba1c_pct,hba1c_mmol\n"
        f"{a['study_code']},baseline,hba1c,2026-01-07,7.5,\n"
        f"{a['study_code']},baseline,hba1c,2026-01-08,31,\n"  # implausible (and a second baseline)
        "P-NOPE,baseline,hba1c,2026-01-07,7.5,\n"
        f"{a['study_code']},baseline,hba1c,07/01/2026,7.5,\n"
    )
    r = _upload(client, admin, study, csv_text)
    assert r.status_code == 422
    got = {(d["loc"][2], d["loc"][3], d["type"]) for d in r.json()["detail"]}
    assert (2, "hba1c_pct", "out_of_range") in got
    assert (3, "participant", "unknown_participant") in got and (4, "measured_at", "invalid_date") in got
    assert client.get(f"/participants/{a['id']}/responses", headers=admin.headers).json() == []


def test_clinical_measures_are_coordinator_tasks_not_participant_reminders(client, admin, make_study, enrol):
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "hba1c"]),))
    p = enrol(study, site="north", enrolled_on="2026-01-05")
    r = client.post(
        f"/participants/{p['id']}/responses",
        json={"wave": "baseline", "instrument": "phq9", "answers": {f"phq9_{i}": 0 for i in range(1, 10)}},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    # The baseline window closed long ago: the HbA1c is an overdue coordinator task, never a reminder.
    tasks = client.get(f"/studies/{study.id}/tasks", params={"state": "closed"}, headers=admin.headers)
    assert tasks.status_code == 200, tasks.text
    body = tasks.json()
    rows = body["items"] if isinstance(body, dict) else body
    assert [(t["instrument"], t["study_code"]) for t in rows] == [("hba1c", p["study_code"])], rows
    schedule = client.get(f"/participants/{p['id']}/schedule", headers=admin.headers).json()
    text = str(schedule)
    assert "'collected_by': 'staff'" in text and "hba1c" in text
