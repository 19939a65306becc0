import doctest

import pytest

from instruments import alerts, engine, fhir, frames, loader, redcap, registry


@pytest.mark.parametrize("module", [alerts, engine, fhir, frames, loader, redcap, registry])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
