"""/studies/{id}/participants, /participants/{id}, schedules and the allocation list."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import ADMIN, READERS, STAFF
from api.auth.service import Actor
from api.db import end_read, get_session
from api.errors import NotFound
from api.exports.deid import DatePolicy
from api.participants import corrections, flow, service
from api.participants.dependencies import valid_participant
from api.participants.models import Participant
from api.participants.schemas import (
    AllocationReport,
    Correction,
    ParticipantCreate,
    ParticipantFlow,
    ParticipantPatch,
    ParticipantRead,
    ReasonIn,
    VoidIn,
    WaveStatus,
    WithdrawalIn,
    WithdrawalKind,
)
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(tags=["participants"])


def _secret(request: Request) -> str:
    """The key of the analysts' date shift (the exports use the same one)."""
    return request.app.state.settings.secret_key


@router.post("/studies/{study_id}/participants", status_code=201, response_model=ParticipantRead)
def enrol(
    body: ParticipantCreate,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    p = service.enrol(
        session,
        study=study,
        site_code=body.site,
        enrolled_on=body.enrolled_on,
        consent_date=body.consent.date,
        consent_version=body.consent.version,
        actor=actor,
        arm_code=body.arm,
        study_code=body.study_code,
        contact=body.contact,
    )
    out = service.to_read(session, [p], actor)[0]
    session.commit()
    return out


@router.get("/studies/{study_id}/participants", response_model=list[ParticipantRead])
def list_participants(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    site: str | None = Query(None, description="site code"),
    status: Literal["active", "withdrawn", "lost_to_follow_up", "completed"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    after: int | None = Query(None, ge=0, le=2**31 - 1, description="last id of the previous page"),
    include_voided: bool = Query(False, description="staff: also list participants entered in error"),
):
    rows = service.list_participants(
        session, study, actor, site=site, status=status, limit=limit, after=after, include_voided=include_voided
    )
    out = service.to_read(session, rows, actor, _secret(request))
    end_read(session)
    return out


@router.get("/studies/{study_id}/participants/{participant_id}", response_model=ParticipantRead)
def get_study_participant(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    if participant.study_id != study.id:
        raise NotFound(["path", "participant_id"], "participant not found in this study")
    out = service.to_read(session, [participant], actor, _secret(request))[0]
    end_read(session)
    return out


@router.get("/studies/{study_id}/allocation", response_model=AllocationReport)
def allocation(
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = service.allocation_report(session, study, actor)
    end_read(session)
    return out


@router.get("/participants/{participant_id}", response_model=ParticipantRead)
def get_participant(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    out = service.to_read(session, [participant], actor, _secret(request))[0]
    end_read(session)
    return out


@router.patch("/participants/{participant_id}", response_model=ParticipantRead)
def update_participant(
    body: ParticipantPatch,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    if body.status is not None:
        service.change_status(
            session, participant, status=body.status, status_date=body.status_date, reason=body.reason, actor=actor
        )
    if body.consent is not None:
        service.update_consent(session, participant, body.consent, actor, reason=body.reason)
    if body.contact is not None:
        service.update_contact(session, participant, body.contact, actor, reason=body.reason)
    out = service.to_read(session, [participant], actor)[0]
    session.commit()
    return out


@router.get("/participants/{participant_id}/schedule", response_model=list[WaveStatus])
def schedule(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    dates = DatePolicy.for_reader(session, participant.study_id, actor, _secret(request))
    out = service.schedule(session, participant, dates=dates)
    end_read(session)
    return out


@router.post("/participants/{participant_id}/corrections", response_model=ParticipantRead)
def correct_enrolment(
    body: Correction,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """Correct enrolment fields (enrolment date, site, consent date and version) with a reason."""
    changes = body.model_dump(exclude={"reason"})
    corrections.correct(session, participant, changes, body.reason, actor)
    out = service.to_read(session, [participant], actor)[0]
    session.commit()
    return out


@router.post("/participants/{participant_id}/void", response_model=ParticipantRead)
def void_participant(
    body: VoidIn,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """Mark the participant as entered in error: kept with the audit trail, left out of everything else."""
    corrections.void(session, participant, body.reason, actor)
    out = service.to_read(session, [participant], actor)[0]
    session.commit()
    return out


@router.post("/participants/{participant_id}/withdrawals", response_model=ParticipantRead)
def record_withdrawal(
    body: WithdrawalIn,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """Record a withdrawal of one kind (intervention, follow_up, consent) with its date and reason."""
    corrections.withdraw(session, participant, body.kind, body.date, body.reason, actor)
    out = service.to_read(session, [participant], actor)[0]
    session.commit()
    return out


@router.post("/participants/{participant_id}/withdrawals/{kind}/retract", response_model=ParticipantRead)
def retract_withdrawal(
    body: ReasonIn,
    kind: WithdrawalKind,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """Take back a withdrawal recorded in error, with the reason (409 when none of that kind is recorded)."""
    corrections.retract_withdrawal(session, participant, kind, body.reason, actor)
    out = service.to_read(session, [participant], actor)[0]
    session.commit()
    return out


@router.post("/participants/{participant_id}/restore", response_model=ParticipantRead)
def restore_participant(
    body: ReasonIn,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """Undo a void recorded in error, with the reason (409 when the participant is not voided)."""
    corrections.restore(session, participant, body.reason, actor)
    out = service.to_read(session, [participant], actor)[0]
    session.commit()
    return out


@router.get("/studies/{study_id}/participant-flow", response_model=ParticipantFlow)
def participant_flow(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """CONSORT counts per arm: allocated, discontinued intervention, follow-up per wave, analysed."""
    out = flow.study_flow(session, study, actor)
    end_read(session)
    return out
