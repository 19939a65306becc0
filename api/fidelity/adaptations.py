"""The adaptation log: modifications of an arm's intervention described with FRAME (Wiltsey Stirman,
Baumann & Miller 2019), linked to the arm (TIDieR item 10) and optionally to a site, group or session.

Staff who decide adaptations and evaluators who observe them log them; every role that reads
process records reads them (site-scoped: a programme-wide adaptation, without a site, is seen by
all). Every change is audited in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from api.audit.service import record, snapshot
from api.auth import policy
from api.auth.service import Actor
from api.db import utcnow
from api.delivery.models import DeliverySession, PeerGroup
from api.errors import NotFound, Unprocessable
from api.fidelity.models import Adaptation
from api.fidelity.schemas import AdaptationIn, AdaptationPatch, AdaptationRead
from api.sap.blinding import arm_labels
from api.studies.models import Arm, Site, Study

#: Free text that may name a person: left out for de-identified readers who do not log adaptations.
FREE_TEXT = ("description", "reason_detail")


def _arm(session: Session, study: Study, code: str) -> Arm:
    arm = session.exec(select(Arm).where(Arm.study_id == study.id, Arm.code == code)).first()
    if arm is None:
        raise Unprocessable(["body", "arm"], "no arm with this code in the study", "unknown_arm")
    return arm


def _site(session: Session, study: Study, code: str | None, actor: Actor) -> int | None:
    if code is None:
        return None
    site = session.exec(select(Site).where(Site.study_id == study.id, Site.code == code)).first()
    if site is None or not policy.sees_site(actor, site.id):
        raise Unprocessable(["body", "site"], "no site with this code in the study", "unknown_site")
    return site.id


def _check(row: Adaptation, study: Study) -> None:
    """The FRAME fields that depend on each other, and a date that has happened."""
    today = datetime.now(ZoneInfo(study.time_zone)).date()
    if row.adapted_on > today + timedelta(days=1):
        raise Unprocessable(["body", "adapted_on"], "an adaptation is logged once it has happened", "in_future")
    if row.context_aspect is not None and row.what != "context":
        raise Unprocessable(["body", "context_aspect"], "only for what=context", "not_applicable")
    if row.what == "context" and row.context_aspect is None:
        raise Unprocessable(["body", "context_aspect"], "say which part of the context changed", "missing")
    if row.level in ("site", "group", "supporter", "individual") and row.site_id is None:
        raise Unprocessable(["body", "site"], f"a {row.level}-level adaptation names its site", "missing")
    if row.level == "group" and row.group_id is None and row.session_id is None:
        raise Unprocessable(["body", "group_id"], "a group-level adaptation names its group or session", "missing")


def create_adaptation(session: Session, study: Study, body: AdaptationIn, actor: Actor) -> Adaptation:
    """Log one adaptation (checked against the study's arms, sites, groups and sessions), audited."""
    policy.ensure_can_log_process(actor)
    arm = _arm(session, study, body.arm)
    site_id = _site(session, study, body.site, actor)
    group_id = body.group_id
    if body.session_id is not None:
        ds = session.get(DeliverySession, body.session_id)
        if ds is None or ds.study_id != study.id or not policy.sees_site(actor, ds.site_id):
            raise Unprocessable(["body", "session_id"], "no session with this id in the study", "unknown_session")
        if ds.arm_id != arm.id:
            raise Unprocessable(["body", "session_id"], "the session belongs to another arm", "other_arm")
        if site_id is not None and ds.site_id != site_id:
            raise Unprocessable(["body", "session_id"], "the session belongs to another site", "other_site")
        site_id = ds.site_id
        if group_id is not None and ds.group_id != group_id:
            raise Unprocessable(["body", "group_id"], "the session belongs to another group", "other_group")
        group_id = ds.group_id
    if group_id is not None:
        group = session.get(PeerGroup, group_id)
        if group is None or group.study_id != study.id or not policy.sees_site(actor, group.site_id):
            raise Unprocessable(["body", "group_id"], "no group with this id in the study", "unknown_group")
        if group.arm_id != arm.id:
            raise Unprocessable(["body", "group_id"], "the group belongs to another arm", "other_arm")
        if site_id is not None and group.site_id != site_id:
            raise Unprocessable(["body", "group_id"], "the group belongs to another site", "other_site")
        site_id = group.site_id
    if site_id is None and policy.site_scoped(actor):
        raise Unprocessable(
            ["body", "site"], "coordinators log adaptations of their own sites: give the site", "missing"
        )
    data = body.model_dump(exclude={"arm", "site", "group_id", "session_id"})
    row = Adaptation(
        study_id=study.id,
        arm_id=arm.id,
        site_id=site_id,
        group_id=group_id,
        session_id=body.session_id,
        recorded_by=actor.user_id,
        **data,
    )
    _check(row, study)
    session.add(row)
    session.flush()
    record(session, actor, "create", "adaptation", row.id, study_id=study.id, site_id=site_id, after=snapshot(row))
    return row


def get_adaptation(session: Session, adaptation_id: int, actor: Actor) -> Adaptation:
    row = session.get(Adaptation, adaptation_id)
    if row is None or (row.site_id is not None and not policy.sees_site(actor, row.site_id)):
        raise NotFound(["path", "adaptation_id"], "adaptation not found", "not_found")
    return row


def update_adaptation(session: Session, row: Adaptation, body: AdaptationPatch, actor: Actor) -> Adaptation:
    """Correct an adaptation record (fields given replace the stored ones), audited with the reason."""
    policy.ensure_can_log_process(actor)
    if row.site_id is None and policy.site_scoped(actor):
        raise Unprocessable(
            ["path", "adaptation_id"], "a programme-wide adaptation is corrected by an admin", "not_allowed"
        )
    before = snapshot(row)
    for field in body.model_fields_set - {"reason"}:
        value = getattr(body, field)
        if value is None and field not in ("context_aspect", "goal", "component", "reason_detail"):
            raise Unprocessable(["body", field], "this field cannot be cleared", "required")
        setattr(row, field, value)
    study = session.get(Study, row.study_id)
    assert study is not None
    _check(row, study)
    row.version += 1
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "update",
        "adaptation",
        row.id,
        study_id=row.study_id,
        site_id=row.site_id,
        before=before,
        after=snapshot(row),
        reason=body.reason,
    )
    return row


def list_adaptations(
    session: Session,
    study: Study,
    actor: Actor,
    *,
    arm: str | None = None,
    site: str | None = None,
    fidelity: str | None = None,
    planned: bool | None = None,
) -> list[Adaptation]:
    """Adaptations the actor may see (their sites and programme-wide ones), in date order."""
    stmt = select(Adaptation).where(Adaptation.study_id == study.id)
    if policy.site_scoped(actor):
        stmt = stmt.where((Adaptation.site_id.is_(None)) | (Adaptation.site_id.in_(actor.site_ids or {-1})))
    if arm is not None:
        arm_id = session.exec(select(Arm.id).where(Arm.study_id == study.id, Arm.code == arm)).first()
        if arm_id is None:
            raise Unprocessable(["query", "arm"], "no arm with this code in the study", "unknown_arm")
        stmt = stmt.where(Adaptation.arm_id == arm_id)
    if site is not None:
        site_id = session.exec(select(Site.id).where(Site.study_id == study.id, Site.code == site)).first()
        if site_id is None:
            raise Unprocessable(["query", "site"], "no site with this code in the study", "unknown_site")
        stmt = stmt.where(Adaptation.site_id == site_id)
    if fidelity is not None:
        stmt = stmt.where(Adaptation.fidelity == fidelity)
    if planned is not None:
        stmt = stmt.where(Adaptation.planned == planned)
    return list(session.exec(stmt.order_by(Adaptation.adapted_on, Adaptation.id)))


def to_read(session: Session, rows: list[Adaptation], actor: Actor) -> list[AdaptationRead]:
    if not rows:
        return []
    study_id = rows[0].study_id
    sites = dict(session.exec(select(Site.id, Site.code).where(Site.study_id == study_id)).all())
    # Analysts read arms as the study's neutral letters until it is unblinded (api.sap.blinding).
    arms = arm_labels(session, study_id, actor)
    from api.fidelity.service import sees_session_dates, study_day_zero

    hide = not sees_session_dates(actor)
    zero = study_day_zero(session, session.get(Study, study_id))  # type: ignore[arg-type]
    out = []
    for r in rows:
        data = r.model_dump(exclude={"study_id", "arm_id", "site_id"})
        data["adapted_day"] = (r.adapted_on - zero).days
        if hide:
            data.update(description="", reason_detail=None, adapted_on=None)
        out.append(AdaptationRead(arm=arms[r.arm_id], site=sites.get(r.site_id) if r.site_id else None, **data))
    return out
