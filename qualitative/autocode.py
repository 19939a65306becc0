"""Auto-coding suggestions from code keywords and token patterns.

Each :class:`~qualitative.codebook.Code` may carry ``keywords`` (matched with a
spaCy ``PhraseMatcher`` on lemmas of the lookup lemmatizer, or on lower-cased
text) and ``patterns`` (spaCy ``Matcher`` token patterns; ``LEMMA`` values are
compared with the same lookup lemmas). An
:class:`AutoCoder` proposes :class:`Suggestion` spans; a coder accepts them (they
become :class:`~qualitative.codebook.Coding` objects attributed to that coder)
or rejects them. A :class:`SuggestionLedger` remembers rejections so the same
suggestion is not proposed again.

Transcripts are processed paragraph by paragraph with ``nlp.pipe``. Because
the lookup lemmatizer is a fixed map from a lower-case form to a lemma, a lemma
comparison equals a comparison of the token's lower-case text with every form
of that lemma: keywords and ``LEMMA`` pattern values are expanded to their forms
once, and the text itself is only tokenised. Token patterns run only around the
words they require (the "anchor" of each pattern), so a codebook of hundreds of
codes stays close to the speed of bare tokenisation.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice, product

import numpy as np
import pandas as pd
from spacy.attrs import IDX, LENGTH, LOWER, ORTH
from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc

from .codebook import Code, Codebook, Coding
from .nlp import blank_pipeline, lemma_forms
from .transcripts import Transcript, paragraph_spans

__all__ = ["Suggestion", "SuggestionLedger", "AutoCoder", "suggestions_frame", "sentence_around"]

_REQUIRED_OPS = {None, "+", "1", "{1}"}
_ATTR_IDS = {"LOWER": LOWER, "ORTH": ORTH, "TEXT": ORTH}
_MAX_VARIANTS = 256  # inflected variants kept per multi-word keyword
# Pattern keys whose values come from trained components the text is not run through.
_NEEDS_PIPELINE = {"POS", "TAG", "MORPH", "DEP", "ENT_TYPE", "ENT_IOB", "ENT_ID", "SENT_START", "IS_SENT_START"}


@dataclass(frozen=True)
class Suggestion:
    """A proposed coding: code ``code`` on ``[start, end)`` of ``transcript``."""

    transcript: str
    code: str
    start: int
    end: int
    text: str
    rule: str  # "keyword" or "pattern"
    context: str = field(default="", compare=False)  # the sentence around the matched words

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.transcript, self.code, self.start, self.end)

    @property
    def id(self) -> str:
        return f"{self.transcript}:{self.code}:{self.start}:{self.end}"


_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")


def sentence_around(text: str, region: tuple[int, int], start: int, end: int) -> tuple[int, int]:
    """The sentence of ``text`` (within ``region``) that holds ``[start, end)``.

    Sentences end at ``.``, ``!``, ``?`` or ``…`` (with closing quotes) before a space; a match
    that crosses a sentence end gets every sentence it touches.

    >>> t = "P01: It was hard. I felt so lonely before the group! Now it's better."
    >>> s, e = sentence_around(t, (5, len(t)), t.index("lonely"), t.index("lonely") + 6)
    >>> t[s:e]
    'I felt so lonely before the group!'
    """
    a, b = region
    s = a
    for m in _SENTENCE_END.finditer(text, a, b):
        if m.end() <= start:
            s = m.end()
        elif m.end() >= end:
            b = m.end()
            break
    while s < b and text[s].isspace():
        s += 1
    while b > s and text[b - 1].isspace():
        b -= 1
    return s, b


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
        self.decisions.append(
            {
                "id": s.id,
                "transcript": s.transcript,
                "code": s.code,
                "start": s.start,
                "end": s.end,
                "decision": decision,
                "coder": coder,
                "at": datetime.now(UTC),
            }
        )

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
        return {
            (d["transcript"], d["code"], d["start"], d["end"]) for d in self.decisions if d["decision"] == "rejected"
        }

    def is_rejected(self, s: Suggestion) -> bool:
        return s.key in self.rejected

    def is_decided(self, s: Suggestion) -> bool:
        return any(d["id"] == s.id for d in self.decisions)

    def to_frame(self) -> pd.DataFrame:
        cols = ["id", "transcript", "code", "start", "end", "decision", "coder", "at"]
        return pd.DataFrame(self.decisions, columns=cols)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> SuggestionLedger:
        return cls(decisions=df.to_dict("records"))


def _forms_of(values) -> list[str]:
    out: set[str] = set()
    for v in values:
        out |= lemma_forms(v)
    return sorted(out)


def _expand_lemma(spec: dict) -> dict:
    """Rewrite a ``LEMMA`` constraint as ``LOWER`` over every form of the lemma."""
    if "LEMMA" not in spec:
        return dict(spec)
    spec = dict(spec)
    v = spec.pop("LEMMA")
    if isinstance(v, str):
        forms = _forms_of([v])
    elif isinstance(v, dict) and set(v) <= {"IN", "NOT_IN"}:
        key = "IN" if "IN" in v else "NOT_IN"
        spec["LOWER"] = {key: _forms_of(v[key])}
        return spec
    else:
        raise ValueError(f"unsupported LEMMA constraint {v!r}: use a string or {{'IN': [...]}}")
    if "LOWER" in spec:
        raise ValueError("a token pattern cannot constrain both LEMMA and LOWER")
    spec["LOWER"] = {"IN": forms}
    return spec


def _reps(op: str | None) -> tuple[int, int | None]:
    """Least and most tokens one pattern element consumes."""
    if op in (None, "1", "!"):
        return 1, 1
    if op == "?":
        return 0, 1
    if op == "+":
        return 1, None
    if op == "*":
        return 0, None
    if isinstance(op, str) and op.startswith("{") and op.endswith("}"):
        body = op[1:-1]
        if "," not in body:
            return int(body), int(body)
        lo, hi = body.split(",")
        return int(lo or 0), (int(hi) if hi else None)
    raise ValueError(f"unknown OP {op!r}")


def _literal(spec: dict, strings) -> tuple[int, frozenset[int]] | None:
    for name, attr in _ATTR_IDS.items():
        v = spec.get(name)
        values = [v] if isinstance(v, str) else (v.get("IN") if isinstance(v, dict) else None)
        if isinstance(values, list) and values and all(isinstance(x, str) for x in values):
            return attr, frozenset(strings.add(x.lower() if attr == LOWER else x) for x in values)
    return None


def _plan(pattern: Sequence[dict], strings):
    """How to find a pattern cheaply before running the Matcher on it.

    Returns ``(anchor, checks, width)`` or ``None``. ``anchor`` is a required
    word at a fixed offset from the start of any match; ``checks`` are the other
    required words with the range of offsets where they must occur; ``width``
    is the longest match (``None`` when unbounded). A window reaches the Matcher
    only when every check passes, which keeps Matcher calls near real matches.
    """
    lo, hi = 0, 0
    literals = []
    for spec in pattern:
        mn, mx = _reps(spec.get("OP"))
        if mn >= 1 and spec.get("OP") != "!":
            lit = _literal(spec, strings)
            if lit is not None:
                literals.append((lit[0], lit[1], lo, hi))
        lo += mn
        hi = None if hi is None or mx is None else hi + mx
    fixed = [x for x in literals if x[3] is not None and x[2] == x[3]]
    if not fixed:
        return None
    anchor = min(fixed, key=lambda x: len(x[1]))  # the most selective word
    checks = [x for x in literals if x is not anchor]
    return anchor, checks, hi


class AutoCoder:
    """Propose codings from the codebook's keywords and token patterns.

    Parameters
    ----------
    codebook : Codebook or iterable of Code
    attr : {"LEMMA", "LOWER"}
        What keywords are matched on. ``"LEMMA"`` (default) makes "isolated",
        "isolating" and "isolate" match the keyword "isolate".
    nlp : spacy.Language, optional
        Tokenizer to use (default: ``spacy.blank("en")``). Its components run
        only when a pattern needs tags, morphology, parses or entities.
    expand : {"sentence", "match", "paragraph"}
        Suggest the sentence holding the matched words (default), the matched words only, or the
        whole paragraph. Every suggestion carries its sentence as ``context``, so a coder judges a
        keyword hit in the sentence it was said in.
    participants_only : bool
        Skip interviewer turns.

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> cb = Codebook([Code("isolation", "Isolation", keywords=("feel isolated",))])
    >>> t = parse_text("Interviewer: And then?\\nP01: I was feeling isolated.", id="t1")
    >>> [(s.code, s.text) for s in AutoCoder(cb).suggest([t])]
    [('isolation', 'I was feeling isolated.')]
    >>> [(s.text, s.context) for s in AutoCoder(cb, expand="match").suggest([t])]
    [('feeling isolated', 'I was feeling isolated.')]
    """

    def __init__(
        self,
        codebook: Codebook | Iterable[Code],
        *,
        attr: str = "LEMMA",
        nlp: Language | None = None,
        expand: str = "sentence",
        participants_only: bool = True,
        batch_size: int = 64,
        block_chars: int = 30_000,
    ) -> None:
        if attr not in {"LEMMA", "LOWER"}:
            raise ValueError("attr must be 'LEMMA' or 'LOWER'")
        if expand not in {"match", "sentence", "paragraph"}:
            raise ValueError("expand must be 'sentence', 'match' or 'paragraph'")
        self.codes = [c for c in codebook if c.codable]
        self.attr = attr
        self.nlp = nlp or blank_pipeline()
        self.expand = expand
        self.participants_only = participants_only
        self.batch_size = batch_size
        self.block_chars = block_chars
        vocab = self.nlp.vocab
        strings = vocab.strings
        # Keywords are matched on lower-case text; with attr="LEMMA" each keyword
        # is expanded to every combination of its words' inflected forms.
        self.phrase_matcher = PhraseMatcher(vocab, attr="LOWER")
        for code in self.codes:
            docs = []
            for kw in code.keywords:
                words = [t.lower_ for t in self.nlp.make_doc(kw)]
                if not words:
                    continue
                options = [sorted(lemma_forms(w) | {w}) for w in words] if attr == "LEMMA" else [[w] for w in words]
                for combo in islice(product(*options), _MAX_VARIANTS):
                    docs.append(Doc(vocab, words=list(combo)))
            if docs:
                self.phrase_matcher.add(code.id, docs)
        # One Matcher per code, run only on windows where its required words occur.
        self.matchers: dict[str, Matcher] = {}
        self.plans: list[tuple[str, tuple, list, int | None]] = []
        self.anchors: dict[int, dict[int, list[int]]] = {}
        self.unanchored: set[str] = set()
        needs_pipeline = False
        for code in self.codes:
            if not code.patterns:
                continue
            patterns = [[_expand_lemma(s) for s in p] for p in code.patterns]
            needs_pipeline |= any(k in _NEEDS_PIPELINE for p in patterns for s in p for k in s)
            m = Matcher(vocab, validate=True)
            m.add(code.id, patterns)
            self.matchers[code.id] = m
            for p in patterns:
                plan = _plan(p, strings)
                if plan is None:
                    self.unanchored.add(code.id)
                    continue
                anchor, checks, width = plan
                self.plans.append((code.id, anchor, checks, width))
                table = self.anchors.setdefault(anchor[0], {})
                for h in anchor[1]:
                    table.setdefault(h, []).append(len(self.plans) - 1)
        used = set(self.anchors) | {c[0] for _, _, checks, _ in self.plans for c in checks}
        self._anchor_attrs = sorted(used)
        self._column = {attr: j for j, attr in enumerate(self._anchor_attrs)}
        self._anchor_arrays = {a: np.sort(np.fromiter(t.keys(), dtype=np.uint64)) for a, t in self.anchors.items()}
        # Tokenising is all the text needs unless a pattern asks for tags or parses.
        self._docs = self.nlp.pipe if needs_pipeline else self.nlp.tokenizer.pipe

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

    def _windows(self, n: int, arr: np.ndarray) -> dict[str, list[tuple[int, int]]]:
        """Token windows per code in which its patterns could match."""
        out: dict[str, list[tuple[int, int]]] = {c: [(0, n)] for c in self.unanchored}
        for attr, table in self.anchors.items():
            col = arr[:, self._column[attr]]
            keys = self._anchor_arrays[attr]
            # searchsorted on the sorted anchors: np.isin would sort every block.
            idx = np.minimum(np.searchsorted(keys, col), len(keys) - 1)
            hits = np.flatnonzero(keys[idx] == col)
            for i in hits.tolist():
                for k in table[int(col[i])]:
                    code, anchor, checks, width = self.plans[k]
                    if code in self.unanchored:
                        continue
                    start = i - anchor[2]
                    if start < 0:
                        continue
                    ok = True
                    for c_attr, hashes, lo, hi in checks:
                        a, b = start + lo, n if hi is None else min(n, start + hi + 1)
                        c_col = arr[a:b, self._column[c_attr]]
                        if not any(int(h) in hashes for h in c_col):
                            ok = False
                            break
                    if ok:
                        out.setdefault(code, []).append((start, n if width is None else min(n, start + width)))
        return out

    def _matches(self, doc) -> list[tuple[str, int, int, str]]:
        # One array per doc: the attributes patterns need, then character offsets.
        arr = doc.to_array(self._anchor_attrs + [IDX, LENGTH]).astype(np.uint64, copy=False)
        found: dict[str, set[tuple[int, int, str]]] = {}
        strings = self.nlp.vocab.strings
        for match_id, s, e in self.phrase_matcher(doc):
            found.setdefault(strings[match_id], set()).add((s, e, "keyword"))
        for code, windows in self._windows(len(doc), arr).items():
            matcher = self.matchers[code]
            for a, b in sorted(set(windows)):
                for _, s, e in matcher(doc[a:b]):
                    found.setdefault(code, set()).add((a + s, a + e, "pattern"))
        if not found:
            return []
        ix, ln = len(self._anchor_attrs), len(self._anchor_attrs) + 1
        out = []
        for code, items in found.items():
            if len(items) > 1:
                # Longest first, then leftmost; drop spans overlapping a kept one.
                kept: list[tuple[int, int, str]] = []
                for s, e, rule in sorted(items, key=lambda x: (x[0] - x[1], x[0])):
                    if all(e <= ks or s >= ke for ks, ke, _ in kept):
                        kept.append((s, e, rule))
            else:
                kept = list(items)
            for s, e, rule in kept:
                out.append((code, int(arr[s, ix]), int(arr[e - 1, ix] + arr[e - 1, ln]), rule))
        return out

    def blocks(self, t: Transcript) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """Spans of ``t.text`` handed to spaCy, each with the regions inside it
        where suggestions may fall (paragraphs, cut to participant turns).

        Whole runs of paragraphs go to spaCy as one doc, up to
        :attr:`block_chars` characters, so per-doc costs are paid rarely; a
        match must still lie within one region.
        """
        regions = list(self._paragraphs(t))
        out: list[tuple[int, int, list[tuple[int, int]]]] = []
        cur: list[tuple[int, int]] = []
        for r in regions:
            if cur and r[1] - cur[0][0] > self.block_chars:
                out.append((cur[0][0], cur[-1][1], cur))
                cur = []
            cur.append(r)
        if cur:
            out.append((cur[0][0], cur[-1][1], cur))
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
        contexts: list = []

        def text_stream():
            for t in transcripts:
                for a, b, regions in self.blocks(t):
                    contexts.append((t, a, regions))
                    yield t.text[a:b]

        seen: set[tuple] = set()
        for k, doc in enumerate(self._docs(text_stream(), batch_size=self.batch_size)):
            t, a, regions = contexts[k]
            contexts[k] = None  # free as we go
            starts = [r[0] for r in regions]
            for code, s, e, rule in self._matches(doc):
                s, e = a + s, a + e
                i = bisect_right(starts, s) - 1
                if i < 0 or e > regions[i][1]:
                    continue  # in an interviewer turn, or across paragraphs
                sentence = sentence_around(t.text, regions[i], s, e)
                start, end = {"match": (s, e), "sentence": sentence, "paragraph": regions[i]}[self.expand]
                key = (t.id, code, start, end)
                if key in seen or key in rejected or key in existing:
                    continue
                seen.add(key)
                yield Suggestion(t.id, code, start, end, t.text[start:end], rule, t.text[sentence[0] : sentence[1]])

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
