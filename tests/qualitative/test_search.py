"""Lemma-aware keyword-in-context search."""

from __future__ import annotations

from qualitative.nlp import lemmatize
from qualitative.search import kwic
from qualitative.transcripts import parse_text


def transcripts():
    return [
        parse_text(
            "Interviewer: Did the groups help?\nP01: The support groups helped me a lot.\n"
            "P01: I supported others in my group too.",
            id="p01",
            participant="P01",
            wave="w1",
        ),
        parse_text("P02: Group walks. Grouping people by age did not work.", id="p02", participant="P02"),
    ]


def test_lookup_lemmas_are_lower_cased():
    assert lemmatize("Meetings were running") == ["meeting", "be", "run"]


def test_lemma_search_finds_inflections_with_context():
    df = kwic(transcripts(), "group", window=15)
    assert df["match"].tolist() == ["groups", "groups", "group", "Group", "Grouping"]
    first = df.iloc[1]
    assert (first["transcript"], first["speaker"], first["participant"], first["wave"]) == ("p01", "P01", "P01", "w1")
    assert first["left"].endswith("The support ") and first["right"].startswith(" helped")
    t = transcripts()[0]
    assert t.text[first["start"] : first["end"]] == "groups"
    # The lookup table maps the verb form too; "groupie" is another word.
    assert kwic([parse_text("P03: a groupie", id="x")], "group").empty


def test_phrase_search_and_plain_lower_case_search():
    df = kwic(transcripts(), "support group")
    assert df["match"].tolist() == ["support groups"]
    plain = kwic(transcripts(), "group", lemma=False)
    assert plain["match"].tolist() == ["group", "Group"]


def test_context_stops_at_line_breaks_and_empty_result_has_columns():
    df = kwic(transcripts(), "help", window=200)
    assert all("\n" not in x for x in df["left"].tolist() + df["right"].tolist())
    assert df["speaker"].tolist() == ["Interviewer", "P01"]
    empty = kwic(transcripts(), "zebra")
    assert empty.empty and list(empty.columns)[:3] == ["transcript", "participant", "wave"]
