"""A participant's clinical measures as a FHIR R4 Bundle of Observations.

Built from the stored scores (what the service scored when the value was entered), one Observation
per measured quantity with its LOINC code and UCUM unit (:func:`instruments.fhir.to_fhir_observations`).
The subject is the participant's pseudonymous study code; no identifier from the vault is written.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

import instruments
from api.participants.models import Participant
from api.responses.models import Response, Score
from api.studies.models import Wave
from instruments.fhir import to_fhir_observations
from instruments.model import Score as LibScore


def _measured(code: str) -> bool:
    try:
        return any(sc.unit for sc in instruments.get(code).scales)
    except instruments.InstrumentError:
        return False


def observation_bundle(session: Session, participant: Participant) -> dict[str, Any]:
    """A ``collection`` Bundle of the participant's clinical-measure Observations, oldest first."""
    rows = session.exec(
        select(Response, Wave.code)
        .join(Wave, Wave.id == Response.wave_id)
        .where(Response.participant_id == participant.id)
        .order_by(Response.completed_at, Response.id)
    ).all()
    subject = f"ResearchSubject/{participant.study_code}"
    entries = []
    for response, wave in rows:
        if not _measured(response.instrument):
            continue
        stored = session.exec(select(Score).where(Score.response_id == response.id).order_by(Score.id)).all()
        scores = [LibScore(scale=s.scale, value=s.value, flags=list(s.flags or [])) for s in stored]
        ident = f"{participant.study_id}/{participant.study_code}/{wave}/{response.instrument}/{response.id}"
        for obs in to_fhir_observations(
            response.instrument, scores, identifier=ident, subject=subject, effective=response.completed_at
        ):
            entries.append({"fullUrl": f"urn:peerlens:observation:{obs['identifier'][0]['value']}", "resource": obs})
    return {"resourceType": "Bundle", "type": "collection", "total": len(entries), "entry": entries}
