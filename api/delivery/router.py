"""Delivery routes: plans and TIDieR descriptions per arm, peer supporters and their training,
groups and members, sessions and attendance, one-to-one contacts, forum activity, dose.

Records that carry calendar dates about people (supporters, sessions, attendance, contacts) are
read by staff; analysts read them de-identified through the ``delivery_*`` export shapes, and read
dose here (day offsets, no calendar dates)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Path, Query, UploadFile
from sqlmodel import Session

from api.auth.dependencies import authenticated, authorize
from api.auth.policy import ADMIN, READERS, SESSION_READERS, STAFF
from api.auth.service import Actor
from api.db import end_read, get_session
from api.delivery import service, sessions, tidier
from api.delivery.dose import participant_dose
from api.delivery.models import DeliverySession, PeerGroup, PeerSupporter
from api.delivery.schemas import (
    AttendanceIn,
    AttendanceRead,
    ContactIn,
    ContactRead,
    DoseRow,
    ForumImportRead,
    GroupIn,
    GroupRead,
    MemberIn,
    MemberPatch,
    MemberRead,
    PlanIn,
    PlanRead,
    ProgrammeIn,
    ProgrammeRead,
    SessionIn,
    SessionPatch,
    SessionRead,
    SupporterIn,
    SupporterPatch,
    SupporterRead,
    TidierIn,
    TidierRead,
    TrainingRecordIn,
    TrainingRecordRead,
)
from api.inputguard import decode_upload
from api.participants.dependencies import valid_participant
from api.participants.models import Participant
from api.studies.dependencies import valid_study
from api.studies.models import Arm, Study

router = APIRouter(tags=["delivery"])


def _id():
    return Path(ge=1, le=2**31 - 1)


def valid_arm(
    arm_code: str = Path(max_length=40),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
) -> Arm:
    """The arm of the path (by code); 404 when the study has none with this code."""
    from api.errors import NotFound

    try:
        arm = service.arm_by_code(session, study.id, arm_code)
    except Exception:
        raise NotFound(["path", "arm_code"], "arm not found", "not_found") from None
    end_read(session)
    return arm


def valid_supporter(
    supporter_id: int = _id(), actor: Actor = Depends(authenticated), session: Session = Depends(get_session)
) -> PeerSupporter:
    s = service.get_supporter(session, supporter_id, actor)
    end_read(session)
    return s


def valid_group(
    group_id: int = _id(), actor: Actor = Depends(authenticated), session: Session = Depends(get_session)
) -> PeerGroup:
    g = sessions.get_group(session, group_id, actor)
    end_read(session)
    return g


def valid_delivery_session(
    session_id: int = _id(), actor: Actor = Depends(authenticated), session: Session = Depends(get_session)
) -> DeliverySession:
    s = sessions.get_session_row(session, session_id, actor)
    end_read(session)
    return s


# ---- plan and TIDieR per arm --------------------------------------------------------------------


@router.get("/studies/{study_id}/arms/{arm_code}/delivery-plan", response_model=PlanRead)
def get_plan(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    arm: Arm = Depends(valid_arm),
    session: Session = Depends(get_session),
):
    """The arm's planned dose and adherence definition (404 until set)."""
    out = service.get_plan(session, study, arm)
    end_read(session)
    return out


@router.put("/studies/{study_id}/arms/{arm_code}/delivery-plan", response_model=PlanRead)
def put_plan(
    body: PlanIn,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    arm: Arm = Depends(valid_arm),
    session: Session = Depends(get_session),
):
    """Set the arm's planned sessions, their length and frequency, and what counts as having
    received the intervention (``sessions``, ``proportion`` or ``minutes`` at least ``threshold``)."""
    out = service.put_plan(session, study, arm, body, actor)
    session.commit()
    return out


@router.get("/studies/{study_id}/arms/{arm_code}/tidier", response_model=TidierRead)
def get_tidier(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    arm: Arm = Depends(valid_arm),
    session: Session = Depends(get_session),
    version: int | None = Query(None, ge=1, le=100000),
):
    """The arm's 12-item TIDieR checklist: the latest (or given) version of the typed items, items
    10 and 12 generated from the records."""
    out = tidier.checklist(session, arm, version)
    end_read(session)
    return out


@router.post("/studies/{study_id}/arms/{arm_code}/tidier", response_model=TidierRead, status_code=201)
def post_tidier(
    body: TidierIn,
    actor: Actor = Depends(authorize(*ADMIN)),
    study: Study = Depends(valid_study),
    arm: Arm = Depends(valid_arm),
    session: Session = Depends(get_session),
):
    """A new version of the arm's description (items 1–9 and 11; 1 is required)."""
    d = tidier.add_version(session, arm, body, actor)
    session.commit()
    return tidier.checklist(session, arm, d.version)


@router.get("/studies/{study_id}/arms/{arm_code}/tidier/versions")
def get_tidier_versions(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    arm: Arm = Depends(valid_arm),
    session: Session = Depends(get_session),
) -> list[dict]:
    """Every version of the arm's typed items, oldest first."""
    out = [
        {"version": d.version, "created_at": d.created_at, "note": d.note, "items": d.items}
        for d in tidier.versions(session, arm)
    ]
    end_read(session)
    return out


# ---- supporters and training --------------------------------------------------------------------


@router.post("/studies/{study_id}/delivery/supporters", response_model=SupporterRead, status_code=201)
def post_supporter(
    body: SupporterIn,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Add a peer supporter (identifiers go to the vault, never to analysts)."""
    s = service.create_supporter(session, study, body, actor)
    session.commit()
    return service.to_read(session, [s], actor)[0]


@router.get("/studies/{study_id}/delivery/supporters", response_model=list[SupporterRead])
def get_supporters(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    site: str | None = Query(None, max_length=40),
):
    """The roster (coordinators: their sites), with training hours and certification."""
    out = service.to_read(session, service.list_supporters(session, study, actor, site), actor)
    end_read(session)
    return out


@router.get("/delivery/supporters/{supporter_id}", response_model=SupporterRead)
def get_supporter(
    actor: Actor = Depends(authorize(*STAFF)),
    supporter: PeerSupporter = Depends(valid_supporter),
    session: Session = Depends(get_session),
):
    out = service.to_read(session, [supporter], actor)[0]
    end_read(session)
    return out


@router.patch("/delivery/supporters/{supporter_id}", response_model=SupporterRead)
def patch_supporter(
    body: SupporterPatch,
    actor: Actor = Depends(authorize(*STAFF)),
    supporter: PeerSupporter = Depends(valid_supporter),
    session: Session = Depends(get_session),
):
    """Change profile, status (with a reason), end date or identifiers (audited)."""
    s = service.update_supporter(session, supporter, body, actor)
    session.commit()
    return service.to_read(session, [s], actor)[0]


@router.post("/delivery/supporters/{supporter_id}/training", response_model=TrainingRecordRead, status_code=201)
def post_training(
    body: TrainingRecordIn,
    actor: Actor = Depends(authorize(*STAFF)),
    supporter: PeerSupporter = Depends(valid_supporter),
    session: Session = Depends(get_session),
):
    """Record a module attended, a refresher, an assessment, a certification or supervision."""
    r = service.add_training_record(session, supporter, body, actor)
    session.commit()
    return TrainingRecordRead(**r.model_dump(exclude={"study_id", "created_at"}))


@router.get("/delivery/supporters/{supporter_id}/training", response_model=list[TrainingRecordRead])
def get_training(
    actor: Actor = Depends(authorize(*STAFF)),
    supporter: PeerSupporter = Depends(valid_supporter),
    session: Session = Depends(get_session),
):
    out = service.list_training(session, supporter)
    end_read(session)
    return out


@router.post("/studies/{study_id}/delivery/training-programmes", response_model=ProgrammeRead, status_code=201)
def post_programme(
    body: ProgrammeIn,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """A training programme and its modules (objectives, hours, format, materials, theory)."""
    p = service.create_programme(session, study, body, actor)
    session.commit()
    return service.programme_read(session, p)


@router.get("/studies/{study_id}/delivery/training-programmes", response_model=list[ProgrammeRead])
def get_programmes(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = service.list_programmes(session, study)
    end_read(session)
    return out


# ---- groups -------------------------------------------------------------------------------------


@router.post("/studies/{study_id}/delivery/groups", response_model=GroupRead, status_code=201)
def post_group(
    body: GroupIn,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    g = sessions.create_group(session, study, body, actor)
    session.commit()
    return sessions.group_read(session, g)


@router.get("/studies/{study_id}/delivery/groups", response_model=list[GroupRead])
def get_groups(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = sessions.list_groups(session, study, actor)
    end_read(session)
    return out


@router.get("/delivery/groups/{group_id}", response_model=GroupRead)
def get_group(
    actor: Actor = Depends(authorize(*STAFF)),
    group: PeerGroup = Depends(valid_group),
    session: Session = Depends(get_session),
):
    out = sessions.group_read(session, group)
    end_read(session)
    return out


@router.post("/delivery/groups/{group_id}/members", response_model=MemberRead, status_code=201)
def post_member(
    body: MemberIn,
    actor: Actor = Depends(authorize(*STAFF)),
    group: PeerGroup = Depends(valid_group),
    session: Session = Depends(get_session),
):
    """Add a participant from ``joined_on`` (one group at a time: close the other membership first)."""
    m = sessions.add_member(session, group, body, actor)
    session.commit()
    return next(x for x in sessions.group_read(session, group).members if x.id == m.id)


@router.patch("/delivery/groups/{group_id}/members/{member_id}", response_model=MemberRead)
def patch_member(
    body: MemberPatch,
    member_id: int = _id(),
    actor: Actor = Depends(authorize(*STAFF)),
    group: PeerGroup = Depends(valid_group),
    session: Session = Depends(get_session),
):
    """Close a membership (``left_on``), e.g. when a participant switches group."""
    m = sessions.close_member(session, group, member_id, body, actor)
    session.commit()
    return next(x for x in sessions.group_read(session, group).members if x.id == m.id)


# ---- sessions and attendance --------------------------------------------------------------------


@router.post("/studies/{study_id}/delivery/sessions", response_model=SessionRead, status_code=201)
def post_session(
    body: SessionIn,
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Plan a session of a group (or record one delivered: ``delivered_on`` and ``duration_minutes``)."""
    s = sessions.create_session(session, study, body, actor)
    session.commit()
    return sessions.session_reads(session, [s])[0]


@router.get("/studies/{study_id}/delivery/sessions", response_model=list[SessionRead])
def get_sessions(
    actor: Actor = Depends(authorize(*SESSION_READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    group_id: int | None = Query(None, ge=1, le=2**31 - 1),
    status: Literal["planned", "delivered", "cancelled"] | None = None,
):
    out = sessions.list_sessions(session, study, actor, group_id, status)
    end_read(session)
    return out


@router.get("/delivery/sessions/{session_id}", response_model=SessionRead)
def get_delivery_session(
    actor: Actor = Depends(authorize(*SESSION_READERS)),
    row: DeliverySession = Depends(valid_delivery_session),
    session: Session = Depends(get_session),
):
    out = sessions.session_reads(session, [row])[0]
    end_read(session)
    return out


@router.patch("/delivery/sessions/{session_id}", response_model=SessionRead)
def patch_delivery_session(
    body: SessionPatch,
    actor: Actor = Depends(authorize(*STAFF)),
    row: DeliverySession = Depends(valid_delivery_session),
    session: Session = Depends(get_session),
):
    """Record delivery (``delivered_on``, ``duration_minutes``), correct details, or cancel
    (``cancel_reason``)."""
    s = sessions.update_session(session, row, body, actor)
    session.commit()
    return sessions.session_reads(session, [s])[0]


@router.put("/delivery/sessions/{session_id}/attendance")
def put_attendance(
    body: AttendanceIn,
    actor: Actor = Depends(authorize(*STAFF)),
    row: DeliverySession = Depends(valid_delivery_session),
    session: Session = Depends(get_session),
) -> dict[str, int]:
    """The session's register: attended, late, left_early (with ``minutes`` present), excused, absent."""
    n = sessions.record_attendance(session, row, body, actor)
    session.commit()
    return {"recorded": n}


@router.get("/delivery/sessions/{session_id}/attendance", response_model=list[AttendanceRead])
def get_attendance(
    actor: Actor = Depends(authorize(*STAFF)),
    row: DeliverySession = Depends(valid_delivery_session),
    session: Session = Depends(get_session),
):
    out = sessions.list_attendance(session, row)
    end_read(session)
    return out


# ---- contacts, forum, dose ----------------------------------------------------------------------


@router.post("/participants/{participant_id}/peer-contacts", response_model=ContactRead, status_code=201)
def post_contact(
    body: ContactIn,
    actor: Actor = Depends(authorize(*STAFF)),
    participant: Participant = Depends(valid_participant),
    session: Session = Depends(get_session),
):
    """A one-to-one contact with a peer supporter (call, message, home visit, video) and its minutes."""
    c = sessions.add_contact(session, participant, body, actor)
    session.commit()
    return ContactRead(study_code=participant.study_code, **c.model_dump())


@router.get("/studies/{study_id}/delivery/contacts", response_model=list[ContactRead])
def get_contacts(
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    out = sessions.list_contacts(session, study, actor)
    end_read(session)
    return out


@router.post("/studies/{study_id}/delivery/forum-activity", response_model=ForumImportRead)
def post_forum(
    file: UploadFile = File(..., description="CSV: study_code, week_start (a Monday), posts, replies, logins"),
    actor: Actor = Depends(authorize(*STAFF)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
):
    """Import weekly forum activity; all or nothing, a bad cell is a 422 naming line and column."""
    text = decode_upload(file.file.read(), ["body", "file"])
    out = sessions.import_forum(session, study, text, actor)
    session.commit()
    return out


@router.get("/studies/{study_id}/delivery/dose", response_model=list[DoseRow])
def get_dose(
    actor: Actor = Depends(authorize(*READERS)),
    study: Study = Depends(valid_study),
    session: Session = Depends(get_session),
    by: Literal["participant", "wave"] = "participant",
):
    """Dose and adherence per participant (``by=wave``: per wave interval), derived from sessions,
    attendance, contacts and forum activity; de-identified readers get day offsets only."""
    out = participant_dose(session, study.id, actor, by_wave=by == "wave")
    end_read(session)
    return out
