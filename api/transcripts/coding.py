"""Codings (coded spans), memos and auto-coding suggestions of a study's transcripts.
Services flush; routers commit once."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

import qualitative as q  # names load on first use: spaCy only when a transcript is parsed
from api.audit.service import record
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Conflict, Unprocessable
from api.studies.models import Study
from api.transcripts.codebook import codebook, codes_of
from api.transcripts.models import (
    QualCode,
    QualCoding,
    QualMemo,
    Suggestion,
    Transcript,
)
from api.transcripts.service import coder_label, to_library, visible_transcripts


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
