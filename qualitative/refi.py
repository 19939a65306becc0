"""REFI-QDA exchange: codebooks (``.qdc``) and whole projects (``.qdpx``).

The REFI-QDA standard (Rotterdam Exchange Format Initiative) lets QDA
programs exchange codebooks and coded projects:

* ``.qdc``: an XML document whose root is ``CodeBook`` in the namespace
  ``urn:QDA-XML:codebook:1.0``, holding nested ``Code`` elements with
  ``guid``, ``name``, ``isCodable`` and ``color`` and an optional
  ``Description``;
* ``.qdpx``: a zip archive with ``project.qde`` (root ``Project`` in
  ``urn:QDA-XML:project:1.0``: ``Users``, ``CodeBook``, ``Sources``, ``Notes``)
  and a ``sources/`` folder with one UTF-8 text file per transcript, referred
  to as ``plainTextPath="internal://<guid>.txt"``. Each coding is a
  ``PlainTextSelection`` (``startPosition``/``endPosition``) holding a
  ``Coding`` with a ``CodeRef``.

Positions count Unicode code points, which is what Python string offsets are.
Peerlens-only fields (code id, inclusion/exclusion criteria, example,
keywords, patterns; transcript participant, wave and turns) travel in the
``Description`` elements after a ``--- Peerlens ---`` line, one
``Key: <JSON value>`` per line, so the round trip is lossless and other programs
still show readable text.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from lxml import etree

from .codebook import Code, Codebook, CodedCorpus, Coding, Memo, slugify
from .refi_cases import read_cases, write_cases
from .transcripts import Transcript, Turn, parse_text

__all__ = [
    "PROJECT_NS",
    "CODEBOOK_NS",
    "export_qdc",
    "import_qdc",
    "export_qdpx",
    "import_qdpx",
    "codebook_to_xml",
    "project_to_xml",
]

PROJECT_NS = "urn:QDA-XML:project:1.0"
CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
ORIGIN = "Peerlens"
_MARK = "--- Peerlens ---"
_GUID_NS = uuid.UUID("6f1c5c2e-6a43-5f0e-9c1b-7d2a4e0b9a10")


def _guid(kind: str, key: str) -> str:
    # Deterministic GUIDs: exporting the same project twice gives the same ids,
    # so another program can merge a re-export instead of duplicating codes.
    return str(uuid.uuid5(_GUID_NS, f"{kind}:{key}"))


def _as_guid(kind: str, key: str) -> str:
    try:
        return str(uuid.UUID(key))
    except (ValueError, AttributeError, TypeError):
        return _guid(kind, str(key))


def _dt(value: datetime | None) -> str:
    value = value or datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_dt(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _with_extras(text: str, extras: dict) -> str:
    extras = {k: v for k, v in extras.items() if v not in (None, "", [], (), {})}
    if not extras:
        return text
    lines = [f"{k}: {json.dumps(v, ensure_ascii=False, default=str)}" for k, v in extras.items()]
    return (text + "\n\n" if text else "") + _MARK + "\n" + "\n".join(lines)


def _split_extras(text: str | None) -> tuple[str, dict]:
    text = text or ""
    head, sep, tail = text.partition(_MARK)
    if not sep:
        return text, {}
    extras = {}
    for line in tail.strip("\n").split("\n"):
        key, _, raw = line.partition(": ")
        if key:
            try:
                extras[key] = json.loads(raw)
            except json.JSONDecodeError:
                extras[key] = raw
    return head.rstrip("\n"), extras


# --------------------------------------------------------------------------- codebook


def _code_element(parent, ns: str, cb: Codebook, code: Code, code_notes: dict[str, list[str]] | None) -> None:
    el = etree.SubElement(
        parent,
        f"{{{ns}}}Code",
        guid=_guid("code", code.id),
        name=code.name,
        isCodable="true" if code.codable else "false",
        color=code.color.upper(),
    )
    desc = _with_extras(
        code.description,
        {
            "id": code.id,
            "inclusion": code.inclusion,
            "exclusion": code.exclusion,
            "example": code.example,
            "keywords": list(code.keywords),
            "patterns": [list(p) for p in code.patterns],
        },
    )
    if desc:
        etree.SubElement(el, f"{{{ns}}}Description").text = desc
    for note_guid in (code_notes or {}).get(code.id, []):
        etree.SubElement(el, f"{{{ns}}}NoteRef", targetGUID=note_guid)
    for child in cb.children(code.id):
        _code_element(el, ns, cb, child, code_notes)


def codebook_to_xml(codebook: Codebook) -> bytes:
    """Serialise a codebook as a REFI-QDA ``.qdc`` document."""
    root = etree.Element(f"{{{CODEBOOK_NS}}}CodeBook", nsmap={None: CODEBOOK_NS}, origin=ORIGIN)
    codes = etree.SubElement(root, f"{{{CODEBOOK_NS}}}Codes")
    for code in codebook.roots():
        _code_element(codes, CODEBOOK_NS, codebook, code, None)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)


def export_qdc(codebook: Codebook, path: str | Path) -> Path:
    """Write ``codebook`` to a ``.qdc`` file.

    Examples
    --------
    >>> cb = Codebook([Code("support", "Peer support", color="#1F77B4")])
    >>> p = export_qdc(cb, "doctest.qdc")
    >>> [c.name for c in import_qdc(p)]
    ['Peer support']
    """
    path = Path(path)
    if codebook is None or len(codebook) == 0:
        raise ValueError("a REFI-QDA codebook needs at least one code")
    path.write_bytes(codebook_to_xml(codebook))
    return path


def _read_codes(
    codes_el, ns: str, into: Codebook, guid_to_id: dict[str, str], note_refs: dict[str, list[str]] | None = None
) -> None:
    used = {c.id for c in into}

    def walk(el, parent: str | None) -> None:
        description, extras = _split_extras(el.findtext(f"{{{ns}}}Description"))
        code_id = extras.get("id") or slugify(el.get("name", "code"))
        base, k = code_id, 2
        while code_id in used:
            code_id, k = f"{base}_{k}", k + 1
        used.add(code_id)
        color = el.get("color") or "#888888"
        if len(color) == 4:  # "#abc" is allowed by the standard
            color = "#" + "".join(ch * 2 for ch in color[1:])
        into.add(
            Code(
                id=code_id,
                name=el.get("name", code_id),
                parent=parent,
                description=description,
                inclusion=extras.get("inclusion", ""),
                exclusion=extras.get("exclusion", ""),
                example=extras.get("example", ""),
                color=color.upper(),
                keywords=tuple(extras.get("keywords", ())),
                patterns=tuple(tuple(p) for p in extras.get("patterns", ())),
                codable=el.get("isCodable", "true").lower() == "true",
            )
        )
        guid_to_id[el.get("guid", "").lower()] = code_id
        if note_refs is not None:
            note_refs[code_id] = [r.get("targetGUID", "").lower() for r in el.findall(f"{{{ns}}}NoteRef")]
        for child in el.findall(f"{{{ns}}}Code"):
            walk(child, code_id)

    for el in codes_el.findall(f"{{{ns}}}Code"):
        walk(el, None)


def import_qdc(path: str | Path, *, paths: bool = True) -> Codebook:
    """Read a REFI-QDA ``.qdc`` codebook (or the codebook of a ``project.qde``).

    With ``paths`` (the default), flat names that are paths — Taguette writes its tags as
    ``Benefits.Reduced isolation`` or ``Barriers/Travel`` — become a hierarchy
    (:func:`qualitative.exchange.split_code_paths`).
    """
    root = etree.parse(str(path)).getroot()
    ns = etree.QName(root).namespace
    if ns not in (CODEBOOK_NS, PROJECT_NS):
        raise ValueError(f"not a REFI-QDA codebook: namespace {ns!r}")
    codes = root.find(f"{{{ns}}}Codes")
    if codes is None:
        codes = root.find(f"{{{ns}}}CodeBook/{{{ns}}}Codes")
    if codes is None:
        raise ValueError("no Codes element found")
    cb = Codebook(name=Path(path).stem)
    _read_codes(codes, ns, cb, {})
    if paths:
        from .exchange import split_code_paths

        cb = split_code_paths(cb)
    return cb


# --------------------------------------------------------------------------- project


def project_to_xml(corpus: CodedCorpus) -> tuple[bytes, dict[str, str]]:
    """Serialise a corpus as ``project.qde``; returns (xml, {source file name: text})."""
    corpus.validate()
    P = f"{{{PROJECT_NS}}}"
    now = _dt(None)
    users = sorted({c.coder for c in corpus.codings if c.coder} | {m.author for m in corpus.memos if m.author})
    user_guid = {u: _guid("user", u) for u in users}

    note_guid = {m.id: _as_guid("note", m.id) for m in corpus.memos}
    code_notes: dict[str, list[str]] = {}
    source_notes: dict[str, list[str]] = {}
    coding_notes: dict[str, list[str]] = {}
    segment_memos: dict[str, list[Memo]] = {}
    project_notes: list[str] = []
    for m in corpus.memos:
        g = note_guid[m.id]
        if m.target == "code":
            code_notes.setdefault(m.target_id, []).append(g)
        elif m.target == "transcript":
            source_notes.setdefault(m.target_id, []).append(g)
        elif m.target == "coding":
            coding_notes.setdefault(m.target_id, []).append(g)
        elif m.target == "segment":
            segment_memos.setdefault(m.target_id, []).append(m)
        else:
            project_notes.append(g)

    root = etree.Element(f"{P}Project", nsmap={None: PROJECT_NS}, name=corpus.name, origin=ORIGIN, creationDateTime=now)
    if users:
        users_el = etree.SubElement(root, f"{P}Users")
        for u in users:
            etree.SubElement(users_el, f"{P}User", guid=user_guid[u], name=u)
    if len(corpus.codebook):
        codes_el = etree.SubElement(etree.SubElement(root, f"{P}CodeBook"), f"{P}Codes")
        for code in corpus.codebook.roots():
            _code_element(codes_el, PROJECT_NS, corpus.codebook, code, code_notes)

    if corpus.cases:
        case_sources: dict[str, list[str]] = {}
        for t in corpus.transcripts:
            for p in dict.fromkeys([*(t.participants or []), *([t.participant] if t.participant else [])]):
                case_sources.setdefault(p, []).append(_guid("source", t.id))
        write_cases(root, PROJECT_NS, corpus.cases, case_sources, before=None)

    files: dict[str, str] = {}
    if corpus.transcripts:
        sources_el = etree.SubElement(root, f"{P}Sources")
        for t in corpus.transcripts:
            sg = _guid("source", t.id)
            fname = f"{sg}.txt"
            files[fname] = t.text
            src = etree.SubElement(
                sources_el,
                f"{P}TextSource",
                guid=sg,
                name=t.id,
                plainTextPath=f"internal://{fname}",
                creationDateTime=now,
            )
            desc = _with_extras(
                "",
                {
                    "id": t.id,
                    "participant": t.participant,
                    "wave": t.wave,
                    "kind": t.kind,
                    "participants": t.participants,
                    "source_format": t.source_format,
                    "metadata": t.metadata,
                    "turns": [[u.speaker, u.start, u.end, u.start_time, u.end_time, u.role] for u in t.turns],
                },
            )
            etree.SubElement(src, f"{P}Description").text = desc
            for c in sorted((c for c in corpus.codings if c.transcript == t.id), key=lambda c: (c.start, c.end)):
                attrs = {
                    "guid": _guid("selection", c.id),
                    "name": c.code,
                    "startPosition": str(c.start),
                    "endPosition": str(c.end),
                }
                if c.coder:
                    attrs["creatingUser"] = user_guid[c.coder]
                attrs["creationDateTime"] = _dt(c.created)
                sel = etree.SubElement(src, f"{P}PlainTextSelection", **attrs)
                if c.memo:
                    etree.SubElement(sel, f"{P}Description").text = c.memo
                cattrs = {"guid": _as_guid("coding", c.id)}
                if c.coder:
                    cattrs["creatingUser"] = user_guid[c.coder]
                coding_el = etree.SubElement(sel, f"{P}Coding", **cattrs)
                etree.SubElement(coding_el, f"{P}CodeRef", targetGUID=_guid("code", c.code))
                for g in coding_notes.get(c.id, []):
                    etree.SubElement(coding_el, f"{P}NoteRef", targetGUID=g)
            for m in segment_memos.get(t.id, []):
                sel = etree.SubElement(
                    src,
                    f"{P}PlainTextSelection",
                    guid=_guid("memo-selection", m.id),
                    name=m.title or "memo",
                    startPosition=str(m.start),
                    endPosition=str(m.end),
                )
                etree.SubElement(sel, f"{P}NoteRef", targetGUID=note_guid[m.id])
            for g in source_notes.get(t.id, []):
                etree.SubElement(src, f"{P}NoteRef", targetGUID=g)

    if corpus.memos:
        notes_el = etree.SubElement(root, f"{P}Notes")
        for m in corpus.memos:
            attrs = {"guid": note_guid[m.id], "name": m.title or f"{m.target} memo", "creationDateTime": _dt(m.created)}
            if m.author:
                attrs["creatingUser"] = user_guid[m.author]
            note = etree.SubElement(notes_el, f"{P}Note", **attrs)
            etree.SubElement(note, f"{P}PlainTextContent").text = m.text
    for g in project_notes:
        etree.SubElement(root, f"{P}NoteRef", targetGUID=g)
    xml = etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)
    return xml, files


def export_qdpx(corpus: CodedCorpus, path: str | Path) -> Path:
    """Write a coded corpus as a REFI-QDA ``.qdpx`` archive.

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> t = parse_text("P01: I felt less alone.", id="p01-w1", participant="P01")
    >>> cb = Codebook([Code("isolation", "Reduced isolation")])
    >>> corpus = CodedCorpus([t], cb, [Coding("p01-w1", "isolation", 5, 23, "ana")])
    >>> back = import_qdpx(export_qdpx(corpus, "doctest.qdpx"))
    >>> [(c.code, c.start, c.end, c.coder) for c in back.codings]
    [('isolation', 5, 23, 'ana')]
    """
    path = Path(path)
    xml, files = project_to_xml(corpus)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("project.qde", xml)
        for name, text in files.items():
            # Bytes, not str: no newline translation, so positions stay exact.
            z.writestr(f"sources/{name}", text.encode("utf-8"))
    return path


def _source_text(z: zipfile.ZipFile, src, P: str) -> str | None:
    inline = src.findtext(f"{P}PlainTextContent")
    if inline is not None:
        return inline
    ref = src.get("plainTextPath")
    if not ref:
        return None
    if ref.startswith("internal://"):
        name = ref[len("internal://") :]
        candidates = [f"sources/{name}", f"Sources/{name}"]
    else:
        candidates = [PurePosixPath(ref).name]
    names = set(z.namelist())
    for c in candidates:
        if c in names:
            return z.read(c).decode("utf-8-sig")
    for n in names:  # some writers vary the folder's case
        if n.lower().endswith("/" + candidates[0].split("/")[-1].lower()):
            return z.read(n).decode("utf-8-sig")
    return None


def import_qdpx(path: str | Path) -> CodedCorpus:
    """Read a REFI-QDA ``.qdpx`` archive into a :class:`CodedCorpus`.

    Text sources become transcripts (turns restored from the Peerlens
    description when present, else re-parsed from ``Label: text`` lines);
    every ``PlainTextSelection`` with a ``Coding`` becomes one
    :class:`Coding` per code reference; notes become memos attached to the
    element that refers to them.
    """
    with zipfile.ZipFile(path) as z:
        root = etree.fromstring(z.read("project.qde"))
        ns = etree.QName(root).namespace
        if ns != PROJECT_NS:
            raise ValueError(f"not a REFI-QDA project: namespace {ns!r}")
        P = f"{{{ns}}}"
        users = {
            u.get("guid", "").lower(): (u.get("name") or u.get("id") or u.get("guid"))
            for u in root.iterfind(f"{P}Users/{P}User")
        }

        def user(g: str | None) -> str | None:
            return users.get(g.lower(), g) if g else None

        cb = Codebook(name=root.get("name", "Codebook"))
        guid_to_code: dict[str, str] = {}
        code_note_refs: dict[str, list[str]] = {}
        codes_el = root.find(f"{P}CodeBook/{P}Codes")
        if codes_el is not None:
            _read_codes(codes_el, ns, cb, guid_to_code, code_note_refs)

        notes = {}
        for n in root.iterfind(f"{P}Notes/{P}Note"):
            notes[n.get("guid", "").lower()] = n
        memos: list[Memo] = []

        def memo(note_guid: str, target: str, target_id: str | None, start=None, end=None) -> None:
            n = notes.get(note_guid.lower())
            if n is None:
                return
            memos.append(
                Memo(
                    text=n.findtext(f"{P}PlainTextContent") or "",
                    target=target,
                    target_id=target_id,
                    author=user(n.get("creatingUser")),
                    start=start,
                    end=end,
                    title=n.get("name", ""),
                    id=n.get("guid"),
                    created=_parse_dt(n.get("creationDateTime")) or datetime.now(UTC),
                )
            )

        for code_id, refs in code_note_refs.items():
            for g in refs:
                memo(g, "code", code_id)

        transcripts: list[Transcript] = []
        codings: list[Coding] = []
        for src in root.iterfind(f"{P}Sources/{P}TextSource"):
            text = _source_text(z, src, P)
            if text is None:
                continue
            _, extras = _split_extras(src.findtext(f"{P}Description"))
            tid = extras.get("id") or src.get("name") or src.get("guid")
            if "turns" in extras:
                t = Transcript(
                    id=tid,
                    text=text,
                    turns=[Turn(s, a, b, t0, t1, role) for s, a, b, t0, t1, role in extras["turns"]],
                    participant=extras.get("participant"),
                    wave=extras.get("wave"),
                    participants=list(extras.get("participants") or []),
                    kind=extras.get("kind", "interview"),
                    source_format=extras.get("source_format", "text"),
                    metadata=extras.get("metadata") or {},
                )
            else:
                t = parse_text(text, id=tid, participant=extras.get("participant"), wave=extras.get("wave"))
            transcripts.append(t)
            for sel in src.iterfind(f"{P}PlainTextSelection"):
                start, end = int(sel.get("startPosition")), int(sel.get("endPosition"))
                coding_els = sel.findall(f"{P}Coding")
                for coding_el in coding_els:
                    ref = coding_el.find(f"{P}CodeRef")
                    code_id = guid_to_code.get((ref.get("targetGUID") if ref is not None else "").lower())
                    if code_id is None:
                        continue
                    coder = user(coding_el.get("creatingUser") or sel.get("creatingUser")) or "unknown"
                    c = Coding(
                        tid,
                        code_id,
                        start,
                        end,
                        coder=coder,
                        memo=sel.findtext(f"{P}Description"),
                        id=coding_el.get("guid"),
                        created=_parse_dt(sel.get("creationDateTime")),
                    )
                    codings.append(c)
                    for r in coding_el.iterfind(f"{P}NoteRef"):
                        memo(r.get("targetGUID", ""), "coding", c.id)
                if not coding_els:
                    for r in sel.iterfind(f"{P}NoteRef"):
                        memo(r.get("targetGUID", ""), "segment", tid, start, end)
            for r in src.iterfind(f"{P}NoteRef"):
                memo(r.get("targetGUID", ""), "transcript", tid)
        for r in root.iterfind(f"{P}NoteRef"):
            memo(r.get("targetGUID", ""), "project", None)
    cases, _ = read_cases(root, ns)
    return CodedCorpus(
        transcripts=transcripts,
        codebook=cb,
        codings=codings,
        memos=memos,
        name=root.get("name", "Peerlens project"),
        cases=cases,
    )
