"""Adding domain routers to the application, and the one route shape that serves a generated plot.

Examples
--------
>>> from fastapi import APIRouter, FastAPI
>>> app, router = FastAPI(), APIRouter()
>>> @router.get("/ping")
... def ping():
...     return "pong"
>>> mount(app, router)
>>> [r.path for r in app.routes][-1]
'/ping'
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import FileResponse
from sqlmodel import Session

from api.artifacts import MEDIA_TYPES, ArtifactStore
from api.auth.dependencies import authorize
from api.auth.policy import READERS
from api.auth.service import Actor
from api.db import end_read, get_session
from api.studies.dependencies import valid_study
from api.studies.models import Study
from api.studies.service import sites_by_code


def mount(app: FastAPI, router: APIRouter) -> None:
    """Add a domain router's routes to the app itself.

    The routes keep their own paths and dependencies; adding them directly (rather than through
    ``include_router``) keeps ``app.routes`` a flat list of ``APIRoute`` so that tools and tests can
    read every route's ``authorize(...)`` roles from it.
    """
    for route in router.routes:
        app.router.routes.append(route)


def add_plot_route(router: APIRouter, area: str, description: str) -> None:
    """``GET /studies/{study_id}/<area>/runs/{run_id}/{filename}``: a plot of a run in the artefact
    store (PNG or SVG), for every role that reads the study, if the run's sites allow (404 otherwise)."""

    def plot_file(
        request: Request,
        run_id: str = Path(max_length=64),
        filename: str = Path(max_length=200),
        actor: Actor = Depends(authorize(*READERS)),
        study: Study = Depends(valid_study),
        session: Session = Depends(get_session),
    ) -> FileResponse:
        store = ArtifactStore.from_settings(request.app.state.settings)
        path = store.file(area, study.id, run_id, filename, actor, sites_by_code(session, study.id))
        end_read(session)
        return FileResponse(
            path, media_type=MEDIA_TYPES[path.suffix.lstrip(".")], headers={"Cache-Control": "private, no-store"}
        )

    router.add_api_route(
        f"/studies/{{study_id}}/{area}/runs/{{run_id}}/{{filename}}",
        plot_file,
        methods=["GET"],
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}},
        name="plot_file",
        description=description,
    )
