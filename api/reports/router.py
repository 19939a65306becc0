"""Routes of the screening log and the trial report."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse
from sqlmodel import Session

from api.artifacts import MEDIA_TYPES, ArtifactStore
from api.auth.dependencies import authorize
from api.auth.policy import READERS, STAFF
from api.auth.service import Actor
from api.db import end_read, get_session
from api.reports import screening
from api.reports.schemas import ReportIn, ReportRead, ScreeningIn, ScreeningRead, ScreeningSummary
from api.studies.dependencies import valid_study
from api.studies.models import Study
from api.studies.service import sites_by_code

router = APIRouter(tags=["reports"])


@router.post("/studies/{study_id}/screening", status_code=201, response_model=ScreeningRead)
def add_screening(
    body: ScreeningIn,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Record one person assessed for eligibility: the outcome (enrolled, not_eligible, declined,
    other), a reason for an exclusion, and for an enrolled person the participant it became."""
    entry = screening.add(session, study, body, actor)
    out = screening.to_read(session, study, [entry], actor)[0]
    session.commit()
    return out


@router.get("/studies/{study_id}/screening", response_model=list[ScreeningRead])
def list_screening(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """The screening log of the sites the user sees (analysts get no screening dates)."""
    out = screening.to_read(session, study, screening.entries(session, study, actor), actor)
    end_read(session)
    return out


@router.get("/studies/{study_id}/screening/summary", response_model=ScreeningSummary)
def screening_summary(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Assessed, enrolled, and excluded by outcome and reason (the top of the CONSORT diagram)."""
    out = screening.summarise(screening.entries(session, study, actor))
    end_read(session)
    return out


@router.post("/studies/{study_id}/reports", status_code=201, response_model=ReportRead)
def create_report(
    request: Request,
    body: ReportIn | None = None,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Generate the trial report: one self-contained HTML page and its PDF, in the artefact store.

    Sections whose data do not exist yet say so. Arms carry neutral labels while the study is
    blinded to the requester; a coordinator's report covers their own sites."""
    # The report's drawing stack (pandas, matplotlib) loads on the first report, not at start-up.
    from api.reports import service

    out = service.build(session, study, actor, request.app.state.settings, body or ReportIn())
    session.commit()
    return out


@router.get(
    "/studies/{study_id}/reports/runs/{run_id}/{filename}",
    response_class=FileResponse,
    responses={200: {"content": {"text/html": {}, "application/pdf": {}}}},
)
def report_file(
    request: Request,
    run_id: str = Path(max_length=64),
    filename: str = Path(max_length=200),
    download: bool = Query(False, description="serve as an attachment"),
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
) -> FileResponse:
    """A generated report (``report.html`` or ``report.pdf``), if the run's sites allow (404 otherwise)."""
    store = ArtifactStore.from_settings(request.app.state.settings)
    path = store.file("reports", study.id, run_id, filename, actor, sites_by_code(session, study.id))
    end_read(session)
    headers = {
        "Cache-Control": "private, no-store",
        # The page needs nothing from anywhere: no script, no request, styles inline.
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
        "X-Content-Type-Options": "nosniff",
    }
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[path.suffix.lstrip(".")],
        headers=headers,
        content_disposition_type="attachment" if download else "inline",
        filename=path.name,
    )
