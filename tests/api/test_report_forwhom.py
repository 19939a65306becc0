"""The trial report's "What works for whom" and "Joint displays" sections on the demo study.

Every number of the realist tables is read back from the rendered HTML and compared with
``GET /studies/{id}/realist-table`` asked by the same reader for the same arms; the trajectory ×
theme matrix with ``GET .../qualitative/trajectory-matrix``. The demo study is blinded to analysts:
their report must show neutral arm letters and no arm name. Before the reports are built a
participant's name, e-mail and phone are planted in the identifier vault and said in a new,
coded interview: none of them, and no study code, may reach the report.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlmodel import Session, select

from tests.conftest import demo_copy_fixture

# Loads the demo and builds full reports (the report's model fits): out of `make test-fast`.
pytestmark = pytest.mark.slow

NAME, EMAIL, PHONE = "Philippa Quenby-Marchetti", "p.quenby.7713@example.org", "+44 7700 900734"
#: Identifiers of the demo interviews' originals (kept in the transcript vault only).
DEMO_IDENTIFIERS = ("Helen Marsh", "Kowalczyk", "07700 900461", "943 476 5919", "Wharf Street", "Burnley Road")


def _ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json()


def _h(demo, role):
    return {"Authorization": f"Bearer {demo.tokens[role]}"}


def _section(html: str, key: str) -> str:
    start = html.index(f'<section id="{key}"')
    return html[start : html.index("</section>", start)]


def _text(fragment: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _table(html: str, key: str) -> list[list[str]]:
    """The body rows of the table ``data-table=key`` as lists of cell texts."""
    start = html.index(f'data-table="{key}"')
    body = html[html.index("<tbody>", start) : html.index("</tbody>", start)]
    return [[_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", body)]


def _ci(e, lo, hi) -> str:
    return "" if e is None else f"{e:.2f} ({lo:.2f} to {hi:.2f})"


def _p(p) -> str:
    return "" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


# This module's database: a copy of load_demo(n_participants=60, seed=20261125), as `peerlens demo`.
demo_copy = demo_copy_fixture(60, 20261125)


@pytest.fixture(scope="module")
def db_url(demo_copy):
    return demo_copy[0]


@pytest.fixture(scope="module")
def demo(demo_copy, client):
    return demo_copy[1]


@pytest.fixture(scope="module")
def planted(client, demo, engine):
    """An interviewed participant's contact record holds NAME, EMAIL and PHONE, and a second
    interview in which they say all three is uploaded and coded *Reduced isolation*."""
    from api.participants.models import Participant
    from api.transcripts.models import Transcript

    admin = _h(demo, "admin")
    with Session(engine) as s:
        t = s.exec(select(Transcript).where(Transcript.study_id == demo.study_id).order_by(Transcript.id)).first()
        pid = t.participant_ids[0]
        code = s.get(Participant, pid).study_code
    contact = {"name": NAME, "email": EMAIL, "phone": PHONE}
    _ok(client.patch(f"/participants/{pid}", json={"contact": contact}, headers=admin))
    said = (
        "Interviewer: Tell me about yourself.\n"
        f"{code}: My name is {NAME}, write to {EMAIL} or ring {PHONE}. Since the group I feel less alone.\n"
    )
    r = client.post(
        f"/studies/{demo.study_id}/transcripts",
        headers=admin,
        data={"participants": code, "wave": "m6"},
        files={"file": ("second.txt", said.encode(), "application/octet-stream")},
    )
    tr = _ok(r, 201)
    assert NAME not in tr["text"] and PHONE not in tr["text"]
    codes = {c["key"]: c for c in _ok(client.get(f"/studies/{demo.study_id}/codes", headers=admin))}
    turn = next(u for u in tr["turns"] if u["speaker"] == code)
    body = {"code_id": codes["reduced_isolation"]["id"], "start": turn["start"], "end": turn["end"]}
    _ok(client.post(f"/transcripts/{tr['id']}/codings", json=body, headers=admin), 201)
    stored = tr["text"]
    said_name = stored[stored.index("My name is") : stored.index(",", stored.index("My name is"))]
    assert NAME not in said_name  # e.g. "My name is [NAME]": what the report may show
    return said_name


@pytest.fixture(scope="module")
def reports(client, demo, planted) -> dict[str, str]:
    """The report's HTML as the admin (arms named) and the analyst (blind to the arms) get it."""
    out = {}
    for role in ("admin", "analyst"):
        r = _ok(client.post(f"/studies/{demo.study_id}/reports", json={"pdf": False}, headers=_h(demo, role)), 201)
        keys = {s["key"]: s["present"] for s in r["sections"]}
        assert keys["for_whom"] and keys["joint_displays"]
        out[role] = client.get(r["html_url"], headers=_h(demo, role)).text
    return out


def _arms(client, demo, engine):
    """(arm code, name) of the demo's arms, and the analyst's letter for each code."""
    from api.sap.blinding import neutral_labels
    from api.studies.models import Arm

    with Session(engine) as s:
        arms = s.exec(select(Arm).where(Arm.study_id == demo.study_id)).all()
        letters = neutral_labels(s, demo.study_id)
    return {a.code: a.name for a in arms}, {a.code: letters[a.id] for a in arms}


def _check_realist(html: str, route_rows: list[dict], key: str) -> None:
    rows = {r[0]: r for r in _table(html, key)}
    assert set(rows) == {r["cmo"] for r in route_rows}
    estimated = 0
    for r in route_rows:
        cells = rows[r["cmo"]]
        n = "" if r["n_in"] is None else f"{int(r['n_in'])} / {int(r['n_out'])}"
        assert cells[1] == n
        assert cells[2] == _ci(r["effect_in"], r["effect_in_ci_lower"], r["effect_in_ci_upper"])
        assert cells[3] == _ci(r["effect_out"], r["effect_out_ci_lower"], r["effect_out_ci_upper"])
        assert cells[5] == _ci(r["moderation"], r["ci_lower"], r["ci_upper"])
        assert cells[6] == _p(r["p"]) and cells[7] == _p(r["p_bh"])
        assert cells[8] == r["verdict"].replace("_", " ")
        estimated += r["moderation"] is not None
    assert estimated, "no configuration estimated: the comparison would be vacuous"
    slopes = {r[0]: r for r in _table(html, key.replace("realist:", "realist-slopes:"))}
    over_time = 0
    for r in route_rows:
        cells = slopes[r["cmo"]]
        assert cells[2] == _ci(r["slope_in"], r["slope_in_ci_lower"], r["slope_in_ci_upper"])
        assert cells[3] == _ci(r["slope_out"], r["slope_out_ci_lower"], r["slope_out_ci_upper"])
        assert cells[4] == _ci(r["slope_moderation"], r["slope_ci_lower"], r["slope_ci_upper"])
        assert cells[5] == _p(r["slope_p"]) and cells[6] == _p(r["slope_p_bh"])
        assert cells[7] == (r["slope_random"] or "")
        over_time += r["slope_moderation"] is not None
    assert over_time, "no configuration estimated over time"


def test_for_whom_draws_the_route_table_for_staff_with_arm_names(client, demo, reports, engine):
    names, _ = _arms(client, demo, engine)
    html = reports["admin"]
    sec = _section(html, "for_whom")
    q = "?longitudinal=true"
    route = _ok(client.get(f"/studies/{demo.study_id}/realist-table{q}", headers=_h(demo, "admin")))
    assert route["rows"], "the demo has CMO configurations"
    plain = _ok(client.get(f"/studies/{demo.study_id}/realist-table", headers=_h(demo, "admin")))
    assert "slope_moderation" not in plain["columns"]  # the over-time estimate is asked for
    assert [r["moderation"] for r in plain["rows"]] == [r["moderation"] for r in route["rows"]]
    # The route's default comparison (first intervention arm vs control) is one of the report's.
    default_arm = names["group"]
    _check_realist(sec, route["rows"], f"realist:{default_arm}")
    for code in ("online",):
        q = f"?arm={code}&reference=usual_care&longitudinal=true"
        rows = _ok(client.get(f"/studies/{demo.study_id}/realist-table{q}", headers=_h(demo, "admin")))["rows"]
        _check_realist(sec, rows, f"realist:{names[code]}")
    assert f"{default_arm} vs {names['usual_care']}" in _text(sec)
    configs = _table(sec, "cmos")
    assert [c[0] for c in configs] == [f"{r['title']} ({r['cmo']})" for r in route["rows"]]


def test_for_whom_blinded_analyst_sees_letters_only(client, demo, reports, engine):
    names, letters = _arms(client, demo, engine)
    html = reports["analyst"]
    for name in names.values():
        assert name not in html  # no arm name anywhere in a blind reader's report
    sec = _section(html, "for_whom")
    ref = sorted(letters.values())[0]
    others = sorted(v for v in letters.values() if v != ref)
    assert re.findall(r'data-table="realist:([^"]+)"', sec) == [f"Arm {x}" for x in others]
    for x in others:
        q = f"?arm={x}&reference={ref}&longitudinal=true"
        rows = _ok(client.get(f"/studies/{demo.study_id}/realist-table{q}", headers=_h(demo, "analyst")))["rows"]
        _check_realist(sec, rows, f"realist:Arm {x}")
    # Without arms the route refuses a blind reader (it cannot tell intervention from control).
    r = client.get(f"/studies/{demo.study_id}/realist-table", headers=_h(demo, "analyst"))
    assert r.status_code == 422
    joint = _section(html, "joint_displays")
    arms_shown = {row[2] for row in _table(joint, "trajectory_matrix")}
    assert arms_shown and arms_shown <= {f"Arm {x}" for x in letters.values()}


def test_joint_display_matches_the_route_and_leaks_no_identifier(client, demo, planted, reports):
    for role, html in reports.items():
        for s in (NAME, "Quenby", EMAIL, PHONE, "900734", *DEMO_IDENTIFIERS):
            assert s not in html, (role, s)
        for key in ("for_whom", "joint_displays"):  # the report prints no study code
            assert not re.search(r"DEMO-\d+", _section(html, key)), (role, key)
        sec = _section(html, "joint_displays")
        assert "MCID of 4 points" in _text(sec)  # the demo plan's MCID for PAM-13 activation
        q = "theme=reduced_isolation&theme=physical_activity&theme=travel&scale=pam13_activation&mcid=4&quotes=2"
        route = _ok(client.get(f"/studies/{demo.study_id}/qualitative/trajectory-matrix?{q}", headers=_h(demo, role)))
        drawn = {(r[0], r[1], r[2]): (r[3], r[4]) for r in _table(sec, "trajectory_matrix")}
        assert len(drawn) == len(route["rows"])
        got = sorted(v for v in drawn.values())
        want = sorted((str(r["n_group"]), str(r["n_theme"])) for r in route["rows"])
        assert got == want
        iso = [v for k, v in drawn.items() if k[1] == "Reduced isolation" and v[1] != "0"]
        assert iso, "the planted interview is coded Reduced isolation"
        cases = _table(sec, "case_matrix")
        assert [c[0] for c in cases] == [f"interviewee {i}" for i in range(1, len(cases) + 1)]
        # the planted interview's quote is drawn, de-identified (the name replaced in the stored text)
        assert planted in _text(sec) and "Since the group I feel less alone" in _text(sec)


def test_sections_say_what_is_missing_without_cmos_or_transcripts(client, make_study, admin):
    study = make_study()
    out = _ok(client.post(f"/studies/{study.id}/reports", json={"pdf": False}, headers=admin.headers), 201)
    keys = {s["key"]: s["present"] for s in out["sections"]}
    assert keys["for_whom"] is False and keys["joint_displays"] is False
    html = client.get(out["html_url"], headers=admin.headers).text
    assert "No context–mechanism–outcome (CMO) configurations recorded." in _text(_section(html, "for_whom"))
    assert "No joint display recorded" in _text(_section(html, "joint_displays"))
