"""/licensed: upload licensed item wordings and calibration tables (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import ADMIN
from api.auth.service import Actor
from api.db import end_read, get_session
from api.licensed import service
from api.licensed.schemas import LicensedRead

router = APIRouter(tags=["licensed content"])
InstrumentPath = Path(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")


@router.get("/licensed", response_model=list[LicensedRead])
def list_licensed(actor: Actor = Depends(authorize(*ADMIN)), session: Session = Depends(get_session)):
    """Uploaded licensed content (metadata only)."""
    out = service.list_content(session, actor)
    end_read(session)
    return out


@router.post("/licensed/{instrument}/wording", status_code=201, response_model=LicensedRead)
def upload_wording(
    instrument: str = InstrumentPath,
    file: UploadFile = File(..., description="CSV with the columns item_code,text (UTF-8, header required)"),
    actor: Actor = Depends(authorize(*ADMIN)),
    session: Session = Depends(get_session),
):
    """The licensee's item wording (PAM-13, HLS-EU-Q16/Q6): the participant form shows it from then on."""
    row = service.upload(session, instrument, "wording", file.file.read(), actor)
    out = service.to_read(row)
    session.commit()
    return out


@router.post("/licensed/{instrument}/calibration", status_code=201, response_model=LicensedRead)
def upload_calibration(
    instrument: str = InstrumentPath,
    file: UploadFile = File(..., description="CSV with a raw-score column and a calibrated-score column"),
    scale: str | None = Form(None, max_length=40, description="the lookup scale, when the instrument has several"),
    actor: Actor = Depends(authorize(*ADMIN)),
    session: Session = Depends(get_session),
):
    """The licensee's raw-to-score calibration table (PAM-13 activation): scoring yields the score from then on."""
    row = service.upload(session, instrument, "calibration", file.file.read(), actor, scale=scale)
    out = service.to_read(row)
    session.commit()
    return out
