"""Demo interviews: two participants of the face-to-face group arm talk about the programme.

They are uploaded through the same service as real transcripts, so the demo shows
de-identification at work (names the study knows, names no list knows, nicknames, phones, an NHS
number, an address, an age over 89) while decoys ("Hope", "May", "Will") and clinical terms stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

from sqlmodel import Session, select

import qualitative as q
from api.auth.service import Actor
from api.participants.models import Participant
from api.studies.models import Study, Wave
from api.transcripts import codebook, coding, service

INTERVIEWS = (
    (
        "m3",
        "Interviewer: How did you come to the group?\n"
        "{code}: The nurse at the North community health centre, Helen Marsh, put my name down. My HbA1c "
        "was 71 and my GP said try it. Hope you don't mind me rambling.\n"
        "Interviewer: Not at all. Who did you meet?\n"
        "{code}: Bernadette runs it. Bernie, everyone calls her. Bernadette Kowalczyk rang me on 07700 900461 "
        "and we met at the café on 14 Wharf Street. My husband Terry came twice. I felt less alone.\n"
        "Interviewer: What changed?\n"
        "{code}: I walk now. Terry walks with me. I'm less lonely since the group, and I miss people when a "
        "session is cancelled. Will power was never my strong point.\n",
    ),
    (
        "m6",
        "Interviewer: How have the sessions been?\n"
        "{code}: I'm 93 this year and I didn't think I'd go out again. Morag from the group picks me up from "
        "27 Burnley Road. My NHS number is 943 476 5919, they asked for it at the South diabetes clinic.\n"
        "Interviewer: Anything hard?\n"
        "{code}: The bus. In May it was better. Morag says I should text her on 0113 496 0782 when I'm low. "
        "It's the COPD as well as the sugar, so I'm careful. Grace before meals, as my mother said.\n",
    ),
)


# Codes, and the phrases two coders code with them (each coder's span differs a little, so the
# agreement routes have something to measure).
CODES = (
    ("Benefits", "benefits", None, False, ()),
    ("Reduced isolation", "reduced_isolation", "benefits", True, ("lonely", "alone", "less alone")),
    ("Physical activity", "physical_activity", "benefits", True, ("walk", "walking")),
    ("Barriers", "barriers", None, False, ()),
    ("Travel", "travel", "barriers", True, ("bus", "drive")),
)
CODED = (
    ("reduced_isolation", "I felt less alone.", "I felt less alone"),
    ("physical_activity", "I walk now.", "I walk now"),
    ("reduced_isolation", "I'm less lonely since the group", "I'm less lonely since the group, and I miss people"),
    ("travel", "The bus. In May it was better.", "The bus."),
)


def load(session: Session, study: Study, actor: Actor, participants: Sequence[Participant]) -> int:
    """Upload one interview per participant given (at most two), build a small codebook, code the
    interviews as two coders would, and record one meta-inference; returns the interviews stored."""
    settings = SimpleNamespace(spacy_model="none")  # the demo shows the rules alone, as served
    waves = {w.code: w for w in session.exec(select(Wave).where(Wave.study_id == study.id)).all()}
    stored = 0
    for p, (wave, template) in zip(participants, INTERVIEWS, strict=False):
        parsed = q.parse_text(template.format(code=p.study_code), id="demo", participant=p.study_code, wave=wave)
        parsed.participants = [p.study_code]
        service.store_transcript(
            session,
            study,
            actor,
            parsed,
            participants=[p],
            wave=waves.get(wave),
            kind="interview",
            title=f"interview {p.study_code} ({wave})",
            filename=f"{p.study_code.lower()}-{wave}.txt",
            settings=settings,
        )
        stored += 1
    if stored:
        _code(session, study, actor)
    return stored


def _code(session: Session, study: Study, actor: Actor) -> None:
    from api.transcripts.meta import set_inference
    from api.transcripts.models import Transcript
    from api.transcripts.schemas import CodeCreate, CodingCreate, MetaInferenceWrite

    ids: dict[str, int] = {}
    for name, key, parent, codable, keywords in CODES:
        body = CodeCreate(name=name, key=key, parent_id=ids.get(parent) if parent else None, codable=codable,
                          keywords=list(keywords))  # fmt: skip
        ids[key] = codebook.create_code(session, study, actor, body).id
    rows = session.exec(select(Transcript).where(Transcript.study_id == study.id)).all()
    for key, first, second in CODED:
        for coder, phrase in (("coder.a@demo.peerlens.org", first), ("coder.b@demo.peerlens.org", second)):
            for t in rows:
                at = t.text.find(phrase)
                if at >= 0:
                    span = CodingCreate(code_id=ids[key], start=at, end=at + len(phrase))
                    coding.add_coding(session, t, actor, span, coder=coder)
    set_inference(
        session,
        study,
        actor,
        MetaInferenceWrite(
            theme="reduced_isolation",
            scale="pam13_activation",
            inference="expansion",
            note="Interviews say what the activation gain felt like: company on walks, someone to ring.",
        ),
    )
