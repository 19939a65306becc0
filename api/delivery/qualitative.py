"""What process evaluation gives the qualitative layer: supporters' names to redact, dose per case.

* Peer supporters' names (from their identifier vault) are study-known terms for transcript
  de-identification (:func:`api.transcripts.terms.register_term_source`): interviewees name their
  supporter, and the name must not reach analysts.
* Each participant's dose — sessions attended, minutes of contact, adherent — is a case variable of
  the REFI-QDA export and the case matrix (:func:`api.transcripts.cases.register_case_variables`), so a
  QDA tool can sort interviews by how much of the programme the person received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, select

from api.delivery.models import PeerSupporter, PeerSupporterContact
from api.participants.models import Participant
from api.studies.models import Study
from api.transcripts.cases import register_case_variables
from api.transcripts.terms import register_term_source


@register_term_source
def supporter_names(session: Session, study: Study) -> dict[str, list[str]]:
    rows = session.exec(
        select(PeerSupporterContact.name)
        .join(PeerSupporter, PeerSupporter.id == PeerSupporterContact.supporter_id)
        .where(PeerSupporter.study_id == study.id, PeerSupporterContact.name.is_not(None))
    ).all()
    return {"PERSON": sorted({n for n in rows if n})}


@register_case_variables
def dose_variables(session: Session, study: Study, participants: Sequence[Participant]) -> dict[str, dict[str, Any]]:
    from api.delivery.dose import participant_dose
    from api.delivery.models import DeliverySession

    if session.exec(select(DeliverySession.id).where(DeliverySession.study_id == study.id).limit(1)).first() is None:
        return {}  # no programme delivered (yet): no dose to report
    wanted = {p.study_code for p in participants}
    out: dict[str, dict[str, Any]] = {}
    for row in participant_dose(session, study.id, None):
        if row["study_code"] in wanted:
            out[row["study_code"]] = {
                "sessions_attended": row.get("sessions_attended"),
                "minutes_of_contact": row.get("minutes_total"),
                "adherent": row.get("adherent"),
            }
    return out
