"""Finding identifier candidates in a transcript for :func:`qualitative.deidentify`: the vault,
regular expressions, the shipped word lists (a spaCy ``EntityRuler``) and statistical NER, then the
choice among overlapping candidates and the propagation of a found name to its other mentions."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import spacy
from spacy.language import Language

from .deid_rules import detect_patterns
from .deid_words import is_common_word, name_variants
from .transcripts import paragraph_spans

if TYPE_CHECKING:
    from .deid import VaultIdentifiers
    from .transcripts import Transcript

_NER_LABELS = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "GPE": "PLACE",
    "LOC": "PLACE",
    "FAC": "PLACE",
    "ORG": "ORG",
    "DATE": "DATE",
}

# Given names that are also everyday English words: they count as names only
# before a capitalised surname or after a title, never alone.
_AMBIGUOUS_NAMES = frozenset(
    "Will May June April August Hope Grace Joy Rose Mark Bill Faith Ruby Amber Iris Holly Ivy "
    "Dawn Summer Sky Rich Pat Sue Art Frank Guy Jean Lee Glen Lynn Ray Rob Sunny Patience Precious".split()
)
_TITLES = (
    "Dr",
    "Doctor",
    "Mr",
    "Mrs",
    "Ms",
    "Miss",
    "Mx",
    "Prof",
    "Professor",
    "Nurse",
    "Sister",
    "Father",
    "Rev",
    "Reverend",
    "Auntie",
    "Aunty",
    "Uncle",
    "Pastor",
    "Imam",
    "Rabbi",
)

_MONTHS = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?"
)
_ORD = r"(?:st|nd|rd|th)?"
_DATE_RES = [
    re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b"),
    re.compile(r"\b\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})\b"),
    re.compile(rf"\b\d{{1,2}}{_ORD}(?:\s+of)?\s+{_MONTHS}(?:,?\s+\d{{4}})?(?![\w])"),
    re.compile(rf"\b{_MONTHS}\s+\d{{1,2}}{_ORD}(?:,?\s+\d{{4}})?\b"),
    re.compile(rf"\b{_MONTHS}\s+\d{{4}}\b"),
]
_EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE_RE = re.compile(r"(?<![\w/+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d(?:[ .-]?\d){6,13}(?![\w/])")


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


# --------------------------------------------------------------------------- rule-based pipeline


def _read_list(name: str) -> list[str]:
    text = resources.files("qualitative").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@lru_cache(maxsize=1)
def rule_pipeline() -> Language:
    """Blank English pipeline with the shipped ``EntityRuler`` lists.

    Labels: ``PERSON``, ``PERSON_TITLED`` (title + name; the title is kept in
    the text), ``PLACE`` and ``ORG``.
    """
    nlp = spacy.blank("en")
    names = _read_list("first_names.txt")
    plain = [n for n in names if n not in _AMBIGUOUS_NAMES]
    ambiguous = sorted(_AMBIGUOUS_NAMES | set(names) - set(plain))
    org_words = _read_list("organisation_words.txt")
    surname = {"IS_TITLE": True, "IS_STOP": False, "IS_ALPHA": True}
    patterns = [
        {"label": "PERSON", "pattern": [{"ORTH": {"IN": plain}}]},
        {"label": "PERSON", "pattern": [{"ORTH": {"IN": plain}}, surname]},
        {"label": "PERSON", "pattern": [{"ORTH": {"IN": ambiguous}}, surname]},
        {
            "label": "PERSON_TITLED",
            "pattern": [{"ORTH": {"IN": list(_TITLES)}}, {"ORTH": ".", "OP": "?"}, surname, {**surname, "OP": "?"}],
        },
        {
            "label": "ORG",
            "pattern": [
                {"IS_TITLE": True, "IS_STOP": False},
                {"IS_TITLE": True, "OP": "*"},
                {"ORTH": {"IN": ["'s", "’s"]}, "OP": "?"},
                {"IS_TITLE": True, "OP": "*"},
                {"LOWER": {"IN": org_words}, "IS_TITLE": True},
            ],
        },
    ]
    patterns += [{"label": "PLACE", "pattern": p} for p in _read_list("places.txt")]
    ruler = nlp.add_pipe("entity_ruler", config={"validate": True})
    ruler.add_patterns(patterns)
    return nlp


# --------------------------------------------------------------------------- candidates

# The longer span wins (it removes more); between equal spans the lower tier wins, so a vault or
# study term keeps its placeholder identity.
_TIER = {
    "propagated": 2,
    "vault": 0,
    "term": 0,
    "email": 0,
    "phone": 1,
    "pattern": 0,
    "regex": 1,
    "ner": 1,
    "ruler": 1,
    "words": 2,
}


@dataclass(frozen=True)
class Cand:
    start: int
    end: int
    type: str
    source: str
    key: str  # consistency key: same key -> same placeholder


def norm(surface: str) -> str:
    s = re.sub(r"\s+", " ", surface.casefold()).strip()
    s = re.sub(r"(?:'s|’s)$", "", s)
    return re.sub(r"^the ", "", s)


def _name_pattern(variant: str) -> tuple[str, int]:
    """Regex for one form of a known name; everyday words ("Will", "Marsh") must be capitalised."""
    body = r"\s+".join(map(re.escape, variant.split()))
    pattern = r"(?<![\w@.])" + body + r"(?![\w@])"
    if " " not in variant and is_common_word(variant, 4.0):
        return pattern, 0  # case-sensitive: "Will" the name, not "will" the verb
    return pattern, re.IGNORECASE


def vault_candidates(
    text: str, vault: VaultIdentifiers, source: str = "vault", prefix: str = "vault"
) -> tuple[list[Cand], dict[str, str]]:
    cands: list[Cand] = []
    name_keys: dict[str, str] = {}
    for i, full in enumerate(vault.names):
        if not full or not full.strip():
            continue
        key = f"{prefix}-person-{i}"
        variants = name_variants(full.strip())
        for v in variants:
            name_keys.setdefault(norm(v), key)
        for v in sorted(variants, key=len, reverse=True):
            pattern, flags = _name_pattern(v)
            for m in re.finditer(pattern, text, flags=flags):
                if flags == 0 or m.group()[:1].isupper() or source == "vault":
                    cands.append(Cand(m.start(), m.end(), "PERSON", source, key))
    for e in vault.emails:
        if not e or not e.strip():
            continue
        for m in re.finditer(r"(?<![\w.+-])" + re.escape(e.strip()) + r"(?![\w-])", text, re.IGNORECASE):
            cands.append(Cand(m.start(), m.end(), "EMAIL", source, "email:" + e.strip().lower()))
    wanted = [_digits(p)[-9:] for p in vault.phones if p and len(_digits(p)) >= 7]
    if wanted:
        for m in _PHONE_RE.finditer(text):
            d = _digits(m.group())
            if any(d.endswith(w) or w.endswith(d[-9:]) for w in wanted):
                cands.append(Cand(m.start(), m.end(), "PHONE", source, "phone:" + d[-9:]))
    for kind, items in (("PLACE", vault.places), ("ORG", vault.organisations)):
        for p in items:
            if not p or not p.strip():
                continue
            pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, p.split())) + r"(?!\w)"
            # A one-word site or place that is an everyday word ("North", "Bath") must be capitalised.
            flags = 0 if " " not in p.strip() and is_common_word(p.strip(), 4.0) else re.IGNORECASE
            for m in re.finditer(pattern, text, flags):
                cands.append(Cand(m.start(), m.end(), kind, source, f"{kind}:{norm(p)}"))
    return cands, name_keys


def regex_candidates(text: str) -> list[Cand]:
    cands = []
    for m in _EMAIL_RE.finditer(text):
        cands.append(Cand(m.start(), m.end(), "EMAIL", "email", "email:" + m.group().lower()))
    for m in _PHONE_RE.finditer(text):
        d = _digits(m.group())
        if 9 <= len(d) <= 15:
            cands.append(Cand(m.start(), m.end(), "PHONE", "phone", "phone:" + d[-9:]))
    for rx in _DATE_RES:
        for m in rx.finditer(text):
            cands.append(Cand(m.start(), m.end(), "DATE", "regex", "date:" + norm(m.group())))
    cands += [Cand(s, e, typ, "pattern", key) for s, e, typ, key in detect_patterns(text)]
    return cands


def _chunks(text: str) -> list[tuple[int, int]]:
    # Paragraph-sized docs keep memory flat on long transcripts; entities never
    # cross a line break in a transcript anyway.
    return paragraph_spans(text)


def ruler_candidates(text: str) -> list[Cand]:
    nlp = rule_pipeline()
    spans = _chunks(text)
    out = []
    for (s, _), doc in zip(spans, nlp.pipe(text[a:b] for a, b in spans), strict=True):
        for ent in doc.ents:
            start, end, label = s + ent.start_char, s + ent.end_char, ent.label_
            if label == "PERSON_TITLED":
                # Keep the title ("Dr", "Nurse") readable; replace only the name.
                first = next(t for t in ent if t.is_title and t.text not in _TITLES)
                start, label = s + first.idx, "PERSON"
            out.append(Cand(start, end, label, "ruler", f"{label}:{norm(text[start:end])}"))
    return out


_DATE_HINT = re.compile(rf"\d|{_MONTHS}")


def ner_candidates(text: str, nlp: Language) -> list[Cand]:
    spans = _chunks(text)
    out = []
    for (s, _), doc in zip(spans, nlp.pipe(text[a:b] for a, b in spans), strict=True):
        for ent in doc.ents:
            kind = _NER_LABELS.get(ent.label_)
            if kind is None:
                continue
            # Relative dates ("last week", "two years") do not identify anyone.
            if kind == "DATE" and not _DATE_HINT.search(ent.text):
                continue
            start, end = s + ent.start_char, s + ent.end_char
            out.append(Cand(start, end, kind, "ner", f"{kind}:{norm(ent.text)}"))
    return out


def protected_spans(text: str, transcript: Transcript | None, keep: Iterable[str]) -> list[tuple[int, int]]:
    """Spans that only vault identifiers may replace.

    Study codes used as speaker labels (``P01``, ``FG2-P3``: they contain a
    digit) and interviewer labels are pseudonyms, not identifiers; a statistical
    model sometimes tags them as persons.
    """
    words = set(keep)
    if transcript is not None:
        for t in transcript.turns:
            if t.role == "interviewer" or re.search(r"\d", t.speaker):
                words.add(t.speaker)
        words.update(p for p in transcript.participants if re.search(r"\d", p))
    spans = []
    for w in words:
        if w.strip():
            spans += [m.span() for m in re.finditer(r"(?<!\w)" + re.escape(w.strip()) + r"(?!\w)", text)]
    return spans


def select(cands: Iterable[Cand]) -> list[Cand]:
    ordered = sorted(cands, key=lambda c: (-(c.end - c.start), _TIER[c.source], c.start))
    taken: list[tuple[int, int]] = []
    chosen = []
    for c in ordered:
        if c.end <= c.start:
            continue
        i = bisect.bisect_left(taken, (c.start, c.end))
        if i > 0 and taken[i - 1][1] > c.start:
            continue
        if i < len(taken) and taken[i][0] < c.end:
            continue
        taken.insert(i, (c.start, c.end))
        chosen.append(c)
    return sorted(chosen, key=lambda c: c.start)


def link_and_propagate(text: str, cands: list[Cand], name_keys: dict[str, str]) -> list[Cand]:
    """One surface, one placeholder: every occurrence of a detected surface is replaced.

    Parts and nicknames of a detected multi-word name join that person ("Philippa Grundy",
    "Philippa", "Pip"), and each detected surface is searched again across the whole text, so a
    name found once (after a title, beside a surname) is removed from every other turn too.
    """
    for c in sorted(cands, key=lambda c: -(c.end - c.start)):
        if c.type != "PERSON":
            continue
        surface = text[c.start : c.end]
        key = name_keys.get(norm(surface), c.key)
        if " " in surface.strip():
            for v in name_variants(surface):
                name_keys.setdefault(norm(v), key)
    surfaces: dict[str, tuple[str, str]] = {}
    for c in cands:
        surface = re.sub(r"\s+", " ", text[c.start : c.end]).strip()
        if len(surface) < 2:
            continue
        key = name_keys.get(norm(surface), c.key) if c.type == "PERSON" else c.key
        surfaces.setdefault(surface, (c.type, key))
        if c.type == "PERSON" and c.source not in ("vault", "term"):
            for v in name_variants(surface):
                if v != surface and not is_common_word(v):
                    surfaces.setdefault(v, (c.type, name_keys.get(norm(v), key)))
    out = list(cands)
    for surface, (typ, key) in surfaces.items():
        body = r"\s+".join(map(re.escape, surface.split()))
        for m in re.finditer(r"(?<![\w@.])" + body + r"(?![\w@])", text):
            out.append(Cand(m.start(), m.end(), typ, "propagated", key))
    return out
