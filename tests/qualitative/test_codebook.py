"""Codebook edits and history; retrieval, co-occurrence and crosstabs over codings."""

from __future__ import annotations

import pandas as pd
import pytest

from qualitative.codebook import Code, Codebook, CodedCorpus, Coding, Memo, codings_frame
from qualitative.coding import co_occurrence, co_occurrence_matrix, crosstab, segments
from qualitative.transcripts import parse_text


@pytest.fixture
def codebook():
    cb = Codebook(name="Peer support")
    cb.add(Code("benefits", "Benefits", codable=False, color="#2CA02C"), by="lead")
    cb.add(
        Code(
            "reduced_isolation",
            "Reduced isolation",
            parent="benefits",
            inclusion="Talk of feeling less alone",
            exclusion="Practical help only",
            example="I don't feel so alone now",
            keywords=("lonely", "alone"),
        ),
        by="lead",
    )
    cb.add(Code("self_management", "Self-management", parent="benefits"), by="lead")
    cb.add(Code("barriers", "Barriers"), by="lead")
    return cb


def test_hierarchy_and_paths(codebook):
    assert [c.id for c in codebook.roots()] == ["benefits", "barriers"]
    assert [c.id for c in codebook.descendants("benefits")] == ["reduced_isolation", "self_management"]
    assert codebook.path("reduced_isolation") == "Benefits/Reduced isolation"
    frame = codebook.to_frame().set_index("id")
    assert frame.loc["reduced_isolation", "level"] == 1
    assert frame.loc["reduced_isolation", "keywords"] == ["lonely", "alone"]


def test_edit_history_records_who_changed_what(codebook):
    codebook.update("reduced_isolation", by="ana", description="Less alone", color="#1F77B4")
    codebook.update("self_management", by="ben", parent="barriers")
    h = codebook.history_frame()
    assert h["action"].tolist() == ["add", "add", "add", "add", "update", "move"]
    upd = h.iloc[4]
    assert upd["by"] == "ana" and upd["changes"]["color"] == ("#888888", "#1F77B4")
    assert codebook["self_management"].parent == "barriers"


def test_invalid_edits_are_refused(codebook):
    with pytest.raises(ValueError, match="cycle"):
        codebook.update("benefits", parent="reduced_isolation")
    with pytest.raises(ValueError, match="already exists"):
        codebook.add(Code("barriers", "Again"))
    with pytest.raises(ValueError, match="unknown parent"):
        codebook.add(Code("x", "X", parent="nope"))
    with pytest.raises(ValueError, match="color"):
        Code("y", "Y", color="blue")
    with pytest.raises(ValueError):
        Coding("t", "c", 5, 5, "ana")


def test_remove_reparents_children(codebook):
    codebook.remove("benefits", by="lead")
    assert "benefits" not in codebook
    assert codebook["reduced_isolation"].parent is None
    assert codebook.history[-1].action == "remove"


def test_memos_validate_their_target():
    Memo("Check with team", target="segment", target_id="t1", start=0, end=4)
    with pytest.raises(ValueError):
        Memo("x", target="segment", target_id="t1")
    with pytest.raises(ValueError):
        Memo("x", target="participant")


@pytest.fixture
def corpus(codebook):
    t1 = parse_text(
        "Interviewer: And the group?\nP01: I was lonely. The group helped me manage my sugar.",
        id="p01-w2",
        participant="P01",
        wave="w2",
    )
    t2 = parse_text(
        "Interviewer: Anything hard?\nP02: Getting there by bus. I felt alone at first.",
        id="p02-w2",
        participant="P02",
        wave="w2",
    )
    fg = parse_text("Moderator: Go ahead.\nP03: Lonely winters.\nP04: Buses again.\nP05: Fine.", id="fg1", wave="w2")

    def at(t, phrase, code, coder="ana"):
        s = t.text.index(phrase)
        return Coding(t.id, code, s, s + len(phrase), coder)

    codings = [
        at(t1, "I was lonely.", "reduced_isolation"),
        at(t1, "lonely. The group helped me manage my sugar.", "self_management"),
        at(t2, "Getting there by bus.", "barriers"),
        at(t2, "I felt alone at first.", "reduced_isolation"),
        at(fg, "Lonely winters.", "reduced_isolation"),
        at(fg, "Buses again.", "barriers"),
    ]
    return CodedCorpus([t1, t2, fg], codebook, codings)


def test_segments_with_text_speaker_and_descendants(corpus):
    seg = segments(corpus.codings, corpus.transcripts, "reduced_isolation")
    assert seg["text"].tolist() == ["Lonely winters.", "I was lonely.", "I felt alone at first."]
    assert seg["participant"].tolist() == ["P03", "P01", "P02"]  # focus group: the speaker
    both = segments(corpus.codings, corpus.transcripts, "benefits", codebook=corpus.codebook, include_descendants=True)
    assert sorted(both["code"].unique()) == ["reduced_isolation", "self_management"]


def test_co_occurrence_overlap_and_units(corpus):
    ov = co_occurrence(corpus.codings)
    assert ov[["code_a", "code_b", "n"]].values.tolist() == [["reduced_isolation", "self_management", 1]]
    by_transcript = co_occurrence(corpus.codings, unit="transcript").set_index(["code_a", "code_b"])["n"]
    assert by_transcript[("barriers", "reduced_isolation")] == 2  # p02 and the focus group
    by_turn = co_occurrence(corpus.codings, corpus.transcripts, unit="turn")
    assert ("barriers", "reduced_isolation") not in set(
        zip(by_turn["code_a"], by_turn["code_b"], strict=True)
    ) or by_turn.set_index(["code_a", "code_b"]).loc[("barriers", "reduced_isolation"), "n"] == 1
    m = co_occurrence_matrix(by_transcript.reset_index())
    assert m.loc["reduced_isolation", "barriers"] == m.loc["barriers", "reduced_isolation"] == 2


def test_crosstab_by_participant_attribute(corpus):
    attrs = pd.DataFrame(
        {
            "participant": ["P01", "P02", "P03", "P04", "P05"],
            "arm": ["peer", "peer", "peer", "control", "control"],
            "site": ["north", "south", "north", "north", "south"],
        }
    )
    x = crosstab(corpus.codings, corpus.transcripts, attrs, "arm").set_index(["code", "arm"])
    assert x.loc[("reduced_isolation", "peer"), "n_participants"] == 3
    assert x.loc[("reduced_isolation", "peer"), "pct"] == 100.0
    assert x.loc[("reduced_isolation", "control"), "n_participants"] == 0
    assert x.loc[("barriers", "control"), "pct"] == 50.0  # P04 of P04, P05
    two = crosstab(corpus.codings, corpus.transcripts, attrs, ["arm", "wave"])
    assert set(two["wave"]) == {"w2"}
    with pytest.raises(ValueError, match="unknown attribute"):
        crosstab(corpus.codings, corpus.transcripts, attrs, "sex")


def test_codings_frame_columns(corpus):
    df = codings_frame(corpus.codings)
    assert list(df.columns) == ["id", "transcript", "code", "start", "end", "coder", "memo"]
    corpus.validate()
    bad = CodedCorpus(corpus.transcripts, corpus.codebook, [Coding("p01-w2", "nope", 0, 3, "ana")])
    with pytest.raises(ValueError, match="unknown code"):
        bad.validate()
