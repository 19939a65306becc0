"""Business rules of studies and their design."""

from __future__ import annotations

import secrets

from sqlalchemy import exists
from sqlmodel import Session, select

from api.audit.service import record, snapshot
from api.auth import policy
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Conflict, NotFound
from api.participants.models import Allocation, AllocationStratum
from api.studies.models import Arm, Site, SiteContact, Study, Wave
from api.studies.schemas import ArmCreate, SiteContactIn, SiteCreate, StudyCreate, StudyUpdate, WaveCreate

#: What :func:`api.auth.policy.ensure_admin` refuses to other roles here.
DESIGN = "change a study's design"


def visible_studies(session: Session, actor: Actor) -> list[Study]:
    """Studies the actor may see: all for admins and analysts, those with one of their sites for coordinators."""
    stmt = select(Study).order_by(Study.id)
    if policy.site_scoped(actor):
        stmt = stmt.where(exists().where(Site.study_id == Study.id, Site.id.in_(actor.site_ids or [-1])))
    return list(session.exec(stmt).all())


def can_see_study(session: Session, actor: Actor, study_id: int) -> bool:
    if not policy.site_scoped(actor):
        return True
    return (
        session.exec(
            select(Site.id).where(Site.study_id == study_id, Site.id.in_(actor.site_ids or [-1])).limit(1)
        ).first()
        is not None
    )


def create_study(session: Session, data: StudyCreate, actor: Actor) -> Study:
    """Create a study; a missing randomisation seed is generated (and never shown to coordinators)."""
    policy.ensure_admin(actor, DESIGN)
    values = data.model_dump()
    values["randomisation_seed"] = values.get("randomisation_seed") or secrets.token_hex(16)
    study = Study(**values)
    session.add(study)
    session.flush()
    record(
        session,
        actor,
        "create",
        "study",
        study.id,
        study_id=study.id,
        after=snapshot(study, exclude=("randomisation_seed",)),
    )
    return study


def update_study(session: Session, study: Study, data: StudyUpdate, actor: Actor) -> Study:
    policy.ensure_admin(actor, DESIGN)
    changes = data.model_dump(exclude_unset=True)
    reason = changes.pop("reason", None)
    before = snapshot(study, exclude=("randomisation_seed",))
    for k, v in changes.items():
        if v is None and k in ("title", "design", "blinding", "time_zone", "status"):
            continue  # required columns cannot be cleared
        setattr(study, k, v)
    study.updated_at = utcnow()
    session.add(study)
    session.flush()
    after = snapshot(study, exclude=("randomisation_seed",))
    changed = {k for k in after if before.get(k) != after[k] and k != "updated_at"}
    record(
        session,
        actor,
        "update",
        "study",
        study.id,
        study_id=study.id,
        before={k: before[k] for k in changed},
        after={k: after[k] for k in changed},
        reason=reason,
    )
    return study


def create_site(session: Session, study: Study, data: SiteCreate, actor: Actor) -> Site:
    """Add a site and its randomisation stratum (one counter row, locked while allocating)."""
    policy.ensure_admin(actor, DESIGN)
    _unique(session, Site, study.id, data.code)
    site = Site(study_id=study.id, **data.model_dump())
    session.add(site)
    session.flush()
    session.add(AllocationStratum(study_id=study.id, site_id=site.id))
    record(session, actor, "create", "site", site.id, study_id=study.id, site_id=site.id, after=snapshot(site))
    return site


def create_arm(session: Session, study: Study, data: ArmCreate, actor: Actor) -> Arm:
    """Add an arm. Refused once randomisation has started: the sequence depends on the arm set."""
    policy.ensure_admin(actor, DESIGN)
    _unique(session, Arm, study.id, data.code)
    started = session.exec(select(Allocation.id).where(Allocation.study_id == study.id).limit(1)).first()
    if started is not None:
        raise Conflict(
            ["body", "code"], "arms cannot be added after randomisation has started", "randomisation_started"
        )
    arm = Arm(study_id=study.id, **data.model_dump())
    session.add(arm)
    session.flush()
    record(session, actor, "create", "arm", arm.id, study_id=study.id, after=snapshot(arm))
    return arm


def create_wave(session: Session, study: Study, data: WaveCreate, actor: Actor) -> Wave:
    policy.ensure_admin(actor, DESIGN)
    _unique(session, Wave, study.id, data.code)
    wave = Wave(study_id=study.id, **data.model_dump())
    session.add(wave)
    session.flush()
    record(session, actor, "create", "wave", wave.id, study_id=study.id, after=snapshot(wave))
    return wave


def list_children(session: Session, model, study: Study, actor: Actor) -> list:
    """Sites, arms or waves of a study; coordinators see only their own sites."""
    stmt = select(model).where(model.study_id == study.id).order_by(model.id)
    if model is Wave:
        stmt = select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.id)
    if model is Site and policy.site_scoped(actor):
        stmt = stmt.where(Site.id.in_(actor.site_ids or [-1]))
    return list(session.exec(stmt).all())


def list_arms(session: Session, study: Study, actor: Actor) -> list:
    """The study's arms; neutral labels only for a reader blind to them (:mod:`api.sap.blinding`)."""
    from api.sap.blinding import masked_arms

    masked = masked_arms(session, study.id, actor)
    return masked if masked is not None else list_children(session, Arm, study, actor)


def sites_by_code(session: Session, study_id: int) -> dict[str, int]:
    """Site code -> id of a study's sites."""
    return {
        code: site_id for site_id, code in session.exec(select(Site.id, Site.code).where(Site.study_id == study_id))
    }


def get_wave(session: Session, study_id: int, code: str, loc=("body", "wave")) -> Wave:
    """The wave ``code`` of a study, or a 422 naming ``loc``."""
    from api.errors import Unprocessable

    wave = session.exec(select(Wave).where(Wave.study_id == study_id, Wave.code == code)).first()
    if wave is None:
        raise Unprocessable(list(loc), "no wave with this code in the participant's study", "unknown_wave")
    return wave


def _unique(session: Session, model, study_id: int, code: str) -> None:
    if session.exec(select(model.id).where(model.study_id == study_id, model.code == code)).first() is not None:
        raise Conflict(
            ["body", "code"], f"a {model.__name__.lower()} with this code already exists in the study", "duplicate"
        )


def require_study(session: Session, study_id: int, actor: Actor) -> Study:
    study = session.get(Study, study_id)
    if study is None or not can_see_study(session, actor, study_id):
        raise NotFound(["path", "study_id"], "study not found", "not_found")
    return study


def set_site_contact(session: Session, study: Study, site_code: str, data: SiteContactIn, actor: Actor) -> SiteContact:
    """Set the phone number and hours a site's participants see on their form (admins; audited)."""
    policy.ensure_admin(actor, DESIGN)
    site = session.exec(select(Site).where(Site.study_id == study.id, Site.code == site_code)).first()
    if site is None:
        raise NotFound(["path", "site_code"], "no site with this code in the study", "not_found")
    row = session.get(SiteContact, site.id)
    before = snapshot(row) if row is not None else None
    if row is None:
        row = SiteContact(site_id=site.id, phone=data.phone, hours=data.hours)
    else:
        row.phone, row.hours, row.updated_at = data.phone, data.hours, utcnow()
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "set_contact",
        "site",
        site.id,
        study_id=study.id,
        site_id=site.id,
        before=before,
        after=snapshot(row),
    )
    return row


def site_contact(session: Session, site_id: int) -> SiteContact | None:
    return session.get(SiteContact, site_id)
