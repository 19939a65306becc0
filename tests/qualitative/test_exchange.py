"""Exchange with Taguette, on files written by Taguette 1.5.2 itself (tests/qualitative/data/taguette)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qualitative.codebook import Code, Codebook, Coding
from qualitative.exchange import codebook_from_csv, codebook_to_csv, read_taguette, split_code_paths
from qualitative.refi import import_qdc

DATA = Path(__file__).parent / "data" / "taguette"


def _tree(cb):
    return {c.id: (c.name, c.parent, c.codable) for c in cb}


EXPECTED = {
    "barriers": ("Barriers", None, False),  # not a Taguette tag: a grouping code
    "barriers_travel": ("Travel", "barriers", True),
    "benefits": ("Benefits", None, True),  # a Taguette tag of its own: stays codable
    "benefits_physical_activity": ("Physical activity", "benefits", True),
    "benefits_reduced_isolation": ("Reduced isolation", "benefits", True),
}


def test_taguette_qdc_paths_become_a_hierarchy():
    assert _tree(import_qdc(DATA / "codebook.qdc")) == EXPECTED
    flat = import_qdc(DATA / "codebook.qdc", paths=False)
    assert {c.name for c in flat} >= {"Benefits.Reduced isolation", "Barriers/Travel"}


def test_taguette_codebook_csv_keeps_descriptions():
    cb = codebook_from_csv((DATA / "codebook.csv").read_bytes())
    assert _tree(cb) == EXPECTED
    assert cb["barriers_travel"].description == "Getting to sessions"
    assert cb["benefits_physical_activity"].description == "Walking, exercise"


def test_codebook_csv_round_trip_with_bom_and_accents():
    cb = Codebook(
        [
            Code("benefits", "Bénéfices", description="Ce qu'ils ont gagné", codable=False, color="#112233"),
            Code("iso", "Moins seul·e", parent="benefits", inclusion="=SUM(A1)", example="« moins seul »"),
        ]
    )
    data = codebook_to_csv(cb, [Coding("t1", "iso", 0, 3, "ana"), Coding("t2", "iso", 0, 3, "ana")])
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("tag,description,number of highlights,number of documents")
    assert lines[2].startswith("Bénéfices.Moins seul·e,,2,2,iso")
    assert "'=SUM(A1)" in lines[2]  # a formula is written as text
    back = codebook_from_csv(data)
    assert _tree(back) == {"benefits": ("Bénéfices", None, False), "iso": ("Moins seul·e", "benefits", True)}
    assert back["iso"].example == "« moins seul »" and back["benefits"].color == "#112233"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("code,description\nA,b\n", "exactly one of"),
        ("tag,name\nA,b\n", "exactly one of"),
        ("tag,description\n,b\n", "row 2: empty tag"),
        ("tag,color\nA,red\n", "row 2: color"),
    ],
)
def test_bad_codebook_csv_is_refused_with_a_reason(content, message):
    with pytest.raises(ValueError, match=message):
        codebook_from_csv(content)


def test_split_keeps_numbers_and_existing_parents():
    cb = Codebook(
        [Code("a", "24/7 support"), Code("b", "Dose 1.5 mg"), Code("p", "Root"), Code("c", "x.y", parent="p")]
    )
    assert _tree(split_code_paths(cb)) == {
        "a": ("24/7 support", None, True),
        "b": ("Dose 1.5 mg", None, True),
        "p": ("Root", None, True),
        "c": ("x.y", "p", True),
    }


def test_taguette_project_database_keeps_every_highlight():
    corpus = read_taguette(DATA / "project.sqlite3", participants=["TG-001", "TG-002"])
    corpus.validate()
    assert _tree(corpus.codebook) == EXPECTED
    assert [t.participant for t in corpus.transcripts] == ["TG-001", "TG-002"]
    assert corpus.transcripts[0].text.splitlines()[1].startswith("TG-001: Honestly")
    got = sorted((c.code, corpus.transcript(c.transcript).text[c.start : c.end]) for c in corpus.codings)
    # Six tag applications on five highlights (one highlight has two tags); offsets survive the
    # multi-byte "é" and "’" before them.
    assert got == sorted(
        [
            ("benefits_reduced_isolation", "Honestly I was lonely before."),
            ("benefits", "The café was noisy but the people were kind."),
            ("benefits", "Now I walk with them every Thursday"),
            ("benefits_physical_activity", "Now I walk with them every Thursday"),
            ("barriers_travel", "The bus is hourly and I can’t drive any more."),
            ("benefits_reduced_isolation", "I felt less alone after the second session."),
        ]
    )
    assert {c.coder for c in corpus.codings} == {"taguette"}


def test_not_a_taguette_file(tmp_path):
    p = tmp_path / "x.sqlite3"
    p.write_bytes(b"not sqlite at all" * 10)
    with pytest.raises(ValueError):
        read_taguette(p)
    import sqlite3

    q = tmp_path / "other.sqlite3"
    sqlite3.connect(q).execute("create table t (x)").connection.commit()
    with pytest.raises(ValueError, match="not a Taguette project"):
        read_taguette(q)
