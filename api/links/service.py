"""Issuing, resolving and revoking personal form links.

A link token is the HMAC-SHA256 of a random 128-bit nonce under the server's secret key (256 bits,
URL-safe). Only the nonce and the token's SHA-256 are stored, so a copy of the database does not
open anyone's form, while the service can show the same live link again (:func:`live_link`):
every reminder of a wave carries one link, and an earlier message's link keeps working. A token
resolves only while its wave is open (window opening to close plus the grace period), while the
participant takes part, and until it is revoked; every other case looks exactly like an unknown
token to the caller.

The secret key, the base URL of the links and the grace period come from the
:class:`api.config.Settings` the caller passes (the application's, or the worker's).

Examples
--------
>>> link, url = issue_link(session, participant, wave, actor, settings)  # doctest: +SKIP
>>> ctx = resolve(session, url.rsplit("/", 1)[1], settings)  # doctest: +SKIP
>>> [i.instrument for i in ctx.offered]  # doctest: +SKIP
['phq9', 'gad7']
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import tuple_, update
from sqlmodel import Session, select

import instruments
from api.audit.service import record
from api.auth.policy import ensure_can_write, ensure_site_access
from api.auth.service import Actor
from api.db import utcnow
from api.errors import ApiError, Conflict, NotFound
from api.links.models import ParticipantLink
from api.links.schemas import LinkStatus, OfferedInstrument
from api.participants.corrections import follows_up
from api.participants.models import Participant
from api.participants.service import window
from api.studies import dates
from api.studies.models import Study, Wave
from instruments.model import Instrument, InstrumentError

if TYPE_CHECKING:
    from api.config import Settings

# Participants in these states may still answer; withdrawn (and closed) ones may not.
ANSWERING_STATUSES = ("active", "lost_to_follow_up")
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{40,64}$")


def hash_link_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_for(settings: Settings, nonce: str) -> str:
    mac = hmac.new(settings.secret_key.encode(), f"participant-link:{nonce}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def _url(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}/f/{token}"


def link_url(link: ParticipantLink, settings: Settings) -> str | None:
    """The URL of a stored link, or None for links issued before tokens were derivable."""
    return _url(settings, _token_for(settings, link.nonce)) if link.nonce else None


def offer(code: str) -> tuple[bool, str | None]:
    """Whether the web form can show instrument ``code``, and the reason when it cannot.

    Examples
    --------
    >>> offer("phq9")
    (True, None)
    >>> offer("pam13")[0]
    False
    >>> offer("hba1c")
    (False, 'measured and entered by staff (a coordinator task)')
    """
    try:
        inst: Instrument = instruments.get(code)
    except InstrumentError:
        return False, "unknown instrument"
    if inst.notes.get("administered") == "staff":
        # Clinical measures (HbA1c, weight, blood pressure, the walk test): staff measure and enter them.
        return False, "measured and entered by staff (a coordinator task)"
    if not inst.wording_shipped and not inst.notes.get("wording_loaded"):
        return False, (
            "licensed item wording is not loaded (peerlens licensed wording); "
            "staff collect it through the REST API (a coordinator task)"
        )
    if any(not it.text for it in inst.items):
        return False, "some items have no wording"
    return True, None


STAFF_REASON = "administered by staff (the wave's staff_instruments)"


def offer_in(wave: Wave, code: str) -> tuple[bool, str | None]:
    """:func:`offer` within a wave: instruments the wave has staff administer are never offered."""
    if code in (wave.staff_instruments or []):
        return False, STAFF_REASON
    return offer(code)


@dataclass
class LinkContext:
    """What a resolved link opens: the participant's wave and the state of its instruments."""

    link: ParticipantLink
    participant: Participant
    study: Study
    wave: Wave
    offered: list[OfferedInstrument] = field(default_factory=list)

    @property
    def pending(self) -> list[str]:
        """Instruments still to fill on the form, in wave order."""
        return [o.instrument for o in self.offered if o.offered and not o.completed]

    @property
    def completed(self) -> bool:
        """True when every instrument the form offers has been submitted."""
        return not self.pending


def _grace(settings: Settings) -> timedelta:
    return timedelta(days=settings.link_grace_days)


Pair = tuple[int, int]  # (participant_id, wave_id)


def _offered_from(wave: Wave, done: set[str]) -> list[OfferedInstrument]:
    out = []
    for code in wave.instruments:
        ok, reason = offer_in(wave, code)
        out.append(OfferedInstrument(instrument=code, offered=ok, reason=reason, completed=code in done))
    return out


def _completed(session: Session, pairs: list[Pair]) -> dict[Pair, set[str]]:
    """Instruments already submitted, per participant and wave, in one query."""
    from api.responses.models import Response

    done: dict[Pair, set[str]] = {p: set() for p in pairs}
    if pairs:
        rows = session.exec(
            select(Response.participant_id, Response.wave_id, Response.instrument).where(
                tuple_(Response.participant_id, Response.wave_id).in_(pairs),
                Response.status == "complete",  # a partial response is resumed through the link
            )
        ).all()
        for pid, wid, code in rows:
            done[(pid, wid)].add(code)
    return done


def _offered(session: Session, participant: Participant, wave: Wave) -> list[OfferedInstrument]:
    return _offered_from(wave, _completed(session, [(participant.id, wave.id)])[(participant.id, wave.id)])


def _may_issue(
    session: Session,
    participant: Participant,
    wave: Wave,
    actor: Actor,
    now: datetime,
    settings: Settings,
    studies: dict[int, Study] | None = None,
) -> datetime:
    """The refusals decided without looking at responses; returns the new link's ``expires_at``.

    ``studies`` keeps the studies loaded for a batch (the session's identity map holds them weakly).
    """
    ensure_can_write(actor)
    ensure_site_access(actor, participant.site_id, loc=("path", "participant_id"), what="participant")
    if wave.study_id != participant.study_id:
        raise NotFound(["body", "wave"], "no wave with this code in the participant's study", "unknown_wave")
    if not follows_up(participant):
        raise Conflict(
            ["path", "participant_id"],
            "the participant was voided or stopped follow-up; no link is issued",
            "participant_not_followed_up",
        )
    if participant.status not in ANSWERING_STATUSES:
        raise Conflict(
            ["path", "participant_id"],
            f"the participant's status is {participant.status}; no link is issued",
            "participant_not_active",
        )
    if not (dates.plausible(participant.enrolled_on) and dates.plausible(participant.consent_date)):
        # Stored before the date policy: a window computed from it would mean nothing.
        raise Conflict(
            ["path", "participant_id"],
            "the participant's enrolment date is outside the plausible range; correct it before issuing links",
            "implausible_enrolment_date",
        )
    studies = {} if studies is None else studies
    study = studies.get(participant.study_id)
    if study is None:
        study = studies[participant.study_id] = session.get(Study, participant.study_id)
    _, _, _, _, closes_at = window(study, participant, wave)
    expires_at = dates.add_time(closes_at, _grace(settings))
    if now >= expires_at:
        raise Conflict(["body", "wave"], "the wave's window and grace period have passed", "window_closed")
    return expires_at


def _check_offered(offered: list[OfferedInstrument]) -> None:
    if not any(o.offered for o in offered):
        reasons = "; ".join(f"{o.instrument}: {o.reason}" for o in offered)
        raise Conflict(
            ["body", "wave"], f"the web form can offer no instrument of this wave ({reasons})", "nothing_to_offer"
        )
    if all(o.completed for o in offered if o.offered):
        raise Conflict(["body", "wave"], "every instrument the form offers for this wave is complete", "wave_completed")


def _issue(
    session: Session, items: list[tuple[Participant, Wave, datetime]], actor: Actor, now: datetime, settings: Settings
) -> list[tuple[ParticipantLink, str]]:
    """Write the links of already checked (participant, wave, expires_at) items, revoking earlier ones.

    One UPDATE revokes the live links of every pair, one flush inserts the new links, and each
    revoked and each new link gets its audit event (the events go out together at the next flush).
    """
    if not items:
        return []
    revoked: dict[Pair, list[int]] = {(p.id, w.id): [] for p, w, _ in items}
    rows = session.execute(
        update(ParticipantLink)
        .where(
            tuple_(ParticipantLink.participant_id, ParticipantLink.wave_id).in_(list(revoked)),
            ParticipantLink.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .returning(ParticipantLink.id, ParticipantLink.participant_id, ParticipantLink.wave_id)
    ).all()
    for old_id, pid, wid in sorted(rows):
        revoked[(pid, wid)].append(old_id)
    issued = []
    for participant, wave, expires_at in items:
        for old_id in revoked[(participant.id, wave.id)]:
            record(
                session,
                actor,
                "revoke",
                "participant_link",
                old_id,
                study_id=participant.study_id,
                site_id=participant.site_id,
                after={"participant_id": participant.id, "wave": wave.code, "reason": "reissued"},
            )
        nonce = secrets.token_urlsafe(16)
        token = _token_for(settings, nonce)
        issued.append(
            (
                ParticipantLink(
                    study_id=participant.study_id,
                    site_id=participant.site_id,
                    participant_id=participant.id,
                    wave_id=wave.id,
                    token_hash=hash_link_token(token),
                    nonce=nonce,
                    created_at=now,
                    created_by=actor.user_id,
                    expires_at=expires_at,
                ),
                token,
            )
        )
    session.add_all([link for link, _ in issued])
    session.flush()
    out = []
    for (participant, wave, expires_at), (link, token) in zip(items, issued, strict=True):
        record(
            session,
            actor,
            "create",
            "participant_link",
            link.id,
            study_id=participant.study_id,
            site_id=participant.site_id,
            after={
                "participant_id": participant.id,
                "wave": wave.code,
                "expires_at": expires_at.isoformat(),
                "replaces": revoked[(participant.id, wave.id)],
            },
        )
        out.append((link, _url(settings, token)))
    return out


def issue_link(
    session: Session,
    participant: Participant,
    wave: Wave,
    actor: Actor,
    settings: Settings,
    *,
    now: datetime | None = None,
) -> tuple[ParticipantLink, str]:
    """Issue the personal link of ``participant`` for ``wave``, revoking any earlier one.

    Flushes and audits; the caller commits. The clear token exists only in the returned URL.

    Parameters
    ----------
    participant, wave : Participant, Wave
        The wave must belong to the participant's study.
    actor : Actor
        A coordinator of the participant's site, an admin or the system (reminders).
    settings : api.config.Settings
        The secret key the token derives from, ``base_url`` of the link and ``link_grace_days``.
    now : datetime, optional
        Defaults to the current time (UTC).

    Returns
    -------
    (ParticipantLink, str)
        The stored link and its URL ``{base_url}/f/{token}``.

    Raises
    ------
    api.errors.Conflict
        409 when the participant no longer answers, the wave's window (plus grace) has closed,
        the form can offer none of the wave's instruments, or the offered ones are complete.
    """
    now = now or utcnow()
    expires_at = _may_issue(session, participant, wave, actor, now, settings)
    _check_offered(_offered(session, participant, wave))
    return _issue(session, [(participant, wave, expires_at)], actor, now, settings)[0]


def live_links(
    session: Session,
    pairs: Iterable[tuple[Participant, Wave]],
    actor: Actor,
    settings: Settings,
    *,
    now: datetime | None = None,
) -> tuple[dict[Pair, tuple[ParticipantLink, str]], dict[Pair, ApiError]]:
    """:func:`live_link` for many participants and waves at once (the reminders' claimed batch).

    Three statements however many pairs: the live links, the submitted instruments of the pairs
    without one, and the writes of :func:`issue_link` for all of those (one UPDATE, one INSERT of
    the links, their audit events). Each pair gets the link :func:`live_link` would give it, or
    the refusal it would raise; a refusal leaves no write behind for that pair.

    Returns
    -------
    (links, refused)
        ``{(participant_id, wave_id): (link, url)}`` and ``{(participant_id, wave_id): ApiError}``.
    """
    now = now or utcnow()
    todo: dict[Pair, tuple[Participant, Wave]] = {}
    for participant, wave in pairs:
        todo.setdefault((participant.id, wave.id), (participant, wave))
    links: dict[Pair, tuple[ParticipantLink, str]] = {}
    refused: dict[Pair, ApiError] = {}
    if not todo:
        return links, refused
    latest: dict[Pair, ParticipantLink] = {}
    for link in session.exec(
        select(ParticipantLink)
        .where(
            tuple_(ParticipantLink.participant_id, ParticipantLink.wave_id).in_(list(todo)),
            ParticipantLink.revoked_at.is_(None),
        )
        .order_by(ParticipantLink.id)
    ).all():
        latest[(link.participant_id, link.wave_id)] = link  # ordered by id: the last one wins
    checked: dict[Pair, tuple[Participant, Wave, datetime]] = {}
    studies: dict[int, Study] = {}
    for key, (participant, wave) in todo.items():
        link = latest.get(key)
        try:
            if (
                link is not None
                and link.nonce
                and now < link.expires_at
                and participant.status in ANSWERING_STATUSES
                and follows_up(participant)
            ):
                ensure_site_access(actor, participant.site_id, loc=("path", "participant_id"), what="participant")
                links[key] = (link, link_url(link, settings))
            else:
                checked[key] = (
                    participant,
                    wave,
                    _may_issue(session, participant, wave, actor, now, settings, studies),
                )
        except ApiError as exc:
            refused[key] = exc
    done = _completed(session, list(checked))
    items = []
    for key, (participant, wave, expires_at) in checked.items():
        try:
            _check_offered(_offered_from(wave, done[key]))
        except ApiError as exc:
            refused[key] = exc
        else:
            items.append((participant, wave, expires_at))
    for (participant, wave, _), issued in zip(items, _issue(session, items, actor, now, settings), strict=True):
        links[(participant.id, wave.id)] = issued
    return links, refused


def live_link(
    session: Session,
    participant: Participant,
    wave: Wave,
    actor: Actor,
    settings: Settings,
    *,
    now: datetime | None = None,
) -> tuple[ParticipantLink, str]:
    """The participant's live link for ``wave``, issuing one only when there is none.

    Reminders use it so that every message of a wave carries the same link: re-issuing would
    revoke the link in the participant's earlier messages.

    Examples
    --------
    >>> _, first = live_link(session, participant, wave, actor, settings)  # doctest: +SKIP
    >>> live_link(session, participant, wave, actor, settings)[1] == first  # doctest: +SKIP
    True
    """
    links, refused = live_links(session, [(participant, wave)], actor, settings, now=now)
    key = (participant.id, wave.id)
    if key in refused:
        raise refused[key]
    return links[key]


def resolve(session: Session, token: str, settings: Settings, now: datetime | None = None) -> LinkContext | None:
    """The participant and wave a link token opens, or None.

    None for a malformed, unknown or revoked token, outside the window (plus grace), and for a
    participant who no longer answers. The callers answer all of them alike (404).

    A context with ``completed`` True is still returned: the form then says the wave is done.
    """
    if not isinstance(token, str) or not _TOKEN_SHAPE.match(token):
        return None
    now = now or utcnow()
    link = session.exec(select(ParticipantLink).where(ParticipantLink.token_hash == hash_link_token(token))).first()
    if link is None or link.revoked_at is not None:
        return None
    participant = session.get(Participant, link.participant_id)
    wave = session.get(Wave, link.wave_id)
    if (
        participant is None
        or wave is None
        or participant.status not in ANSWERING_STATUSES
        or not follows_up(participant)
    ):
        return None
    study = session.get(Study, participant.study_id)
    _, _, _, opens_at, closes_at = window(study, participant, wave)
    if not (opens_at <= now < dates.add_time(closes_at, _grace(settings))):
        return None
    return LinkContext(
        link=link, participant=participant, study=study, wave=wave, offered=_offered(session, participant, wave)
    )


def revoke_link(
    session: Session, participant: Participant, wave: Wave, actor: Actor, *, now: datetime | None = None
) -> ParticipantLink:
    """Revoke the live link of ``participant`` for ``wave`` (404 when there is none)."""
    ensure_can_write(actor)
    ensure_site_access(actor, participant.site_id, loc=("path", "participant_id"), what="participant")
    link = session.exec(
        select(ParticipantLink).where(
            ParticipantLink.participant_id == participant.id,
            ParticipantLink.wave_id == wave.id,
            ParticipantLink.revoked_at.is_(None),
        )
    ).first()
    if link is None:
        raise NotFound(["path", "wave_code"], "no live link for this wave", "not_found")
    link.revoked_at = now or utcnow()
    session.add(link)
    record(
        session,
        actor,
        "revoke",
        "participant_link",
        link.id,
        study_id=participant.study_id,
        site_id=participant.site_id,
        after={"participant_id": participant.id, "wave": wave.code, "reason": "revoked"},
    )
    session.flush()
    return link


def link_status(
    session: Session, participant: Participant, settings: Settings, *, now: datetime | None = None
) -> list[LinkStatus]:
    """Every wave of the participant with its link state and what the form can offer."""
    now = now or utcnow()
    study = session.get(Study, participant.study_id)
    waves = session.exec(select(Wave).where(Wave.study_id == study.id).order_by(Wave.offset_days, Wave.id)).all()
    links = session.exec(
        select(ParticipantLink).where(ParticipantLink.participant_id == participant.id).order_by(ParticipantLink.id)
    ).all()
    latest = {link.wave_id: link for link in links}  # ordered by id: the last one wins
    out = []
    for w in waves:
        _, _, _, opens_at, closes_at = window(study, participant, w)
        offered = _offered(session, participant, w)
        link = latest.get(w.id)
        if link is None:
            state = "none"
        elif link.revoked_at is not None:
            state = "revoked"
        elif offered and all(o.completed for o in offered if o.offered):
            state = "completed"
        elif now >= dates.add_time(closes_at, _grace(settings)):
            state = "expired"
        elif now < opens_at:
            state = "not_open"
        else:
            state = "active"
        out.append(
            LinkStatus(
                wave=w.code,
                state=state,
                issued_at=link.created_at if link else None,
                expires_at=link.expires_at if link else None,
                opens_at=opens_at,
                closes_at=closes_at,
                instruments=offered,
                url=link_url(link, settings) if state in ("active", "not_open") else None,
            )
        )
    return out


def mark_used(session: Session, link: ParticipantLink, now: datetime | None = None) -> None:
    """Record when a link was last used (shown to coordinators; not study data, not audited)."""
    link.last_used_at = now or utcnow()
    session.add(link)
