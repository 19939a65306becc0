"""Auto-coding suggestions from code keywords and token patterns.

Each :class:`~qualitative.codebook.Code` may carry ``keywords`` (matched with a
spaCy ``PhraseMatcher`` on lemmas, via the lookup lemmatizer, or on lower-cased
text) and ``patterns`` (spaCy ``Matcher`` token patterns). An
:class:`AutoCoder` proposes :class:`Suggestion` spans; a coder accepts them (they
become :class:`~qualitative.codebook.Coding` objects attributed to that coder)
or rejects them. A :class:`SuggestionLedger` remembers rejections so the same
suggestion is not proposed again.

Transcripts are processed paragraph by paragraph with ``nlp.pipe``. Token
patterns run only on paragraphs that contain one of their required words (the
"anchor" of each pattern), so a codebook of hundreds of codes stays close to the
speed of bare tokenisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from spacy.attrs import LEMMA, LOWER, ORTH
from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.util import filter_spans

from .codebook import Code, Codebook, Coding
from .nlp import lemma_pipeline
from .transcripts import Transcript, paragraph_spans

__all__ = ["Suggestion", "SuggestionLedger", "AutoCoder", "suggestions_frame"]

_REQUIRED_OPS = {None, "+", "1", "{1}"}
_ATTR_IDS = {"LEMMA": LEMMA, "LOWER": LOWER, "ORTH": ORTH, "TEXT": ORTH}


@dataclass(frozen=True)
class Suggestion:
    """A proposed coding: code ``code`` on ``[start, end)`` of ``transcript``."""

    transcript: str
    code: str
    start: int
    end: int
    text: str
    rule: str  # "keyword" or "pattern"

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.transcript, self.code, self.start, self.end)

    @property
    def id(self) -> str:
        return f"{self.transcript}:{self.code}:{self.start}:{self.end}"


def suggestions_frame(suggestions: Iterable[Suggestion]) -> pd.DataFrame:
    """Tidy frame: id, transcript, code, start, end, text, rule."""
    cols = ["id", "transcript", "code", "start", "end", "text", "rule"]
    return pd.DataFrame([{"id": s.id, **s.__dict__} for s in suggestions], columns=cols)


@dataclass
class SuggestionLedger:
    """Decisions on suggestions: accepted ones become codings, rejected ones are remembered.

    Examples
    --------
    >>> s = Suggestion("t1", "isolation", 5, 11, "lonely", "keyword")
    >>> ledger = SuggestionLedger()
    >>> coding = ledger.accept(s, coder="ana")
    >>> (coding.code, coding.coder, ledger.is_decided(s))
    ('isolation', 'ana', True)
    """

    decisions: list[dict] = field(default_factory=list)

    def _record(self, s: Suggestion, decision: str, coder: str) -> None:
        self.decisions.append({"id": s.id, "transcript": s.transcript, "code": s.code, "start": s.start,
                               "end": s.end, "decision": decision, "coder": coder,
                               "at": datetime.now(timezone.utc)})

    def accept(self, s: Suggestion, coder: str, memo: str | None = None) -> Coding:
        if not coder:
            raise ValueError("an accepted suggestion needs a named coder")
        self._record(s, "accepted", coder)
        return Coding(s.transcript, s.code, s.start, s.end, coder=coder, memo=memo)

    def reject(self, s: Suggestion, coder: str) -> None:
        if not coder:
            raise ValueError("a rejection needs a named coder")
        self._record(s, "rejected", coder)

    @property
    def rejected(self) -> set[tuple[str, str, int, int]]:
        return {(d["transcript"], d["code"], d["start"], d["end"]) for d in self.decisions
                if d["decision"] == "rejected"}

    def is_rejected(self, s: Suggestion) -> bool:
        return s.key in self.rejected

    def is_decided(self, s: Suggestion) -> bool:
        return any(d["id"] == s.id for d in self.decisions)

    def to_frame(self) -> pd.DataFrame:
        cols = ["id", "transcript", "code", "start", "end", "decision", "coder", "at"]
        return pd.DataFrame(self.decisions, columns=cols)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> "SuggestionLedger":
        return cls(decisions=df.to_dict("records"))


def _lower_lemma(spec: dict) -> dict:
    # Lemmas from the lookup lemmatizer are lower-cased; so must pattern lemmas be.
    spec = dict(spec)
    v = spec.get("LEMMA")
    if isinstance(v, str):
        spec["LEMMA"] = v.lower()
    elif isinstance(v, dict):
        spec["LEMMA"] = {k: ([x.lower() for x in vals] if isinstance(vals, list) else vals)
                         for k, vals in v.items()}
    return spec


def _anchor(pattern: Sequence[dict], strings) -> tuple[int, set[int]] | None:
    """(attribute id, hashes) a doc must contain for ``pattern`` to match."""
    for spec in pattern:
        if spec.get("OP") not in _REQUIRED_OPS:
            continue
        for name, attr in _ATTR_IDS.items():
            v = spec.get(name)
            if isinstance(v, str):
                return attr, {strings.add(v)}
            if isinstance(v, dict) and isinstance(v.get("IN"), list) and v["IN"]:
                return attr, {strings.add(x) for x in v["IN"]}
    return None


class AutoCoder:
    """Propose codings from the codebook's keywords and token patterns.

    Parameters
    ----------
    codebook : Codebook or iterable of Code
    attr : {"LEMMA", "LOWER"}
        What keywords are matched on. ``"LEMMA"`` (default) makes "isolated",
        "isolating" and "isolate" match the keyword "isolate".
    nlp : spacy.Language, optional
        Defaults to :func:`qualitative.nlp.lemma_pipeline`.
    expand : {"match", "paragraph"}
        Suggest the matched words only, or the whole paragraph around them.
    participants_only : bool
        Skip interviewer turns.

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> cb = Codebook([Code("isolation", "Isolation", keywords=("feel isolated",))])
    >>> t = parse_text("Interviewer: And then?\\nP01: I was feeling isolated.", id="t1")
    >>> [(s.code, s.text) for s in AutoCoder(cb).suggest([t])]
    [('isolation', 'feeling isolated')]
    """

    def __init__(
        self,
        codebook: Codebook | Iterable[Code],
        *,
        attr: str = "LEMMA",
        nlp: Language | None = None,
        expand: str = "match",
        participants_only: bool = True,
        batch_size: int = 512,
    ) -> None:
        if attr not in {"LEMMA", "LOWER"}:
            raise ValueError("attr must be 'LEMMA' or 'LOWER'")
        if expand not in {"match", "paragraph"}:
            raise ValueError("expand must be 'match' or 'paragraph'")
        self.codes = [c for c in codebook if c.codable]
        self.attr = attr
        self.nlp = nlp or lemma_pipeline()
        self.expand = expand
        self.participants_only = participants_only
        self.batch_size = batch_size
        strings = self.nlp.vocab.strings
        self.phrase_matcher = PhraseMatcher(self.nlp.vocab, attr=attr)
        keyword_codes = [c for c in self.codes if c.keywords]
        make = self.nlp.pipe if attr == "LEMMA" else (lambda xs: (self.nlp.make_doc(x) for x in xs))
        for code in keyword_codes:
            self.phrase_matcher.add(code.id, list(make(list(code.keywords))))
        # One Matcher per code so that only codes whose anchor words occur run.
        self.matchers: dict[str, Matcher] = {}
        self.unanchored: list[str] = []
        self.anchors: dict[int, dict[int, set[str]]] = {}
        for code in self.codes:
            if not code.patterns:
                continue
            m = Matcher(self.nlp.vocab, validate=True)
            patterns = [[_lower_lemma(s) for s in p] for p in code.patterns]
            m.add(code.id, patterns)
            self.matchers[code.id] = m
            for p in patterns:
                a = _anchor(p, strings)
                if a is None:
                    self.unanchored.append(code.id)
                    continue
                attr_id, hashes = a
                table = self.anchors.setdefault(attr_id, {})
                for h in hashes:
                    table.setdefault(h, set()).add(code.id)
        self.unanchored = sorted(set(self.unanchored))

    # -- core
    def _paragraphs(self, t: Transcript) -> Iterator[tuple[int, int]]:
        spans = paragraph_spans(t.text)
        if not self.participants_only or not t.turns:
            yield from spans
            return
        for a, b in spans:
            # Keep the part of each paragraph that lies inside participant turns.
            for turn in t.turns:
                if turn.role != "participant":
                    continue
                s, e = max(a, turn.start), min(b, turn.end)
                if s < e:
                    yield s, e

    def _candidate_codes(self, doc) -> set[str]:
        codes = set(self.unanchored)
        if not self.anchors:
            return codes
        attrs = sorted(self.anchors)
        arr = doc.to_array(attrs)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        for j, attr in enumerate(attrs):
            table = self.anchors[attr]
            for h in set(arr[:, j].tolist()):
                hit = table.get(h)
                if hit:
                    codes |= hit
        return codes

    def _matches(self, doc) -> list[tuple[str, int, int, str]]:
        found: dict[str, list] = {}
        strings = self.nlp.vocab.strings
        for match_id, s, e in self.phrase_matcher(doc):
            found.setdefault(strings[match_id], []).append((doc[s:e], "keyword"))
        for code in self._candidate_codes(doc):
            for span in self.matchers[code](doc, as_spans=True):
                found.setdefault(code, []).append((span, "pattern"))
        out = []
        for code, items in found.items():
            rule_of = {(sp.start, sp.end): r for sp, r in items}
            for sp in filter_spans([sp for sp, _ in items]):
                out.append((code, sp.start_char, sp.end_char, rule_of[(sp.start, sp.end)]))
        return out

    def iter_suggestions(
        self,
        transcripts: Iterable[Transcript],
        *,
        ledger: SuggestionLedger | None = None,
        codings: Iterable[Coding] = (),
    ) -> Iterator[Suggestion]:
        """Yield suggestions lazily (see :meth:`suggest`)."""
        transcripts = list(transcripts)
        rejected = ledger.rejected if ledger is not None else set()
        existing = {(c.transcript, c.code, c.start, c.end) for c in codings}
        tm = {t.id: t for t in transcripts}

        def units():
            for t in transcripts:
                for a, b in self._paragraphs(t):
                    yield t.text[a:b], (t.id, a, b)

        seen: set[tuple] = set()
        for doc, (tid, a, b) in self.nlp.pipe(units(), as_tuples=True, batch_size=self.batch_size):
            for code, s, e, rule in self._matches(doc):
                start, end = (a + s, a + e) if self.expand == "match" else (a, b)
                key = (tid, code, start, end)
                if key in seen or key in rejected or key in existing:
                    continue
                seen.add(key)
                yield Suggestion(tid, code, start, end, tm[tid].text[start:end], rule)

    def suggest(
        self,
        transcripts: Iterable[Transcript],
        *,
        ledger: SuggestionLedger | None = None,
        codings: Iterable[Coding] = (),
    ) -> list[Suggestion]:
        """Suggestions for the transcripts, sorted by transcript, start and code.

        Suggestions identical (transcript, code, start, end) to a rejected one
        in ``ledger`` or to an existing coding are not proposed.
        """
        out = list(self.iter_suggestions(transcripts, ledger=ledger, codings=codings))
        return sorted(out, key=lambda s: (s.transcript, s.start, s.end, s.code))
