"""De-identification: rule-based path (no model) and statistical path (tiny NER trained in conftest)."""

from __future__ import annotations

import re

import pytest
import spacy

from qualitative.deid import VaultIdentifiers, deid_recall, deidentify
from qualitative.nlp import NERModelNotFound
from qualitative.transcripts import parse_text

from .conftest import NER_PEOPLE

VAULT = VaultIdentifiers(
    names=["Margaret Okafor"],
    emails=["m.okafor@example.org"],
    phones=["+44 7700 900123"],
)

# Each piece is (text, type or None). Typed pieces are the seeded identifiers.
SEEDED = [
    ("Interviewer: Thanks for coming in today, ", None),
    ("Margaret", "PERSON"),
    (".\n", None),
    ("P01: Call me ", None),
    ("Maggie", "PERSON"),
    (" if you like. I'm ", None),
    ("Margaret Okafor", "PERSON"),
    (" on the forms though.\n", None),
    ("P01: I joined on ", None),
    ("12 March 2023", "DATE"),
    (" after ", None),
    ("Dr ", None),
    ("Patel", "PERSON"),
    (" at ", None),
    ("St Mary's Hospital", "ORG"),
    (" in ", None),
    ("Leeds", "PLACE"),
    (" suggested it.\n", None),
    ("P01: My friend ", None),
    ("Sarah Jenkins", "PERSON"),
    (" came to the first one on ", None),
    ("03/04/2023", "DATE"),
    (". She lives in ", None),
    ("Bradford", "PLACE"),
    (".\n", None),
    ("P01: Text me on ", None),
    ("07700 900123", "PHONE"),
    (" or email ", None),
    ("m.okafor@example.org", "EMAIL"),
    (", or my work one ", None),
    ("maggie.o@northcare.nhs.uk", "EMAIL"),
    (".\n", None),
    ("P01: The coordinator's line is ", None),
    ("(0113) 496 0000", "PHONE"),
    (" and my son ", None),
    ("Daniel", "PERSON"),
    (" rings ", None),
    ("+44 7700 900123", "PHONE"),
    (" on Sundays.\n", None),
    ("Interviewer: When is your next review?\n", None),
    ("P01: On ", None),
    ("June 5th, 2024", "DATE"),
    (" at ", None),
    ("Oak Lane Surgery", "ORG"),
    (". ", None),
    ("Mrs ", None),
    ("Okafor", "PERSON"),
    (" senior was born on ", None),
    ("1948-02-17", "DATE"),
    (".\n", None),
    ("P01: ", None),
    ("Margaret", "PERSON"),
    ("'s the name on the appointment letter; ", None),
    ("MARGARET OKAFOR", "PERSON"),
    (" in capitals.\n", None),
]


def build(pieces):
    text, gold = "", []
    for piece, typ in pieces:
        if typ:
            gold.append((len(text), len(text) + len(piece), typ))
        text += piece
    return text, gold


@pytest.fixture(scope="module")
def seeded():
    text, gold = build(SEEDED)
    t = parse_text(text, id="p01-w1", participant="P01", wave="w1")
    with pytest.warns(UserWarning, match="statistical NER is off"):
        result = deidentify(t, vault=VAULT, model="auto" if not spacy.util.is_package("en_core_web_sm") else None)
    return t, gold, result


def test_rule_based_path_reports_ner_off(seeded):
    _, _, r = seeded
    assert r.ner == "off"
    assert r.model is None
    assert any("python -m spacy download en_core_web_sm" in w for w in r.warnings)


def test_rule_based_recall_on_seeded_transcript(seeded):
    t, gold, r = seeded
    table = deid_recall(r, gold).set_index("type")
    print("\nrule-based de-identification recall:\n" + table.to_string())
    # Regex types and everything in the vault: nothing may slip through.
    for typ in ("EMAIL", "PHONE", "DATE"):
        assert table.loc[typ, "recall"] == 1.0, typ
        assert table.loc[typ, "typed_recall"] == 1.0, typ
    vault_spans = [g for g in gold if re.search(r"(?i)margaret|okafor|m\.okafor|7700", t.text[g[0] : g[1]])]
    assert len(vault_spans) == 8
    assert deid_recall(r, vault_spans).set_index("type").loc["all", "recall"] == 1.0
    # Names, places and organisations from the shipped lists and the capitalised-word rule;
    # the nickname "Maggie" is linked to the vault's "Margaret".
    assert table.loc["all", "recall"] >= 0.95
    assert table.loc["all", "typed_recall"] >= 0.9


def test_no_identifier_survives_in_text(seeded):
    t, gold, r = seeded
    survivors = [t.text[s:e] for s, e, _ in gold if t.text[s:e] in r.text]
    assert survivors == []  # "Maggie" is a nickname of the vault's Margaret
    # Words around identifiers are untouched.
    assert "suggested it." in r.text and "Dr [PERSON_" in r.text and "Mrs [PERSON_" in r.text


def test_placeholders_are_typed_and_consistent(seeded):
    t, _, r = seeded
    by_original = {}
    for rep in r.replacements:
        assert re.fullmatch(rf"\[{rep.type}_\d+\]", rep.placeholder)
        assert t.text[rep.start : rep.end] == rep.original
        assert r.text[rep.new_start : rep.new_end] == rep.placeholder
        by_original.setdefault(rep.original.casefold(), set()).add(rep.placeholder)
    assert all(len(v) == 1 for v in by_original.values())
    # Every form of the vault name is one person.
    vault_person = {
        rep.placeholder
        for rep in r.replacements
        if rep.original.casefold() in {"margaret", "margaret okafor", "okafor"}
    }
    assert len(vault_person) == 1
    # Different people are different placeholders; the two spellings of one phone share one.
    assert by_original["sarah jenkins"] != by_original["daniel"]
    phones = {rep.placeholder for rep in r.replacements if rep.original in ("07700 900123", "+44 7700 900123")}
    assert len(phones) == 1
    # Placeholders are numbered by first appearance.
    persons = [rep.placeholder for rep in r.replacements if rep.type == "PERSON"]
    assert persons[0] == "[PERSON_1]"


def test_turn_offsets_map_into_new_text(seeded):
    t, _, r = seeded
    assert len(r.turns) == len(t.turns)
    new = r.transcript
    assert new.text == r.text and new.participant == "P01" and new.metadata["deidentified"]
    for old, turn in zip(t.turns, r.turns, strict=True):
        assert turn.speaker == old.speaker
        new_text = r.text[turn.start : turn.end]
        # The turn's text equals the old turn's text with its replacements applied.
        expected = t.text[old.start : old.end]
        for rep in sorted(
            (x for x in r.replacements if old.start <= x.start and x.end <= old.end), key=lambda x: -x.start
        ):
            expected = expected[: rep.start - old.start] + rep.placeholder + expected[rep.end - old.start :]
        assert new_text == expected
    # Inside a replaced span offsets snap to the placeholder's edges.
    rep = r.replacements[0]
    assert r.map_offset(rep.start + 1, "start") == rep.new_start
    assert r.map_offset(rep.start + 1, "end") == rep.new_end


def test_speaker_label_that_is_a_name_is_replaced():
    t = parse_text("Interviewer: Hello.\nMargaret: Hello, dear.", id="x")
    with pytest.warns(UserWarning):
        r = deidentify(t, vault={"names": ["Margaret Okafor"]}, model=None)
    assert r.text == "Interviewer: Hello.\n[PERSON_1]: Hello, dear."
    assert r.turns[1].speaker == "[PERSON_1]"
    assert r.text[r.turns[1].start : r.turns[1].end] == "Hello, dear."


def test_ambiguous_given_names_need_a_surname_or_title():
    with pytest.warns(UserWarning):
        r = deidentify("P01: Will you come in May? I hope so. Grace Mbeki will.", model=None)
    assert r.text == "P01: Will you come in May? I hope so. [PERSON_1] will."


def test_extra_study_terms():
    with pytest.warns(UserWarning):
        r = deidentify("P01: The Riverside Walkers kept me going.", model=None, terms={"ORG": ["Riverside Walkers"]})
    assert r.text == "P01: The [ORG_1] kept me going."


@pytest.mark.slow  # trains a small spaCy NER pipeline first
def test_statistical_path_with_model_loaded_from_directory(tiny_ner_model):
    text = (
        "P01: Then Ximena Oduya phoned me from Penzance.\n"
        "P01: I talked to Kofi Mensah at Lantern Collective.\n"
        "P01: Email m.okafor@example.org if needed."
    )
    t = parse_text(text, id="p01")
    with pytest.warns(UserWarning):
        rule_only = deidentify(t, model=None)
    r = deidentify(t, model=str(tiny_ner_model))
    assert r.ner == "on" and r.model == str(tiny_ner_model) and r.warnings == []
    rule_sources = {rep.original: rep.source for rep in rule_only.replacements}
    for name in ("Ximena Oduya", "Kofi Mensah"):
        assert name in NER_PEOPLE
        # In no shipped list: the rule path removes them only as capitalised rare words ...
        assert name not in rule_only.text and rule_sources[name] == "words"
        assert name not in r.text  # ... and the statistical model types them
    assert "Penzance" not in r.text and "Lantern Collective" not in r.text
    sources = {rep.original: (rep.source, rep.type) for rep in r.replacements}
    assert sources["Ximena Oduya"] == ("ner", "PERSON")
    assert sources["Penzance"] == ("ner", "PLACE")
    assert sources["Lantern Collective"] == ("ner", "ORG")
    assert sources["m.okafor@example.org"][1] == "EMAIL"
    # Study-code speaker labels are pseudonyms and stay.
    assert r.text.count("P01: ") == 3


def test_missing_model_is_an_error_with_install_hint(tmp_path):
    with pytest.raises(NERModelNotFound, match="spacy download"):
        deidentify("P01: hello", model=str(tmp_path / "no-such-pipeline"))


def test_model_without_ner_is_rejected(tmp_path):
    spacy.blank("en").to_disk(tmp_path / "blank")
    with pytest.raises(NERModelNotFound, match="no 'ner'"):
        deidentify("P01: hello", model=str(tmp_path / "blank"))
