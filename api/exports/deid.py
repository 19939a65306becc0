"""De-identification helpers: the stable per-participant date shift.

The shift is ``HMAC-SHA256(secret, "study_id:participant_id")`` reduced to 0-364 days, the same for
every date of a participant (intervals survive) and unguessable without the server secret.

Examples
--------
>>> a = shift_days("s3cret", 1, 42)
>>> 0 <= a <= 364 and a == shift_days("s3cret", 1, 42)
True
>>> shift_days("s3cret", 1, 42) == shift_days("other", 1, 42)
False
"""

from __future__ import annotations

import hashlib
import hmac


def shift_days(secret: str, study_id: int, participant_id: int) -> int:
    """Days (0-364) by which every date of one participant is moved back."""
    digest = hmac.new(secret.encode(), f"{study_id}:{participant_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % 365
