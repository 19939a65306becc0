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
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .deid_candidates import (
    Cand,
    link_and_propagate,
    ner_candidates,
    norm,
    protected_spans,
    regex_candidates,
    rule_pipeline,
    ruler_candidates,
    select,
    vault_candidates,
)
from .deid_words import capitalised_candidates, clinical_terms
from .nlp import load_ner_model
from .transcripts import Transcript, Turn

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
    text = transcript.text if transcript is not None else str(source)
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

    cands, name_keys = vault_candidates(text, vault)
    term_cands, term_keys = vault_candidates(text, study_terms, source="term", prefix="term")
    cands += term_cands
    for k, v in term_keys.items():
        name_keys.setdefault(k, v)
    cands += regex_candidates(text)
    keep_words = frozenset(w.casefold() for w in keep if w and w.strip())
    guessed: list[Cand] = []
    if rules:
        guessed += ruler_candidates(text)
        guessed += [Cand(s, e, t, "words", k) for s, e, t, k in capitalised_candidates(text, keep=keep_words)]
    if ner_nlp is not None:
        guessed += ner_candidates(text, ner_nlp)
    # Clinical terms (COPD, GP, HbA1c) and the caller's keep words are analytic content: a guess
    # that is only such a term is dropped. Vault, study terms and patterns are never dropped.
    kept = clinical_terms() | keep_words
    cands += [c for c in guessed if norm(text[c.start : c.end]) not in kept]

    protected = protected_spans(text, transcript, keep)
    if protected:
        cands = [
            c
            for c in cands
            if c.source in ("vault", "term") or not any(a < c.end and c.start < b for a, b in protected)
        ]
    cands = link_and_propagate(text, cands, name_keys)
    chosen = select(cands)
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
            key = name_keys.get(norm(text[c.start : c.end]), key)
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
        covered: set[int] = set()
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
