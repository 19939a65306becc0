"""Licensed content through the service: an admin uploads PAM-13's calibration table and the
licensed wordings (API and `peerlens licensed`); uploads are validated and audited; afterwards the
participant form shows the wording and scoring yields the activation score."""

from __future__ import annotations

from datetime import date, timedelta
from urllib.parse import urlparse

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

import instruments
from api.audit.models import AuditEvent
from api.cli import app as cli
from api.config import get_settings
from api.licensed import service as licensed
from tests.conftest import pam13_answers

WORDING = "item_code,text\n" + "".join(f"pam13_{i},Licensed statement number {i}\n" for i in range(1, 14))
# A made-up table (the licensor's is not public): the expected scores below follow from it by hand.
CALIBRATION = "raw,activation\n13,0\n26,40\n39,70\n52,100\n"


@pytest.fixture(scope="module", autouse=True)
def _forget_uploads(backend):
    """Uploads register process-wide: later test modules must see the shipped definitions again."""
    yield
    instruments.unregister("pam13")
    instruments.unregister("hls_eu_q6")
    instruments.clear_calibration()
    licensed._applied["max_id"] = 0


def _upload(client, user, instrument, kind, text, **form):
    return client.post(
        f"/licensed/{instrument}/{kind}",
        files={"file": (f"{kind}.csv", text.encode(), "text/csv")},
        data=form,
        headers=user.headers,
    )


def _pam13(client, admin, pid):
    r = client.post(
        f"/participants/{pid}/responses",
        json={"wave": "baseline", "instrument": "pam13", "answers": pam13_answers(3)},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return {s["scale"]: s for s in r.json()["scores"]}


def test_bad_uploads_are_refused_naming_the_field(client, admin, make_user):
    coordinator = make_user("coordinator")
    assert _upload(client, coordinator, "pam13", "wording", WORDING).status_code == 403
    r = _upload(client, admin, "pam13", "wording", "item_code,text\npam13_99,Unknown item\npam13_1,\n")
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "file"] and "line 2" in err["msg"] and "line 3" in err["msg"]
    r = _upload(client, admin, "nosuch", "wording", WORDING)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "instrument"]
    r = _upload(client, admin, "phq9", "wording", "item_code,text\nphq9_1,x\n")
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "wording_shipped"
    r = _upload(client, admin, "phq9", "calibration", CALIBRATION)
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "no_lookup_scale"
    r = _upload(client, admin, "pam13", "calibration", "raw,activation\n13,0\n13,5\n52,140\n")
    assert r.status_code == 422 and "raw scores repeat" in r.json()["detail"][0]["msg"]
    r = _upload(client, admin, "pam13", "calibration", "")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"]
    r = client.post(
        "/licensed/pam13/wording", files={"file": ("w.csv", b"\xff\xfe bad", "text/csv")}, headers=admin.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"]
    # nothing was registered by the refused files
    assert client.get("/licensed", headers=admin.headers).json() == []
    assert instruments.get("pam13").item("pam13_1").text is None


def test_uploads_make_the_form_show_the_wording_and_scoring_yield_activation(
    client, admin, analyst, make_study, enrol, engine
):
    study = make_study(waves=(("baseline", 0, 0, 14, ["pam13"]),))
    before, after = (enrol(study, arm="group", enrolled_on=str(date.today() - timedelta(days=1))) for _ in range(2))
    scores = _pam13(client, admin, before["id"])
    assert scores["pam13_raw"]["value"] == 39 and scores["pam13_activation"]["value"] is None
    # the form cannot collect PAM-13 yet: no link is issued for a wave with nothing to show
    assert (
        client.post(f"/participants/{after['id']}/links", json={"wave": "baseline"}, headers=admin.headers).status_code
        == 409
    )

    r = _upload(client, admin, "pam13", "wording", WORDING)
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == 13 and r.json()["kind"] == "wording"
    r = _upload(client, admin, "pam13", "calibration", CALIBRATION)
    assert r.status_code == 201, r.text

    # scoring: raw 39 -> 70 by the table, level 4 (above 67.0)
    scores = _pam13(client, admin, after["id"])
    assert scores["pam13_activation"]["value"] == pytest.approx(70.0) and scores["pam13_activation"]["level"] == 4
    # the form shows the licensed wording
    link = client.post(f"/participants/{after['id']}/links", json={"wave": "baseline"}, headers=admin.headers)
    assert link.status_code == 409  # already answered through the API
    third = enrol(study, arm="group", enrolled_on=str(date.today() - timedelta(days=1)))
    link = client.post(f"/participants/{third['id']}/links", json={"wave": "baseline"}, headers=admin.headers)
    assert link.status_code == 201, link.text
    page = client.get(urlparse(link.json()["url"]).path)
    assert page.status_code == 200 and "Licensed statement number 1" in page.text

    listed = client.get("/licensed", headers=admin.headers).json()
    assert [(x["instrument"], x["kind"]) for x in listed] == [("pam13", "wording"), ("pam13", "calibration")]
    assert "content" not in listed[0] and len(listed[0]["sha256"]) == 64
    assert client.get("/licensed", headers=analyst.headers).status_code == 403
    with Session(engine) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.entity == "licensed_content")).all()
    assert [e.after["kind"] for e in events] == ["wording", "calibration"]
    assert all("Licensed statement" not in str(e.after) for e in events)  # the licensed text is not copied


def test_another_process_picks_up_uploads_and_the_cli_uploads(client, admin, db_url, tmp_path, engine):
    # a process that started before the upload: forget what this one applied, as a fresh worker would
    instruments.unregister("pam13")
    instruments.clear_calibration()
    licensed._applied["max_id"] = 0
    assert licensed.load_licensed(engine) == 2
    assert instruments.get("pam13").item("pam13_2").text == "Licensed statement number 2"

    path = tmp_path / "hls6.csv"
    path.write_text("item_code,text\n" + "".join(f"hls_eu_q6_{i},HLS statement {i}\n" for i in range(1, 7)))
    seen = licensed._applied["max_id"]
    mp = pytest.MonkeyPatch()
    mp.setenv("DATABASE_URL", db_url)
    mp.setenv("PEERLENS_SECRET_KEY", "test-secret")
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(cli, ["licensed", "wording", "hls_eu_q6", str(path)])
        assert res.exit_code == 0, res.output
        assert "stored wording of hls_eu_q6 (6 rows" in res.output
        bad = CliRunner().invoke(cli, ["licensed", "wording", "hls_eu_q6", str(tmp_path / "missing.csv")])
        assert bad.exit_code == 1 and "cannot read" in bad.output
        path.write_text("item_code,text\nhls_eu_q6_9,x\n")
        bad = CliRunner().invoke(cli, ["licensed", "wording", "hls_eu_q6", str(path)])
        assert bad.exit_code == 1 and "unknown item" in bad.output
        listed = CliRunner().invoke(cli, ["licensed", "list"])
        assert listed.exit_code == 0 and "hls_eu_q6" in listed.output and "calibration" in listed.output
    finally:
        mp.undo()
        get_settings.cache_clear()
    # as if the command had run in another process: this one sees the upload at its next check
    instruments.unregister("hls_eu_q6")
    licensed._applied["max_id"] = seen
    assert instruments.get("hls_eu_q6").item("hls_eu_q6_1").text is None
    with Session(engine) as s:
        licensed.refresh(s)
    assert instruments.get("hls_eu_q6").item("hls_eu_q6_1").text == "HLS statement 1"
