"""The participant form for a reader with low health literacy: outcome measures before the context
questionnaire, progress in words and time, and the "not answered yet" list with each question's text."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import instruments
from api.web.forms import SECONDS_PER_ITEM


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_outcomes_come_first_with_time_left_and_question_text(client, make_study, enrol, admin):
    tz = ZoneInfo("Europe/London")
    study = make_study(waves=(("baseline", 0, 0, 14, ["context", "phq9", "gad7"]),))
    p = enrol(study, site="north", enrolled_on=str(datetime.now(tz).date() - timedelta(days=1)))
    link = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline"}, headers=admin.headers)
    assert link.status_code == 201, link.text
    url = "/f/" + link.json()["token"]
    # Without a site contact the footer says only "contact your study team" ...
    assert "Please contact your study team" in client.get(url).text
    # ... with one, the number (a tap-to-call link) and the hours, on every page.
    r = client.put(
        f"/studies/{study.id}/sites/north/contact",
        json={"phone": "0161 555 0199", "hours": "Monday to Friday, 9 am to 5 pm"},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    bad = client.put(f"/studies/{study.id}/sites/north/contact", json={"phone": "call us"}, headers=admin.headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "phone"]
    missing = client.put(
        f"/studies/{study.id}/sites/nowhere/contact", json={"phone": "0161 555 0199"}, headers=admin.headers
    )
    assert missing.status_code == 404 and missing.json()["detail"][0]["loc"] == ["path", "site_code"]
    page = client.get(url)
    assert '<a href="tel:01615550199">0161 555 0199</a> (Monday to Friday, 9 am to 5 pm)' in page.text
    # The wave lists the context questionnaire first; the form starts with the PHQ-9.
    assert 'name="instrument" value="phq9"' in page.text
    n_items = sum(len(instruments.get(c).items) for c in ("context", "phq9", "gad7"))
    minutes = -(-n_items * SECONDS_PER_ITEM // 60)
    assert re.search(r'id="progress-label">Part 1 of 3</strong>', page.text)
    assert f", about {minutes} minutes left" in page.text
    assert 'max="6" value="1"' in page.text  # the bar is never empty
    # Nine answers, item 10 blank: the notice names the question by its text, with a link to it.
    answers = {f"i_phq9_{i}": "1" for i in range(1, 10)}
    r = client.post(url, data={"csrf": _csrf(page.text), "instrument": "phq9", "action": "save", **answers})
    text10 = instruments.get("phq9").items[9].text
    assert f'<a href="#q-phq9_10">Question 10: {text10}</a>' in r.text
    r = client.post(url, data={"csrf": _csrf(page.text), "instrument": "phq9", "action": "save_blank", **answers})
    nxt = client.get(url)
    assert 'name="instrument" value="gad7"' in nxt.text and "Part 2 of 3" in nxt.text
    left = -(-(n_items - 10) * SECONDS_PER_ITEM // 60)
    assert f"about {left} minutes left" in nxt.text


def test_answers_saved_for_later_without_javascript_come_back_and_go_when_sent(
    client, make_study, enrol, admin, engine
):
    from sqlmodel import Session, select

    from api.links.models import FormDraft

    tz = ZoneInfo("Europe/London")
    study = make_study(waves=(("baseline", 0, 0, 14, ["gad7"]),))
    p = enrol(study, site="north", enrolled_on=str(datetime.now(tz).date() - timedelta(days=1)))
    token = client.post(f"/participants/{p['id']}/links", json={"wave": "baseline"}, headers=admin.headers).json()
    url = "/f/" + token["token"]
    page = client.get(url)
    assert 'value="draft"' in page.text and 'src="/static/autosave.js"' in page.text
    csrf = _csrf(page.text)
    # "Save my answers for later" (no JavaScript): a redirect to the page, which says so.
    r = client.post(
        url,
        data={"csrf": csrf, "instrument": "gad7", "action": "draft", "i_gad7_1": "2", "i_gad7_2": "9"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == url + "?saved=1"
    back = client.get(url + "?saved=1")
    assert "Your answers so far are saved" in back.text
    assert re.search(r'name="i_gad7_1" value="2"\s+checked', back.text)
    assert 'name="i_gad7_2" value="9"' not in back.text  # an impossible answer is not kept
    # The page's script saves the same way and gets 204; a draft is not a response.
    r = client.post(
        url,
        data={"csrf": csrf, "instrument": "gad7", "action": "draft", "i_gad7_1": "2", "i_gad7_3": "1"},
        headers={"X-Autosave": "1"},
    )
    assert r.status_code == 204
    assert client.get(f"/participants/{p['id']}/responses", headers=admin.headers).json() == []
    # Without the CSRF token nothing is kept.
    r = client.post(url, data={"instrument": "gad7", "action": "draft", "i_gad7_4": "3"}, headers={"X-Autosave": "1"})
    assert r.status_code == 403
    with Session(engine) as s:
        draft = s.exec(select(FormDraft).where(FormDraft.participant_id == p["id"])).one()
        assert draft.answers == {"gad7_1": 2, "gad7_3": 1}
    # Sending the page stores the response and deletes the draft.
    answers = {f"i_gad7_{i}": "1" for i in range(1, 9)}
    r = client.post(url, data={"csrf": csrf, "instrument": "gad7", "action": "save", **answers}, follow_redirects=False)
    assert r.status_code == 303
    with Session(engine) as s:
        assert s.exec(select(FormDraft).where(FormDraft.participant_id == p["id"])).all() == []
