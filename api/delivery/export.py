"""The delivery export shapes, through the exports domain (same site scope, formats, data dictionary,
audit and de-identification as every shape):

``delivery``
    one row per participant and delivery record: attendance at a session (with the session's
    group, supporter code, number, mode, topic, curriculum module and duration), one-to-one contact,
    or forum week.
``dose``
    participant-level dose (:func:`api.delivery.dose.participant_dose`): one row per participant
    and wave interval, joinable to the ``long``/``wide`` shapes on ``participant`` and ``wave``, and
    one row per participant with an empty ``wave`` for the whole follow-up.
``delivery_sessions``
    one row per session (cancelled ones with their reason), per site.
``supporter_training``
    one row per peer supporter and training record, with the supporter's profile.

Supporters appear by their pseudonymous code only; their identifiers never leave the vault. For
de-identified readers calendar dates are empty: participant records carry days since enrolment,
sessions days since the study began, training days since the supporter started; free text
(cancellation reasons, training notes) is empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from api.auth.service import Actor
from api.delivery import dose as dose_mod
from api.delivery.models import (
    ATTENDANCE,
    CONTACT_KINDS,
    PRIOR_ROLES,
    TRAINING_KINDS,
    DeliverySession,
    ForumActivity,
    PeerContact,
    PeerGroup,
    PeerSupporter,
    SessionAttendance,
    TrainingModule,
    TrainingRecord,
)
from api.delivery.service import study_start
from api.exports import dictionary as dd
from api.studies.models import Arm, Site, Study

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

SHAPES = ("delivery", "dose", "delivery_sessions", "supporter_training")
_DATE = "ISO date (empty for de-identified readers)"


def _v(values) -> tuple[tuple[str, str], ...]:
    return tuple((v, v.replace("_", " ")) for v in values)


def _session_columns() -> list[dd.Column]:
    return [
        dd.Column("session_id", "session record id", "int"),
        dd.Column("group", "peer group code", "string"),
        dd.Column("supporter", "pseudonymous code of the session's peer supporter", "string"),
        dd.Column("session_number", "number in the group's schedule", "int"),
        dd.Column("mode", "face_to_face, online, phone or mixed", "string"),
        dd.Column("topic", "session topic", "string"),
        dd.Column("curriculum_module", "curriculum module delivered", "string"),
        dd.Column("duration_minutes", "session duration", "int", unit="minutes"),
    ]


def columns(shape: str) -> list[dd.Column]:
    """The columns of a delivery shape (also its data dictionary)."""
    who = [
        dd.Column("participant", "pseudonymous participant code", "string"),
        dd.Column("site", "site code", "string"),
        dd.Column("arm", "arm code", "string"),
    ]
    if shape == "delivery":
        return who + [
            dd.Column(
                "record",
                "attendance, contact or forum_week",
                "string",
                values=_v(("attendance", "contact", "forum_week")),
            ),
            dd.Column("day", "days from enrolment to the session, contact or week start", "int", unit="days"),
            dd.Column("date", "date of the session, contact or week start", "string", unit=_DATE),
            *_session_columns(),
            dd.Column("attendance", "attendance at the session", "string", values=_v(ATTENDANCE)),
            dd.Column("minutes", "minutes received (session or contact)", "int", unit="minutes"),
            dd.Column("contact_kind", "kind of one-to-one contact", "string", values=_v(CONTACT_KINDS)),
            dd.Column("forum_posts", "forum posts in the week", "int"),
            dd.Column("forum_replies", "forum replies in the week", "int"),
            dd.Column("forum_logins", "forum logins in the week", "int"),
        ]
    if shape == "dose":
        days = "days since enrolment"
        return who + [
            dd.Column("wave", "wave closing the interval; empty for the whole follow-up", "string"),
            dd.Column("interval_start_day", f"interval start ({days}, exclusive)", "int", unit="days"),
            dd.Column("interval_end_day", f"interval end ({days}, inclusive)", "int", unit="days"),
            dd.Column("sessions_offered", "delivered sessions of the participant's group while a member", "int"),
            dd.Column("sessions_attended", "sessions attended (on time, late or leaving early)", "int"),
            dd.Column("session_minutes", "minutes in sessions", "int", unit="minutes"),
            dd.Column("contacts", "one-to-one contacts", "int"),
            dd.Column("contact_minutes", "minutes of one-to-one contact", "int", unit="minutes"),
            dd.Column("minutes_total", "session and contact minutes", "int", unit="minutes"),
            dd.Column("forum_posts", "forum posts", "int"),
            dd.Column("forum_replies", "forum replies", "int"),
            dd.Column("forum_logins", "forum logins", "int"),
            dd.Column("proportion_planned", "sessions attended / sessions planned for the arm", "float"),
            dd.Column("first_exposure_day", f"first session or contact ({days})", "int", unit="days"),
            dd.Column("last_exposure_day", f"last session or contact ({days})", "int", unit="days"),
            dd.Column(
                "adherent",
                "meets the arm's adherence definition by the end of the interval",
                "bool",
                values=((False, "No"), (True, "Yes")),
            ),
        ]
    if shape == "delivery_sessions":
        return [
            dd.Column("site", "site code", "string"),
            dd.Column("arm", "arm code", "string"),
            *_session_columns(),
            dd.Column(
                "status", "planned, delivered or cancelled", "string", values=_v(("planned", "delivered", "cancelled"))
            ),
            dd.Column("planned_day", "planned date, days since the study began", "int", unit="days"),
            dd.Column("delivered_day", "delivered date, days since the study began", "int", unit="days"),
            dd.Column("planned_date", "planned date", "string", unit=_DATE),
            dd.Column("delivered_date", "delivered date", "string", unit=_DATE),
            dd.Column("cancel_reason", "why it was cancelled", "string", notes="free text: empty when de-identified"),
            dd.Column("attended", "participants attending", "int"),
        ]
    if shape == "supporter_training":
        return [
            dd.Column("supporter", "pseudonymous peer supporter code", "string"),
            dd.Column("site", "site code", "string"),
            dd.Column("arm", "arm code", "string"),
            dd.Column("condition", "lived-experience condition", "string"),
            dd.Column("years_since_diagnosis", "years since diagnosis", "float", unit="years"),
            dd.Column("prior_role", "prior role", "string", values=_v(PRIOR_ROLES)),
            dd.Column("gender", "gender", "string"),
            dd.Column("age_band", "age band", "string"),
            dd.Column("supporter_status", "status", "string"),
            dd.Column("record", "training record kind", "string", values=_v(TRAINING_KINDS)),
            dd.Column("module", "training module code", "string"),
            dd.Column("day", "days since the supporter started", "int", unit="days"),
            dd.Column("date", "date of the training event", "string", unit=_DATE),
            dd.Column("hours", "hours", "float", unit="hours"),
            dd.Column("score", "competency assessment score (0-100)", "float"),
            dd.Column("assessor", "assessor's role", "string"),
        ]
    raise ValueError(f"not a delivery shape: {shape}")


def _iso(d) -> str | None:
    return d.isoformat() if d is not None else None


def _delivery_batch(session: Session, plan, ids: list[int], people: pd.DataFrame, cols) -> pd.DataFrame:
    from api.exports.service import dd_conform

    groups = dict(session.exec(select(PeerGroup.id, PeerGroup.code).where(PeerGroup.study_id == plan.study_id)).all())
    supporters = dict(
        session.exec(select(PeerSupporter.id, PeerSupporter.code).where(PeerSupporter.study_id == plan.study_id)).all()
    )
    rows: list[dict[str, Any]] = []
    for a, s in session.exec(
        select(SessionAttendance, DeliverySession)
        .join(DeliverySession, col(DeliverySession.id) == SessionAttendance.session_id)
        .where(col(SessionAttendance.participant_id).in_(ids))
    ):
        attended = a.status in ("attended", "late", "left_early")
        rows.append(
            {
                "pid": a.participant_id,
                "record": "attendance",
                "_date": s.delivered_on,
                "session_id": s.id,
                "group": groups.get(s.group_id),
                "supporter": supporters.get(s.supporter_id),
                "session_number": s.number,
                "mode": s.mode,
                "topic": s.topic,
                "curriculum_module": s.curriculum_module,
                "duration_minutes": s.duration_minutes,
                "attendance": a.status,
                "minutes": (a.minutes if a.minutes is not None else s.duration_minutes) if attended else 0,
            }
        )
    for c in session.exec(select(PeerContact).where(col(PeerContact.participant_id).in_(ids))):
        rows.append(
            {
                "pid": c.participant_id,
                "record": "contact",
                "_date": c.on_date,
                "supporter": supporters.get(c.supporter_id),
                "contact_kind": c.kind,
                "minutes": c.duration_minutes,
            }
        )
    for f in session.exec(select(ForumActivity).where(col(ForumActivity.participant_id).in_(ids))):
        rows.append(
            {
                "pid": f.participant_id,
                "record": "forum_week",
                "_date": f.week_start,
                "forum_posts": f.posts,
                "forum_replies": f.replies,
                "forum_logins": f.logins,
            }
        )
    if not rows:
        return dd_conform(pd.DataFrame(columns=[c.name for c in cols]), cols)
    df = pd.DataFrame(rows).merge(people, on="pid", how="left", sort=False)
    enrolled = df["enrolled_on"].dt.date
    df["day"] = [(d - e).days for d, e in zip(df["_date"], enrolled, strict=True)]
    df["date"] = None if plan.shift_dates else [_iso(d) for d in df["_date"]]
    df = df.sort_values(["pid", "day", "record"], kind="stable")
    return dd_conform(df, cols)


def _dose_batch(
    session: Session, plan, ids: list[int], people: pd.DataFrame, cols, cache: dict[int, list[dict[str, Any]]]
) -> pd.DataFrame:
    from api.exports.service import dd_conform

    if not cache:  # computed once for the study (a few aggregate queries), then served per batch
        for r in dose_mod.participant_dose(session, plan.study_id, by_wave=True):
            cache.setdefault(r["participant_id"], []).append(r)
        for r in dose_mod.participant_dose(session, plan.study_id):
            cache.setdefault(r["participant_id"], []).append(r)
    rows = [r for pid in ids for r in cache.get(pid, [])]
    if not rows:
        return dd_conform(pd.DataFrame(columns=[c.name for c in cols]), cols)
    df = pd.DataFrame(rows).rename(columns={"participant_id": "pid"})
    df = df.drop(columns=["study_code", "site", "arm"]).merge(people, on="pid", how="left", sort=False)
    return dd_conform(df, cols)


def _study_rows(session: Session, plan, shape: str) -> list[dict[str, Any]]:
    study = session.get(Study, plan.study_id)
    assert study is not None
    sites = dict(session.exec(select(Site.id, Site.code).where(Site.study_id == plan.study_id)).all())
    arms = dict(session.exec(select(Arm.id, Arm.code).where(Arm.study_id == plan.study_id)).all())
    if plan.blind_arms is not None:  # neutral labels while the reader is blind (api.sap.blinding)
        arms = {i: plan.blind_arms.get(i) for i in arms}
    supporters = session.exec(
        select(PeerSupporter).where(
            PeerSupporter.study_id == plan.study_id, col(PeerSupporter.site_id).in_(plan.site_ids)
        )
    ).all()
    hide = plan.shift_dates
    out: list[dict[str, Any]] = []
    if shape == "delivery_sessions":
        start = study_start(session, study)
        groups = dict(
            session.exec(select(PeerGroup.id, PeerGroup.code).where(PeerGroup.study_id == plan.study_id)).all()
        )
        codes = {s.id: s.code for s in supporters}
        from api.delivery.sessions import session_reads

        rows = list(
            session.exec(
                select(DeliverySession)
                .where(DeliverySession.study_id == plan.study_id, col(DeliverySession.site_id).in_(plan.site_ids))
                .order_by(col(DeliverySession.id))
            )
        )
        attended = {r.id: r.attended for r in session_reads(session, rows)}
        for s in rows:
            out.append(
                {
                    "site": sites[s.site_id],
                    "arm": arms[s.arm_id],
                    "session_id": s.id,
                    "group": groups.get(s.group_id),
                    "supporter": codes.get(s.supporter_id) if s.supporter_id else None,
                    "session_number": s.number,
                    "mode": s.mode,
                    "topic": s.topic,
                    "curriculum_module": s.curriculum_module,
                    "duration_minutes": s.duration_minutes,
                    "status": s.status,
                    "planned_day": (s.planned_date - start).days,
                    "delivered_day": (s.delivered_on - start).days if s.delivered_on else None,
                    "planned_date": None if hide else _iso(s.planned_date),
                    "delivered_date": None if hide else _iso(s.delivered_on),
                    "cancel_reason": None if hide else s.cancel_reason,
                    "attended": attended.get(s.id, 0),
                }
            )
        return out
    modules = dict(session.exec(select(TrainingModule.id, TrainingModule.code)).all())
    by_id = {s.id: s for s in supporters}
    records = session.exec(
        select(TrainingRecord)
        .where(col(TrainingRecord.supporter_id).in_(list(by_id) or [-1]))
        .order_by(col(TrainingRecord.supporter_id), col(TrainingRecord.on_date))
    ).all()
    for r in records:
        sup = by_id[r.supporter_id]
        out.append(
            {
                "supporter": sup.code,
                "site": sites[sup.site_id],
                "arm": arms.get(sup.arm_id) if sup.arm_id else None,
                "condition": sup.condition,
                "years_since_diagnosis": sup.years_since_diagnosis,
                "prior_role": sup.prior_role,
                "gender": sup.gender,
                "age_band": sup.age_band,
                "supporter_status": sup.status,
                "record": r.kind,
                "module": modules.get(r.module_id) if r.module_id else None,
                "day": (r.on_date - sup.start_date).days,
                "date": None if hide else _iso(r.on_date),
                "hours": r.hours,
                "score": r.score,
                "assessor": r.assessor,
            }
        )
    return out


def iter_delivery_shape(
    shape: str,
    session: Session,
    study: Study,
    actor: Actor,
    filters=None,
    *,
    secret: str = "",
    batch_size: int = 500,
    plan=None,
) -> Iterator[pd.DataFrame]:
    """Batches of a delivery shape (see the module docstring)."""
    from api.exports import service as exports

    plan = plan or exports.plan_export(session, study, actor, filters, secret=secret)
    plan.context_items = []
    cols = exports.columns(plan, shape)
    if shape == "delivery":
        yield from exports._iter(session, plan, batch_size, lambda ids, p: _delivery_batch(session, plan, ids, p, cols))
    elif shape == "dose":
        cache: dict[int, list[dict[str, Any]]] = {}
        yield from exports._iter(
            session, plan, batch_size, lambda ids, p: _dose_batch(session, plan, ids, p, cols, cache)
        )
    else:
        try:
            rows = _study_rows(session, plan, shape)
            df = exports.dd_conform(pd.DataFrame(rows, columns=[c.name for c in cols]), cols)
            plan.rows += len(df)
            yield df
        finally:
            session.rollback()
