"""The ``safety`` export shape: one row per adverse event and per safety alert.

It goes through the exports domain (``GET /studies/{id}/exports/safety?format=…``, ``peerlens
export --shape safety``) with the same site scope, formats, data dictionary and audit as every
shape, and the same de-identification: analysts get no free text (``description`` is empty) and
no calendar dates (days since enrolment, or dates moved by the participant's secret shift when the
study chose ``date_mode: shift``). ``analysis.safety.harms_table`` reads the ``adverse_event`` rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from api.auth.service import Actor
from api.exports import dictionary as dd
from api.safety.models import RELATED, SERIOUSNESS, AdverseEvent, AdverseEventFollowUp, SafetyAlert
from api.studies.models import Study, Wave

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

_B = ((False, "No"), (True, "Yes"))


def _v(values) -> tuple[tuple[str, str], ...]:
    return tuple((v, v.replace("_", " ")) for v in values)


def safety_columns() -> list[dd.Column]:
    """The columns of the ``safety`` shape (also its data dictionary)."""
    from api.safety.models import AE_ACTIONS, ALERT_ACTIONS, EXPECTEDNESS, OUTCOMES, RELATEDNESS, REPORTERS, SEVERITIES

    date_unit = "ISO date (de-identified: empty, or shifted by the participant's secret offset)"
    return [
        dd.Column("participant", "pseudonymous participant code", "string"),
        dd.Column("site", "site code", "string"),
        dd.Column("arm", "arm code", "string"),
        dd.Column("arm_kind", "intervention, active comparator or control", "string"),
        dd.Column("record", "adverse_event or safety_alert", "string", values=_v(("adverse_event", "safety_alert"))),
        dd.Column("record_id", "id of the event or alert", "int"),
        dd.Column("onset_date", "event onset; alert: day answered (study time zone)", "string", unit=date_unit),
        dd.Column("onset_days", "days from enrolment to onset (or to the alerting answer)", "float", unit="days"),
        dd.Column("end_date", "event resolution; alert: day resolved", "string", unit=date_unit),
        dd.Column("end_days", "days from enrolment to resolution", "float", unit="days"),
        dd.Column("reported_at", "event reported / alert raised (UTC)", "datetime", unit="UTC date-time"),
        dd.Column(
            "description", "description of the event", "string", notes="free text: empty in de-identified exports"
        ),
        dd.Column("serious", "serious adverse event (any ICH E2A criterion)", "bool", values=_B),
        dd.Column("seriousness", "ICH E2A criteria met, ';'-separated", "string"),
        *[dd.Column(c, f"seriousness criterion: {c.replace('_', ' ')}", "bool", values=_B) for c in SERIOUSNESS],
        dd.Column("severity", "severity", "string", values=_v(SEVERITIES)),
        dd.Column("relatedness", "relatedness to the intervention", "string", values=_v(RELATEDNESS)),
        dd.Column("related", "possibly, probably or definitely related", "bool", values=_B),
        dd.Column("expectedness", "expectedness", "string", values=_v(EXPECTEDNESS)),
        dd.Column("action_taken", "action taken with the intervention", "string", values=_v(AE_ACTIONS)),
        dd.Column("outcome", "outcome", "string", values=_v(OUTCOMES)),
        dd.Column("reporter", "who reported the event", "string", values=_v(REPORTERS)),
        dd.Column("peer_supporter_involved", "a peer supporter was involved", "bool", values=_B),
        dd.Column("peer_supporter_id", "the peer supporter's record id (delivery domain)", "int"),
        dd.Column("group_session_involved", "it happened in or after a group session", "bool", values=_B),
        dd.Column("delivery_session_id", "the session's record id (delivery domain)", "int"),
        dd.Column("follow_ups", "follow-ups recorded", "int"),
        dd.Column("wave", "alert: wave of the alerting answer", "string"),
        dd.Column("instrument", "alert: instrument of the alerting answer", "string"),
        dd.Column("rule", "alert: rule met", "string"),
        dd.Column("observed", "alert: answer or score that met the rule", "float"),
        dd.Column("alert_status", "alert: open, acknowledged or resolved", "string"),
        dd.Column("alert_action", "alert: action taken", "string", values=_v(ALERT_ACTIONS)),
        dd.Column("hours_to_acknowledge", "alert: hours from raised to acknowledged", "float", unit="hours"),
        dd.Column("escalation_level", "alert: times escalated", "int"),
    ]


def _rows(session: Session, ids: list[int], tz: ZoneInfo) -> list[dict[str, Any]]:
    counts: dict[int, int] = {}
    events = session.exec(select(AdverseEvent).where(AdverseEvent.participant_id.in_(ids))).all()
    if events:
        for fid in session.exec(
            select(AdverseEventFollowUp.adverse_event_id).where(
                AdverseEventFollowUp.adverse_event_id.in_([e.id for e in events])
            )
        ):
            counts[fid] = counts.get(fid, 0) + 1
    out: list[dict[str, Any]] = []
    for e in events:
        crit = set(e.seriousness or [])
        out.append(
            {
                "pid": e.participant_id,
                "record": "adverse_event",
                "record_id": e.id,
                "_onset": e.onset_date,
                "_end": e.resolution_date,
                "reported_at": e.reported_at,
                "description": e.description,
                "serious": e.serious,
                "seriousness": ";".join(c for c in SERIOUSNESS if c in crit),
                **{c: c in crit for c in SERIOUSNESS},
                "severity": e.severity,
                "relatedness": e.relatedness,
                "related": e.relatedness in RELATED,
                "expectedness": e.expectedness,
                "action_taken": e.action_taken,
                "outcome": e.outcome,
                "reporter": e.reporter,
                "peer_supporter_involved": e.peer_supporter_involved,
                "peer_supporter_id": e.peer_supporter_id,
                "group_session_involved": e.group_session_involved,
                "delivery_session_id": e.delivery_session_id,
                "follow_ups": counts.get(e.id, 0),
            }
        )
    for a, wave in session.exec(
        select(SafetyAlert, Wave.code)
        .join(Wave, Wave.id == SafetyAlert.wave_id)
        .where(SafetyAlert.participant_id.in_(ids))
    ).all():
        ack = a.acknowledged_at
        out.append(
            {
                "pid": a.participant_id,
                "record": "safety_alert",
                "record_id": a.id,
                "_onset": a.answered_at.astimezone(tz).date(),
                "_end": a.resolved_at.astimezone(tz).date() if a.resolved_at else None,
                "reported_at": a.raised_at,
                "wave": wave,
                "instrument": a.instrument,
                "rule": a.rule_code,
                "observed": a.observed,
                "alert_status": a.status,
                "alert_action": a.action,
                "hours_to_acknowledge": (ack - a.raised_at) / timedelta(hours=1) if ack else None,
                "escalation_level": a.escalation_level,
            }
        )
    out.sort(key=lambda r: (r["pid"], r["record"], r["record_id"]))
    return out


def _batch(session: Session, plan, ids: list[int], people: pd.DataFrame, cols) -> pd.DataFrame:
    from api.exports.service import dd_conform

    tz = ZoneInfo(plan.time_zone)
    rows = _rows(session, ids, tz)
    if not rows:
        return dd_conform(pd.DataFrame(columns=[c.name for c in cols]), cols)
    df = pd.DataFrame(rows).merge(people, on="pid", how="left", sort=False)
    enrolled = df["enrolled_on"].dt.date
    # an enrolment date stored before the date policy (NaT here) leaves the day counts empty
    df["onset_days"] = [
        (d - e).days if d is not None and not pd.isna(e) else None for d, e in zip(df["_onset"], enrolled, strict=True)
    ]
    df["end_days"] = [
        (d - e).days if d is not None and not pd.isna(d) and not pd.isna(e) else None
        for d, e in zip(df["_end"], enrolled, strict=True)
    ]
    if plan.shift_dates:
        df["description"] = None  # free text may name people
        if plan.date_mode == "shift":
            shift = [timedelta(days=int(s)) for s in df["shift"]]
            df["onset_date"] = [d - s if d is not None else None for d, s in zip(df["_onset"], shift, strict=True)]
            df["end_date"] = [d - s if _is_date(d) else None for d, s in zip(df["_end"], shift, strict=True)]
            df["reported_at"] = pd.to_datetime(df["reported_at"], utc=True) - pd.to_timedelta(df["shift"], unit="D")
        else:
            df["onset_date"] = df["end_date"] = None
            df["reported_at"] = pd.NaT
    else:
        df["onset_date"], df["end_date"] = df["_onset"], df["_end"]
    for name in ("onset_date", "end_date"):
        df[name] = [d.isoformat() if _is_date(d) else None for d in df[name]]
    return dd_conform(df, cols)


def _is_date(d) -> bool:
    return d is not None and not (isinstance(d, float) and pd.isna(d)) and hasattr(d, "isoformat")


def iter_safety(
    session: Session,
    study: Study,
    actor: Actor,
    filters=None,
    *,
    secret: str = "",
    batch_size: int = 500,
    plan=None,
) -> Iterator[pd.DataFrame]:
    """The ``safety`` frame in batches of whole participants (see the module docstring)."""
    from api.exports import service as exports

    plan = plan or exports.plan_export(session, study, actor, filters, secret=secret)
    plan.context_items = []  # the safety shape carries no baseline context columns
    cols = exports.columns(plan, "safety")
    yield from exports._iter(session, plan, batch_size, lambda ids, people: _batch(session, plan, ids, people, cols))
