"""The staff console in headless Chromium against a real uvicorn server, with axe-core.

A coordinator signs in, enrols and randomises a participant, enters a staff-administered PHQ-9 and
amends it with a reason, issues and re-sends the personal link (the old one stops working),
records a withdrawal; an analyst downloads a de-identified export; a coordinator of the other site
gets a 404 for the participant. Every console page visited is checked by axe-core (WCAG 2.x A/AA
rules: no serious or critical violation) and saved as a screenshot at desktop and tablet width in
``artifacts/screenshots/``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session

from tests.e2e.test_participant_form import CHROMIUM, SHOTS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (make browser)"),
]

AXE = Path(__file__).parent / "data" / "axe-core" / "axe.min.js"
AXE_SHA256 = "880970c081707360e64f34cea25ff91892f5bc95675b0776925b9709dd8a68bb"
DESKTOP = {"width": 1366, "height": 900}
TABLET = {"width": 768, "height": 1024}
PASSWORD = "console password for e2e"
PHQ9 = [2, 1, 1, 0, 3, 1, 2, 0, 0]


@pytest.fixture(scope="module")
def axe_source() -> str:
    data = AXE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == AXE_SHA256, "the vendored axe-core differs from the pinned file"
    return data.decode("utf-8")


@pytest.fixture(scope="module")
def console_user(engine, make_user):
    from api.auth.models import User
    from api.auth.service import Actor
    from api.console.auth import set_password

    def _make(role, site_ids=()):
        handle = make_user(role, site_ids)
        with Session(engine) as s:
            user = s.get(User, handle.id)
            set_password(s, user, PASSWORD, Actor.system())
            s.commit()
            return user.email, handle

    return _make


class Checker:
    """Runs axe on a page and saves it at desktop and tablet width."""

    def __init__(self, axe_source: str, backend: str):
        self.axe = axe_source
        self.backend = backend
        self.checked: dict[str, int] = {}

    def __call__(self, page, name: str) -> None:
        page.evaluate(self.axe)
        result = page.evaluate(
            """async () => await axe.run(document, {runOnly: {type: 'tag',
                 values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}})"""
        )
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"{name}: {bad}"
        assert len(result["passes"]) > 10  # axe really ran its rules on this page
        self.checked[name] = len(result["passes"])
        SHOTS.mkdir(parents=True, exist_ok=True)
        for label, size in (("desktop", DESKTOP), ("tablet", TABLET)):
            page.set_viewport_size(size)
            page.screenshot(path=str(SHOTS / f"{self.backend}-console-{name}-{label}.png"), full_page=True)
        page.set_viewport_size(DESKTOP)
        # Usable on a tablet: nothing wider than the screen.
        page.set_viewport_size(TABLET)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        page.set_viewport_size(DESKTOP)
        assert overflow <= 1, f"{name} scrolls sideways at tablet width ({overflow}px)"


def _sign_in(page, base, email):
    page.goto(f"{base}/console")
    assert "/console/sign-in" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_coordinator_and_analyst_work_in_the_console(
    server, browser, client, admin, make_study, enrol, console_user, axe_source, backend
):
    base, _ = server
    check = Checker(axe_source, backend)
    tz = ZoneInfo("Europe/London")
    today = datetime.now(tz).date()
    study = make_study()
    coord_email, coord = console_user("coordinator", [study.sites["north"]])
    analyst_email, analyst = console_user("analyst")
    other_email, _ = console_user("coordinator", [study.sites["south"]])
    # Some history for the dashboard: two participants at each site, one baseline answered.
    people = [enrol(study, site=site, enrolled_on=str(today - timedelta(days=3))) for site in ("north", "south")]
    p = people[-1]
    # A safety alert at the north site (PHQ-9 item 9 above 0), for the alerts page.
    r = client.post(
        f"/participants/{people[0]['id']}/responses",
        json={
            "wave": "baseline",
            "instrument": "phq9",
            "answers": {f"phq9_{i}": 0 for i in range(1, 9)} | {"phq9_9": 1},
        },
        headers=admin.headers,
    )
    assert r.status_code == 201 and len(r.json()["alerts"]) == 1, r.text
    r = client.post(
        f"/participants/{p['id']}/responses",
        json={"wave": "baseline", "instrument": "gad7", "answers": {f"gad7_{i}": 1 for i in range(1, 8)}},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text

    ctx = browser.new_context(viewport=DESKTOP, device_scale_factor=1)
    page = ctx.new_page()
    page.goto(f"{base}/console/sign-in")
    check(page, "01-sign-in")
    # A wrong password: the page says so, with an alert, and no session starts.
    page.get_by_label("Email").fill(coord_email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert "not right" in page.get_by_role("alert").inner_text()
    _sign_in(page, base, coord_email)

    # 1. The dashboard (one study: straight there), site north only.
    page.wait_for_url(re.compile(rf"/console/studies/{study.id}$"))
    assert page.get_by_role("heading", level=1).inner_text() == page.title().split(" · ")[0]
    site_table = page.get_by_role("table", name="Enrolment by site and arm").inner_text()
    assert "North" in site_table and "South" not in site_table
    check(page, "02-dashboard")

    # The open alert: acknowledged from the list.
    page.get_by_role("link", name="See the alerts").click()
    check(page, "02b-alerts")
    page.get_by_role("button", name=f"Acknowledge alert of {people[0]['study_code']}").click()
    assert "Alert acknowledged" in page.get_by_role("status").first.inner_text()
    alerts = client.get(f"/studies/{study.id}/alerts", headers=coord.headers).json()
    assert [(a["status"], a["owner"]["id"]) for a in alerts] == [("acknowledged", coord.id)]
    page.goto(f"{base}/console/studies/{study.id}")

    # 2. Enrol and randomise.
    page.get_by_role("link", name="Enrol a participant").click()
    check(page, "03-enrol")
    page.get_by_label("Consent form version").fill("v2.1")
    page.get_by_label("Name").fill("Maud Pemberton-Lyle")
    page.get_by_label("Email").fill("maud.pl.5512@example.org")
    page.get_by_label("Reminders by").select_option("email")
    page.get_by_role("button", name="Enrol and randomise").click()
    assert "Enrolled and randomised" in page.get_by_role("status").first.inner_text()
    pid = int(re.search(r"/console/participants/(\d+)", page.url).group(1))
    arm = page.locator("#arm").inner_text()
    assert arm in ("group", "online", "usual_care")
    check(page, "04-participant")
    stored = client.get(f"/participants/{pid}", headers=coord.headers).json()
    assert stored["arm"] == arm and stored["randomised"] and stored["consent"]["version"] == "v2.1"

    # 3. A staff-administered PHQ-9 (paper), then an amendment with its reason.
    page.get_by_role("link", name="Enter phq9 at baseline").click()
    check(page, "05-enter-instrument")
    for i, v in enumerate(PHQ9, start=1):
        page.check(f'input[name="i_phq9_{i}"][value="{v}"]')
    page.get_by_role("button", name="Save").click()
    assert "Saved phq9" in page.get_by_role("status").first.inner_text()
    responses = page.get_by_role("table", name="Responses and scores").inner_text()
    assert f"phq9: {sum(PHQ9)}" in responses
    page.get_by_role("link", name="Amend phq9 at baseline").click()
    page.check('input[name="i_phq9_4"][value="1"]')
    page.get_by_role("button", name="Save the amendment").click()
    assert "reason" in page.get_by_role("alert").inner_text()  # refused without a reason
    page.check('input[name="i_phq9_4"][value="1"]')
    page.get_by_label("Reason for the change").fill("Transcription error on the paper form")
    page.get_by_role("button", name="Save the amendment").click()
    assert f"phq9: {sum(PHQ9) + 1}" in page.get_by_role("table", name="Responses and scores").inner_text()
    rows = client.get(f"/participants/{pid}/responses", headers=coord.headers).json()
    phq = [r for r in rows if r["instrument"] == "phq9"][0]
    assert phq["mode"] == "staff" and phq["version"] == 2 and phq["entered_by"] == coord.id
    assert {s["scale"]: s["value"] for s in phq["scores"]}["phq9"] == sum(PHQ9) + 1

    # 4. Issue the baseline link, re-send it: the first one stops working.
    page.get_by_role("button", name="Issue link for baseline").click()
    # (the link names the configured base URL; the form is fetched from this test's server)
    first = base + "/f/" + page.locator("#issued-url").inner_text().rsplit("/f/", 1)[1]
    assert httpx.get(first).status_code == 200
    page.get_by_role("button", name="Re-send link for baseline").click()
    second = base + "/f/" + page.locator("#issued-url").inner_text().rsplit("/f/", 1)[1]
    assert second != first and httpx.get(first).status_code == 404 and httpx.get(second).status_code == 200
    page.get_by_role("button", name="Revoke link for baseline").click()
    assert httpx.get(second).status_code == 404

    # 5. Withdrawal with its reason.
    page.get_by_label("No further data collection (data so far are used)").check()
    page.get_by_label("Reason for the withdrawal").fill("Moved away; keeps data already given")
    page.get_by_role("button", name="Record the withdrawal").click()
    assert page.locator("#status").inner_text().startswith("withdrawn")
    assert "No further data collection" in page.locator("#withdrawals").inner_text()
    stored_after = client.get(f"/participants/{pid}", headers=coord.headers).json()
    assert stored_after["status"] == "withdrawn"
    assert [(w["kind"], w["reason"]) for w in stored_after["withdrawals"]] == [
        ("follow_up", "Moved away; keeps data already given")
    ]
    code = stored["study_code"]

    # 6. Sign out: the console sends the browser back to the sign-in page.
    page.get_by_role("button", name="Sign out").click()
    assert "signed out" in page.get_by_role("status").inner_text()
    page.goto(f"{base}/console/participants/{pid}")
    assert "/console/sign-in" in page.url
    ctx.close()

    # 7. The other site's coordinator gets a 404 page for this participant.
    ctx = browser.new_context(viewport=DESKTOP, device_scale_factor=1)
    page = ctx.new_page()
    _sign_in(page, base, other_email)
    page.wait_for_url(re.compile(r"/console/studies/\d+$"))
    assert code not in page.content()
    response = page.goto(f"{base}/console/participants/{pid}")
    assert response.status == 404 and "Maud" not in page.content()
    check(page, "06-not-found")
    ctx.close()

    # 8. The analyst downloads a de-identified export.
    ctx = browser.new_context(viewport=DESKTOP, device_scale_factor=1, accept_downloads=True)
    page = ctx.new_page()
    _sign_in(page, base, analyst_email)
    page.goto(f"{base}/console/studies/{study.id}")
    check(page, "07-dashboard-analyst")
    page.get_by_role("link", name="Exports").click()
    check(page, "08-exports")
    page.get_by_label("Wide: one row per participant").check()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download").click()
    download = info.value
    assert download.suggested_filename == f"study-{study.id}-wide.csv"
    text = Path(download.path()).read_text(encoding="utf-8")
    assert code in text and "Maud" not in text and "maud.pl" not in text
    assert str(today) not in text  # analysts get no calendar dates
    ctx.close()
    assert len(check.checked) == 9


def test_coordinator_records_a_session_and_its_register(
    server, browser, client, admin, make_study, enrol, console_user, axe_source, backend
):
    """Delivery in the console: schedule a session, record it with its register, every page checked by axe."""
    base, _ = server
    check = Checker(axe_source, backend)
    today = datetime.now(ZoneInfo("Europe/London")).date()
    study = make_study()
    coord_email, coord = console_user("coordinator", [study.sites["north"]])
    joined = str(today - timedelta(days=10))
    people = [enrol(study, site="north", arm="group", enrolled_on=joined) for _ in range(2)]
    group = client.post(
        f"/studies/{study.id}/delivery/groups",
        json={"code": "TUE-1", "site": "north", "arm": "group", "name": "Tuesday afternoons"},
        headers=admin.headers,
    ).json()
    for p in people:
        r = client.post(
            f"/delivery/groups/{group['id']}/members",
            json={"participant_id": p["id"], "joined_on": joined},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text

    ctx = browser.new_context(viewport=DESKTOP, device_scale_factor=1)
    page = ctx.new_page()
    _sign_in(page, base, coord_email)
    page.wait_for_url(re.compile(rf"/console/studies/{study.id}$"))
    page.get_by_role("link", name="Delivery").click()
    check(page, "09-delivery")
    page.get_by_label("Planned date").fill(str(today - timedelta(days=1)))
    page.get_by_label("Topic").fill("Managing fatigue")
    page.get_by_role("button", name="Schedule").click()
    assert "Session scheduled" in page.get_by_role("status").first.inner_text()
    check(page, "10-session")
    page.get_by_label("Date it took place").fill(str(today - timedelta(days=1)))
    page.get_by_label("Duration in minutes").fill("75")
    page.get_by_label(f"Attendance of {people[0]['study_code']}").select_option("attended")
    page.get_by_label(f"Attendance of {people[1]['study_code']}").select_option("absent")
    page.get_by_label(f"Minutes present for {people[1]['study_code']}").fill("20")
    page.get_by_role("button", name="Save delivery and register").click()
    assert "no minutes" in page.get_by_role("alert").inner_text()  # refused, named on its row
    check(page, "10b-session-refused")
    page.get_by_label(f"Minutes present for {people[1]['study_code']}").fill("")
    page.get_by_role("button", name="Save delivery and register").click()
    assert "Delivery and register saved" in page.get_by_role("status").first.inner_text()
    assert "1 attended" in page.locator("#session-status").locator("xpath=..").inner_text()
    sessions = client.get(f"/studies/{study.id}/delivery/sessions", headers=coord.headers).json()
    assert [(s["status"], s["duration_minutes"], s["attended"], s["topic"]) for s in sessions] == [
        ("delivered", 75, 1, "Managing fatigue")
    ]
    ctx.close()
    assert len(check.checked) == 3
