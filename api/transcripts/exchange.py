"""Imports from other QDA tools: REFI-QDA codebooks and projects, Taguette codebook CSVs and Taguette
project databases; and the codebook CSV export.

Codes whose key already exists in the study but differ (name, codability or parent) are
*conflicts*: without ``on_conflict`` the import is refused with a 409 listing them and nothing is
written; ``merge`` uses the study's code, ``rename`` creates the incoming one under a new key,
``skip`` leaves it (and its codings) out. Identical codes are reused silently.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

import qualitative as q
from api.audit.service import record
from api.auth.service import Actor
from api.errors import Conflict, Unprocessable, error
from api.participants.models import Participant
from api.studies.models import Study
from api.transcripts import codebook, service
from api.transcripts.analysis import Corpus
from api.transcripts.models import QualCode, QualCoding, QualMemo

ON_CONFLICT = ("merge", "rename", "skip")


def _refused(fmt: str) -> Unprocessable:
    return Unprocessable(["body", "file"], f"not a valid {fmt} file", "invalid_import")


def detect_format(data: bytes, filename: str) -> str:
    """``qdpx`` (zip), ``taguette`` (SQLite), ``qdc`` (XML) or ``codebook_csv``."""
    if data[:4] == b"PK\x03\x04":
        return "qdpx"
    if data[:16] == b"SQLite format 3\x00":
        return "taguette"
    head = data[:200].lstrip(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"<"):
        return "qdc"
    if filename.lower().endswith(".csv") or b"," in data[:2000]:
        return "codebook_csv"
    raise Unprocessable(
        ["body", "file"],
        "unknown file: send a REFI-QDA .qdc or .qdpx, a Taguette project (.sqlite3) or a codebook .csv",
        "unsupported_format",
    )


def parse(data: bytes, fmt: str, participants: list[str]) -> tuple[q.Codebook, q.CodedCorpus | None]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"import.{fmt}"
        path.write_bytes(data)
        try:
            if fmt == "qdpx":
                lib = q.import_qdpx(path)
                lib.validate()
                return lib.codebook, lib
            if fmt == "taguette":
                lib = q.read_taguette(path, participants=participants)
                lib.validate()
                return lib.codebook, lib
            if fmt == "qdc":
                return q.import_qdc(path), None
            try:
                return q.codebook_from_csv(data), None
            except UnicodeDecodeError:
                raise Unprocessable(["body", "file"], "a codebook CSV must be UTF-8", "invalid_import") from None
            except ValueError as exc:
                raise Unprocessable(["body", "file"], f"codebook CSV: {exc}", "invalid_import") from None
        except Unprocessable:
            raise
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError, OSError, IndexError):
            raise _refused(fmt) from None
        except Exception:  # noqa: BLE001 - XML parser errors and the like: still the file's fault
            raise _refused(fmt) from None


def _conflicts(cb: q.Codebook, existing: dict[str, QualCode], parents: dict[int, str]) -> list[dict[str, Any]]:
    out = []
    for code in cb:
        row = existing.get(code.id[:80])
        if row is None:
            continue
        theirs = {"name": code.name[:200], "codable": code.codable, "parent": code.parent}
        ours = {
            "name": row.name,
            "codable": row.codable,
            "parent": parents.get(row.parent_id) if row.parent_id else None,
        }
        differs = [k for k in theirs if theirs[k] != ours[k]]
        if differs:
            out.append({"key": code.id[:80], "differs": differs, "study": ours, "incoming": theirs})
    return out


def import_file(
    session: Session,
    study: Study,
    actor: Actor,
    data: bytes,
    filename: str,
    settings,
    on_conflict: str | None = None,
) -> dict[str, Any]:
    """Import codes (and, from a project, sources, codings and memos) into ``study``.

    Sources are de-identified again with the vault of the participants they name and the study's
    terms; codings are mapped to the new text and keep their coder names.
    """
    fmt = detect_format(data, filename)
    people = {p.study_code: p for p in session.exec(select(Participant).where(Participant.study_id == study.id)).all()}
    cb, lib = parse(data, fmt, list(people))
    existing = {c.key: c for c in codebook.codes_of(session, study.id)}
    by_id = {c.id: c.key for c in existing.values()}
    conflicts = _conflicts(cb, existing, by_id)
    if conflicts and on_conflict is None:
        msg = (
            f"{len(conflicts)} imported code(s) clash with the study's codes of the same key: "
            + ", ".join(c["key"] for c in conflicts[:20])
            + "; choose on_conflict=merge, rename or skip"
        )
        raise Conflict(errors=[{**error(["body", "on_conflict"], msg, "code_conflict"), "conflicts": conflicts}])
    clash = {c["key"] for c in conflicts}
    report: dict[str, Any] = {
        "format": fmt,
        "codes_created": 0,
        "codes_existing": 0,
        "codes_renamed": 0,
        "codes_skipped": 0,
        "codings_skipped": 0,
        "conflicts": conflicts,
        "on_conflict": on_conflict,
        "transcripts": 0,
        "codings": 0,
        "memos": 0,
        "replacements": 0,
        "unmatched_participants": 0,
    }
    ids: dict[str, int] = {}
    skipped: set[str] = set()
    pending = list(cb)
    while pending:
        rest = []
        for code in pending:
            if code.parent and code.parent not in ids and code.parent not in skipped:
                rest.append(code)
                continue
            key = code.id[:80]
            if key in existing and (key not in clash or on_conflict == "merge"):
                ids[code.id] = existing[key].id
                report["codes_existing"] += 1
                continue
            if key in clash and on_conflict == "skip":
                skipped.add(code.id)
                report["codes_skipped"] += 1
                continue
            if key in existing:  # rename
                base, k = key[:76], 2
                while f"{base}_{k}" in existing:
                    k += 1
                key = f"{base}_{k}"
                report["codes_renamed"] += 1
            row = QualCode(
                study_id=study.id,
                key=key,
                name=code.name[:200],
                parent_id=ids.get(code.parent) if code.parent else None,
                description=code.description,
                inclusion=code.inclusion,
                exclusion=code.exclusion,
                example=code.example,
                color=code.color,
                keywords=list(code.keywords),
                patterns=[list(p) for p in code.patterns],
                codable=code.codable,
            )
            session.add(row)
            session.flush()
            existing[key] = row
            ids[code.id] = row.id
            codebook.record_history(session, row, "add", {"imported_from": fmt}, actor)
            report["codes_created"] += 1
        if len(rest) == len(pending):
            raise Unprocessable(["body", "file"], "the codebook's parent references form a cycle", "invalid_import")
        pending = rest
    if lib is not None:
        _import_sources(session, study, actor, lib, ids, people, report, settings)
    session.flush()
    audit = {k: v for k, v in report.items() if k != "conflicts"} | {"conflict_keys": sorted(clash)}
    record(session, actor, "create", "qda_import", fmt, study_id=study.id, after=audit)
    return report


def _import_sources(session, study, actor, lib: q.CodedCorpus, ids, people, report, settings) -> None:
    waves = {code: wid for wid, code in service.wave_codes(session, study.id).items()}
    source_ids: dict[str, int] = {}
    results: dict[str, q.DeidResult] = {}
    for t in lib.transcripts:
        labels = list(dict.fromkeys(t.participants or ([t.participant] if t.participant else [])))
        matched = [people[c] for c in labels if c in people]
        report["unmatched_participants"] += len(labels) - len(matched)
        wave = session.get(service.Wave, waves[t.wave]) if t.wave in waves else None
        kind = t.kind if t.kind in ("interview", "focus_group") else "interview"
        if kind == "interview" and len(matched) != 1:
            kind = "focus_group" if len(matched) > 1 else kind
        row, result = service.store_transcript(
            session,
            study,
            actor,
            t,
            participants=matched,
            wave=wave,
            kind=kind,
            title=f"imported source {report['transcripts'] + 1}",
            filename=None,
            settings=settings,
            source_format="refi" if report["format"] == "qdpx" else report["format"],
        )
        if not matched:
            row.participant_codes = []  # labels from another study are not this study's codes
            session.add(row)
        source_ids[t.id] = row.id
        results[t.id] = result
        report["transcripts"] += 1
        report["replacements"] += len(result.replacements)
    for c in lib.codings:
        if c.code not in ids:
            report["codings_skipped"] += 1
            continue
        r = results[c.transcript]
        start, end = r.map_offset(c.start, "start"), r.map_offset(c.end, "end")
        if end <= start:
            continue
        session.add(
            QualCoding(
                study_id=study.id,
                transcript_id=source_ids[c.transcript],
                code_id=ids[c.code],
                start=start,
                end=end,
                coder=(c.coder or "imported")[:320],
                memo=c.memo,
            )
        )
        report["codings"] += 1
    for m in lib.memos:
        target_id, start, end = None, m.start, m.end
        if m.target == "code" and m.target_id in ids:
            target_id = ids[m.target_id]
        elif m.target in ("transcript", "segment") and m.target_id in source_ids:
            target_id = source_ids[m.target_id]
            if m.target == "segment":
                r = results[m.target_id]
                start, end = r.map_offset(m.start, "start"), r.map_offset(m.end, "end")
        elif m.target != "project":
            continue  # memos on codings (or on skipped codes) have no place of their own here
        session.add(
            QualMemo(
                study_id=study.id,
                target=m.target if m.target != "coding" else "project",
                target_id=target_id,
                start=start,
                end=end,
                title=(m.title or "")[:200],
                text=m.text,
                author=(m.author or None) and m.author[:320],
            )
        )
        report["memos"] += 1


def export_codebook_csv(corpus: Corpus) -> bytes:
    """Taguette's codebook CSV (UTF-8 with BOM) with the number of codings and transcripts per code."""
    return q.codebook_to_csv(corpus.codebook, corpus.library_codings())
