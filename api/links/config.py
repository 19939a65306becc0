"""Settings of personal links and of the failed-attempt limiter (environment variables).

Examples
--------
>>> LinkSettings(PEERLENS_LINK_GRACE_DAYS=2).grace_days
2
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LinkSettings(BaseSettings):
    """``PEERLENS_LINK_GRACE_DAYS``: days a link stays usable after its wave window closes.
    ``PEERLENS_FAIL_LIMIT`` failed token or link attempts per ``PEERLENS_FAIL_WINDOW_SECONDS``
    from one client address, after which that address gets 429 until the window slides on."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    grace_days: int = Field(3, alias="PEERLENS_LINK_GRACE_DAYS", ge=0, le=365)
    fail_limit: int = Field(20, alias="PEERLENS_FAIL_LIMIT", ge=1)
    fail_window_seconds: float = Field(60.0, alias="PEERLENS_FAIL_WINDOW_SECONDS", gt=0)


@lru_cache
def get_link_settings() -> LinkSettings:
    return LinkSettings()
