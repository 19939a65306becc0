"""Business rules of the qualitative layer: upload with de-identification, codebook, codings, memos
and auto-coding suggestions. Services flush; routers commit once.

Examples
--------
>>> upload_transcript(session, study, actor, data=b"Interviewer: Hi\\nP01: Hello", filename="p01.txt",
...                   participants=["P01"], wave="baseline", settings=settings)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, func, update
from sqlmodel import Session, select

import qualitative as q  # names load on first use: spaCy only when a transcript is parsed
from api.audit.service import record
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Conflict, NotFound, Unprocessable
from api.inputguard import decode_upload
from api.participants.models import Participant, ParticipantContact
from api.studies.models import Study, Wave
from api.transcripts.models import (
    CodeHistory,
    QualCode,
    QualCoding,
    QualMemo,
    Suggestion,
    Transcript,
    TranscriptOriginal,
)
from api.transcripts.terms import study_terms

SUFFIX_FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".vtt": "vtt",
    ".srt": "srt",
    ".docx": "docx",
}
# Parser function names in :mod:`qualitative`, looked up when a file is parsed.
PARSERS = {"text": "parse_text", "markdown": "parse_markdown", "vtt": "parse_vtt", "srt": "parse_srt"}


# --------------------------------------------------------------------------- NER pipeline


@lru_cache(maxsize=4)
def ner_setting(model: str) -> tuple[str | None, str | None]:
    """Resolve the configured model once per process: ``(model for deidentify, warning)``.

    ``"auto"`` becomes the installed pipeline's name or ``None``; the pipeline itself is loaded
    here, once, and kept by :func:`qualitative.load_ner_model`'s cache, so requests never load it.
    """
    if model.lower() in ("none", "off", ""):
        return None, "statistical NER is off (PEERLENS_SPACY_MODEL=none): only rule-based de-identification ran"
    nlp, warning = q.load_ner_model(model)  # raises NERModelNotFound for a named model that is missing
    if nlp is None:
        return None, warning
    return (model if model != "auto" else nlp.meta.get("lang", "en") + "_" + nlp.meta.get("name", "")), None


def _ner_model(settings) -> tuple[str | None, str | None]:
    try:
        return ner_setting(settings.spacy_model)
    except q.NERModelNotFound:
        # A configured model that cannot be loaded is a deployment error; de-identification still
        # runs (rule-based) and the response says NER was off, rather than refusing uploads.
        return None, (
            "statistical NER is off: the configured PEERLENS_SPACY_MODEL cannot be loaded; "
            "only rule-based de-identification ran"
        )


# --------------------------------------------------------------------------- transcripts


def coder_label(actor: Actor) -> str:
    """The name a coding is attributed to (the user's login)."""
    return actor.email or actor.role


def _participants(session: Session, study: Study, codes: Sequence[str], actor: Actor) -> list[Participant]:
    out = []
    for i, code in enumerate(codes):
        p = session.exec(
            select(Participant).where(Participant.study_id == study.id, Participant.study_code == code)
        ).first()
        if p is None or not actor.sees_site(p.site_id):
            raise Unprocessable(
                ["body", "participants", i], "no participant with this study code in the study", "unknown_participant"
            )
        out.append(p)
    return out


def _wave(session: Session, study: Study, code: str | None, loc=("body", "wave")) -> Wave | None:
    if not code:
        return None
    w = session.exec(select(Wave).where(Wave.study_id == study.id, Wave.code == code)).first()
    if w is None:
        raise Unprocessable(list(loc), "unknown wave code for this study", "unknown_wave")
    return w


def vault_for(session: Session, participants: Iterable[Participant]) -> q.VaultIdentifiers:
    """The participants' own identifiers from the contact vault (never stored with the transcript)."""
    ids = [p.id for p in participants]
    if not ids:
        return q.VaultIdentifiers()
    contacts = session.exec(select(ParticipantContact).where(ParticipantContact.participant_id.in_(ids))).all()
    return q.VaultIdentifiers(
        names=[c.name for c in contacts if c.name],
        emails=[c.email for c in contacts if c.email],
        phones=[c.phone for c in contacts if c.phone],
    )


def parse_upload(
    data: bytes,
    filename: str,
    fmt: str | None,
    *,
    participant: str | None,
    wave: str | None,
    kind: str | None,
    interviewer_labels: Sequence[str] | None,
) -> q.Transcript:
    """Parse an uploaded file; any failure is a 422 naming ``file`` (never the file's content)."""
    if fmt is None:
        suffix = ("." + filename.rsplit(".", 1)[-1].lower()) if "." in filename else ""
        fmt = SUFFIX_FORMATS.get(suffix)
        if fmt is None:
            raise Unprocessable(
                ["body", "file"],
                "unsupported file type: use .txt, .md, .vtt, .srt or .docx (or give format)",
                "unsupported_format",
            )
    kwargs: dict[str, Any] = {"participant": participant, "wave": wave, "kind": kind}
    if interviewer_labels:
        kwargs["interviewer_labels"] = {x.lower() for x in interviewer_labels}
    try:
        if fmt == "docx":
            t = q.parse_docx(io.BytesIO(data), id="upload", **kwargs)
        else:
            text = decode_upload(data, ["body", "file"], message="text files must be UTF-8")
            t = getattr(q, PARSERS[fmt])(text, id="upload", **kwargs)
    except Unprocessable:
        raise
    except Exception:  # noqa: BLE001 - a malformed file of any kind is the client's error
        raise Unprocessable(["body", "file"], f"the file cannot be read as {fmt}", "invalid_file") from None
    if not t.text.strip():
        raise Unprocessable(["body", "file"], "the transcript is empty", "empty_transcript")
    return t


def _relabel(t: q.Transcript, speaker_map: dict[str, str]) -> q.Transcript:
    """Turns whose label is mapped get the participant's study code as speaker (focus groups)."""
    if not speaker_map:
        return t
    turns = [
        q.Turn(speaker_map.get(u.speaker, u.speaker), u.start, u.end, u.start_time, u.end_time, u.role) for u in t.turns
    ]
    return t.with_text(t.text, turns)


def _turn_dicts(turns: Iterable[q.Turn]) -> list[dict[str, Any]]:
    return [asdict(u) for u in turns]


def _counts(replacements: Iterable[q.Replacement]) -> dict[str, int]:
    return dict(sorted(Counter(r.type for r in replacements).items()))


def store_transcript(
    session: Session,
    study: Study,
    actor: Actor,
    parsed: q.Transcript,
    *,
    participants: list[Participant],
    wave: Wave | None,
    kind: str,
    title: str,
    filename: str | None,
    settings,
    source_format: str | None = None,
    audit_action: str = "create",
) -> tuple[Transcript, q.DeidResult]:
    """De-identify ``parsed`` with the participants' vault identifiers and store both halves."""
    model, warning = _ner_model(settings)
    vault = vault_for(session, participants)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "NER is off" warning is reported in the response
        result = q.deidentify(parsed, vault=vault, model=model, terms=study_terms(session, study))
    if warning and warning not in result.warnings:
        result.warnings.append(warning)
    sites = {p.site_id for p in participants}
    row = Transcript(
        study_id=study.id,
        site_id=sites.pop() if len(sites) == 1 else None,
        wave_id=wave.id if wave else None,
        participant_id=participants[0].id if kind == "interview" and len(participants) == 1 else None,
        participant_ids=[p.id for p in participants],
        participant_codes=[p.study_code for p in participants],
        kind=kind,
        source_format=source_format or parsed.source_format,
        title=title,
        text=result.text,
        turns=_turn_dicts(result.turns),
        ner=result.ner,
        ner_model=result.model,
        replacement_counts=_counts(result.replacements),
        created_by=actor.user_id,
    )
    session.add(row)
    session.flush()
    session.add(
        TranscriptOriginal(
            transcript_id=row.id,
            filename=filename,
            text=parsed.text,
            replacements=[asdict(r) for r in result.replacements],
        )
    )
    # Counts only: the audit trail is read by people who may not see identifiers.
    record(
        session,
        actor,
        audit_action,
        "transcript",
        row.id,
        study_id=study.id,
        site_id=row.site_id,
        after={
            "kind": kind,
            "source_format": row.source_format,
            "wave": wave.code if wave else None,
            "participants": row.participant_codes,
            "length": len(row.text),
            "turns": len(row.turns),
            "ner": row.ner,
            "replacements": row.replacement_counts,
        },
    )
    return row, result


def upload_transcript(
    session: Session,
    study: Study,
    actor: Actor,
    *,
    data: bytes,
    filename: str,
    participants: Sequence[str],
    wave: str | None,
    kind: str | None,
    fmt: str | None,
    title: str | None,
    interviewer_labels: Sequence[str] | None,
    speaker_map: dict[str, str] | None,
    settings,
) -> tuple[Transcript, q.DeidResult]:
    """Parse, de-identify and store an uploaded transcript.

    One participant makes an interview; several (or ``kind="focus_group"``) a focus group whose
    turns are attributed through speaker labels equal to study codes or mapped by ``speaker_map``.
    A ``title`` is shown to analysts, so it is de-identified with the same vault as the text.
    """
    if not participants:
        raise Unprocessable(["body", "participants"], "name at least one participant (study code)", "missing")
    if len(set(participants)) != len(participants):
        raise Unprocessable(["body", "participants"], "participants are listed twice", "duplicate")
    people = _participants(session, study, participants, actor)
    w = _wave(session, study, wave)
    kind = kind or ("interview" if len(people) == 1 else "focus_group")
    if kind == "interview" and len(people) != 1:
        raise Unprocessable(["body", "kind"], "an interview has exactly one participant", "invalid_kind")
    speaker_map = speaker_map or {}
    unknown = [k for k, v in speaker_map.items() if v not in participants]
    if unknown:
        raise Unprocessable(
            ["body", "speaker_map"], "every mapped speaker must map to one of the participants", "unknown_participant"
        )
    parsed = parse_upload(
        data,
        filename,
        fmt,
        participant=participants[0] if kind == "interview" else None,
        wave=wave,
        kind=kind,
        interviewer_labels=interviewer_labels,
    )
    parsed = _relabel(parsed, speaker_map)
    parsed.participants = list(participants)
    if title:
        safe_title = _deidentified_title(session, study, people, title)
    else:
        safe_title = f"{kind.replace('_', ' ')} {', '.join(participants)}" + (f" ({wave})" if wave else "")
    return store_transcript(
        session,
        study,
        actor,
        parsed,
        participants=people,
        wave=w,
        kind=kind,
        title=safe_title[:200],
        filename=filename[:300],
        settings=settings,
    )


def _deidentified_title(session: Session, study: Study, people: list[Participant], title: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rule-based only: no "NER is off" warning for a title
        vault = vault_for(session, people)
        return q.deidentify(title, vault=vault, model=None, terms=study_terms(session, study)).text[:200]


def visible_transcripts(session: Session, study: Study, actor: Actor) -> list[Transcript]:
    """The study's transcripts the actor may see (coordinators: their sites only)."""
    rows = session.exec(select(Transcript).where(Transcript.study_id == study.id).order_by(Transcript.id)).all()
    return [t for t in rows if actor.sees_site(t.site_id)]


def wave_codes(session: Session, study_id: int) -> dict[int, str]:
    return {w.id: w.code for w in session.exec(select(Wave).where(Wave.study_id == study_id)).all()}


def to_library(t: Transcript, waves: dict[int, str]) -> q.Transcript:
    """A stored transcript as the library's :class:`qualitative.Transcript` (id = the row id)."""
    turns = [q.Turn(**u) for u in t.turns]
    return q.Transcript(
        id=str(t.id),
        text=t.text,
        turns=turns,
        participant=t.participant_codes[0] if t.kind == "interview" and t.participant_codes else None,
        wave=waves.get(t.wave_id) if t.wave_id else None,
        participants=list(t.participant_codes),
        kind=t.kind,
        source_format=t.source_format,
    )


def summary(t: Transcript, waves: dict[int, str]) -> dict[str, Any]:
    return {
        "id": t.id,
        "study_id": t.study_id,
        "kind": t.kind,
        "source_format": t.source_format,
        "title": t.title,
        "participants": t.participant_codes,
        "wave": waves.get(t.wave_id) if t.wave_id else None,
        "length": len(t.text),
        "n_turns": len(t.turns),
        "ner": t.ner,
        "created_at": t.created_at,
    }


def read(t: Transcript, waves: dict[int, str]) -> dict[str, Any]:
    return {**summary(t, waves), "text": t.text, "turns": t.turns}


def original(session: Session, t: Transcript) -> dict[str, Any]:
    row = session.get(TranscriptOriginal, t.id)
    if row is None:
        raise NotFound(["path", "transcript_id"], "no original kept for this transcript")
    return {"transcript_id": t.id, "filename": row.filename, "text": row.text, "replacements": row.replacements}


# --------------------------------------------------------------------------- codebook


def codes_of(session: Session, study_id: int) -> list[QualCode]:
    return list(session.exec(select(QualCode).where(QualCode.study_id == study_id).order_by(QualCode.id)).all())


def codebook(codes: Sequence[QualCode]) -> q.Codebook:
    """The study's codes as a library :class:`qualitative.Codebook` (code ids = keys)."""
    by_id = {c.id: c for c in codes}
    cb = q.Codebook()
    pending = list(codes)
    while pending:
        rest = []
        for c in pending:
            parent = by_id.get(c.parent_id) if c.parent_id else None
            if parent is not None and parent.key not in cb:
                rest.append(c)
                continue
            cb.add(
                q.Code(
                    c.key,
                    c.name,
                    parent=parent.key if parent else None,
                    description=c.description,
                    inclusion=c.inclusion,
                    exclusion=c.exclusion,
                    example=c.example,
                    color=c.color,
                    keywords=tuple(c.keywords),
                    patterns=tuple(tuple(p) for p in c.patterns),
                    codable=c.codable,
                )
            )
        if len(rest) == len(pending):  # a cycle cannot be stored, but never loop forever
            break
        pending = rest
    return cb


def code_read(c: QualCode, by_id: dict[int, QualCode]) -> dict[str, Any]:
    names, cur, seen = [], c, set()
    while cur is not None and cur.id not in seen:
        seen.add(cur.id)
        names.append(cur.name)
        cur = by_id.get(cur.parent_id) if cur.parent_id else None
    data = c.model_dump()
    data["path"] = " / ".join(reversed(names))
    return data


def _check_patterns(name: str, keywords: list[str], patterns: list) -> None:
    """Build a matcher with the code alone so that a bad pattern fails here, not at suggestion time."""
    try:
        q.AutoCoder(
            q.Codebook(
                [q.Code("check", name or "check", keywords=tuple(keywords), patterns=tuple(tuple(p) for p in patterns))]
            )
        )
    except Exception:  # noqa: BLE001 - spaCy raises several kinds of errors for bad patterns
        raise Unprocessable(
            ["body", "patterns"], "not a valid spaCy Matcher token pattern", "invalid_pattern"
        ) from None


def _history(session: Session, code: QualCode, action: str, changes: dict, actor: Actor) -> None:
    session.add(
        CodeHistory(
            study_id=code.study_id,
            code_id=code.id,
            code_key=code.key,
            action=action,
            changes=changes,
            by=coder_label(actor),
        )
    )


def _parent(session: Session, study: Study, parent_id: int | None) -> QualCode | None:
    if parent_id is None:
        return None
    p = session.get(QualCode, parent_id)
    if p is None or p.study_id != study.id:
        raise Unprocessable(["body", "parent_id"], "no code with this id in the study's codebook", "unknown_code")
    return p


def create_code(session: Session, study: Study, actor: Actor, body) -> QualCode:
    key = body.key or q.slugify(body.name)
    if not key:
        raise Unprocessable(["body", "name"], "the name gives no usable key; give key", "invalid_key")
    if session.exec(select(QualCode).where(QualCode.study_id == study.id, QualCode.key == key)).first():
        raise Conflict(["body", "key"], "the codebook already has a code with this key", "duplicate_key")
    _parent(session, study, body.parent_id)
    values = body.model_dump(exclude={"key"}, exclude_none=True)
    _check_patterns(body.name, values.get("keywords", []), values.get("patterns", []))
    code = QualCode(study_id=study.id, key=key, **values)
    session.add(code)
    session.flush()
    after = code.model_dump(exclude={"created_at", "updated_at"})
    _history(session, code, "add", after, actor)
    record(session, actor, "create", "code", code.id, study_id=study.id, after=after)
    return code


def update_code(session: Session, code: QualCode, study: Study, actor: Actor, body) -> QualCode:
    changes = body.model_dump(exclude_unset=True)
    if "parent_id" in changes and changes["parent_id"] is not None:
        parent = _parent(session, study, changes["parent_id"])
        cur, seen = parent, set()
        while cur is not None and cur.id not in seen:
            if cur.id == code.id:
                raise Unprocessable(
                    ["body", "parent_id"], "a code cannot be moved under itself or a descendant", "cycle"
                )
            seen.add(cur.id)
            cur = session.get(QualCode, cur.parent_id) if cur.parent_id else None
    for field in (
        "name",
        "codable",
        "color",
        "keywords",
        "patterns",
        "description",
        "inclusion",
        "exclusion",
        "example",
    ):
        if field in changes and changes[field] is None:
            raise Unprocessable(["body", field], "cannot be null", "null_not_allowed")
    _check_patterns(
        changes.get("name", code.name), changes.get("keywords", code.keywords), changes.get("patterns", code.patterns)
    )
    before = {k: getattr(code, k) for k in changes}
    diff = {k: {"old": before[k], "new": v} for k, v in changes.items() if before[k] != v}
    if not diff:
        return code
    for k, v in changes.items():
        setattr(code, k, v)
    code.updated_at = utcnow()
    session.add(code)
    _history(session, code, "move" if set(diff) == {"parent_id"} else "update", diff, actor)
    record(
        session,
        actor,
        "update",
        "code",
        code.id,
        study_id=code.study_id,
        before={k: d["old"] for k, d in diff.items()},
        after={k: d["new"] for k, d in diff.items()},
    )
    session.flush()
    return code


def delete_code(session: Session, code: QualCode, actor: Actor) -> None:
    """Remove a code without codings; its children move up to its parent."""
    n = session.exec(select(func.count()).select_from(QualCoding).where(QualCoding.code_id == code.id)).one()
    if n:
        raise Conflict(["path", "code_id"], f"the code has {n} coding(s); delete or recode them first", "in_use")
    children = session.exec(select(QualCode).where(QualCode.parent_id == code.id)).all()
    for child in children:
        child.parent_id = code.parent_id
        session.add(child)
        _history(session, child, "move", {"parent_id": {"old": code.id, "new": code.parent_id}}, actor)
    removed_suggestions = session.exec(
        select(func.count()).select_from(Suggestion).where(Suggestion.code_id == code.id)
    ).one()
    session.execute(delete(Suggestion).where(Suggestion.code_id == code.id))
    session.execute(delete(QualMemo).where(QualMemo.target == "code", QualMemo.target_id == code.id))
    before = code.model_dump(exclude={"created_at", "updated_at"})
    _history(session, code, "remove", {"reparented": [c.id for c in children]}, actor)
    record(
        session,
        actor,
        "delete",
        "code",
        code.id,
        study_id=code.study_id,
        before=before,
        after={"reparented": [c.id for c in children], "suggestions_removed": removed_suggestions},
    )
    session.flush()
    session.delete(code)
    session.flush()


def history(session: Session, study: Study) -> list[CodeHistory]:
    return list(
        session.exec(select(CodeHistory).where(CodeHistory.study_id == study.id).order_by(CodeHistory.id)).all()
    )


# --------------------------------------------------------------------------- codings and memos


def _code_in_study(session: Session, study_id: int, code_id: int, loc=("body", "code_id")) -> QualCode:
    c = session.get(QualCode, code_id)
    if c is None or c.study_id != study_id:
        raise Unprocessable(list(loc), "no code with this id in the study's codebook", "unknown_code")
    return c


def check_span(t: Transcript, start: int, end: int, loc_prefix=("body",)) -> None:
    n = len(t.text)
    if start >= n:
        raise Unprocessable(
            [*loc_prefix, "start"], f"start must be less than the text length ({n})", "span_out_of_range"
        )
    if end > n:
        raise Unprocessable([*loc_prefix, "end"], f"end must not exceed the text length ({n})", "span_out_of_range")


def coding_read(c: QualCoding, t: Transcript, key: str) -> dict[str, Any]:
    return {
        "id": c.id,
        "transcript_id": c.transcript_id,
        "code_id": c.code_id,
        "code_key": key,
        "start": c.start,
        "end": c.end,
        "coder": c.coder,
        "memo": c.memo,
        "text": t.text[c.start : c.end],
        "created_at": c.created_at,
    }


def add_coding(session: Session, t: Transcript, actor: Actor, body, *, coder: str | None = None) -> QualCoding:
    code = _code_in_study(session, t.study_id, body.code_id)
    if not code.codable:
        raise Unprocessable(
            ["body", "code_id"], "this code groups other codes and is not applied to text", "not_codable"
        )
    check_span(t, body.start, body.end)
    c = QualCoding(
        study_id=t.study_id,
        transcript_id=t.id,
        code_id=code.id,
        start=body.start,
        end=body.end,
        coder=coder or coder_label(actor),
        coder_id=actor.user_id,
        memo=body.memo,
    )
    session.add(c)
    session.flush()
    record(
        session,
        actor,
        "create",
        "coding",
        c.id,
        study_id=t.study_id,
        site_id=t.site_id,
        after={
            "transcript_id": t.id,
            "code_id": code.id,
            "start": c.start,
            "end": c.end,
            "coder": c.coder,
            "memo": bool(c.memo),
        },
    )
    return c


def codings_of(session: Session, transcript_ids: Sequence[int]) -> list[QualCoding]:
    if not transcript_ids:
        return []
    return list(
        session.exec(
            select(QualCoding)
            .where(QualCoding.transcript_id.in_(list(transcript_ids)))
            .order_by(QualCoding.transcript_id, QualCoding.start, QualCoding.id)
        ).all()
    )


def delete_coding(session: Session, c: QualCoding, t: Transcript, actor: Actor) -> None:
    session.execute(update(Suggestion).where(Suggestion.coding_id == c.id).values(coding_id=None))
    record(
        session,
        actor,
        "delete",
        "coding",
        c.id,
        study_id=c.study_id,
        site_id=t.site_id,
        before={
            "transcript_id": c.transcript_id,
            "code_id": c.code_id,
            "start": c.start,
            "end": c.end,
            "coder": c.coder,
        },
    )
    session.delete(c)
    session.flush()


def add_memo(session: Session, study: Study, actor: Actor, body, transcript_lookup) -> QualMemo:
    if body.target == "code":
        _code_in_study(session, study.id, body.target_id, loc=("body", "target_id"))
    elif body.target in ("transcript", "segment"):
        t = transcript_lookup(body.target_id)
        if body.target == "segment":
            check_span(t, body.start, body.end)
    m = QualMemo(
        study_id=study.id,
        target=body.target,
        target_id=body.target_id,
        start=body.start,
        end=body.end,
        title=body.title,
        text=body.text,
        author=coder_label(actor),
    )
    session.add(m)
    session.flush()
    record(
        session,
        actor,
        "create",
        "memo",
        m.id,
        study_id=study.id,
        after={"target": m.target, "target_id": m.target_id, "start": m.start, "end": m.end, "length": len(m.text)},
    )
    return m


def memos_of(
    session: Session, study: Study, actor: Actor, target: str | None = None, target_id: int | None = None
) -> list[QualMemo]:
    """The study's memos in id order, filtered; memos on transcripts ``actor`` may not see are left out."""
    visible = {t.id for t in visible_transcripts(session, study, actor)}
    stmt = select(QualMemo).where(QualMemo.study_id == study.id)
    if target:
        stmt = stmt.where(QualMemo.target == target)
    if target_id is not None:
        stmt = stmt.where(QualMemo.target_id == target_id)
    return [
        m
        for m in session.exec(stmt.order_by(QualMemo.id)).all()
        if m.target not in ("transcript", "segment") or m.target_id in visible
    ]


# --------------------------------------------------------------------------- suggestions


def suggestions_of(session: Session, t: Transcript, status: str | None = None) -> list[Suggestion]:
    """A transcript's suggestions by position, optionally of one status."""
    stmt = select(Suggestion).where(Suggestion.transcript_id == t.id)
    if status:
        stmt = stmt.where(Suggestion.status == status)
    return list(session.exec(stmt.order_by(Suggestion.start, Suggestion.id)).all())


def suggestion_read(s: Suggestion, key: str) -> dict[str, Any]:
    return {
        "id": s.id,
        "transcript_id": s.transcript_id,
        "code_id": s.code_id,
        "code_key": key,
        "start": s.start,
        "end": s.end,
        "text": s.text,
        "rule": s.rule,
        "status": s.status,
        "decided_by": s.decided_by,
        "coding_id": s.coding_id,
    }


def suggest(session: Session, t: Transcript, actor: Actor, waves: dict[int, str]) -> list[Suggestion]:
    """Run the auto-coder on one transcript and store new suggestions; return the pending ones.

    Rejected (and accepted) suggestions keep their rows, and identical spans are never inserted
    again, so a rejected suggestion is not proposed a second time; existing codings are skipped.
    """
    codes = codes_of(session, t.study_id)
    by_key = {c.key: c for c in codes}
    lib = to_library(t, waves)
    known = session.exec(select(Suggestion).where(Suggestion.transcript_id == t.id)).all()
    ledger = q.SuggestionLedger()
    decided = {(str(t.id), next((c.key for c in codes if c.id == s.code_id), ""), s.start, s.end) for s in known}
    existing = [
        q.Coding(str(t.id), next((c.key for c in codes if c.id == x.code_id), "?"), x.start, x.end, x.coder)
        for x in codings_of(session, [t.id])
    ]
    cb = codebook([c for c in codes if c.keywords or c.patterns])
    new = 0
    if len(cb):
        for s in q.AutoCoder(cb).suggest([lib], ledger=ledger, codings=existing):
            if (s.transcript, s.code, s.start, s.end) in decided or s.code not in by_key:
                continue
            session.add(
                Suggestion(
                    study_id=t.study_id,
                    transcript_id=t.id,
                    code_id=by_key[s.code].id,
                    start=s.start,
                    end=s.end,
                    text=s.text,
                    rule=s.rule,
                )
            )
            new += 1
    session.flush()
    if new:
        record(
            session,
            actor,
            "create",
            "suggestion",
            t.id,
            study_id=t.study_id,
            site_id=t.site_id,
            after={"transcript_id": t.id, "suggestions": new},
        )
    return list(
        session.exec(
            select(Suggestion)
            .where(Suggestion.transcript_id == t.id, Suggestion.status == "pending")
            .order_by(Suggestion.start, Suggestion.id)
        ).all()
    )


def decide(
    session: Session, s: Suggestion, t: Transcript, actor: Actor, decision: str, memo: str | None = None
) -> Suggestion:
    """Accept (a coding by the caller) or reject (remembered) a pending suggestion."""
    if s.status != "pending":
        raise Conflict(["path", "suggestion_id"], f"the suggestion was already {s.status}", "already_decided")
    s.status = "accepted" if decision == "accept" else "rejected"
    s.decided_by = coder_label(actor)
    s.decided_at = utcnow()
    if decision == "accept":
        coding = add_coding(session, t, actor, SimpleNamespace(code_id=s.code_id, start=s.start, end=s.end, memo=memo))
        s.coding_id = coding.id
    session.add(s)
    record(
        session,
        actor,
        "update",
        "suggestion",
        s.id,
        study_id=s.study_id,
        site_id=t.site_id,
        before={"status": "pending"},
        after={"status": s.status, "coding_id": s.coding_id},
    )
    session.flush()
    return s


def parse_list(value: str | None, loc: Sequence[str | int]) -> list[str] | None:
    """Comma-separated query values (``coders=a,b``)."""
    if value is None:
        return None
    items = [x.strip() for x in value.split(",") if x.strip()]
    if not items:
        raise Unprocessable(list(loc), "give at least one value", "empty_list")
    return items


def parse_speaker_map(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise Unprocessable(
            ["body", "speaker_map"], "must be a JSON object of label -> study code", "invalid_json"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise Unprocessable(["body", "speaker_map"], "must be a JSON object of label -> study code", "invalid_type")
    return data
