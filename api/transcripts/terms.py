"""Study-known terms for de-identification: the people and places a study already knows.

A transcript is de-identified with the participant's own vault entry *and* every term a term source
returns for the study: site names, the names of staff users (from their login, "helen.marsh@…" ->
"Helen Marsh") and whatever other domains register — the peer-supporter roster, clinics, towns.
A source is a function ``fn(session, study) -> {"PERSON": [...], "ORG": [...], "PLACE": [...],
"EMAIL": [...], "PHONE": [...]}``; register it once at import time::

    from api.transcripts.terms import register_term_source

    @register_term_source
    def roster_terms(session, study):
        return {"PERSON": [s.name for s in supporters(session, study)]}

Terms never leave the service: they are matched in memory and stored only in the vault table that
keeps each transcript's original text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from sqlmodel import Session, select

from api.auth.models import User, UserSite
from api.auth.policy import RULES
from api.studies.models import Site, Study

__all__ = [
    "TermSource",
    "register_term_source",
    "unregister_term_source",
    "term_sources",
    "study_terms",
    "name_from_email",
]

TermSource = Callable[[Session, Study], Mapping[str, Iterable[str]]]
TERM_TYPES = ("PERSON", "ORG", "PLACE", "EMAIL", "PHONE")

_SOURCES: list[TermSource] = []


def register_term_source(fn: TermSource) -> TermSource:
    """Add a source of study-known terms (idempotent; usable as a decorator)."""
    if fn not in _SOURCES:
        _SOURCES.append(fn)
    return fn


def unregister_term_source(fn: TermSource) -> None:
    """Remove a source (tests, plug-ins that are switched off)."""
    if fn in _SOURCES:
        _SOURCES.remove(fn)


def term_sources() -> list[TermSource]:
    return list(_SOURCES)


# Mailbox words that are not names ("coordinator.north@", "study.team@").
_MAILBOX_WORDS = frozenset(
    "admin administrator analyst coordinator coordinators manager office team study trial research info "
    "contact enquiries clinic site north south east west central support help desk reception nurse nurses "
    "no reply noreply test demo user staff data".split()
) | frozenset(RULES)


def name_from_email(email: str) -> str | None:
    """A person's name from a login like ``helen.marsh@example.org`` (None for ``coordinator.north@…``).

    >>> name_from_email("helen.marsh@example.org"), name_from_email("coordinator.north@example.org")
    ('Helen Marsh', None)
    """
    local = email.split("@", 1)[0]
    parts = [p for p in re.split(r"[._-]+", local) if p.isalpha() and len(p) >= 2]
    if len(parts) < 2 or any(p.lower() in _MAILBOX_WORDS for p in parts):
        return None
    return " ".join(p.capitalize() for p in parts)


def study_terms(session: Session, study: Study) -> dict[str, list[str]]:
    """Every registered source's terms for ``study``, de-duplicated per type."""
    out: dict[str, list[str]] = {t: [] for t in TERM_TYPES}
    for source in _SOURCES:
        for typ, values in (source(session, study) or {}).items():
            if typ not in out:
                raise ValueError(f"term source {source.__name__} returned unknown type {typ!r}")
            for v in values:
                v = (v or "").strip()
                if len(v) >= 2 and v not in out[typ]:
                    out[typ].append(v)
    return {k: v for k, v in out.items() if v}


@register_term_source
def site_terms(session: Session, study: Study) -> Mapping[str, Iterable[str]]:
    """The study's site (clinic, town) names."""
    sites = session.exec(select(Site).where(Site.study_id == study.id)).all()
    return {"ORG": [s.name for s in sites]}


@register_term_source
def staff_terms(session: Session, study: Study) -> Mapping[str, Iterable[str]]:
    """Staff users: names read from their logins, and the logins themselves.

    Coordinators scoped to the study's sites, and every admin and analyst (they are not scoped).
    """
    site_ids = [s.id for s in session.exec(select(Site).where(Site.study_id == study.id)).all()]
    unscoped = [role for role, rule in RULES.items() if rule.all_sites]
    users = list(session.exec(select(User).where(User.role.in_(unscoped))).all())
    if site_ids:
        users += session.exec(
            select(User).join(UserSite, UserSite.user_id == User.id).where(UserSite.site_id.in_(site_ids))
        ).all()
    names = [n for u in users if (n := name_from_email(u.email))]
    return {"PERSON": names, "EMAIL": [u.email for u in users]}
