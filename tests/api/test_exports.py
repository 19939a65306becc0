"""Cohort exports: every shape and format read back by an independent reader, role rules,
de-identification (no seeded identifier in any analyst file), date shifting, the data dictionary,
participant batching and the audit event written after streaming."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import tempfile
from datetime import date, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest
from sqlmodel import Session, select

import instruments
from analysis.frame import LONG_COLUMNS, load_long
from api.audit.models import AuditEvent

SECRET = "test-secret"  # conftest's PEERLENS_SECRET_KEY

# Distinctive identifiers: none may appear in an analyst export.
CONTACTS = [
    {
        "name": "Zebediah Quuxworth",
        "email": "zebediah.quux@example.org",
        "phone": "+44 7700 900123",
        "date_of_birth": "1961-04-03",
    },
    {
        "name": "Philomena Xandercroft",
        "email": "philo.xcroft@example.net",
        "phone": "+44 7700 900456",
        "date_of_birth": "1957-11-29",
    },
    {
        "name": "Barnaby Ottoline",
        "email": "b.ottoline@example.com",
        "phone": "+44 7700 900789",
        "date_of_birth": "1949-02-14",
    },
]
NICKNAMES = ["Zebbykins", "Philly-Q", "Barnstormer"]
NOTES = ["lives next to the Grand Oakwood pharmacy", "daughter Wilhelmina visits", "works at Quillfeather Mill"]
IDENTIFIERS = (
    [c[k] for c in CONTACTS for k in ("name", "email", "phone", "date_of_birth")]
    + ["Quuxworth", "Xandercroft", "Ottoline", "900123", "1961-04-03"]
    + NICKNAMES
    + NOTES
    + ["Oakwood", "Wilhelmina", "Quillfeather"]
)

INTAKE_DD = (
    "Variable / Field Name,Form Name,Section Header,Field Type,Field Label,"
    '"Choices, Calculations, OR Slider Labels",Field Note,Text Validation Type OR Show Slider Number,'
    "Text Validation Min,Text Validation Max,Identifier?\n"
    "record_id,intake_x,,text,Record ID,,,,,,\n"
    "nickname_x,intake_x,,text,Preferred name,,,,,,y\n"
    "clinic_notes_x,intake_x,,notes,Anything else?,,,,,,\n"
    "visits_x,intake_x,,text,GP visits last year,,,integer,0,100,\n"
    "seen_x,intake_x,,text,Date last seen,,,date_ymd,,,\n"
    'mood_x,intake_x,,radio,Mood today,"1, Good | 2, OK | 3, Poor",,,,,\n'
)


@pytest.fixture(scope="module")
def intake():
    (inst,), _ = instruments.from_redcap_dictionary(INTAKE_DD)
    instruments.register(inst, replace=True)
    yield inst
    instruments.unregister(inst.code)


def _phq(i: int) -> dict:
    return {f"phq9_{k}": (i + k) % 4 for k in range(1, 10)}


def _gad(i: int) -> dict:
    return {f"gad7_{k}": (2 * i + k) % 4 for k in range(1, 8)}


CONTEXT_ANSWERS = [
    {"context_gender": 1, "context_age_band": 4},
    {"context_gender": 2, "context_age_band": 6},
    {"context_gender": 99, "context_age_band": 5},
]
CONTEXT_LABELS = [("Woman", "50-59"), ("Man", "70-79"), ("Prefer not to say", "60-69")]
BASE_AT = ["2026-01-06T10:00:00Z", "2026-01-07T23:30:00Z", "2026-01-06T08:15:00Z"]
M3_AT = ["2026-04-06T09:00:00Z", "2026-04-08T12:00:00Z", None]


@pytest.fixture(scope="module")
def cohort(client, admin, make_study, enrol, intake, make_user):
    study = make_study(
        waves=(("baseline", 0, 0, 14, ["context", "phq9", "gad7", intake.code]), ("m3", 90, 14, 14, ["phq9", "gad7"]))
    )
    people = []
    for i, site in enumerate(("north", "north", "south")):
        p = enrol(study, site=site, enrolled_on="2026-01-05", contact=CONTACTS[i])
        people.append(p)
        post = lambda body, p=p: client.post(f"/participants/{p['id']}/responses", json=body, headers=admin.headers)
        for inst, answers in (
            ("phq9", _phq(i)),
            ("gad7", _gad(i)),
            ("context", CONTEXT_ANSWERS[i]),
            (
                intake.code,
                {
                    "nickname_x": NICKNAMES[i],
                    "clinic_notes_x": NOTES[i],
                    "visits_x": 3 + i,
                    "seen_x": "2025-12-20",
                    "mood_x": 1 + i,
                },
            ),
        ):
            r = post({"wave": "baseline", "instrument": inst, "answers": answers, "completed_at": BASE_AT[i]})
            assert r.status_code == 201, r.text
        if M3_AT[i]:
            r = post({"wave": "m3", "instrument": "phq9", "answers": _phq(i + 1), "completed_at": M3_AT[i]})
            assert r.status_code == 201, r.text
    # The third participant withdraws on day 40.
    r = client.patch(
        f"/participants/{people[2]['id']}",
        json={"status": "withdrawn", "status_date": "2026-02-14", "reason": "moved away"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    r = client.put(
        f"/studies/{study.id}/export-settings",
        json={"free_text_items": [f"{intake.code}.clinic_notes_x"]},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    coordinator = make_user("coordinator", site_ids=[study.sites["north"]])
    return {"study": study, "people": people, "coordinator": coordinator}


def _get(client, user, study, path, **params):
    r = client.get(f"/studies/{study.id}/exports/{path}", params=params, headers=user.headers)
    assert r.status_code == 200, r.text[:500]
    return r.content


def _assert_no_identifiers(blob: bytes):
    text = blob.decode("utf-8", errors="ignore")
    for ident in IDENTIFIERS:
        assert ident not in text, f"identifier {ident!r} leaked"


def _expected_phq(i):
    return float(sum(_phq(i)[f"phq9_{k}"] for k in range(1, 10)))


def test_long_csv_matches_analysis_spec_and_values(client, analyst, cohort):
    study, people = cohort["study"], cohort["people"]
    blob = _get(client, analyst, study, "long", format="csv")
    _assert_no_identifiers(blob)
    raw = pd.read_csv(io.BytesIO(blob), dtype=str, keep_default_na=False)
    assert list(raw.columns)[: len(LONG_COLUMNS)] == list(LONG_COLUMNS)
    assert [c for c in raw.columns if c.startswith("context_")] == [it.code for it in instruments.get("context").items]
    frame = load_long(io.BytesIO(blob) if False else _tmp(blob, ".csv"))
    codes = [p["study_code"] for p in people]
    phq = frame[frame["scale"] == "phq9"].set_index(["participant", "wave"])
    for i, code in enumerate(codes):
        assert phq.loc[(code, "baseline"), "value"] == _expected_phq(i)
    assert phq.loc[(codes[0], "m3"), "value"] == _expected_phq(1)
    gad = frame[frame["scale"] == "gad7"].set_index("participant")
    assert gad.loc[codes[1], "value"] == float(sum(_gad(1).values()))
    # days since enrolment (2026-01-05) in study-local calendar days: 23:30Z on 7 Jan is 7 Jan in London.
    assert phq.loc[(codes[1], "baseline"), "days"] == 2 and phq.loc[(codes[0], "m3"), "days"] == 91
    # relative date mode: no calendar dates for analysts.
    assert frame["completed_at"].isna().all()
    row = frame[frame["participant"] == codes[0]].iloc[0]
    assert (row["context_gender"], row["context_age_band"]) == CONTEXT_LABELS[0]
    third = frame[frame["participant"] == codes[2]].iloc[0]
    assert third["status"] == "withdrawn" and third["status_days"] == 40
    assert third["context_gender"] == "Prefer not to say"
    assert set(frame["site"]) == {"north", "south"}
    # Blinded analysis: until the study is unblinded, arms are neutral labels and kinds are withheld.
    assert set(frame["arm"]) <= {"A", "B", "C"} and frame["arm_kind"].isna().all()


def _tmp(blob: bytes, suffix: str) -> str:
    f = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    f.write(blob)
    f.close()
    return f.name


def test_long_frame_service_equals_csv_and_batches_by_participant(client, analyst, cohort, engine):
    from api.auth.service import Actor
    from api.exports.service import ExportFilters, iter_long, long_frame
    from api.studies.models import Study

    study = cohort["study"]
    actor = Actor(user_id=analyst.id, role="analyst")
    with Session(engine) as s:
        st = s.get(Study, study.id)
        batches = list(iter_long(s, st, actor, ExportFilters(), secret=SECRET, batch_size=1))
        whole = long_frame(s, st, actor, secret=SECRET)
    assert len(batches) == 3 and all(b["participant"].nunique() == 1 for b in batches)
    assert len(pd.concat(batches)) == len(whole)
    csv_frame = pd.read_csv(io.BytesIO(_get(client, analyst, study, "long")), dtype=str, keep_default_na=False)
    assert len(csv_frame) == len(whole)
    assert sorted(csv_frame["value"].astype(float).tolist()) == sorted(whole["value"].tolist())


def test_long_parquet_types_values_and_dictionary_metadata(client, analyst, cohort):
    study, people = cohort["study"], cohort["people"]
    blob = _get(client, analyst, study, "long", format="parquet")
    _assert_no_identifiers(blob)
    table = pq.read_table(io.BytesIO(blob))
    assert str(table.schema.field("value").type) == "double"
    assert str(table.schema.field("out_of_window").type) == "bool"
    meta = json.loads(table.schema.metadata[b"peerlens.dictionary"])
    assert [c["name"] for c in meta["columns"]] == table.schema.names
    phq = next(c for c in meta["instruments"] if c["code"] == "phq9")
    assert "Kroenke" in phq["citation"]
    df = table.to_pandas()
    got = df[(df["participant"] == people[2]["study_code"]) & (df["scale"] == "phq9")]["value"].tolist()
    assert got == [_expected_phq(2)]
    assert load_long(df)["value"].notna().all()


def test_wide_dta_and_sav_carry_variable_and_value_labels(client, analyst, cohort, intake):
    study, people = cohort["study"], cohort["people"]
    for fmt, reader in (("dta", pyreadstat.read_dta), ("sav", pyreadstat.read_sav)):
        blob = _get(client, analyst, study, "wide", format=fmt, items="true")
        _assert_no_identifiers(blob)
        df, meta = reader(_tmp(blob, "." + fmt))
        assert len(df) == 5  # 3 baselines + 2 m3
        assert "nickname_x" not in df.columns and "clinic_notes_x" not in df.columns
        labels = meta.column_names_to_labels
        assert labels["phq9"].startswith("Depression severity") and labels["phq9_1"] == "Anhedonia"
        vl = meta.variable_value_labels
        assert vl["phq9_1"][0] == "Not at all" and vl["phq9_1"][3] == "Nearly every day"
        assert vl["mood_x"] == {1: "Good", 2: "OK", 3: "Poor"}
        assert vl["out_of_window"] == {0: "No", 1: "Yes"}
        base = df[(df["participant"] == people[1]["study_code"]) & (df["wave"] == "baseline")].iloc[0]
        assert base["phq9"] == _expected_phq(1) and base["gad7"] == sum(_gad(1).values())
        assert base["phq9_4"] == _phq(1)["phq9_4"] and base["visits_x"] == 4
        # Categorical context answers are labelled numeric codes in Stata and SPSS, as REDCap writes them.
        assert base["context_gender"] == 2 and vl["context_gender"][2] == "Man"
        assert vl["context_gender"][99] == "Prefer not to say" and base["context_age_band"] == 6


def test_long_dta_context_codes_are_labelled_too(client, analyst, cohort):
    study, people = cohort["study"], cohort["people"]
    df, meta = pyreadstat.read_dta(_tmp(_get(client, analyst, study, "long", format="dta"), ".dta"))
    mine = df[df["participant"] == people[0]["study_code"]].iloc[0]
    assert mine["context_gender"] == 1 and meta.variable_value_labels["context_gender"][1] == "Woman"
    # CSV keeps the label (the analysis layer's convention)
    csv = pd.read_csv(io.BytesIO(_get(client, analyst, study, "long", format="csv")))
    assert set(csv["context_gender"].dropna()) == {"Woman", "Man", "Prefer not to say"}


def test_items_json_one_row_per_answered_item(client, analyst, cohort, intake):
    study, people = cohort["study"], cohort["people"]
    blob = _get(client, analyst, study, "items", format="json")
    _assert_no_identifiers(blob)
    rows = json.loads(blob)
    # per participant at baseline: 9 phq9 + 7 gad7 + 3 vetted intake items (visits, seen, mood); m3: 9
    assert len(rows) == 3 * (9 + 7 + 3) + 2 * 9
    one = [
        r
        for r in rows
        if r["participant"] == people[0]["study_code"] and r["item"] == "phq9_2" and r["wave"] == "baseline"
    ][0]
    assert (
        one["value"] == _phq(0)["phq9_2"]
        and one["label"]
        == ["Not at all", "Several days", "More than half the days", "Nearly every day"][_phq(0)["phq9_2"]]
    )
    seen = [r for r in rows if r["participant"] == people[0]["study_code"] and r["item"] == "seen_x"][0]
    assert seen["value"] == (date(2025, 12, 20) - date(2026, 1, 5)).days and seen["value_text"] is None


def _shift(study_id: int, pid: int) -> int:
    d = hmac.new(SECRET.encode(), f"{study_id}:{pid}".encode(), hashlib.sha256).digest()
    return int.from_bytes(d[:8], "big") % 365


def test_date_shift_is_per_participant_and_stable(client, admin, analyst, cohort):
    study, people = cohort["study"], cohort["people"]
    r = client.put(f"/studies/{study.id}/export-settings", json={"date_mode": "shift"}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["date_mode"] == "shift"
    try:
        blob = _get(client, analyst, study, "long", format="csv")
        again = _get(client, analyst, study, "long", format="csv")
        assert blob == again
        _assert_no_identifiers(blob)
        df = load_long(_tmp(blob, ".csv"))
        for i, p in enumerate(people):
            mine = df[(df["participant"] == p["study_code"]) & (df["scale"] == "phq9")].set_index("wave")
            k = _shift(study.id, p["id"])
            real = pd.Timestamp(BASE_AT[i])
            assert mine.loc["baseline", "completed_at"] == real - timedelta(days=k)
            if M3_AT[i]:
                assert (
                    mine.loc["m3", "completed_at"] - mine.loc["baseline", "completed_at"]
                    == pd.Timestamp(M3_AT[i]) - real
                )
        items = json.loads(_get(client, analyst, study, "items", format="json"))
        seen = [r for r in items if r["participant"] == people[0]["study_code"] and r["item"] == "seen_x"][0]
        assert (
            seen["value_text"] == (date(2025, 12, 20) - timedelta(days=_shift(study.id, people[0]["id"]))).isoformat()
        )
        # coordinators and admins keep calendar dates
        adm = load_long(_tmp(_get(client, admin, study, "long"), ".csv"))
        assert pd.Timestamp(BASE_AT[0]) in set(adm["completed_at"])
    finally:
        client.put(f"/studies/{study.id}/export-settings", json={"date_mode": "relative"}, headers=admin.headers)


def test_coordinator_identifiers_own_sites_only(client, analyst, cohort):
    study, coord = cohort["study"], cohort["coordinator"]
    blob = _get(client, coord, study, "long", format="csv", identifiers="true")
    df = pd.read_csv(io.BytesIO(blob), dtype=str, keep_default_na=False)
    assert set(df["site"]) == {"north"}
    assert set(df["contact_email"]) == {CONTACTS[0]["email"], CONTACTS[1]["email"]}
    assert CONTACTS[2]["name"] not in blob.decode()
    items = json.loads(_get(client, coord, study, "items", format="json", identifiers="true"))
    assert NICKNAMES[0] in {r["value_text"] for r in items}
    r = client.get(f"/studies/{study.id}/exports/long", params={"sites": "south"}, headers=coord.headers)
    assert r.status_code == 403 and r.json()["detail"][0]["loc"] == ["query", "sites"]
    r = client.get(f"/studies/{study.id}/exports/long", params={"identifiers": "true"}, headers=analyst.headers)
    assert r.status_code == 403
    assert r.json()["detail"][0] == {
        "loc": ["query", "identifiers"],
        "msg": r.json()["detail"][0]["msg"],
        "type": "identifiers_not_allowed",
    }


def test_bad_parameters_are_4xx_naming_the_field(client, analyst, cohort):
    study = cohort["study"]
    cases = [
        ("long", {"format": "xlsx"}, "format"),
        ("long", {"waves": "m99"}, "waves"),
        ("wide", {"instruments": "pam13"}, "instruments"),
        ("long", {"sites": "east"}, "sites"),
        ("long/dictionary", {"format": "xml"}, "format"),
    ]
    for path, params, field in cases:
        r = client.get(f"/studies/{study.id}/exports/{path}", params=params, headers=analyst.headers)
        assert r.status_code == 422, (path, params, r.text)
        assert r.json()["detail"][0]["loc"][-1] == field
    r = client.get(f"/studies/{study.id}/exports/cube", headers=analyst.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "shape"]
    assert client.get(f"/studies/{study.id}/exports/long").status_code == 401


def test_filters_select_waves_and_instruments(client, analyst, cohort):
    study = cohort["study"]
    df = pd.read_csv(io.BytesIO(_get(client, analyst, study, "long", waves="m3", instruments="phq9")), dtype=str)
    assert set(df["wave"]) == {"m3"} and set(df["scale"]) == {"phq9"} and len(df) == 2


def test_dictionary_json_and_csv(client, analyst, cohort, intake):
    study = cohort["study"]
    d = json.loads(_get(client, analyst, study, "wide/dictionary", items="true"))
    names = [c["name"] for c in d["columns"]]
    wide = pd.read_csv(io.BytesIO(_get(client, analyst, study, "wide", items="true")), dtype=str)
    assert names == list(wide.columns)
    phq1 = next(c for c in d["columns"] if c["name"] == "phq9_1")
    assert phq1["values"][1] == {"code": 1, "label": "Several days"} and "Kroenke" in phq1["citation"]
    assert phq1["licence"] and d["deidentified"] is True and d["dates"].startswith("days since enrolment")
    assert next(c for c in d["columns"] if c["name"] == "days")["unit"] == "days"
    csv_d = pd.read_csv(io.BytesIO(_get(client, analyst, study, "long/dictionary", format="csv")), dtype=str)
    assert list(csv_d["name"][: len(LONG_COLUMNS)]) == list(LONG_COLUMNS)
    gender = csv_d[csv_d["name"] == "context_gender"].iloc[0]
    assert "Woman=Woman" in gender["values"] and gender["instrument"] == "context"


def test_every_export_is_audited_after_streaming(client, analyst, cohort, engine):
    study = cohort["study"]
    blob = _get(client, analyst, study, "long", format="csv", waves="baseline")
    n_rows = len(pd.read_csv(io.BytesIO(blob)))
    with Session(engine) as s:
        ev = s.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "export", AuditEvent.study_id == study.id)
            .order_by(AuditEvent.id.desc())
        ).first()
    assert ev.actor_id == analyst.id and ev.after["rows"] == n_rows and ev.after["complete"] is True
    assert ev.after["waves"] == ["baseline"] and ev.after["format"] == "csv" and ev.after["deidentified"] is True


def test_settings_reject_unknown_items_and_analysts(client, admin, analyst, cohort):
    study = cohort["study"]
    r = client.put(
        f"/studies/{study.id}/export-settings", json={"free_text_items": ["phq9.nope"]}, headers=admin.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "free_text_items", 0]
    r = client.put(f"/studies/{study.id}/export-settings", json={"date_mode": "fuzz"}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "date_mode"
    r = client.put(f"/studies/{study.id}/export-settings", json={"date_mode": "shift"}, headers=analyst.headers)
    assert r.status_code == 403
    # study-wide: a coordinator of one site may not change what analysts see of the others
    before = client.get(f"/studies/{study.id}/export-settings", headers=admin.headers).json()
    coord = cohort["coordinator"]
    r = client.put(f"/studies/{study.id}/export-settings", json={"date_mode": "shift"}, headers=coord.headers)
    assert r.status_code == 403 and r.json()["detail"][0]["type"] == "role_not_allowed"
    assert client.get(f"/studies/{study.id}/export-settings", headers=admin.headers).json() == before


def test_a_study_with_participants_but_no_answers_exports_headers_only(client, analyst, make_study, enrol):
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]),))
    enrol(study, site="north", enrolled_on="2026-01-05")
    for shape in ("long", "wide", "items"):
        blob = _get(client, analyst, study, shape, format="csv")
        frame = pd.read_csv(io.BytesIO(blob))
        assert len(frame) == 0 and "participant" in frame.columns, shape
    assert json.loads(_get(client, analyst, study, "long", format="json")) == []


def test_the_api_starts_without_the_analysis_or_qualitative_stacks():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; from api.main import create_app; from api.config import Settings; "
        "create_app(Settings(database_url='sqlite://')); "
        "heavy = [m for m in sys.modules if m.startswith('qualitative.') or m in ('analysis.trajectories', "
        "'spacy', 'matplotlib', 'statsmodels', 'pingouin', 'lifelines', 'pyarrow.parquet')]; print(','.join(heavy))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == ""


def test_wide_items_keep_every_value_when_an_item_shares_a_scale_code(client, admin, analyst, make_study, enrol):
    # A single-item measure whose scale has the item's code, and a second instrument that reuses an
    # item code: each value gets its own column (<instrument>__<item>) and none is lost or overwritten.
    from instruments.loader import instrument_from_dict

    def single(code: str, item: str) -> dict:
        return {
            "code": code,
            "name": code,
            "version": "1",
            "citation": "in-house single-item measure",
            "licence": "in-house",
            "wording_shipped": True,
            "items": [{"code": item, "label": "Pain", "text": "Pain today", "kind": "integer", "min": 0, "max": 10}],
            "scales": [
                {
                    "code": item if code == "pain_x" else code,
                    "label": "Pain",
                    "items": [item],
                    "method": "sum",
                    "min_items": 1,
                    "range": [0, 10],
                }
            ],
        }

    for spec in (single("pain_x", "pain"), single("pain_y", "pain")):
        instruments.register(instrument_from_dict(spec, where="test"), replace=True)
    try:
        study = make_study(waves=(("baseline", 0, 0, 14, ["pain_x", "pain_y"]),))
        p = enrol(study, site="north", enrolled_on="2026-01-05")
        for inst, value in (("pain_x", 7), ("pain_y", 2)):
            r = client.post(
                f"/participants/{p['id']}/responses",
                json={"wave": "baseline", "instrument": inst, "answers": {"pain": value}},
                headers=admin.headers,
            )
            assert r.status_code == 201, r.text
        frame = pd.read_csv(io.BytesIO(_get(client, analyst, study, "wide", format="csv", items="true")))
        assert len(frame) == 1 and len(set(frame.columns)) == len(frame.columns)
        row = frame.iloc[0]
        assert row["pain"] == 7  # pain_x's scale
        assert row["pain_y"] == 2  # pain_y's scale
        assert row["pain_x__pain"] == 7 and row["pain_y__pain"] == 2  # the two items, kept apart
        dictionary = json.loads(_get(client, analyst, study, "wide/dictionary", format="json", items="true"))
        names = [c["name"] for c in (dictionary["columns"] if isinstance(dictionary, dict) else dictionary)]
        assert {"pain_x__pain", "pain_y__pain"} <= set(names)
    finally:
        instruments.unregister("pain_x")
        instruments.unregister("pain_y")
