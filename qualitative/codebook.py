"""Codebook, codings and memos.

A :class:`Codebook` is a tree of :class:`Code` objects with an append-only edit
history. A :class:`Coding` is a character span of one (de-identified)
transcript, applied by one coder; codings may overlap. :class:`Memo` objects
annotate a code, a transcript, a segment or the project. :class:`CodedCorpus`
bundles the lot for exchange (REFI-QDA) and analysis.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime

import pandas as pd

from .transcripts import Transcript

__all__ = ["Code", "Codebook", "CodeEdit", "Coding", "Memo", "CodedCorpus", "codings_frame", "slugify"]

_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")


def _now() -> datetime:
    return datetime.now(UTC)


def slugify(name: str) -> str:
    """Code id from a name: ``"Reduced isolation"`` -> ``"reduced_isolation"``."""
    s = re.sub(r"[^\w]+", "_", name.strip().lower()).strip("_")
    return s or "code"


@dataclass(frozen=True)
class Code:
    """One code of the codebook.

    Parameters
    ----------
    id : str
        Stable identifier used in codings and in column names
        (``code:<id>``).
    name : str
    parent : str, optional
        Parent code id (``None`` for a top-level code).
    description, inclusion, exclusion, example : str
        The code's definition and its inclusion/exclusion criteria.
    color : str
        ``#RRGGBB``.
    keywords : tuple of str
        Words or phrases that suggest the code (matched on lemmas).
    patterns : tuple of list of dict
        spaCy ``Matcher`` token patterns that suggest the code.
    codable : bool
        ``False`` for grouping codes that should not be applied to text.

    Examples
    --------
    >>> Code("reduced_isolation", "Reduced isolation", keywords=("lonely", "isolated"))
    Code(id='reduced_isolation', name='Reduced isolation', ...)
    """

    id: str
    name: str
    parent: str | None = None
    description: str = ""
    inclusion: str = ""
    exclusion: str = ""
    example: str = ""
    color: str = "#888888"
    keywords: tuple[str, ...] = ()
    patterns: tuple = ()
    codable: bool = True

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise ValueError("code id must be a non-empty string")
        if not _HEX.match(self.color):
            raise ValueError(f"code {self.id!r}: color must be #RRGGBB, got {self.color!r}")
        object.__setattr__(self, "keywords", tuple(self.keywords))
        object.__setattr__(self, "patterns", tuple(tuple(p) if not isinstance(p, tuple) else p for p in self.patterns))

    def __repr__(self) -> str:  # short, for doctests and logs
        return f"Code(id={self.id!r}, name={self.name!r}, ...)"


@dataclass(frozen=True)
class CodeEdit:
    """One entry of the codebook's edit history."""

    at: datetime
    by: str | None
    action: str  # "add", "update", "remove", "move"
    code_id: str
    changes: dict


class Codebook:
    """A hierarchical codebook with edit history.

    Examples
    --------
    >>> cb = Codebook()
    >>> _ = cb.add(Code("benefits", "Benefits", codable=False), by="lead")
    >>> _ = cb.add(Code("reduced_isolation", "Reduced isolation", parent="benefits"), by="lead")
    >>> _ = cb.update("reduced_isolation", by="lead", color="#1F77B4")
    >>> [c.id for c in cb.descendants("benefits")], len(cb.history)
    (['reduced_isolation'], 3)
    """

    def __init__(self, codes: Iterable[Code] = (), name: str = "Codebook") -> None:
        self.name = name
        self._codes: dict[str, Code] = {}
        self.history: list[CodeEdit] = []
        for c in codes:
            self.add(c)

    # -- access
    def __iter__(self) -> Iterator[Code]:
        return iter(self._codes.values())

    def __len__(self) -> int:
        return len(self._codes)

    def __contains__(self, code_id: object) -> bool:
        return code_id in self._codes

    def __getitem__(self, code_id: str) -> Code:
        return self._codes[code_id]

    def get(self, code_id: str) -> Code | None:
        return self._codes.get(code_id)

    def by_name(self, name: str) -> Code:
        for c in self._codes.values():
            if c.name == name:
                return c
        raise KeyError(name)

    def children(self, code_id: str | None) -> list[Code]:
        return [c for c in self._codes.values() if c.parent == code_id]

    def roots(self) -> list[Code]:
        return self.children(None)

    def descendants(self, code_id: str) -> list[Code]:
        out = []
        for c in self.children(code_id):
            out.append(c)
            out.extend(self.descendants(c.id))
        return out

    def ancestors(self, code_id: str) -> list[Code]:
        out = []
        parent = self._codes[code_id].parent
        while parent is not None:
            out.append(self._codes[parent])
            parent = self._codes[parent].parent
        return out

    def path(self, code_id: str) -> str:
        """``"Benefits/Reduced isolation"``."""
        names = [c.name for c in reversed(self.ancestors(code_id))] + [self._codes[code_id].name]
        return "/".join(names)

    # -- edits
    def _log(self, action: str, code_id: str, changes: dict, by: str | None) -> None:
        self.history.append(CodeEdit(_now(), by, action, code_id, changes))

    def add(self, code: Code, by: str | None = None) -> Code:
        if code.id in self._codes:
            raise ValueError(f"code {code.id!r} already exists")
        if code.parent is not None and code.parent not in self._codes:
            raise ValueError(f"code {code.id!r}: unknown parent {code.parent!r}")
        self._codes[code.id] = code
        self._log("add", code.id, {k: v for k, v in asdict(code).items() if v not in ("", (), None)}, by)
        return code

    def update(self, code_id: str, by: str | None = None, **changes) -> Code:
        old = self._codes[code_id]
        allowed = {f.name for f in fields(Code)} - {"id"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown code fields: {sorted(unknown)}")
        if "parent" in changes:
            self._check_parent(code_id, changes["parent"])
        new = replace(old, **changes)
        diff = {k: (getattr(old, k), getattr(new, k)) for k in changes if getattr(old, k) != getattr(new, k)}
        self._codes[code_id] = new
        if diff:
            self._log("move" if set(diff) == {"parent"} else "update", code_id, diff, by)
        return new

    def _check_parent(self, code_id: str, parent: str | None) -> None:
        if parent is None:
            return
        if parent not in self._codes:
            raise ValueError(f"unknown parent {parent!r}")
        if parent == code_id or parent in {c.id for c in self.descendants(code_id)}:
            raise ValueError(f"moving {code_id!r} under {parent!r} would create a cycle")

    def remove(self, code_id: str, by: str | None = None, reparent: bool = True) -> None:
        """Remove a code; its children move to its parent (or are removed too)."""
        code = self._codes[code_id]
        for child in self.children(code_id):
            if reparent:
                self.update(child.id, by=by, parent=code.parent)
            else:
                self.remove(child.id, by=by, reparent=False)
        del self._codes[code_id]
        self._log("remove", code_id, {"name": code.name}, by)

    # -- frames
    def to_frame(self) -> pd.DataFrame:
        """One row per code: id, name, parent, path, level, description, ..."""
        rows = []
        for c in self._codes.values():
            d = asdict(c)
            d["keywords"] = list(c.keywords)
            d["patterns"] = [list(p) for p in c.patterns]
            d["path"] = self.path(c.id)
            d["level"] = len(self.ancestors(c.id))
            rows.append(d)
        cols = [
            "id",
            "name",
            "parent",
            "path",
            "level",
            "description",
            "inclusion",
            "exclusion",
            "example",
            "color",
            "keywords",
            "patterns",
            "codable",
        ]
        return pd.DataFrame(rows, columns=cols)

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(e) for e in self.history], columns=["at", "by", "action", "code_id", "changes"])


@dataclass(frozen=True)
class Coding:
    """A coded span ``[start, end)`` of a transcript's (de-identified) text."""

    transcript: str
    code: str
    start: int
    end: int
    coder: str
    memo: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: datetime | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"coding span must satisfy 0 <= start < end, got [{self.start}, {self.end})")


@dataclass(frozen=True)
class Memo:
    """A memo on a code, a transcript, a segment of a transcript or the project.

    ``target`` is ``"code"``, ``"transcript"``, ``"segment"``, ``"coding"`` or
    ``"project"``; ``target_id`` names the code / transcript / coding;
    ``start``/``end`` locate a segment memo.
    """

    text: str
    target: str
    target_id: str | None = None
    author: str | None = None
    start: int | None = None
    end: int | None = None
    title: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: datetime = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.target not in {"code", "transcript", "segment", "coding", "project"}:
            raise ValueError(f"unknown memo target {self.target!r}")
        if self.target == "segment" and (self.start is None or self.end is None or self.target_id is None):
            raise ValueError("a segment memo needs target_id (transcript), start and end")


@dataclass
class CodedCorpus:
    """Transcripts, codebook, codings and memos of one project."""

    transcripts: list[Transcript]
    codebook: Codebook
    codings: list[Coding] = field(default_factory=list)
    memos: list[Memo] = field(default_factory=list)
    name: str = "Peerlens project"
    #: case (participant study code) -> {variable: value}: arm, site, trajectory group, dose ...
    cases: dict[str, dict] = field(default_factory=dict)

    def transcript(self, transcript_id: str) -> Transcript:
        for t in self.transcripts:
            if t.id == transcript_id:
                return t
        raise KeyError(transcript_id)

    def validate(self) -> None:
        """Raise if a coding points at an unknown transcript/code or outside the text."""
        texts = {t.id: len(t.text) for t in self.transcripts}
        for c in self.codings:
            if c.transcript not in texts:
                raise ValueError(f"coding {c.id}: unknown transcript {c.transcript!r}")
            if c.code not in self.codebook:
                raise ValueError(f"coding {c.id}: unknown code {c.code!r}")
            if c.end > texts[c.transcript]:
                raise ValueError(f"coding {c.id}: end {c.end} beyond text length {texts[c.transcript]}")


_CODING_COLS = ["id", "transcript", "code", "start", "end", "coder", "memo"]


def codings_frame(codings: Sequence[Coding] | pd.DataFrame) -> pd.DataFrame:
    """Codings as a tidy frame with columns id, transcript, code, start, end, coder, memo."""
    if isinstance(codings, pd.DataFrame):
        missing = {"transcript", "code", "start", "end"} - set(codings.columns)
        if missing:
            raise ValueError(f"codings frame lacks columns {sorted(missing)}")
        df = codings.copy()
        for col in _CODING_COLS:
            if col not in df.columns:
                df[col] = None
        return df[_CODING_COLS + [c for c in df.columns if c not in _CODING_COLS]]
    return pd.DataFrame([{k: getattr(c, k) for k in _CODING_COLS} for c in codings], columns=_CODING_COLS)
