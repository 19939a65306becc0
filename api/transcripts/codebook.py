"""The study's codebook: hierarchical codes with keywords and patterns, and their change history.
Services flush; routers commit once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import Session, select

import qualitative as q  # names load on first use: spaCy only when a transcript is parsed
from api.audit.service import record
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Conflict, Unprocessable
from api.studies.models import Study
from api.transcripts.models import (
    CodeHistory,
    QualCode,
    QualCoding,
    QualMemo,
    Suggestion,
)
from api.transcripts.service import coder_label


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
    names: list[str] = []
    seen: set[int | None] = set()
    cur: QualCode | None = c
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


def record_history(session: Session, code: QualCode, action: str, changes: dict, actor: Actor) -> None:
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
    record_history(session, code, "add", after, actor)
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
    record_history(session, code, "move" if set(diff) == {"parent_id"} else "update", diff, actor)
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
        record_history(session, child, "move", {"parent_id": {"old": code.id, "new": code.parent_id}}, actor)
    removed_suggestions = session.exec(
        select(func.count()).select_from(Suggestion).where(Suggestion.code_id == code.id)
    ).one()
    session.execute(delete(Suggestion).where(Suggestion.code_id == code.id))
    session.execute(delete(QualMemo).where(QualMemo.target == "code", QualMemo.target_id == code.id))
    before = code.model_dump(exclude={"created_at", "updated_at"})
    record_history(session, code, "remove", {"reparented": [c.id for c in children]}, actor)
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
