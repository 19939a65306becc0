"""The demo study: a synthetic peer-support trial loaded through the same services as real data.

Answers come from :func:`analysis.synthetic.simulate_cohort`, whose generating parameters are
documented there (steeper PAM-13 and self-efficacy rise in the peer-support arms, dropout raised by
baseline social isolation); the parameters are stored with the study (``power_assumptions`` holds
the design's, the generating ones are printed). Loading is idempotent: a second run only issues
fresh tokens.

Examples
--------
>>> result = load_demo("sqlite:///./peerlens.db", n_participants=60)  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from api.studies import dates

DEMO_TITLE = "Peerlens demo: peer support for people living with type 2 diabetes"
DEMO_TZ = "Europe/London"
ADMIN_EMAIL = "admin@demo.peerlens.org"
COORDINATOR_EMAIL = "coordinator.north@demo.peerlens.org"
ANALYST_EMAIL = "analyst@demo.peerlens.org"
EVALUATOR_EMAIL = "evaluator@demo.peerlens.org"
# A second independent rater (no token printed): some sessions are rated by both.
SECOND_EVALUATOR_EMAIL = "evaluator.two@demo.peerlens.org"
SITES = (("north", "North community health centre"), ("south", "South diabetes clinic"))
SITE_CONTACTS = (
    ("north", "0161 496 0123", "Monday to Friday, 9 am to 5 pm"),
    ("south", "0117 496 0456", "Monday to Thursday, 10 am to 4 pm"),
)
ARMS = (
    ("group", "Face-to-face peer support group", "intervention"),
    ("online", "Online peer support forum", "intervention"),
    ("usual_care", "Usual care", "control"),
)
DEMO_USERS: tuple[tuple[str, str, list[str]], ...] = (
    ("admin", ADMIN_EMAIL, []),
    ("coordinator", COORDINATOR_EMAIL, ["north"]),
    ("analyst", ANALYST_EMAIL, []),
    ("evaluator", EVALUATOR_EMAIL, []),
)
# (code, offset days, window before, window after)
WAVES = (("baseline", 0, 0, 14), ("m1", 30, 7, 7), ("m3", 90, 14, 14), ("m6", 180, 21, 21), ("m12", 365, 30, 30))
BASELINE_INSTRUMENTS = ("context", "pam13", "semcd6", "phq9", "gad7", "lsns6")
FOLLOWUP_INSTRUMENTS = ("pam13", "semcd6", "phq9", "gad7", "lsns6")
# The cohort was recruited from 420 to 300 days ago, so the first participants have reached m12.
RECRUITMENT_ENDED_DAYS_AGO = 300


@dataclass
class DemoResult:
    study_id: int
    created: bool
    participants: int
    responses: int
    tokens: dict[str, str] = field(default_factory=dict)
    console: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (email, fresh console password)
    params: dict | None = None
    alerts: dict[str, int] | None = None
    adverse_events: int = 0
    context: dict[str, int] | None = None
    realist: dict | None = None
    screened: int = 0
    transcripts: int = 0
    delivery: dict | None = None
    fidelity: dict | None = None
    plan_hash: str | None = None
    partial: str | None = None  # "P-…/wave/instrument" of the demo's one partial response
    base_url: str = "http://127.0.0.1:8000"

    def summary(self) -> str:
        lines = [
            f"demo study id {self.study_id}: "
            + (
                f"loaded {self.participants} participants and {self.responses} responses"
                if self.created
                else "already loaded (nothing changed)"
            )
        ]
        if self.partial:
            lines.append(f"partial response (stopped after 4 of 9 PHQ-9 items, resumable): {self.partial}")
        if self.alerts is not None:
            lines.append(
                f"safety: {sum(self.alerts.values())} alerts ({self.alerts['open']} open, "
                f"{self.alerts['acknowledged']} acknowledged, {self.alerts['resolved']} resolved), "
                f"{self.adverse_events} adverse events"
            )
        if self.context is not None:
            lines.append(
                f"what works for whom: {self.context['context_records']} context records, "
                f"{self.context['cmos']} CMO configurations, {self.context['goals']} personal goals "
                "(GET /studies/{id}/realist-table)"
            )
        if self.realist is not None:
            t = self.realist["truth"]
            lines.append(
                f"realist demo study id {self.realist['study_id']} ({self.realist['participants']} participants): "
                f"true moderation {t['moderation']}, indirect effect {t['indirect']}, CACE {t['cace']} "
                "(analysis.realist_sim)"
            )
        if self.screened:
            lines.append(
                f"screening log: {self.screened} people assessed; trial report: peerlens report {self.study_id}"
            )
        if self.transcripts:
            lines.append(
                f"transcripts: {self.transcripts} de-identified interviews (GET /studies/{self.study_id}/transcripts)"
            )
        if self.delivery is not None:
            d = self.delivery
            lines.append(
                f"process evaluation: {d['groups']} groups, {d['sessions']} sessions ({d['cancelled']} cancelled), "
                f"{d['attendance']} attendance records, {d['calls']} calls, {d['forum_weeks']} forum weeks "
                "(generating parameters: api.delivery.demo)"
            )
        if self.fidelity is not None:
            f = self.fidelity
            lines.append(
                f"fidelity: {f['ratings']} ratings by 2 evaluators, {f['adaptations']} adaptations "
                "(generating parameters: api.fidelity.demo)"
            )
        if self.plan_hash:
            lines.append(
                f"analysis plan: version 1 locked, sha256 {self.plan_hash}; the study is blinded "
                "(analysts read arms as A, B, C until `peerlens unblind`)"
            )
        if self.params:
            keys = (
                "seed",
                "pam_slope",
                "pam_slope_isolated_extra",
                "semcd_slope",
                "phq_slope",
                "dropout_hazard",
                "dropout_hr_isolated",
            )
            lines.append(
                "generating parameters (analysis.synthetic.simulate_cohort): "
                + ", ".join(f"{k}={self.params[k]}" for k in keys if k in self.params)
            )
        for role, token in self.tokens.items():
            lines.append(f"{role:<12} token: {token}")
        lines.append(f"try: curl -H 'Authorization: Bearer <admin token>' {self.base_url.rstrip('/')}/studies")
        if self.console:
            lines.append(f"staff console: {self.base_url.rstrip('/')}/console (fresh passwords each run)")
            for role, (email, password) in self.console.items():
                lines.append(f"{role:<12} sign in: {email} / {password}")
        lines.append(
            f"      curl -H 'Authorization: Bearer <analyst token>' "
            f"{self.base_url.rstrip('/')}/studies/{self.study_id}/participant-flow   # CONSORT counts per arm"
        )
        lines.append(
            f"      curl -H 'Authorization: Bearer <admin token>' -o study.xml "
            f"{self.base_url.rstrip('/')}/studies/{self.study_id}/exports/odm   # the study as CDISC ODM 1.3.2"
        )
        return "\n".join(lines)


def load_demo(
    database_url: str,
    n_participants: int = 60,
    seed: int = 20261125,
    today: date | None = None,
    base_url: str = "http://127.0.0.1:8000",
    realist: bool = False,
) -> DemoResult:
    """Create the demo study (once) and fresh tokens for the demo users; the database must be migrated.

    ``realist`` also creates the realist-trial demo study (:mod:`api.context.realist_demo`) once.
    """
    from api.db import make_engine

    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with Session(engine, expire_on_commit=False) as session:
            result = _load(session, n_participants, seed, today)
            result.base_url = base_url
            if realist:
                from api.auth.service import Actor
                from api.context import realist_demo

                tz = ZoneInfo(DEMO_TZ)
                result.realist = realist_demo.load(
                    session, today or datetime.now(tz).date(), seed, Actor.system(source="system")
                )
            session.commit()
            return result
    finally:
        engine.dispose()


def _load(session: Session, n: int, seed: int, today: date | None) -> DemoResult:
    import instruments
    from api import demo_clinical as clinical_demo
    from api.auth.models import User
    from api.auth.service import Actor
    from api.participants import corrections
    from api.participants import service as participants
    from api.reports import demo as report_demo
    from api.responses.service import submit_response
    from api.safety import demo as safety_demo
    from api.studies import service as studies
    from api.studies.models import Study
    from api.studies.schemas import ArmCreate, SiteContactIn, SiteCreate, StudyCreate, WaveCreate
    from api.users import create_with_token, new_token_for

    actor = Actor.system(source="system")
    study = session.exec(select(Study).where(Study.title == DEMO_TITLE)).first()
    result = DemoResult(study_id=0, created=study is None, participants=0, responses=0)
    if study is None:
        from analysis.synthetic import simulate_cohort

        tz = ZoneInfo(DEMO_TZ)
        today = today or datetime.now(tz).date()
        cohort = simulate_cohort(
            n_participants=n,
            seed=seed,
            sites=[s for s, _ in SITES],
            arms=[(a, k) for a, _, k in ARMS],
            waves=[(w, o) for w, o, _, _ in WAVES],
        )
        study = studies.create_study(
            session,
            StudyCreate(
                title=DEMO_TITLE,
                public_title="Living Well Together",
                design="rct",
                blinding="outcome_assessor",
                planned_sample_size=n,
                power_assumptions={
                    "outcome": "PAM-13 activation at 12 months",
                    "alpha": 0.05,
                    "power": 0.8,
                    "difference": 5.0,
                    "sd": 12.0,
                    "attrition": 0.2,
                    "synthetic_cohort_seed": seed,
                },
                time_zone=DEMO_TZ,
                status="follow_up",
                randomisation_seed=f"demo-{seed}",
            ),
            actor,
        )
        sites = {
            code: studies.create_site(session, study, SiteCreate(code=code, name=name), actor) for code, name in SITES
        }
        # What participants see at the foot of every form page (fictional UK numbers, Ofcom's drama range).
        for code, phone, hours in SITE_CONTACTS:
            studies.set_site_contact(session, study, code, SiteContactIn(phone=phone, hours=hours), actor)
        for code, name, kind in ARMS:
            studies.create_arm(session, study, ArmCreate(code=code, name=name, kind=kind), actor)
        known = set(instruments.codes())
        for code, offset, before, after in WAVES:
            wanted = (BASELINE_INSTRUMENTS if offset == 0 else FOLLOWUP_INSTRUMENTS) + clinical_demo.for_wave(code)
            studies.create_wave(
                session,
                study,
                WaveCreate(
                    code=code,
                    offset_days=offset,
                    window_before_days=before,
                    window_after_days=after,
                    instruments=[i for i in wanted if i in known],
                ),
                actor,
            )
        wave_instruments = {
            code: set(BASELINE_INSTRUMENTS if o == 0 else FOLLOWUP_INSTRUMENTS) & known for code, o, _, _ in WAVES
        }
        # The demo users first: they are the study's safety contacts and its principal investigator.
        for role, email, site in DEMO_USERS:
            if session.exec(select(User.id).where(User.email == email)).first() is None:
                scoped = [f"{study.id}:{s}" for s in site]
                result.tokens[role] = create_with_token(session, email, role, scoped, actor=actor)
        safety_demo.configure(session, study, ADMIN_EMAIL, COORDINATOR_EMAIL, actor)
        # Held until the load ends: every submission reads the study's safety settings by primary key,
        # and the session's identity map, which holds rows weakly, would otherwise select them again
        # for each of the cohort's responses. Nothing in the load changes them after this point.
        from api.safety.configuration import get_settings as safety_settings

        held_safety_settings = safety_settings(session, study.id)

        reference = today - timedelta(days=RECRUITMENT_ENDED_DAYS_AGO)
        by_code = {}
        for row in cohort.participants.itertuples(index=False):
            enrolled = reference - timedelta(days=int(row.enrolled_offset_days))
            p = participants.enrol(
                session,
                study=study,
                site_code=row.site,
                enrolled_on=enrolled,
                consent_date=enrolled,
                consent_version="v1.2",
                arm_code=row.arm,
                study_code=row.participant,
                actor=actor,
            )
            by_code[row.participant] = (p, row)
        for r in cohort.responses:
            p, row = by_code[r["participant"]]
            done_on = p.enrolled_on + timedelta(days=int(r["days_since_enrolment"]))
            if done_on > today or r["instrument"] not in wave_instruments[r["wave"]]:
                continue
            completed_at = dates.on_day(done_on, time(10, 30), ZoneInfo(DEMO_TZ))
            answers = r["answers"]
            if r["instrument"] == "phq9":
                answers = safety_demo.realistic_item9(r["participant"], r["wave"], answers)
            submit_response(
                session,
                participant=p,
                wave_code=r["wave"],
                instrument_code=r["instrument"],
                answers=answers,
                external_scores=r["external_scores"] or None,
                completed_at=completed_at,
                mode="import",
                actor=actor,
            )
            result.responses += 1
        result.responses += clinical_demo.add_measures(session, study, actor, ZoneInfo(DEMO_TZ), today, seed)
        for i, (p, row) in enumerate(by_code.values()):
            status, status_date = _status(p, row, today)
            if status == "withdrawn" and status_date is not None:
                # a withdrawal from follow-up (data so far are used), with the reason a coordinator records
                corrections.withdraw(
                    session, p, "follow_up", status_date, FOLLOW_UP_REASONS[i % len(FOLLOW_UP_REASONS)], actor
                )
            elif status != "active":
                participants.change_status(
                    session,
                    p,
                    status=status,
                    status_date=status_date,
                    reason=_status_reason(status, p.study_code),
                    actor=actor,
                )
        _intervention_stops(session, by_code, today, actor)
        _void_duplicate(session, study, by_code, actor)
        result.participants = len(by_code)
        result.partial = _partial_response(session, [p for p, _ in by_code.values()], actor)
        result.params = cohort.params
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        north = session.exec(select(User).where(User.email == COORDINATOR_EMAIL)).one()
        result.alerts = safety_demo.alert_history(session, study, admin, north)
        result.adverse_events = safety_demo.adverse_events(session, study, admin, north, today)
        from api.context import demo as context_demo

        result.context = context_demo.seed(session, study, today, seed, actor)
        site_codes = {p.site_id: row.site for p, row in by_code.values()}
        result.screened = report_demo.screening_log(
            session, study, [p for p, _ in by_code.values()], site_codes, actor, seed
        )
        from api.transcripts import demo as transcripts_demo

        group = [p for p, row in by_code.values() if row.arm == "group" and row.site == "north"]
        result.transcripts = transcripts_demo.load(session, study, actor, group[:2])
        from api.delivery import demo as delivery_demo

        result.delivery = delivery_demo.populate(session, study, cohort, today, actor)
        from api.auth.service import create_user
        from api.fidelity import demo as fidelity_demo

        raters = [session.exec(select(User).where(User.email == EVALUATOR_EMAIL)).one()]
        raters.append(
            session.exec(select(User).where(User.email == SECOND_EVALUATOR_EMAIL)).first()
            or create_user(session, SECOND_EVALUATOR_EMAIL, "evaluator")
        )
        result.fidelity = {
            "ratings": fidelity_demo.ratings(session, study, raters, today),
            "adaptations": fidelity_demo.adaptation_log(session, study, today),
        }
        result.plan_hash = _analysis_plan(session, study, actor)
        del sites, held_safety_settings
    result.study_id = study.id
    for role, email, site in DEMO_USERS:
        if role in result.tokens:
            continue
        exists = session.exec(select(User.id).where(User.email == email)).first() is not None
        scoped = [f"{study.id}:{s}" for s in site]
        result.tokens[role] = (
            new_token_for(session, email, actor=actor)
            if exists
            else create_with_token(session, email, role, scoped, actor=actor)
        )
    # Console passwords: new random ones each run, printed once (the database keeps argon2 hashes).
    import secrets

    from api.console.auth import find_user, set_password

    for role, email, _ in DEMO_USERS:
        password = "demo-" + secrets.token_urlsafe(9)
        user = find_user(session, email)
        if user is not None:
            set_password(session, user, password, actor)
            result.console[role] = (email, password)
    return result


# Reasons of the kind peer-support trials report, for the demo's CONSORT diagram.
_REASONS = {
    "withdrawn": ("too busy to take part", "health got worse", "did not want the questionnaires"),
    "lost_to_follow_up": ("no reply to three reminders", "moved away", "phone number no longer in use"),
    "completed": ("completed follow-up",),
}


def _status_reason(status: str, code: str) -> str:
    """A stable reason for a status change (the same participant always gets the same one)."""
    options = _REASONS.get(status, ("other",))
    return options[sum(map(ord, code)) % len(options)]


FOLLOW_UP_REASONS = ("moved out of the area", "too unwell to continue", "no longer wishes to be contacted")
INTERVENTION_REASONS = ("could not travel to the group", "sessions clashed with work", "did not like the format")


def _intervention_stops(session: Session, by_code: dict, today: date, actor) -> None:
    """About one in ten of the intervention arms stop the intervention and stay in follow-up (CONSORT)."""
    from api.participants import corrections
    from api.studies.models import Arm

    kinds = {a.id: a.kind for a in session.exec(select(Arm)).all()}
    for i, (p, _row) in enumerate(by_code.values()):
        when = p.enrolled_on + timedelta(days=20 + (i * 7) % 60)
        if kinds.get(p.arm_id) == "intervention" and i % 10 == 3 and when <= today and p.status == "active":
            corrections.withdraw(session, p, "intervention", when, INTERVENTION_REASONS[i % 3], actor)


def _void_duplicate(session: Session, study, by_code: dict, actor) -> None:
    """One person enrolled twice at another site, then voided: kept with its audit, in no count."""
    from api.participants import corrections
    from api.participants import service as participants
    from api.studies.models import Arm

    first, row = next(iter(by_code.values()))
    arm = session.get(Arm, first.arm_id)
    dup = participants.enrol(
        session,
        study=study,
        site_code="south" if row.site == "north" else "north",
        enrolled_on=first.enrolled_on,
        consent_date=first.consent_date,
        consent_version=first.consent_version,
        arm_code=arm.code if arm else None,
        study_code=first.study_code + "-DUP",
        actor=actor,
    )
    corrections.void(session, dup, f"duplicate enrolment of {first.study_code}", actor)


def _analysis_plan(session: Session, study, actor) -> str | None:
    """The demo's statistical analysis plan, locked before anyone unblinds the study."""
    from api.sap import service as sap
    from api.sap.schemas import Outcome, PlanContent

    plan = PlanContent(
        primary=Outcome(scale="pam13_activation", wave="m12", model="trial"),
        secondary=[
            Outcome(scale="phq9", wave="m12", model="trial"),
            Outcome(scale="gad7", wave="m12", model="trial"),
            Outcome(scale="pam13_activation", wave="m12", model="responders"),
        ],
        covariates=["site"],
        mcids={"pam13_activation": 4, "phq9": 5, "gad7": 4},
        subgroups=["context_living_situation"],
        missing_data="mixed_model",
        sensitivity=["multiple_imputation", "tipping_point"],
        families={"secondary": ["phq9", "gad7"]},
        multiplicity="holm",
        notes="Treatment-policy estimand; ANCOVA adjusted for baseline and site, cLDA as supportive analysis.",
    )
    draft = sap.create_draft(session, study, plan, actor)
    return sap.lock(session, study, draft.version, actor).content_hash


def _status(p, row, today: date) -> tuple[str, date | None]:
    """Status on ``today`` of a simulated participant: dropouts only once their day has come."""
    last_due = p.enrolled_on + timedelta(days=WAVES[-1][1] + WAVES[-1][3])
    if row.status in ("withdrawn", "lost_to_follow_up") and row.status_days == row.status_days:
        when = p.enrolled_on + timedelta(days=int(row.status_days))
        if when <= today:
            return row.status, when
        return "active", None
    if row.status == "completed" and last_due <= today:
        return "completed", last_due
    return "active", None


def _partial_response(session, people, actor) -> str | None:
    """One participant who stopped a PHQ-9 halfway in an open wave: stored as partial (the wave
    stays open, the link and reminders still chase it, the next submission resumes it)."""
    from api.participants.service import schedule
    from api.responses.service import submit_response

    for p in sorted(people, key=lambda p: p.id):
        if p.status != "active":
            continue
        for w in schedule(session, p):
            pending = {i.instrument for i in w.instruments if i.state == "pending"}
            if w.state == "open" and "phq9" in pending:
                answers = {f"phq9_{i}": 1 for i in range(1, 5)}
                submit_response(
                    session, participant=p, wave_code=w.wave, instrument_code="phq9", answers=answers, actor=actor
                )
                return f"{p.study_code}/{w.wave}/phq9"
    return None
