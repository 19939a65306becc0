"""The trial report on a small trial built by hand: every CONSORT and Table 1 number read back from
the rendered HTML and checked against hand counts; the page opened in headless Chromium makes no
request; the PDF has the same sections; the screening log's rules.

The trial (dates relative to today, so the waves that are due do not depend on the day the test runs):

=====  ======  =====  ==========  ======  ======  ===================================================
code   arm     site   enrolled    PHQ-9   PHQ-9   what happens (PHQ-9: items 1-8 at 1, 2 or 3, item 9 at 0)
                                  base    m6
=====  ======  =====  ==========  ======  ======  ===================================================
P1     peer    north  300 d ago   16      8
P2     peer    north  300 d ago   24      8
P3     peer    south  300 d ago   16      –       lost to follow-up on day 60 (moved away)
P4     peer    south  300 d ago   8       –       withdrew from follow-up on day 40 (too busy)
P5     peer    north  300 d ago   16      16      serious AE (hospitalisation); stopped the intervention on
                                                  day 50 (hospitalised after a fall), stays in follow-up
P6     peer    north  20 d ago    24      –       m6 not yet due
U1     usual   north  300 d ago   16      16      mild AE, no action
U2     usual   south  300 d ago   8       8
U3     usual   south  300 d ago   24      –
U4     usual   north  300 d ago   –       8       no baseline questionnaire
U5     usual   north  300 d ago   16      –       withdrew from follow-up on day 90 (moved away)
U6     usual   north  300 d ago   16      –       withdrew consent for use of data on day 100: in the
                                                  flow, in no table
=====  ======  =====  ==========  ======  ======  ===================================================

P1-DUP (peer, north) is enrolled by mistake, linked to a screening entry and voided: in no count.
Every withdrawal goes through ``POST /participants/{id}/withdrawals``, the loss through ``PATCH``.

Screening: the 12 enrolled, plus 3 not eligible (2 "HbA1c below 7.5%", 1 "age under 18"), 2 declined
("no time") and 1 other ("could not be contacted").
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from datetime import UTC, date, datetime, time, timedelta
from html import unescape
from pathlib import Path

import pytest

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
TODAY = date.today()
OLD, RECENT = TODAY - timedelta(days=300), TODAY - timedelta(days=20)

PEOPLE = {
    # code: (arm, site, enrolled, baseline phq9 item value or None, m6 value or None)
    "P1": ("peer", "north", OLD, 2, 1),
    "P2": ("peer", "north", OLD, 3, 1),
    "P3": ("peer", "south", OLD, 2, None),
    "P4": ("peer", "south", OLD, 1, None),
    "P5": ("peer", "north", OLD, 2, 2),
    "P6": ("peer", "north", RECENT, 3, None),
    "U1": ("usual", "north", OLD, 2, 2),
    "U2": ("usual", "south", OLD, 1, 1),
    "U3": ("usual", "south", OLD, 3, None),
    "U4": ("usual", "north", OLD, None, 1),
    "U5": ("usual", "north", OLD, 2, None),
    "U6": ("usual", "north", OLD, 2, None),
}
CONSENT_OUT = {"U6"}  # consent for use of data withdrawn: nothing of theirs is analysed
PEER, USUAL = "Peer support", "Usual care"


def phq9_answers(v: int) -> dict[str, int]:
    """Items 1-8 at ``v``, item 9 (thoughts of self-harm) at 0, so no safety alert: score 8 v."""
    return {f"phq9_{i}": v for i in range(1, 9)} | {"phq9_9": 0}


def _at(d: date, days: int) -> str:
    return datetime.combine(d + timedelta(days=days), time(12), tzinfo=UTC).isoformat()


@pytest.fixture(scope="module")
def trial(client, admin):
    h = admin.headers
    r = client.post("/studies", json={"title": "Diabetes distress trial", "design": "rct"}, headers=h)
    sid = r.json()["id"]
    for code in ("north", "south"):
        assert (
            client.post(f"/studies/{sid}/sites", json={"code": code, "name": code.title()}, headers=h).status_code
            == 201
        )
    for code, name, kind in (("peer", PEER, "intervention"), ("usual", USUAL, "control")):
        body = {"code": code, "name": name, "kind": kind, "allocation_ratio": 1}
        assert client.post(f"/studies/{sid}/arms", json=body, headers=h).status_code == 201
    for code, off, before, after in (("baseline", 0, 0, 14), ("m6", 182, 21, 21)):
        body = {
            "code": code,
            "offset_days": off,
            "window_before_days": before,
            "window_after_days": after,
            "instruments": ["phq9", "gad7"],
        }
        assert client.post(f"/studies/{sid}/waves", json=body, headers=h).status_code == 201
    ids = {}
    for code, (arm, site, enrolled, base, m6) in PEOPLE.items():
        body = {
            "study_code": code,
            "site": site,
            "arm": arm,
            "enrolled_on": enrolled.isoformat(),
            "consent": {"date": enrolled.isoformat(), "version": "v1"},
        }
        r = client.post(f"/studies/{sid}/participants", json=body, headers=h)
        assert r.status_code == 201, r.text
        pid = ids[code] = r.json()["id"]
        for wave, v, day in (("baseline", base, 1), ("m6", m6, 182)):
            if v is None:
                continue
            for inst, answers in (("phq9", phq9_answers(v)), ("gad7", {f"gad7_{i}": 1 for i in range(1, 8)})):
                body = {"wave": wave, "instrument": inst, "answers": answers, "completed_at": _at(enrolled, day)}
                r = client.post(f"/participants/{pid}/responses", json=body, headers=h)
                assert r.status_code == 201, r.text
        r = client.post(
            f"/studies/{sid}/screening",
            json={
                "site": site,
                "screened_on": (enrolled - timedelta(days=3)).isoformat(),
                "outcome": "enrolled",
                "participant_id": pid,
            },
            headers=h,
        )
        assert r.status_code == 201, r.text
    body = {
        "status": "lost_to_follow_up",
        "status_date": (OLD + timedelta(days=60)).isoformat(),
        "reason": "moved away",
    }
    r = client.patch(f"/participants/{ids['P3']}", json=body, headers=h)
    assert r.status_code == 200, r.text
    for code, kind, days, reason in (
        ("P4", "follow_up", 40, "too busy"),
        ("U5", "follow_up", 90, "moved away"),
        ("P5", "intervention", 50, "hospitalised after a fall"),
        ("U6", "consent", 100, "does not want data used"),
    ):
        body = {"kind": kind, "date": (OLD + timedelta(days=days)).isoformat(), "reason": reason}
        r = client.post(f"/participants/{ids[code]}/withdrawals", json=body, headers=h)
        assert r.status_code in (200, 201), r.text
    dup = {
        "study_code": "P1-DUP",
        "site": "north",
        "arm": "peer",
        "enrolled_on": OLD.isoformat(),
        "consent": {"date": OLD.isoformat(), "version": "v1"},
    }
    r = client.post(f"/studies/{sid}/participants", json=dup, headers=h)
    assert r.status_code == 201, r.text
    dup_id = r.json()["id"]
    body = {"site": "north", "screened_on": OLD.isoformat(), "outcome": "enrolled", "participant_id": dup_id}
    assert client.post(f"/studies/{sid}/screening", json=body, headers=h).status_code == 201
    r = client.post(f"/participants/{dup_id}/void", json={"reason": "duplicate of P1"}, headers=h)
    assert r.status_code in (200, 201), r.text
    for code, seriousness, severity, action in (
        ("P5", ["hospitalisation"], "severe", "intervention_stopped"),
        ("U1", [], "mild", "none"),
    ):
        body = {
            "description": "fall at home",
            "onset_date": (OLD + timedelta(days=50)).isoformat(),
            "seriousness": seriousness,
            "severity": severity,
            "relatedness": "unlikely",
            "expectedness": "expected",
            "action_taken": action,
            "outcome": "recovered",
            "reporter": "study_staff",
        }
        r = client.post(f"/participants/{ids[code]}/adverse-events", json=body, headers=h)
        assert r.status_code == 201, r.text
    for outcome, reason, site in (
        ("not_eligible", "HbA1c below 7.5%", "north"),
        ("not_eligible", "HbA1c below 7.5%", "south"),
        ("not_eligible", "age under 18", "north"),
        ("declined", "no time", "north"),
        ("declined", "no time", "south"),
        ("other", "could not be contacted", "south"),
    ):
        body = {"site": site, "screened_on": OLD.isoformat(), "outcome": outcome, "reason": reason}
        r = client.post(f"/studies/{sid}/screening", json=body, headers=h)
        assert r.status_code == 201, r.text
    return sid, ids


@pytest.fixture(scope="module")
def report(client, admin, trial, settings):
    sid, _ = trial
    r = client.post(f"/studies/{sid}/reports", json={}, headers=admin.headers)
    assert r.status_code == 201, r.text
    out = r.json()
    page = client.get(out["html_url"], headers=admin.headers)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    folder = Path(settings.artifact_dir) / "reports" / str(sid) / out["run_id"]
    return out, page.text, folder


def _counts(html: str) -> dict[str, str]:
    """``data-count`` key -> the whole sentence of its ``<text>`` (wrapped parts are ``<tspan>``)."""
    found = re.findall(r'<text[^>]*data-count="([^"]+)"[^>]*>(.*?)</text>', html)
    return {k: unescape(" ".join(re.sub(r"<[^>]+>", " ", v).split())) for k, v in found}


def _n(text: str) -> int:
    m = re.search(r"n=(\d+)", text)
    assert m, text
    return int(m.group(1))


def test_consort_numbers_match_hand_counts(report):
    _, html, _ = report
    c = _counts(html)
    assert _n(c["assessed"]) == 18  # 12 enrolled (the voided duplicate is in no count) + 6 excluded
    assert _n(c["excluded"]) == 6
    assert _n(c["excluded:not_eligible"]) == 3 and _n(c["excluded:declined"]) == 2 and _n(c["excluded:other"]) == 1
    assert "HbA1c below 7.5% (n=2)" in html and "no time (n=2)" in html and "could not be contacted (n=1)" in html
    assert _n(c["randomised"]) == 12
    assert "unscreened" not in c  # every participant has a screening entry
    assert "P1-DUP" not in html
    assert "1 participant entered in error (voided) is in no count" in html
    expected = {
        PEER: {"allocated": 6, "discontinued": 1, "analysed": 3, "excluded_analysis": 3},
        USUAL: {"allocated": 6, "discontinued": 0, "analysed": 2, "excluded_analysis": 4},
    }
    for arm, want in expected.items():
        for key, n in want.items():
            assert _n(c[f"arm:{arm}:{key}"]) == n, (arm, key, c[f"arm:{arm}:{key}"])
        assert c[f"arm:{arm}:received"] == "Received allocated intervention: not recorded"  # no delivery records
    # Per wave, every allocated participant once: assessed, withdrew, lost, consent withdrawn, missed, not yet due.
    waves = {
        (PEER, "baseline"): {"": 6, "withdrew": 0, "lost_to_follow_up": 0, "missed": 0},
        # P4 withdrew on day 40 (too busy), P3 was lost on day 60 (moved away), P6 enrolled 20 days ago.
        (PEER, "m6"): {"": 3, "withdrew": 1, "lost_to_follow_up": 1, "missed": 0, "not_yet_due": 1},
        # U4 skipped baseline; U6 withdrew consent for use of data (counted at every wave).
        (USUAL, "baseline"): {"": 4, "withdrew": 0, "lost_to_follow_up": 0, "data_withdrawn": 1, "missed": 1},
        # U5 withdrew on day 90 (moved away); U3 did not answer at m6.
        (USUAL, "m6"): {"": 3, "withdrew": 1, "lost_to_follow_up": 0, "data_withdrawn": 1, "missed": 1},
    }
    for (arm, wave), want in waves.items():
        base = f"arm:{arm}:wave:{wave}"
        got = {k: _n(c[f"{base}:{k}" if k else base]) for k in want}
        assert got == want, (arm, wave, got)
        buckets = [k.split(":")[-1] for k in c if k.startswith(base + ":")]
        assert sum(_n(c[f"{base}:{b}"]) for b in buckets) + want[""] == 6  # the buckets add up to allocated
    assert f"arm:{PEER}:wave:baseline:not_yet_due" not in c and f"arm:{PEER}:wave:m6:data_withdrawn" not in c
    flow = html[html.index('<section id="flow"') : html.index('<section id="baseline"')]
    svg = " ".join(
        re.sub(r"<[^>]+>", " ", flow[flow.index("<svg") : flow.index("</svg>")]).split()
    )  # wrapped lines joined
    assert svg.count("moved away (n=1)") == 2  # P3 lost, U5 withdrew
    assert "too busy (n=1)" in svg and "hospitalised after a fall (n=1)" in svg
    assert svg.count("does not want data used (n=1)") == 2  # under U6's bucket at both waves
    assert "m6 not yet due (n=1)" in svg and "no baseline score (n=1)" in svg
    assert "no m6 score (n=2)" in svg  # P3, P4 | U3, U5: two in each arm
    assert "consent for use of data withdrawn (n=1)" in svg  # U6 is excluded from the analysis


def _cell(html: str, key: str) -> str:
    m = re.search(rf'data-cell="{re.escape(key)}">([^<]*)</td>', html)
    assert m, key
    return unescape(m.group(1))


def test_table1_numbers_match_hand_counts(report):
    _, html, _ = report
    peer = [8 * PEOPLE[c][3] for c in PEOPLE if PEOPLE[c][0] == "peer"]
    usual = [
        8 * PEOPLE[c][3]
        for c in PEOPLE
        if PEOPLE[c][0] == "usual" and PEOPLE[c][3] is not None and c not in CONSENT_OUT
    ]
    assert peer == [16, 24, 16, 8, 16, 24] and usual == [16, 8, 24, 16]
    for arm, vals in ((PEER, peer), (USUAL, usual)):
        assert _cell(html, f"scale:phq9||{arm}") == f"{statistics.mean(vals):.1f} ({statistics.stdev(vals):.1f})"
        assert _cell(html, f"scale:gad7||{arm}") == "7.0 (0.0)"
    assert (
        _cell(html, f"site_name|North|{PEER}") == "4 (66.7%)" and _cell(html, f"site_name|South|{PEER}") == "2 (33.3%)"
    )
    assert _cell(html, f"site_name|North|{USUAL}") == "3 (60.0%)"
    assert _cell(html, f"site_name|South|{USUAL}") == "2 (40.0%)"
    assert re.search(rf'data-missing="scale:phq9\|{USUAL}">1</td>', html)
    assert re.search(rf'data-missing="scale:phq9\|{PEER}">0</td>', html)
    assert "(N = 6)" in html and "(N = 5)" in html
    table1 = html[html.index('data-table="table1"') : html.index("</table>", html.index('data-table="table1"'))]
    assert "p-value" not in table1.lower() and "mean (SD)" in table1


def test_sections_present_or_say_why(report):
    out, html, _ = report
    present = {s["key"]: s["present"] for s in out["sections"]}
    assert present == {
        "flow": True,
        "baseline": True,
        "outcomes": True,
        "harms": True,
        "intervention": False,
        "for_whom": False,
        "joint_displays": False,
        "attrition": True,
        "reproducibility": True,
    }
    for_whom = html[html.index('<section id="for_whom"') :].split("</section>")[0]
    assert "No delivery records" in html
    assert "No context–mechanism–outcome (CMO) configurations recorded." in for_whom
    joint = html[html.index('<section id="joint_displays"') :].split("</section>")[0]
    assert "No joint display recorded: no interview transcript of these participants." in joint
    # Labels people read, not codes.
    assert "PHQ-9" in html and "pam13_activation" not in html and ">usual<" not in html
    # Harms: one of six peer participants had a serious event; one of five usual-care participants any event.
    harms = html[html.index('data-table="harms"') :]
    assert "1/6 (16.7%); 1 event<" in harms and "1/5 (20.0%); 1 event<" in harms
    assert "0/5 (0.0%); 0 events" in harms  # no serious event in usual care
    # Reproducibility: the data hash and the command.
    assert out["data_hash"] in html and f"peerlens report {out['html_url'].split('/')[2]}" in html
    assert "no analysis plan recorded" in html


def test_report_is_repeatable_and_audited(client, admin, trial, report, engine):
    from sqlmodel import Session, select

    from api.audit.models import AuditEvent

    sid, _ = trial
    out, _, _ = report
    again = client.post(f"/studies/{sid}/reports", json={"pdf": False}, headers=admin.headers).json()
    assert again["data_hash"] == out["data_hash"] and again["pdf_url"] is None and again["run_id"] != out["run_id"]
    with Session(engine) as s:
        runs = s.exec(
            select(AuditEvent).where(AuditEvent.study_id == sid, AuditEvent.action == "report.generate")
        ).all()
    by_run = {e.entity_id: e for e in runs}
    assert {out["run_id"], again["run_id"]} <= set(by_run)
    assert by_run[out["run_id"]].after["data_hash"] == out["data_hash"]
    assert by_run[out["run_id"]].after["sections"]["intervention"] is False


def test_coordinator_report_covers_own_site_and_others_404(client, make_user, trial, report):
    sid, _ = trial
    out, _, _ = report
    # The site ids of the study.
    sites = {s["code"]: s["id"] for s in client.get(f"/studies/{sid}/sites", headers=make_user("admin").headers).json()}
    coord = make_user("coordinator", site_ids=[sites["south"]])
    assert client.get(out["html_url"], headers=coord.headers).status_code == 404  # every-site run
    r = client.post(f"/studies/{sid}/reports", json={"pdf": False}, headers=coord.headers)
    assert r.status_code == 201, r.text
    html = client.get(r.json()["html_url"], headers=coord.headers).text
    c = _counts(html)
    assert _n(c["randomised"]) == 4  # P3, P4, U2, U3
    r = client.post(f"/studies/{sid}/reports", json={"sites": ["north"]}, headers=coord.headers)
    assert r.status_code == 403 and r.json()["detail"][0]["loc"] == ["body", "sites", 0]


def test_report_requests_name_the_field(client, admin, trial):
    sid, _ = trial
    r = client.post(f"/studies/{sid}/reports", json={"sites": ["west"]}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "sites", 0]
    r = client.post(f"/studies/{sid}/reports", json={"pdf": "maybe"}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "pdf"]
    r = client.get(f"/studies/{sid}/reports/runs/{'0' * 32}/report.html", headers=admin.headers)
    assert r.status_code == 404


def test_screening_rules(client, admin, analyst, trial):
    sid, ids = trial
    h = admin.headers
    base = {"site": "north", "screened_on": OLD.isoformat()}
    cases = [
        ({**base, "outcome": "enrolled"}, 422, ["body", "participant_id"]),
        (
            {**base, "outcome": "declined", "reason": "no time", "participant_id": ids["P1"]},
            422,
            ["body", "participant_id"],
        ),
        ({**base, "outcome": "declined"}, 422, ["body", "reason"]),
        ({**base, "site": "west", "outcome": "declined", "reason": "x"}, 422, ["body", "site"]),
        ({**base, "outcome": "enrolled", "participant_id": ids["P1"]}, 409, ["body", "participant_id"]),
        ({**base, "site": "south", "outcome": "enrolled", "participant_id": ids["P1"]}, 422, ["body", "site"]),
        ({**base, "outcome": "maybe", "reason": "x"}, 422, ["body", "outcome"]),
        ({**base, "outcome": "declined", "reason": "line\nbreak"}, 422, ["body", "reason"]),
        ({**base, "outcome": "declined", "reason": "x", "screened_on": "9999-12-31"}, 422, ["body", "screened_on"]),
        (
            {**base, "outcome": "declined", "reason": "x", "screened_on": (TODAY + timedelta(days=3)).isoformat()},
            422,
            ["body", "screened_on"],
        ),
    ]
    for body, status, loc in cases:
        r = client.post(f"/studies/{sid}/screening", json=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert r.json()["detail"][0]["loc"] == loc, (body, r.text)
    assert (
        client.post(
            f"/studies/{sid}/screening", json={**base, "outcome": "declined", "reason": "x"}, headers=analyst.headers
        ).status_code
        == 403
    )
    rows = client.get(f"/studies/{sid}/screening", headers=analyst.headers).json()
    # 18: the entry linked to the voided duplicate is left out with it; analysts see no dates
    assert len(rows) == 18 and all(r["screened_on"] is None for r in rows)
    assert {r["participant"] for r in rows if r["outcome"] == "enrolled"} == set(PEOPLE)
    s = client.get(f"/studies/{sid}/screening/summary", headers=analyst.headers).json()
    assert s == {
        "assessed": 18,
        "enrolled": 12,
        "excluded": {"not_eligible": 3, "declined": 2, "other": 1},
        "reasons": {
            "not_eligible": {"HbA1c below 7.5%": 2, "age under 18": 1},
            "declined": {"no time": 2},
            "other": {"could not be contacted": 1},
        },
    }


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (make browser)")
def test_html_offline_in_chromium_and_pdf_has_the_sections(report, backend):
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader

    out, html, folder = report
    path = folder / "report.html"
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda req: requests.append(req.url))
        page.goto(path.as_uri())
        page.wait_for_load_state("networkidle")
        resources = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{backend}-report-first-page.png"))
        page.locator("#flow").screenshot(path=str(SHOTS / f"{backend}-report-flow.png"))
        page.locator("#baseline").screenshot(path=str(SHOTS / f"{backend}-report-table1.png"))
        page.locator("#outcomes").screenshot(path=str(SHOTS / f"{backend}-report-outcomes.png"))
        page.locator("#attrition").screenshot(path=str(SHOTS / f"{backend}-report-attrition.png"))
        svg_box = page.locator("#flow svg").bounding_box()
        browser.close()
    assert requests == [path.as_uri()]  # the page itself, nothing else
    assert resources == []
    assert svg_box and svg_box["width"] > 400 and svg_box["height"] > 300
    pdf = folder / "report.pdf"
    assert out["pdf_url"] and pdf.is_file(), out.get("pdf_error")
    text = " ".join(page.extract_text() for page in PdfReader(str(pdf)).pages)
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text))  # "ﬂ" ligatures back to letters
    for title in (
        "Participant flow (CONSORT 2010)",
        "Baseline characteristics (Table 1)",
        "Outcomes",
        "Harms",
        "Attrition and retention",
        "Reproducibility appendix",
        "Assessed for eligibility (n=18)",
    ):
        assert title in text, title


def test_locked_plan_blinded_labels_and_receipt_in_the_report(client, admin, analyst, trial, monkeypatch):
    """The study is blinded to analysts until an admin unblinds it (``api.sap.blinding``): the
    analyst's report names no arm. The locked plan (``api.sap.service.current_plan``) and the
    delivery records' adherence (``api.delivery.dose.participant_dose``) are stand-ins with their
    documented shapes: a plan of PHQ-9 at m6 with Bonferroni, adherence per participant."""
    import sys
    import types
    from datetime import datetime

    sid, ids = trial
    plan = types.SimpleNamespace(
        version=2,
        hash="c0ffee" * 10 + "abcd",
        locked_at=datetime(2026, 3, 1, tzinfo=UTC),
        content={
            "primary": {"scale": "phq9", "wave": "m6", "model": "trial"},
            "secondary": [
                {"scale": "gad7", "wave": "m6", "model": "trial"},
                {"scale": "semcd6", "wave": "m6"},
                {"scale": "phq9", "wave": "m6", "model": "responders"},
            ],
            "mcids": {"phq9": 5.0},
            "multiplicity": "bonferroni",
        },
    )
    sap_service = types.ModuleType("api.sap.service")
    sap_service.current_plan = lambda session, study_id: plan if study_id == sid else None
    monkeypatch.setitem(sys.modules, "api.sap.service", sap_service)
    # Delivery records: the peer arm's adherence definition met by P1, P2, P5; P3 never came, P4 came
    # too little; P6 not yet known; usual care has no delivery plan (adherent None).
    adherence = {"P1": True, "P2": True, "P5": True, "P3": False, "P4": False}
    delivery = types.ModuleType("api.delivery.dose")
    delivery.participant_dose = lambda session, study_id, actor: [
        {
            "participant_id": pid,
            "adherent": adherence.get(code),
            "sessions_attended": 2 if code == "P4" else 0,
            "contacts": 0,
        }
        for code, pid in ids.items()
    ]
    monkeypatch.setitem(sys.modules, "api.delivery.dose", delivery)

    r = client.post(f"/studies/{sid}/reports", json={"pdf": False}, headers=analyst.headers)
    assert r.status_code == 201, r.text
    html = client.get(r.json()["html_url"], headers=analyst.headers).text
    assert PEER not in html and USUAL not in html and ">peer<" not in html and "usual" not in html.lower()
    c = _counts(html)
    sizes = {k.split(":")[1]: _n(v) for k, v in c.items() if k.endswith(":allocated")}
    assert sorted(sizes) == ["Arm A", "Arm B"] and sorted(sizes.values()) == [6, 6]
    # Receipt and discontinuation would tell the intervention arm from the control arm: withheld.
    for arm in sizes:
        assert c[f"arm:{arm}:received"] == "Received allocated intervention: not recorded"
        assert c[f"arm:{arm}:discontinued"] == "Discontinued intervention: not recorded"
    flow = html[html.index('<section id="flow"') : html.index('<section id="baseline"')]
    assert "withheld while the study is blinded to this reader" in flow
    assert "never attended" not in flow and "hospitalised after a fall" not in flow
    assert "(N = 6)" in html and "neutral (the study is blinded to this reader)" in html
    assert "intervention" not in html.split('<section id="outcomes"')[1].split("</section>")[0].lower()
    outcomes = html[html.index('data-table="outcomes"') :]
    assert "pre-specified" in outcomes and "Bonferroni-adjusted p" in outcomes
    assert outcomes.count("pre-specified</td>") == 2  # PHQ-9 and GAD-7; the responders entry has its own table
    assert "Self-efficacy for managing chronic disease (mean 1-10): in the analysis plan, but no data recorded" in html
    assert "version 2" in html and plan.hash in html
    # The same labels on every call.
    again = client.post(f"/studies/{sid}/reports", json={"pdf": False}, headers=analyst.headers).json()
    c2 = _counts(client.get(again["html_url"], headers=analyst.headers).text)
    assert {k: v for k, v in c2.items() if k.endswith(":allocated")} == {
        k: v for k, v in c.items() if k.endswith(":allocated")
    }
    # Staff see the arms by name.
    r = client.post(f"/studies/{sid}/reports", json={"pdf": False}, headers=admin.headers)
    html = client.get(r.json()["html_url"], headers=admin.headers).text
    c = _counts(html)
    assert _n(c[f"arm:{PEER}:allocated"]) == 6 and "Arm B" not in html
    # Staff see receipt by the delivery records' adherence definition, with reasons.
    assert _n(c[f"arm:{PEER}:received"]) == 3 and _n(c[f"arm:{PEER}:not_received"]) == 2
    assert _n(c[f"arm:{PEER}:unknown_received"]) == 1 and c[f"arm:{USUAL}:received"].endswith(": not recorded")
    flow = html[html.index('<section id="flow"') : html.index('<section id="baseline"')]
    assert "never attended (n=1)" in flow and "below the adherence definition" in flow
    assert "No delivery records" not in flow and _n(c[f"arm:{PEER}:discontinued"]) == 1


def test_a_study_without_data_gets_a_report_that_says_what_is_missing(client, admin, make_study, trial):
    study = make_study()
    for body in ({"pdf": False}, {"pdf": False, "sites": []}):
        r = client.post(f"/studies/{study.id}/reports", json=body, headers=admin.headers)
        assert r.status_code == 201, r.text
        out = r.json()
        assert {s["key"] for s in out["sections"] if s["present"]} == {"reproducibility"}
        html = client.get(out["html_url"], headers=admin.headers).text
        for sentence in (
            "No participant allocated and no screening log recorded",
            "No outcome data recorded yet",
            "No delivery records",
        ):
            assert sentence in html
    sid, _ = trial
    r = client.post(f"/studies/{sid}/reports", json={"pdf": False, "sites": []}, headers=admin.headers)
    assert r.status_code == 201 and "Randomised (n=" not in client.get(r.json()["html_url"], headers=admin.headers).text
