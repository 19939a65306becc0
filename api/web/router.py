"""The participant form: ``/f/{token}`` shows the wave's instruments one at a time.

Each instrument is saved when its page is sent, through the same
:func:`api.responses.service.submit_response` as the REST API (``mode="web"``), so validation,
scoring, idempotency and the audit trail are the same. Every form post carries a CSRF token
bound to the link and to a cookie (signed double submit). Unknown, revoked, expired and
not-yet-open links all get the same 404 page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

import instruments
from api.auth import policy
from api.auth.dependencies import Authorize
from api.auth.service import Actor
from api.db import get_session, utcnow
from api.errors import ApiError
from api.licensed.service import refresh as refresh_licensed
from api.links.drafts import drop_draft, load_draft, save_draft
from api.links.service import LinkContext, mark_used, resolve
from api.responses.service import submit_response
from api.safety.configuration import support_after_alert
from api.studies.service import site_contact
from api.web.forms import blocking_shortfall, field_name, form_order, minutes_left, open_items, parse_answers


class LinkHolder(Authorize):
    """The access rule of the form pages: whoever holds a live personal link (no bearer token).

    It subclasses :class:`~api.auth.dependencies.Authorize` so that a route × role listing built
    from ``app.routes`` sees these routes' rule (``.roles == ("link",)``) like any other; the link
    itself is checked by :func:`api.links.service.resolve` in the route.
    """

    def __init__(self):
        self.roles = ("link",)

    def __repr__(self) -> str:
        return "link_holder()"

    def __call__(self, token: str) -> str:
        return token


link_holder = LinkHolder()
router = APIRouter(tags=["participant forms"], dependencies=[Depends(link_holder)])
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC_DIR = Path(__file__).parent / "static"  # the stylesheet, served at /static

CSRF_COOKIE = "plk_csrf"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # The token is in the URL: never send it on as a Referer, never let another site frame the page.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def _render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200, csrf_cookie: str | None = None
) -> HTMLResponse:
    # The site's study team phone and hours (api.studies.service.set_site_contact), on every page.
    contact = getattr(request.state, "site_contact", None)
    context = {"site_contact": contact, **context}
    response = templates.TemplateResponse(request, name, context, status_code=status_code, headers=SECURITY_HEADERS)
    if csrf_cookie is not None:
        secure = request.app.state.settings.base_url.startswith("https://")
        response.set_cookie(CSRF_COOKIE, csrf_cookie, httponly=True, samesite="lax", path="/f/", secure=secure)
    return response


def _remember_contact(request: Request, session: Session, ctx: LinkContext) -> None:
    row = site_contact(session, ctx.participant.site_id)
    request.state.site_contact = {"phone": row.phone, "hours": row.hours} if row is not None else None


def _not_found(request: Request) -> HTMLResponse:
    # One page for every link that does not work, whatever the reason.
    return _render(request, "not_found.html", {}, status_code=404)


def _csrf_value(request: Request, cookie: str, link_id: int) -> str:
    key = request.app.state.settings.secret_key.encode()
    return hmac.new(key, f"form-csrf:{link_id}:{cookie}".encode(), hashlib.sha256).hexdigest()


def _csrf_ok(request: Request, form_value: Any, link_id: int) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not isinstance(form_value, str):
        return False
    return hmac.compare_digest(_csrf_value(request, cookie, link_id), form_value)


def _participant_actor(request: Request, ctx: LinkContext) -> Actor:
    return Actor(
        user_id=None,
        role=policy.PARTICIPANT,
        site_ids=frozenset({ctx.participant.site_id}),
        request_id=getattr(request.state, "request_id", None),
        source="web",
    )


def _as_text(v: Any) -> str | list[str]:
    if v is None:
        return ""
    if isinstance(v, list):
        return [_as_text(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _progress(ctx: LinkContext, code: str) -> tuple[int, int]:
    offered = form_order([o.instrument for o in ctx.offered if o.offered])
    return offered.index(code) + 1, len(offered)


def _next(ctx: LinkContext) -> str:
    """The next instrument to fill, outcome measures first (:func:`api.web.forms.form_order`)."""
    return form_order(ctx.pending)[0]


def _form_page(
    request: Request,
    ctx: LinkContext,
    token: str,
    code: str,
    *,
    answers: dict | None = None,
    errors: dict[str, str] | None = None,
    open_codes: list[str] | None = None,
    blocking: set[str] | None = None,
    status_code: int = 200,
    support: dict | None = None,
) -> HTMLResponse:
    inst = instruments.get(code)
    if answers is None:
        # Answers saved as they were given (api.links.drafts) come back on the page.
        answers = getattr(request.state, "drafts", {}).get(code)
    cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    step, total = _progress(ctx, code)
    items = []
    for n, it in enumerate(inst.items, start=1):
        items.append(
            {
                "code": it.code,
                "field": field_name(it),
                "number": n,
                "text": it.text,
                "kind": it.kind,
                "options": [{"value": str(o.code), "label": o.label} for o in it.options],
                "min": it.min,
                "max": it.max,
            }
        )
    return _render(
        request,
        "form.html",
        {
            "study_title": ctx.study.public_title or ctx.study.title,
            "token": token,
            "instrument": inst.code,
            "instructions": inst.instructions,
            "items": items,
            "step": step,
            "total": total,
            "last": len(ctx.pending) == 1,
            "minutes_left": minutes_left(ctx.pending),
            "answers": {k: _as_text(v) for k, v in (answers or {}).items()},
            "errors": errors or {},
            "open_codes": open_codes or [],
            "blocking": sorted(blocking or ()),
            "csrf": _csrf_value(request, cookie, ctx.link.id),
            "n_items": len(items),
            "support": support,
            "saved_for_later": request.query_params.get("saved") == "1",
        },
        status_code=status_code,
        csrf_cookie=None if request.cookies.get(CSRF_COOKIE) else cookie,
    )


@router.get("/f/{token}", response_class=HTMLResponse, include_in_schema=False)
def show(token: str, request: Request, session: Session = Depends(get_session)):
    """The next instrument to fill, or the page saying the wave is done."""
    refresh_licensed(session)  # wording uploaded through another process shows here too
    ctx = resolve(session, token, request.app.state.settings, utcnow())
    if ctx is None:
        return _not_found(request)
    _remember_contact(request, session, ctx)
    # An answer of this wave raised a safety alert: every later page shows where to find help.
    support = support_after_alert(session, ctx.participant.id, ctx.wave.id, ctx.study.id, ctx.participant.site_id)
    mark_used(session, ctx.link)
    session.commit()
    if ctx.completed:
        return _render(
            request,
            "done.html",
            {
                "study_title": ctx.study.public_title or ctx.study.title,
                "just_finished": request.query_params.get("done") == "1",
                "support": support,
            },
        )
    code = _next(ctx)
    request.state.drafts = {code: load_draft(session, ctx.participant, ctx.wave, code)}
    return _form_page(request, ctx, token, code, support=support)


@router.post("/f/{token}", response_class=HTMLResponse, include_in_schema=False)
async def save(token: str, request: Request):
    """Save one instrument page (the form is read here; the database work runs in a thread)."""
    form = await request.form()
    data: dict[str, Any] = {}
    for key in form.keys():
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        data[key] = values if len(values) > 1 else (values[0] if values else None)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_save, token, request, data)


def _save(token: str, request: Request, data: dict[str, Any]) -> HTMLResponse:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        refresh_licensed(session)
        ctx = resolve(session, token, request.app.state.settings, utcnow())
        if ctx is None:
            return _not_found(request)
        _remember_contact(request, session, ctx)
        if not _csrf_ok(request, data.get("csrf"), ctx.link.id):
            return _render(request, "expired_page.html", {"token": token}, status_code=403)
        here = f"/f/{token}"
        code = data.get("instrument")
        if ctx.completed or code not in ctx.pending:
            # Already saved (a second tap, the back button) or not on this form: show the next step.
            return RedirectResponse(here, status_code=303, headers=SECURITY_HEADERS)
        inst = instruments.get(code)
        # A multiple-choice field may legitimately carry a list; single ones keep the first value.
        multi = {field_name(it) for it in inst.items if it.kind == "multi"}
        fields = {k: (v if k in multi or not isinstance(v, list) else v[0]) for k, v in data.items()}
        answers, errors = parse_answers(inst, fields)
        if data.get("action") == "draft":
            # Saved as each answer is given (the page's script) or with "Save my answers for later".
            usable = {k: (None if k in errors else v) for k, v in answers.items()}
            save_draft(session, ctx.participant, ctx.wave, code, usable, _participant_actor(request, ctx))
            session.commit()
            if request.headers.get("x-autosave") == "1":
                return Response(status_code=204, headers=SECURITY_HEADERS)
            return RedirectResponse(here + "?saved=1", status_code=303, headers=SECURITY_HEADERS)
        if errors:
            return _form_page(request, ctx, token, code, answers=answers, errors=errors, status_code=422)
        open_codes = [it.code for it in open_items(inst, answers)]
        blocking = blocking_shortfall(inst, answers)
        if open_codes and (blocking or data.get("action") != "save_blank"):
            return _form_page(request, ctx, token, code, answers=answers, open_codes=open_codes, blocking=blocking)
        try:
            submit_response(
                session,
                participant=ctx.participant,
                wave_code=ctx.wave.code,
                instrument_code=code,
                answers=answers,
                mode="web",
                actor=_participant_actor(request, ctx),
                idempotency_key=f"web-{ctx.link.id}-{code}",
            )
            drop_draft(session, ctx.participant, ctx.wave, code)
        except ApiError as exc:
            session.rollback()
            kinds = {e.get("type") for e in exc.errors}
            if kinds & {"already_completed", "idempotency_key_reused"}:
                return RedirectResponse(here, status_code=303, headers=SECURITY_HEADERS)
            if exc.status_code == 422:
                errs = {e["loc"][-1]: "Please check this answer." for e in exc.errors if e.get("loc")}
                return _form_page(request, ctx, token, code, answers=answers, errors=errs, status_code=422)
            return _not_found(request)
        session.commit()
        finished = len(ctx.pending) == 1
        return RedirectResponse(here + ("?done=1" if finished else ""), status_code=303, headers=SECURITY_HEADERS)
