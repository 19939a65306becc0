"""Joint displays in the service: trajectory group × theme matrix and case-oriented matrix.

Both are reads (GET, nothing written). ``*_html`` return an HTML fragment (a ``<table>``) that the
trial report embeds; the JSON forms carry the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

import qualitative as q
from api.auth.service import Actor
from api.errors import Unprocessable
from api.jsonable import records
from api.participants.models import Participant
from api.studies.models import Study
from api.transcripts.analysis import Corpus, load_corpus, outcomes_frame, resolve_themes
from api.transcripts.cases import case_variables
from api.transcripts.meta import by_row

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd


@dataclass
class MatrixParams:
    themes: list[str]
    scale: str
    mcid: float | None
    higher_is_better: bool = True
    reliability: float | None = None
    baseline: str | None = None
    followup: str | None = None
    quotes: int = 2
    # Study codes the display may draw on (the trial report's sites); None: every one the reader sees.
    participants: frozenset[str] | None = None


def _inputs(session: Session, study: Study, actor: Actor, p: MatrixParams, settings):
    corpus = load_corpus(session, study, actor)
    try:
        themes = resolve_themes(corpus, p.themes)
    except Unprocessable as exc:  # the routes take themes as the query parameter "theme"
        err = exc.errors[0]
        raise Unprocessable(["query", "theme", *err["loc"][2:]], err["msg"], err["type"]) from None
    for field_ in ("baseline", "followup"):
        value = getattr(p, field_)
        if value is not None and value not in set(corpus.waves.values()):
            raise Unprocessable(["query", field_], "unknown wave code for this study", "unknown_wave")
    outcomes = outcomes_frame(session, study, actor, settings)
    cols = ["participant", "arm", "wave", "scale", "value", "days"]
    outcomes = outcomes[cols].dropna(subset=["value"]) if len(outcomes) else pd.DataFrame(columns=cols)
    if p.participants is not None:
        corpus = restrict(corpus, p.participants)
        outcomes = outcomes[outcomes["participant"].astype(str).isin(p.participants)]
    if p.scale not in set(outcomes["scale"].dropna().unique()):
        raise Unprocessable(["query", "scale"], "no scores of this scale in the study", "unknown_scale")
    if (p.mcid is None) == (p.reliability is None):
        raise Unprocessable(
            ["query", "mcid"], "give mcid (points) or reliability (reliable change index), not both", "missing"
        )
    return corpus, themes, outcomes


def restrict(corpus: Corpus, participants: frozenset[str]) -> Corpus:
    """``corpus`` without the transcripts in which anyone outside ``participants`` speaks."""
    keep = {t.id for t in corpus.rows if t.participant_codes and set(t.participant_codes) <= participants}
    return replace(
        corpus,
        rows=[t for t in corpus.rows if t.id in keep],
        transcripts=[t for t in corpus.transcripts if t.id in {str(i) for i in keep}],
        codings=[c for c in corpus.codings if c.transcript_id in keep],
    )


def trajectory_matrix(session: Session, study: Study, actor: Actor, p: MatrixParams, settings) -> pd.DataFrame:
    corpus, themes, outcomes = _inputs(session, study, actor, p, settings)
    m = q.trajectory_theme_matrix(
        corpus.library_codings(),
        corpus.transcripts,
        outcomes,
        themes,
        scale=p.scale,
        mcid=p.mcid,
        reliability=p.reliability,
        higher_is_better=p.higher_is_better,
        baseline=p.baseline,
        followup=p.followup,
        codebook=corpus.codebook,
        quotes=p.quotes,
    )
    metas = by_row(session, study.id)
    m["meta_inference"] = [getattr(metas.get((t, p.scale)), "inference", None) for t in m["theme"]]
    return m


def case_matrix(
    session: Session, study: Study, actor: Actor, p: MatrixParams, settings, sort: list[str]
) -> pd.DataFrame:
    corpus, themes, outcomes = _inputs(session, study, actor, p, settings)
    codes = sorted({c for t in corpus.transcripts for c in (t.participants or [t.participant]) if c})
    people = (
        session.exec(
            select(Participant).where(Participant.study_id == study.id, Participant.study_code.in_(codes))
        ).all()
        if codes
        else []
    )
    variables = case_variables(session, study, people)
    for v in variables.values():
        v.pop("arm", None)  # the matrix has its own arm column (from the outcomes frame)
    try:
        return q.case_matrix(
            corpus.library_codings(),
            corpus.transcripts,
            outcomes,
            themes,
            scale=p.scale,
            mcid=p.mcid,
            reliability=p.reliability,
            higher_is_better=p.higher_is_better,
            baseline=p.baseline,
            followup=p.followup,
            codebook=corpus.codebook,
            case_variables=variables,
            sort_by=sort or ["arm", "trajectory", "participant"],
        )
    except KeyError as exc:
        raise Unprocessable(
            ["query", "sort"], f"no column {exc.args[0]!r} in the case matrix", "unknown_column"
        ) from None


def trajectory_matrix_html(session: Session, study: Study, actor: Actor, p: MatrixParams, settings) -> str:
    """The trajectory × theme matrix as an HTML fragment (for the trial report)."""
    m = trajectory_matrix(session, study, actor, p, settings)
    rule = f"{p.mcid:g} points" if p.mcid is not None else f"reliable change (reliability {p.reliability:g})"
    caption = (
        f"{p.scale}: improved / no change / worsened by {rule} "
        f"({'higher' if p.higher_is_better else 'lower'} is better) × theme, per arm"
    )
    cols = ["trajectory", "theme_name", "arm", "n_group", "n_theme", "prevalence", "quotes", "meta_inference"]
    return q.joint_display_html(m, caption=caption, columns=cols)


def case_matrix_html(session: Session, study: Study, actor: Actor, p: MatrixParams, settings, sort: list[str]) -> str:
    m = case_matrix(session, study, actor, p, settings, sort)
    rule = f"MCID {p.mcid:g}" if p.mcid is not None else f"reliable change, reliability {p.reliability:g}"
    return q.joint_display_html(m, caption=f"Case matrix ({p.scale}, {rule})")


def as_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return records(df)
