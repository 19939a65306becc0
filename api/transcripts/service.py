"""Business rules of the qualitative layer: transcripts (upload with de-identification, reads).
The codebook is in :mod:`api.transcripts.codebook`, codings, memos and suggestions in
:mod:`api.transcripts.coding`. Services flush; routers commit once.

Examples
--------
>>> upload_transcript(session, study, actor, data=b"Interviewer: Hi\\nP01: Hello", filename="p01.txt",
...                   participants=["P01"], wave="baseline", settings=settings)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from sqlmodel import Session, select

import qualitative as q  # names load on first use: spaCy only when a transcript is parsed
from api.audit.service import record
from api.auth.service import Actor
from api.errors import NotFound, Unprocessable
from api.inputguard import decode_upload
from api.participants.models import Participant, ParticipantContact
from api.studies.models import Study, Wave
from api.transcripts.models import (
    Transcript,
    TranscriptOriginal,
)
from api.transcripts.terms import study_terms

SUFFIX_FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".vtt": "vtt",
    ".srt": "srt",
    ".docx": "docx",
}
# Parser function names in :mod:`qualitative`, looked up when a file is parsed.
PARSERS = {"text": "parse_text", "markdown": "parse_markdown", "vtt": "parse_vtt", "srt": "parse_srt"}


# --------------------------------------------------------------------------- NER pipeline


@lru_cache(maxsize=4)
def ner_setting(model: str) -> tuple[str | None, str | None]:
    """Resolve the configured model once per process: ``(model for deidentify, warning)``.

    ``"auto"`` becomes the installed pipeline's name or ``None``; the pipeline itself is loaded
    here, once, and kept by :func:`qualitative.load_ner_model`'s cache, so requests never load it.
    """
    if model.lower() in ("none", "off", ""):
        return None, "statistical NER is off (PEERLENS_SPACY_MODEL=none): only rule-based de-identification ran"
    nlp, warning = q.load_ner_model(model)  # raises NERModelNotFound for a named model that is missing
    if nlp is None:
        return None, warning
    return (model if model != "auto" else nlp.meta.get("lang", "en") + "_" + nlp.meta.get("name", "")), None


def _ner_model(settings) -> tuple[str | None, str | None]:
    try:
        return ner_setting(settings.spacy_model)
    except q.NERModelNotFound:
        # A configured model that cannot be loaded is a deployment error; de-identification still
        # runs (rule-based) and the response says NER was off, rather than refusing uploads.
        return None, (
            "statistical NER is off: the configured PEERLENS_SPACY_MODEL cannot be loaded; "
            "only rule-based de-identification ran"
        )


# --------------------------------------------------------------------------- transcripts


def coder_label(actor: Actor) -> str:
    """The name a coding is attributed to (the user's login)."""
    return actor.email or actor.role


def _participants(session: Session, study: Study, codes: Sequence[str], actor: Actor) -> list[Participant]:
    out = []
    for i, code in enumerate(codes):
        p = session.exec(
            select(Participant).where(Participant.study_id == study.id, Participant.study_code == code)
        ).first()
        if p is None or not actor.sees_site(p.site_id):
            raise Unprocessable(
                ["body", "participants", i], "no participant with this study code in the study", "unknown_participant"
            )
        out.append(p)
    return out


def _wave(session: Session, study: Study, code: str | None, loc=("body", "wave")) -> Wave | None:
    if not code:
        return None
    w = session.exec(select(Wave).where(Wave.study_id == study.id, Wave.code == code)).first()
    if w is None:
        raise Unprocessable(list(loc), "unknown wave code for this study", "unknown_wave")
    return w


def vault_for(session: Session, participants: Iterable[Participant]) -> q.VaultIdentifiers:
    """The participants' own identifiers from the contact vault (never stored with the transcript)."""
    ids = [p.id for p in participants]
    if not ids:
        return q.VaultIdentifiers()
    contacts = session.exec(select(ParticipantContact).where(ParticipantContact.participant_id.in_(ids))).all()
    return q.VaultIdentifiers(
        names=[c.name for c in contacts if c.name],
        emails=[c.email for c in contacts if c.email],
        phones=[c.phone for c in contacts if c.phone],
    )


def parse_upload(
    data: bytes,
    filename: str,
    fmt: str | None,
    *,
    participant: str | None,
    wave: str | None,
    kind: str | None,
    interviewer_labels: Sequence[str] | None,
) -> q.Transcript:
    """Parse an uploaded file; any failure is a 422 naming ``file`` (never the file's content)."""
    if fmt is None:
        suffix = ("." + filename.rsplit(".", 1)[-1].lower()) if "." in filename else ""
        fmt = SUFFIX_FORMATS.get(suffix)
        if fmt is None:
            raise Unprocessable(
                ["body", "file"],
                "unsupported file type: use .txt, .md, .vtt, .srt or .docx (or give format)",
                "unsupported_format",
            )
    kwargs: dict[str, Any] = {"participant": participant, "wave": wave, "kind": kind}
    if interviewer_labels:
        kwargs["interviewer_labels"] = {x.lower() for x in interviewer_labels}
    try:
        if fmt == "docx":
            t = q.parse_docx(io.BytesIO(data), id="upload", **kwargs)
        else:
            text = decode_upload(data, ["body", "file"], message="text files must be UTF-8")
            t = getattr(q, PARSERS[fmt])(text, id="upload", **kwargs)
    except Unprocessable:
        raise
    except Exception:  # noqa: BLE001 - a malformed file of any kind is the client's error
        raise Unprocessable(["body", "file"], f"the file cannot be read as {fmt}", "invalid_file") from None
    if not t.text.strip():
        raise Unprocessable(["body", "file"], "the transcript is empty", "empty_transcript")
    return t


def _relabel(t: q.Transcript, speaker_map: dict[str, str]) -> q.Transcript:
    """Turns whose label is mapped get the participant's study code as speaker (focus groups)."""
    if not speaker_map:
        return t
    turns = [
        q.Turn(speaker_map.get(u.speaker, u.speaker), u.start, u.end, u.start_time, u.end_time, u.role) for u in t.turns
    ]
    return t.with_text(t.text, turns)


def _turn_dicts(turns: Iterable[q.Turn]) -> list[dict[str, Any]]:
    return [asdict(u) for u in turns]


def _counts(replacements: Iterable[q.Replacement]) -> dict[str, int]:
    return dict(sorted(Counter(r.type for r in replacements).items()))


def store_transcript(
    session: Session,
    study: Study,
    actor: Actor,
    parsed: q.Transcript,
    *,
    participants: list[Participant],
    wave: Wave | None,
    kind: str,
    title: str,
    filename: str | None,
    settings,
    source_format: str | None = None,
    audit_action: str = "create",
) -> tuple[Transcript, q.DeidResult]:
    """De-identify ``parsed`` with the participants' vault identifiers and store both halves."""
    model, warning = _ner_model(settings)
    vault = vault_for(session, participants)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "NER is off" warning is reported in the response
        result = q.deidentify(parsed, vault=vault, model=model, terms=study_terms(session, study))
    if warning and warning not in result.warnings:
        result.warnings.append(warning)
    sites = {p.site_id for p in participants}
    row = Transcript(
        study_id=study.id,
        site_id=sites.pop() if len(sites) == 1 else None,
        wave_id=wave.id if wave else None,
        participant_id=participants[0].id if kind == "interview" and len(participants) == 1 else None,
        participant_ids=[p.id for p in participants],
        participant_codes=[p.study_code for p in participants],
        kind=kind,
        source_format=source_format or parsed.source_format,
        title=title,
        text=result.text,
        turns=_turn_dicts(result.turns),
        ner=result.ner,
        ner_model=result.model,
        replacement_counts=_counts(result.replacements),
        created_by=actor.user_id,
    )
    session.add(row)
    session.flush()
    session.add(
        TranscriptOriginal(
            transcript_id=row.id,
            filename=filename,
            text=parsed.text,
            replacements=[asdict(r) for r in result.replacements],
        )
    )
    # Counts only: the audit trail is read by people who may not see identifiers.
    record(
        session,
        actor,
        audit_action,
        "transcript",
        row.id,
        study_id=study.id,
        site_id=row.site_id,
        after={
            "kind": kind,
            "source_format": row.source_format,
            "wave": wave.code if wave else None,
            "participants": row.participant_codes,
            "length": len(row.text),
            "turns": len(row.turns),
            "ner": row.ner,
            "replacements": row.replacement_counts,
        },
    )
    return row, result


def upload_transcript(
    session: Session,
    study: Study,
    actor: Actor,
    *,
    data: bytes,
    filename: str,
    participants: Sequence[str],
    wave: str | None,
    kind: str | None,
    fmt: str | None,
    title: str | None,
    interviewer_labels: Sequence[str] | None,
    speaker_map: dict[str, str] | None,
    settings,
) -> tuple[Transcript, q.DeidResult]:
    """Parse, de-identify and store an uploaded transcript.

    One participant makes an interview; several (or ``kind="focus_group"``) a focus group whose
    turns are attributed through speaker labels equal to study codes or mapped by ``speaker_map``.
    A ``title`` is shown to analysts, so it is de-identified with the same vault as the text.
    """
    if not participants:
        raise Unprocessable(["body", "participants"], "name at least one participant (study code)", "missing")
    if len(set(participants)) != len(participants):
        raise Unprocessable(["body", "participants"], "participants are listed twice", "duplicate")
    people = _participants(session, study, participants, actor)
    w = _wave(session, study, wave)
    kind = kind or ("interview" if len(people) == 1 else "focus_group")
    if kind == "interview" and len(people) != 1:
        raise Unprocessable(["body", "kind"], "an interview has exactly one participant", "invalid_kind")
    speaker_map = speaker_map or {}
    unknown = [k for k, v in speaker_map.items() if v not in participants]
    if unknown:
        raise Unprocessable(
            ["body", "speaker_map"], "every mapped speaker must map to one of the participants", "unknown_participant"
        )
    parsed = parse_upload(
        data,
        filename,
        fmt,
        participant=participants[0] if kind == "interview" else None,
        wave=wave,
        kind=kind,
        interviewer_labels=interviewer_labels,
    )
    parsed = _relabel(parsed, speaker_map)
    parsed.participants = list(participants)
    if title:
        safe_title = _deidentified_title(session, study, people, title)
    else:
        safe_title = f"{kind.replace('_', ' ')} {', '.join(participants)}" + (f" ({wave})" if wave else "")
    return store_transcript(
        session,
        study,
        actor,
        parsed,
        participants=people,
        wave=w,
        kind=kind,
        title=safe_title[:200],
        filename=filename[:300],
        settings=settings,
    )


def _deidentified_title(session: Session, study: Study, people: list[Participant], title: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rule-based only: no "NER is off" warning for a title
        vault = vault_for(session, people)
        return q.deidentify(title, vault=vault, model=None, terms=study_terms(session, study)).text[:200]


def visible_transcripts(session: Session, study: Study, actor: Actor) -> list[Transcript]:
    """The study's transcripts the actor may see (coordinators: their sites only)."""
    rows = session.exec(select(Transcript).where(Transcript.study_id == study.id).order_by(Transcript.id)).all()
    return [t for t in rows if actor.sees_site(t.site_id)]


def wave_codes(session: Session, study_id: int) -> dict[int, str]:
    return {w.id: w.code for w in session.exec(select(Wave).where(Wave.study_id == study_id)).all()}


def to_library(t: Transcript, waves: dict[int, str]) -> q.Transcript:
    """A stored transcript as the library's :class:`qualitative.Transcript` (id = the row id)."""
    turns = [q.Turn(**u) for u in t.turns]
    return q.Transcript(
        id=str(t.id),
        text=t.text,
        turns=turns,
        participant=t.participant_codes[0] if t.kind == "interview" and t.participant_codes else None,
        wave=waves.get(t.wave_id) if t.wave_id else None,
        participants=list(t.participant_codes),
        kind=t.kind,
        source_format=t.source_format,
    )


def summary(t: Transcript, waves: dict[int, str]) -> dict[str, Any]:
    return {
        "id": t.id,
        "study_id": t.study_id,
        "kind": t.kind,
        "source_format": t.source_format,
        "title": t.title,
        "participants": t.participant_codes,
        "wave": waves.get(t.wave_id) if t.wave_id else None,
        "length": len(t.text),
        "n_turns": len(t.turns),
        "ner": t.ner,
        "created_at": t.created_at,
    }


def read(t: Transcript, waves: dict[int, str]) -> dict[str, Any]:
    return {**summary(t, waves), "text": t.text, "turns": t.turns}


def original(session: Session, t: Transcript) -> dict[str, Any]:
    row = session.get(TranscriptOriginal, t.id)
    if row is None:
        raise NotFound(["path", "transcript_id"], "no original kept for this transcript")
    return {"transcript_id": t.id, "filename": row.filename, "text": row.text, "replacements": row.replacements}


def parse_list(value: str | None, loc: Sequence[str | int]) -> list[str] | None:
    """Comma-separated query values (``coders=a,b``)."""
    if value is None:
        return None
    items = [x.strip() for x in value.split(",") if x.strip()]
    if not items:
        raise Unprocessable(list(loc), "give at least one value", "empty_list")
    return items


def parse_speaker_map(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise Unprocessable(
            ["body", "speaker_map"], "must be a JSON object of label -> study code", "invalid_json"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise Unprocessable(["body", "speaker_map"], "must be a JSON object of label -> study code", "invalid_type")
    return data
