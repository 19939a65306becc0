"""Every route × every kind of caller, from ``app.routes``.

The table ``RULES`` (built by :func:`rules`, which refuses a route written twice) says, for each
route, which roles its ``authorize(...)`` admits, how it is scoped (``global``, ``study``: both
site coordinators of the study, ``site``: only the coordinator of the record's site) and which
status an admitted caller gets for the request made here (write routes get an empty body, so an
admitted caller sees the body's 422 after the role and site checks). A route missing from the
table, or whose declared roles differ from the table, fails the test by name. Every body is also
scanned for the other site's records and for identifiers a role may not see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount

from api.auth.dependencies import route_roles

ADMIN = ("admin",)
STAFF = ("admin", "coordinator")
READ = ("admin", "coordinator", "analyst")
PROCESS = ("admin", "coordinator", "analyst", "evaluator")  # the design and process records: evaluators too
RATERS = ("admin", "evaluator")
PROCESS_WRITE = ("admin", "coordinator", "evaluator")
CALLERS = ("admin", "coord_a", "coord_b", "analyst", "evaluator", "none", "expired", "link")


@dataclass(frozen=True)
class Rule:
    roles: tuple[str, ...] | None  # what authorize(...) declares; None = no bearer token involved
    scope: str  # global | study | site | public | link
    ok: frozenset[int]  # statuses an admitted caller may get here


def R(roles, scope, *ok):
    return Rule(roles, scope, frozenset(ok))


def rules(*rows: tuple[str, str, Rule]) -> dict[tuple[str, str], Rule]:
    """The table keyed by (method, path); a route written twice is an error, not a silent override."""
    table: dict[tuple[str, str], Rule] = {}
    for method, path, rule in rows:
        if (method, path) in table:
            raise ValueError(f"two rules for {method} {path}")
        table[(method, path)] = rule
    return table


RULES = rules(
    # studies (design: admins write)
    ("POST", "/studies", R(ADMIN, "global", 422)),
    ("GET", "/studies", R(PROCESS, "global", 200)),
    ("GET", "/studies/{study_id}", R(PROCESS, "study", 200)),
    ("PATCH", "/studies/{study_id}", R(ADMIN, "study", 200)),
    ("POST", "/studies/{study_id}/sites", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/sites", R(PROCESS, "study", 200)),
    ("PUT", "/studies/{study_id}/sites/{site_code}/contact", R(ADMIN, "study", 422)),  # phone is required
    ("POST", "/studies/{study_id}/arms", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/arms", R(PROCESS, "study", 200)),
    ("POST", "/studies/{study_id}/waves", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/waves", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/allocation", R(ADMIN, "study", 200)),
    ("GET", "/studies/{study_id}/audit", R(ADMIN, "study", 200)),
    # participants
    ("POST", "/studies/{study_id}/participants", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/participants", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/participants/{participant_id}", R(READ, "site", 200)),
    ("GET", "/participants/{participant_id}", R(READ, "site", 200)),
    ("PATCH", "/participants/{participant_id}", R(STAFF, "site", 200)),
    ("GET", "/participants/{participant_id}/schedule", R(READ, "site", 200)),
    ("POST", "/participants/{participant_id}/corrections", R(STAFF, "site", 422)),
    ("POST", "/participants/{participant_id}/void", R(STAFF, "site", 422)),
    ("POST", "/participants/{participant_id}/withdrawals", R(STAFF, "site", 422)),
    ("POST", "/participants/{participant_id}/withdrawals/{kind}/retract", R(STAFF, "site", 422)),  # no reason
    ("POST", "/participants/{participant_id}/restore", R(STAFF, "site", 422)),  # no reason
    ("GET", "/studies/{study_id}/participant-flow", R(READ, "study", 200)),
    # responses and instruments
    ("POST", "/participants/{participant_id}/responses", R(STAFF, "site", 422)),
    ("GET", "/participants/{participant_id}/responses", R(READ, "site", 200)),
    ("GET", "/participants/{participant_id}/observations", R(STAFF, "site", 200)),
    ("GET", "/participants/{participant_id}/fhir", R(STAFF, "site", 200)),
    ("POST", "/participants/{participant_id}/fhir/QuestionnaireResponse", R(STAFF, "site", 422)),
    ("GET", "/instruments", R(READ, "global", 200)),
    ("GET", "/instruments/{code}", R(READ, "global", 200)),
    ("GET", "/me", R(("admin", "coordinator", "analyst", "evaluator"), "global", 200)),  # every role
    ("GET", "/audit", R(ADMIN, "global", 200)),
    # user administration (the ids in the path are made up here: an admin gets 404)
    ("GET", "/users", R(ADMIN, "global", 200)),
    ("POST", "/users/{user_id}/deactivate", R(ADMIN, "global", 404)),
    ("POST", "/users/{user_id}/reactivate", R(ADMIN, "global", 404)),
    ("POST", "/users/{user_id}/tokens/revoke", R(ADMIN, "global", 404)),
    ("POST", "/users/{user_id}/tokens/{token_id}/revoke", R(ADMIN, "global", 404)),
    # personal links and the participant form
    ("GET", "/participants/{participant_id}/links", R(STAFF, "site", 200)),
    ("POST", "/participants/{participant_id}/links", R(STAFF, "site", 422)),
    ("DELETE", "/participants/{participant_id}/links/{wave_code}", R(STAFF, "site", 204)),
    ("GET", "/f/{token}", R(("link",), "link", 200)),
    ("POST", "/f/{token}", R(("link",), "link", 403)),  # no CSRF token in this request
    # reminders
    ("GET", "/studies/{study_id}/reminder-plans", R(STAFF, "study", 200)),
    ("PUT", "/studies/{study_id}/reminder-plans", R(STAFF, "study", 200)),  # {} = keep defaults
    ("GET", "/studies/{study_id}/tasks", R(STAFF, "study", 200)),
    # licensed instrument content (no file: an admin gets 422 naming it)
    ("GET", "/licensed", R(ADMIN, "global", 200)),
    ("POST", "/licensed/{instrument}/wording", R(ADMIN, "global", 422)),
    ("POST", "/licensed/{instrument}/calibration", R(ADMIN, "global", 422)),
    ("POST", "/studies/{study_id}/reminders/pause", R(STAFF, "study", 200)),
    ("POST", "/studies/{study_id}/reminders/resume", R(STAFF, "study", 200)),
    ("GET", "/studies/{study_id}/reminders", R(STAFF, "study", 200)),
    ("GET", "/participants/{participant_id}/reminders", R(STAFF, "site", 200)),
    ("GET", "/u/{token}", R(None, "public", 404)),  # own signed token; a made-up one is unknown
    ("POST", "/u/{token}", R(None, "public", 404)),
    # REDCap clients send their token in the form body (tests/api/test_redcap_api.py): a bearer header opens nothing.
    ("POST", "/studies/{study_id}/redcap/api/", R(None, "public", 403)),
    # exports and REDCap interchange (study-level: both coordinators, each gets their own sites' rows)
    ("GET", "/studies/{study_id}/export-settings", R(READ, "study", 200)),
    ("PUT", "/studies/{study_id}/export-settings", R(ADMIN, "study", 200)),  # {} = defaults; study-wide
    ("GET", "/studies/{study_id}/exports/redcap", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/exports/redcap/dictionary", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/exports/odm", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/exports/{shape}", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/exports/{shape}/dictionary", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/export-receipts/{request_id}", R(READ, "study", 404)),  # no such export
    ("POST", "/studies/{study_id}/imports/redcap", R(STAFF, "study", 422)),
    ("POST", "/studies/{study_id}/imports/measures", R(STAFF, "study", 422)),
    ("POST", "/studies/{study_id}/imports/participants", R(STAFF, "study", 422)),
    # transcripts and qualitative coding: records by id get a made-up id, which is 404 for every
    # admitted role after the role check (site scoping of transcripts is tested in test_transcripts.py)
    ("POST", "/studies/{study_id}/transcripts", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/transcripts", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/transcripts/search", R(READ, "study", 422)),  # q is required
    ("GET", "/transcripts/{transcript_id}", R(READ, "global", 404)),
    ("GET", "/transcripts/{transcript_id}/original", R(ADMIN, "global", 404)),
    ("POST", "/studies/{study_id}/codes", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/codes", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/codes/history", R(READ, "study", 200)),
    ("PATCH", "/codes/{code_id}", R(STAFF, "global", 404)),
    ("DELETE", "/codes/{code_id}", R(STAFF, "global", 404)),
    ("POST", "/studies/{study_id}/memos", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/memos", R(READ, "study", 200)),
    ("POST", "/transcripts/{transcript_id}/codings", R(STAFF, "global", 404)),
    ("GET", "/transcripts/{transcript_id}/codings", R(READ, "global", 404)),
    ("DELETE", "/codings/{coding_id}", R(STAFF, "global", 404)),
    ("GET", "/studies/{study_id}/codes/{code_id}/segments", R(READ, "study", 404)),
    ("GET", "/studies/{study_id}/coding/co-occurrence", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/coding/crosstab", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/coding/agreement", R(READ, "study", 422)),  # no two coders yet
    ("GET", "/studies/{study_id}/coding/disagreements", R(READ, "study", 422)),
    ("POST", "/transcripts/{transcript_id}/suggestions", R(STAFF, "global", 404)),
    ("GET", "/transcripts/{transcript_id}/suggestions", R(READ, "global", 404)),
    ("POST", "/suggestions/{suggestion_id}/accept", R(STAFF, "global", 404)),
    ("POST", "/suggestions/{suggestion_id}/reject", R(STAFF, "global", 404)),
    ("GET", "/studies/{study_id}/refi/codebook.qdc", R(READ, "study", 409)),  # empty codebook
    ("GET", "/studies/{study_id}/refi/project.qdpx", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/codebook.csv", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/refi/import", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/qualitative/indicators", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/qualitative/joint-display", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/qualitative/joint-display", R(READ, "study", 422)),  # needs its query
    ("GET", "/studies/{study_id}/qualitative/trajectory-matrix", R(READ, "study", 422)),  # needs its query
    ("GET", "/studies/{study_id}/qualitative/case-matrix", R(READ, "study", 422)),  # needs its query
    ("PUT", "/studies/{study_id}/qualitative/meta-inferences", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/qualitative/meta-inferences", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/qualitative/runs/{run_id}/{filename}", R(READ, "study", 404)),
    # analyses: computations on the study's data (no change to it), analysts included
    ("POST", "/studies/{study_id}/analyses/trajectory", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/moderation", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/reliability", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/analyses/effect-sizes", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/responders", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/retention", R(READ, "study", 200)),  # {} = defaults; KM of one is fine
    ("POST", "/studies/{study_id}/analyses/attrition", R(READ, "study", 200)),  # {} = defaults
    ("POST", "/studies/{study_id}/analyses/power", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/trial", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/gee", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/missing-data", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/what-works-for-whom", R(READ, "study", 422)),  # no CMOs yet
    ("POST", "/studies/{study_id}/analyses/site-heterogeneity", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/mediation", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/cace", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/dose-response", R(READ, "study", 422)),
    ("POST", "/studies/{study_id}/analyses/gas", R(READ, "study", 422)),
    ("GET", "/studies/{study_id}/analyses/runs/{run_id}/{filename}", R(READ, "study", 404)),
    # context: site records scoped in the service (coordinators write their sites'), programme theory
    # and CMO configurations by admins; goals' wording for staff only
    ("GET", "/studies/{study_id}/context/records", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/context/records", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/context/events", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/context/events", R(STAFF, "study", 422)),
    ("PATCH", "/studies/{study_id}/context/events/{context_event_id}", R(STAFF, "study", 404)),
    ("GET", "/studies/{study_id}/goals", R(STAFF, "study", 200)),
    ("POST", "/studies/{study_id}/goals", R(STAFF, "study", 422)),
    ("POST", "/studies/{study_id}/goals/{goal_id}/ratings", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/logic-model", R(READ, "study", 404)),  # none yet
    ("PUT", "/studies/{study_id}/logic-model", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/cmos", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/cmos", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/cmos/{cmo_id}", R(READ, "study", 404)),
    ("PATCH", "/studies/{study_id}/cmos/{cmo_id}", R(ADMIN, "study", 404)),
    ("GET", "/studies/{study_id}/realist-table", R(READ, "study", 422)),  # no CMO configurations yet
    # the screening log (coordinators record their own sites) and the trial report (a computation)
    ("POST", "/studies/{study_id}/screening", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/screening", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/screening/summary", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/reports", R(READ, "study", 201)),
    ("GET", "/studies/{study_id}/reports/runs/{run_id}/{filename}", R(READ, "study", 404)),
    # safety: settings (admins write), status, messages, DMC views (summary: analysts see masked
    # arms), alerts and adverse events of pa (site north: coordinator B gets 404)
    ("GET", "/studies/{study_id}/safety/settings", R(STAFF, "study", 200)),
    ("PUT", "/studies/{study_id}/safety/settings", R(ADMIN, "study", 200)),  # {} keeps everything
    ("GET", "/studies/{study_id}/safety/status", R(STAFF, "study", 200)),
    ("GET", "/studies/{study_id}/safety/notifications", R(STAFF, "study", 200)),
    ("GET", "/studies/{study_id}/safety/summary", R(("admin", "analyst"), "study", 200)),
    ("GET", "/studies/{study_id}/safety/line-listing", R(ADMIN, "study", 200)),
    # statistical analysis plan (admins write; version 9999 does not exist) and blinding; the
    # empty unblinding body is refused (422), so the matrix never unblinds its study
    ("POST", "/studies/{study_id}/analysis-plans", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/analysis-plans", R(READ, "study", 200)),
    ("GET", "/studies/{study_id}/analysis-plans/{version}", R(READ, "study", 404)),
    ("PUT", "/studies/{study_id}/analysis-plans/{version}", R(ADMIN, "study", 422)),
    ("POST", "/studies/{study_id}/analysis-plans/{version}/lock", R(ADMIN, "study", 404)),
    ("GET", "/studies/{study_id}/analysis-plans/{version}/deviations", R(READ, "study", 404)),
    ("GET", "/studies/{study_id}/blinding", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/unblind", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/alerts", R(STAFF, "study", 200)),
    ("GET", "/participants/{participant_id}/alerts", R(STAFF, "site", 200)),
    ("GET", "/alerts/{alert_id}", R(STAFF, "site", 200)),
    ("PATCH", "/alerts/{alert_id}", R(STAFF, "site", 422)),  # owner_id is required
    ("POST", "/alerts/{alert_id}/acknowledge", R(STAFF, "site", 200, 409)),  # once, then already acknowledged
    ("POST", "/alerts/{alert_id}/resolve", R(STAFF, "site", 422)),  # action is required
    ("GET", "/studies/{study_id}/adverse-events", R(STAFF, "study", 200)),
    ("GET", "/participants/{participant_id}/adverse-events", R(STAFF, "site", 200)),
    ("POST", "/participants/{participant_id}/adverse-events", R(STAFF, "site", 422)),
    ("GET", "/adverse-events/{event_id}", R(STAFF, "site", 200)),
    ("PATCH", "/adverse-events/{event_id}", R(STAFF, "site", 422)),  # reason is required
    ("POST", "/adverse-events/{event_id}/follow-ups", R(STAFF, "site", 422)),  # note is required
    # staff console: cookie sessions only, so every bearer caller is sent to the sign-in page (303);
    # the console's own role × site matrix with signed-in sessions is tests/api/test_console.py
    ("GET", "/console/sign-in", R(None, "public", 200)),
    ("POST", "/console/sign-in", R(None, "public", 403)),  # no CSRF token
    ("POST", "/console/sign-out", R(READ, "console", 303)),
    ("GET", "/console", R(READ, "console", 303)),
    ("GET", "/console/studies/{study_id}", R(READ, "console", 303)),
    ("GET", "/console/studies/{study_id}/exports", R(READ, "console", 303)),
    ("GET", "/console/studies/{study_id}/exports/download", R(READ, "console", 303)),
    ("GET", "/console/studies/{study_id}/enrol", R(STAFF, "console", 303)),
    ("POST", "/console/studies/{study_id}/enrol", R(STAFF, "console", 303)),
    ("GET", "/console/participants/{participant_id}", R(STAFF, "console", 303)),
    ("GET", "/console/participants/{participant_id}/enter", R(STAFF, "console", 303)),
    ("POST", "/console/participants/{participant_id}/enter", R(STAFF, "console", 303)),
    ("POST", "/console/participants/{participant_id}/links", R(STAFF, "console", 303)),
    ("POST", "/console/participants/{participant_id}/links/revoke", R(STAFF, "console", 303)),
    ("POST", "/console/participants/{participant_id}/status", R(STAFF, "console", 303)),
    ("POST", "/console/participants/{participant_id}/withdrawals", R(STAFF, "console", 303)),
    ("POST", "/console/participants/{participant_id}/withdrawals/retract", R(STAFF, "console", 303)),
    ("GET", "/console/studies/{study_id}/alerts", R(STAFF, "console", 303)),
    ("POST", "/console/studies/{study_id}/alerts/acknowledge", R(STAFF, "console", 303)),
    ("GET", "/console/studies/{study_id}/delivery", R(STAFF, "console", 303)),
    ("POST", "/console/studies/{study_id}/delivery/sessions", R(STAFF, "console", 303)),
    ("GET", "/console/sessions/{session_id}", R(STAFF, "console", 303)),
    ("POST", "/console/sessions/{session_id}", R(STAFF, "console", 303)),
    ("POST", "/console/sessions/{session_id}/cancel", R(STAFF, "console", 303)),
    # delivery (process evaluation): plans and TIDieR per arm (design: admins write); records with
    # calendar dates about people are staff-only (analysts read them in the delivery export shapes);
    # records by id get a made-up id (404 after the role check; site scoping in test_delivery.py)
    ("GET", "/studies/{study_id}/arms/{arm_code}/delivery-plan", R(READ, "study", 404)),  # no plan yet
    ("PUT", "/studies/{study_id}/arms/{arm_code}/delivery-plan", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/arms/{arm_code}/tidier", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/arms/{arm_code}/tidier", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/arms/{arm_code}/tidier/versions", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/delivery/supporters", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/delivery/supporters", R(STAFF, "study", 200)),
    ("GET", "/delivery/supporters/{supporter_id}", R(STAFF, "global", 404)),
    ("PATCH", "/delivery/supporters/{supporter_id}", R(STAFF, "global", 404)),
    ("POST", "/delivery/supporters/{supporter_id}/training", R(STAFF, "global", 404)),
    ("GET", "/delivery/supporters/{supporter_id}/training", R(STAFF, "global", 404)),
    ("POST", "/studies/{study_id}/delivery/training-programmes", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/delivery/training-programmes", R(READ, "study", 200)),
    ("POST", "/studies/{study_id}/delivery/groups", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/delivery/groups", R(STAFF, "study", 200)),
    ("GET", "/delivery/groups/{group_id}", R(STAFF, "global", 404)),
    ("POST", "/delivery/groups/{group_id}/members", R(STAFF, "global", 404)),
    ("PATCH", "/delivery/groups/{group_id}/members/{member_id}", R(STAFF, "global", 404)),
    ("POST", "/studies/{study_id}/delivery/sessions", R(STAFF, "study", 422)),
    ("GET", "/studies/{study_id}/delivery/sessions", R(PROCESS_WRITE, "study", 200)),  # evaluators: what to rate
    ("GET", "/delivery/sessions/{session_id}", R(PROCESS_WRITE, "global", 404)),
    ("PATCH", "/delivery/sessions/{session_id}", R(STAFF, "global", 404)),
    ("PUT", "/delivery/sessions/{session_id}/attendance", R(STAFF, "global", 404)),
    ("GET", "/delivery/sessions/{session_id}/attendance", R(STAFF, "global", 404)),
    ("POST", "/participants/{participant_id}/peer-contacts", R(STAFF, "site", 422)),
    ("GET", "/studies/{study_id}/delivery/contacts", R(STAFF, "study", 200)),
    ("POST", "/studies/{study_id}/delivery/forum-activity", R(STAFF, "study", 422)),  # no file
    ("GET", "/studies/{study_id}/delivery/dose", R(READ, "study", 200)),
    # fidelity and adaptations (ratings and adaptations by id get a made-up id: 404 after the role check)
    ("GET", "/fidelity/templates", R(PROCESS, "global", 200)),
    ("POST", "/studies/{study_id}/fidelity/checklists", R(ADMIN, "study", 422)),
    ("GET", "/studies/{study_id}/fidelity/checklists", R(PROCESS, "study", 200)),
    ("POST", "/studies/{study_id}/fidelity/ratings", R(RATERS, "study", 422)),
    ("GET", "/studies/{study_id}/fidelity/ratings", R(PROCESS, "study", 200)),
    ("GET", "/fidelity/ratings/{rating_id}", R(PROCESS, "global", 404)),
    ("PATCH", "/fidelity/ratings/{rating_id}", R(RATERS, "global", 404)),
    ("GET", "/studies/{study_id}/fidelity/summary", R(PROCESS, "study", 200)),
    ("GET", "/studies/{study_id}/fidelity/agreement", R(PROCESS, "study", 422)),  # checklist is required
    ("POST", "/studies/{study_id}/adaptations", R(PROCESS_WRITE, "study", 422)),
    ("GET", "/studies/{study_id}/adaptations", R(PROCESS, "study", 200)),
    ("GET", "/adaptations/{adaptation_id}", R(PROCESS, "global", 404)),
    ("PATCH", "/adaptations/{adaptation_id}", R(PROCESS_WRITE, "global", 404)),
    # public
    ("GET", "/health", R(None, "public", 200)),
)
# Routes that carry outcome data (responses, scores, exports, analyses, qualitative joins): an
# evaluator, independent of delivery and blind to outcomes by arm, is refused every one of them.
OUTCOME_ROUTES = [
    k
    for k in RULES
    if k[0] == "GET"
    and any(s in k[1] for s in ("/responses", "/exports/", "/allocation", "/qualitative/", "/safety/summary"))
] + [k for k in RULES if "/analyses/" in k[1]]
# Framework pages (documentation) and the stylesheet: public, no data.
PUBLIC_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
PUBLIC_MOUNTS = {"/static", "/docs-assets", "/console-assets"}


def app_routes(app) -> dict[tuple[str, str], APIRoute]:
    out = {}
    for route in app.routes:
        if isinstance(route, Mount):
            assert route.path in PUBLIC_MOUNTS, f"unexpected mount {route.path}: add a rule"
            continue
        if not isinstance(route, APIRoute):
            assert route.path in PUBLIC_PATHS, f"route {route.path} is not an APIRoute and not a known public page"
            continue
        for method in route.methods - {"HEAD"}:
            out[(method, route.path)] = route
    return out


def test_a_route_written_twice_is_refused():
    with pytest.raises(ValueError, match="two rules for GET /me"):
        rules(("GET", "/me", R(READ, "global", 200)), ("GET", "/me", R(ADMIN, "global", 404)))


def test_every_route_has_a_rule_matching_its_authorize(app):
    routes = app_routes(app)
    missing = sorted(f"{m} {p}" for (m, p) in routes if (m, p) not in RULES)
    assert not missing, f"routes without an access rule in RULES: {missing}"
    stale = sorted(f"{m} {p}" for (m, p) in RULES if (m, p) not in routes)
    assert not stale, f"rules for routes that no longer exist: {stale}"
    wrong = {
        f"{m} {p}": (route_roles(r), RULES[(m, p)].roles)
        for (m, p), r in routes.items()
        if route_roles(r) != RULES[(m, p)].roles
    }
    assert not wrong, f"declared roles differ from the table (declared, table): {wrong}"
    # analysts never write (analyses and reports are computations posted with a body, not changes;
    # signing out of the console ends one's own session)
    assert all(
        "analyst" not in (rule.roles or ())
        for (m, p), rule in RULES.items()
        if m != "GET" and "/analyses/" not in p and not p.endswith("/reports") and p != "/console/sign-out"
    )
    # evaluators change nothing but fidelity ratings and the adaptation log, and read no outcome data
    assert all(
        "evaluator" not in (rule.roles or ())
        for (m, p), rule in RULES.items()
        if m != "GET" and not any(k in p for k in ("/fidelity", "adaptations"))
    )
    assert all("evaluator" not in (RULES[k].roles or ()) for k in OUTCOME_ROUTES)


# --- the matrix --------------------------------------------------------------------------------

SEED = {
    "a": {
        "name": "Ottoline Brackenbury-Fisk",
        "email": "ottoline.bf.4471@example.org",
        "phone": "+44 7700 900461",
        "date_of_birth": "1948-02-29",
    },
    "b": {
        "name": "Cuthbert Zanzibar-Whitlow",
        "email": "cz.whitlow.8820@example.net",
        "phone": "+44 7700 900872",
        "date_of_birth": "1955-11-03",
    },
}


@pytest.fixture(scope="module")
def world(client, app, make_study, enrol, make_user, admin, analyst, engine):
    tz = ZoneInfo("Europe/London")
    study = make_study()
    enrolled = str(datetime.now(tz).date() - timedelta(days=1))
    pa = enrol(
        study,
        site="north",
        enrolled_on=enrolled,
        arm="group",
        study_code="SITEA-REC-91",
        contact={**SEED["a"], "preferred_channel": "email"},
    )
    pb = enrol(
        study,
        site="south",
        enrolled_on=enrolled,
        arm="group",
        study_code="SITEB-REC-37",
        contact={**SEED["b"], "preferred_channel": "email"},
    )
    coord_a = make_user("coordinator", [study.sites["north"]])
    coord_b = make_user("coordinator", [study.sites["south"]])
    expired = make_user("admin", expires_at=datetime.now(UTC) - timedelta(minutes=1))
    evaluator = make_user("evaluator")
    for p in (pa, pb):
        r = client.post(
            f"/participants/{p['id']}/responses",
            headers=admin.headers,
            json={"wave": "baseline", "instrument": "gad7", "answers": {f"gad7_{i}": 1 for i in range(1, 8)}},
        )
        assert r.status_code == 201, r.text
    # a safety alert (at m1, so the baseline form stays open) and an adverse event of participant A
    r = client.post(
        f"/participants/{pa['id']}/responses",
        headers=admin.headers,
        json={
            "wave": "m1",
            "instrument": "phq9",
            "answers": {f"phq9_{i}": 0 for i in range(1, 9)} | {"phq9_9": 1},
        },
    )
    assert r.status_code == 201 and len(r.json()["alerts"]) == 1, r.text
    alert_id = r.json()["alerts"][0]["id"]
    r = client.post(
        f"/participants/{pa['id']}/adverse-events",
        headers=admin.headers,
        json={
            "description": "Sprained ankle",
            "onset_date": enrolled,
            "severity": "mild",
            "relatedness": "not_related",
            "expectedness": "expected",
            "reporter": "participant",
        },
    )
    assert r.status_code == 201, r.text
    event_id = r.json()["id"]
    link = client.post(f"/participants/{pa['id']}/links", json={"wave": "baseline"}, headers=admin.headers)
    assert link.status_code == 201, link.text
    headers = {
        "admin": admin.headers,
        "coord_a": coord_a.headers,
        "coord_b": coord_b.headers,
        "analyst": analyst.headers,
        "evaluator": evaluator.headers,
        "none": {},
        "expired": expired.headers,
        "link": {"Authorization": f"Bearer {link.json()['token']}"},
    }
    return {
        "study": study,
        "pa": pa,
        "pb": pb,
        "headers": headers,
        "link_token": link.json()["token"],
        "alert_id": alert_id,
        "event_id": event_id,
    }


def _url(path: str, world, caller: str) -> str:
    token = world["link_token"] if caller == "link" else "N0tAReal-Link_Token-" + "x" * 24
    return (
        path.replace("{study_id}", str(world["study"].id))
        .replace("{participant_id}", str(world["pa"]["id"]))
        .replace("{wave_code}", "baseline")
        .replace("{site_code}", "north")
        .replace("{code}", "phq9")
        .replace("{shape}", "long")
        .replace("{kind}", "consent")
        .replace("{token}", token)
        .replace("{filename}", "nothing.csv")
        .replace("{transcript_id}", "999999")
        .replace("{code_id}", "999999")
        .replace("{coding_id}", "999999")
        .replace("{suggestion_id}", "999999")
        .replace("{run_id}", "999999")
        .replace("{rating_id}", "999999")
        .replace("{adaptation_id}", "999999")
        .replace("{alert_id}", str(world["alert_id"]))
        .replace("{event_id}", str(world["event_id"]))
        .replace("{user_id}", "999999")
        .replace("{context_event_id}", "999999")
        .replace("{goal_id}", "999999")
        .replace("{cmo_id}", "999999")
        .replace("{arm_code}", "group")
        .replace("{supporter_id}", "999999")
        .replace("{group_id}", "999999")
        .replace("{member_id}", "999999")
        .replace("{session_id}", "999999")
        .replace("{token_id}", "999999")
        .replace("{instrument}", "pam13")
        .replace("{version}", "9999")
        .replace("{request_id}", "no-such-export")
    )


def expected(rule: Rule, caller: str) -> frozenset[int]:
    if rule.scope in ("public", "console"):
        return rule.ok
    if rule.scope == "link":
        return rule.ok if caller == "link" else frozenset({404})
    if caller in ("none", "expired", "link"):
        return frozenset({401})
    role = "coordinator" if caller.startswith("coord") else caller
    if role not in rule.roles:
        return frozenset({403})
    if rule.scope == "site" and caller == "coord_b":
        return frozenset({404})
    return rule.ok


def _leaks(caller: str, text: str, world) -> list[str]:
    """Strings this caller must never receive."""
    bad = []
    if caller != "admin" and caller != "coord_a":
        bad += list(SEED["a"].values())
    if caller != "admin" and caller != "coord_b":
        bad += list(SEED["b"].values())
    if caller == "coord_b":
        bad.append(world["pa"]["study_code"])
    if caller == "coord_a":
        bad.append(world["pb"]["study_code"])
    if caller in ("none", "expired", "link"):
        bad += [world["pa"]["study_code"], world["pb"]["study_code"]]
    return [s for s in bad if s in text]


def _prepare(client, world, method: str, path: str) -> None:
    # A DELETE of the link needs a live one each time; re-issuing gives a fresh token.
    if method == "DELETE" and path.endswith("/links/{wave_code}"):
        r = client.post(
            f"/participants/{world['pa']['id']}/links", json={"wave": "baseline"}, headers=world["headers"]["admin"]
        )
        assert r.status_code == 201, r.text


def test_route_role_matrix(client, app, world):
    limiter = app.state.failure_limiter
    saved, limiter.limit = limiter.limit, 10**6  # this test makes many deliberate 401s
    failures = []
    try:
        for method, path in sorted(app_routes(app), key=lambda mp: (mp[1], mp[0])):
            rule = RULES[(method, path)]
            for caller in CALLERS:
                _prepare(client, world, method, path)
                kwargs = {"headers": world["headers"][caller]}
                if method in ("POST", "PUT", "PATCH") and rule.scope not in ("link", "public", "console"):
                    kwargs["json"] = {}
                r = client.request(method, _url(path, world, caller), follow_redirects=False, **kwargs)
                want = expected(rule, caller)
                if r.status_code not in want:
                    failures.append(f"{method} {path} as {caller}: {r.status_code}, expected {sorted(want)}")
                if r.status_code >= 500:
                    failures.append(f"{method} {path} as {caller}: server error")
                leaked = _leaks(caller, r.text, world)
                if leaked:
                    failures.append(f"{method} {path} as {caller}: body leaks {leaked}")
                if r.status_code in (401, 403, 404, 422) and r.headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    detail = r.json()["detail"]
                    assert isinstance(detail, list) and {"loc", "msg", "type"} <= set(detail[0]), (method, path)
    finally:
        limiter.limit = saved
        limiter.reset()
    assert not failures, "\n".join(failures)


def test_other_site_record_is_absent_from_lists(client, world):
    """Lists filter rather than 403: coordinator B's list has B's participant and not A's."""
    sid = world["study"].id
    h = world["headers"]
    listed = client.get(f"/studies/{sid}/participants", headers=h["coord_b"]).json()
    assert [p["study_code"] for p in listed] == ["SITEB-REC-37"]
    listed = client.get(f"/studies/{sid}/participants", headers=h["coord_a"]).json()
    assert [p["study_code"] for p in listed] == ["SITEA-REC-91"]
    both = client.get(f"/studies/{sid}/participants", headers=h["analyst"]).json()
    assert {p["study_code"] for p in both} == {"SITEA-REC-91", "SITEB-REC-37"}
    assert all(p["contact"] is None for p in both)
    sites = client.get(f"/studies/{sid}/sites", headers=h["coord_b"]).json()
    assert [s["code"] for s in sites] == ["south"]


def test_other_site_alerts_and_adverse_events_are_absent_from_lists(client, world):
    sid = world["study"].id
    h = world["headers"]
    for path in (f"/studies/{sid}/alerts", f"/studies/{sid}/adverse-events"):
        assert client.get(path, headers=h["coord_b"]).json() == []
        assert [r["study_code"] for r in client.get(path, headers=h["coord_a"]).json()] == ["SITEA-REC-91"]
    status = client.get(f"/studies/{sid}/safety/status", headers=h["coord_b"]).json()
    assert status["open_alerts"] + status["acknowledged_alerts"] == 0
