"""The study commands of ``peerlens`` (export, import-redcap, import-transcript, joint-display) on
SQLite and PostgreSQL: what they write, that their work is committed and audited, and that a bad
argument is a usage error naming the option rather than a traceback."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from lxml import etree
from sqlmodel import Session, select
from typer.testing import CliRunner

import instruments
from api.audit.models import AuditEvent
from api.cli import app
from api.config import get_settings
from tests.conftest import phq9_answers

DATA = Path(__file__).parent / "data"
NAME = "Henrietta Vollbrecht-Osei"


@pytest.fixture(scope="module")
def env(db_url, tmp_path_factory):
    """The commands read DATABASE_URL and friends from the environment, like on a server."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", db_url)
    mp.setenv("PEERLENS_SECRET_KEY", "test-secret")
    mp.setenv("PEERLENS_ARTIFACT_DIR", str(tmp_path_factory.mktemp("cli-artifacts")))
    get_settings.cache_clear()
    yield
    mp.undo()
    get_settings.cache_clear()
    instruments.unregister("wellbeing_rc")


@pytest.fixture(scope="module")
def study(env, client, admin, make_study, enrol):
    study = make_study()
    for i, site in enumerate(("north", "north", "south")):
        contact = {"name": NAME} if i == 0 else None
        p = enrol(study, site=site, arm="group" if i % 2 else "usual_care", study_code=f"CLI-{i}", contact=contact)
        r = client.post(
            f"/participants/{p['id']}/responses",
            json={"wave": "baseline", "instrument": "phq9", "answers": phq9_answers(i + 1)},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
    return study


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "240"})


def events(engine, study_id, entity):
    with Session(engine) as s:
        return s.exec(select(AuditEvent).where(AuditEvent.study_id == study_id, AuditEvent.entity == entity)).all()


def test_export_writes_the_analyst_view_and_audits_it(study, engine, tmp_path):
    out = tmp_path / "long.csv"
    res = run("export", str(study.id), "-o", str(out))
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    phq = df[df["scale"] == "phq9"].sort_values("participant")
    assert phq["value"].tolist() == [9.0, 18.0, 27.0]  # nine items answered 1, 2, 3
    assert NAME not in out.read_text() and json.loads((tmp_path / "long.csv.dictionary.json").read_text())
    redcap = tmp_path / "redcap.csv"
    assert run("export", str(study.id), "--shape", "redcap", "-o", str(redcap)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(redcap.read_text())))
    assert sorted(r["record_id"] for r in rows) == ["CLI-0", "CLI-1", "CLI-2"]
    audited = [e.after for e in events(engine, study.id, "study") if e.action == "export"]
    assert [(a["shape"], a["complete"], a["deidentified"]) for a in audited[-2:]] == [
        ("long", True, True),
        ("redcap", True, True),
    ]


def test_export_odm_writes_the_analyst_view_as_valid_odm(study, engine, tmp_path):
    from tests.api.test_odm import NS, odm_schema

    out = tmp_path / "study.xml"
    res = run("export", str(study.id), "--shape", "odm", "-o", str(out))
    assert res.exit_code == 0, res.output
    doc = etree.parse(str(out))
    schema = odm_schema()
    assert schema.validate(doc), schema.error_log
    keys = sorted(s.get("SubjectKey") for s in doc.iterfind("odm:ClinicalData/odm:SubjectData", NS))
    assert keys == ["CLI-0", "CLI-1", "CLI-2"] and NAME not in out.read_text()
    totals = [i.get("Value") for i in doc.iterfind(".//odm:ItemData[@ItemOID='I.PHQ9.SC.PHQ9']", NS)]
    assert sorted(totals, key=float) == ["9", "18", "27"]
    audited = [e.after for e in events(engine, study.id, "study") if e.action == "export"]
    assert (audited[-1]["shape"], audited[-1]["format"], audited[-1]["complete"]) == ("odm", "xml", True)


def test_bad_arguments_are_usage_errors_naming_the_option(study, tmp_path):
    missing = run("export", "999999", "-o", str(tmp_path / "x.csv"))
    assert missing.exit_code == 2 and "no such study" in missing.output
    wave = run("export", str(study.id), "--waves", "m99", "-o", str(tmp_path / "y.csv"))
    assert wave.exit_code == 2 and "waves" in wave.output and "Traceback" not in wave.output


def test_import_redcap_commits_unless_dry_run(study, engine):
    args = [
        "import-redcap",
        str(study.id),
        "--records",
        str(DATA / "redcap_records.csv"),
        "--dictionary",
        str(DATA / "redcap_dictionary.csv"),
        "--event",
        "baseline_arm_1=baseline",
        "--event",
        "month_3_arm_1=m3",
        "--site",
        "north",
    ]
    dry = run(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["committed"] is False and not events(engine, study.id, "response")[3:]
    done = run(*args)
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["committed"] is True and report["counts"]["responses"] == 6
    imported = [e for e in events(engine, study.id, "response") if e.source == "import"]
    assert len(imported) == 6


def test_import_transcript_and_joint_display(study, engine, tmp_path):
    text = tmp_path / "cli0.txt"
    text.write_text(f"Interviewer: How are you?\nCLI-0: I am {NAME} and I felt less lonely.\n")
    res = run("import-transcript", str(study.id), str(text), "--participant", "CLI-0", "--wave", "baseline")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("transcript ") and "PERSON" in res.output
    (stored,) = events(engine, study.id, "transcript")
    assert stored.after["participants"] == ["CLI-0"] and stored.source == "import"
    unknown = run("import-transcript", str(study.id), str(text), "--participant", "NOPE")
    assert unknown.exit_code == 2 and "participants" in unknown.output

    out = tmp_path / "joint"
    nope = run("joint-display", str(study.id), "--theme", "no_such_code", "-o", str(out))
    assert nope.exit_code == 2 and "themes" in nope.output


def test_report_writes_html_and_is_audited(study, engine, tmp_path):
    res = run("report", str(study.id), "--no-pdf", "--outdir", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    html = (tmp_path / "out" / "report.html").read_text()
    from api.participants.models import Participant

    with Session(engine) as s:
        allocated = s.exec(
            select(Participant.study_code).where(Participant.study_id == study.id, Participant.arm_id.is_not(None))
        ).all()
    assert f"Randomised (n={len(allocated)})" in html and NAME not in html
    assert not [c for c in allocated if len(c) >= 4 and c in html]  # no study code either
    assert "sections without data yet: " in res.output and "Intervention and process" in res.output
    assert not (tmp_path / "out" / "report.pdf").exists()
    digest = res.output.split("data snapshot sha256 ")[1].split()[0]
    audited = [e for e in events(engine, study.id, "report_run") if e.action == "report.generate"]
    assert audited and audited[-1].after["data_hash"] == digest and audited[-1].actor_role == "analyst"
    bad = run("report", str(study.id), "--site", "west")
    assert bad.exit_code == 2 and "--site" in bad.output and "Traceback" not in bad.output


def test_delivery_forum_import_and_dose(study, engine, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("study_code,week_start,posts,replies,logins\nCLI-1,2026-01-06,1,2,3\n")
    r = run("delivery", "import-forum", str(study.id), str(bad))
    assert r.exit_code == 1 and "2, week_start: weeks start on a Monday" in r.output
    assert events(engine, study.id, "forum_activity") == []  # nothing stored
    good = tmp_path / "good.csv"
    good.write_text("study_code,week_start,posts,replies,logins\nCLI-1,2026-01-05,1,2,3\nCLI-1,2026-01-12,4,0,2\n")
    r = run("delivery", "import-forum", str(study.id), str(good))
    assert r.exit_code == 0 and "2 rows: 2 new weeks, 0 replaced" in r.output, r.output
    assert len(events(engine, study.id, "forum_activity")) == 1
    r = run("delivery", "dose", str(study.id))
    assert r.exit_code == 0, r.output
    rows = {line.split(",")[1]: line.split(",") for line in r.output.strip().splitlines()[1:]}
    header = r.output.splitlines()[0].split(",")
    assert rows["CLI-1"][header.index("forum_posts")] == "5" and rows["CLI-0"][header.index("forum_posts")] == "0"
