"""Routes of the codebook, memos, codings, coding analyses (co-occurrence, crosstab, agreement)
and auto-coding suggestions. Admins and coordinators (their sites) code; analysts read."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.auth.dependencies import authorize
from api.auth.policy import READERS, STAFF
from api.auth.service import Actor
from api.db import end_read, get_session
from api.errors import NotFound
from api.studies.dependencies import valid_study
from api.studies.models import Study
from api.transcripts import analysis, codebook, coding, service
from api.transcripts.dependencies import (
    same_study,
    settings_of,
    transcript_for,
    valid_code,
    valid_coding,
    valid_suggestion,
    valid_transcript,
)
from api.transcripts.models import QualCode, QualCoding, Suggestion, Transcript
from api.transcripts.schemas import (
    CodeCreate,
    CodeHistoryRead,
    CodePatch,
    CodeRead,
    CodingCreate,
    CodingRead,
    MemoCreate,
    MemoRead,
    SuggestionRead,
)

router = APIRouter(tags=["transcripts"])


# --------------------------------------------------------------------------- codebook and memos


def _code_out(session: Session, code: QualCode) -> dict:
    by_id = {c.id: c for c in codebook.codes_of(session, code.study_id)}
    by_id[code.id] = code
    return codebook.code_read(code, by_id)


@router.post("/studies/{study_id}/codes", status_code=201, response_model=CodeRead)
def create_code(
    body: CodeCreate,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    code = codebook.create_code(session, study, actor, body)
    out = _code_out(session, code)
    session.commit()
    return out


@router.get("/studies/{study_id}/codes", response_model=list[CodeRead])
def list_codes(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    codes = codebook.codes_of(session, study.id)
    by_id = {c.id: c for c in codes}
    end_read(session)
    return [codebook.code_read(c, by_id) for c in codes]


@router.get("/studies/{study_id}/codes/history", response_model=list[CodeHistoryRead])
def code_history(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = [h.model_dump() for h in codebook.history(session, study)]
    end_read(session)
    return out


@router.patch("/codes/{code_id}", response_model=CodeRead)
def patch_code(
    body: CodePatch,
    actor: Actor = Depends(authorize(*STAFF)),
    code: QualCode = Depends(valid_code),
    session: Session = Depends(get_session),
):
    study = session.get(Study, code.study_id)
    codebook.update_code(session, code, study, actor, body)
    out = _code_out(session, code)
    session.commit()
    return out


@router.delete("/codes/{code_id}", status_code=204)
def delete_code(
    actor: Actor = Depends(authorize(*STAFF)),
    code: QualCode = Depends(valid_code),
    session: Session = Depends(get_session),
):
    codebook.delete_code(session, code, actor)
    session.commit()
    return Response(status_code=204)


@router.post("/studies/{study_id}/memos", status_code=201, response_model=MemoRead)
def create_memo(
    body: MemoCreate,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    def lookup(tid: int) -> Transcript:
        t = transcript_for(session, actor, tid, loc=("body", "target_id"))
        if t.study_id != study.id:
            raise NotFound(["body", "target_id"], "transcript not found")
        return t

    m = coding.add_memo(session, study, actor, body, lookup)
    out = m.model_dump()
    session.commit()
    return out


@router.get("/studies/{study_id}/memos", response_model=list[MemoRead])
def list_memos(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    target: Literal["code", "transcript", "segment", "project"] | None = None,
    target_id: int | None = Query(None, ge=1, le=2**31 - 1),
):
    rows = [m.model_dump() for m in coding.memos_of(session, study, actor, target, target_id)]
    end_read(session)
    return rows


# --------------------------------------------------------------------------- codings


@router.post("/transcripts/{transcript_id}/codings", status_code=201, response_model=CodingRead)
def create_coding(
    body: CodingCreate,
    actor: Actor = Depends(authorize(*STAFF)),
    t: Transcript = Depends(valid_transcript),
    session: Session = Depends(get_session),
):
    c = coding.add_coding(session, t, actor, body)
    out = coding.coding_read(c, t, session.get(QualCode, c.code_id).key)
    session.commit()
    return out


@router.get("/transcripts/{transcript_id}/codings", response_model=list[CodingRead])
def list_codings(
    actor: Actor = Depends(authorize(*READERS)),
    t: Transcript = Depends(valid_transcript),
    session: Session = Depends(get_session),
    coder: str | None = Query(None, max_length=320),
):
    keys = {c.id: c.key for c in codebook.codes_of(session, t.study_id)}
    out = [
        coding.coding_read(c, t, keys[c.code_id])
        for c in coding.codings_of(session, [t.id])
        if coder is None or c.coder == coder
    ]
    end_read(session)
    return out


@router.delete("/codings/{coding_id}", status_code=204)
def delete_coding(
    actor: Actor = Depends(authorize(*STAFF)),
    c: QualCoding = Depends(valid_coding),
    session: Session = Depends(get_session),
):
    coding.delete_coding(session, c, session.get(Transcript, c.transcript_id), actor)
    session.commit()
    return Response(status_code=204)


@router.get("/studies/{study_id}/codes/{code_id}/segments")
def code_segments(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    code: QualCode = Depends(valid_code),
    session: Session = Depends(get_session),
    include_descendants: bool = True,
    coder: str | None = Query(None, max_length=320),
):
    """Every coded segment of the code (and its sub-codes) with its de-identified text."""
    same_study(study, code.study_id, ("path", "code_id"))
    corpus = analysis.load_corpus(session, study, actor)
    end_read(session)
    return analysis.code_segments(corpus, code, include_descendants, coder)


@router.get("/studies/{study_id}/coding/co-occurrence")
def co_occurrence(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    unit: Literal["overlap", "turn", "paragraph", "transcript"] = "overlap",
    coder: str | None = Query(None, max_length=320),
):
    corpus = analysis.load_corpus(session, study, actor)
    end_read(session)
    return analysis.co_occurrence(corpus, unit, coder)


@router.get("/studies/{study_id}/coding/crosstab")
def crosstab(
    request: Request,
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    by: str = Query(
        "arm", pattern=r"^(arm|site|wave|context_[A-Za-z0-9_]{1,60})$", description="arm, site, wave or context_<item>"
    ),
):
    corpus = analysis.load_corpus(session, study, actor)
    out = analysis.crosstab(session, corpus, actor, by, settings_of(request))
    end_read(session)
    return out


@router.get("/studies/{study_id}/coding/agreement")
def agreement(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    unit: Literal["turn", "paragraph", "segment", "character", "continuum"] = "turn",
    coders: str | None = Query(None, max_length=2000, description="two or more coders, comma-separated"),
    threshold: float | None = Query(
        None, gt=0, le=1, description="unit=segment: minimum overlap of two segments (MAXQDA), e.g. 0.9"
    ),
    min_chars: int = Query(1, ge=1, le=100_000, description="minimum overlap in characters"),
):
    """Agreement per code and overall: presence per turn/paragraph/segment (percent, kappa, alpha),
    MAXQDA's segment overlap rule (``unit=segment&threshold=0.9``), character-level agreement and
    kappa (``unit=character``) or Krippendorff's unitized alpha (``unit=continuum``)."""
    corpus = analysis.load_corpus(session, study, actor)
    end_read(session)
    return analysis.agreement_rows(
        corpus, unit, service.parse_list(coders, ("query", "coders")), threshold=threshold, min_chars=min_chars
    )


@router.get("/studies/{study_id}/coding/disagreements")
def disagreements(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    unit: Literal["turn", "paragraph", "segment"] = "turn",
    coders: str | None = Query(None, max_length=2000),
):
    corpus = analysis.load_corpus(session, study, actor)
    end_read(session)
    return analysis.disagreement_rows(corpus, unit, service.parse_list(coders, ("query", "coders")))


# --------------------------------------------------------------------------- suggestions


def _suggestions_out(session: Session, rows: list[Suggestion], study_id: int) -> list[dict]:
    keys = {c.id: c.key for c in codebook.codes_of(session, study_id)}
    return [coding.suggestion_read(s, keys.get(s.code_id, "")) for s in rows]


@router.post("/transcripts/{transcript_id}/suggestions", response_model=list[SuggestionRead])
def run_suggestions(
    actor: Actor = Depends(authorize(*STAFF)),
    t: Transcript = Depends(valid_transcript),
    session: Session = Depends(get_session),
):
    """Run the auto-coder over the transcript; returns every pending suggestion."""
    rows = coding.suggest(session, t, actor, service.wave_codes(session, t.study_id))
    out = _suggestions_out(session, rows, t.study_id)
    session.commit()
    return out


@router.get("/transcripts/{transcript_id}/suggestions", response_model=list[SuggestionRead])
def list_suggestions(
    actor: Actor = Depends(authorize(*READERS)),
    t: Transcript = Depends(valid_transcript),
    session: Session = Depends(get_session),
    status: Literal["pending", "accepted", "rejected"] | None = None,
):
    out = _suggestions_out(session, coding.suggestions_of(session, t, status), t.study_id)
    end_read(session)
    return out


@router.post("/suggestions/{suggestion_id}/accept", response_model=SuggestionRead)
def accept(
    actor: Actor = Depends(authorize(*STAFF)),
    s: Suggestion = Depends(valid_suggestion),
    session: Session = Depends(get_session),
):
    """Accept: the suggestion becomes a coding by the caller."""
    coding.decide(session, s, session.get(Transcript, s.transcript_id), actor, "accept")
    out = _suggestions_out(session, [s], s.study_id)[0]
    session.commit()
    return out


@router.post("/suggestions/{suggestion_id}/reject", response_model=SuggestionRead)
def reject(
    actor: Actor = Depends(authorize(*STAFF)),
    s: Suggestion = Depends(valid_suggestion),
    session: Session = Depends(get_session),
):
    """Reject: remembered, and never proposed again for this transcript."""
    coding.decide(session, s, session.get(Transcript, s.transcript_id), actor, "reject")
    out = _suggestions_out(session, [s], s.study_id)[0]
    session.commit()
    return out
