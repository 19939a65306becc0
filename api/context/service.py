"""Business rules of the context domain: versioned context records, context events, personal
goals and their ratings, the logic model and CMO configurations.

Site-level rows are scoped like participants: a coordinator sees and writes their own sites' rows
only (404 for others); programme-level rows (no site) are visible to every reader of the study and
written by admins. Every change is audited in the same transaction; services flush, the caller
commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from api.audit.service import record, snapshot
from api.auth import policy
from api.auth.service import Actor
from api.context.models import (
    NODE_KINDS,
    CmoConfiguration,
    ContextEvent,
    ContextRecord,
    GoalRating,
    LogicModel,
    PersonalGoal,
)
from api.context.schemas import (
    CmoIn,
    CmoPatch,
    ContextEventIn,
    ContextEventPatch,
    ContextRecordIn,
    GoalIn,
    LogicModelIn,
    RatingIn,
)
from api.db import utcnow
from api.errors import Conflict, NotFound, Unprocessable
from api.participants.models import Participant
from api.studies.models import Site, Study, Wave
from api.studies.service import sites_by_code


def _site_id(session: Session, study: Study, actor: Actor, code: str | None, loc: list) -> int | None:
    """The id of site ``code`` of the study (422 naming ``loc`` if unknown); 404 if not the actor's."""
    if code is None:
        return None
    sites = sites_by_code(session, study.id)
    if code not in sites:
        raise Unprocessable(loc, f"no site {code!r} in this study; expected one of: {', '.join(sorted(sites))}")
    policy.ensure_site_access(actor, sites[code], loc=tuple(loc), what="site")
    return sites[code]


def _site_codes(session: Session, study_id: int) -> dict[int, str]:
    return {v: k for k, v in sites_by_code(session, study_id).items()}


def _ensure_programme_write(actor: Actor, site_id: int | None, what: str) -> None:
    policy.ensure_can_write(actor)
    if site_id is None:
        policy.ensure_admin(actor, f"change programme-level {what}")


# ---- context records ---------------------------------------------------------------------------


def add_context_record(session: Session, study: Study, body: ContextRecordIn, actor: Actor) -> ContextRecord:
    """A new version of the site's (or programme's) context."""
    policy.ensure_can_write(actor)
    pid: int | None = None
    site_id: int | None
    if body.participant is not None:
        if body.site is not None:
            raise Unprocessable(["body", "site"], "a participant's context names no site (it is the participant's)")
        p = session.exec(
            select(Participant).where(Participant.study_id == study.id, Participant.study_code == body.participant)
        ).first()
        if p is None or not policy.sees_site(actor, p.site_id):
            raise Unprocessable(["body", "participant"], "no participant with this code in your sites of the study")
        pid, site_id = p.id, p.site_id
        key = f"participant:{pid}"
    else:
        site_id = _site_id(session, study, actor, body.site, ["body", "site"])
        _ensure_programme_write(actor, site_id, "context")
        key = "study" if site_id is None else f"site:{site_id}"
    last = session.exec(
        select(func.max(ContextRecord.version)).where(
            ContextRecord.study_id == study.id, ContextRecord.scope_key == key
        )
    ).one()
    rec = ContextRecord(
        study_id=study.id,
        site_id=site_id,
        participant_id=pid,
        scope_key=key,
        version=(last or 0) + 1,
        valid_from=body.valid_from,
        variables=dict(body.variables),
        note=body.note,
    )
    session.add(rec)
    session.flush()
    record(session, actor, "create", "context_record", rec.id, study_id=study.id, site_id=site_id, after=snapshot(rec))
    return rec


def list_context_records(session: Session, study: Study, actor: Actor, current_only: bool = False) -> list[dict]:
    rows = session.exec(
        select(ContextRecord)
        .where(ContextRecord.study_id == study.id)
        .order_by(ContextRecord.scope_key, ContextRecord.version)
    ).all()
    codes = _site_codes(session, study.id)
    people = participant_codes(session, study.id)
    visible = [r for r in rows if r.site_id is None or policy.sees_site(actor, r.site_id)]
    if current_only:
        latest: dict[str, ContextRecord] = {}
        for r in visible:
            if r.scope_key not in latest or (r.valid_from, r.version) >= (
                latest[r.scope_key].valid_from,
                latest[r.scope_key].version,
            ):
                latest[r.scope_key] = r
        visible = list(latest.values())
    return [
        {
            **r.model_dump(),
            "site": codes.get(r.site_id) if r.site_id and not r.participant_id else None,
            "participant": people.get(r.participant_id) if r.participant_id else None,
        }
        for r in visible
    ]


def participant_codes(session: Session, study_id: int) -> dict[int, str]:
    return {
        i: c
        for i, c in session.exec(
            select(Participant.id, Participant.study_code).where(Participant.study_id == study_id)
        ).all()
    }


def participant_context(session: Session, study_id: int) -> dict[str, dict[str, Any]]:
    """Each participant's current context variables (latest ``valid_from``, then version)."""
    rows = session.exec(
        select(ContextRecord)
        .where(ContextRecord.study_id == study_id, col(ContextRecord.participant_id).is_not(None))
        .order_by(ContextRecord.valid_from, ContextRecord.version)
    ).all()
    people = participant_codes(session, study_id)
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        out[people[r.participant_id]] = dict(r.variables)  # type: ignore[index]
    return out


def site_context(session: Session, study_id: int) -> dict[str, dict[str, Any]]:
    """Each site code's current context variables, the programme's merged under them (site wins)."""
    rows = session.exec(
        select(ContextRecord)
        .where(ContextRecord.study_id == study_id)
        .order_by(ContextRecord.valid_from, ContextRecord.version)
    ).all()
    codes = _site_codes(session, study_id)
    programme: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    for r in rows:  # later versions overwrite earlier ones
        if r.participant_id is not None:
            continue
        if r.site_id is None:
            programme = dict(r.variables)
        elif r.site_id in codes:
            per[codes[r.site_id]] = dict(r.variables)
    return {code: {**programme, **per.get(code, {})} for code in codes.values()}


# ---- context events ----------------------------------------------------------------------------


def _event_read(e: ContextEvent, codes: dict[int, str]) -> dict:
    return {**e.model_dump(), "site": codes.get(e.site_id) if e.site_id else None}


def add_event(session: Session, study: Study, body: ContextEventIn, actor: Actor) -> dict:
    policy.ensure_can_write(actor)
    if body.level in ("site", "group") and body.site is None:
        raise Unprocessable(["body", "site"], f"a {body.level}-level event names its site", "missing")
    if body.level == "group" and body.group_code is None:
        raise Unprocessable(["body", "group_code"], "a group-level event names its peer group", "missing")
    if body.level == "study" and (body.site or body.group_code):
        raise Unprocessable(["body", "site"], "a study-level event names no site or group", "extra")
    site_id = _site_id(session, study, actor, body.site, ["body", "site"])
    _ensure_programme_write(actor, site_id, "events")
    e = ContextEvent(study_id=study.id, **body.model_dump(exclude={"site"}), site_id=site_id)
    session.add(e)
    session.flush()
    record(session, actor, "create", "context_event", e.id, study_id=study.id, site_id=site_id, after=snapshot(e))
    return _event_read(e, _site_codes(session, study.id))


def get_event(session: Session, study: Study, event_id: int, actor: Actor) -> ContextEvent:
    e = session.get(ContextEvent, event_id)
    if e is None or e.study_id != study.id:
        raise NotFound(["path", "event_id"], "context event not found")
    if e.site_id is not None:
        policy.ensure_site_access(actor, e.site_id, loc=("path", "event_id"), what="context event")
    return e


def update_event(session: Session, study: Study, event_id: int, body: ContextEventPatch, actor: Actor) -> dict:
    policy.ensure_can_write(actor)
    e = get_event(session, study, event_id, actor)
    _ensure_programme_write(actor, e.site_id, "events")
    before = snapshot(e)
    changes = body.model_dump(exclude_unset=True)
    for k in ("title", "kind", "starts_on"):
        if k in changes and changes[k] is None:
            raise Unprocessable(["body", k], f"{k} cannot be cleared", "required")
    for k, v in changes.items():
        setattr(e, k, v)
    if e.ends_on is not None and e.ends_on < e.starts_on:
        raise Unprocessable(["body", "ends_on"], "ends_on is before starts_on", "date_order")
    e.updated_at = utcnow()
    session.add(e)
    session.flush()
    record(
        session,
        actor,
        "update",
        "context_event",
        e.id,
        study_id=study.id,
        site_id=e.site_id,
        before=before,
        after=snapshot(e),
    )
    return _event_read(e, _site_codes(session, study.id))


def list_events(session: Session, study: Study, actor: Actor) -> list[dict]:
    rows = session.exec(
        select(ContextEvent).where(ContextEvent.study_id == study.id).order_by(ContextEvent.starts_on, ContextEvent.id)
    ).all()
    codes = _site_codes(session, study.id)
    return [_event_read(e, codes) for e in rows if e.site_id is None or policy.sees_site(actor, e.site_id)]


# ---- personal goals ----------------------------------------------------------------------------


def _goal_read(session: Session, g: PersonalGoal, code: str, site: str) -> dict:
    ratings = session.exec(select(GoalRating).where(GoalRating.goal_id == g.id).order_by(GoalRating.wave_code)).all()
    return {
        **g.model_dump(),
        "participant": code,
        "site": site,
        "ratings": [{"wave": r.wave_code, "level": r.level, "rated_on": r.rated_on} for r in ratings],
    }


def add_goal(session: Session, study: Study, body: GoalIn, actor: Actor) -> dict:
    policy.ensure_can_write(actor)
    p = session.exec(
        select(Participant).where(Participant.study_id == study.id, Participant.study_code == body.participant)
    ).first()
    if p is None or not policy.sees_site(actor, p.site_id):
        raise Unprocessable(["body", "participant"], "no participant with this code in your sites of the study")
    dup = session.exec(
        select(PersonalGoal.id).where(PersonalGoal.participant_id == p.id, PersonalGoal.code == body.code)
    ).first()
    if dup is not None:
        raise Conflict(["body", "code"], f"the participant already has a goal {body.code!r}", "duplicate")
    g = PersonalGoal(
        study_id=study.id,
        participant_id=p.id,
        site_id=p.site_id,
        **body.model_dump(exclude={"participant"}),
    )
    session.add(g)
    session.flush()
    record(session, actor, "create", "personal_goal", g.id, study_id=study.id, site_id=p.site_id, after=snapshot(g))
    return _goal_read(session, g, p.study_code, _site_codes(session, study.id)[p.site_id])


def get_goal(session: Session, study: Study, goal_id: int, actor: Actor) -> PersonalGoal:
    g = session.get(PersonalGoal, goal_id)
    if g is None or g.study_id != study.id:
        raise NotFound(["path", "goal_id"], "goal not found")
    policy.ensure_site_access(actor, g.site_id, loc=("path", "goal_id"), what="goal")
    return g


def rate_goal(session: Session, study: Study, goal_id: int, body: RatingIn, actor: Actor) -> dict:
    """Record (or amend) the level a goal reached at a wave."""
    policy.ensure_can_write(actor)
    g = get_goal(session, study, goal_id, actor)
    wave = session.exec(select(Wave).where(Wave.study_id == study.id, Wave.code == body.wave)).first()
    if wave is None:
        raise Unprocessable(["body", "wave"], f"no wave {body.wave!r} in this study")
    r = session.exec(select(GoalRating).where(GoalRating.goal_id == g.id, GoalRating.wave_code == body.wave)).first()
    before = snapshot(r)
    if r is None:
        r = GoalRating(goal_id=g.id, wave_code=body.wave, level=body.level, rated_on=body.rated_on)
    else:
        r.level, r.rated_on, r.updated_at = body.level, body.rated_on, utcnow()
    session.add(r)
    session.flush()
    record(
        session,
        actor,
        "create" if before is None else "amend",
        "goal_rating",
        r.id,
        study_id=study.id,
        site_id=g.site_id,
        before=before,
        after=snapshot(r),
    )
    code = session.exec(select(Participant.study_code).where(Participant.id == g.participant_id)).one()
    return _goal_read(session, g, code, _site_codes(session, study.id)[g.site_id])


def list_goals(session: Session, study: Study, actor: Actor, participant: str | None = None) -> list[dict]:
    stmt = (
        select(PersonalGoal, Participant.study_code)
        .join(Participant, Participant.id == PersonalGoal.participant_id)
        .where(PersonalGoal.study_id == study.id)
        .order_by(Participant.study_code, PersonalGoal.code)
    )
    if participant is not None:
        stmt = stmt.where(Participant.study_code == participant)
    codes = _site_codes(session, study.id)
    return [
        _goal_read(session, g, code, codes[g.site_id])
        for g, code in session.exec(stmt).all()
        if policy.sees_site(actor, g.site_id)
    ]


def goal_levels(session: Session, study_id: int, site_ids: set[int] | None) -> list[tuple]:
    """``(participant code, goal code, weight, baseline level, wave, level)`` of every rated or unrated goal."""
    stmt = (
        sa_select(
            Participant.study_code,
            PersonalGoal.code,
            PersonalGoal.weight,
            PersonalGoal.baseline_level,
            GoalRating.wave_code,
            GoalRating.level,
            PersonalGoal.site_id,
        )
        .join(Participant, Participant.id == PersonalGoal.participant_id)
        .outerjoin(GoalRating, GoalRating.goal_id == PersonalGoal.id)
        .where(PersonalGoal.study_id == study_id)
    )
    return [tuple(r[:6]) for r in session.execute(stmt).all() if site_ids is None or r[6] in site_ids]


# ---- logic model -------------------------------------------------------------------------------


def put_logic_model(session: Session, study: Study, body: LogicModelIn, actor: Actor) -> LogicModel:
    policy.ensure_admin(actor, "change the logic model")
    codes = [n.code for n in body.nodes]
    seen: set[str] = set()
    for i, c in enumerate(codes):
        if c in seen:
            raise Unprocessable(["body", "nodes", i, "code"], f"node code {c!r} is repeated", "duplicate")
        seen.add(c)
    for i, link in enumerate(body.links):
        if set(link) != {"from", "to"}:
            raise Unprocessable(["body", "links", i], 'a link is {"from": <node code>, "to": <node code>}')
        for end in ("from", "to"):
            if link[end] not in seen:
                raise Unprocessable(["body", "links", i, end], f"no node {link[end]!r} in the model", "unknown_node")
    for i, n in enumerate(body.nodes):
        if n.measure is not None and n.kind not in ("mechanism", "outcome"):
            raise Unprocessable(["body", "nodes", i, "measure"], "only mechanisms and outcomes point to a measure")
    lm = session.get(LogicModel, study.id)
    before = snapshot(lm)
    nodes = [n.model_dump() for n in sorted(body.nodes, key=lambda n: NODE_KINDS.index(n.kind))]
    if lm is None:
        lm = LogicModel(study_id=study.id, version=1, nodes=nodes, links=list(body.links))
    else:
        lm.version, lm.nodes, lm.links, lm.updated_at = lm.version + 1, nodes, list(body.links), utcnow()
    session.add(lm)
    session.flush()
    record(
        session,
        actor,
        "create" if before is None else "update",
        "logic_model",
        study.id,
        study_id=study.id,
        before=before,
        after=snapshot(lm),
    )
    return lm


def get_logic_model(session: Session, study: Study) -> LogicModel:
    lm = session.get(LogicModel, study.id)
    if lm is None:
        raise NotFound(["path", "study_id"], "this study has no logic model yet")
    return lm


# ---- CMO configurations ------------------------------------------------------------------------


def add_cmo(session: Session, study: Study, body: CmoIn, actor: Actor) -> CmoConfiguration:
    policy.ensure_admin(actor, "change the study's CMO configurations")
    _check_waves(session, study, body)
    if session.exec(
        select(CmoConfiguration.id).where(CmoConfiguration.study_id == study.id, CmoConfiguration.code == body.code)
    ).first():
        raise Conflict(["body", "code"], f"the study already has a CMO configuration {body.code!r}", "duplicate")
    c = CmoConfiguration(study_id=study.id, **body.model_dump())
    session.add(c)
    session.flush()
    record(session, actor, "create", "cmo_configuration", c.id, study_id=study.id, after=snapshot(c))
    return c


def _check_waves(session: Session, study: Study, body: CmoIn | CmoPatch) -> None:
    waves = set(session.exec(select(Wave.code).where(Wave.study_id == study.id)).all())
    if body.outcome_wave is not None and body.outcome_wave not in waves:
        raise Unprocessable(
            ["body", "outcome_wave"], f"no wave {body.outcome_wave!r}; expected one of: {', '.join(sorted(waves))}"
        )
    mech = body.mechanism
    if mech is not None and mech.wave is not None and mech.wave not in waves:
        raise Unprocessable(["body", "mechanism", "wave"], f"no wave {mech.wave!r} in this study")
    if mech is not None and mech.kind == "measure" and mech.wave is None:
        raise Unprocessable(["body", "mechanism", "wave"], "a measured mechanism names the wave it is measured at")


def get_cmo(session: Session, study: Study, cmo_id: int) -> CmoConfiguration:
    c = session.get(CmoConfiguration, cmo_id)
    if c is None or c.study_id != study.id:
        raise NotFound(["path", "cmo_id"], "CMO configuration not found")
    return c


def update_cmo(session: Session, study: Study, cmo_id: int, body: CmoPatch, actor: Actor) -> CmoConfiguration:
    policy.ensure_admin(actor, "change the study's CMO configurations")
    c = get_cmo(session, study, cmo_id)
    _check_waves(session, study, body)
    before = snapshot(c)
    for k, v in body.model_dump(exclude_unset=True).items():
        if v is None:
            raise Unprocessable(["body", k], f"{k} cannot be cleared", "required")
        setattr(c, k, v)
    c.updated_at = utcnow()
    session.add(c)
    session.flush()
    record(session, actor, "update", "cmo_configuration", c.id, study_id=study.id, before=before, after=snapshot(c))
    return c


def list_cmos(session: Session, study: Study) -> list[CmoConfiguration]:
    return list(
        session.exec(
            select(CmoConfiguration).where(CmoConfiguration.study_id == study.id).order_by(CmoConfiguration.code)
        ).all()
    )


def site_ids(session: Session, study_id: int) -> set[int]:
    return set(session.exec(select(Site.id).where(Site.study_id == study_id)).all())
