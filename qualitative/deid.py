"""De-identification of transcripts before anyone codes them.

Two layers find identifiers:

* **rule-based** (always on): the participant's own vault identifiers (names,
  emails, phones), regular expressions for emails, phone numbers and dates, and
  a spaCy ``EntityRuler`` holding a small shipped list of given names, places
  and organisation head words (``qualitative/data``);
* **statistical NER** (when a trained pipeline is available): ``PERSON``,
  ``GPE``/``LOC``/``FAC``, ``ORG`` and ``DATE`` entities.

Each identifier is replaced by a typed placeholder (``[PERSON_1]``,
``[PLACE_1]``, ``[ORG_1]``, ``[DATE_1]``, ``[PHONE_1]``, ``[EMAIL_1]``) that is
consistent within the transcript: the same surface (and every form of the same
vault name) always gets the same placeholder. The result keeps each original
span so that it can be stored in the identifier vault, and maps offsets of the
original text into the new one.
"""

from __future__ import annotations

import bisect
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd
import spacy
from spacy.language import Language

from .deid_rules import detect_patterns
from .deid_words import capitalised_candidates, clinical_terms, is_common_word, name_variants
from .nlp import load_ner_model
from .transcripts import Transcript, Turn, paragraph_spans

__all__ = [
    "ENTITY_TYPES",
    "VaultIdentifiers",
    "Replacement",
    "DeidResult",
    "deidentify",
    "deid_recall",
    "rule_pipeline",
]

ENTITY_TYPES = ("PERSON", "PLACE", "ORG", "DATE", "PHONE", "EMAIL", "ID", "ADDRESS", "POSTCODE", "URL", "HANDLE", "AGE")
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


@dataclass
class VaultIdentifiers:
    """A participant's identifiers from the vault (never stored with study data).

    Examples
    --------
    >>> v = VaultIdentifiers(names=["Margaret Okafor"], emails=["m.okafor@example.org"],
    ...                      phones=["+44 7700 900123"])
    """

    names: Sequence[str] = ()
    emails: Sequence[str] = ()
    phones: Sequence[str] = ()
    places: Sequence[str] = ()
    organisations: Sequence[str] = ()

    @classmethod
    def coerce(cls, vault) -> VaultIdentifiers:
        if vault is None:
            return cls()
        if isinstance(vault, cls):
            return vault
        if isinstance(vault, Mapping):

            def as_list(v):
                if v is None:
                    return []
                return [v] if isinstance(v, str) else list(v)

            return cls(
                names=as_list(vault.get("names", vault.get("name"))),
                emails=as_list(vault.get("emails", vault.get("email"))),
                phones=as_list(vault.get("phones", vault.get("phone"))),
                places=as_list(vault.get("places")),
                organisations=as_list(vault.get("organisations", vault.get("orgs"))),
            )
        raise TypeError("vault must be a VaultIdentifiers, a mapping or None")


@dataclass(frozen=True)
class Replacement:
    """One replaced identifier: where it was, what replaced it and why."""

    start: int
    end: int
    original: str
    placeholder: str
    type: str
    source: str  # "vault", "regex", "ruler" or "ner"
    new_start: int
    new_end: int


@dataclass
class DeidResult:
    """Outcome of :func:`deidentify`.

    Attributes
    ----------
    text : str
        De-identified text; codings and their offsets refer to it.
    replacements : list of Replacement
        Original spans and their placeholders (store them in the vault).
    turns : list of Turn
        The transcript's turns with offsets into ``text``.
    transcript : Transcript or None
        A de-identified copy of the input transcript (when one was given).
    ner : {"on", "off"}
        Whether statistical NER ran.
    model : str or None
        The NER pipeline used.
    warnings : list of str
    """

    text: str
    replacements: list[Replacement]
    turns: list[Turn]
    transcript: Transcript | None
    ner: str
    model: str | None
    warnings: list[str] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._starts = [r.start for r in self.replacements]

    def map_offset(self, pos: int, side: str = "start") -> int:
        """Map an offset of the original text into ``text``.

        A position inside a replaced span maps to the placeholder's start
        (``side="start"``) or end (``side="end"``).
        """
        i = bisect.bisect_right(self._starts, pos) - 1
        if i < 0:
            return pos
        r = self.replacements[i]
        if pos >= r.end:
            return r.new_end + (pos - r.end)
        if pos == r.start:
            return r.new_start
        return r.new_start if side == "start" else r.new_end

    @property
    def mapping(self) -> dict[str, str]:
        """Placeholder -> the first original surface it replaced."""
        out: dict[str, str] = {}
        for r in self.replacements:
            out.setdefault(r.placeholder, r.original)
        return out

    def replacements_frame(self) -> pd.DataFrame:
        """Tidy frame: start, end, original, placeholder, type, source, new_start, new_end."""
        cols = ["start", "end", "original", "placeholder", "type", "source", "new_start", "new_end"]
        return pd.DataFrame([r.__dict__ for r in self.replacements], columns=cols)


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
class _Cand:
    start: int
    end: int
    type: str
    source: str
    key: str  # consistency key: same key -> same placeholder


def _norm(surface: str) -> str:
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


def _vault_candidates(
    text: str, vault: VaultIdentifiers, source: str = "vault", prefix: str = "vault"
) -> tuple[list[_Cand], dict[str, str]]:
    cands: list[_Cand] = []
    name_keys: dict[str, str] = {}
    for i, full in enumerate(vault.names):
        if not full or not full.strip():
            continue
        key = f"{prefix}-person-{i}"
        variants = name_variants(full.strip())
        for v in variants:
            name_keys.setdefault(_norm(v), key)
        for v in sorted(variants, key=len, reverse=True):
            pattern, flags = _name_pattern(v)
            for m in re.finditer(pattern, text, flags=flags):
                if flags == 0 or m.group()[:1].isupper() or source == "vault":
                    cands.append(_Cand(m.start(), m.end(), "PERSON", source, key))
    for e in vault.emails:
        if not e or not e.strip():
            continue
        for m in re.finditer(r"(?<![\w.+-])" + re.escape(e.strip()) + r"(?![\w-])", text, re.IGNORECASE):
            cands.append(_Cand(m.start(), m.end(), "EMAIL", source, "email:" + e.strip().lower()))
    wanted = [_digits(p)[-9:] for p in vault.phones if p and len(_digits(p)) >= 7]
    if wanted:
        for m in _PHONE_RE.finditer(text):
            d = _digits(m.group())
            if any(d.endswith(w) or w.endswith(d[-9:]) for w in wanted):
                cands.append(_Cand(m.start(), m.end(), "PHONE", source, "phone:" + d[-9:]))
    for kind, items in (("PLACE", vault.places), ("ORG", vault.organisations)):
        for p in items:
            if not p or not p.strip():
                continue
            pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, p.split())) + r"(?!\w)"
            # A one-word site or place that is an everyday word ("North", "Bath") must be capitalised.
            flags = 0 if " " not in p.strip() and is_common_word(p.strip(), 4.0) else re.IGNORECASE
            for m in re.finditer(pattern, text, flags):
                cands.append(_Cand(m.start(), m.end(), kind, source, f"{kind}:{_norm(p)}"))
    return cands, name_keys


def _regex_candidates(text: str) -> list[_Cand]:
    cands = []
    for m in _EMAIL_RE.finditer(text):
        cands.append(_Cand(m.start(), m.end(), "EMAIL", "email", "email:" + m.group().lower()))
    for m in _PHONE_RE.finditer(text):
        d = _digits(m.group())
        if 9 <= len(d) <= 15:
            cands.append(_Cand(m.start(), m.end(), "PHONE", "phone", "phone:" + d[-9:]))
    for rx in _DATE_RES:
        for m in rx.finditer(text):
            cands.append(_Cand(m.start(), m.end(), "DATE", "regex", "date:" + _norm(m.group())))
    cands += [_Cand(s, e, typ, "pattern", key) for s, e, typ, key in detect_patterns(text)]
    return cands


def _chunks(text: str) -> list[tuple[int, int]]:
    # Paragraph-sized docs keep memory flat on long transcripts; entities never
    # cross a line break in a transcript anyway.
    return paragraph_spans(text)


def _ruler_candidates(text: str) -> list[_Cand]:
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
            out.append(_Cand(start, end, label, "ruler", f"{label}:{_norm(text[start:end])}"))
    return out


_DATE_HINT = re.compile(rf"\d|{_MONTHS}")


def _ner_candidates(text: str, nlp: Language) -> list[_Cand]:
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
            out.append(_Cand(start, end, kind, "ner", f"{kind}:{_norm(ent.text)}"))
    return out


def _protected_spans(text: str, transcript: Transcript | None, keep: Iterable[str]) -> list[tuple[int, int]]:
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


def _select(cands: Iterable[_Cand]) -> list[_Cand]:
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


def _link_and_propagate(text: str, cands: list[_Cand], name_keys: dict[str, str]) -> list[_Cand]:
    """One surface, one placeholder: every occurrence of a detected surface is replaced.

    Parts and nicknames of a detected multi-word name join that person ("Philippa Grundy",
    "Philippa", "Pip"), and each detected surface is searched again across the whole text, so a
    name found once (after a title, beside a surname) is removed from every other turn too.
    """
    for c in sorted(cands, key=lambda c: -(c.end - c.start)):
        if c.type != "PERSON":
            continue
        surface = text[c.start : c.end]
        key = name_keys.get(_norm(surface), c.key)
        if " " in surface.strip():
            for v in name_variants(surface):
                name_keys.setdefault(_norm(v), key)
    surfaces: dict[str, tuple[str, str]] = {}
    for c in cands:
        surface = re.sub(r"\s+", " ", text[c.start : c.end]).strip()
        if len(surface) < 2:
            continue
        key = name_keys.get(_norm(surface), c.key) if c.type == "PERSON" else c.key
        surfaces.setdefault(surface, (c.type, key))
        if c.type == "PERSON" and c.source not in ("vault", "term"):
            for v in name_variants(surface):
                if v != surface and not is_common_word(v):
                    surfaces.setdefault(v, (c.type, name_keys.get(_norm(v), key)))
    out = list(cands)
    for surface, (typ, key) in surfaces.items():
        body = r"\s+".join(map(re.escape, surface.split()))
        for m in re.finditer(r"(?<![\w@.])" + body + r"(?![\w@])", text):
            out.append(_Cand(m.start(), m.end(), typ, "propagated", key))
    return out


# --------------------------------------------------------------------------- main entry


def deidentify(
    source: Transcript | str,
    vault: VaultIdentifiers | Mapping | None = None,
    *,
    model: str | Path | None = "auto",
    terms: Mapping[str, Iterable[str]] | None = None,
    rules: bool = True,
    keep: Iterable[str] = (),
) -> DeidResult:
    """Replace identifiers with consistent typed placeholders.

    Parameters
    ----------
    source : Transcript or str
    vault : VaultIdentifiers or mapping, optional
        The participant's own names, emails and phones (and optionally places
        and organisations); every form of a vault name gets one placeholder.
    model : str, Path, "auto" or None
        Statistical NER pipeline: a package name or a directory. ``"auto"``
        uses an installed ``en_core_web_*`` pipeline if there is one; with none
        (or ``None``) only the rule-based layer runs and ``result.ner`` is
        ``"off"`` with a warning.
    terms : mapping of type -> iterable of str, optional
        Extra study-specific terms to remove (``{"ORG": ["Riverside Peer Club"]}``).
    rules : bool
        Run the shipped ``EntityRuler`` lists (names, places, organisations).
    keep : iterable of str
        Words never replaced except as vault identifiers. Speaker labels that
        are study codes (they contain a digit) and interviewer labels are kept
        anyway.

    Returns
    -------
    DeidResult

    Examples
    --------
    >>> r = deidentify("P01: Call me on 07700 900123, Margaret is fine.",
    ...                vault={"names": ["Margaret Okafor"]}, model=None)  # doctest: +SKIP
    >>> r.text                                                              # doctest: +SKIP
    'P01: Call me on [PHONE_1], [PERSON_1] is fine.'
    """
    transcript = source if isinstance(source, Transcript) else None
    text = source.text if transcript is not None else str(source)
    vault = VaultIdentifiers.coerce(vault)
    study_terms = VaultIdentifiers(
        names=list((terms or {}).get("PERSON", [])),
        emails=list((terms or {}).get("EMAIL", [])),
        phones=list((terms or {}).get("PHONE", [])),
        places=list((terms or {}).get("PLACE", [])),
        organisations=list((terms or {}).get("ORG", [])),
    )

    ner_nlp, warning = load_ner_model(model)
    notes = []
    if warning:
        notes.append(warning)
        warnings.warn(warning, UserWarning, stacklevel=2)

    cands, name_keys = _vault_candidates(text, vault)
    term_cands, term_keys = _vault_candidates(text, study_terms, source="term", prefix="term")
    cands += term_cands
    for k, v in term_keys.items():
        name_keys.setdefault(k, v)
    cands += _regex_candidates(text)
    keep_words = frozenset(w.casefold() for w in keep if w and w.strip())
    guessed: list[_Cand] = []
    if rules:
        guessed += _ruler_candidates(text)
        guessed += [_Cand(s, e, t, "words", k) for s, e, t, k in capitalised_candidates(text, keep=keep_words)]
    if ner_nlp is not None:
        guessed += _ner_candidates(text, ner_nlp)
    # Clinical terms (COPD, GP, HbA1c) and the caller's keep words are analytic content: a guess
    # that is only such a term is dropped. Vault, study terms and patterns are never dropped.
    kept = clinical_terms() | keep_words
    cands += [c for c in guessed if _norm(text[c.start : c.end]) not in kept]

    protected = _protected_spans(text, transcript, keep)
    if protected:
        cands = [
            c
            for c in cands
            if c.source in ("vault", "term") or not any(a < c.end and c.start < b for a, b in protected)
        ]
    cands = _link_and_propagate(text, cands, name_keys)
    chosen = _select(cands)
    counters: dict[str, int] = {}
    placeholders: dict[tuple[str, str], str] = {}
    pieces: list[str] = []
    reps: list[Replacement] = []
    pos = 0
    new_len = 0
    for c in chosen:
        key = c.key
        if c.type == "PERSON":
            # A shorter, differently cased or nicknamed mention of a known name joins that person.
            key = name_keys.get(_norm(text[c.start : c.end]), key)
        ph = placeholders.get((c.type, key))
        if ph is None:
            counters[c.type] = counters.get(c.type, 0) + 1
            ph = f"[{c.type}_{counters[c.type]}]"
            placeholders[(c.type, key)] = ph
        pieces.append(text[pos : c.start])
        new_len += c.start - pos
        reps.append(
            Replacement(c.start, c.end, text[c.start : c.end], ph, c.type, c.source, new_len, new_len + len(ph))
        )
        pieces.append(ph)
        new_len += len(ph)
        pos = c.end
    pieces.append(text[pos:])
    new_text = "".join(pieces)

    result = DeidResult(
        text=new_text,
        replacements=reps,
        turns=[],
        transcript=None,
        ner="on" if ner_nlp is not None else "off",
        model=(
            str(model)
            if ner_nlp is not None and model != "auto"
            else (ner_nlp.meta.get("name") if ner_nlp is not None else None)
        ),
        warnings=notes,
    )
    if transcript is not None:
        by_original = {r.original: r.placeholder for r in reps}
        turns = [
            Turn(
                speaker=by_original.get(t.speaker, t.speaker),
                start=result.map_offset(t.start, "start"),
                end=result.map_offset(t.end, "end"),
                start_time=t.start_time,
                end_time=t.end_time,
                role=t.role,
            )
            for t in transcript.turns
        ]
        result.turns = turns
        dt = transcript.with_text(new_text, turns)
        dt.participants = [by_original.get(p, p) for p in transcript.participants]
        dt.metadata = {**transcript.metadata, "deidentified": True, "ner": result.ner}
        result.transcript = dt
    return result


def deid_recall(result: DeidResult, gold: Iterable[tuple[int, int, str]]) -> pd.DataFrame:
    """Recall of de-identification against known identifier spans.

    Parameters
    ----------
    result : DeidResult
    gold : iterable of (start, end, type)
        Spans of the *original* text that must disappear.

    Returns
    -------
    DataFrame
        One row per type plus ``"all"``: ``type, n, removed, recall,
        typed_recall`` (``removed``: the span lies wholly inside replaced text;
        ``typed_recall`` also requires the placeholder type to match).

    Examples
    --------
    >>> r = deidentify("mail a@b.org", model=None, rules=False)  # doctest: +SKIP
    >>> deid_recall(r, [(5, 12, "EMAIL")]).loc[0, "recall"]      # doctest: +SKIP
    1.0
    """
    reps = result.replacements
    rows = []
    for start, end, typ in gold:
        covering = [r for r in reps if r.start < end and r.end > start]
        covered = set()
        for r in covering:
            covered.update(range(max(r.start, start), min(r.end, end)))
        removed = len(covered) == end - start
        typed = removed and any(r.type == typ for r in covering)
        rows.append({"type": typ, "removed": removed, "typed": typed})
    df = pd.DataFrame(rows, columns=["type", "removed", "typed"])
    out = (
        df.groupby("type").agg(n=("removed", "size"), removed=("removed", "sum"), typed=("typed", "sum")).reset_index()
    )
    total = pd.DataFrame(
        [{"type": "all", "n": len(df), "removed": int(df["removed"].sum()), "typed": int(df["typed"].sum())}]
    )
    out = pd.concat([out, total], ignore_index=True)
    out["recall"] = out["removed"] / out["n"]
    out["typed_recall"] = out["typed"] / out["n"]
    return out.drop(columns="typed")
