"""Running an analysis kind on a study's current export: checks, the run, its plots, its audit.

Every run reads the study's cohort through the exports service (:mod:`api.analyses.cohort`: a
coordinator's frame holds their own sites' participants only), calls the kind's runner
(:mod:`api.analyses.runners`, listed in :data:`api.analyses.kinds.KINDS`), writes its plots to the
artefact store (:mod:`api.artifacts`) and records one ``analysis.run`` audit event with the
parameters and the number of rows read (the caller commits it). Nothing in the study changes.

Requests are checked against the study (scales of its waves' instruments, wave, site and arm
codes, :mod:`api.analyses.checks`) and against the frame (covariate and moderator columns);
statistical failures (too few participants, no convergence, no estimable subgroup) become 422
errors naming the field, in plain words.

Examples
--------
>>> from api.analyses.schemas import TrajectoryRequest
>>> run = execute(session, study, actor, "trajectory", TrajectoryRequest(outcome="phq9"),
...               settings)  # doctest: +SKIP
>>> run.tables["slopes"][0]["slope"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlmodel import Session

import analysis
from api.analyses.checks import Design, check_scale, check_sites, check_wave, scope_sites, study_design
from api.analyses.cohort import count_participants, has_responses, load_frame, load_items
from api.analyses.kinds import KINDS
from api.analyses.schemas import TABLES, AnalysisRun, PlotLink, _Request
from api.artifacts import ArtifactStore
from api.audit.service import record
from api.auth.service import Actor
from api.config import Settings
from api.db import utcnow
from api.errors import Unprocessable
from api.jsonable import jsonable, records
from api.release import provenance, provenance_markdown
from api.sap import service as sap
from api.studies.models import Study

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd


def _ensure_columns(kind: str, name: str, df: pd.DataFrame) -> pd.DataFrame:
    """A table with every documented column of its kind (empty ones as NaN)."""
    for c in TABLES.get(kind, {}).get(name, ()):
        if c not in df.columns:
            df[c] = np.nan
    return df


def _parameters(req: _Request) -> dict[str, Any]:
    return req.model_dump(mode="json", exclude={"formats"})


def execute(
    session: Session,
    study: Study,
    actor: Actor,
    kind: str,
    req: _Request,
    settings: Settings,
    *,
    max_participants: int | None = None,
) -> AnalysisRun:
    """Check ``req``, run analysis ``kind`` on the study's current export, render plots, audit the run.

    Parameters
    ----------
    kind : str
        One of :data:`api.analyses.kinds.KINDS`.
    settings : api.config.Settings
        For the artefact store, the participant bound and the date-shift secret.

    Raises
    ------
    api.errors.ApiError
        422 naming the field for an unknown scale, wave, site, arm, column, or a statistical
        failure; 403 when a coordinator names another site's code.
    """
    spec = KINDS[kind]
    design = study_design(session, study, actor)
    sites = check_sites(design, actor, req.sites)
    scope = scope_sites(design, actor, sites)
    bound = max_participants if max_participants is not None else settings.analysis_max_participants
    data: pd.DataFrame | None = None
    n_participants = 0
    if spec.check is not None:
        spec.check(design, req)
    if spec.reads != "nothing":
        n_participants = count_participants(session, study, design, actor, sites)
        if n_participants > bound:
            raise Unprocessable(
                ["body", "sites"],
                f"{n_participants} participants exceed this service's bound of "
                f"{bound} for synchronous analyses; analyse fewer sites or run "
                "`peerlens analyze`",
                "too_large",
            )
        if not has_responses(session, study, design, actor, sites):
            raise Unprocessable(spec.data_field, "no participant in scope has questionnaire data yet", "no_data")
        if spec.reads == "items":
            data = load_items(
                session,
                study,
                actor,
                sites=sites,
                waves=req.waves,  # type: ignore[attr-defined]
                instrument_codes=req.instruments,  # type: ignore[attr-defined]
                secret=settings.secret_key,
            )
        else:
            data = load_frame(session, study, actor, sites, secret=settings.secret_key)
        n_participants = int(data["participant"].nunique()) if len(data) else 0
    result = spec.run(data, req, design, study)
    n_rows = 0 if data is None else len(data)
    created = utcnow()
    run = ArtifactStore.from_settings(settings).new_run(
        "analyses",
        study.id,
        {"kind": kind, "created_at": created.isoformat(), "sites": scope, "actor_role": actor.role},
    )
    plots = [
        PlotLink(name=name, format=fmt, url=run.url(run.save_figure(fig, name, fmt)))
        for name, fig in result.figures.items()
        for fmt in req.formats
    ]
    tables = {name: _ensure_columns(kind, name, df) for name, df in result.tables.items()}
    # Whether the run is what the locked analysis plan pre-specified (api.sap.service).
    plan = sap.classify(session, study.id, kind, _parameters(req)).as_dict()
    record(
        session,
        actor,
        "analysis.run",
        "analysis_run",
        run.run_id,
        study_id=study.id,
        after={
            "kind": kind,
            "parameters": _parameters(req),
            "sites": scope,
            "rows": n_rows,
            "participants": n_participants,
            "plots": [p.url.rsplit("/", 1)[-1] for p in plots],
            "plan": plan,
        },
    )
    return AnalysisRun(
        run_id=run.run_id,
        kind=kind,
        study_id=study.id,
        created_at=created,
        parameters=_parameters(req),
        sites=scope,
        n_participants=n_participants,
        n_rows=n_rows,
        tables={k: records(v) for k, v in tables.items()},
        columns={k: [str(c) for c in v.columns] for k, v in tables.items()},
        values=jsonable(result.values),
        warnings=result.warnings,
        plots=plots,
        plan=plan,
    )


def parse_mcids(design: Design, pairs: list[str] | None) -> dict[str, float]:
    """``["pam13_activation=4"]`` -> ``{"pam13_activation": 4.0}``, each scale checked against the study."""
    out: dict[str, float] = {}
    for i, pair in enumerate(pairs or []):
        scale, sep, value = pair.partition("=")
        scale = scale.strip()
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not math.isfinite(number) or number <= 0:
            raise Unprocessable(["mcid", i], "expected SCALE=VALUE with a positive number", "value_error")
        out[check_scale(design, scale, ["mcid", i])] = number
    return out


def write_report(
    session: Session,
    study: Study,
    actor: Actor,
    outdir: str | Path,
    *,
    outcomes: list[str] | None = None,
    mcids: list[str] | None = None,
    fmt: str = "png",
    secret: str = "",
    followup: str | None = None,
    imputations: int = 20,
) -> dict[str, Path]:
    """Run :func:`analysis.report.run_all` on the study's current export and write it to ``outdir``.

    ``followup`` names the wave of the primary analysis, change and responders (default: the last
    wave; every table names it); ``imputations`` the number of the missing-data analysis.

    The cohort and item frames come from the exports service with ``actor``'s scope, exactly as
    the routes read them; the run is audited (``analysis.run``, kind ``report``; the caller commits).

    Returns
    -------
    dict
        Name -> written path, as :func:`analysis.report.run_all` returns it.

    Examples
    --------
    >>> paths = write_report(session, study, Actor.system(), "out/", outcomes=["phq9"])  # doctest: +SKIP
    >>> paths["report"]  # doctest: +SKIP
    PosixPath('out/report.md')
    """
    design = study_design(session, study, actor)
    outcomes = [check_scale(design, s, ["outcome", i]) for i, s in enumerate(outcomes or [])]
    mcid_map = parse_mcids(design, mcids)
    if followup is not None:
        check_wave(design, followup, ["followup"])
        if followup == design.wave_codes[0]:
            raise Unprocessable(["followup"], "the follow-up wave must come after the baseline wave", "wave_order")
    if not 2 <= imputations <= 100:
        raise Unprocessable(["imputations"], "between 2 and 100 imputations", "out_of_range")
    if not has_responses(session, study, design, actor, None):
        raise Unprocessable(["study"], "no participant has questionnaire data yet", "no_data")
    frame = load_frame(session, study, actor, None, secret=secret)
    if frame.empty:
        raise Unprocessable(["study"], "no participant has questionnaire data yet", "no_data")
    items = load_items(session, study, actor, secret=secret)
    written = analysis.run_all(
        frame,
        outdir,
        scales=outcomes or None,
        mcids=mcid_map,
        items=items if len(items) else None,
        fmt=fmt,
        post_wave=followup,
        mi_imputations=imputations,
    )
    # Reproducibility appendix: the release, the schema revision and the analysis stack.
    report = Path(written["report"])
    report.write_text(report.read_text() + "\n" + provenance_markdown(provenance(session.connection())))
    record(
        session,
        actor,
        "analysis.run",
        "analysis_run",
        uuid.uuid4().hex,
        study_id=study.id,
        after={
            "kind": "report",
            "parameters": {
                "outcomes": outcomes,
                "mcids": mcid_map,
                "format": fmt,
                "followup": followup,
                "imputations": imputations,
            },
            "sites": scope_sites(design, actor, None),
            "rows": len(frame),
            "participants": int(frame["participant"].nunique()),
            "outdir": str(Path(outdir)),
        },
    )
    return written
