"""Meta-inferences of joint displays: per theme × scale, what the two strands say together.

``confirmation`` (the strands agree), ``expansion`` (one adds to the other), ``discordance`` (they
disagree) or ``silence`` (one strand says nothing) — Fetters, Curry & Creswell (2013). Stored per
study, theme and scale; every change is audited; joint displays and their HTML carry them, and the
list exports as CSV.
"""

from __future__ import annotations

import csv
import io

from sqlmodel import Session, select

from api.audit.service import record
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Unprocessable
from api.exports.writers import SafeCsvWriter
from api.studies.models import Study
from api.transcripts import codebook
from api.transcripts.models import MetaInference

FIELDS = ("theme", "scale", "inference", "note", "author", "updated_at")


def _snapshot(row: MetaInference) -> dict:
    return {"theme": row.theme, "scale": row.scale, "inference": row.inference, "note": row.note}


def set_inference(session: Session, study: Study, actor: Actor, body) -> MetaInference:
    """Create or replace the meta-inference of one theme × scale (flushes; the caller commits)."""
    keys = {c.key for c in codebook.codes_of(session, study.id)}
    if body.theme not in keys:
        raise Unprocessable(["body", "theme"], "no code with this key in the study's codebook", "unknown_code")
    row = session.exec(
        select(MetaInference).where(
            MetaInference.study_id == study.id, MetaInference.theme == body.theme, MetaInference.scale == body.scale
        )
    ).first()
    before = _snapshot(row) if row is not None else None
    if row is None:
        row = MetaInference(study_id=study.id, theme=body.theme, scale=body.scale, inference=body.inference)
    row.inference, row.note = body.inference, body.note
    row.author = actor.email or actor.role
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "update" if before else "create",
        "meta_inference",
        row.id,
        study_id=study.id,
        before=before,
        after=_snapshot(row),
    )
    return row


def inferences(session: Session, study_id: int) -> list[MetaInference]:
    return list(
        session.exec(
            select(MetaInference)
            .where(MetaInference.study_id == study_id)
            .order_by(MetaInference.theme, MetaInference.scale)
        ).all()
    )


def by_row(session: Session, study_id: int) -> dict[tuple[str, str], MetaInference]:
    return {(m.theme, m.scale): m for m in inferences(session, study_id)}


def as_dict(m: MetaInference) -> dict:
    return {k: getattr(m, k) for k in FIELDS}


def to_csv(rows: list[MetaInference]) -> bytes:
    buf = io.StringIO()
    w = SafeCsvWriter(buf, quoting=csv.QUOTE_MINIMAL)
    w.writerow(FIELDS)
    for m in rows:
        w.writerow([getattr(m, k) if k != "updated_at" else m.updated_at.isoformat() for k in FIELDS])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
