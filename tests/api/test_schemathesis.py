"""Property-based requests from the app's own OpenAPI schema: no operation answers 5xx.

Each operation gets a small, bounded number of generated requests with an admin token: some with
real study/participant ids in the path (so bodies and queries reach the services), some with
generated ids. Every failing operation is reported, not only the first.

What hypothesis draws depends only on the OpenAPI schema and its derandomised seed, not on the
database behind the app, so drawing is done once per process: the first backend's run keeps the
requests it sent, and the second backend's run sends exactly those again (with its own token and
study/participant ids) instead of drawing the same ones a second time.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from requests.structures import CaseInsensitiveDict
from schemathesis.checks import not_a_server_error

PINNED_EXAMPLES = 15
FREE_EXAMPLES = 5


@pytest.fixture(scope="module")
def target(client, make_study, enrol, admin):
    study = make_study()
    p = enrol(study, enrolled_on=str(datetime.now(ZoneInfo("Europe/London")).date() - timedelta(days=1)), arm="group")
    return {"study_id": study.id, "participant_id": p["id"], "wave_code": "baseline"}


#: (operation, pinned) -> the requests sent for it by this process's first run, in order.
_SENT: dict[tuple[str, bool], list[dict]] = {}


def _request(case) -> dict:
    return copy.deepcopy(
        {
            "method": case.method,
            "path_parameters": dict(case.path_parameters or {}),
            "headers": dict(case.headers or {}),
            "cookies": dict(case.cookies or {}),
            "query": dict(case.query or {}),
            "body": case.body,
            "media_type": case.media_type,
            "multipart_content_types": case.multipart_content_types,
        }
    )


def _run(operation, strategy, n: int, failures: list[str], key: tuple[str, bool]) -> int:
    """Draw up to ``n`` requests for ``operation`` and send them; returns how many were sent."""
    sent: list[dict] = []

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
        sent.append(_request(case))
        case.call_and_validate(checks=[not_a_server_error])

    try:
        check()
    except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then fail once
        failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:400]}")
    else:
        _SENT[key] = sent
    return len(sent)


def _resend(operation, sent: list[dict], headers: dict, pinned: dict, failures: list[str]) -> int:
    """Send the requests another run drew for ``operation``, with this run's token and path ids."""
    for request in sent:
        case = schemathesis.Case(
            operation,
            path=operation.path,
            **{
                **request,
                "headers": CaseInsensitiveDict({**request["headers"], **headers}),
                "path_parameters": {**request["path_parameters"], **pinned},
            },
        )
        try:
            case.call_and_validate(checks=[not_a_server_error])
        except Exception as exc:  # noqa: BLE001 - as _run: one failure per operation, all reported
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:400]}")
            break
    return len(sent)


def _exercise(operation, strategy, n: int, failures: list[str], headers: dict, pinned: dict) -> int:
    key = (operation.label, bool(pinned))
    if key in _SENT:
        return _resend(operation, _SENT[key], headers, pinned, failures)
    return _run(operation, strategy, n, failures, key)


@pytest.mark.slow  # generated requests against every route
def test_no_server_errors(app, admin, target):
    limiter = app.state.failure_limiter
    saved, limiter.limit = limiter.limit, 10**6
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {admin.token}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    unexercised = []
    try:
        for op in operations:
            names = {p.name for p in op.path_parameters}
            pinned = {k: v for k, v in target.items() if k in names}
            n = 0
            if pinned:
                strategy = op.as_strategy(headers=headers, path_parameters=pinned)
                n += _exercise(op, strategy, PINNED_EXAMPLES, failures, headers, pinned)
            free = FREE_EXAMPLES if pinned else PINNED_EXAMPLES
            n += _exercise(op, op.as_strategy(headers=headers), free, failures, headers, {})
            if n == 0:
                unexercised.append(op.label)
    finally:
        limiter.limit = saved
        limiter.reset()
    assert not failures, "\n\n".join(failures)
    assert not unexercised, f"operations that got no request: {unexercised}"
