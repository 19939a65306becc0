"""Every table of the service, imported in one place for ``metadata`` (Alembic, tests).

Each domain keeps its models in ``api/<domain>/models.py``; a new domain adds one import here.
"""

from api.audit.models import AuditEvent  # noqa: F401
from api.auth.models import ApiToken, User, UserSite  # noqa: F401
from api.console.models import ConsoleSession, UserCredential  # noqa: F401
from api.context.models import (  # noqa: F401
    CmoConfiguration,
    ContextEvent,
    ContextRecord,
    GoalRating,
    LogicModel,
    PersonalGoal,
)
from api.db import metadata  # noqa: F401  (naming convention first)
from api.delivery.models import (  # noqa: F401
    DeliveryPlan,
    DeliverySession,
    ForumActivity,
    GroupMembership,
    PeerContact,
    PeerGroup,
    PeerSupporter,
    PeerSupporterContact,
    SessionAttendance,
    TidierDescription,
    TrainingModule,
    TrainingProgramme,
    TrainingRecord,
)
from api.exports.models import ExportSettings  # noqa: F401
from api.fidelity.models import Adaptation, FidelityChecklist, FidelityRating  # noqa: F401
from api.interop.models import StudyInstrument  # noqa: F401
from api.licensed.models import LicensedContent  # noqa: F401
from api.links.models import FormDraft, ParticipantLink  # noqa: F401
from api.participants.models import (  # noqa: F401
    Allocation,
    AllocationStratum,
    Participant,
    ParticipantContact,
)
from api.reminders.models import Reminder, ReminderConfig, ReminderPlan, StaffNotification  # noqa: F401
from api.reports.models import ScreeningEntry  # noqa: F401
from api.responses.models import IdempotencyKey, Response, Score  # noqa: F401
from api.safety.models import (  # noqa: F401
    AdverseEvent,
    AdverseEventFollowUp,
    SafetyAlert,
    SafetyContact,
    SafetySettings,
)
from api.sap.models import AnalysisPlan, StudyUnblinding  # noqa: F401
from api.studies.models import Arm, Site, SiteContact, Study, Wave  # noqa: F401
from api.transcripts.models import (  # noqa: F401
    CodeHistory,
    MetaInference,
    QualCode,
    QualCoding,
    QualMemo,
    Suggestion,
    Transcript,
    TranscriptOriginal,
)
