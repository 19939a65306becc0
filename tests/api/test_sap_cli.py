"""``peerlens sap draft|lock|show`` and ``peerlens unblind`` on SQLite and PostgreSQL: the work is
committed and audited, the printed hash is the SHA-256 of the canonical plan, a bad argument is a
usage error naming the option."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from api.audit.models import AuditEvent
from api.cli import app
from api.config import get_settings

PLAN = {"primary": {"scale": "phq9", "wave": "m6", "model": "trial"}, "covariates": ["site"], "mcids": {"phq9": 5}}


@pytest.fixture(scope="module")
def env(db_url, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", db_url)
    mp.setenv("PEERLENS_SECRET_KEY", "test-secret")
    mp.setenv("PEERLENS_ARTIFACT_DIR", str(tmp_path_factory.mktemp("cli-artifacts")))
    get_settings.cache_clear()
    yield
    mp.undo()
    get_settings.cache_clear()


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "240"})


def test_sap_draft_lock_show_and_unblind(env, client, admin, analyst, make_study, enrol, engine, tmp_path):
    study = make_study()
    p = enrol(study, arm="group")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({**PLAN, "primary": {"scale": "nope", "wave": "m6"}}))
    bad = run("sap", "draft", str(study.id), str(plan))
    assert bad.exit_code == 2 and "scale" in bad.output
    plan.write_text("{not json")
    assert run("sap", "draft", str(study.id), str(plan)).exit_code == 2
    plan.write_text(json.dumps(PLAN))
    res = run("sap", "draft", str(study.id), str(plan))
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["version"] == 1
    assert run("sap", "lock", str(study.id), "--hash", "0" * 64).exit_code == 2
    res = run("sap", "lock", str(study.id))
    assert res.exit_code == 0, res.output
    digest = res.output.split("sha256 ")[1].split()[0]
    content = client.get(f"/studies/{study.id}/analysis-plans/1", headers=admin.headers).json()["content"]
    canonical = json.dumps(
        {"study_id": study.id, "version": 1, "content": content}, sort_keys=True, separators=(",", ":")
    ).encode()
    assert digest == hashlib.sha256(canonical).hexdigest()
    assert run("sap", "lock", str(study.id)).exit_code == 1  # nothing left to lock

    plan.write_text(json.dumps({**PLAN, "covariates": []}))
    assert run("sap", "draft", str(study.id), str(plan)).exit_code == 0
    shown = run("sap", "show", str(study.id), "--version", "2")
    assert shown.exit_code == 0, shown.output
    assert f"locked plan: version 1, sha256 {digest}" in shown.output
    assert "deviation: covariates: planned ['site'], now []" in shown.output
    assert "blinded" in shown.output

    assert client.get(f"/participants/{p['id']}", headers=analyst.headers).json()["arm"] in ("A", "B", "C")
    assert run("unblind", str(study.id), "--reason", "final analysis").exit_code == 1  # no --yes
    res = run("unblind", str(study.id), "--reason", "final analysis", "--yes")
    assert res.exit_code == 0, res.output
    assert "unblinded at" in res.output and "= group" in res.output
    assert client.get(f"/participants/{p['id']}", headers=analyst.headers).json()["arm"] == "group"
    assert run("unblind", str(study.id), "--reason", "again", "--yes").exit_code == 2  # already unblinded
    with Session(engine) as s:
        ev = s.exec(
            select(AuditEvent).where(AuditEvent.study_id == study.id, AuditEvent.action == "study.unblind")
        ).all()
    assert len(ev) == 1 and ev[0].reason == "final analysis" and ev[0].actor_role == "system"
