"""A participant fills a wave in headless Chromium against a real uvicorn server.

Open the link, answer, leave half-way, come back in a fresh browser, submit, see the thanks page;
then check the stored scores through the REST API and that the access log never held the token.
Screenshots at phone width go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import io
import logging
import re
import socket
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (make browser)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app):
    """The module's app served by uvicorn on a loopback port, with every log record captured."""
    import uvicorn

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Another server in this process may have applied uvicorn's default logging config, which
    # stops its loggers from propagating; the records must reach the captured root handler.
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.disabled = False
        logger.setLevel(logging.INFO)
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=True, log_level="info", lifespan="off"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", buf
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield b
        b.close()


def _shot(page, backend: str, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{backend}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _accessibility_basics(page) -> None:
    """Every question is a fieldset with a legend; every control has a label; the page has a lang."""
    facts = page.evaluate("""() => ({
        lang: document.documentElement.lang,
        fieldsets: document.querySelectorAll('fieldset').length,
        legends: document.querySelectorAll('fieldset > legend').length,
        unlabelled: [...document.querySelectorAll('input:not([type=hidden]), textarea')]
            .filter(el => !el.closest('label') && !(el.id && document.querySelector(`label[for="${el.id}"]`))).length,
        smallTargets: [...document.querySelectorAll('label.opt, button')]
            .filter(el => el.getBoundingClientRect().height < 44).length,
    })""")
    assert facts["lang"] == "en"
    assert facts["fieldsets"] > 0 and facts["fieldsets"] == facts["legends"]
    assert facts["unlabelled"] == 0
    assert facts["smallTargets"] == 0  # tap targets at least 44 px high


def test_participant_fills_a_wave_with_a_break(server, browser, client, make_study, enrol, make_user, backend):
    base, logbuf = server
    tz = ZoneInfo("Europe/London")
    study = make_study(waves=(("baseline", 0, 0, 14, ["phq9", "gad7", "pam13"]),))
    coord = make_user("coordinator", [study.sites["north"]])
    p = enrol(study, site="north", enrolled_on=str(datetime.now(tz).date() - timedelta(days=1)), arm="group")
    issued = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline"}, headers=coord.headers)
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    url = f"{base}/f/{token}"
    # PAM-13's licensed wording is not loaded: the coordinator sees why it is not on the form.
    pam = [i for i in issued.json()["instruments"] if i["instrument"] == "pam13"][0]
    assert pam["offered"] is False and "wording" in pam["reason"]

    phq9 = [1, 2, 0, 3, 1, 0, 2, 1, 0]  # items 1-9; item 10 (difficulty) left blank
    gad7 = [2, 1, 1, 0, 3, 2, 1]  # items 1-7; item 8 left blank

    # 1. Open the link on a phone and answer PHQ-9.
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=1)
    page = ctx.new_page()
    page.goto(url)
    assert page.locator("#progress-label").inner_text() == "Part 1 of 2"
    _accessibility_basics(page)
    _shot(page, backend, "01-first-part")
    # By accessible name: the fieldset's legend names the group, the option's label names the radio.
    page.get_by_role("group", name=re.compile(r"^Question 1 of 10")).get_by_label("Several days").check()
    for i, v in enumerate(phq9[1:], start=2):
        page.check(f'input[name="i_phq9_{i}"][value="{v}"]')
    page.get_by_role("button", name="Save and continue").click()
    # Item 10 blank: the page says so before saving.
    notice = page.get_by_role("alert")
    assert "1 question is not answered yet" in notice.inner_text()
    assert "Question 10" in notice.inner_text()
    assert page.is_checked('input[name="i_phq9_2"][value="2"]')  # answers kept
    _shot(page, backend, "02-open-question")
    page.get_by_role("button", name="Save with 1 question left blank").click()
    assert page.locator("#progress-label").inner_text() == "Part 2 of 2"

    # 2. Start GAD-7 with the keyboard, then leave half-way (close the browser).
    first = page.locator('input[name="i_gad7_1"][value="0"]')
    first.focus()
    page.keyboard.press("ArrowDown")  # radio groups move and select with arrow keys
    assert page.is_checked('input[name="i_gad7_1"][value="1"]')
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")  # a visible focus ring
    page.check('input[name="i_gad7_2"][value="1"]')
    # Each answer is saved as it is given (the page's script posts a draft; nothing is scored yet).
    page.wait_for_function("() => document.getElementById('autosave-status').textContent.includes('saved')")
    _shot(page, backend, "03-second-part")
    ctx.close()

    stored = httpx.get(f"{base}/participants/{p['id']}/responses", headers=coord.headers).json()
    assert [r["instrument"] for r in stored] == ["phq9"]

    # 3. Come back later in a fresh browser (no cookies): the form resumes at part 2.
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=1)
    page = ctx.new_page()
    page.goto(url)
    assert page.locator("#progress-label").inner_text() == "Part 2 of 2"
    # The answers ticked before leaving are still there.
    assert page.is_checked('input[name="i_gad7_1"][value="1"]') and page.is_checked('input[name="i_gad7_2"][value="1"]')
    for i, v in enumerate(gad7, start=1):
        page.check(f'input[name="i_gad7_{i}"][value="{v}"]')
    page.get_by_role("button", name="Submit my answers").click()
    assert "1 question is not answered yet" in page.get_by_role("alert").inner_text()
    page.get_by_role("button", name="Save with 1 question left blank").click()
    assert page.get_by_role("heading", level=1).inner_text() == "✓ Thank you!"
    _shot(page, backend, "04-thanks")
    page.goto(url)
    assert "already answered" in page.get_by_role("heading", level=1).inner_text()
    ctx.close()

    # 4. The scores through the REST API, against sums computed here.
    rows = {
        r["instrument"]: r for r in httpx.get(f"{base}/participants/{p['id']}/responses", headers=coord.headers).json()
    }
    assert set(rows) == {"phq9", "gad7"} and {r["mode"] for r in rows.values()} == {"web"}
    phq = {s["scale"]: s for s in rows["phq9"]["scores"]}["phq9"]
    assert phq["value"] == sum(phq9) == 10 and phq["band"] == "moderate" and not phq["prorated"]
    gad = {s["scale"]: s for s in rows["gad7"]["scores"]}["gad7"]
    assert gad["value"] == sum(gad7) == 10
    assert rows["phq9"]["answers"] == {**{f"phq9_{i}": v for i, v in enumerate(phq9, 1)}, "phq9_10": None}
    sched = httpx.get(f"{base}/participants/{p['id']}/links", headers=coord.headers).json()
    assert sched[0]["state"] == "completed"

    # 5. The server's log lines name the form path but never the token.
    logs = logbuf.getvalue()
    assert "/f/<redacted>" in logs and "uvicorn.access" in logs
    assert token not in logs
