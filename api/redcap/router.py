"""``POST /studies/{id}/redcap/api/``: REDCap's single API endpoint, for REDCap clients (PyCap, REDCapR)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Path, Request
from fastapi import Response as HttpResponse
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from api.auth import policy
from api.auth.service import Actor, actor_and_row
from api.db import end_read, get_session
from api.errors import ApiError
from api.redcap import service
from api.studies.models import Study

router = APIRouter(tags=["redcap"])

NO_ACCESS = "You do not have permissions to use the API"


def _answer(request: Request, study_id: int, form: dict[str, str], session: Session) -> HttpResponse:
    err_fmt = form.get("returnFormat") or form.get("format") or "xml"
    token = form.pop("token", "")
    found = None
    if token:
        found, _ = actor_and_row(session, token, None, None)
        end_read(session)
    if found is None:
        # Throttled like a bad bearer token: failures only, never a valid token (api.web.ratelimit).
        limiter = request.app.state.failure_limiter
        client = request.client.host if request.client else "unknown"
        wait = limiter.retry_after(f"token:{client}")
        limiter.fail(f"token:{client}")
        if wait is not None:
            body, media = service.error_body(f"too many failed attempts; retry after {int(wait) + 1} s", err_fmt)
            return HttpResponse(body, status_code=429, media_type=media, headers={"Retry-After": str(int(wait) + 1)})
        body, media = service.error_body(NO_ACCESS, err_fmt)
        return HttpResponse(body, status_code=403, media_type=media)
    actor = Actor(
        user_id=found.user_id,
        role=found.role,
        site_ids=found.site_ids,
        email=found.email,
        request_id=getattr(request.state, "request_id", None) or uuid.uuid4().hex,
        source="api",
    )
    study = session.get(Study, study_id)
    try:
        if study is None or (policy.site_scoped(actor) and not service.sees_study(session, actor, study)):
            raise service.RedcapError(NO_ACCESS, 403)
        answer = service.handle(session, study, actor, form, secret=request.app.state.settings.secret_key)
        session.commit()
    except service.RedcapError as exc:
        session.rollback()
        body, media = service.error_body(exc.msg, err_fmt)
        return HttpResponse(body, status_code=exc.status, media_type=media)
    except ApiError as exc:
        session.rollback()
        mapped = service.api_error(exc)
        body, media = service.error_body(mapped.msg, err_fmt)
        return HttpResponse(body, status_code=mapped.status, media_type=media)
    return HttpResponse(answer.body, status_code=answer.status, media_type=answer.media_type)


@router.post(
    "/studies/{study_id}/redcap/api/",
    summary="REDCap-compatible API (form-encoded token, content, format, …); see README, Using existing clients",
)
async def redcap_api(request: Request, study_id: int = Path(ge=1), session: Session = Depends(get_session)):
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    return await run_in_threadpool(_answer, request, study_id, form, session)
