"""The report's pure rendering: doctests of every module, CONSORT counts and Table 1 against hand
computations, and the HTML and SVG are self-contained."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import statistics
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

import analysis.trialreport as tr

MODULES = sorted(m.name for m in pkgutil.iter_modules(tr.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"analysis.trialreport.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_table1_switches_to_median_iqr_for_skewed_variables():
    # Pooled skewness of [1, 1, 1, 2, 2, 3, 30, 40] is far above 1 -> median [IQR] (R type 7 quartiles).
    people = pd.DataFrame({"arm": list("AAAABBBB"), "days": [1, 1, 1, 2, 2, 3, 30, 40]})
    t = tr.table1(people, [tr.Variable("days", "Days in hospital")], arms=["A", "B"])
    assert set(t["statistic"]) == {"median [IQR]"}
    a = [1, 1, 1, 2]
    q = statistics.quantiles(a, n=4, method="inclusive")  # type 7 == "inclusive"
    assert t.loc[t.arm == "A", "cell"].item() == f"{statistics.median(a):.1f} [{q[0]:.1f}, {q[2]:.1f}]"
    b = [2, 3, 30, 40]
    q = statistics.quantiles(b, n=4, method="inclusive")
    assert t.loc[t.arm == "B", "cell"].item() == f"{statistics.median(b):.1f} [{q[0]:.1f}, {q[2]:.1f}]"


def test_table1_counts_levels_among_those_with_a_value_and_reports_missing():
    people = pd.DataFrame({"arm": ["A"] * 5, "sex": ["f", "f", "m", None, np.nan]})
    t = tr.table1(people, [tr.Variable("sex", "Sex", "categorical", levels=("f", "m", "x"))])
    cells = dict(zip(t["level"], t["cell"], strict=True))
    assert cells == {"f": "2 (66.7%)", "m": "1 (33.3%)", "x": "0 (0.0%)"}
    assert set(t["missing"]) == {2}


def _people(n_a=3, n_b=2):
    return pd.DataFrame(
        {
            "participant": [f"a{i}" for i in range(n_a)] + [f"b{i}" for i in range(n_b)],
            "arm": ["A"] * n_a + ["B"] * n_b,
            "status": ["active"] * (n_a + n_b),
            "status_reason": [None] * (n_a + n_b),
            "status_days": [np.nan] * (n_a + n_b),
        }
    )


def test_flow_without_screening_log_starts_at_randomisation():
    assessed = pd.DataFrame({"participant": ["a0", "a0", "b0"], "wave": ["baseline", "m6", "baseline"]})
    flow = tr.flow_counts(None, _people(), assessed, waves=[("baseline", 0), ("m6", 182)])
    assert flow["assessed"] is None and flow["randomised"] == 5 and flow["unscreened"] == 5
    a, b = flow["arms"]
    assert (a["analysed"], a["excluded_analysis"], b["analysed"]) == (1, 2, 0)
    assert a["received"] is None and a["discontinued"] is None
    svg = tr.flow_svg(flow)
    assert "No screening log recorded" in svg
    ET.fromstring(svg)  # well-formed


def test_flow_counts_receipt_when_delivery_says_so():
    people = _people()
    people["received"] = [True, False, None, True, True]
    people["not_received_reason"] = [None, "never attended", None, None, None]
    flow = tr.flow_counts(None, people, pd.DataFrame(columns=["participant", "wave"]), waves=[("baseline", 0)])
    a = flow["arms"][0]
    assert (a["received"], a["not_received"], a["unknown_received"]) == (1, 1, 1)
    assert a["not_received_reasons"] == {"never attended": 1}


def test_svg_escapes_text_and_document_needs_nothing_from_outside():
    screening = pd.DataFrame({"outcome": ["other"], "reason": ['<script>alert("x")</script> & co']})
    flow = tr.flow_counts(screening, _people(1, 1), pd.DataFrame(columns=["participant", "wave"]), waves=[])
    svg = tr.flow_svg(flow)
    ET.fromstring(svg)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    doc = tr.render_document("T <b>", [tr.Section("flow", "Flow", svg)], meta={"a": "<i>"})
    assert "<script" not in doc and "T &lt;b&gt;" in doc
    assert not re.search(r"""(src|href)=["'](?!#)""", doc)  # only in-page anchors
    assert "://" not in doc.replace("http://www.w3.org/2000/svg", "")  # the SVG namespace is a name, not a request
