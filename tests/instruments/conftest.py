import pytest

import instruments


@pytest.fixture(autouse=True)
def _clean_registry():
    """Calibration tables and custom registrations are process-wide: reset them around every test."""
    instruments.clear_calibration()
    yield
    instruments.clear_calibration()
    for code in ("pam13",):
        instruments.unregister(code)


def items(prefix, n, value, start=1):
    return {f"{prefix}_{i}": value for i in range(start, start + n)}
