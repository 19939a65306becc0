"""Blinded analysis: analysts read arms as neutral labels until an admin unblinds the study.

Until the study's :class:`~api.sap.models.StudyUnblinding` row exists, every de-identified reader
(:func:`api.auth.policy.blind_to_arms`) sees arms as ``A``, ``B``, ``C``… in every read, export,
data dictionary, analysis and report; arm names, kinds (intervention/control) and ids are withheld.
The letters follow an order keyed by an HMAC of the study's stored randomisation seed, so the
mapping is random, the same in every call and every process, and cannot be recomputed without the
seed (shown to admins only). Unblinding is audited and irreversible.

:func:`arm_labels` is what every surface calls, through
:class:`api.exports.deid.Deidentification` where it reads de-identified data.

Examples
--------
>>> order = neutral_order("s33d", 4, [10, 11, 12])
>>> sorted(order.values())
['A', 'B', 'C']
>>> order == neutral_order("s33d", 4, [12, 10, 11])
True
>>> letter(0), letter(25), letter(26)
('A', 'Z', 'AA')
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, select

from api.audit.service import record
from api.auth import policy
from api.auth.service import Actor
from api.errors import Conflict, NotFound
from api.sap.models import StudyUnblinding
from api.studies.models import Arm, Study


def letter(i: int) -> str:
    """``A`` … ``Z``, ``AA`` … for the ``i``-th arm (0-based)."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(ord("A") + r) + out
    return out


def neutral_order(seed: str, study_id: int, arm_ids: Iterable[int]) -> dict[int, str]:
    """``{arm id: letter}``: arms ordered by an HMAC of ``seed``, then lettered A, B, C…"""

    def key(arm_id: int) -> str:
        return hmac.new(seed.encode(), f"arm-blind:{study_id}:{arm_id}".encode(), hashlib.sha256).hexdigest()

    return {a: letter(i) for i, a in enumerate(sorted(arm_ids, key=key))}


def unblinding(session: Session, study_id: int) -> StudyUnblinding | None:
    """The study's unblinding record (None while it is blinded)."""
    return session.get(StudyUnblinding, study_id)


def is_unblinded(session: Session, study_id: int) -> bool:
    return unblinding(session, study_id) is not None


def blinded(session: Session, study_id: int, actor: Actor | None) -> bool:
    """Whether ``actor`` reads the study's arms as neutral labels (None: the system, never)."""
    if actor is None or not policy.deidentified(actor):
        return False  # staff are never blind to the arms: no need to look the unblinding up
    return policy.blind_to_arms(actor, unblinded=is_unblinded(session, study_id))


def neutral_labels(session: Session, study_id: int) -> dict[int, str]:
    """``{arm id: neutral letter}`` of the study (the blinded mapping, whoever asks)."""
    study = session.get(Study, study_id)
    if study is None:
        return {}
    ids = session.exec(select(Arm.id).where(Arm.study_id == study_id)).all()
    return neutral_order(study.randomisation_seed, study_id, [i for i in ids if i is not None])


def arm_labels(session: Session, study_id: int, actor: Actor | None) -> dict[int, str]:
    """``{arm id: label}`` as ``actor`` may read them: neutral letters while ``actor`` is blind,
    the arm codes otherwise."""
    if blinded(session, study_id, actor):
        return neutral_labels(session, study_id)
    return {a.id: a.code for a in session.exec(select(Arm).where(Arm.study_id == study_id)).all() if a.id is not None}


def arm_names(session: Session, study_id: int, actor: Actor | None) -> dict[int, str]:
    """``{arm id: human-readable name}`` for tables and plots: ``Arm A`` … while ``actor`` is
    blind, the arms' names otherwise."""
    if blinded(session, study_id, actor):
        return {i: f"Arm {label}" for i, label in neutral_labels(session, study_id).items()}
    return {a.id: a.name for a in session.exec(select(Arm).where(Arm.study_id == study_id)).all() if a.id is not None}


def masked_arms(session: Session, study_id: int, actor: Actor | None) -> list[dict[str, Any]] | None:
    """The study's arms as a blind reader sees them (label only, sorted), or None when ``actor``
    is not blind (the caller shows the real rows)."""
    if not blinded(session, study_id, actor):
        return None
    arms = {a.id: a for a in session.exec(select(Arm).where(Arm.study_id == study_id)).all()}
    labels = neutral_labels(session, study_id)
    return [
        {
            "id": None,
            "study_id": study_id,
            "code": label,
            "name": f"Arm {label}",
            "kind": None,
            "allocation_ratio": arms[arm_id].allocation_ratio,
        }
        for arm_id, label in sorted(labels.items(), key=lambda kv: (len(kv[1]), kv[1]))
    ]


def status(session: Session, study: Study, actor: Actor) -> dict[str, Any]:
    """What ``actor`` should know about the study's blinding (``GET /studies/{id}/blinding``)."""
    row = unblinding(session, study.id)
    return {
        "study_id": study.id,
        "unblinded": row is not None,
        "unblinded_at": row.unblinded_at if row is not None else None,
        "blind": blinded(session, study.id, actor),
        "arms": sorted(arm_labels(session, study.id, actor).values()),
    }


def unblind(session: Session, study: Study, actor: Actor, reason: str) -> StudyUnblinding:
    """Unblind the study for everyone (admins only; audited; irreversible: a second call is a 409)."""
    policy.ensure_admin(actor, "unblind a study")
    if study.id is None or session.get(Study, study.id) is None:
        raise NotFound(["path", "study_id"], "study not found", "not_found")
    if unblinding(session, study.id) is not None:
        raise Conflict(["path", "study_id"], "the study is already unblinded; unblinding cannot be undone", "unblinded")
    masked = neutral_labels(session, study.id)
    codes = {a.id: a.code for a in session.exec(select(Arm).where(Arm.study_id == study.id)).all()}
    row = StudyUnblinding(study_id=study.id, unblinded_by=actor.user_id, reason=reason)
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "study.unblind",
        "study_unblinding",
        study.id,
        study_id=study.id,
        after={
            "unblinded_at": row.unblinded_at.isoformat(),
            "reason": reason,
            # The key an analyst needs to read results produced while blind.
            "labels": {masked[i]: codes[i] for i in masked if i in codes},
        },
        reason=reason,
    )
    return row
