"""De-identification without a statistical model on a seeded corpus of six interviews.

The corpus (tests/qualitative/deid_corpus.py) holds 150+ identifiers of 20 kinds, decoy words that
look like names and clinical terms that must survive. The per-kind report is printed (run with -s).
"""

from __future__ import annotations

import re
import warnings

import pytest

from qualitative.deid import deidentify
from qualitative.deid_eval import deid_report
from qualitative.transcripts import parse_text

from . import deid_corpus

CORPUS = deid_corpus.load()


@pytest.fixture(scope="module")
def runs():
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "statistical NER is off"
        for s in CORPUS:
            t = parse_text(s.text, id=s.code, participant=s.code)
            out.append((s, deidentify(t, vault=deid_corpus.VAULTS[s.code], terms=deid_corpus.TERMS, model=None)))
    return out


@pytest.fixture(scope="module")
def report(runs):
    table = deid_report((r, s.gold, [*s.decoys, *s.keep]) for s, r in runs)
    print("\nde-identification without a model, seeded corpus:\n" + table.to_string(index=False))
    return table.set_index("kind")


def test_corpus_is_as_specified():
    kinds = {k for s in CORPUS for *_, k in s.gold}
    assert len(CORPUS) >= 5
    assert sum(len(s.gold) for s in CORPUS) >= 150
    assert len(kinds) >= 15
    decoys = {s.text[a:b] for s in CORPUS for a, b, _ in s.decoys}
    assert decoys == {"Hope", "May", "Will", "Bath", "Grace", "Mark"}


def test_recall_overall_and_direct_identifiers(report):
    assert report.loc["all", "recall"] >= 0.95
    for kind in deid_corpus.DIRECT:
        assert report.loc[kind, "recall"] == 1.0, kind


def test_decoys_and_clinical_terms_survive(report, runs):
    assert report.loc["decoy", "redacted"] <= 2
    assert report.loc["keep", "redacted"] == 0
    for term in ("COPD", "GP", "HbA1c", "NHS", "A&E", "BMI", "BP"):
        assert any(term in r.text for _, r in runs), term


def test_every_occurrence_of_a_detected_surface_is_replaced(runs):
    for s, r in runs:
        for rep in r.replacements:
            if rep.type in ("PERSON", "PLACE", "ORG"):
                pattern = r"(?<![\w@.])" + re.escape(rep.original) + r"(?![\w@])"
                assert not re.search(pattern, r.text), (s.code, rep.original)


def test_one_person_one_placeholder_with_partial_names_and_nicknames(runs):
    by_code = {s.code: r for s, r in runs}

    def placeholders(code, *surfaces):
        return {rep.placeholder for rep in by_code[code].replacements if rep.original in surfaces}

    # Roster name, first name, nickname, nickname + surname: one supporter.
    assert len(placeholders("P05", "Sandra", "Sandy", "Sandy Kowalski")) == 1
    assert len(placeholders("P02", "Desmond", "Des", "Desmond Afolabi")) == 1
    # A name no list knows, its first name alone and its short form.
    assert len(placeholders("P06", "Philippa Grundy", "Philippa")) == 1
    # Vault name in full, first name and the title + surname form.
    assert len(placeholders("P06", "Gwendolyn Pryce", "Gwen", "Pryce")) == 1
    # Staff: full name and title + surname.
    assert len(placeholders("P05", "Helen Marsh", "Marsh")) == 1
    # Different people stay different.
    assert placeholders("P02", "Morag") != placeholders("P02", "Kieran")
    # Titles stay readable.
    assert "Dr [PERSON_" in by_code["P02"].text and "Mrs [PERSON_" in by_code["P05"].text


def test_pattern_identifiers_are_typed(runs):
    types = {}
    for _, r in runs:
        for rep in r.replacements:
            types.setdefault(rep.original, rep.type)
    assert types["943 476 5919"] == "ID"  # NHS number (modulus 11), not a phone
    assert types["RX1234567"] == "ID" and types["40019921"] == "ID"
    assert types["QQ 12 34 56 C"] == "ID"
    assert types["HX6 2AB"] == "POSTCODE" and types["27 Burnley Road"] == "ADDRESS"
    assert types["www.caldervalleywalks.org.uk"] == "URL" and types["@gloria_h_1987"] == "HANDLE"
    assert types["93"] == "AGE" and types["+44 7700 900732"] == "PHONE"


def test_ages_under_90_and_clinical_numbers_stay():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = deidentify("P01: I'm 67, my HbA1c was 58 and BP 128 over 80. My dad's 94.", model=None)
    assert "67" in r.text and "58" in r.text and "128" in r.text and "94" not in r.text


def test_without_study_terms_the_rules_still_reach_95_percent():
    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in CORPUS:
            r = deidentify(s.text, vault=deid_corpus.VAULTS[s.code], model=None)
            cases.append((r, s.gold, [*s.decoys, *s.keep]))
    table = deid_report(cases).set_index("kind")
    print("\nwithout study terms:\n" + table.to_string())
    assert table.loc["all", "recall"] >= 0.95
    assert table.loc["decoy", "redacted"] <= 2 and table.loc["keep", "redacted"] == 0
