"""/studies/{id}/analyses: run the analysis library on the study's current export.

One ``POST /studies/{id}/analyses/{kind}`` route per kind of :data:`api.analyses.kinds.KINDS`,
generated here, and one route serving the plots of a run. Routes are synchronous and bounded: a
run reads the cohort, fits, renders its plots and answers in the same request. A random-slope
trajectory on 10,000 participants × 6 waves takes about 25 s; above
``PEERLENS_ANALYSIS_MAX_PARTICIPANTS`` the route answers 422 and points to ``peerlens analyze``.
"""

# No ``from __future__ import annotations``: the generated routes' body annotation is the kind's
# request class itself, which FastAPI must see as a class, not as a string to resolve.

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session

from api.analyses import service
from api.analyses.kinds import KINDS, Kind
from api.analyses.schemas import AnalysisRun
from api.auth.dependencies import authorize
from api.auth.policy import READERS
from api.auth.service import Actor
from api.db import get_session
from api.routing import add_plot_route
from api.studies.dependencies import valid_study
from api.studies.models import Study

router = APIRouter(tags=["analyses"])

_DOC: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "a field names something the study does not have, or the data cannot "
        "support the model (the message says which and why)"
    }
}


def _add_route(kind: Kind) -> None:
    def run(
        body: kind.request,  # type: ignore[name-defined]
        request: Request,
        actor: Actor = Depends(authorize(*READERS)),
        study: Study = Depends(valid_study),
        session: Session = Depends(get_session),
    ) -> AnalysisRun:
        out = service.execute(session, study, actor, kind.name, body, request.app.state.settings)
        session.commit()
        return out

    name = kind.name.replace("-", "_")
    run.__name__ = run.__qualname__ = name
    router.add_api_route(
        f"/studies/{{study_id}}/analyses/{kind.name}",
        run,
        methods=["POST"],
        response_model=AnalysisRun,
        responses=_DOC,
        name=name,
        description=kind.description,
    )


for _kind in KINDS.values():
    _add_route(_kind)


add_plot_route(router, "analyses", "A plot of an analysis run (PNG or SVG), for the roles that may run analyses.")
