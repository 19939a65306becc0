"""Who may do what: the roles, the role sets routes admit, and the checks services repeat.

Routes declare their roles with ``authorize(*STAFF)`` (see :mod:`api.auth.dependencies`); services
call the ``ensure_*`` helpers again, because the command line and the workers reach them without
HTTP. This module imports neither FastAPI nor a database, so any layer of the service can use it.

A role is one line of :data:`RULES`; the sets routes admit are derived from it, so adding a role
is a one-line change here (plus the routes that should name it in a set of their own).

Examples
--------
>>> from api.auth.service import Actor
>>> STAFF, READERS
(('admin', 'coordinator'), ('admin', 'coordinator', 'analyst'))
>>> PROCESS_READERS, RATERS
(('admin', 'coordinator', 'analyst', 'evaluator'), ('admin', 'evaluator'))
>>> coordinator = Actor(user_id=7, role="coordinator", site_ids=frozenset({2}))
>>> sees_site(coordinator, 2), sees_site(coordinator, 3)
(True, False)
>>> ensure_can_write(Actor(user_id=8, role="analyst"))
Traceback (most recent call last):
...
api.errors.Forbidden: analysts may not change study data
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api.errors import Forbidden, NotFound

if TYPE_CHECKING:
    from api.auth.service import Actor


@dataclass(frozen=True)
class Role:
    """What a role may do."""

    reads: bool  # reads study data: participants, responses, exports, analyses, transcripts
    writes: bool  # changes study data: enrolment, responses, links, reminders, coding
    all_sites: bool  # sees every site of a study; otherwise only the sites assigned to the user
    identifiers: bool  # may see the identifier vault of the participants it sees
    admin: bool = False  # designs studies, reads the audit trail and the allocation list, manages users
    # reads the process-evaluation records (delivery, fidelity, adaptations) even without ``reads``
    process: bool = False
    # rates the fidelity of delivered sessions and logs adaptations (an independent evaluator)
    rates: bool = False


#: Every role a user can hold.
RULES: dict[str, Role] = {
    "admin": Role(reads=True, writes=True, all_sites=True, identifiers=True, admin=True, process=True, rates=True),
    "coordinator": Role(reads=True, writes=True, all_sites=False, identifiers=True, process=True),
    "analyst": Role(reads=True, writes=False, all_sites=True, identifiers=False, process=True),
    # Independent of delivery (MRC process-evaluation guidance): reads what was delivered and rates
    # it, but never reads outcome data (no ``reads``: no participants, responses, exports, analyses).
    "evaluator": Role(reads=False, writes=False, all_sites=True, identifiers=False, process=True, rates=True),
}

#: Actors that are not users: the command line and the workers, and a participant answering
#: through their personal link (who writes their own responses at their own site only).
SYSTEM = "system"
PARTICIPANT = "participant"
_NON_USERS: dict[str, Role] = {
    SYSTEM: Role(reads=True, writes=True, all_sites=True, identifiers=True, admin=True, process=True, rates=True),
    PARTICIPANT: Role(reads=False, writes=True, all_sites=False, identifiers=False),
}
_NOTHING = Role(reads=False, writes=False, all_sites=False, identifiers=False)

ROLES: tuple[str, ...] = tuple(RULES)
#: Study design, the audit trail, the allocation list, identified originals.
ADMIN: tuple[str, ...] = tuple(r for r, rule in RULES.items() if rule.admin)
#: Routes that change study data (coordinators on their own sites).
STAFF: tuple[str, ...] = tuple(r for r, rule in RULES.items() if rule.writes)
#: Routes that read study data (analysts de-identified, coordinators their own sites).
READERS: tuple[str, ...] = tuple(r for r, rule in RULES.items() if rule.reads)
#: Routes that read process-evaluation records (delivery, fidelity ratings, adaptations): the
#: readers plus the evaluator, who sees no outcome data.
PROCESS_READERS: tuple[str, ...] = tuple(r for r, rule in RULES.items() if rule.process)
#: Routes that record fidelity ratings (independent raters; admins to correct).
RATERS: tuple[str, ...] = tuple(r for r, rule in RULES.items() if rule.rates)
#: Routes that log adaptations: staff who decide them and evaluators who observe them.
PROCESS_WRITERS: tuple[str, ...] = tuple(r for r, rule in RULES.items() if rule.writes or rule.rates)
#: Routes that list delivered sessions: the staff who record them and the evaluators who rate them.
SESSION_READERS: tuple[str, ...] = PROCESS_WRITERS


def rule(actor: Actor) -> Role:
    """The rule of ``actor``'s role (no rights at all for an unknown role)."""
    return RULES.get(actor.role) or _NON_USERS.get(actor.role, _NOTHING)


def site_scoped(actor: Actor) -> bool:
    """Whether ``actor`` sees only the sites assigned to them (lists are filtered to those)."""
    return not rule(actor).all_sites


def sees_site(actor: Actor, site_id: int | None) -> bool:
    """Whether ``actor`` may see records of ``site_id``."""
    return rule(actor).all_sites or site_id in actor.site_ids


def sees_identifiers(actor: Actor, site_id: int | None) -> bool:
    """Whether identifiers of a participant at ``site_id`` may be shown to ``actor``."""
    return rule(actor).identifiers and sees_site(actor, site_id)


def deidentified(actor: Actor) -> bool:
    """Whether everything ``actor`` reads is de-identified (no identifier, shifted dates)."""
    return not rule(actor).identifiers


def ensure_can_write(actor: Actor) -> None:
    """403 unless ``actor`` may change study data (routes check first; services again for other callers)."""
    if not rule(actor).writes:
        raise Forbidden([], f"{actor.role}s may not change study data", "role_not_allowed")


def ensure_can_rate(actor: Actor) -> None:
    """403 unless ``actor`` may record fidelity ratings (evaluators, admins, the system)."""
    if not rule(actor).rates:
        raise Forbidden([], f"{actor.role}s may not rate fidelity", "role_not_allowed")


def ensure_can_log_process(actor: Actor) -> None:
    """403 unless ``actor`` may log process records such as adaptations (staff and evaluators)."""
    r = rule(actor)
    if not (r.writes or r.rates) or actor.role == PARTICIPANT:
        raise Forbidden([], f"{actor.role}s may not log process records", "role_not_allowed")


def ensure_admin(actor: Actor, what: str = "do this") -> None:
    """403 unless ``actor`` is an admin (or the system): ``what`` says what was refused."""
    ensure_can_write(actor)
    if not rule(actor).admin:
        raise Forbidden([], f"only admins {what}", "role_not_allowed")


def ensure_site_access(
    actor: Actor, site_id: int | None, *, loc: Sequence[str | int] = ("path", "id"), what: str = "record"
) -> None:
    """404 when ``actor`` may not see a record of ``site_id``.

    404 rather than 403, so that a coordinator cannot learn that another site's record exists.
    """
    if not sees_site(actor, site_id):
        raise NotFound(list(loc), f"{what} not found", "not_found")


def may_see_allocation(actor: Actor, *, unblinded: bool = False) -> bool:
    """Whether ``actor`` may see real arm labels where readers are meant to stay blind (a data
    monitoring committee's safety summary): admins and the system always, everyone once the study
    is unblinded (:mod:`api.sap.blinding`)."""
    return unblinded or rule(actor).admin


def blind_to_arms(actor: Actor, *, unblinded: bool) -> bool:
    """Whether ``actor`` reads arms as neutral labels (A, B, C…) in every read, export, analysis and
    report: de-identified readers (analysts) until an admin unblinds the study. Staff allocate and
    deliver the intervention, so they are not blind to it; the safety summary masks arms for them
    too (:func:`may_see_allocation`)."""
    return not unblinded and deidentified(actor)
