"""A populated trial database survives the upgrade to head, on SQLite and PostgreSQL.

The database is built at revision 5e1a8b3c9d47 (release 0.1.0) from a data set that release wrote
(``tests/api/upgrade_support.py`` says what is in it), without today's models, then upgraded to
``head``. After the upgrade:

* every row of every table is still there with the same values in every column that existed;
* the exports equal, in the columns that existed, the exports release 0.1.0 wrote of the same data;
* the API tokens still authenticate (and the expired and revoked ones still do not), the personal
  form links still open and accept answers, unsubscribe links still work, and new rows can be
  written;
* the audit trail is still append-only (UPDATE, DELETE and TRUNCATE refused by the database), and
  every earlier row carries its MAC and is sealed, so ``peerlens audit verify`` passes;
* the schema equals the models, as it does for an empty database.

Every new revision must keep this module green. A revision that changes stored data on purpose
declares it in :data:`DECLARED` (what the value must become, or that a column or table is dropped),
a release that changes what an export writes for existing data declares it in
:data:`DECLARED_EXPORTS`, and both say so in CHANGELOG.md; anything else that changes is reported
as table, column and row (or export file, row and column).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.upgrade_support import EXPORTS, PINNED, diff_exports, diff_rows, golden_export, meta, populate, read_rows


@dataclass(frozen=True)
class Declared:
    """A change to stored data that a revision makes on purpose."""

    revision: str
    reason: str
    expected: Callable[[dict[str, Any]], Any] | None = None  # before row -> value after
    dropped: bool = False


#: ``(table, column)`` -> :class:`Declared`; ``(table, None)`` for a dropped table. Empty: no
#: revision since 0.1.0 changes or drops stored data.
DECLARED: dict[tuple[str, str | None], Declared] = {}

#: ``(export file or None for all, column)`` -> :class:`Declared` whose ``expected`` maps the 0.1.0
#: CSV value to the value this release writes, for a change a release makes to exports on purpose
#: (and lists in CHANGELOG.md under Analysts). Empty: exports of 0.1.0 data are unchanged.
DECLARED_EXPORTS: dict[tuple[str | None, str], Declared] = {
    # CSV cells a spreadsheet would run as a formula get a leading ' (OWASP): a phone number
    # written "+44 …" is one of them.
    (None, "contact_phone"): Declared(
        "release after 0.2.0 (CSV formula escaping)",
        "spreadsheets must not run exported text as formulas",
        expected=lambda v: ("'" + v) if isinstance(v, str) and v and v[0] in "=+-@\t\r" else v,
    ),
}
#: arm code -> the neutral label analysts read until the study is unblinded (filled by the
#: ``blinded_arms`` fixture from the upgraded database's seeds, recomputed here with hmac).
BLINDED: dict[str, str] = {}
for _name in ("analyst-long.csv", "analyst-wide.csv", "analyst-items.csv"):
    DECLARED_EXPORTS[(_name, "arm")] = Declared(
        "release after 0.2.0 (blinded analysis)",
        "analysts read arms as neutral labels until an admin unblinds the study",
        expected=lambda v: BLINDED.get(v, v),
    )
    DECLARED_EXPORTS[(_name, "arm_kind")] = Declared(
        "release after 0.2.0 (blinded analysis)", "the arm kind is withheld from blind readers", expected=lambda v: ""
    )

META = meta()


@pytest.fixture(scope="module")
def upgraded(empty_db_url):
    """The data set loaded at the pinned revision, then upgraded to head; rows read before and after."""
    from api.migrate import upgrade

    loaded = populate(empty_db_url)
    before = read_rows(empty_db_url)
    upgrade(empty_db_url, "head")
    after = read_rows(empty_db_url)
    return {"url": empty_db_url, "loaded": loaded, "before": before, "after": after}


@pytest.fixture(scope="module")
def upgraded_client(upgraded, tmp_path_factory):
    """The app of today on the upgraded database, with the secret key the data set was written with."""
    import instruments
    from api.config import Settings, get_settings
    from api.main import create_app

    mp = pytest.MonkeyPatch()
    # Link tokens are derived with the secret key of the settings the app is given (api.links.service).
    mp.setenv("PEERLENS_SECRET_KEY", META["secret_key"])
    get_settings.cache_clear()
    settings = Settings(
        DATABASE_URL=upgraded["url"],
        PEERLENS_SECRET_KEY=META["secret_key"],
        PEERLENS_BASE_URL="http://testserver",
        PEERLENS_ARTIFACT_DIR=str(tmp_path_factory.mktemp("artifacts")),
    )
    app = create_app(settings)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client
    finally:
        app.state.engine.dispose()
        mp.undo()
        get_settings.cache_clear()
        instruments.unregister("wellbeing_rc")  # registered from the imported REDCap dictionary


def _auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {META['tokens'][role]}"}


def test_the_data_set_is_loaded_whole_at_the_pinned_revision(upgraded):
    assert diff_rows(upgraded["loaded"], upgraded["before"]) == []
    before = upgraded["before"]
    # Every table of the 0.1.0 schema holds rows, so every one is exercised by the upgrade.
    assert sorted(t for t, rows in before.items() if not rows) == []
    assert len(before["response"]) == 262 and len(before["score"]) == 392
    assert len(before["audit_event"]) > 350
    assert {r["action"] for r in before["audit_event"].values()} >= {"create", "amend", "update"}


def test_every_row_survives_the_upgrade(upgraded):
    problems = diff_rows(upgraded["before"], upgraded["after"], declared=DECLARED)
    assert not problems, "data changed by the upgrade from " + PINNED + " to head:\n" + "\n".join(problems)


def test_schema_after_upgrading_populated_database_matches_the_models(upgraded):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import api.models  # noqa: F401
    from api.db import make_engine, metadata

    engine = make_engine(upgraded["url"], pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_audit_trail_is_still_append_only_after_the_upgrade(upgraded):
    # A table rebuild (SQLite batch migration) would silently drop the audit trail's triggers.
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from api.db import make_engine

    engine = make_engine(upgraded["url"], pool_size=1, max_overflow=0)
    statements = ["UPDATE audit_event SET reason = 'x' WHERE id = 1", "DELETE FROM audit_event WHERE id = 1"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_event")
    try:
        for stmt in statements:
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(stmt))
    finally:
        engine.dispose()
    before = {"audit_event": upgraded["after"]["audit_event"]}
    assert diff_rows(before, read_rows(upgraded["url"], ["audit_event"])) == []


def test_audit_trail_of_the_earlier_release_verifies_after_the_upgrade(upgraded):
    # The chain revision gives every earlier row its MAC and seals it with the service's key, so
    # `peerlens audit verify` passes on an upgraded trial, and a row altered afterwards is named.
    from sqlalchemy.orm import Session

    from api.audit.chain import verify
    from api.db import make_engine

    engine = make_engine(upgraded["url"], pool_size=1, max_overflow=0)
    try:
        with Session(engine) as session:
            report = verify(session)
        rows = len(upgraded["after"]["audit_event"])
        assert report.ok, report.lines()
        assert report.rows == rows and report.sealed == rows and report.unsealed == 0
        assert report.forged == [] and report.altered == []
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def blinded_arms(upgraded):
    """:data:`BLINDED` for the upgraded database: arms ordered by HMAC-SHA256 of the study's
    stored randomisation seed, lettered A, B, C."""
    import hashlib
    import hmac

    from sqlalchemy import text

    from api.db import make_engine

    engine = make_engine(upgraded["url"], pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            arms = conn.execute(
                text(
                    "SELECT arm.id, arm.code, arm.study_id, study.randomisation_seed"
                    " FROM arm JOIN study ON study.id = arm.study_id"
                )
            ).all()
    finally:
        engine.dispose()
    BLINDED.clear()
    for study_id in {a.study_id for a in arms}:
        mine = [a for a in arms if a.study_id == study_id]
        mine.sort(
            key=lambda a: hmac.new(
                a.randomisation_seed.encode(), f"arm-blind:{study_id}:{a.id}".encode(), hashlib.sha256
            ).hexdigest()
        )
        for i, a in enumerate(mine):
            assert BLINDED.setdefault(a.code, "ABCDEFGH"[i]) == "ABCDEFGH"[i], "arm codes shared by studies"
    return BLINDED


@pytest.mark.parametrize("name", list(EXPORTS))
def test_exports_equal_those_of_the_earlier_release(upgraded_client, blinded_arms, name):
    role, shape, query, keys = EXPORTS[name]
    r = upgraded_client.get(
        f"/studies/{META['study_id']}/exports/{shape}", params={"format": "csv", **query}, headers=_auth(role)
    )
    assert r.status_code == 200, r.text
    problems = diff_exports(name, golden_export(name), r.content, keys, declared=DECLARED_EXPORTS)
    assert not problems, "exports changed by the upgrade:\n" + "\n".join(problems)


def test_api_tokens_still_authenticate(upgraded_client):
    for role, status in META["tokens_expect"].items():
        r = upgraded_client.get("/me", headers=_auth(role))
        assert r.status_code == status, (role, r.text)
        if status == 200:
            assert r.json()["role"] == role


def test_personal_links_still_open_and_accept_answers(upgraded_client):
    import re

    live = [x for x in META["links"] if x["state"] == "live"]
    revoked = [x for x in META["links"] if x["state"] == "revoked"]
    for link in live:
        assert upgraded_client.get(f"/f/{link['token']}").status_code == 200, link
    for link in revoked:
        assert upgraded_client.get(f"/f/{link['token']}").status_code == 404, link
    # The live link can still be shown again (its nonce and the key reproduce the same token).
    first = live[0]
    listed = upgraded_client.get(f"/participants/{first['participant_id']}/links", headers=_auth("admin"))
    assert listed.status_code == 200, listed.text
    urls = [x.get("url") or "" for x in listed.json() if x.get("wave") == "diary"]
    assert [u.rsplit("/f/", 1)[-1] for u in urls] == [first["token"]], listed.json()
    # ... and takes an answer through the form.
    page = upgraded_client.get(f"/f/{first['token']}")
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text).group(1)
    data = {"csrf": csrf, "instrument": "gad7", "action": "save"}
    data.update({f"i_gad7_{k}": str(k % 4) for k in range(1, 8)})
    data["i_gad7_8"] = "1"
    r = upgraded_client.post(f"/f/{first['token']}", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    responses = upgraded_client.get(f"/participants/{first['participant_id']}/responses", headers=_auth("admin"))
    assert any(x["instrument"] == "gad7" and x["wave"] == "diary" and x["mode"] == "web" for x in responses.json())


def test_unsubscribe_links_still_work(upgraded_client):
    for item in META["unsubscribe"]:
        r = upgraded_client.get(f"/u/{item['token']}")
        assert r.status_code == 200, r.text


def test_new_rows_can_be_written_after_the_upgrade(upgraded_client):
    pid = META["contact_participants"][1]
    body = {"wave": "diary", "instrument": "gad7", "answers": {f"gad7_{k}": 1 for k in range(1, 8)}}
    r = upgraded_client.post(f"/participants/{pid}/responses", json=body, headers=_auth("coordinator"))
    assert r.status_code == 201, r.text
    enrol = {"site": "south", "enrolled_on": "2026-11-28", "consent": {"date": "2026-11-28", "version": "v1.2"}}
    r = upgraded_client.post(f"/studies/{META['study_id']}/participants", json=enrol, headers=_auth("admin"))
    assert r.status_code == 201, r.text


def test_declared_changes_pass_and_undeclared_ones_are_named():
    before = {"score": {(1,): {"id": 1, "value": 7.0, "band": "mild"}, (2,): {"id": 2, "value": 3.0, "band": None}}}
    after = {"score": {(1,): {"id": 1, "value": 7.0, "band": "Mild"}, (2,): {"id": 2, "value": 3.5, "band": None}}}
    declared = {
        ("score", "band"): Declared("x", "bands capitalised", expected=lambda r: r["band"] and r["band"].title())
    }
    assert diff_rows(before, after, declared=declared) == [
        "table score, column value: 1 row(s) changed; row (2,): before 3.0, after 3.5"
    ]
    dropped = {("score", "band"): Declared("x", "band moved elsewhere", dropped=True)}
    assert (
        diff_rows(
            before,
            {"score": {k: {"id": v["id"], "value": v["value"]} for k, v in before["score"].items()}},
            declared=dropped,
        )
        == []
    )
    old = b"participant,wave,value\nP1,baseline,-3\n"
    new = b"participant,wave,value\nP1,baseline,'-3\n"
    assert diff_exports("x.csv", old, new, ("participant", "wave")) == [
        "x.csv: row participant=P1 wave=baseline, column value: before '-3', after \"'-3\""
    ]
    quoted = {(None, "value"): Declared("x", "formula-like cells quoted", expected=lambda v: "'" + v)}
    assert diff_exports("x.csv", old, new, ("participant", "wave"), declared=quoted) == []
