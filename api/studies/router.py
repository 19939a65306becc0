"""/studies and their sites, arms and waves."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import ADMIN, PROCESS_READERS, READERS
from api.auth.service import Actor
from api.db import end_read, get_session
from api.studies import service
from api.studies.dependencies import valid_study
from api.studies.models import Site, Study, Wave
from api.studies.schemas import (
    ArmCreate,
    ArmRead,
    SiteContactIn,
    SiteContactRead,
    SiteCreate,
    SiteRead,
    StudyCreate,
    StudyRead,
    StudyUpdate,
    WaveCreate,
    WaveRead,
)

router = APIRouter(prefix="/studies", tags=["studies"])


def _read(study: Study, actor: Actor) -> StudyRead:
    data = study.model_dump()
    if not actor.is_admin:
        data["randomisation_seed"] = None  # the seed reveals the allocation sequence
    return StudyRead(**data)


@router.post("", status_code=201, response_model=StudyRead)
def create_study(body: StudyCreate, actor: Actor = Depends(authorize(*ADMIN)), session: Session = Depends(get_session)):
    study = service.create_study(session, body, actor)
    session.commit()
    return _read(study, actor)


@router.get("", response_model=list[StudyRead])
def list_studies(actor: Actor = Depends(authorize(*PROCESS_READERS)), session: Session = Depends(get_session)):
    out = [_read(s, actor) for s in service.visible_studies(session, actor)]
    end_read(session)
    return out


@router.get("/{study_id}", response_model=StudyRead)
def get_study(actor: Actor = Depends(authorize(*PROCESS_READERS)), study: Study = Depends(valid_study)):
    return _read(study, actor)


@router.patch("/{study_id}", response_model=StudyRead)
def update_study(
    body: StudyUpdate,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    study = service.update_study(session, study, body, actor)
    session.commit()
    return _read(study, actor)


@router.post("/{study_id}/sites", status_code=201, response_model=SiteRead)
def create_site(
    body: SiteCreate,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    site = service.create_site(session, study, body, actor)
    session.commit()
    return site


@router.put("/{study_id}/sites/{site_code}/contact", response_model=SiteContactRead)
def put_site_contact(
    body: SiteContactIn,
    site_code: str = Path(min_length=1, max_length=40),
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The phone number and hours shown to the site's participants on every page of their form
    ("Questions? Call your study team on … (hours)")."""
    row = service.set_site_contact(session, study, site_code, body, actor)
    session.commit()
    return SiteContactRead(site=site_code, phone=row.phone, hours=row.hours, updated_at=row.updated_at)


@router.get("/{study_id}/sites", response_model=list[SiteRead])
def list_sites(
    actor: Actor = Depends(authorize(*PROCESS_READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = service.list_children(session, Site, study, actor)
    end_read(session)
    return out


@router.post("/{study_id}/arms", status_code=201, response_model=ArmRead)
def create_arm(
    body: ArmCreate,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    arm = service.create_arm(session, study, body, actor)
    session.commit()
    return arm


@router.get("/{study_id}/arms", response_model=list[ArmRead])
def list_arms(
    actor: Actor = Depends(authorize(*PROCESS_READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = service.list_arms(session, study, actor)
    end_read(session)
    return out


@router.post("/{study_id}/waves", status_code=201, response_model=WaveRead)
def create_wave(
    body: WaveCreate,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    wave = service.create_wave(session, study, body, actor)
    session.commit()
    return wave


@router.get("/{study_id}/waves", response_model=list[WaveRead])
def list_waves(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = service.list_children(session, Wave, study, actor)
    end_read(session)
    return out
