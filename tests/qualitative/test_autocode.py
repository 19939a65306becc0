"""Auto-coding suggestions: keywords (lemma/lower), token patterns, accept/reject."""

from __future__ import annotations

import pytest

from qualitative.autocode import AutoCoder, SuggestionLedger, suggestions_frame
from qualitative.codebook import Code, Codebook, Coding
from qualitative.transcripts import parse_text


@pytest.fixture(scope="module")
def codebook():
    return Codebook(
        [
            Code("isolation", "Isolation", keywords=("feel isolated", "lonely", "on my own")),
            Code(
                "walking", "Walking", patterns=([{"LEMMA": "walk"}, {"IS_ALPHA": True, "OP": "?"}, {"LOWER": "group"}],)
            ),
            Code(
                "glycaemia",
                "Glycaemic control",
                keywords=("blood sugar",),
                patterns=([{"LOWER": {"IN": ["hba1c", "a1c"]}}, {"IS_PUNCT": True, "OP": "?"}, {"LIKE_NUM": True}],),
            ),
            Code("themes", "Themes", codable=False, keywords=("group",)),
        ]
    )


@pytest.fixture
def transcript():
    return parse_text(
        "Interviewer: Were you lonely?\n"
        "P01: I was feeling isolated and Lonely, on my own most days.\n"
        "P01: Then I joined the walking group, we walked in a group.\n"
        "P01: My HbA1c: 53 now, and blood sugars are steadier.",
        id="p01-w2",
        participant="P01",
    )


def test_lemma_keywords_and_patterns(codebook, transcript):
    ac = AutoCoder(codebook, expand="match")
    got = [(s.code, s.text, s.rule) for s in ac.suggest([transcript])]
    assert got == [
        ("isolation", "feeling isolated", "keyword"),
        ("isolation", "Lonely", "keyword"),
        ("isolation", "on my own", "keyword"),
        ("walking", "walking group", "pattern"),
        ("glycaemia", "HbA1c: 53", "pattern"),
        ("glycaemia", "blood sugars", "keyword"),
    ]
    # The interviewer's "lonely" is not proposed, and non-codable codes never are.
    assert all(transcript.speaker_at(s.start) == "P01" for s in ac.suggest([transcript]))


def test_lower_attribute_needs_exact_forms(codebook, transcript):
    got = {(s.code, s.text) for s in AutoCoder(codebook, attr="LOWER", expand="match").suggest([transcript])}
    assert ("isolation", "Lonely") in got
    assert ("isolation", "feeling isolated") not in got  # "feel" != "feeling" without lemmas
    assert ("glycaemia", "blood sugars") not in got


def test_offsets_point_into_transcript(codebook, transcript):
    for s in AutoCoder(codebook, expand="match").suggest([transcript]):
        assert transcript.text[s.start : s.end] == s.text


def test_accept_makes_coding_and_reject_is_remembered(codebook, transcript):
    ac = AutoCoder(codebook, expand="match")
    first = ac.suggest([transcript])
    ledger = SuggestionLedger()
    coding = ledger.accept(first[0], coder="ana", memo="clear case")
    assert isinstance(coding, Coding)
    assert (coding.code, coding.start, coding.end, coding.coder, coding.memo) == (
        "isolation",
        first[0].start,
        first[0].end,
        "ana",
        "clear case",
    )
    ledger.reject(first[1], coder="ana")
    again = ac.suggest([transcript], ledger=ledger, codings=[coding])
    keys = {s.key for s in again}
    assert first[0].key not in keys  # already a coding
    assert first[1].key not in keys  # rejected before
    assert len(again) == len(first) - 2
    # The ledger survives a round trip through a frame (how a service would store it).
    restored = SuggestionLedger.from_frame(ledger.to_frame())
    assert restored.is_rejected(first[1]) and not restored.is_rejected(first[2])
    with pytest.raises(ValueError):
        ledger.accept(first[2], coder="")


def test_paragraph_expansion_and_frame(codebook, transcript):
    sug = AutoCoder(codebook, expand="paragraph").suggest([transcript])
    isolation = [s for s in sug if s.code == "isolation"]
    assert len(isolation) == 1 and isolation[0].text.startswith("I was feeling isolated")
    df = suggestions_frame(sug)
    assert list(df.columns) == ["id", "transcript", "code", "start", "end", "text", "rule"]


def test_many_transcripts_through_pipe(codebook, transcript):
    many = [parse_text(transcript.text, id=f"t{i}") for i in range(50)]
    sug = AutoCoder(codebook, participants_only=False, expand="match").suggest(many)
    per = {}
    for s in sug:
        per[s.transcript] = per.get(s.transcript, 0) + 1
    assert len(per) == 50 and len(set(per.values())) == 1
    # With interviewer turns included the interviewer's "lonely" is proposed too.
    assert per["t0"] == 7


def test_keyword_expansion_equals_matching_on_lemmas(nlp):
    """Expanded keywords on lower-case text find exactly what a LEMMA PhraseMatcher finds."""
    import random

    from spacy.matcher import PhraseMatcher

    from qualitative.nlp import _lookup_strings

    table, _ = _lookup_strings()
    rng = random.Random(5)
    pool = sorted(w for w in table if w.isalpha())[:4000]
    words = [rng.choice(pool) for _ in range(3000)]
    text = "P01: " + " ".join(w.capitalize() if rng.random() < 0.2 else w for w in words)
    t = parse_text(text, id="r")
    keywords = [rng.choice(pool) for _ in range(40)] + [f"{rng.choice(pool)} {rng.choice(pool)}" for _ in range(5)]
    keywords += [f"{words[i]} {words[i + 1]}" for i in range(10, 3000, 600)]  # surely present
    cb = Codebook([Code(f"k{i}", f"K{i}", keywords=(kw,)) for i, kw in enumerate(keywords)])
    ours = {(s.code, s.start, s.end) for s in AutoCoder(cb, expand="match").suggest([t])}

    reference = PhraseMatcher(nlp.vocab, attr="LEMMA")
    for i, kw in enumerate(keywords):
        reference.add(f"k{i}", [nlp(kw)])
    doc = nlp(t.text[t.turns[0].start : t.turns[0].end])
    expected = set()
    for match_id, s, e in reference(doc):
        span = doc[s:e]
        expected.add(
            (nlp.vocab.strings[match_id], t.turns[0].start + span.start_char, t.turns[0].start + span.end_char)
        )
    # Overlapping matches of one code are reduced to non-overlapping ones by the coder.
    assert ours <= expected
    assert {(c, s) for c, s, _ in expected} >= {(c, s) for c, s, _ in ours}
    assert len(ours) >= 5
    covered = {
        (c, s, e)
        for c, s, e in expected
        if not any(c == c2 and s < e2 and s2 < e and (s, e) != (s2, e2) for c2, s2, e2 in ours)
    }
    assert covered <= ours


def test_patterns_with_repeats_and_anchors_after_optional_tokens():
    cb = Codebook(
        [
            Code("fatigue", "Fatigue", patterns=([{"LOWER": "so"}, {"LOWER": "very", "OP": "*"}, {"LEMMA": "tire"}],)),
            Code(
                "cost",
                "Cost",
                patterns=(
                    [
                        {"IS_DIGIT": True, "OP": "?"},
                        {"LOWER": {"IN": ["pound", "pounds"]}},
                        {"LOWER": "a"},
                        {"LEMMA": "week"},
                    ],
                ),
            ),
            Code(
                "any_num", "Any number", patterns=([{"LIKE_NUM": True}, {"LOWER": "times"}],)
            ),  # no literal anchor first
        ]
    )
    t = parse_text(
        "P01: I get so very very tired. It costs 12 pounds a week, pounds a weeks. Three times a day.", id="x"
    )
    got = [(s.code, s.text) for s in AutoCoder(cb, expand="match").suggest([t])]
    assert got == [
        ("fatigue", "so very very tired"),
        ("cost", "12 pounds a week"),
        ("cost", "pounds a weeks"),
        ("any_num", "Three times"),
    ]
