"""/participants/{id}/responses and the instrument catalogue."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi import Response as HttpResponse
from sqlmodel import Session

import instruments
from api.auth.dependencies import authorize
from api.auth.policy import READERS, STAFF
from api.auth.service import Actor
from api.db import end_read, get_session
from api.errors import NotFound
from api.participants.dependencies import valid_participant
from api.participants.models import Participant
from api.responses import fhir as fhir_service
from api.responses import reading, service
from api.responses.fastroute import SubmissionRoute
from api.responses.fhir import observation_bundle
from api.responses.schemas import InstrumentRead, InstrumentSummary, ResponseCreate, ResponseRead, SafetyAlertRef
from api.safety.service import alerts_for_response
from instruments.model import InstrumentError

router = APIRouter(tags=["responses"])
catalogue = APIRouter(prefix="/instruments", tags=["instruments"])


def submit(
    request: Request,
    body: ResponseCreate,
    participant: Participant = Depends(valid_participant),
    actor: Actor = Depends(authorize(*STAFF)),
    session: Session = Depends(get_session),
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", min_length=1, max_length=200),
):
    # On PostgreSQL a new response has usually been stored by the route class before this runs
    # (api/responses/fastroute.py); here: SQLite, replays, amendments, alerts and every refusal.
    resp = service.submit_response(
        session,
        participant=participant,
        wave_code=body.wave,
        instrument_code=body.instrument,
        answers=body.answers,
        external_scores=body.external_scores,
        completed_at=body.completed_at,
        mode="rest",
        actor=actor,
        idempotency_key=idempotency_key,
        amend=body.amend,
        reason=body.reason,
    )
    out = reading.to_read(session, [resp])[0]
    raised = getattr(resp, "alerts_raised", None)
    if raised is None or resp.version > 1:  # a replay or an amendment: every alert of the response
        raised = alerts_for_response(session, resp.id)
    out.alerts = [SafetyAlertRef(id=a.id, rule=a.rule_code, status=a.status) for a in raised]
    session.commit()
    headers = {"Idempotent-Replayed": "true"} if getattr(resp, "replayed", False) else None
    # ``out`` is already a validated ResponseRead: serialising it once here spares the second
    # validation pass that returning it through ``response_model`` would make.
    return HttpResponse(out.model_dump_json(), status_code=201, media_type="application/json", headers=headers)


router.add_api_route(
    "/participants/{participant_id}/responses",
    submit,
    methods=["POST"],
    status_code=201,
    response_model=ResponseRead,
    route_class_override=SubmissionRoute,
)


@router.get("/participants/{participant_id}/responses", response_model=list[ResponseRead])
def list_responses(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
    wave: str | None = None,
    instrument: str | None = None,
):
    out = reading.to_read(
        session,
        reading.list_responses(session, participant, wave=wave, instrument=instrument),
        actor=actor,
        secret=request.app.state.settings.secret_key,
    )
    end_read(session)
    return out


@router.get(
    "/participants/{participant_id}/observations",
    summary="The participant's clinical measures as a FHIR R4 Bundle of Observations (LOINC, UCUM)",
)
def list_observations(
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    # Staff only: an Observation carries the calendar date it was measured (analysts read the
    # de-identified exports instead).
    out = observation_bundle(session, participant)
    end_read(session)
    return HttpResponse(content=json.dumps(out), media_type="application/fhir+json")


@router.post(
    "/participants/{participant_id}/fhir/QuestionnaireResponse",
    status_code=201,
    response_model=ResponseRead,
    summary="Store a FHIR R4 QuestionnaireResponse (any instrument) through the submission path",
)
def submit_fhir(
    resource: dict[str, Any] = Body(..., description="a FHIR R4/R4B QuestionnaireResponse (application/fhir+json)"),
    wave: str = Query(..., max_length=40, description="the wave the answers belong to"),
    participant: Participant = Depends(valid_participant),
    actor: Actor = Depends(authorize(*STAFF)),
    session: Session = Depends(get_session),
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", min_length=1, max_length=200),
):
    resp = fhir_service.submit_fhir(session, participant, actor, resource, wave=wave, idempotency_key=idempotency_key)
    out = reading.to_read(session, [resp])[0]
    raised = getattr(resp, "alerts_raised", None) or alerts_for_response(session, resp.id)
    out.alerts = [SafetyAlertRef(id=a.id, rule=a.rule_code, status=a.status) for a in raised]
    session.commit()
    return HttpResponse(out.model_dump_json(), status_code=201, media_type="application/json")


@router.get(
    "/participants/{participant_id}/fhir",
    summary="Every response as FHIR QuestionnaireResponses and the clinical measures as Observations, in a Bundle",
)
def participant_bundle(
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    out = fhir_service.participant_bundle(session, participant)
    end_read(session)
    return HttpResponse(content=json.dumps(out), media_type="application/fhir+json")


def _instrument_read(inst) -> InstrumentRead:
    return InstrumentRead(
        code=inst.code,
        name=inst.name,
        version=str(inst.version),
        wording_shipped=inst.wording_shipped,
        licence=getattr(inst, "licence", None),
        items=[
            {
                "code": it.code,
                "text": it.text,
                "kind": it.kind,
                "reverse": it.reverse,
                "scored": it.scored,
                "min": it.min,
                "max": it.max,
                "options": [{"code": o.code, "label": o.label, "missing": o.missing} for o in it.options],
            }
            for it in inst.items
        ],
        scales=[
            {
                "code": s.code,
                "label": s.label,
                "items": list(s.items),
                "method": s.method,
                "min_items": s.min_items,
                "range": tuple(s.range),
                "external": s.external,
            }
            for s in inst.scales
        ],
    )


@catalogue.get("", response_model=list[InstrumentSummary])
def list_instruments(actor: Actor = Depends(authorize(*READERS))):
    out = []
    for code in instruments.codes():
        inst = instruments.get(code)
        out.append(
            InstrumentSummary(
                code=inst.code,
                name=inst.name,
                version=str(inst.version),
                items=len(inst.items),
                wording_shipped=inst.wording_shipped,
            )
        )
    return out


@catalogue.get("/{code}", response_model=InstrumentRead)
def get_instrument(code: str = Path(max_length=60), actor: Actor = Depends(authorize(*READERS))):
    try:
        return _instrument_read(instruments.get(code))
    except InstrumentError:
        raise NotFound(["path", "code"], "unknown instrument", "unknown_instrument") from None
