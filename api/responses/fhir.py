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


def _fhir_errors(exc: Exception) -> list[dict[str, Any]]:
    from api.errors import error

    out = []
    for e in getattr(exc, "errors", lambda: [])():
        out.append(error(["body", *[str(x) for x in e.get("loc", ())]], e.get("msg", "invalid"), "fhir_invalid"))
    return out or [error(["body"], "not a valid FHIR QuestionnaireResponse", "fhir_invalid")]


def submit_fhir(
    session: Session,
    participant: Participant,
    actor,
    resource: dict[str, Any],
    *,
    wave: str,
    idempotency_key: str | None = None,
) -> Response:
    """Store a FHIR R4 QuestionnaireResponse through the submission path (validated with ``fhir.resources``)."""
    from datetime import datetime

    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
    from pydantic import ValidationError

    from api.errors import Unprocessable
    from api.responses.service import submit_response
    from instruments.fhir import from_fhir_questionnaire_response

    if resource.get("resourceType") != "QuestionnaireResponse":
        raise Unprocessable(["body", "resourceType"], "must be QuestionnaireResponse", "fhir_invalid")
    # fhir.resources checks a code's form, not its value set (FHIR R4 QuestionnaireResponseStatus).
    status = resource.get("status")
    if status not in ("in-progress", "completed", "amended", "stopped"):
        raise Unprocessable(
            ["body", "status"],
            "must be in-progress, completed, amended or stopped (entered-in-error is not stored)",
            "fhir_invalid",
        )
    try:
        QuestionnaireResponse.model_validate(resource)
    except ValidationError as exc:
        raise Unprocessable(errors=_fhir_errors(exc)) from None
    try:
        code, answers, authored = from_fhir_questionnaire_response(resource)
    except ValueError as exc:
        where, _, msg = str(exc).partition(": ")
        raise Unprocessable(
            ["body", *where.replace("]", "").replace("[", ".").split(".")], msg, "fhir_invalid"
        ) from None
    completed_at = None
    if authored:
        try:
            completed_at = datetime.fromisoformat(authored.replace("Z", "+00:00"))
        except ValueError:
            raise Unprocessable(["body", "authored"], "not an ISO date-time", "fhir_invalid") from None
        if completed_at.tzinfo is None:
            raise Unprocessable(["body", "authored"], "needs a time zone (e.g. Z)", "fhir_invalid")
    return submit_response(
        session,
        participant=participant,
        wave_code=wave,
        instrument_code=code,
        answers=answers,
        completed_at=completed_at,
        mode="rest",
        actor=actor,
        idempotency_key=idempotency_key,
    )


def participant_bundle(session: Session, participant: Participant) -> dict[str, Any]:
    """A ``collection`` Bundle: every response as a QuestionnaireResponse (answers and scores), then
    the clinical measures as Observations (:func:`observation_bundle`)."""
    from instruments.fhir import to_fhir_questionnaire_response

    rows = session.exec(
        select(Response, Wave.code)
        .join(Wave, Wave.id == Response.wave_id)
        .where(Response.participant_id == participant.id)
        .order_by(Response.completed_at, Response.id)
    ).all()
    subject = f"ResearchSubject/{participant.study_code}"
    entries = []
    for response, wave in rows:
        try:
            instruments.get(response.instrument)
        except instruments.InstrumentError:
            continue
        stored = session.exec(select(Score).where(Score.response_id == response.id).order_by(Score.id)).all()
        scores = [LibScore(scale=s.scale, value=s.value, flags=list(s.flags or [])) for s in stored]
        ident = f"{participant.study_id}/{participant.study_code}/{wave}/{response.instrument}/{response.id}"
        qr = to_fhir_questionnaire_response(
            response.instrument,
            response.answers or {},
            scores,
            identifier=ident,
            subject=subject,
            authored=response.completed_at,
            status="completed" if response.status == "complete" else "in-progress",
            fhir_version="R4",
        )
        entries.append({"fullUrl": f"urn:peerlens:response:{ident}", "resource": qr})
    entries.extend(observation_bundle(session, participant)["entry"])
    return {"resourceType": "Bundle", "type": "collection", "total": len(entries), "entry": entries}
