"""Exchange with Taguette: code paths, codebook CSV and Taguette project files.

Taguette's tags are flat; a path such as ``Benefits.Reduced isolation`` (or ``Barriers/Travel``)
names a hierarchy by convention. :func:`split_code_paths` turns such names into parent and child
codes. The codebook CSV is the only Taguette file that carries descriptions; :func:`codebook_to_csv`
writes it (UTF-8 with a byte-order mark, so spreadsheet programs read accents correctly) and
:func:`codebook_from_csv` reads it (Taguette's columns ``tag``/``name``/``path`` and
``description``, plus Peerlens' own when present). :func:`read_taguette` reads a Taguette project
database (its SQLite file: documents, tags, highlights) into a :class:`CodedCorpus` so codings are
not lost: Taguette's highlight offsets are UTF-8 byte positions in the document's text nodes; they
become character offsets in plain text with one line per paragraph.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from pathlib import Path

from .codebook import Code, Codebook, CodedCorpus, Coding, slugify
from .transcripts import parse_text

__all__ = ["split_code_paths", "codebook_to_csv", "codebook_from_csv", "read_taguette"]

# "." or "/" between two non-space characters, not between two digits ("24/7", "1.5 mg").
_SEP = re.compile(r"(?<=\S)(?<!\d)[./](?=\S)|(?<=\S)[./](?=[^\s\d])")


def _parts(name: str) -> list[str]:
    parts = [p.strip() for p in _SEP.split(name)]
    return parts if len(parts) > 1 and all(parts) else [name]


def split_code_paths(codebook: Codebook) -> Codebook:
    """Turn flat path names ("Benefits.Reduced isolation", "Barriers/Travel") into a hierarchy.

    A code named by a path becomes a child named by its last part; its parent is the code named by
    the rest of the path when there is one (it keeps its codability), otherwise a new grouping
    code (not codable). Codes that already have a parent, or whose name is no path, are kept.

    Examples
    --------
    >>> cb = Codebook([Code("benefits", "Benefits"), Code("benefits_iso", "Benefits.Reduced isolation"),
    ...                Code("travel", "Barriers/Travel"), Code("dose", "1.5 mg dose")])
    >>> out = split_code_paths(cb)
    >>> [(c.name, c.parent, c.codable) for c in out]  # doctest: +NORMALIZE_WHITESPACE
    [('Benefits', None, True), ('Reduced isolation', 'benefits', True), ('Barriers', None, False),
     ('Travel', 'barriers', True), ('1.5 mg dose', None, True)]
    """
    codes = list(codebook)
    by_path = {c.name: c.id for c in codes if c.parent is None}
    used = {c.id for c in codes}
    out = Codebook(name=codebook.name)
    pending: dict[str, Code] = {}
    order: list[str] = []

    def ensure(path: list[str]) -> str:
        joined = ".".join(path)
        for name, cid in by_path.items():
            if _parts(name) == path:
                return cid
        parent = ensure(path[:-1]) if len(path) > 1 else None
        cid, k = slugify(joined), 2
        while cid in used:
            cid, k = f"{slugify(joined)}_{k}", k + 1
        used.add(cid)
        pending[cid] = Code(cid, path[-1], parent=parent, codable=False)
        order.append(cid)
        by_path[joined] = cid
        return cid

    result: dict[str, Code] = {}
    for c in codes:
        parts = _parts(c.name)
        if c.parent is None and len(parts) > 1:
            parent = ensure(parts[:-1])
            c = Code(**{**c.__dict__, "name": parts[-1], "parent": parent})
        result[c.id] = c
        order.append(c.id)
    result.update(pending)
    added: set[str] = set()

    def add(cid: str) -> None:
        if cid in added:
            return
        code = result[cid]
        if code.parent and code.parent in result:
            add(code.parent)
        out.add(code)
        added.add(cid)

    for cid in order:
        add(cid)
    return out


def codebook_to_csv(codebook: Codebook, codings: Sequence[Coding] = ()) -> bytes:
    """Taguette's codebook CSV, UTF-8 with a byte-order mark.

    Columns: Taguette's ``tag`` (the code's path joined with ``.``), ``description``, ``number of
    highlights``, ``number of documents``, then Peerlens' ``key``, ``codable``, ``color``,
    ``inclusion``, ``exclusion``, ``example`` (Taguette ignores columns it does not know).

    >>> data = codebook_to_csv(Codebook([Code("b", "Benefits"), Code("i", "Isolation", parent="b")]))
    >>> data[:3] == b"\\xef\\xbb\\xbf", data.decode("utf-8-sig").splitlines()[2].split(",")[:2]
    (True, ['Benefits.Isolation', ''])
    """
    hits: dict[str, int] = {}
    docs: dict[str, set] = {}
    for c in codings:
        hits[c.code] = hits.get(c.code, 0) + 1
        docs.setdefault(c.code, set()).add(c.transcript)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(
        [
            "tag",
            "description",
            "number of highlights",
            "number of documents",
            "key",
            "codable",
            "color",
            "inclusion",
            "exclusion",
            "example",
        ]
    )
    for code in codebook:
        path = ".".join([a.name for a in reversed(codebook.ancestors(code.id))] + [code.name])
        w.writerow(
            [
                _safe(path),
                _safe(code.description),
                hits.get(code.id, 0),
                len(docs.get(code.id, ())),
                _safe(code.id),
                "true" if code.codable else "false",
                code.color,
                _safe(code.inclusion),
                _safe(code.exclusion),
                _safe(code.example),
            ]
        )
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _safe(value: str) -> str:
    # A cell that a spreadsheet would run as a formula is written as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def codebook_from_csv(data: bytes | str, name: str = "Codebook") -> Codebook:
    """Read a codebook CSV (Taguette's or Peerlens'); paths become a hierarchy.

    Raises ``ValueError`` naming the problem (no tag column, an empty tag, a row too short).

    >>> cb = codebook_from_csv("tag,description\\nBenefits.Reduced isolation,Less alone\\n")
    >>> [(c.name, c.parent, c.description) for c in cb]
    [('Benefits', None, ''), ('Reduced isolation', 'benefits', 'Less alone')]
    """
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ValueError("the CSV file is empty")
    header = [h.strip().lower() for h in rows[0]]
    found = [c for c in ("tag", "name", "path") if c in header]
    if len(found) != 1:
        raise ValueError("the header needs exactly one of the columns 'tag', 'name' or 'path'")
    col = {h: i for i, h in enumerate(header)}
    cb = Codebook(name=name)
    used: set[str] = set()
    for line, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))
        path = row[col[found[0]]].strip()
        if not path:
            raise ValueError(f"row {line}: empty tag name")

        def cell(h: str, row=row) -> str:
            return row[col[h]].strip() if h in col else ""

        key = cell("key") or slugify(path)
        base, k = key, 2
        while key in used:
            key, k = f"{base}_{k}", k + 1
        used.add(key)
        color = cell("color") or "#888888"
        if not re.fullmatch(r"#[0-9A-Fa-f]{6}", color):
            raise ValueError(f"row {line}: color must look like #RRGGBB")
        cb.add(
            Code(
                key,
                path,
                description=cell("description"),
                inclusion=cell("inclusion"),
                exclusion=cell("exclusion"),
                example=cell("example"),
                color=color.upper(),
                codable=cell("codable").lower() not in ("false", "0", "no"),
            )
        )
    return split_code_paths(cb)


# --------------------------------------------------------------------------- Taguette projects

_BLOCKS = {"p", "div", "br", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "blockquote", "pre", "dt", "dd"}


class _TextNodes(HTMLParser):
    """Plain text of a Taguette document with a map from its UTF-8 byte offsets to characters."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.byte_to_char: list[int] = []  # index: byte offset in Taguette's text; value: char offset
        self.pos = 0

    def _newline(self) -> None:
        if self.out and not self.out[-1].endswith("\n"):
            self.out.append("\n")
            self.pos += 1

    def handle_starttag(self, tag, attrs):
        if tag in _BLOCKS:
            self._newline()

    def handle_endtag(self, tag):
        if tag in _BLOCKS:
            self._newline()

    def handle_data(self, data):
        for ch in data:
            self.byte_to_char.extend([self.pos] * len(ch.encode("utf-8")))
            self.out.append(ch)
            self.pos += 1

    def result(self) -> tuple[str, list[int]]:
        text = "".join(self.out)
        return text, [*self.byte_to_char, len(text.rstrip("\n"))]


def _html_text(html: str) -> tuple[str, list[int]]:
    p = _TextNodes()
    p.feed(html)
    p.close()
    return p.result()


def read_taguette(path: str | Path, *, participants: Iterable[str] | None = None) -> CodedCorpus:
    """Read a Taguette project database (SQLite) into a coded corpus.

    Each document becomes a transcript (one line per paragraph, speaker labels parsed), each tag a
    code (paths become a hierarchy, descriptions kept), each highlight one coding per tag with its
    offsets converted from Taguette's UTF-8 byte positions. The coder is ``taguette``; a document
    whose speaker labels name one of ``participants`` is attributed to it.

    Raises ``ValueError`` when the file is not a Taguette project.
    """
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True)
        con.execute("PRAGMA trusted_schema=OFF")
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    except sqlite3.DatabaseError as exc:
        raise ValueError("not a SQLite database") from exc
    needed = {"projects", "documents", "tags", "highlights", "highlight_tags"}
    if not needed <= tables:
        con.close()
        raise ValueError("not a Taguette project: tables missing: " + ", ".join(sorted(needed - tables)))
    try:
        project = con.execute("select name from projects order by id limit 1").fetchone()
        tags = con.execute("select id, path, description from tags order by path").fetchall()
        docs = con.execute("select id, name, contents from documents order by id").fetchall()
        hl = con.execute(
            "select h.document_id, h.start_offset, h.end_offset, t.tag_id from highlights h "
            "join highlight_tags t on t.highlight_id = h.id order by h.document_id, h.start_offset, t.tag_id"
        ).fetchall()
    finally:
        con.close()
    known = set(participants or ())
    cb = Codebook(name=project[0] if project else "Taguette project")
    tag_key: dict[int, str] = {}
    for tid, tpath, desc in tags:
        key, k = slugify(tpath), 2
        while key in cb:
            key, k = f"{slugify(tpath)}_{k}", k + 1
        cb.add(Code(key, tpath, description=desc or ""))
        tag_key[tid] = key
    cb = split_code_paths(cb)
    transcripts, maps = [], {}
    for did, dname, contents in docs:
        text, byte_map = _html_text(contents or "")
        text = text.strip("\n")
        t = parse_text(text, id=f"taguette-{did}")
        speakers = [u.speaker for u in t.turns if u.speaker in known]
        if speakers:
            t.participant = speakers[0]
            t.participants = list(dict.fromkeys(speakers))
        t.metadata = {**t.metadata, "title": dname, "source": "taguette"}
        transcripts.append(t)
        maps[did] = (t.id, byte_map, len(text))
    codings = []
    for did, start, end, tag_id in hl:
        if did not in maps or tag_id not in tag_key:
            continue
        tid, byte_map, n = maps[did]
        s = byte_map[min(max(start, 0), len(byte_map) - 1)]
        e = byte_map[end - 1] + 1 if 0 < end <= len(byte_map) - 1 else n
        if e > s:
            codings.append(Coding(tid, tag_key[tag_id], s, min(e, n), "taguette"))
    return CodedCorpus(transcripts, cb, codings, [], name=cb.name)
