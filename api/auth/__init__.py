"""Users, tokens and the ``authorize`` dependency."""

from api.auth.dependencies import authorize, ensure_site_access  # noqa: F401
from api.auth.service import Actor  # noqa: F401
