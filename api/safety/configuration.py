"""A study's safety set-up: principal investigator, site safety contacts, escalation delay, SAE
follow-up interval, the support message and crisis numbers shown to participants, and the study's
own alert rules (added to those of the instrument definitions).

Services flush; routers and commands commit.
"""

from __future__ import annotations

from sqlmodel import Session, select

import instruments
from api.audit.service import record
from api.auth.models import User, UserSite
from api.auth.policy import ensure_can_write
from api.auth.service import Actor
from api.db import utcnow
from api.errors import Unprocessable
from api.safety.models import SafetyContact, SafetySettings
from api.safety.schemas import CrisisNumber, RuleRead, SettingsIn, SettingsRead, SiteSupport, UserRef
from api.studies.models import Site, Study, Wave
from instruments.alerts import AlertRule, default_label, rule_problems

#: Shown to a participant after an alerting answer when the study configured no message.
DEFAULT_SUPPORT_MESSAGE = (
    "Thank you for your answers. Some of them suggest that you may be going through a difficult time. "
    "The study team has been told and will follow the study's safety procedure, but they may not see "
    "this straight away. Please talk to your doctor, or to someone you trust, about how you feel."
)
#: Shown under every support message, whatever the study configured.
EMERGENCY_LINE = (
    "If you are in danger now or feel you cannot keep yourself safe, call your local emergency number "
    "or go to the nearest emergency department."
)


def get_settings(session: Session, study_id: int) -> SafetySettings | None:
    return session.get(SafetySettings, study_id)


def study_rules(settings: SafetySettings | None) -> list[AlertRule]:
    """The study's own rules as :class:`~instruments.model.AlertRule` objects."""
    if settings is None:
        return []
    return [
        AlertRule(
            code=r["code"],
            label=r.get("label") or default_label(r["kind"], r["target"], r["op"], r["value"]),
            kind=r["kind"],
            target=r["target"],
            op=r["op"],
            value=float(r["value"]),
            instrument=r["instrument"],
        )
        for r in settings.rules or []
    ]


def _user_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email.strip().lower())).first()


def _sites(session: Session, study: Study) -> dict[str, Site]:
    return {s.code: s for s in session.exec(select(Site).where(Site.study_id == study.id).order_by(Site.id)).all()}


def _contacts_by_site(session: Session, study_id: int) -> dict[int, list[User]]:
    out: dict[int, list[User]] = {}
    rows = session.exec(
        select(SafetyContact.site_id, User)
        .join(User, User.id == SafetyContact.user_id)
        .where(SafetyContact.study_id == study_id)
        .order_by(SafetyContact.site_id, User.id)
    ).all()
    for site_id, user in rows:
        out.setdefault(site_id, []).append(user)
    return out


def _check_rules(body_rules) -> list[dict]:
    out, seen = [], set()
    for n, r in enumerate(body_rules):
        loc: list[str | int] = ["body", "rules", n]
        try:
            inst = instruments.get(r.instrument)
        except instruments.InstrumentError:
            raise Unprocessable(
                loc + ["instrument"], "unknown instrument; see GET /instruments", "unknown_instrument"
            ) from None
        rule = AlertRule(r.code, r.label or "", r.kind, r.target, r.op, r.value, instrument=inst.code)
        problems = rule_problems(inst, rule)
        if problems:
            raise Unprocessable(loc + ["target"], "; ".join(problems), "unknown_target")
        if r.code in seen or r.code in {a.code for a in inst.alerts}:
            raise Unprocessable(
                loc + ["code"], "this rule code is already used (by the study or the instrument)", "duplicate_rule"
            )
        seen.add(r.code)
        out.append(
            {
                "code": r.code,
                "instrument": inst.code,
                "kind": r.kind,
                "target": r.target,
                "op": r.op,
                "value": r.value,
                "label": r.label or default_label(r.kind, r.target, r.op, r.value),
            }
        )
    return out


def _check_contacts(session: Session, sites: dict[str, Site], contacts: dict[str, list[str]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for code, emails in contacts.items():
        site = sites.get(code)
        if site is None:
            raise Unprocessable(["body", "contacts", code], "no site with this code in the study", "unknown_site")
        ids = []
        for n, email in enumerate(emails):
            loc: list[str | int] = ["body", "contacts", code, n]
            user = _user_by_email(session, email)
            if user is None or not user.active:
                raise Unprocessable(loc, "no active user with this email", "unknown_user")
            covers = user.role == "admin" or (
                user.role == "coordinator"
                and session.exec(
                    select(UserSite).where(UserSite.user_id == user.id, UserSite.site_id == site.id)
                ).first()
                is not None
            )
            if not covers:
                raise Unprocessable(
                    loc, f"a safety contact must be an admin or a coordinator of site {code}", "contact_not_allowed"
                )
            if user.id not in ids:
                ids.append(user.id)
        out[site.id] = ids
    return out


def update_settings(session: Session, study: Study, body: SettingsIn, actor: Actor) -> SafetySettings:
    """Change a study's safety settings; fields not sent keep their value (audited)."""
    ensure_can_write(actor)
    sent = body.model_fields_set
    current = get_settings(session, study.id)
    sites = _sites(session, study)
    before = None if current is None else _snapshot(session, current)
    cfg = current or SafetySettings(study_id=study.id)
    if "pi" in sent:
        if body.pi is None:
            cfg.pi_user_id = None
        else:
            user = _user_by_email(session, body.pi)
            if user is None or not user.active:
                raise Unprocessable(["body", "pi"], "no active user with this email", "unknown_user")
            if user.role != "admin":
                raise Unprocessable(["body", "pi"], "the principal investigator must be an admin user", "pi_not_admin")
            cfg.pi_user_id = user.id
    for name in ("escalate_after_hours", "sae_follow_up_days"):
        if name in sent:
            value = getattr(body, name)
            if value is None:
                raise Unprocessable(["body", name], "a number is required", "missing")
            setattr(cfg, name, value)
    if "support_message" in sent:
        cfg.support_message = (body.support_message or "").strip() or None
    if "crisis_numbers" in sent:
        cfg.crisis_numbers = [c.model_dump() for c in body.crisis_numbers or []]
    if "site_support" in sent:
        stored = {}
        for code, support in (body.site_support or {}).items():
            if code not in sites:
                raise Unprocessable(
                    ["body", "site_support", code], "no site with this code in the study", "unknown_site"
                )
            stored[str(sites[code].id)] = support.model_dump(exclude_none=True)
        cfg.site_support = stored
    if "rules" in sent:
        cfg.rules = _check_rules(body.rules or [])
    cfg.updated_at = utcnow()
    session.add(cfg)
    session.flush()
    if "contacts" in sent and body.contacts is not None:
        wanted = _check_contacts(session, sites, body.contacts)
        existing = session.exec(select(SafetyContact).where(SafetyContact.study_id == study.id)).all()
        for row in existing:
            if row.site_id in wanted and row.user_id not in wanted[row.site_id]:
                session.delete(row)
        have = {(r.site_id, r.user_id) for r in existing}
        for site_id, ids in wanted.items():
            for uid in ids:
                if (site_id, uid) not in have:
                    session.add(SafetyContact(study_id=study.id, site_id=site_id, user_id=uid))
        session.flush()
    record(
        session,
        actor,
        "update" if current is not None else "create",
        "safety_settings",
        study.id,
        study_id=study.id,
        before=before,
        after=_snapshot(session, cfg),
    )
    return cfg


def _snapshot(session: Session, cfg: SafetySettings) -> dict:
    contacts = _contacts_by_site(session, cfg.study_id)
    return {
        "pi_user_id": cfg.pi_user_id,
        "escalate_after_hours": cfg.escalate_after_hours,
        "sae_follow_up_days": cfg.sae_follow_up_days,
        "support_message": cfg.support_message,
        "crisis_numbers": list(cfg.crisis_numbers or []),
        "site_support": dict(cfg.site_support or {}),
        "rules": list(cfg.rules or []),
        "contacts": {str(site): [u.id for u in users] for site, users in contacts.items()},
    }


def read_settings(session: Session, study: Study) -> SettingsRead:
    cfg = get_settings(session, study.id)
    sites = _sites(session, study)
    by_id = {s.id: s.code for s in sites.values()}
    contacts = _contacts_by_site(session, study.id)
    pi = session.get(User, cfg.pi_user_id) if cfg is not None and cfg.pi_user_id else None
    rules = []
    for code in _study_instruments(session, study.id):
        try:
            inst = instruments.get(code)
        except instruments.InstrumentError:
            continue
        rules += [RuleRead(origin="instrument", **_rule_dict(r)) for r in inst.alerts]
    rules += [RuleRead(origin="study", **_rule_dict(r)) for r in study_rules(cfg)]
    return SettingsRead(
        study_id=study.id,
        pi=UserRef(id=pi.id, email=pi.email) if pi else None,
        escalate_after_hours=cfg.escalate_after_hours if cfg else 24.0,
        sae_follow_up_days=cfg.sae_follow_up_days if cfg else 7,
        support_message=(cfg.support_message if cfg else None) or DEFAULT_SUPPORT_MESSAGE,
        support_message_is_default=not (cfg and cfg.support_message),
        emergency_line=EMERGENCY_LINE,
        crisis_numbers=[CrisisNumber(**c) for c in (cfg.crisis_numbers if cfg else [])],
        site_support={
            by_id[int(k)]: SiteSupport(**v) for k, v in (cfg.site_support if cfg else {}).items() if int(k) in by_id
        },
        contacts={code: [UserRef(id=u.id, email=u.email) for u in contacts.get(s.id, [])] for code, s in sites.items()},
        rules=rules,
        updated_at=cfg.updated_at if cfg else None,
    )


def _rule_dict(r: AlertRule) -> dict:
    return {
        "code": r.code,
        "instrument": r.instrument or "",
        "kind": r.kind,
        "target": r.target,
        "op": r.op,
        "value": r.value,
        "label": r.label,
    }


def _study_instruments(session: Session, study_id: int) -> list[str]:
    out: list[str] = []
    for codes in session.exec(select(Wave.instruments).where(Wave.study_id == study_id).order_by(Wave.offset_days)):
        out += [c for c in codes or [] if c not in out]
    return out


# ---- what the participant sees -------------------------------------------------------------------


def support_message(session: Session, study_id: int, site_id: int) -> dict:
    """The support message and crisis numbers of a site (the study's where the site sets none;
    the default text where the study sets none either)."""
    cfg = get_settings(session, study_id)
    own = (cfg.site_support or {}).get(str(site_id), {}) if cfg else {}
    message = own.get("support_message") or (cfg.support_message if cfg else None) or DEFAULT_SUPPORT_MESSAGE
    numbers = own.get("crisis_numbers")
    if numbers is None:
        numbers = cfg.crisis_numbers if cfg else []
    return {"message": message, "crisis_numbers": list(numbers or []), "emergency": EMERGENCY_LINE}


def support_after_alert(session: Session, participant_id: int, wave_id: int, study_id: int, site_id: int):
    """The support message to show on a participant's form when any answer of this wave raised an
    alert, else None."""
    from api.safety.models import SafetyAlert

    raised = session.exec(
        select(SafetyAlert.id).where(SafetyAlert.participant_id == participant_id, SafetyAlert.wave_id == wave_id)
    ).first()
    return support_message(session, study_id, site_id) if raised is not None else None
