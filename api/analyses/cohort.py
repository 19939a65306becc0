"""Reading a study's cohort for an analysis: through the exports service, with the caller's scope.

De-identification and site scope are decided by :mod:`api.exports.service`: a coordinator's frame
holds their own sites' participants only, an analyst's has shifted dates and no identifier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlmodel import Session

import analysis
import instruments
from api.analyses.checks import CONTEXT, Design
from api.auth.service import Actor
from api.exports import service as exports
from api.participants.models import Participant
from api.responses.models import Response
from api.studies.models import Study

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd


def _site_ids(design: Design, actor: Actor, sites: list[str] | None) -> list[int]:
    return [i for c, i in design.sites.items() if (sites is None or c in sites) and actor.sees_site(i)]


def count_participants(session: Session, study: Study, design: Design, actor: Actor, sites: list[str] | None) -> int:
    """Participants in scope (checked against the size bound before anything is read)."""
    ids = _site_ids(design, actor, sites)
    if not ids:
        return 0
    return int(
        session.execute(
            select(func.count(Participant.id)).where(
                Participant.study_id == study.id, Participant.site_id.in_(ids), *exports.uses_data_clause()
            )
        ).scalar_one()
    )


def has_responses(session: Session, study: Study, design: Design, actor: Actor, sites: list[str] | None) -> bool:
    """Whether any participant in scope has answered a questionnaire (context answers aside)."""
    ids = _site_ids(design, actor, sites)
    if not ids:
        return False
    found = session.execute(
        select(Response.id)
        .join(Participant, Participant.id == Response.participant_id)
        .where(
            Participant.study_id == study.id,
            Participant.site_id.in_(ids),
            Response.instrument != CONTEXT,
            *exports.uses_data_clause(),
        )
        .limit(1)
    ).first()
    return found is not None


def load_frame(
    session: Session, study: Study, actor: Actor, sites: list[str] | None = None, *, secret: str = ""
) -> pd.DataFrame:
    """The study's ``long`` frame as the exports service gives it to ``actor`` (site-scoped)."""
    frame = exports.long_frame(session, study, actor, exports.ExportFilters(sites=sites), secret=secret)
    if frame.empty:
        return frame
    return analysis.load_long(frame)


def load_items(
    session: Session,
    study: Study,
    actor: Actor,
    *,
    sites: list[str] | None = None,
    waves: list[str] | None = None,
    instrument_codes: list[str] | None = None,
    secret: str = "",
) -> pd.DataFrame:
    """The ``items`` frame from the exports service as the scales score it, ready for reliability
    (see :func:`instruments.scored_items`)."""
    filters = exports.ExportFilters(sites=sites, waves=waves, instruments=instrument_codes)
    frames = list(exports.iter_items(session, study, actor, filters, secret=secret))
    columns = ["participant", "wave", "instrument", "item", "value"]
    items = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return instruments.scored_items(items)
