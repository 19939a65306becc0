"""The release number: one source (pyproject.toml), Semantic Versioning, shown wherever results leave.

/health, every response's ``Peerlens-Version`` header, every export's JSON data dictionary (also
inside Parquet files and the CLI's ``.dictionary.json``), Stata/SPSS file labels, the analysis
report's provenance appendix; CHANGELOG.md has a section for it.
"""

from __future__ import annotations

import doctest
import io
import re
import tomllib
from pathlib import Path

import pytest

import api.release
from api.migrate import head_revision
from api.release import is_semver, provenance, version

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_pyprojects_and_semantic():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version() == declared, "reinstall (make setup): the installed metadata is older than pyproject.toml"
    assert is_semver(version())
    for bad in ("1.2", "v1.2.3", "1.02.3", "1.2.3.4", "1.2.3-", "1.2.3-01"):
        assert not is_semver(bad), bad


def test_release_docstrings():
    assert doctest.testmod(api.release, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_changelog_has_a_section_for_this_release_and_an_unreleased_one():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased"
    assert version() in headings
    section = text.split(f"## [{version()}]", 1)[1].split("\n## [", 1)[0]
    for audience in ("Coordinators", "Analysts", "Operators", "Schema"):
        assert f"### {audience}" in section, audience


def test_health_names_the_version_and_the_schema(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "database": "ok",
        "version": version(),
        "schema": head_revision(),
        "schema_current": True,
    }
    assert r.headers["peerlens-version"] == version()
    assert client.get("/openapi.json").json()["info"]["version"] == version()


def test_health_says_when_the_schema_is_behind(tmp_path):
    from fastapi.testclient import TestClient

    from api.config import Settings
    from api.main import create_app
    from api.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "4c7d2e9a1b05")
    app = create_app(Settings(DATABASE_URL=url, PEERLENS_SECRET_KEY="x"))
    try:
        with TestClient(app) as c:
            body = c.get("/health").json()
    finally:
        app.state.engine.dispose()
    assert body["status"] == "ok" and body["schema"] == "4c7d2e9a1b05" and body["schema_current"] is False


@pytest.fixture(scope="module")
def exported(client, admin, analyst, make_study, enrol):
    from tests.conftest import phq9_answers

    study = make_study()
    p = enrol(study)
    r = client.post(
        f"/participants/{p['id']}/responses",
        json={
            "wave": "baseline",
            "instrument": "phq9",
            "answers": phq9_answers(1),
            "completed_at": "2026-01-06T10:00:00Z",
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return study


@pytest.mark.parametrize("shape", ["long", "wide", "items"])
def test_every_data_dictionary_names_the_release(client, analyst, exported, shape):
    r = client.get(f"/studies/{exported.id}/exports/{shape}/dictionary", headers=analyst.headers)
    assert r.status_code == 200
    assert r.json()["peerlens_version"] == version()
    r = client.get(f"/studies/{exported.id}/exports/{shape}/dictionary?format=csv", headers=analyst.headers)
    assert r.headers["peerlens-version"] == version()


def test_parquet_and_stat_files_carry_the_release(client, analyst, exported, tmp_path):
    import json

    import pyarrow.parquet as pq
    import pyreadstat

    r = client.get(f"/studies/{exported.id}/exports/long?format=parquet", headers=analyst.headers)
    meta = pq.read_schema(io.BytesIO(r.content)).metadata
    assert json.loads(meta[b"peerlens.dictionary"])["peerlens_version"] == version()
    for fmt, reader in (("dta", pyreadstat.read_dta), ("sav", pyreadstat.read_sav)):
        r = client.get(f"/studies/{exported.id}/exports/wide?format={fmt}", headers=analyst.headers)
        assert r.status_code == 200
        path = tmp_path / f"x.{fmt}"
        path.write_bytes(r.content)
        _, file_meta = reader(str(path), metadataonly=True)
        assert file_meta.file_label == f"Peerlens {version()} wide export, study {exported.id}"


def test_provenance_names_the_database_revision(engine):
    with engine.connect() as conn:
        info = provenance(conn)
    assert info["peerlens"] == version()
    assert info["schema_revision"] == info["schema_head"] == head_revision()
    assert info["packages"]["statsmodels"] and info["packages"]["pandas"]
