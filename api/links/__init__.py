"""Personal form links: one unguessable, revocable link per participant and wave.

``issue_link`` and ``resolve`` are the two entry points other domains use (the reminders put the
link into their messages; the participant web forms resolve it).
"""

from api.links.service import LinkContext, issue_link, resolve, revoke_link  # noqa: F401
