"""The SQL path of the long and wide CSV exports writes the batch path's bytes, request for request.

On PostgreSQL, ``GET /studies/{id}/exports/{long,wide}?format=csv`` is one ``COPY (SELECT …)``
(:mod:`api.exports.sqlpath`). Each case here builds the same export through the batch path
(participant batches encoded by :func:`api.exports.writers.write_csv`) and through the SQL path and
compares the bytes: analysts with relative and shifted dates and blinded arms, staff with calendar
dates and identifiers, a coordinator's own sites, filters, formula escaping on and off, partial
responses, a participant who withdrew consent (absent from both) and one who withdrew from the
study (present, with ``status_days``).
"""

from __future__ import annotations

import hashlib
import io
from datetime import date, timedelta

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from sqlmodel import Session

import instruments
from api.auth.service import Actor
from api.exports import service, sqlpath, writers
from api.studies.models import Study
from instruments.model import Band, Instrument, Item, Option, Scale

SECRET = "test-secret"  # conftest's PEERLENS_SECRET_KEY

# A scale whose bands read like spreadsheet formulas and whose mean gives long fractions.
BANDED = Instrument(
    code="sqlband",
    name="Banded",
    version="1",
    citation="test",
    licence="test",
    items=tuple(
        Item(code=f"sqlband_{i}", text="How much?", kind="choice", options=tuple(Option(c, str(c)) for c in range(4)))
        for i in range(1, 4)
    ),
    scales=(
        Scale(
            code="sqlband_mean",
            label="Mean",
            items=("sqlband_1", "sqlband_2", "sqlband_3"),
            method="mean",
            min_items=2,
            range=(0, 3),
            bands=(Band("=low", 0, 1), Band("-2 mid", 1.0001, 2), Band("+3", 2.0001, 3)),
        ),
    ),
)
CONTACT = {"name": "=Quux", "email": "quux@example.org", "phone": "+44 7700 900123", "date_of_birth": "1961-04-03"}


@pytest.fixture(scope="module", autouse=True)
def postgres_only(backend):
    if backend != "postgresql":
        pytest.skip("the SQL path is PostgreSQL's")


@pytest.fixture(scope="module")
def cohort(client, admin, make_study, enrol, make_user):
    instruments.register(BANDED, replace=True)
    study = make_study(
        waves=(("baseline", 0, 0, 14, ["context", "phq9", "sqlband"]), ("m3", 90, 14, 14, ["phq9", "sqlband"]))
    )
    h = admin.headers
    people = []
    for i in range(6):
        p = enrol(
            study,
            site=("north", "south")[i % 2],
            enrolled_on=str(date(2026, 1, 5) + timedelta(days=i)),
            arm=("group", "online", "usual_care")[i % 3],
            **({"contact": CONTACT} if i == 0 else {}),
        )
        people.append(p)
        post = lambda body, p=p: client.post(f"/participants/{p['id']}/responses", json=body, headers=h)
        base = str(date(2026, 1, 6) + timedelta(days=i)) + ("T23:30:00Z" if i % 2 else "T08:15:00Z")
        phq = {f"phq9_{k}": (i + k) % 4 for k in range(1, 10)}
        if i == 3:
            phq.pop("phq9_9")  # a partial response: prorated
        for inst, answers in (
            ("phq9", phq),
            ("sqlband", {f"sqlband_{k}": (i * k) % 4 for k in range(1, 4 - (i == 4))}),
            ("context", {"context_gender": (1, 2, 99)[i % 3], "context_age_band": 3 + i % 4}),
        ):
            r = post({"wave": "baseline", "instrument": inst, "answers": answers, "completed_at": base})
            assert r.status_code == 201, r.text
        if i % 3 != 2:
            later = str(date(2026, 4, 6) + timedelta(days=2 * i)) + "T12:00:00Z"
            for inst, answers in (("phq9", {f"phq9_{k}": 1 for k in range(1, 10)}), ("sqlband", {"sqlband_1": 1})):
                r = post({"wave": "m3", "instrument": inst, "answers": answers, "completed_at": later})
                assert r.status_code == 201, r.text
    r = client.patch(
        f"/participants/{people[2]['id']}",
        json={"status": "withdrawn", "status_date": "2026-02-14", "reason": "moved away"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/participants/{people[5]['id']}/withdrawals",
        json={"kind": "consent", "date": "2026-03-01", "reason": "asked for the data not to be used"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    coordinator = make_user("coordinator", site_ids=[study.sites["north"]])
    yield {"study": study, "people": people, "coordinator": coordinator}
    instruments.unregister("sqlband")


def _actor(user) -> Actor:
    return Actor(user_id=user.id, role=user.role, site_ids=frozenset(user.site_ids))


def _both(engine, study_id: int, actor: Actor, shape: str, **filters) -> tuple[bytes, bytes, int]:
    """(batch path bytes, SQL path bytes, rows) of one export."""
    out, rows = [], []
    for path in ("batch", "sql"):
        with Session(engine) as s:
            plan = service.plan_export(
                s, s.get(Study, study_id), actor, service.ExportFilters(**filters), secret=SECRET
            )
            assert sqlpath.supported(plan, shape, "csv", "postgresql")
            if path == "batch":
                cols = service.columns(plan, shape)
                chunks = writers.write_csv(
                    service.iter_shape(s, plan, shape), cols, escape_formulas=plan.filters.escape_formulas
                )
            else:
                chunks = sqlpath.csv_chunks(s, plan, shape)
            out.append(b"".join(chunks))
            rows.append(plan.rows)
    assert rows[0] == rows[1]
    return out[0], out[1], rows[0]


def _set_dates(client, admin, study, mode: str) -> None:
    r = client.put(f"/studies/{study.id}/export-settings", json={"date_mode": mode}, headers=admin.headers)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("shape", ["long", "wide"])
def test_analyst_exports_are_the_same_bytes_relative_and_shifted(client, admin, analyst, cohort, engine, shape):
    study, people = cohort["study"], cohort["people"]
    batch, sql, rows = _both(engine, study.id, _actor(analyst), shape)
    assert sql == batch and rows > 0
    frame = pd.read_csv(io.BytesIO(sql), dtype=str, keep_default_na=False)
    assert people[5]["study_code"] not in set(frame["participant"])  # consent withdrawn: left out
    assert set(frame["arm"]) <= {"A", "B", "C"} and set(frame["arm_kind"]) == {""}  # blinded
    assert set(frame["completed_at"]) == {""}  # relative dates
    assert "'=Quux" not in sql.decode() and "Quux" not in sql.decode()
    _set_dates(client, admin, study, "shift")
    try:
        batch, sql, _ = _both(engine, study.id, _actor(analyst), shape)
        assert sql == batch
        assert set(pd.read_csv(io.BytesIO(sql), dtype=str, keep_default_na=False)["completed_at"]) != {""}
    finally:
        _set_dates(client, admin, study, "relative")


@pytest.mark.parametrize("shape", ["long", "wide"])
def test_staff_exports_are_the_same_bytes_with_identifiers_filters_and_formulas(admin, cohort, engine, shape):
    study = cohort["study"]
    for filters in (
        {},
        {"identifiers": True},
        {"identifiers": True, "escape_formulas": False},
        {"waves": ["m3"], "instruments": ["sqlband"]},
        {"sites": ["south"]},
    ):
        batch, sql, _ = _both(engine, study.id, _actor(admin), shape, **filters)
        assert sql == batch, filters
        text = sql.decode()
        if filters.get("identifiers"):
            formula = '"+44 7700 900123"' if filters.get("escape_formulas") is False else '"\'+44 7700 900123"'
            assert formula in text and "1961-04-03" in text
    frame = pd.read_csv(io.BytesIO(_both(engine, study.id, _actor(admin), shape)[1]), dtype=str)
    assert {"group", "online", "usual_care"} >= set(frame["arm"]) and frame["completed_at"].notna().all()
    if shape == "long":
        assert {"'=low", "'-2 mid", "+3"} & set(frame["band"].dropna())  # neutralised, a number left alone


@pytest.mark.parametrize("shape", ["long", "wide"])
def test_a_coordinator_gets_the_same_bytes_for_their_own_sites(cohort, engine, shape):
    coord = cohort["coordinator"]
    batch, sql, rows = _both(engine, cohort["study"].id, _actor(coord), shape, identifiers=True)
    assert sql == batch and rows > 0
    assert set(pd.read_csv(io.BytesIO(sql), dtype=str)["site"]) == {"north"}


def test_blocks_split_anywhere_and_the_header_travels_with_the_first(analyst, cohort, engine, monkeypatch):
    monkeypatch.setattr(sqlpath, "BLOCK", 64)
    with Session(engine) as s:
        plan = service.plan_export(s, s.get(Study, cohort["study"].id), _actor(analyst), secret=SECRET)
        chunks = list(sqlpath.csv_chunks(s, plan, "long"))
    assert len(chunks) > 3 and chunks[0].startswith(b"participant,site,arm,")
    assert chunks[0].count(b"\n") >= 2  # header and at least one row: read before the first byte goes out
    assert b"".join(chunks) == _both(engine, cohort["study"].id, _actor(analyst), "long")[0]


def test_the_http_export_is_the_sql_path_and_its_receipt_hashes_those_bytes(client, analyst, cohort, engine):
    study = cohort["study"]
    batch = _both(engine, study.id, _actor(analyst), "wide")[0]
    r = client.get(f"/studies/{study.id}/exports/wide", params={"format": "csv"}, headers=analyst.headers)
    assert r.status_code == 200 and r.content == batch
    rec = client.get(r.headers["Peerlens-Export-Receipt"], headers=analyst.headers).json()
    assert rec["complete"] is True and rec["sha256"] == hashlib.sha256(r.content).hexdigest()
    assert rec["rows"] == r.content.count(b"\n") - 1


def test_unsupported_requests_keep_the_batch_path(analyst, cohort, engine):
    with Session(engine) as s:
        plan = service.plan_export(s, s.get(Study, cohort["study"].id), _actor(analyst), secret=SECRET)
        assert not sqlpath.supported(plan, "long", "parquet", "postgresql")
        assert not sqlpath.supported(plan, "long", "csv", "sqlite")
        assert not sqlpath.supported(plan, "items", "csv", "postgresql")
        plan.filters.items = True
        assert not sqlpath.supported(plan, "wide", "csv", "postgresql")


def test_the_date_shift_in_sql_is_the_python_shift(engine):
    from api.exports.deid import shift_days

    ids = list(range(1, 400)) + [2**31 - 1]
    for secret in ("test-secret", "k" * 100, "ünïcode"):
        plan = type("P", (), {"secret": secret, "study_id": 17})()
        expr = sqlpath._shift_sql(plan)
        with engine.connect() as c:
            raw = c.connection.driver_connection
            array = "ARRAY[" + ",".join(map(str, ids)) + "]"
            got = raw.execute(f"SELECT p.id, {expr} FROM unnest({array}) AS p(id) ORDER BY p.id").fetchall()
        assert got == [(i, shift_days(secret, 17, i)) for i in ids]


def test_floats_are_spelt_as_arrow_spells_them(engine):
    values = [0.0, -0.0, 1.0, 12.0, -1.0, 0.5, 13.333333333333334, 1e-4, 9.99e-5, 1.5e-5, 1e-6, 9.5e-7, 1e-7]
    values += [-1.2345e-7, 1e15, 1.5e15, 1e16, 1e21, 1.2345678901234568e17, 0.1 + 0.2, 2.5e-300, 1.7976931348623157e308]
    values += [float("nan"), float("inf"), float("-inf")]
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.table({"v": pa.array(values)}), sink, pacsv.WriteOptions(include_header=False))
    expected = sink.getvalue().to_pybytes().decode().splitlines()
    with engine.connect() as c:
        raw: psycopg.Connection = c.connection.driver_connection
        raw.execute("SET extra_float_digits = 1")
        got = [
            row[0]
            for row in raw.execute(
                f"SELECT {sqlpath._float_text('v')} FROM unnest(%s::float8[]) WITH ORDINALITY AS t(v, n) ORDER BY n",
                (values,),
            )
        ]
    assert got == expected


def test_text_cells_are_neutralised_as_the_arrow_writer_neutralises_them(engine):
    values = ["=1+1", "+SUM(1,2)", "-2+3", "@SUM(1)", "\t=1", "\r=1", "-3", "+1.5e3", ".5", "-", "+", "", "plain"]
    values += ["'quoted", "1-2", "é=", "-3\n", " =1", "=", "-.5e-3", "+-1", "1e5"]
    # The CSV writer's own test (Arrow's RE2): "-3\n" is not a number there, unlike Python's re.
    expected = writers._neutralise_table(pa.table({"v": values})).column("v").to_pylist()
    with engine.connect() as c:
        raw: psycopg.Connection = c.connection.driver_connection
        raw.execute("SET standard_conforming_strings = on")
        plan = type("P", (), {"filters": service.ExportFilters()})()
        builder = sqlpath._Builder(plan, raw, date.today())
        got = [
            row[0]
            for row in raw.execute(
                f"SELECT {builder.text('v')} FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n",
                (values,),
            )
        ]
    assert got == expected
    assert expected[:6] == ["'" + v for v in values[:6]] and expected[6:9] == values[6:9]
    assert expected[values.index("-3\n")] == "'-3\n"


def test_the_export_modules_examples_run():
    import doctest

    from api.exports import pgcopy, plan

    for module in (sqlpath, plan, pgcopy):
        assert doctest.testmod(module).failed == 0, module.__name__


@pytest.mark.parametrize("shape", ["long", "wide"])
def test_dates_stored_before_the_date_policy_are_empty_on_both_paths(
    client, admin, analyst, make_study, enrol, engine, shape
):
    from sqlalchemy import text

    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9"]), ("m3", 90, 14, 14, ["phq9"])))
    people = [enrol(study, site="north", enrolled_on="2026-01-05") for _ in range(3)]
    for p in people:
        for wave in ("baseline", "m3"):
            body = {"wave": wave, "instrument": "phq9", "answers": {f"phq9_{k}": 2 for k in range(1, 10)}}
            r = client.post(f"/participants/{p['id']}/responses", json=body, headers=admin.headers)
            assert r.status_code == 201, r.text
    with engine.begin() as c:  # what a database written before the plausible-date checks may hold
        c.execute(text("UPDATE participant SET enrolled_on = '0001-01-01' WHERE id = :i"), {"i": people[0]["id"]})
        c.execute(
            text("UPDATE response SET completed_at = '9999-12-31 12:00:00+00' WHERE participant_id = :i"),
            {"i": people[1]["id"]},
        )
    for user in (admin, analyst):
        batch, sql, rows = _both(engine, study.id, _actor(user), shape)
        assert sql == batch and rows == 6
        frame = pd.read_csv(io.BytesIO(sql), dtype=str, keep_default_na=False)
        assert set(frame[frame["participant"] == people[0]["study_code"]]["days"]) == {""}
        assert set(frame[frame["participant"] == people[1]["study_code"]]["completed_at"]) == {""}
