"""Parsers: plain text, Markdown, WebVTT, SRT and .docx fixtures written here."""

from __future__ import annotations

import docx
import pytest

from qualitative.transcripts import (
    load_transcript,
    paragraph_spans,
    parse_markdown,
    parse_srt,
    parse_text,
    parse_vtt,
)

VTT = """WEBVTT

NOTE recorded at the community centre

1
00:00:01.000 --> 00:00:04.250
<v Interviewer>How did the peer group fit into your week?

2
00:00:05.000 --> 00:00:09.500
<v P07>At first I went for the tea,
to be honest.

3
00:00:09.600 --> 00:01:02.000
<v P07>Then I started checking my <c.yellow>sugars</c> every morning.

00:01:03.000 --> 00:01:05.000
<v Interviewer>Why?
"""

SRT = """1
00:00:00,500 --> 00:00:03,000
Facilitator: Welcome everyone.

2
00:00:03,200 --> 00:00:07,900
P01: I was lonely before the walks.

3
00:00:08,000 --> 00:00:10,000
[P02] Me too, honestly.

4
00:00:10,500 --> 00:00:12,000
P01: And now I walk twice a week.
"""


def spoken(t):
    return [(u.speaker, t.text[u.start : u.end]) for u in t.turns]


def test_plain_text_turns_offsets_and_continuation_lines():
    text = (
        "Interviewer: How are you?\r\nP01: Fine, thanks.\r\nIt has been a long year.\r\n\r\nInterviewer: Tell me more."
    )
    t = parse_text(text, id="p01-w1", participant="P01", wave="w1")
    assert "\r" not in t.text
    assert spoken(t) == [
        ("Interviewer", "How are you?"),
        ("P01", "Fine, thanks.\nIt has been a long year."),
        ("Interviewer", "Tell me more."),
    ]
    assert [u.role for u in t.turns] == ["interviewer", "participant", "interviewer"]
    assert (t.participant, t.wave, t.kind, t.participants) == ("P01", "w1", "interview", ["P01"])
    assert t.speaker_at(t.text.index("long year")) == "P01"
    # The speaker label is not part of the turn.
    assert t.speaker_at(t.text.index("P01:")) is None


def test_plain_text_with_timestamps_and_prose_colon():
    text = "[00:00:05] Interviewer: Ready?\n[00:01:10] P02: The answer was simple: yes."
    t = parse_text(text)
    assert [u.start_time for u in t.turns] == [5.0, 70.0]
    assert t.turns[0].end_time == 70.0
    # "The answer was simple: yes." is prose inside P02's turn, not a new turn.
    assert len(t.turns) == 2 and t.turn_text(1) == "The answer was simple: yes."


def test_focus_group_from_text_lists_every_participant():
    text = "Moderator: Who wants to start?\nP03: Me.\nP04: Then me.\nP03: Again."
    t = parse_text(text, id="fg1")
    assert t.kind == "focus_group"
    assert t.participants == ["P03", "P04"]
    assert t.participant is None


def test_markdown_front_matter_and_markup_removed():
    md = (
        "---\nparticipant: P09\nwave: w2\nsite: north\n---\n"
        "# Interview with P09\n\n"
        "**Interviewer:** What changed?\n"
        "**P09:** I *finally* understood my [care plan](http://example.org).\n"
    )
    t = parse_markdown(md, id="p09-w2")
    assert (t.participant, t.wave, t.metadata["site"]) == ("P09", "w2", "north")
    assert spoken(t) == [("Interviewer", "What changed?"), ("P09", "I finally understood my care plan.")]
    assert "**" not in t.text and "#" not in t.text


def test_vtt_voices_timestamps_and_merged_cues():
    t = parse_vtt(VTT, id="p07-w1", participant="P07")
    assert spoken(t) == [
        ("Interviewer", "How did the peer group fit into your week?"),
        ("P07", "At first I went for the tea, to be honest. Then I started checking my sugars every morning."),
        ("Interviewer", "Why?"),
    ]
    assert (t.turns[1].start_time, t.turns[1].end_time) == (5.0, 62.0)
    assert t.turns[2].start_time == 63.0
    assert t.text.splitlines()[1].startswith("P07: At first")
    assert t.source_format == "vtt"


def test_vtt_without_merging_keeps_every_cue():
    t = parse_vtt(VTT, merge_consecutive=False)
    assert [u.speaker for u in t.turns] == ["Interviewer", "P07", "P07", "Interviewer"]


def test_vtt_requires_header():
    with pytest.raises(ValueError, match="WEBVTT"):
        parse_vtt("1\n00:00:01.000 --> 00:00:02.000\nhello")


def test_srt_speakers_from_prefix_and_brackets():
    t = parse_srt(SRT, id="fg2")
    assert spoken(t) == [
        ("Facilitator", "Welcome everyone."),
        ("P01", "I was lonely before the walks."),
        ("P02", "Me too, honestly."),
        ("P01", "And now I walk twice a week."),
    ]
    assert t.turns[0].role == "interviewer"
    assert t.turns[3].start_time == 10.5 and t.turns[3].end_time == 12.0
    assert t.kind == "focus_group" and t.participants == ["P01", "P02"]


def test_docx_created_with_python_docx(tmp_path):
    d = docx.Document()
    d.add_heading("Interview P11, wave 1", level=1)
    p = d.add_paragraph()
    p.add_run("Interviewer:").bold = True
    p.add_run(" How was the first session?")
    d.add_paragraph("P11: Nerve-racking.")
    d.add_paragraph("But the others were kind.")
    path = tmp_path / "p11-w1.docx"
    d.save(path)
    t = load_transcript(path, participant="P11", wave="w1")
    assert t.id == "p11-w1" and t.source_format == "docx"
    assert spoken(t) == [
        ("Interviewer", "How was the first session?"),
        ("P11", "Nerve-racking.\nBut the others were kind."),
    ]
    # The heading is kept as text but opens no turn.
    assert t.text.startswith("Interview P11, wave 1\n")


def test_load_transcript_dispatches_on_suffix(tmp_path):
    (tmp_path / "a.vtt").write_text(VTT, encoding="utf-8")
    (tmp_path / "b.srt").write_text(SRT, encoding="utf-8")
    (tmp_path / "c.md").write_text("**P01:** hi", encoding="utf-8")
    (tmp_path / "d.txt").write_text("\ufeffP02: hello", encoding="utf-8")
    assert load_transcript(tmp_path / "a.vtt").source_format == "vtt"
    assert load_transcript(tmp_path / "b.srt").source_format == "srt"
    assert load_transcript(tmp_path / "c.md").turn_text(0) == "hi"
    assert load_transcript(tmp_path / "d.txt").turns[0].speaker == "P02"
    with pytest.raises(ValueError):
        load_transcript(tmp_path / "e.pdf")


def test_paragraph_spans_are_non_empty_lines():
    text = "one two\n\n   three  \nfour"
    assert [text[a:b] for a, b in paragraph_spans(text)] == ["one two", "three", "four"]
