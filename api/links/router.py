"""/participants/{id}/links: issue, list and revoke personal form links (admins, coordinators)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request
from fastapi import Response as HttpResponse
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import STAFF
from api.auth.service import Actor
from api.db import get_session
from api.links import service
from api.links.schemas import LinkCreate, LinkIssued, LinkStatus
from api.participants.dependencies import valid_participant
from api.participants.models import Participant
from api.studies.service import get_wave

router = APIRouter(tags=["links"])


@router.get("/participants/{participant_id}/links", response_model=list[LinkStatus])
def list_links(
    request: Request,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """Each wave's link state, the live link (the one reminders send), and which instruments the
    web form offers (and why not). Listing never issues or revokes anything."""
    return service.link_status(session, participant, request.app.state.settings)


@router.post("/participants/{participant_id}/links", status_code=201, response_model=LinkIssued)
def issue(
    body: LinkCreate,
    request: Request,
    http_response: HttpResponse,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """Issue (or re-issue, revoking the previous one) the personal link for a wave.

    The service keeps the token's hash and the nonce it is derived from, never the token.
    """
    wave = get_wave(session, participant.study_id, body.wave)
    settings = request.app.state.settings
    link, url = service.issue_link(session, participant, wave, actor, settings)
    session.commit()
    http_response.headers["Cache-Control"] = "no-store"
    status = next(s for s in service.link_status(session, participant, settings) if s.wave == wave.code)
    return LinkIssued(**{**status.model_dump(), "url": url}, token=url.rsplit("/", 1)[1])


@router.delete("/participants/{participant_id}/links/{wave_code}", status_code=204)
def revoke(
    wave_code: str = Path(min_length=1, max_length=40),
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """Revoke the live link of a wave; the participant's old link then answers 404."""
    wave = get_wave(session, participant.study_id, wave_code, loc=("path", "wave_code"))
    service.revoke_link(session, participant, wave, actor)
    session.commit()
    return HttpResponse(status_code=204)
