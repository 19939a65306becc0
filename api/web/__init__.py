"""Participant-facing web forms (server-rendered, no JavaScript needed) and their protections: the
form routes (:mod:`.router`), the failed-attempt limiter (:mod:`.ratelimit`) and the redaction of
link tokens from logs (:mod:`.logfilter`), all wired in :func:`api.main.create_app`."""
