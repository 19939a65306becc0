"""The report's intervention and process section, from the process evaluation (``api.delivery``).

Per arm: the TIDieR checklist (:func:`api.delivery.tidier.checklist`: typed items 1–9 and 11, items
10 and 12 generated from the records) with its completeness (items reported / 12); dose by arm from
:func:`api.delivery.dose.participant_dose` (sessions offered and attended, minutes, contacts and the
arm's adherence definition); the peer supporters' training (counts and hours, no identifiers).

Dose, delivery and the description of each arm tell which arm is which, so a reader blind to the
arms sees that the section is withheld (with the counts that do not reveal the arms) until the
study is unblinded.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlmodel import Session, func, select

from analysis.trialreport import absent, table_html
from api.reports import adapters
from api.studies.models import Study

if TYPE_CHECKING:
    from api.reports.gather import ReportData

#: TIDieR items (Hoffmann et al. 2014): 12.
TIDIER_TOTAL = 12


def _text(value: Any) -> str:
    """A generated TIDieR value as a sentence."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        return str(value)
    if "note" in value and value.get("adaptations") is None:
        return str(value["note"])
    if "summary" in value:  # the adaptation log's item 10
        return str(value["summary"])
    parts = []
    if value.get("participants") is not None:
        parts.append(f"{value['participants']} participants")
    sessions = value.get("sessions") or {}
    if sessions:
        parts.append("sessions " + ", ".join(f"{k} {v}" for k, v in sorted(sessions.items())))
    if value.get("sessions_attended_median") is not None:
        parts.append(f"median sessions attended {value['sessions_attended_median']:g}")
    if value.get("any_session") is not None:
        parts.append(f"{value['any_session']} attended at least one session")
    if value.get("adherent") is not None:
        parts.append(f"{value['adherent']} adherent ({value.get('adherence_definition')})")
    fid = value.get("fidelity")
    if isinstance(fid, dict):  # the fidelity ratings' part of item 12
        rated = (
            f"fidelity rated at {fid.get('rated_sessions', 0)} of {fid.get('delivered_sessions', 0)} delivered sessions"
        )
        if fid.get("mean_total") is not None:
            rated += f", mean {fid['mean_total']:g}% of the checklist maximum"
        parts.append(rated)
    for k, v in value.items():
        if k not in (
            "fidelity",
            "participants",
            "sessions",
            "sessions_attended_median",
            "any_session",
            "adherent",
            "adherence_definition",
        ):
            parts.append(f"{k.replace('_', ' ')}: {v}")
    return "; ".join(parts)


def _reported(value: Any, generated: bool) -> bool:
    """An item counts as reported when it says something about the intervention: typed text, or a
    generated item with records behind it (no adaptation log, no participants: not reported)."""
    if value is None:
        return False
    if not generated:
        return bool(str(value).strip())
    if isinstance(value, dict):
        if "adaptations" in value and value["adaptations"] is None:
            return False
        if "participants" in value:
            return bool(value["participants"]) and bool(value.get("sessions") or value.get("adherent") is not None)
    return bool(value)


def _median_iqr(values: list[float]) -> str:
    if not values:
        return ""
    q = pd.Series(values, dtype=float).quantile([0.25, 0.5, 0.75])
    return f"{q[0.5]:g} [{q[0.25]:g}–{q[0.75]:g}]"


def collect(session: Session, study: Study, data: ReportData) -> dict[str, Any] | None:
    """What the section shows, read once while the session is open; None without the process
    evaluation or without any delivery record for the study."""
    checklist = adapters.hook("api.delivery.tidier", "checklist")
    dose = adapters.hook("api.delivery.dose", "participant_dose")
    if checklist is None or dose is None:
        return None
    from api.delivery import models as dm
    from api.studies.models import Arm

    def count(model: Any) -> int:
        return int(session.exec(select(func.count()).select_from(model).where(model.study_id == study.id)).one())

    records = {
        "plans": count(dm.DeliveryPlan),
        "descriptions": count(dm.TidierDescription),
        "sessions": count(dm.DeliverySession),
        "contacts": count(dm.PeerContact),
    }
    if not any(records.values()):
        return None
    arms = list(session.exec(select(Arm).where(Arm.study_id == study.id).order_by(Arm.id)).all())
    tidier = []
    for arm in arms:
        if arm.id not in data.arm_labels:
            continue
        c = checklist(session, arm)
        items = [
            {
                "item": f"{i.key.split('_')[0]}. {i.label}",
                "value": i.value if not i.generated else _text(i.value),
                "reported": _reported(i.value, i.generated),
            }
            for i in c.items
        ]
        tidier.append({"arm": data.arm_labels[arm.id], "version": c.version, "items": items})
    pids = set(data.people["pid"]) if len(data.people) else set()
    label_of = {a.code: data.arm_labels.get(a.id or 0, a.code) for a in arms}
    rows = [
        r | {"arm": label_of.get(r["arm"], r["arm"])}
        for r in dose(session, study.id, None)
        if r["participant_id"] in pids and r["arm"] is not None
    ]
    plans = {
        label_of.get(a.code, a.code): p
        for a in arms
        if (p := session.get(dm.DeliveryPlan, a.id)) is not None and a.id in data.arm_labels
    }
    training = session.exec(
        select(dm.TrainingRecord.kind, func.count(), func.sum(dm.TrainingRecord.hours))
        .where(dm.TrainingRecord.study_id == study.id)
        .group_by(dm.TrainingRecord.kind)
        .order_by(dm.TrainingRecord.kind)
    ).all()
    supporters = count(dm.PeerSupporter)
    trained = int(
        session.exec(
            select(func.count(func.distinct(dm.TrainingRecord.supporter_id))).where(
                dm.TrainingRecord.study_id == study.id
            )
        ).one()
    )
    fidelity = adapters.hook("api.fidelity.models", "FidelityRating")
    adaptation = adapters.hook("api.fidelity.models", "Adaptation")
    return {
        "fidelity_ratings": count(fidelity) if fidelity is not None else None,
        "adaptations": count(adaptation) if adaptation is not None else None,
        "records": records,
        "tidier": tidier,
        "dose": rows,
        "plans": {
            k: f"{p.planned_sessions} sessions of {p.session_minutes} min; received = "
            f"{p.adherence_kind} ≥ {p.adherence_threshold:g}"
            for k, p in plans.items()
        },
        "training": [(k, int(n), float(h or 0)) for k, n, h in training],
        "supporters": supporters,
        "trained": trained,
    }


def _dose_table(data: ReportData, info: dict[str, Any]) -> str:
    rows = []
    for arm in data.arms:
        got = [r for r in info["dose"] if r["arm"] == arm]
        adherent = [r["adherent"] for r in got if r["adherent"] is not None]
        rows.append(
            {
                "arm": arm,
                "n": len(got),
                "plan": info["plans"].get(arm, "no delivery plan"),
                "offered": _median_iqr([r["sessions_offered"] for r in got]),
                "attended": _median_iqr([r["sessions_attended"] for r in got]),
                "any": f"{sum(r['sessions_attended'] > 0 for r in got)}/{len(got)}",
                "minutes": _median_iqr([r["minutes_total"] for r in got]),
                "contacts": _median_iqr([r["contacts"] for r in got]),
                "adherent": f"{sum(adherent)}/{len(adherent)}" if adherent else "no adherence definition",
            }
        )
    return table_html(
        pd.DataFrame(rows),
        {
            "arm": "Arm",
            "n": "Participants",
            "plan": "Planned dose and adherence definition",
            "offered": "Sessions offered, median [IQR]",
            "attended": "Sessions attended, median [IQR]",
            "any": "Attended any session",
            "minutes": "Minutes received, median [IQR]",
            "contacts": "One-to-one contacts, median [IQR]",
            "adherent": "Received the intervention (adherent)",
        },
        key="dose",
        caption="Dose by arm, over the whole follow-up (from the delivery records)",
    )


def intervention_section(data: ReportData) -> tuple[str, bool]:
    """TIDieR per arm with completeness, dose by arm, fidelity and adaptations, training."""
    info = data.extra.get("delivery")
    if info is None:
        return absent("no delivery records: the TIDieR checklist, dose and fidelity need them"), False
    r = info["records"]
    parts = [
        f'<p data-count="delivery_records">Delivery records: {r["plans"]} delivery plans, {r["descriptions"]} '
        f"TIDieR description versions, {r['sessions']} sessions, {r['contacts']} one-to-one contacts.</p>"
    ]
    if data.masked:
        parts.append(
            absent(
                "the TIDieR checklist, dose by arm and delivery are withheld while the study is blinded to this "
                "reader: they tell which arm is which"
            )
        )
    else:
        for t in info["tidier"]:
            score = sum(i["reported"] for i in t["items"])
            version = "no description recorded" if t["version"] is None else f"description version {t['version']}"
            frame = pd.DataFrame(
                [{"item": i["item"], "value": i["value"] or "not reported"} for i in t["items"]],
                columns=["item", "value"],
            )
            parts.append(
                f'<h3>{escape(t["arm"])}</h3><p data-count="tidier:{escape(t["arm"])}">TIDieR completeness: '
                f"{score}/{TIDIER_TOTAL} items reported ({escape(version)}).</p>"
            )
            parts.append(
                table_html(
                    frame,
                    {"item": "TIDieR item", "value": "As reported"},
                    key=f"tidier:{t['arm']}",
                    caption=f"TIDieR checklist: {t['arm']}",
                )
            )
        parts.append(_dose_table(data, info))
    ratings, adaptations = info["fidelity_ratings"], info["adaptations"]
    if ratings is None or not ratings:
        parts.append(absent("no fidelity ratings recorded: fidelity over time needs them"))
    else:
        parts.append(f'<p data-count="fidelity_ratings">Fidelity ratings: {ratings} (TIDieR item 12 per arm).</p>')
    if adaptations is None:
        parts.append(absent("no adaptation log kept: TIDieR item 10 says so"))
    else:
        parts.append(f'<p data-count="adaptations">Adaptations logged: {adaptations} (TIDieR item 10 per arm).</p>')
    if info["training"]:
        hours = [h for _, _, h in info["training"]]
        parts.append(
            f'<p data-count="training">Peer supporters: {info["supporters"]}, of whom {info["trained"]} with a '
            f"training record; {sum(n for _, n, _ in info['training'])} training events, "
            f"{math.fsum(hours):g} hours in all.</p>"
        )
        parts.append(
            table_html(
                pd.DataFrame(info["training"], columns=["kind", "n", "hours"]),
                {"kind": "Training event", "n": "n", "hours": "Hours"},
                decimals=1,
                key="training",
                caption="Peer-supporter training",
            )
        )
    else:
        parts.append(absent(f"no training records for the {info['supporters']} peer supporters recorded"))
    return "\n".join(parts), True
