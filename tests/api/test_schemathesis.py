"""Property-based requests from the app's own OpenAPI schema: no operation answers 5xx.

Each operation gets a small, bounded number of generated requests with an admin token: some with
real study/participant ids in the path (so bodies and queries reach the services), some with
generated ids. Every failing operation is reported, not only the first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

PINNED_EXAMPLES = 15
FREE_EXAMPLES = 5


@pytest.fixture(scope="module")
def target(client, make_study, enrol, admin):
    study = make_study()
    p = enrol(study, enrolled_on=str(datetime.now(ZoneInfo("Europe/London")).date() - timedelta(days=1)), arm="group")
    return {"study_id": study.id, "participant_id": p["id"], "wave_code": "baseline"}


def _run(operation, strategy, n: int, failures: list[str]) -> None:
    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case):
        case.call_and_validate(checks=[not_a_server_error])

    try:
        check()
    except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then fail once
        failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:400]}")


@pytest.mark.slow  # generated requests against every route
def test_no_server_errors(app, admin, target):
    limiter = app.state.failure_limiter
    saved, limiter.limit = limiter.limit, 10**6
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {admin.token}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    try:
        for op in operations:
            names = {p.name for p in op.path_parameters}
            pinned = {k: v for k, v in target.items() if k in names}
            if pinned:
                _run(op, op.as_strategy(headers=headers, path_parameters=pinned), PINNED_EXAMPLES, failures)
            _run(op, op.as_strategy(headers=headers), FREE_EXAMPLES if pinned else PINNED_EXAMPLES, failures)
    finally:
        limiter.limit = saved
        limiter.reset()
    assert not failures, "\n\n".join(failures)
