"""Signed unsubscribe tokens: ``<participant id base36>.<HMAC-SHA256, base64url, 22 chars>``.

The token names a participant by internal id only (no identifier) and cannot be forged without
the service's secret key.

Examples
--------
>>> t = sign("k", 42)
>>> verify("k", t)
42
>>> verify("other-key", t) is None
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_PURPOSE = b"peerlens-unsubscribe:"


def _mac(secret: str, pid: int) -> str:
    digest = hmac.new(secret.encode(), _PURPOSE + str(pid).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:22]


def _b36(n: int) -> str:
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = chars[r] + out
        if n == 0:
            return out


def sign(secret: str, participant_id: int) -> str:
    return f"{_b36(participant_id)}.{_mac(secret, participant_id)}"


def verify(secret: str, token: str) -> int | None:
    """The participant id of a valid token, else None."""
    head, sep, mac = token.partition(".")
    if not sep or not head or len(head) > 12 or len(mac) != 22:
        return None
    try:
        pid = int(head, 36)
    except ValueError:
        return None
    return pid if hmac.compare_digest(mac, _mac(secret, pid)) else None
