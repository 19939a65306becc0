"""Instrument definitions as data and one scoring engine.

Examples
--------
>>> import instruments
>>> [s.value for s in instruments.score("phq4", {"phq4_1": 1, "phq4_2": 2, "phq4_3": 0, "phq4_4": 1})]
[3.0, 1.0, 4.0]
"""

from .alerts import AlertHit, evaluate_alerts
from .completeness import missing_rules
from .completeness import status as completeness
from .engine import reverse_value, score, validate
from .fhir import to_fhir_questionnaire, to_fhir_questionnaire_response
from .frames import score_frame, scored_items
from .model import (
    AlertRule,
    Band,
    Flag,
    Instrument,
    InstrumentError,
    Item,
    Option,
    Problem,
    Scale,
    Score,
    ValidationFailed,
)
from .redcap import from_redcap_dictionary
from .registry import (
    Calibration,
    all_instruments,
    clear_calibration,
    codes,
    get,
    load_calibration,
    load_wording,
    register,
    unregister,
)

__all__ = [
    "get",
    "codes",
    "all_instruments",
    "register",
    "unregister",
    "validate",
    "score",
    "score_frame",
    "scored_items",
    "load_calibration",
    "clear_calibration",
    "load_wording",
    "from_redcap_dictionary",
    "to_fhir_questionnaire",
    "to_fhir_questionnaire_response",
    "reverse_value",
    "evaluate_alerts",
    "completeness",
    "missing_rules",
    "AlertRule",
    "AlertHit",
    "Calibration",
    "Option",
    "Item",
    "Band",
    "Scale",
    "Flag",
    "Instrument",
    "Score",
    "Problem",
    "InstrumentError",
    "ValidationFailed",
]
