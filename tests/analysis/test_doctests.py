"""The examples in analysis/ docstrings run, and every public function and class has one."""

import doctest
import importlib
import inspect
import pkgutil

import pytest

import analysis

MODULES = sorted(m.name for m in pkgutil.iter_modules(analysis.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"analysis.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in analysis.{name}"


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_has_a_runnable_example(name):
    module = importlib.import_module(f"analysis.{name}")
    missing = []
    for attr in getattr(module, "__all__", []):
        obj = getattr(module, attr)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        if ">>>" not in doc:
            missing.append(attr)
    assert not missing, f"analysis.{name}: no runnable example in {missing}"


def test_every_name_of_the_package_resolves():
    for name in analysis.__all__:
        assert getattr(analysis, name) is not None, name
