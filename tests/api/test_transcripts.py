"""Transcripts over HTTP on SQLite and PostgreSQL: upload of every format with de-identification,
the identifier vault, codebook and codings, suggestions, agreement, REFI-QDA round trip and the
joint display. Expected values are computed here by hand, not taken from the code under test."""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
import pytest

from tests.conftest import phq9_answers

# A distinctive participant whose identifiers are said in the interview.
SEED = {"name": "Philippa Quenby-Marchetti", "email": "p.quenby.7713@example.org", "phone": "+44 7700 900734"}
SEED_PARTS = [SEED["name"], "Philippa", "Quenby-Marchetti", SEED["email"], SEED["phone"], "7700 900734"]

INTERVIEW = (
    "Interviewer: How did the group feel at first?\n"
    "PQ-101: Honestly I was lonely before. My name is Philippa Quenby-Marchetti and my daughter "
    "writes to p.quenby.7713@example.org or rings +44 7700 900734.\n"
    "Interviewer: And now?\n"
    "PQ-101: The support group made me feel less lonely, Philippa is a new woman they say.\n"
)


def _leaks(text: str) -> list[str]:
    return [s for s in SEED_PARTS if s.lower() in text.lower()]


# Each test gets a study of its own with what it needs already in place (the fixtures below), so
# that tests pass alone, in any order and on any worker.


@pytest.fixture
def world(client, make_study, enrol, make_user, admin, analyst):
    study = make_study()
    p = enrol(study, site="north", arm="group", study_code="PQ-101", contact={**SEED, "preferred_channel": "email"})
    others = [
        enrol(study, site="north", arm=arm, study_code=f"PQ-10{i}")
        for i, arm in ((2, "group"), (3, "usual_care"), (4, "usual_care"))
    ]
    south = enrol(study, site="south", arm="group", study_code="PQ-201")
    coord = make_user("coordinator", [study.sites["north"]])
    coord2 = make_user("coordinator", [study.sites["north"]])
    coord_south = make_user("coordinator", [study.sites["south"]])
    return {
        "study": study,
        "p": p,
        "others": others,
        "south": south,
        "admin": admin,
        "analyst": analyst,
        "coord": coord,
        "coord2": coord2,
        "coord_south": coord_south,
    }


def upload(client, study_id, headers, name, content, participants, expect=201, **form):
    data = {"participants": participants, **form}
    r = client.post(
        f"/studies/{study_id}/transcripts",
        headers=headers,
        data=data,
        files={"file": (name, content, "application/octet-stream")},
    )
    assert r.status_code == expect, r.text
    return r.json()


def turn_texts(t):
    return [(u["speaker"], t["text"][u["start"] : u["end"]]) for u in t["turns"]]


@pytest.fixture
def interview(client, world):
    """PQ-101's baseline interview, in which they say their name, email and phone number."""
    return upload(
        client, world["study"].id, world["coord"].headers, "pq101.txt", INTERVIEW.encode(), "PQ-101", wave="baseline"
    )


@pytest.fixture
def focus_group(client, world):
    """A .docx focus group of PQ-102 and PQ-103, their speaker labels mapped to study codes."""
    import docx

    d = docx.Document()
    for line in (
        "Facilitator: Welcome both.",
        "Anna: I felt lonely before the group.",
        "Ben: Me too, the group helped.",
    ):
        d.add_paragraph(line)
    buf = io.BytesIO()
    d.save(buf)
    return upload(
        client,
        world["study"].id,
        world["coord"].headers,
        "fg.docx",
        buf.getvalue(),
        "PQ-102,PQ-103",
        speaker_map='{"Anna": "PQ-102", "Ben": "PQ-103"}',
    )


@pytest.fixture
def codes(client, world):
    """Benefits (a grouping code) > Reduced isolation (keyword "lonely"), and Travel."""
    s, h = world["study"], world["coord"].headers
    r = client.post(f"/studies/{s.id}/codes", headers=h, json={"name": "Benefits", "codable": False})
    assert r.status_code == 201, r.text
    benefits = r.json()
    r = client.post(
        f"/studies/{s.id}/codes",
        headers=h,
        json={
            "name": "Reduced isolation",
            "parent_id": benefits["id"],
            "inclusion": "Talk of feeling less alone",
            "exclusion": "Loneliness of others",
            "example": "I felt less alone",
            "color": "#1F77B4",
            "keywords": ["lonely"],
            "patterns": [[{"LEMMA": "miss"}, {"LOWER": "people"}]],
        },
    )
    assert r.status_code == 201, r.text
    iso = r.json()
    r = client.post(f"/studies/{s.id}/codes", headers=h, json={"name": "Travel", "key": "travel"})
    assert r.status_code == 201, r.text
    return {"benefits": benefits, "iso": iso, "travel": r.json()}


def _code(client, world, t, code, start, end, **extra):
    return client.post(
        f"/transcripts/{t['id']}/codings",
        headers=world["coord"].headers,
        json={"code_id": code["id"], "start": start, "end": end, **extra},
    )


@pytest.fixture
def coded(client, world, interview, codes):
    """ "lonely before" in the interview coded Reduced isolation, overlapped by a Travel coding."""
    start = interview["text"].index("lonely before")
    first = _code(client, world, interview, codes["iso"], start, start + 13, memo="clear")
    second = _code(client, world, interview, codes["travel"], start + 7, start + 20)
    assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
    return [first.json(), second.json()]


# --------------------------------------------------------------------------- formats


def test_upload_plain_text_deidentifies_with_the_vault(interview):
    t = interview
    assert t["ner"] == "off" and t["kind"] == "interview" and t["participants"] == ["PQ-101"]
    assert t["wave"] == "baseline" and t["source_format"] == "text"
    assert _leaks(t["text"]) == []
    assert t["replacements"].get("PERSON", 0) >= 2 and t["replacements"]["EMAIL"] == 1
    assert t["replacements"]["PHONE"] == 1
    # the same person gets one placeholder wherever named
    assert t["text"].count("[PERSON_1]") == 2 and "[EMAIL_1]" in t["text"] and "[PHONE_1]" in t["text"]
    speakers = [sp for sp, _ in turn_texts(t)]
    assert speakers == ["Interviewer", "PQ-101", "Interviewer", "PQ-101"]
    assert turn_texts(t)[2][1] == "And now?"
    assert any(w for w in t["warnings"] if "NER is off" in w or "statistical NER is off" in w)


def test_a_title_is_deidentified_by_the_service_whoever_calls_it(client, world, engine, settings):
    from sqlmodel import Session

    from api.auth.service import Actor
    from api.studies.models import Study
    from api.transcripts import service

    s, h = world["study"], world["coord"].headers
    title = "Talk with Philippa Quenby-Marchetti (p.quenby.7713@example.org)"
    t = upload(client, s.id, h, "title.txt", b"Interviewer: Hi\nPQ-101: Hello", "PQ-101", title=title)
    assert _leaks(t["title"]) == [] and t["title"].startswith("Talk with [PERSON_1]")
    with Session(engine, expire_on_commit=False) as session:  # a caller without HTTP (the command line)
        row, _ = service.upload_transcript(
            session,
            session.get(Study, s.id),
            Actor.system(source="import"),
            data=b"Interviewer: Hi\nPQ-101: Hello",
            filename="cli.txt",
            participants=["PQ-101"],
            wave=None,
            kind=None,
            fmt=None,
            title=title,
            interviewer_labels=None,
            speaker_map=None,
            settings=settings,
        )
        assert _leaks(row.title) == [] and "[EMAIL_1]" in row.title
        session.rollback()


def test_upload_markdown(client, world):
    md = "---\nwave: m3\n---\n# Interview\n**Interviewer:** How was it?\n**PQ-102:** *Much* better now.\n"
    t = upload(client, world["study"].id, world["coord"].headers, "pq102.md", md.encode(), "PQ-102", wave="m3")
    assert t["source_format"] == "markdown"
    assert turn_texts(t) == [("Interviewer", "How was it?"), ("PQ-102", "Much better now.")]


def test_upload_vtt_with_speakers_and_timestamps(client, world):
    vtt = (
        "WEBVTT\n\n"
        "00:00:01.000 --> 00:00:04.500\n<v Interviewer>Tell me about the sessions.\n\n"
        "00:00:05.000 --> 00:00:09.250\n<v PQ-103>They were on Tuesdays.\n\n"
        "00:00:09.500 --> 00:00:12.000\n<v PQ-103>I never missed one.\n"
    )
    t = upload(client, world["study"].id, world["coord"].headers, "pq103.vtt", vtt.encode(), "PQ-103")
    assert t["source_format"] == "vtt"
    assert [u["speaker"] for u in t["turns"]] == ["Interviewer", "PQ-103"]  # consecutive cues merge
    assert t["turns"][0]["start_time"] == 1.0 and t["turns"][0]["end_time"] == 4.5
    assert t["turns"][1]["start_time"] == 5.0 and t["turns"][1]["end_time"] == 12.0
    assert t["turns"][0]["role"] == "interviewer" and t["turns"][1]["role"] == "participant"
    assert "They were on Tuesdays." in turn_texts(t)[1][1] and "I never missed one." in turn_texts(t)[1][1]


def test_upload_srt(client, world):
    srt = (
        "1\n00:00:01,000 --> 00:00:03,000\nInterviewer: Any problems?\n\n"
        "2\n00:00:03,500 --> 00:00:06,000\nPQ-104: Travel was hard.\n"
    )
    t = upload(client, world["study"].id, world["coord"].headers, "pq104.srt", srt.encode(), "PQ-104")
    assert turn_texts(t) == [("Interviewer", "Any problems?"), ("PQ-104", "Travel was hard.")]
    assert t["turns"][1]["start_time"] == 3.5


def test_upload_docx_focus_group_with_speaker_map(focus_group):
    t = focus_group
    assert t["kind"] == "focus_group" and t["source_format"] == "docx"
    assert t["participants"] == ["PQ-102", "PQ-103"]
    assert [u["speaker"] for u in t["turns"]] == ["Facilitator", "PQ-102", "PQ-103"]
    assert turn_texts(t)[2][1] == "Me too, the group helped."


@pytest.mark.parametrize(
    "name,content,form,loc",
    [
        ("x.pdf", b"%PDF-1.4", {}, ["body", "file"]),
        ("x.docx", b"not a zip at all", {}, ["body", "file"]),
        ("x.txt", b"\xff\xfe\xfa bad", {}, ["body", "file"]),
        ("x.txt", b"P01: hi", {"wave": "m99"}, ["body", "wave"]),
        ("x.txt", b"P01: hi", {"speaker_map": "[1,2"}, ["body", "speaker_map"]),
    ],
)
def test_bad_uploads_are_422_naming_the_field(client, world, name, content, form, loc):
    before = client.get(f"/studies/{world['study'].id}/transcripts", headers=world["admin"].headers).json()
    r = client.post(
        f"/studies/{world['study'].id}/transcripts",
        headers=world["admin"].headers,
        data={"participants": "PQ-102", **form},
        files={"file": (name, content)},
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc
    after = client.get(f"/studies/{world['study'].id}/transcripts", headers=world["admin"].headers).json()
    assert len(after) == len(before)  # nothing half-written


def test_unknown_participant_is_422(client, world):
    r = client.post(
        f"/studies/{world['study'].id}/transcripts",
        headers=world["admin"].headers,
        data={"participants": "PQ-102,NOPE-1"},
        files={"file": ("x.txt", b"P: hi")},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "participants", 1]


# --------------------------------------------------------------------------- roles and the vault


def test_roles_and_site_scope(client, world, interview):
    s, t = world["study"], interview
    r = client.post(
        f"/studies/{s.id}/transcripts",
        headers=world["analyst"].headers,
        data={"participants": "PQ-101"},
        files={"file": ("a.txt", b"PQ-101: hi")},
    )
    assert r.status_code == 403
    assert client.get(f"/transcripts/{t['id']}/original", headers=world["analyst"].headers).status_code == 403
    assert client.get(f"/transcripts/{t['id']}/original", headers=world["coord"].headers).status_code == 403
    # a coordinator of another site neither sees nor codes north's transcript, nor uploads for it
    assert client.get(f"/transcripts/{t['id']}", headers=world["coord_south"].headers).status_code == 404
    assert client.get(f"/studies/{s.id}/transcripts", headers=world["coord_south"].headers).json() == []
    r = client.post(
        f"/studies/{s.id}/transcripts",
        headers=world["coord_south"].headers,
        data={"participants": "PQ-101"},
        files={"file": ("a.txt", b"PQ-101: hi")},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "participants", 0]
    listed = client.get(f"/studies/{s.id}/transcripts", headers=world["analyst"].headers).json()
    assert t["id"] in {x["id"] for x in listed}


def test_admin_original_keeps_the_identifiers(client, world, interview):
    t = interview
    orig = client.get(f"/transcripts/{t['id']}/original", headers=world["admin"].headers).json()
    assert orig["text"] == INTERVIEW.rstrip("\n") or orig["text"] == INTERVIEW
    originals = {r["original"] for r in orig["replacements"]}
    assert {SEED["name"], SEED["email"], SEED["phone"], "Philippa"} <= originals
    assert orig["filename"] == "pq101.txt"
    # every replacement points at its original text and its placeholder in the stored text
    full = client.get(f"/transcripts/{t['id']}", headers=world["admin"].headers).json()["text"]
    for r in orig["replacements"]:
        assert orig["text"][r["start"] : r["end"]] == r["original"]
        assert full[r["new_start"] : r["new_end"]] == r["placeholder"]


def test_upload_audit_holds_counts_not_identifiers(client, world, interview):
    s = world["study"]
    r = client.get(
        "/audit", params={"study_id": s.id, "entity": "transcript", "limit": 1000}, headers=world["admin"].headers
    )
    assert r.status_code == 200
    events = r.json()
    assert any(e["entity_id"] == str(interview["id"]) and e["action"] == "create" for e in events)
    ev = next(e for e in events if e["entity_id"] == str(interview["id"]))
    assert ev["after"]["replacements"]["EMAIL"] == 1
    assert _leaks(r.text) == []


# --------------------------------------------------------------------------- codebook, codings, memos


def test_codebook_hierarchy_history_and_memos(client, world, interview, codes):
    s, h = world["study"], world["coord"].headers
    benefits, iso = codes["benefits"], codes["iso"]
    assert iso["key"] == "reduced_isolation" and iso["path"] == "Benefits / Reduced isolation"
    # bad inputs
    for body, loc in (
        ({"name": "X", "color": "blue"}, ["body", "color"]),
        ({"name": "X", "parent_id": 999999}, ["body", "parent_id"]),
        ({"name": "X", "patterns": [[{"NOT_AN_ATTR": 1}]]}, ["body", "patterns"]),
    ):
        r = client.post(f"/studies/{s.id}/codes", headers=h, json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, r.text
    assert client.post(f"/studies/{s.id}/codes", headers=h, json={"name": "Travel"}).status_code == 409
    r = client.patch(f"/codes/{benefits['id']}", headers=h, json={"parent_id": iso["id"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "parent_id"]
    r = client.patch(f"/codes/{iso['id']}", headers=h, json={"description": "Feeling less alone"})
    assert r.status_code == 200 and r.json()["description"] == "Feeling less alone"
    assert client.patch(f"/codes/{iso['id']}", headers=world["analyst"].headers, json={}).status_code == 403
    hist = client.get(f"/studies/{s.id}/codes/history", headers=world["analyst"].headers).json()
    assert [(x["code_key"], x["action"]) for x in hist] == [
        ("benefits", "add"),
        ("reduced_isolation", "add"),
        ("travel", "add"),
        ("reduced_isolation", "update"),
    ]
    assert hist[-1]["changes"]["description"] == {"old": "", "new": "Feeling less alone"}
    # memos on a code, a transcript and a segment
    t = interview
    for body in (
        {"target": "code", "target_id": iso["id"], "text": "Watch for irony"},
        {"target": "transcript", "target_id": t["id"], "text": "Quiet room"},
        {"target": "segment", "target_id": t["id"], "start": 0, "end": 5, "text": "Opening"},
    ):
        r = client.post(f"/studies/{s.id}/memos", headers=h, json=body)
        assert r.status_code == 201, r.text
    r = client.post(
        f"/studies/{s.id}/memos",
        headers=h,
        json={"target": "segment", "target_id": t["id"], "start": 0, "end": 10**6, "text": "x"},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "end"]
    memos = client.get(f"/studies/{s.id}/memos", headers=world["analyst"].headers).json()
    assert [m["target"] for m in memos] == ["code", "transcript", "segment"]


def test_codings_spans_overlap_and_422_beyond_text(client, world, interview, codes, coded):
    t, h, iso = interview, world["coord"].headers, codes["iso"]
    n = len(t["text"])
    assert coded[0]["text"] == "lonely before" and coded[0]["coder"].startswith("coordinator-")
    assert coded[1]["code_key"] == "travel"  # overlapping coding with another code is allowed
    for body, loc in (
        ({"start": 0, "end": n + 1}, ["body", "end"]),
        ({"start": n, "end": n + 5}, ["body", "start"]),
        ({"start": 5, "end": 5}, ["body"]),
    ):
        r = client.post(f"/transcripts/{t['id']}/codings", headers=h, json={"code_id": iso["id"], **body})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"][: len(loc)] == loc
    r = client.post(
        f"/transcripts/{t['id']}/codings",
        headers=h,
        json={"code_id": codes["benefits"]["id"], "start": 0, "end": 3},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "not_codable"
    codings = client.get(f"/transcripts/{t['id']}/codings", headers=world["analyst"].headers).json()
    assert len(codings) == 2
    # a code in use cannot be deleted; an unused one can
    assert client.delete(f"/codes/{iso['id']}", headers=h).status_code == 409


def test_segments_and_search_are_deidentified(client, world, interview, focus_group, codes, coded):
    s, iso = world["study"], codes["iso"]
    t = interview
    # a span that covers the placeholder of the name
    start = t["text"].index("My name is")
    r = client.post(
        f"/transcripts/{t['id']}/codings",
        headers=world["coord"].headers,
        json={"code_id": iso["id"], "start": start, "end": start + 40},
    )
    assert r.status_code == 201
    seg = client.get(f"/studies/{s.id}/codes/{iso['id']}/segments", headers=world["analyst"].headers)
    assert seg.status_code == 200 and len(seg.json()) == 2
    assert any("[PERSON_1]" in x["text"] for x in seg.json()) and _leaks(seg.text) == []
    # segments of the parent include the child's
    par = client.get(
        f"/studies/{s.id}/codes/{codes['benefits']['id']}/segments", headers=world["analyst"].headers
    ).json()
    assert len(par) == 2
    found = client.get(f"/studies/{s.id}/transcripts/search", params={"q": "lonely"}, headers=world["analyst"].headers)
    assert found.status_code == 200 and _leaks(found.text) == []
    matches = [m["match"].lower() for m in found.json()]
    assert matches.count("lonely") >= 3  # two in the interview, one in the focus group
    found = client.get(f"/studies/{s.id}/transcripts/search", params={"q": "name"}, headers=world["analyst"].headers)
    assert found.json() and _leaks(found.text) == []
    assert client.get(f"/studies/{s.id}/transcripts/search", headers=world["analyst"].headers).status_code == 422
    full = client.get(f"/transcripts/{t['id']}", headers=world["analyst"].headers)
    assert full.status_code == 200 and _leaks(full.text) == []


def test_co_occurrence_and_crosstab(client, world, focus_group, coded):
    s, h = world["study"], world["analyst"].headers
    co = client.get(f"/studies/{s.id}/coding/co-occurrence", params={"unit": "overlap"}, headers=h).json()
    pairs = {(x["code_a"], x["code_b"]) for x in co} | {(x["code_b"], x["code_a"]) for x in co}
    assert ("reduced_isolation", "travel") in pairs
    ct = client.get(f"/studies/{s.id}/coding/crosstab", params={"by": "arm"}, headers=h)
    assert ct.status_code == 200, ct.text
    # Analysts are blind to the arms: the group arm is the neutral label PQ-101 carries.
    people = client.get(f"/studies/{s.id}/participants", headers=h).json()
    group = next(p["arm"] for p in people if p["study_code"] == "PQ-101")
    assert group in ("A", "B", "C")
    row = next(x for x in ct.json() if x["code"] == "reduced_isolation" and x["arm"] == group)
    # group arm: PQ-101 (coded), PQ-102 (interview and focus group) have transcripts -> 1 of 2
    assert row["n_participants"] == 1 and row["n_group"] == 2 and row["pct"] == 50.0
    r = client.get(f"/studies/{s.id}/coding/crosstab", params={"by": "colour"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "by"]
    r = client.get(f"/studies/{s.id}/coding/crosstab", params={"by": "context_nope"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "by"]


# --------------------------------------------------------------------------- suggestions


def test_suggestions_accept_and_reject(client, world, interview, focus_group, codes):
    t, h = focus_group, world["coord2"].headers
    r = client.post(f"/transcripts/{t['id']}/suggestions", headers=h)
    assert r.status_code == 200, r.text
    sugg = r.json()
    # Suggestions are whole sentences (the default expansion), so a coder sees the hit in context.
    assert [(x["code_key"], x["text"]) for x in sugg] == [("reduced_isolation", "I felt lonely before the group.")]
    # the focus group has one "lonely"; add a second transcript hit via the interview
    r = client.post(f"/transcripts/{interview['id']}/suggestions", headers=h)
    inter = r.json()
    texts = sorted(x["text"] for x in inter)
    assert any("lonely" in x for x in texts)
    acc = client.post(f"/suggestions/{sugg[0]['id']}/accept", headers=h)
    assert acc.status_code == 200 and acc.json()["status"] == "accepted"
    coding_id = acc.json()["coding_id"]
    codings = client.get(f"/transcripts/{t['id']}/codings", headers=h).json()
    mine = next(c for c in codings if c["id"] == coding_id)
    assert mine["coder"] == client.get("/me", headers=h).json()["email"]
    assert mine["text"] == "I felt lonely before the group." and mine["start"] == sugg[0]["start"]
    assert client.post(f"/suggestions/{sugg[0]['id']}/accept", headers=h).status_code == 409
    rej = client.post(f"/suggestions/{inter[0]['id']}/reject", headers=h)
    assert rej.status_code == 200 and rej.json()["status"] == "rejected"
    again = client.post(f"/transcripts/{interview['id']}/suggestions", headers=h).json()
    assert inter[0]["id"] not in {x["id"] for x in again}
    assert (inter[0]["start"], inter[0]["end"]) not in {(x["start"], x["end"]) for x in again}
    rejected = client.get(
        f"/transcripts/{interview['id']}/suggestions",
        params={"status": "rejected"},
        headers=world["analyst"].headers,
    ).json()
    assert [x["id"] for x in rejected] == [inter[0]["id"]]
    assert client.post(f"/suggestions/{inter[0]['id']}/reject", headers=world["analyst"].headers).status_code == 403


# --------------------------------------------------------------------------- agreement


def test_agreement_kappa_matches_a_hand_computation(client, make_study, enrol, make_user, admin):
    study = make_study()
    enrol(study, site="north", study_code="KA-001")
    a, b = make_user("coordinator", [study.sites["north"]]), make_user("coordinator", [study.sites["north"]])
    text = "\n".join(f"KA-001: statement number {i}" for i in range(1, 7))
    t = upload(client, study.id, admin.headers, "ka.txt", text.encode(), "KA-001")
    code = client.post(f"/studies/{study.id}/codes", headers=admin.headers, json={"name": "Hope"}).json()
    turns = t["turns"]
    assert len(turns) == 6
    for user, coded in ((a, (0, 1, 2)), (b, (0, 1, 3))):
        for i in coded:
            r = client.post(
                f"/transcripts/{t['id']}/codings",
                headers=user.headers,
                json={"code_id": code["id"], "start": turns[i]["start"], "end": turns[i]["end"]},
            )
            assert r.status_code == 201
    ea = client.get("/me", headers=a.headers).json()["email"]
    eb = client.get("/me", headers=b.headers).json()["email"]
    # by hand: yes/yes 2, yes/no 1, no/yes 1, no/no 2 -> p_o = 4/6, p_e = .5*.5 + .5*.5, kappa = 1/3
    p_o, p_e = 4 / 6, 0.5 * 0.5 + 0.5 * 0.5
    kappa = (p_o - p_e) / (1 - p_e)
    r = client.get(
        f"/studies/{study.id}/coding/agreement", params={"unit": "turn", "coders": f"{ea},{eb}"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    row = next(x for x in r.json() if x["code"] == "hope")
    assert row["n_units"] == 6 and row["kappa_method"] == "cohen"
    assert math.isclose(row["kappa"], kappa, abs_tol=1e-9) and math.isclose(row["percent_agreement"], p_o)
    dis = client.get(
        f"/studies/{study.id}/coding/disagreements", params={"coders": f"{ea},{eb}"}, headers=admin.headers
    ).json()
    assert sorted(d["text"] for d in dis) == ["statement number 3", "statement number 4"]
    r = client.get(
        f"/studies/{study.id}/coding/agreement", params={"coders": f"{ea},nobody@x.org"}, headers=admin.headers
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "coders", 1]
    r = client.get(f"/studies/{study.id}/coding/agreement", params={"unit": "sentence"}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "unit"]


# --------------------------------------------------------------------------- REFI-QDA


def test_qdpx_round_trip_into_a_second_study(client, world, make_study, focus_group, coded):
    s, h = world["study"], world["analyst"].headers
    qdc = client.get(f"/studies/{s.id}/refi/codebook.qdc", headers=h)
    assert qdc.status_code == 200 and b"urn:QDA-XML:codebook:1.0" in qdc.content
    r = client.get(f"/studies/{s.id}/refi/project.qdpx", headers=h)
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        blob = "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    assert _leaks(blob) == []
    other = make_study()
    imp = client.post(
        f"/studies/{other.id}/refi/import", headers=world["admin"].headers, files={"file": ("p.qdpx", r.content)}
    )
    assert imp.status_code == 201, imp.text
    rep = imp.json()
    src_codes = client.get(f"/studies/{s.id}/codes", headers=h).json()
    src_ts = client.get(f"/studies/{s.id}/transcripts", headers=h).json()
    assert rep["format"] == "qdpx" and rep["codes_created"] == len(src_codes) and rep["transcripts"] == len(src_ts)
    dst_codes = client.get(f"/studies/{other.id}/codes", headers=h).json()
    assert {(c["key"], c["name"], c["path"]) for c in dst_codes} == {
        (c["key"], c["name"], c["path"]) for c in src_codes
    }

    def spans(study_id):
        out = set()
        texts = set()
        for t in client.get(f"/studies/{study_id}/transcripts", headers=h).json():
            full = client.get(f"/transcripts/{t['id']}", headers=h).json()
            texts.add(full["text"])
            for c in client.get(f"/transcripts/{t['id']}/codings", headers=h).json():
                out.add((full["text"], c["code_key"], c["start"], c["end"], c["coder"]))
        return texts, out

    src_texts, src_spans = spans(s.id)
    dst_texts, dst_spans = spans(other.id)
    assert src_texts == dst_texts and src_spans == dst_spans and len(src_spans) == rep["codings"]
    # a codebook-only import reuses existing keys
    qi = client.post(
        f"/studies/{other.id}/refi/import", headers=world["admin"].headers, files={"file": ("c.qdc", qdc.content)}
    )
    assert qi.status_code == 201 and qi.json()["codes_created"] == 0 and qi.json()["codes_existing"] == len(src_codes)


@pytest.mark.parametrize(
    "content", [b"garbage", b"<CodeBook xmlns='nope'><Codes><Code/></Codes>", b"PK\x03\x04broken zip", b""]
)
def test_bad_refi_files_are_422(client, world, make_study, content):
    other = make_study()
    buf = content
    r = client.post(f"/studies/{other.id}/refi/import", headers=world["admin"].headers, files={"file": ("x", buf)})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert client.get(f"/studies/{other.id}/codes", headers=world["admin"].headers).json() == []


def test_empty_zip_is_422(client, world, make_study):
    other = make_study()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "no project here")
    r = client.post(
        f"/studies/{other.id}/refi/import", headers=world["admin"].headers, files={"file": ("x.qdpx", buf.getvalue())}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"]


# --------------------------------------------------------------------------- quantitising and joint display


def _hedges(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    n1, n2 = len(x), len(y)
    sp = math.sqrt(((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / (n1 + n2 - 2))
    d = (x.mean() - y.mean()) / sp
    return d * (1 - 3 / (4 * (n1 + n2 - 2) - 1))


def test_indicators_and_joint_display(client, world, make_study, enrol, admin, analyst, tmp_path):
    study = make_study()
    # baseline and m3 PHQ-9 totals; changes: J1 -9, J2 -18, J3 0, J4 +9, J5 -9
    plan = {"JD-1": (2, 1), "JD-2": (2, 0), "JD-3": (1, 1), "JD-4": (1, 2), "JD-5": (3, 2)}
    themed = {"JD-1", "JD-2"}
    code = client.post(
        f"/studies/{study.id}/codes",
        headers=admin.headers,
        json={"name": "Reduced isolation", "key": "reduced_isolation"},
    ).json()
    for sc, (b, f) in plan.items():
        p = enrol(
            study,
            site="north",
            study_code=sc,
            enrolled_on="2025-06-02",
            contact={"name": f"Zebedee Hollingworth-{sc[-1]}x", "email": f"zh{sc[-1]}@example.org"},
        )
        for wave, v, when in (("baseline", b, "2025-06-03T10:00:00Z"), ("m3", f, "2025-09-01T10:00:00Z")):
            r = client.post(
                f"/participants/{p['id']}/responses",
                headers=admin.headers,
                json={"wave": wave, "instrument": "phq9", "answers": phq9_answers(v), "completed_at": when},
            )
            assert r.status_code == 201, r.text
        said = f"Zebedee Hollingworth-{sc[-1]}x" if sc == "JD-1" else "nobody"
        text = f"Interviewer: How are you?\n{sc}: I am {said}, and the group made me feel less alone.\n"
        t = upload(client, study.id, admin.headers, f"{sc}.txt", text.encode(), sc)
        if sc in themed:
            start = t["text"].index("the group")
            r = client.post(
                f"/transcripts/{t['id']}/codings",
                headers=admin.headers,
                json={"code_id": code["id"], "start": start, "end": len(t["text"].rstrip())},
            )
            assert r.status_code == 201
    ind = client.get(f"/studies/{study.id}/qualitative/indicators", headers=analyst.headers)
    assert ind.status_code == 200
    rows = {r["participant"]: r for r in ind.json()}
    assert {k: rows[k]["code:reduced_isolation"] for k in plan} == {k: int(k in themed) for k in plan}
    assert {k: rows[k]["count:reduced_isolation"] for k in plan} == {k: int(k in themed) for k in plan}
    body = {"themes": ["reduced_isolation"], "scales": ["phq9"], "baseline": "baseline", "followup": "m3"}
    r = client.post(f"/studies/{study.id}/qualitative/joint-display", headers=admin.headers, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out["rows"][0]) >= {
        "theme",
        "theme_name",
        "scale",
        "n_with",
        "n_without",
        "mean_change_with",
        "sd_change_with",
        "mean_change_without",
        "sd_change_without",
        "hedges_g",
        "ci_low",
        "ci_high",
        "quotes",
    }
    row = out["rows"][0]
    change = {k: 9 * (f - b) for k, (b, f) in plan.items()}
    with_ = [change[k] for k in plan if k in themed]
    without = [change[k] for k in plan if k not in themed]
    assert (row["n_with"], row["n_without"]) == (2, 3)
    assert math.isclose(row["mean_change_with"], np.mean(with_))
    assert math.isclose(row["mean_change_without"], np.mean(without))
    assert math.isclose(row["sd_change_without"], np.std(without, ddof=1))
    assert math.isclose(row["hedges_g"], _hedges(with_, without), rel_tol=1e-9)
    assert row["ci_low"] < row["hedges_g"] < row["ci_high"]
    assert row["quotes"] and all("less alone" in x for x in row["quotes"])
    # analysts get the same table through GET, without identifiers
    g = client.get(
        f"/studies/{study.id}/qualitative/joint-display",
        headers=analyst.headers,
        params={"theme": "reduced_isolation", "scale": "phq9", "baseline": "baseline", "followup": "m3"},
    )
    assert g.status_code == 200 and math.isclose(g.json()["rows"][0]["hedges_g"], row["hedges_g"])
    assert "Zebedee" not in g.text and "Hollingworth" not in g.text and "Zebedee" not in r.text
    plot = client.get(out["plot_url"], headers=analyst.headers)
    assert plot.status_code == 200 and plot.headers["content-type"].startswith("image/svg")
    assert b"<svg" in plot.content[:500]
    assert client.get(out["plot_url"], headers={}).status_code == 401
    run_id = out["plot_url"].split("/")[-2]
    for bad in (
        f"{run_id}/..%2F..%2Fpyproject.toml",
        f"{run_id}/%2E%2E",
        f"{run_id}/x.svg",
        f"{run_id}/run.json",
        f"..%2F{run_id}/joint_display.svg",
        f"{'0' * 32}/joint_display.svg",
    ):
        rr = client.get(f"/studies/{study.id}/qualitative/runs/{bad}", headers=analyst.headers)
        assert rr.status_code == 404, (bad, rr.status_code)
    for bad, loc in (
        ({**body, "themes": ["nope"]}, ["body", "themes", 0]),
        ({**body, "followup": "m99"}, ["body", "followup"]),
        ({**body, "scales": ["zzz"]}, ["body", "scales", 0]),
    ):
        rr = client.post(f"/studies/{study.id}/qualitative/joint-display", headers=admin.headers, json=bad)
        assert rr.status_code == 422 and rr.json()["detail"][0]["loc"] == loc, rr.text
