"""Read-side analysis of a study's coded corpus through the :mod:`qualitative` library: search,
segments, co-occurrence, crosstabs, agreement, REFI-QDA exchange, indicators and joint displays.

Everything here works on the de-identified texts the caller may see (coordinators: their sites).

Examples
--------
>>> corpus = load_corpus(session, study, actor)      # doctest: +SKIP
>>> agreement_rows(corpus, unit="turn", coders=["ana@x.org", "ben@x.org"])  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

import qualitative as q
from api.artifacts import ArtifactStore, site_scope
from api.audit.service import record
from api.auth.service import Actor
from api.errors import Unprocessable
from api.exports.deid import Deidentification
from api.jsonable import records
from api.participants.models import Participant
from api.studies.models import Arm, Site, Study
from api.studies.service import sites_by_code
from api.transcripts import codebook, coding, service
from api.transcripts.models import QualCode, QualCoding, QualMemo, Transcript

if TYPE_CHECKING:
    import pandas as pd
else:
    from api.lazyimport import pandas as pd

UNITS_AGREEMENT = ("turn", "paragraph", "segment")
UNITS_COOCCURRENCE = ("overlap", "turn", "paragraph", "transcript")


@dataclass
class Corpus:
    """A study's visible transcripts, codebook and codings, in library form."""

    study: Study
    rows: list[Transcript]
    transcripts: list[q.Transcript]
    codes: list[QualCode]
    codebook: q.Codebook
    codings: list[QualCoding]
    waves: dict[int, str] = field(default_factory=dict)

    @property
    def key_of(self) -> dict[int, str]:
        return {c.id: c.key for c in self.codes}

    def library_codings(self) -> list[q.Coding]:
        keys = self.key_of
        return [
            q.Coding(
                str(c.transcript_id),
                keys[c.code_id],
                c.start,
                c.end,
                c.coder,
                c.memo,
                id=str(c.id),
                created=c.created_at,
            )
            for c in self.codings
        ]


def load_corpus(session: Session, study: Study, actor: Actor) -> Corpus:
    rows = service.visible_transcripts(session, study, actor)
    waves = service.wave_codes(session, study.id)
    codes = codebook.codes_of(session, study.id)
    return Corpus(
        study=study,
        rows=rows,
        transcripts=[service.to_library(t, waves) for t in rows],
        codes=codes,
        codebook=codebook.codebook(codes),
        codings=coding.codings_of(session, [t.id for t in rows]),
        waves=waves,
    )


def _int_ids(df: pd.DataFrame, col: str = "transcript") -> pd.DataFrame:
    if col in df.columns:
        df[col] = df[col].astype(int)
    return df


def search(corpus: Corpus, query: str, window: int, lemma: bool) -> list[dict[str, Any]]:
    if not corpus.transcripts:
        return []
    return records(_int_ids(q.kwic(corpus.transcripts, query, window=window, lemma=lemma)))


def code_segments(corpus: Corpus, code: QualCode, include_descendants: bool, coder: str | None) -> list[dict]:
    df = q.segments(
        corpus.library_codings(),
        corpus.transcripts,
        code.key,
        codebook=corpus.codebook,
        include_descendants=include_descendants,
        coder=coder,
    )
    return records(_int_ids(df))


def co_occurrence(corpus: Corpus, unit: str, coder: str | None) -> list[dict]:
    codings = corpus.library_codings()
    if not codings:
        return []
    return records(q.co_occurrence(codings, corpus.transcripts, unit=unit, coder=coder))


def participant_attributes(session: Session, corpus: Corpus, actor: Actor, by: str, settings) -> pd.DataFrame:
    """One row per participant: ``participant`` plus the ``by`` attribute (arm, site or context_<item>)."""
    if by in ("arm", "site"):
        rows = session.execute(
            select(Participant.study_code, Arm.code, Site.code, Participant.arm_id)
            .join(Site, Site.id == Participant.site_id)
            .outerjoin(Arm, Arm.id == Participant.arm_id)
            .where(Participant.study_id == corpus.study.id)
        ).all()
        # Blinded analysis: neutral arm labels while the reader is blind (api.sap.blinding).
        blind = Deidentification.arms_for(session, corpus.study.id, actor)
        table = [tuple(r) for r in rows]
        if blind is not None:
            table = [(c, blind.get(a) if a is not None else None, s, a) for c, _, s, a in table]
        frame = pd.DataFrame.from_records(table, columns=["participant", "arm", "site", "arm_id"])
        return frame[["participant", by]]
    from api.exports.dictionary import context_columns
    from api.exports.service import plan_export

    # Check the attribute against the export plan before reading any rows.
    known = [c.name for c in context_columns(plan_export(session, corpus.study, actor).context_items)]
    if by not in known:
        raise Unprocessable(
            ["query", "by"], f"unknown attribute; use arm, site, wave or one of {known}", "unknown_attribute"
        )
    frame = outcomes_frame(session, corpus.study, actor, settings)
    return frame[["participant", by]].drop_duplicates("participant")


def crosstab(session: Session, corpus: Corpus, actor: Actor, by: str, settings) -> list[dict]:
    codings = corpus.library_codings()
    if not codings:
        return []
    if by == "wave":
        return records(q.crosstab(codings, corpus.transcripts, None, "wave"))
    attrs = participant_attributes(session, corpus, actor, by, settings)
    return records(q.crosstab(codings, corpus.transcripts, attrs, by))


def _coders(corpus: Corpus, coders: list[str] | None) -> list[str]:
    used = sorted({c.coder for c in corpus.codings})
    if coders is None:
        coders = used
    else:
        missing = [i for i, c in enumerate(coders) if c not in used]
        if missing:
            raise Unprocessable(
                ["query", "coders", missing[0]], "no codings by this coder in the study", "unknown_coder"
            )
    if len(coders) < 2:
        raise Unprocessable(["query", "coders"], "agreement needs codings by at least two coders", "too_few_coders")
    return coders


def agreement_rows(
    corpus: Corpus, unit: str, coders: list[str] | None, threshold: float | None = None, min_chars: int = 1
) -> list[dict]:
    """Agreement per code and overall, by the unit asked for.

    ``turn``/``paragraph``/``segment``: presence of each code per unit (a coding counts when it
    overlaps the unit by ``min_chars``); ``segment`` with a ``threshold``: MAXQDA's segment overlap
    rule; ``character``: character-level agreement and kappa; ``continuum``: Krippendorff's uα.
    """
    coders = _coders(corpus, coders)
    if threshold is not None and unit != "segment":
        raise Unprocessable(["query", "threshold"], "a threshold applies to unit=segment only", "invalid_combination")
    pairwise = unit == "character" or threshold is not None
    if pairwise and len(coders) != 2:
        raise Unprocessable(
            ["query", "coders"], "this unit compares exactly two coders: name them with coders=a,b", "two_coders"
        )
    codings, transcripts = corpus.library_codings(), corpus.transcripts
    if unit == "character":
        table = q.character_agreement(codings, transcripts, coders=coders)
        method = "characters"
    elif unit == "continuum":
        table = q.unitized_alpha(codings, transcripts, coders=coders)
        method = "krippendorff_u_alpha"
    elif threshold is not None:
        table = q.segment_agreement(codings, transcripts, threshold=threshold, min_chars=min_chars, coders=coders)
        method = "segment_overlap"
    else:
        table = q.agreement(codings, transcripts, unit=unit, coders=coders, min_chars=min_chars)
        method = "presence"
    table = table.assign(unit=unit, method=method, coders=", ".join(coders), min_chars=min_chars)
    return records(table)


def disagreement_rows(corpus: Corpus, unit: str, coders: list[str] | None) -> list[dict]:
    coders = _coders(corpus, coders)
    return records(_int_ids(q.disagreements(corpus.library_codings(), corpus.transcripts, unit=unit, coders=coders)))


# --------------------------------------------------------------------------- indicators and joint display


def outcomes_frame(session: Session, study: Study, actor: Actor, settings) -> pd.DataFrame:
    """The exports domain's long frame, as the caller may see it."""
    from api.exports.service import long_frame

    session.rollback()  # the export opens its own (snapshot) transaction
    try:
        return long_frame(session, study, actor, secret=settings.secret_key)
    finally:
        session.rollback()


def indicators(corpus: Corpus) -> list[dict]:
    codings = corpus.library_codings()
    codes = [c.key for c in corpus.codes if c.codable] or None
    if not corpus.transcripts:
        return []
    df = q.quantitise(codings, corpus.transcripts, codes=codes, codebook=corpus.codebook if codes else None)
    return records(df)


def resolve_themes(corpus: Corpus, themes: list[str]) -> list[str]:
    keys = {c.key for c in corpus.codes}
    by_id = {str(c.id): c.key for c in corpus.codes}
    out = []
    for i, t in enumerate(themes):
        if t in keys:
            out.append(t)
        elif t in by_id:
            out.append(by_id[t])
        else:
            raise Unprocessable(
                ["body", "themes", i], "no code with this key or id in the study's codebook", "unknown_code"
            )
    return out


def joint_table(session: Session, study: Study, actor: Actor, body, settings) -> tuple[pd.DataFrame, list[str]]:
    """The joint display as a frame (see :func:`qualitative.joint_display`) and the theme keys.

    Outcomes come from the exports domain's long frame as ``actor`` may see it; quotes come from
    the de-identified transcripts.
    """
    outcomes = outcomes_frame(session, study, actor, settings)
    corpus = load_corpus(session, study, actor)
    themes = resolve_themes(corpus, body.themes)
    for field_ in ("baseline", "followup"):
        value = getattr(body, field_)
        if value is not None and value not in set(corpus.waves.values()):
            raise Unprocessable(["body", field_], "unknown wave code for this study", "unknown_wave")
    if body.scales:
        known = set(outcomes["scale"].dropna().unique()) if len(outcomes) else set()
        for i, s in enumerate(body.scales):
            if s not in known:
                raise Unprocessable(["body", "scales", i], "no scores of this scale in the study", "unknown_scale")
    cols = ["participant", "arm", "wave", "scale", "value", "days"]
    outcomes = outcomes[cols].dropna(subset=["value"]) if len(outcomes) else pd.DataFrame(columns=cols)
    table = q.joint_display(
        corpus.library_codings(),
        corpus.transcripts,
        outcomes,
        themes,
        codebook=corpus.codebook,
        scales=body.scales,
        baseline=body.baseline,
        followup=body.followup,
        arm=body.arm,
        quotes=body.quotes,
    )
    return table, themes


def joint_display(
    session: Session, study: Study, actor: Actor, body, settings, *, write: bool = True
) -> dict[str, Any]:
    """The joint display with BH-adjusted p-values and small-n warnings; with ``write`` (the POST
    route) the plot goes to the artefact store and the run is audited, a GET writes nothing."""
    table, themes = joint_table(session, study, actor, body, settings)
    table = q.adjust_joint_display(table)
    from api.transcripts.meta import by_row

    metas = by_row(session, study.id)
    table["meta_inference"] = [
        getattr(metas.get((t, sc)), "inference", None) for t, sc in zip(table["theme"], table["scale"], strict=True)
    ]
    table["meta_note"] = [
        getattr(metas.get((t, sc)), "note", None) for t, sc in zip(table["theme"], table["scale"], strict=True)
    ]
    if not write:
        return {"baseline": body.baseline, "followup": body.followup, "rows": records(table), "plot_url": None}
    sites = site_scope(actor, sites_by_code(session, study.id))
    run = ArtifactStore.from_settings(settings).new_run(
        "qualitative", study.id, {"kind": "joint-display", "sites": sites, "actor_role": actor.role}
    )
    filename = f"joint_display.{body.plot_format}"
    q.plot_joint_display(table, run.folder / filename)
    record(
        session,
        actor,
        "create",
        "joint_display",
        run.run_id,
        study_id=study.id,
        after={
            "themes": themes,
            "scales": body.scales,
            "baseline": body.baseline,
            "followup": body.followup,
            "rows": len(table),
            "sites": sites,
        },
    )
    return {
        "baseline": body.baseline,
        "followup": body.followup,
        "rows": records(table),
        "plot_url": run.url(filename),
    }


# --------------------------------------------------------------------------- REFI-QDA


def _memos(session: Session, corpus: Corpus) -> list[q.Memo]:
    keys = corpus.key_of
    visible = {t.id for t in corpus.rows}
    out = []
    for m in session.exec(select(QualMemo).where(QualMemo.study_id == corpus.study.id).order_by(QualMemo.id)):
        if m.target == "code":
            if m.target_id not in keys:
                continue
            target_id = keys[m.target_id]
        elif m.target in ("transcript", "segment"):
            if m.target_id not in visible:
                continue
            target_id = str(m.target_id)
        else:
            target_id = None
        out.append(
            q.Memo(m.text, m.target, target_id, m.author, m.start, m.end, m.title, id=str(m.id), created=m.created_at)
        )
    return out


def _refi_refused(exc: ValueError):
    # An empty codebook, or text XML cannot carry (control characters), is the data's state,
    # not a server fault: say so as a 409 naming the study.
    from api.errors import Conflict

    return Conflict(["path", "study_id"], f"cannot write REFI-QDA for this study: {exc}", "refi_export_refused")


def export_qdc(corpus: Corpus) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        try:
            path = q.export_qdc(corpus.codebook, Path(d) / "codebook.qdc")
        except ValueError as exc:
            raise _refi_refused(exc) from None
        return Path(path).read_bytes()


def export_qdpx(session: Session, corpus: Corpus) -> bytes:
    """The study's visible transcripts, codebook, codings and memos, with one case per participant
    interviewed (variables from :mod:`api.transcripts.cases`)."""
    from api.transcripts.cases import case_variables

    ids = sorted({pid for t in corpus.rows for pid in (t.participant_ids or [])})
    people = session.exec(select(Participant).where(Participant.id.in_(ids))).all() if ids else []
    lib = q.CodedCorpus(
        corpus.transcripts,
        corpus.codebook,
        corpus.library_codings(),
        _memos(session, corpus),
        name=corpus.study.title,
        cases=case_variables(session, corpus.study, sorted(people, key=lambda p: p.study_code)),
    )
    with tempfile.TemporaryDirectory() as d:
        try:
            path = q.export_qdpx(lib, Path(d) / "project.qdpx")
        except ValueError as exc:
            raise _refi_refused(exc) from None
        return Path(path).read_bytes()
