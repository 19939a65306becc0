"""The demo study's process evaluation, loaded through the delivery services (audited like real data).

Generating parameters (documented in README.md, "Process evaluation"):

* each intervention arm has a plan of :data:`PLANNED_SESSIONS` fortnightly sessions
  (face-to-face groups of 90 minutes; online groups of 60 minutes); "received the intervention" is
  at least 6 sessions (group arm) or half the planned sessions (online arm);
* participants of an intervention arm are put in rolling groups of up to :data:`GROUP_SIZE` per
  site and arm, in enrolment order; a group meets every 14 days from 7 days after its first member
  enrolled, and a member joins on their enrolment day; sessions after today stay planned;
* :data:`CANCEL_RATE` of sessions are cancelled (reason drawn from :data:`CANCEL_REASONS`);
* a participant's **engagement** is their latent PAM-13 activation change from baseline to
  12 months in the synthetic cohort, standardised among intervention participants (z); they attend
  each session offered with probability ``logistic(ATTEND_INTERCEPT + ATTEND_PER_SD * z)``, until
  they drop out. Dose therefore varies (0 to 12 sessions) and goes with better outcomes, as in a
  real trial where engaged participants both attend and improve — the association is not a causal
  dose effect;
* an attender is late with probability 0.1 (present 60–80 minutes) or leaves early with probability
  0.05 (30–60 minutes);
* one-to-one calls: Poisson(1 + engagement-scaled) per participant, 10–30 minutes each;
* online-arm participants post in the forum in their first 12 weeks: weekly posts Poisson(1.5 e),
  replies Poisson(2 e), logins Poisson(3 e) with ``e = exp(0.5 z)``;
* one participant switches group at north (membership closed, another opened); a participant who
  withdraws or is lost leaves their group on that day.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session, select

from api.auth.service import Actor
from api.delivery import service, sessions, tidier
from api.delivery.schemas import (
    AttendanceEntry,
    AttendanceIn,
    ContactIn,
    GroupIn,
    MemberIn,
    MemberPatch,
    ModuleIn,
    PlanIn,
    ProgrammeIn,
    SessionIn,
    SessionPatch,
    SupporterIdentifiers,
    SupporterIn,
    TidierIn,
    Trainer,
    TrainingRecordIn,
)
from api.participants.models import Participant
from api.studies.models import Arm, Site, Study

PLANNED_SESSIONS = 12
GROUP_SIZE = 8
CANCEL_RATE = 0.06
CANCEL_REASONS = ("supporter ill", "venue unavailable", "snow", "bank holiday")
ATTEND_INTERCEPT = 0.4
ATTEND_PER_SD = 1.0
SEED = 20261201
ARM_SETUP: dict[str, dict[str, Any]] = {
    "group": {"mode": "face_to_face", "minutes": 90, "kind": "sessions", "threshold": 6},
    "online": {"mode": "online", "minutes": 60, "kind": "proportion", "threshold": 0.5},
}
SUPPORTERS = (  # code, site, arm, condition, years since diagnosis, prior role, gender, age band, name
    ("PS-N1", "north", "group", "type 2 diabetes", 11, "volunteer", "female", "55-64", "Maureen Ellery"),
    ("PS-N2", "north", "group", "type 2 diabetes", 6, "paid_peer_worker", "male", "45-54", "Dev Rathore"),
    ("PS-N3", "north", "online", "type 2 diabetes", 4, "health_coach", "female", "35-44", "Aisha Bello"),
    ("PS-S1", "south", "group", "type 2 diabetes", 15, "educator", "male", "65-74", "Gareth Pryce"),
    ("PS-S2", "south", "group", "type 1 diabetes", 20, "volunteer", "female", "45-54", "Niamh Coyle"),
    ("PS-S3", "south", "online", "type 2 diabetes", 8, "volunteer", "male", "55-64", "Tomasz Nowak"),
)
MODULES = (
    ("listen", "Active listening and empathy", 4.0, "role_play", "emotional support reduces diabetes distress"),
    ("goals", "Goal setting and action plans", 3.0, "didactic", "self-efficacy drives self-management"),
    ("signpost", "Signposting and safeguarding", 2.0, "didactic", "appraisal support and safety"),
    ("practice", "Supervised group facilitation", 6.0, "supervised_practice", "social connection in groups"),
)
TIDIER = {
    "group": {
        "1_name": "Face-to-face peer support groups for type 2 diabetes",
        "2_why": "Emotional, informational and appraisal support from people with lived experience raise "
        "self-efficacy and activation (social support and social learning theories).",
        "3_what_materials": "Facilitator manual; participant workbook; goal-setting cards.",
        "4_what_procedures": "Fortnightly group sessions: check-in, topic discussion, goal setting, review.",
        "5_who_provided": "Trained peer supporters living with diabetes (15 hours of training, certified).",
        "6_how": "Face-to-face, in groups of up to 8, plus phone calls between sessions.",
        "7_where": "Community health centre (north) and diabetes clinic (south) meeting rooms.",
        "8_when_how_much": "12 sessions of 90 minutes every 14 days over about 6 months.",
        "9_tailoring": "Topics ordered by the group's priorities; calls as each participant wishes.",
        "11_how_well_planned": "Attendance registers; independent fidelity ratings of a sample of sessions.",
    },
    "online": {
        "1_name": "Online peer support groups and forum for type 2 diabetes",
        "2_why": "As the face-to-face groups, with access for people who cannot travel.",
        "3_what_materials": "Moderated forum; facilitator manual adapted for video sessions.",
        "4_what_procedures": "Fortnightly video sessions and an always-open moderated forum.",
        "5_who_provided": "Trained peer supporters living with diabetes (15 hours of training, certified).",
        "6_how": "Online: video groups of up to 8 and a forum; messages between sessions.",
        "7_where": "Participants' homes.",
        "8_when_how_much": "12 sessions of 60 minutes every 14 days; forum open throughout.",
        "9_tailoring": "Participants choose forum threads; sessions follow the group's priorities.",
        "11_how_well_planned": "Session registers, forum activity logs, fidelity ratings of recordings.",
    },
}


def _engagement(cohort) -> dict[str, float]:
    lat = cohort.latent.pivot_table(index="participant", columns="wave", values="pam_activation")
    change = (lat["m12"] - lat["baseline"]).dropna()
    arms = cohort.participants.set_index("participant")["arm_kind"]
    change = change[arms.reindex(change.index) == "intervention"]
    z = (change - change.mean()) / change.std(ddof=1)
    return z.to_dict()


def _p(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-(ATTEND_INTERCEPT + ATTEND_PER_SD * z)))


def populate(session: Session, study: Study, cohort, today: date, actor: Actor) -> dict[str, Any]:
    """Plans, TIDieR, supporters, training, groups, sessions, attendance, calls and forum activity."""
    rng = np.random.default_rng(SEED)
    z = _engagement(cohort)
    arms = {a.code: a for a in session.exec(select(Arm).where(Arm.study_id == study.id))}
    for code, cfg in ARM_SETUP.items():
        service.put_plan(
            session,
            study,
            arms[code],
            PlanIn(
                planned_sessions=PLANNED_SESSIONS,
                session_minutes=cfg["minutes"],
                frequency_days=14,
                adherence_kind=cfg["kind"],
                adherence_threshold=cfg["threshold"],
            ),
            actor,
        )
        tidier.add_version(session, arms[code], TidierIn(items=TIDIER[code], note="protocol v1.2"), actor)
    programme = service.create_programme(
        session,
        study,
        ProgrammeIn(
            code="core",
            title="Peer supporter core training",
            trainers=[
                Trainer(role="diabetes specialist nurse", qualification="RN, DSN"),
                Trainer(role="experienced peer trainer", qualification="accredited peer trainer"),
            ],
            modules=[
                ModuleIn(code=c, title=t, hours=h, format=f, theory=th, objectives=[t.lower()])
                for c, t, h, f, th in MODULES
            ],
        ),
        actor,
    )
    modules = {m.code: m.id for m in service.programme_read(session, programme).modules}
    start = min(p.enrolled_on for p in session.exec(select(Participant).where(Participant.study_id == study.id)))
    supporters: dict[tuple[str, str], list[int]] = {}
    for code, site, arm, cond, years, role, gender, age, name in SUPPORTERS:
        s = service.create_supporter(
            session,
            study,
            SupporterIn(
                code=code,
                site=site,
                arm=arm,
                condition=cond,
                years_since_diagnosis=years,
                prior_role=role,
                gender=gender,
                age_band=age,
                start_date=start - timedelta(days=60),
                status="active",
                identifiers=SupporterIdentifiers(name=name, email=f"{code.lower()}@supporters.example.org"),
            ),
            actor,
        )
        supporters.setdefault((site, arm), []).append(s.id)
        day = start - timedelta(days=50)
        for mcode, _t, hours, _f, _th in MODULES:
            service.add_training_record(
                session, s, TrainingRecordIn(kind="module", module_id=modules[mcode], on_date=day, hours=hours), actor
            )
            day += timedelta(days=3)
        service.add_training_record(
            session,
            s,
            TrainingRecordIn(kind="assessment", on_date=day, score=float(rng.integers(70, 96)), assessor="trainer"),
            actor,
        )
        service.add_training_record(session, s, TrainingRecordIn(kind="certification", on_date=day), actor)
        service.add_training_record(
            session,
            s,
            TrainingRecordIn(
                kind="refresher", module_id=modules["signpost"], on_date=start + timedelta(days=120), hours=1.5
            ),
            actor,
        )
        for k in range(int(rng.integers(3, 7))):
            service.add_training_record(
                session,
                s,
                TrainingRecordIn(kind="supervision", on_date=start + timedelta(days=30 * (k + 1)), hours=1.0),
                actor,
            )

    rows = cohort.participants.set_index("participant")
    people = session.exec(
        select(Participant).where(Participant.study_id == study.id).order_by(Participant.enrolled_on, Participant.id)
    ).all()
    counts = {"groups": 0, "sessions": 0, "cancelled": 0, "attendance": 0, "calls": 0, "forum_weeks": 0}
    site_codes = {v: k for k, v in service.codes(session, Site, study.id).items()}
    arm_by_id = {a.id: c for c, a in arms.items()}
    switched = False
    forum_lines = ["study_code,week_start,posts,replies,logins"]
    for (site, arm), sup_ids in supporters.items():
        cfg = ARM_SETUP[arm]
        minutes = int(cfg["minutes"])
        members = [p for p in people if p.site_id == site_codes[site] and arm_by_id.get(p.arm_id or 0) == arm]
        built = []
        for gi in range(0, len(members), GROUP_SIZE):
            chunk = members[gi : gi + GROUP_SIZE]
            n = gi // GROUP_SIZE + 1
            g = sessions.create_group(
                session,
                study,
                GroupIn(
                    code=f"{site[0].upper()}{arm[0].upper()}{n}",
                    site=site,
                    arm=arm,
                    name=f"{site.title()} {'face-to-face' if arm == 'group' else 'online'} group {n}",
                    mode=cfg["mode"],
                    supporter_ids=[sup_ids[(n - 1) % len(sup_ids)]],
                ),
                actor,
            )
            counts["groups"] += 1
            for p in chunk:
                sessions.add_member(session, g, MemberIn(participant_id=p.id, joined_on=p.enrolled_on), actor)
            built.append((g, list(chunk)))
        if not switched and site == "north" and arm == "group" and len(built) >= 2:
            # the last member of the first group moves to the second group when it starts
            (g1, c1), (g2, c2) = built[0], built[1]
            mover, day = c1[-1], c2[0].enrolled_on + timedelta(days=7)
            m = next(x for x in sessions.group_read(session, g1).members if x.participant_id == mover.id)
            sessions.close_member(session, g1, m.id, MemberPatch(left_on=day - timedelta(days=1)), actor)
            sessions.add_member(session, g2, MemberIn(participant_id=mover.id, joined_on=day), actor)
            c2.append(mover)
            switched = True
        enrolled_on = {p.study_code: p.enrolled_on for p in members}
        for g, _chunk in built:
            # a participant who withdrew or was lost leaves their group that day (offered nothing after)
            for m in sessions.group_read(session, g).members:
                row = rows.loc[m.study_code]
                if m.left_on is None and not math.isnan(row.status_days):
                    left = enrolled_on[m.study_code] + timedelta(days=int(row.status_days))
                    if m.joined_on <= left <= today:
                        sessions.close_member(session, g, m.id, MemberPatch(left_on=left), actor)
        for g, chunk in built:
            first = chunk[0].enrolled_on + timedelta(days=7)
            for k in range(PLANNED_SESSIONS):
                day = first + timedelta(days=14 * k)
                ds = sessions.create_session(
                    session,
                    study,
                    SessionIn(
                        group_id=g.id,
                        supporter_id=g.supporter_ids[0],
                        number=k + 1,
                        planned_date=day,
                        topic=("check-in and goals", "eating well", "activity", "medicines", "stress", "review")[k % 6],
                        curriculum_module=f"S{k + 1}",
                    ),
                    actor,
                )
                counts["sessions"] += 1
                if day > today:
                    continue
                if rng.random() < CANCEL_RATE:
                    reason = str(rng.choice(CANCEL_REASONS))
                    sessions.update_session(session, ds, SessionPatch(cancel_reason=reason), actor)
                    counts["cancelled"] += 1
                    continue
                patch = SessionPatch(delivered_on=day, duration_minutes=minutes)
                sessions.update_session(session, ds, patch, actor)
                register = []
                for p in chunk:
                    row = rows.loc[p.study_code]
                    gone = not math.isnan(row.status_days) and day > p.enrolled_on + timedelta(days=row.status_days)
                    if gone or not sessions.member_on(session, g.id, p.id, day):
                        continue
                    if rng.random() < _p(z.get(p.study_code, 0.0)):
                        u = rng.random()
                        if u < 0.1:
                            present = int(rng.integers(60, 81)) * minutes // 90
                            register.append(AttendanceEntry(participant_id=p.id, status="late", minutes=present))
                        elif u < 0.15:
                            present = int(rng.integers(30, 61)) * minutes // 90
                            register.append(AttendanceEntry(participant_id=p.id, status="left_early", minutes=present))
                        else:
                            register.append(AttendanceEntry(participant_id=p.id, status="attended"))
                    else:
                        status = "excused" if rng.random() < 0.3 else "absent"
                        register.append(AttendanceEntry(participant_id=p.id, status=status))
                if register:
                    sessions.record_attendance(session, ds, AttendanceIn(records=register), actor)
                    counts["attendance"] += len(register)
        for p in members:
            e = z.get(p.study_code, 0.0)
            for _ in range(int(rng.poisson(1.0 + max(e, -0.9)))):
                on = p.enrolled_on + timedelta(days=int(rng.integers(3, 170)))
                if on > today:
                    continue
                sessions.add_contact(
                    session,
                    p,
                    ContactIn(
                        kind="call", on_date=on, duration_minutes=int(rng.integers(10, 31)), supporter_id=sup_ids[0]
                    ),
                    actor,
                )
                counts["calls"] += 1
            if arm == "online":
                scale = math.exp(0.5 * e)
                monday = p.enrolled_on - timedelta(days=p.enrolled_on.weekday())
                for w in range(12):
                    week = monday + timedelta(days=7 * w)
                    if week > today:
                        break
                    forum_lines.append(
                        f"{p.study_code},{week.isoformat()},{rng.poisson(1.5 * scale)},"
                        f"{rng.poisson(2 * scale)},{rng.poisson(3 * scale)}"
                    )
                    counts["forum_weeks"] += 1
    if len(forum_lines) > 1:
        sessions.import_forum(session, study, "\n".join(forum_lines) + "\n", actor)
    counts["switched_group"] = int(switched)
    return counts
