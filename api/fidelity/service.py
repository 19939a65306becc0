"""Fidelity checklists of a study and the ratings of delivered sessions.

Checklists are versioned data (:mod:`instruments.checklist` checks and scores them); a rating keeps
the id of the checklist version it used, its answers and its scores. Ratings are made by raters
independent of delivery (:data:`api.auth.policy.RATERS`) and read by every role that reads process
records; site scoping follows the session's site. Every change is audited in the caller's
transaction.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from api.audit.service import record, snapshot
from api.auth import policy
from api.auth.service import Actor
from api.db import utcnow
from api.delivery.models import DeliverySession
from api.errors import Conflict, NotFound, Unprocessable, error
from api.fidelity.models import FidelityChecklist, FidelityRating
from api.fidelity.schemas import ChecklistIn, RatingIn, RatingPatch, RatingRead, Scores
from api.sap.blinding import arm_labels
from api.studies.models import Site, Study
from instruments.checklist import Checklist, checklist_from_dict, load_checklist, score_checklist, shipped_checklists
from instruments.model import InstrumentError, ValidationFailed

# ---- checklists ----------------------------------------------------------------------------------


def _definition_loc(message: str) -> list[str | int]:
    m = re.search(r"items\[(\d+)\]", message)
    return ["body", "items", int(m.group(1))] if m else ["body"]


def create_checklist(session: Session, study: Study, body: ChecklistIn, actor: Actor) -> FidelityChecklist:
    """Add a checklist version to the study (from a shipped template or a full definition)."""
    policy.ensure_admin(actor, "define fidelity checklists")
    raw: dict = {}
    if body.template is not None:
        if body.template not in shipped_checklists():
            msg = f"unknown template; shipped: {', '.join(shipped_checklists())}"
            raise Unprocessable(["body", "template"], msg, "unknown_template")
        raw = load_checklist(body.template).as_dict()
    given = body.model_dump(exclude_none=True, exclude={"template"})
    raw.update(given)
    try:
        checklist = checklist_from_dict(raw, where="checklist")
    except InstrumentError as e:
        msg = str(e).split(": ", 1)[-1] if str(e).startswith("checklist") else str(e)
        raise Unprocessable(_definition_loc(str(e)), msg, "invalid_checklist") from None
    taken = session.exec(
        select(FidelityChecklist.id).where(
            FidelityChecklist.study_id == study.id,
            FidelityChecklist.code == checklist.code,
            FidelityChecklist.version == checklist.version,
        )
    ).first()
    if taken is not None:
        raise Conflict(["body", "version"], "this checklist version exists; give a new version", "duplicate")
    row = FidelityChecklist(
        study_id=study.id,
        code=checklist.code,
        version=checklist.version,
        name=checklist.name,
        definition=checklist.as_dict(),
        created_by=actor.user_id,
    )
    session.add(row)
    session.flush()
    record(session, actor, "create", "fidelity_checklist", row.id, study_id=study.id, after=snapshot(row))
    return row


def templates() -> list[dict]:
    """The shipped checklist definitions (``instruments/checklists``)."""
    return [load_checklist(code).as_dict() for code in shipped_checklists()]


def list_checklists(session: Session, study: Study) -> list[FidelityChecklist]:
    return list(
        session.exec(
            select(FidelityChecklist)
            .where(FidelityChecklist.study_id == study.id)
            .order_by(FidelityChecklist.code, FidelityChecklist.id)
        )
    )


def find_checklist(
    session: Session, study_id: int, code: str, version: str | None, loc=("body", "checklist")
) -> FidelityChecklist:
    """The study's checklist ``code`` at ``version`` (default: the latest added)."""
    stmt = select(FidelityChecklist).where(FidelityChecklist.study_id == study_id, FidelityChecklist.code == code)
    if version is not None:
        stmt = stmt.where(FidelityChecklist.version == version)
    row = session.exec(stmt.order_by(FidelityChecklist.id.desc())).first()
    if row is None:
        what = "no checklist with this code" + (" and version" if version else "") + " in the study"
        raise Unprocessable(list(loc), what, "unknown_checklist")
    return row


def as_checklist(row: FidelityChecklist) -> Checklist:
    return checklist_from_dict(row.definition, where=f"checklist {row.code}")


# ---- ratings -------------------------------------------------------------------------------------


def study_day_zero(session: Session, study: Study):
    """Day 0 of the study's process timeline: its first delivered session (else its creation day)."""
    from sqlalchemy import func

    first = session.exec(
        select(func.min(DeliverySession.delivered_on)).where(DeliverySession.study_id == study.id)
    ).first()
    return first if first is not None else study.created_at.date()


def sees_session_dates(actor: Actor) -> bool:
    """Staff and evaluators (who pick sessions by date) see calendar dates; analysts get days on the
    process timeline instead (:func:`study_day_zero`), as in every analyst surface."""
    return not policy.deidentified(actor) or policy.rule(actor).rates


def _today(study: Study) -> date:
    return datetime.now(ZoneInfo(study.time_zone)).date()


def _score(checklist: FidelityChecklist, answers: dict) -> dict:
    try:
        scores = score_checklist(as_checklist(checklist), answers)
    except ValidationFailed as e:
        errors = [error(["body", "answers", p.loc], p.msg, p.rule) for p in e.problems]
        raise Unprocessable(errors=errors) from None
    by = {s.part: s for s in scores}
    return {
        "total": by["total"].value,
        "core": by["core"].value,
        "form": by["form"].value,
        "core_full": by["core_full"].value,
        "items_answered": by["total"].items_answered,
    }


def _delivered_session(session: Session, study: Study, session_id: int, actor: Actor) -> DeliverySession:
    ds = session.get(DeliverySession, session_id)
    if ds is None or ds.study_id != study.id or not policy.sees_site(actor, ds.site_id):
        raise Unprocessable(["body", "session_id"], "no session with this id in the study", "unknown_session")
    if ds.status != "delivered" or ds.delivered_on is None:
        raise Unprocessable(
            ["body", "session_id"], f"only delivered sessions are rated (this one is {ds.status})", "not_delivered"
        )
    return ds


def _check_date(study: Study, ds: DeliverySession, rated_on: date) -> None:
    if ds.delivered_on is not None and rated_on < ds.delivered_on:
        raise Unprocessable(
            ["body", "rated_on"], "a session is rated on or after the day it was delivered", "too_early"
        )
    if rated_on > _today(study) + timedelta(days=1):
        raise Unprocessable(["body", "rated_on"], "the rating date is in the future", "in_future")


def create_rating(session: Session, study: Study, body: RatingIn, actor: Actor) -> FidelityRating:
    """Rate a delivered session with a checklist version: answers checked and scored, audited."""
    policy.ensure_can_rate(actor)
    ds = _delivered_session(session, study, body.session_id, actor)
    checklist = find_checklist(session, study.id, body.checklist, body.checklist_version)
    _check_date(study, ds, body.rated_on)
    scores = _score(checklist, body.answers)
    row = FidelityRating(
        study_id=study.id,
        site_id=ds.site_id,
        arm_id=ds.arm_id,
        session_id=ds.id,
        supporter_id=ds.supporter_id,
        checklist_id=checklist.id,
        rater_id=actor.user_id,
        method=body.method,
        rated_on=body.rated_on,
        answers={k: v for k, v in body.answers.items() if v is not None},
        note=body.note,
        **scores,
    )
    taken = session.exec(
        select(FidelityRating.id).where(
            FidelityRating.session_id == ds.id,
            FidelityRating.checklist_id == checklist.id,
            FidelityRating.rater_id == actor.user_id,
        )
    ).first()
    if taken is not None:
        msg = f"you rated this session with this checklist already (rating {taken}); correct that rating"
        raise Conflict(["body", "session_id"], msg, "duplicate")
    session.add(row)
    session.flush()
    record(
        session, actor, "create", "fidelity_rating", row.id, study_id=study.id, site_id=row.site_id, after=snapshot(row)
    )
    return row


def blind(actor: Actor) -> bool:
    """Whether ``actor`` rates blind: an evaluator sees another rater's rating of a session only
    once they have rated that session themselves, so double ratings stay independent."""
    r = policy.rule(actor)
    return r.rates and not r.admin


def visible(stmt, actor: Actor):
    """``stmt`` over ratings restricted to what ``actor`` may see (their sites; blind rating)."""
    if policy.site_scoped(actor):
        stmt = stmt.where(FidelityRating.site_id.in_(actor.site_ids or {-1}))
    if blind(actor):
        own = select(FidelityRating.session_id).where(FidelityRating.rater_id == actor.user_id)
        stmt = stmt.where((FidelityRating.rater_id == actor.user_id) | FidelityRating.session_id.in_(own))
    return stmt


def get_rating(session: Session, rating_id: int, actor: Actor) -> FidelityRating:
    row = session.get(FidelityRating, rating_id)
    if row is None:
        raise NotFound(["path", "rating_id"], "rating not found", "not_found")
    policy.ensure_site_access(actor, row.site_id, loc=("path", "rating_id"), what="rating")
    if blind(actor) and row.rater_id != actor.user_id:
        own = session.exec(
            select(FidelityRating.id).where(
                FidelityRating.session_id == row.session_id, FidelityRating.rater_id == actor.user_id
            )
        ).first()
        if own is None:  # not yet rated by this evaluator: the other rating stays hidden
            raise NotFound(["path", "rating_id"], "rating not found", "not_found")
    return row


def update_rating(session: Session, row: FidelityRating, body: RatingPatch, actor: Actor) -> FidelityRating:
    """Correct a rating (its rater or an admin); scores are recomputed; audited with the reason."""
    policy.ensure_can_rate(actor)
    if row.rater_id != actor.user_id and not policy.rule(actor).admin:
        raise Unprocessable(["path", "rating_id"], "only the rater or an admin corrects a rating", "not_rater")
    study = session.get(Study, row.study_id)
    ds = session.get(DeliverySession, row.session_id)
    assert study is not None and ds is not None
    before = snapshot(row)
    if body.rated_on is not None:
        _check_date(study, ds, body.rated_on)
        row.rated_on = body.rated_on
    if body.method is not None:
        row.method = body.method
    if "note" in body.model_fields_set:
        row.note = body.note
    if body.answers is not None:
        checklist = session.get(FidelityChecklist, row.checklist_id)
        assert checklist is not None
        for k, v in _score(checklist, body.answers).items():
            setattr(row, k, v)
        row.answers = {k: v for k, v in body.answers.items() if v is not None}
    row.version += 1
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "update",
        "fidelity_rating",
        row.id,
        study_id=row.study_id,
        site_id=row.site_id,
        before=before,
        after=snapshot(row),
        reason=body.reason,
    )
    return row


def list_ratings(
    session: Session,
    study: Study,
    actor: Actor,
    *,
    session_id: int | None = None,
    supporter_id: int | None = None,
    site: str | None = None,
    checklist: str | None = None,
    limit: int = 500,
    after: int | None = None,
) -> list[FidelityRating]:
    """Ratings the actor may see (their sites; an evaluator, others' ratings only of sessions they
    rated too), oldest first, in pages of ``limit``."""
    stmt = visible(select(FidelityRating).where(FidelityRating.study_id == study.id), actor)
    if session_id is not None:
        stmt = stmt.where(FidelityRating.session_id == session_id)
    if supporter_id is not None:
        stmt = stmt.where(FidelityRating.supporter_id == supporter_id)
    if site is not None:
        site_id = session.exec(select(Site.id).where(Site.study_id == study.id, Site.code == site)).first()
        if site_id is None:
            raise Unprocessable(["query", "site"], "no site with this code in the study", "unknown_site")
        stmt = stmt.where(FidelityRating.site_id == site_id)
    if checklist is not None:
        ids = select(FidelityChecklist.id).where(
            FidelityChecklist.study_id == study.id, FidelityChecklist.code == checklist
        )
        stmt = stmt.where(FidelityRating.checklist_id.in_(ids))
    if after is not None:
        stmt = stmt.where(FidelityRating.id > after)
    return list(session.exec(stmt.order_by(FidelityRating.id).limit(limit)))


def to_read(session: Session, rows: list[FidelityRating], actor: Actor) -> list[RatingRead]:
    """Read models (site and arm codes, checklist code and version) for ``rows``; de-identified
    analysts get no free-text note (it may name a supporter or a participant) and no calendar
    date (``rated_day`` instead)."""
    if not rows:
        return []
    study_id = rows[0].study_id
    hide = not sees_session_dates(actor)
    zero = study_day_zero(session, session.get(Study, study_id))  # type: ignore[arg-type]
    sites = dict(session.exec(select(Site.id, Site.code).where(Site.study_id == study_id)).all())
    # Analysts read arms as the study's neutral letters until it is unblinded (api.sap.blinding).
    arms = arm_labels(session, study_id, actor)
    lists = {
        c.id: c
        for c in session.exec(select(FidelityChecklist).where(FidelityChecklist.id.in_({r.checklist_id for r in rows})))
    }
    return [
        RatingRead(
            id=r.id,
            session_id=r.session_id,
            site=sites[r.site_id],
            arm=arms[r.arm_id],
            supporter_id=r.supporter_id,
            checklist=lists[r.checklist_id].code,
            checklist_version=lists[r.checklist_id].version,
            rater_id=r.rater_id,
            method=r.method,
            rated_on=None if hide else r.rated_on,
            rated_day=(r.rated_on - zero).days,
            answers=r.answers,
            scores=Scores(
                total=r.total, core=r.core, form=r.form, core_full=r.core_full, items_answered=r.items_answered
            ),
            note=None if hide else r.note,
            version=r.version,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in rows
    ]
