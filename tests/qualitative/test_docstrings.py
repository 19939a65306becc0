"""The examples in the qualitative layer's docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "qualitative",
    "qualitative.transcripts",
    "qualitative.nlp",
    "qualitative.deid",
    "qualitative.deid_rules",
    "qualitative.deid_words",
    "qualitative.deid_eval",
    "qualitative.codebook",
    "qualitative.coding",
    "qualitative.search",
    "qualitative.autocode",
    "qualitative.agreement",
    "qualitative.spans",
    "qualitative.exchange",
    "qualitative.joint",
    "qualitative.refi_cases",
    "qualitative.refi",
    "qualitative.mixed",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
