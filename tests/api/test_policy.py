"""Who may do what (:mod:`api.auth.policy`), without a database or HTTP."""

from __future__ import annotations

import subprocess
import sys

import pytest

from api.auth import policy
from api.auth.service import Actor
from api.errors import Forbidden, NotFound

ADMIN = Actor(user_id=1, role="admin")
NORTH = Actor(user_id=2, role="coordinator", site_ids=frozenset({10}))
ANALYST = Actor(user_id=3, role="analyst")
EVALUATOR = Actor(user_id=5, role="evaluator")
SYSTEM = Actor.system()


def test_role_sets_as_routes_declare_them():
    assert policy.ROLES == ("admin", "coordinator", "analyst", "evaluator")
    assert policy.ADMIN == ("admin",)
    assert policy.STAFF == ("admin", "coordinator")
    assert policy.READERS == ("admin", "coordinator", "analyst")
    # the evaluator reads process records only, and rates fidelity; coordinators do not rate
    assert policy.PROCESS_READERS == ("admin", "coordinator", "analyst", "evaluator")
    assert policy.RATERS == ("admin", "evaluator")
    assert policy.PROCESS_WRITERS == ("admin", "coordinator", "evaluator")


@pytest.mark.parametrize(
    "actor, own, other, identifiers_own, deidentified, scoped",
    [
        (ADMIN, True, True, True, False, False),
        (NORTH, True, False, True, False, True),
        (ANALYST, True, True, False, True, False),
        (EVALUATOR, True, True, False, True, False),
        (SYSTEM, True, True, True, False, False),
        (Actor(user_id=None, role="participant", site_ids=frozenset({10})), True, False, False, True, True),
        (Actor(user_id=4, role="retired"), False, False, False, True, True),  # unknown role: nothing
    ],
)
def test_site_and_identifier_rules(actor, own, other, identifiers_own, deidentified, scoped):
    assert policy.sees_site(actor, 10) is own and actor.sees_site(10) is own
    assert policy.sees_site(actor, 11) is other
    assert policy.sees_identifiers(actor, 10) is identifiers_own and actor.sees_contacts(10) is identifiers_own
    assert policy.sees_identifiers(actor, 11) is (identifiers_own and other)
    assert policy.deidentified(actor) is deidentified
    assert policy.site_scoped(actor) is scoped


def test_ensure_helpers_raise_the_api_errors():
    for writer in (ADMIN, NORTH, SYSTEM, Actor(user_id=None, role="participant", site_ids=frozenset({10}))):
        policy.ensure_can_write(writer)
    with pytest.raises(Forbidden) as refused:
        policy.ensure_can_write(ANALYST)
    assert refused.value.errors[0]["type"] == "role_not_allowed"

    with pytest.raises(Forbidden):
        policy.ensure_can_write(EVALUATOR)
    for rater in (ADMIN, EVALUATOR, SYSTEM):
        policy.ensure_can_rate(rater)
    for other in (NORTH, ANALYST, Actor(user_id=None, role="participant", site_ids=frozenset({10}))):
        with pytest.raises(Forbidden, match="may not rate fidelity"):
            policy.ensure_can_rate(other)
    for logger in (ADMIN, NORTH, EVALUATOR, SYSTEM):
        policy.ensure_can_log_process(logger)
    for other in (ANALYST, Actor(user_id=None, role="participant", site_ids=frozenset({10}))):
        with pytest.raises(Forbidden):
            policy.ensure_can_log_process(other)

    policy.ensure_admin(ADMIN)
    policy.ensure_admin(SYSTEM)
    with pytest.raises(Forbidden, match="only admins change a study's design"):
        policy.ensure_admin(NORTH, "change a study's design")

    policy.ensure_site_access(NORTH, 10)
    with pytest.raises(NotFound) as hidden:
        policy.ensure_site_access(NORTH, 11, loc=("path", "participant_id"), what="participant")
    assert hidden.value.errors == [
        {"loc": ["path", "participant_id"], "msg": "participant not found", "type": "not_found"}
    ]


def test_policy_imports_neither_the_web_framework_nor_the_database():
    code = (
        "import sys, api.auth.policy; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', 'sqlalchemy', 'sqlmodel'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
