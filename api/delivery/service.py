"""Peer supporters (roster and identifier vault), training programmes and records, and each arm's
delivery plan. Services flush; routers and commands commit. Every change is audited; supporters'
identifiers are audited by field name only.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from api.audit.service import record, snapshot
from api.auth.policy import ensure_can_write, ensure_site_access, sees_identifiers, site_scoped
from api.auth.service import Actor
from api.db import utcnow
from api.delivery.models import (
    DeliveryPlan,
    PeerSupporter,
    PeerSupporterContact,
    TrainingModule,
    TrainingProgramme,
    TrainingRecord,
)
from api.delivery.schemas import (
    ModuleRead,
    PlanIn,
    PlanRead,
    ProgrammeIn,
    ProgrammeRead,
    SupporterIdentifiers,
    SupporterIn,
    SupporterPatch,
    SupporterRead,
    TrainingRecordIn,
    TrainingRecordRead,
)
from api.errors import Conflict, NotFound, Unprocessable
from api.participants.models import Participant
from api.studies import dates
from api.studies.models import Arm, Site, Study

IDENTIFIER_FIELDS = ("name", "email", "phone", "date_of_birth")


# ---- lookups shared by the domain -------------------------------------------------------------


def site_by_code(session: Session, study_id: int, code: str, loc=("body", "site")) -> Site:
    """The site ``code`` of a study, or a 422 naming ``loc``."""
    site = session.exec(select(Site).where(Site.study_id == study_id, Site.code == code)).first()
    if site is None:
        raise Unprocessable(list(loc), "no site with this code in the study", "unknown_site")
    return site


def arm_by_code(session: Session, study_id: int, code: str, loc=("body", "arm")) -> Arm:
    """The arm ``code`` of a study, or a 422 naming ``loc``."""
    arm = session.exec(select(Arm).where(Arm.study_id == study_id, Arm.code == code)).first()
    if arm is None:
        raise Unprocessable(list(loc), "no arm with this code in the study", "unknown_arm")
    return arm


def codes(session: Session, model, study_id: int) -> dict[int, str]:
    """Id → code of a study's sites or arms."""
    return {i: c for i, c in session.exec(select(model.id, model.code).where(model.study_id == study_id))}


def study_start(session: Session, study: Study) -> date:
    """The day a study began: its set-up, or its first enrolment when participants were enrolled
    with earlier dates (a study moved into Peerlens while running)."""
    first = session.exec(select(func.min(Participant.enrolled_on)).where(Participant.study_id == study.id)).one()
    start = study.created_at.date()
    if first is not None:
        first = first if isinstance(first, date) else date.fromisoformat(str(first)[:10])
        start = min(start, first)
    return start


def check_window(study: Study, fields: dict[tuple[str | int, ...], date | None], *, happened: bool = True) -> None:
    """The study's date window (:mod:`api.studies.dates`): not before the study's plausible start;
    when ``happened``, not after today in the study's time zone. One 422 naming every bad field."""
    if happened:
        dates.check(study, fields)
        return
    window = dates.window_for(study)
    errors = [e for e in window.problems(fields, time_zone=study.time_zone) if e["type"] != "in_future"]
    if errors:
        raise Unprocessable(errors=errors)


def check_not_before_study(session: Session, study: Study, day: date | None, loc: list[str | int]) -> None:
    """422 when ``day`` is before the study began (:func:`study_start`)."""
    if day is not None and day < study_start(session, study):
        raise Unprocessable(loc, "date is before the study began", "before_study")


# ---- delivery plan per arm ----------------------------------------------------------------------


def get_plan(session: Session, study: Study, arm: Arm) -> PlanRead:
    plan = session.get(DeliveryPlan, arm.id)
    if plan is None:
        raise NotFound(["path", "arm"], "this arm has no delivery plan", "not_found")
    return PlanRead(arm_id=arm.id, arm=arm.code, **plan.model_dump(exclude={"arm_id", "study_id"}))


def put_plan(session: Session, study: Study, arm: Arm, body: PlanIn, actor: Actor) -> PlanRead:
    """Set an arm's planned dose and adherence definition (audited)."""
    ensure_can_write(actor)
    if body.adherence_kind == "proportion" and body.adherence_threshold > 1:
        raise Unprocessable(["body", "adherence_threshold"], "a proportion is at most 1", "out_of_range")
    if body.adherence_kind == "sessions" and body.adherence_threshold > body.planned_sessions:
        raise Unprocessable(
            ["body", "adherence_threshold"], "more sessions than planned_sessions are required", "out_of_range"
        )
    plan = session.get(DeliveryPlan, arm.id)
    before = snapshot(plan)
    if plan is None:
        plan = DeliveryPlan(arm_id=arm.id, study_id=study.id, **body.model_dump())
    else:
        for k, v in body.model_dump().items():
            setattr(plan, k, v)
        plan.updated_at = utcnow()
    session.add(plan)
    session.flush()
    record(
        session,
        actor,
        "update" if before else "create",
        "delivery_plan",
        arm.id,
        study_id=study.id,
        before=before,
        after=snapshot(plan),
    )
    return get_plan(session, study, arm)


# ---- peer supporters ----------------------------------------------------------------------------


def get_supporter(session: Session, supporter_id: int, actor: Actor, loc=("path", "supporter_id")) -> PeerSupporter:
    """The supporter, or 404 when unknown or at a site the actor does not cover."""
    s = session.get(PeerSupporter, supporter_id)
    if s is None:
        raise NotFound(list(loc), "peer supporter not found", "not_found")
    ensure_site_access(actor, s.site_id, loc=loc, what="peer supporter")
    return s


def supporter_in_study(session: Session, study_id: int, supporter_id: int, loc: list[str | int]) -> PeerSupporter:
    """A supporter of the study, or a 422 naming ``loc``."""
    s = session.get(PeerSupporter, supporter_id)
    if s is None or s.study_id != study_id:
        raise Unprocessable(loc, "no peer supporter with this id in the study", "unknown_supporter")
    return s


def _set_identifiers(session: Session, supporter: PeerSupporter, ids: SupporterIdentifiers) -> list[str]:
    vault = session.get(PeerSupporterContact, supporter.id) or PeerSupporterContact(supporter_id=supporter.id)
    changed = []
    for name, value in ids.model_dump(exclude_unset=True).items():
        if getattr(vault, name) != value:
            setattr(vault, name, value)
            changed.append(name)
    vault.updated_at = utcnow()
    session.add(vault)
    return sorted(changed)


def create_supporter(session: Session, study: Study, body: SupporterIn, actor: Actor) -> PeerSupporter:
    """Add a supporter to the roster of a site (and arm), identifiers into the vault (audited)."""
    ensure_can_write(actor)
    site = site_by_code(session, study.id, body.site)
    ensure_site_access(actor, site.id, loc=("body", "site"), what="site")
    arm = arm_by_code(session, study.id, body.arm) if body.arm else None
    check_window(study, {("body", "start_date"): body.start_date, ("body", "end_date"): body.end_date}, happened=False)
    if body.end_date is not None and body.end_date < body.start_date:
        raise Unprocessable(["body", "end_date"], "end_date is before start_date", "before_start")
    if session.exec(
        select(PeerSupporter.id).where(PeerSupporter.study_id == study.id, PeerSupporter.code == body.code)
    ).first():
        raise Conflict(["body", "code"], "a peer supporter with this code exists in the study", "duplicate")
    values = body.model_dump(exclude={"site", "arm", "identifiers"})
    s = PeerSupporter(study_id=study.id, site_id=site.id, arm_id=arm.id if arm else None, **values)
    session.add(s)
    session.flush()
    changed = _set_identifiers(session, s, body.identifiers) if body.identifiers else []
    session.flush()
    record(
        session,
        actor,
        "create",
        "peer_supporter",
        s.id,
        study_id=study.id,
        site_id=s.site_id,
        after={**(snapshot(s) or {}), "identifiers_set": changed},
    )
    return s


def update_supporter(session: Session, s: PeerSupporter, body: SupporterPatch, actor: Actor) -> PeerSupporter:
    """Change a supporter's profile, status or identifiers (audited; identifiers by field name)."""
    ensure_can_write(actor)
    changes = body.model_dump(exclude_unset=True, exclude={"identifiers"})
    for name in ("prior_role", "status"):
        if name in changes and changes[name] is None:
            raise Unprocessable(["body", name], "this field cannot be emptied", "missing")
    if not changes and body.identifiers is None:
        raise Unprocessable(["body"], "nothing to change", "no_changes")
    end = changes.get("end_date", s.end_date)
    study = session.get(Study, s.study_id)
    if study is not None and "end_date" in changes:
        check_window(study, {("body", "end_date"): changes["end_date"]}, happened=False)
    if end is not None and end < s.start_date:
        raise Unprocessable(["body", "end_date"], "end_date is before start_date", "before_start")
    before = snapshot(s)
    for k, v in changes.items():
        setattr(s, k, v)
    s.updated_at = utcnow()
    session.add(s)
    changed = _set_identifiers(session, s, body.identifiers) if body.identifiers else []
    session.flush()
    record(
        session,
        actor,
        "update",
        "peer_supporter",
        s.id,
        study_id=s.study_id,
        site_id=s.site_id,
        before=before,
        after={**(snapshot(s) or {}), "identifiers_changed": changed},
    )
    return s


def list_supporters(session: Session, study: Study, actor: Actor, site: str | None = None) -> list[PeerSupporter]:
    q = select(PeerSupporter).where(PeerSupporter.study_id == study.id).order_by(col(PeerSupporter.id))
    if site is not None:
        q = q.where(PeerSupporter.site_id == site_by_code(session, study.id, site, ("query", "site")).id)
    if site_scoped(actor):
        q = q.where(col(PeerSupporter.site_id).in_(actor.site_ids or {-1}))
    return list(session.exec(q))


def training_summary(session: Session, supporter_ids: list[int]) -> dict[int, tuple[float, date | None]]:
    """Training hours (modules and refreshers) and latest certification date per supporter."""
    out: dict[int, tuple[float, date | None]] = {}
    if not supporter_ids:
        return out
    hours: dict[int, float] = defaultdict(float)
    cert: dict[int, date | None] = defaultdict(lambda: None)
    rows = session.exec(
        select(TrainingRecord.supporter_id, TrainingRecord.kind, TrainingRecord.hours, TrainingRecord.on_date).where(
            col(TrainingRecord.supporter_id).in_(supporter_ids)
        )
    )
    for sid, kind, h, on in rows:
        if kind in ("module", "refresher"):
            hours[sid] += h
        if kind == "certification" and (cert[sid] is None or on > cert[sid]):
            cert[sid] = on
    return {sid: (round(hours[sid], 2), cert[sid]) for sid in supporter_ids}


def to_read(session: Session, supporters: list[PeerSupporter], actor: Actor) -> list[SupporterRead]:
    """Read models; identifiers only for staff who may see identifiers at the supporter's site."""
    if not supporters:
        return []
    study_id = supporters[0].study_id
    sites, arms = codes(session, Site, study_id), codes(session, Arm, study_id)
    summary = training_summary(session, [s.id for s in supporters if s.id is not None])
    out = []
    for s in supporters:
        ids = None
        if sees_identifiers(actor, s.site_id):
            vault = session.get(PeerSupporterContact, s.id)
            ids = SupporterIdentifiers(**vault.model_dump(include=set(IDENTIFIER_FIELDS))) if vault else None
        hours, cert = summary.get(s.id or 0, (0.0, None))
        out.append(
            SupporterRead(
                **s.model_dump(exclude={"site_id", "arm_id", "study_id", "created_at", "updated_at"}),
                site=sites[s.site_id],
                arm=arms.get(s.arm_id) if s.arm_id else None,
                training_hours=hours,
                certified_on=cert,
                identifiers=ids,
            )
        )
    return out


# ---- training -----------------------------------------------------------------------------------


def create_programme(session: Session, study: Study, body: ProgrammeIn, actor: Actor) -> TrainingProgramme:
    """A training programme with its modules (audited)."""
    ensure_can_write(actor)
    if session.exec(
        select(TrainingProgramme.id).where(TrainingProgramme.study_id == study.id, TrainingProgramme.code == body.code)
    ).first():
        raise Conflict(["body", "code"], "a training programme with this code exists in the study", "duplicate")
    seen: set[str] = set()
    for i, m in enumerate(body.modules):
        if m.code in seen:
            raise Unprocessable(["body", "modules", i, "code"], "module codes repeat", "duplicate")
        seen.add(m.code)
    p = TrainingProgramme(
        study_id=study.id,
        code=body.code,
        title=body.title,
        description=body.description,
        trainers=[t.model_dump() for t in body.trainers],
    )
    session.add(p)
    session.flush()
    for i, m in enumerate(body.modules):
        session.add(TrainingModule(programme_id=p.id, position=i + 1, **m.model_dump()))
    session.flush()
    record(
        session,
        actor,
        "create",
        "training_programme",
        p.id,
        study_id=study.id,
        after={**(snapshot(p) or {}), "modules": [m.code for m in body.modules]},
    )
    return p


def programme_read(session: Session, p: TrainingProgramme) -> ProgrammeRead:
    modules = session.exec(
        select(TrainingModule).where(TrainingModule.programme_id == p.id).order_by(col(TrainingModule.position))
    ).all()
    return ProgrammeRead(
        id=p.id,
        code=p.code,
        title=p.title,
        description=p.description,
        trainers=p.trainers,
        total_hours=round(sum(m.hours for m in modules), 2),
        modules=[ModuleRead(**m.model_dump(exclude={"programme_id"})) for m in modules],
    )


def list_programmes(session: Session, study: Study) -> list[ProgrammeRead]:
    rows = session.exec(
        select(TrainingProgramme).where(TrainingProgramme.study_id == study.id).order_by(col(TrainingProgramme.id))
    )
    return [programme_read(session, p) for p in rows]


def add_training_record(session: Session, s: PeerSupporter, body: TrainingRecordIn, actor: Actor) -> TrainingRecord:
    """A training event of a supporter (audited). Modules and refreshers name a module of the study."""
    ensure_can_write(actor)
    study = session.get(Study, s.study_id)
    if study is not None:
        check_window(study, {("body", "on_date"): body.on_date})
    if body.on_date < s.start_date - timedelta(days=366):
        raise Unprocessable(["body", "on_date"], "more than a year before the supporter started", "before_start")
    if body.kind in ("module", "refresher"):
        if body.module_id is None:
            raise Unprocessable(["body", "module_id"], "a module or refresher names its module", "missing")
        if body.hours <= 0:
            raise Unprocessable(["body", "hours"], "hours attended must be more than 0", "out_of_range")
    if body.module_id is not None:
        found = session.exec(
            select(TrainingModule.id)
            .join(TrainingProgramme, col(TrainingProgramme.id) == TrainingModule.programme_id)
            .where(TrainingModule.id == body.module_id, TrainingProgramme.study_id == s.study_id)
        ).first()
        if found is None:
            raise Unprocessable(["body", "module_id"], "no training module with this id in the study", "unknown_module")
    if body.kind == "assessment" and body.score is None:
        raise Unprocessable(["body", "score"], "an assessment records its score", "missing")
    r = TrainingRecord(study_id=s.study_id, supporter_id=s.id, **body.model_dump())
    session.add(r)
    session.flush()
    record(session, actor, "create", "training_record", r.id, study_id=s.study_id, site_id=s.site_id, after=snapshot(r))
    return r


def list_training(session: Session, s: PeerSupporter) -> list[TrainingRecordRead]:
    rows = session.exec(
        select(TrainingRecord)
        .where(TrainingRecord.supporter_id == s.id)
        .order_by(col(TrainingRecord.on_date), col(TrainingRecord.id))
    )
    return [TrainingRecordRead(**r.model_dump(exclude={"study_id", "created_at"})) for r in rows]


def supporter_names_for_audit(values: dict[str, Any]) -> list[str]:
    """Field names only: an identifier's value never enters the audit trail."""
    return sorted(k for k, v in values.items() if k in IDENTIFIER_FIELDS and v is not None)
