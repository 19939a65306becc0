"""REFI-QDA: .qdc codebooks and .qdpx projects, validated and round-tripped."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from qualitative.codebook import Code, Codebook, CodedCorpus, Coding, Memo
from qualitative.refi import CODEBOOK_NS, PROJECT_NS, export_qdc, export_qdpx, import_qdc, import_qdpx
from qualitative.transcripts import parse_text, parse_vtt

DATA = Path(__file__).parent / "data"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@pytest.fixture(scope="module")
def project_schema():
    return etree.XMLSchema(etree.parse(str(DATA / "Project.xsd")))


@pytest.fixture
def codebook():
    cb = Codebook()
    cb.add(Code("benefits", "Benefits", codable=False, color="#2CA02C", description="What participants gained"))
    cb.add(
        Code(
            "reduced_isolation",
            "Reduced isolation",
            parent="benefits",
            color="#1F77B4",
            description="Feeling less alone",
            inclusion="Talk of company,\nfriendship",
            exclusion="Practical help",
            example="I'm not on my own now",
            keywords=("lonely", "alone"),
            patterns=([{"LEMMA": "miss"}, {"LOWER": "people"}],),
        )
    )
    cb.add(Code("self_management", "Self-management", parent="benefits", color="#FF7F0E"))
    cb.add(Code("barriers", "Barriers & costs <travel>", color="#D62728"))
    return cb


@pytest.fixture
def corpus(codebook):
    # Non-BMP characters before the codings: REFI positions are code points,
    # so a writer that counted UTF-16 units or bytes would shift every span.
    t1 = parse_text(
        "Interviewer: How was it? 😊\nP01: Honestly 👍🏽 I felt less alone. Costs of the bus though.",
        id="p01-w2",
        participant="P01",
        wave="w2",
    )
    vtt = (
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v Moderator>Thoughts?\n\n"
        "00:00:02.500 --> 00:00:05.000\n<v P03>Café on Tuesdays — I manage my sugar better.\n\n"
        "00:00:05.500 --> 00:00:07.000\n<v P04>Too far for me."
    )
    t2 = parse_vtt(vtt, id="fg1", wave="w2")

    def at(t, phrase, code, coder, memo=None):
        s = t.text.index(phrase)
        return Coding(t.id, code, s, s + len(phrase), coder, memo=memo)

    codings = [
        at(t1, "I felt less alone.", "reduced_isolation", "ana", memo="clear"),
        at(t1, "I felt less alone.", "reduced_isolation", "ben"),  # same span, second coder
        at(t1, "less alone. Costs", "barriers", "ben"),  # overlapping another coding
        at(t2, "I manage my sugar better.", "self_management", "ana"),
        at(t2, "Too far for me.", "barriers", "ana"),
    ]
    memos = [
        Memo("Check definition with the team", target="code", target_id="reduced_isolation", author="ana"),
        Memo("Audio poor in places", target="transcript", target_id="fg1", author="ben"),
        Memo("Ironic?", target="segment", target_id="p01-w2", start=codings[2].start, end=codings[2].end, author="ben"),
        Memo("Why this code here", target="coding", target_id=codings[0].id, author="ana"),
        Memo("Round 1 of coding", target="project", author="ana"),
    ]
    return CodedCorpus([t1, t2], codebook, codings, memos, name="Peer support interviews")


def test_qdc_structure(codebook, tmp_path):
    path = export_qdc(codebook, tmp_path / "cb.qdc")
    root = etree.parse(str(path)).getroot()
    assert root.tag == f"{{{CODEBOOK_NS}}}CodeBook"
    codes = root.findall(f".//{{{CODEBOOK_NS}}}Code")
    assert len(codes) == 4
    top = root.find(f"{{{CODEBOOK_NS}}}Codes").findall(f"{{{CODEBOOK_NS}}}Code")
    assert [c.get("name") for c in top] == ["Benefits", "Barriers & costs <travel>"]
    for c in codes:
        assert GUID.match(c.get("guid"))
        assert c.get("isCodable") in {"true", "false"}
        assert re.fullmatch(r"#[0-9A-F]{6}", c.get("color"))
        # Only Description and nested Code elements are allowed inside a Code.
        assert {etree.QName(ch).localname for ch in c} <= {"Description", "Code"}
        first = [etree.QName(ch).localname for ch in c][:1]
        assert first in ([], ["Description"], ["Code"])
    assert top[0].get("isCodable") == "false"
    assert len(top[0].findall(f"{{{CODEBOOK_NS}}}Code")) == 2


def test_qdc_round_trip(codebook, tmp_path):
    back = import_qdc(export_qdc(codebook, tmp_path / "cb.qdc"))
    assert codebook.to_frame().drop(columns=[]).to_dict("records") == back.to_frame().to_dict("records")


def test_qdpx_layout_and_schema(corpus, project_schema, tmp_path):
    path = export_qdpx(corpus, tmp_path / "p.qdpx")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        qde = etree.fromstring(z.read("project.qde"))
        assert "project.qde" in names
        sources = [n for n in names if n.startswith("sources/")]
        assert len(sources) == 2
        project_schema.assertValid(qde)
        assert qde.tag == f"{{{PROJECT_NS}}}Project"
        ns = {"q": PROJECT_NS}
        text_sources = qde.findall("q:Sources/q:TextSource", ns)
        for src in text_sources:
            ref = src.get("plainTextPath")
            assert ref.startswith("internal://")
            body = z.read("sources/" + ref[len("internal://") :]).decode("utf-8")
            t = corpus.transcript(src.get("name"))
            assert body == t.text
            for sel in src.findall("q:PlainTextSelection", ns):
                s, e = int(sel.get("startPosition")), int(sel.get("endPosition"))
                coding = sel.find("q:Coding", ns)
                if coding is None:
                    continue
                code_guid = coding.find("q:CodeRef", ns).get("targetGUID")
                code_name = qde.find(f".//q:Code[@guid='{code_guid}']", ns).get("name")
                expected = [c for c in corpus.codings if c.transcript == t.id and (c.start, c.end) == (s, e)]
                assert expected, (s, e)
                assert code_name in {corpus.codebook[c.code].name for c in expected}
        users = {u.get("name") for u in qde.findall("q:Users/q:User", ns)}
        assert users == {"ana", "ben"}
        assert len(qde.findall("q:Notes/q:Note", ns)) == 5


def test_positions_count_code_points(corpus, tmp_path):
    path = export_qdpx(corpus, tmp_path / "p.qdpx")
    with zipfile.ZipFile(path) as z:
        qde = etree.fromstring(z.read("project.qde"))
    t = corpus.transcript("p01-w2")
    phrase = "I felt less alone."
    cp = t.text.index(phrase)
    utf16 = len(t.text[:cp].encode("utf-16-le")) // 2
    assert utf16 != cp  # the emoji make the two counts differ
    starts = {int(s.get("startPosition")) for s in qde.iter(f"{{{PROJECT_NS}}}PlainTextSelection")}
    assert cp in starts and utf16 not in starts


def test_qdpx_round_trip_keeps_codes_sources_spans_and_memos(corpus, tmp_path):
    back = import_qdpx(export_qdpx(corpus, tmp_path / "p.qdpx"))
    assert back.name == corpus.name
    assert back.codebook.to_frame().to_dict("records") == corpus.codebook.to_frame().to_dict("records")
    assert [(t.id, t.text, t.participant, t.wave, t.kind) for t in back.transcripts] == [
        (t.id, t.text, t.participant, t.wave, t.kind) for t in corpus.transcripts
    ]
    assert [t.turns for t in back.transcripts] == [t.turns for t in corpus.transcripts]
    key = lambda c: (c.transcript, c.code, c.start, c.end, c.coder, c.memo)  # noqa: E731
    assert sorted(map(key, back.codings)) == sorted(map(key, corpus.codings))
    assert {c.id for c in back.codings} == {c.id for c in corpus.codings}
    mkey = lambda m: (m.text, m.target, m.target_id, m.author, m.start, m.end)  # noqa: E731
    assert sorted(map(mkey, back.memos), key=str) == sorted(map(mkey, corpus.memos), key=str)


def test_import_foreign_project_with_inline_text_and_no_peerlens_extras(tmp_path):
    qde = f"""<?xml version="1.0" encoding="utf-8"?>
<Project xmlns="{PROJECT_NS}" name="Other tool">
  <Users><User guid="11111111-1111-1111-1111-111111111111" name="Kim"/></Users>
  <CodeBook><Codes>
    <Code guid="22222222-2222-2222-2222-222222222222" name="Hope" isCodable="true" color="#abc">
      <Code guid="33333333-3333-3333-3333-333333333333" name="Hope" isCodable="true"/>
    </Code>
  </Codes></CodeBook>
  <Sources>
    <TextSource guid="44444444-4444-4444-4444-444444444444" name="int-07">
      <PlainTextContent>P07: I have hope again.</PlainTextContent>
      <PlainTextSelection guid="55555555-5555-5555-5555-555555555555" startPosition="5" endPosition="23"
          creatingUser="11111111-1111-1111-1111-111111111111">
        <Coding guid="66666666-6666-6666-6666-666666666666">
          <CodeRef targetGUID="33333333-3333-3333-3333-333333333333"/>
        </Coding>
      </PlainTextSelection>
    </TextSource>
  </Sources>
</Project>"""
    path = tmp_path / "other.qdpx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("project.qde", qde)
    back = import_qdpx(path)
    assert [c.id for c in back.codebook] == ["hope", "hope_2"]
    assert back.codebook["hope_2"].parent == "hope"
    assert back.codebook["hope"].color == "#AABBCC"
    (c,) = back.codings
    assert (c.code, c.coder, back.transcripts[0].text[c.start : c.end]) == ("hope_2", "Kim", "I have hope again.")
    assert back.transcripts[0].turns[0].speaker == "P07"


def test_export_refuses_inconsistent_corpus(corpus, tmp_path):
    corpus.codings.append(Coding("p01-w2", "reduced_isolation", 0, 10_000, "ana"))
    with pytest.raises(ValueError, match="beyond text length"):
        export_qdpx(corpus, tmp_path / "bad.qdpx")


def test_cases_and_variables_validate_and_round_trip(corpus, project_schema, tmp_path):
    import dataclasses
    from datetime import date

    people = sorted({p for t in corpus.transcripts for p in (t.participants or [t.participant]) if p})
    cases = {
        p: {"arm": "group" if i % 2 == 0 else "usual_care", "site": "north", "dose": 6 + i, "adherent": i == 0,
            "pam_change": 4.5 - i, "enrolled": date(2026, 1, 5 + i)}
        for i, p in enumerate(people)
    }  # fmt: skip
    corpus = dataclasses.replace(corpus, cases=cases)
    path = export_qdpx(corpus, tmp_path / "cases.qdpx")
    with zipfile.ZipFile(path) as z:
        qde = etree.fromstring(z.read("project.qde"))
    project_schema.assertValid(qde)
    ns = {"q": PROJECT_NS}
    types = {v.get("name"): v.get("typeOfVariable") for v in qde.findall("q:Variables/q:Variable", ns)}
    assert types == {
        "arm": "Text",
        "site": "Text",
        "dose": "Integer",
        "adherent": "Boolean",
        "pam_change": "Float",
        "enrolled": "Date",
    }
    case_els = qde.findall("q:Cases/q:Case", ns)
    assert [c.get("name") for c in case_els] == people
    # Each case points at its participant's sources.
    source_guids = {s.get("name"): s.get("guid") for s in qde.findall("q:Sources/q:TextSource", ns)}
    first = case_els[0]
    refs = {r.get("targetGUID") for r in first.findall("q:SourceRef", ns)}
    own = {source_guids[t.id] for t in corpus.transcripts if people[0] in (t.participants or [t.participant])}
    assert refs == own and refs
    back = import_qdpx(path)
    assert back.cases == cases
