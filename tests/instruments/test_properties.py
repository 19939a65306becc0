import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import instruments
from instruments import reverse_value
from instruments.model import Item, Option

SCORED = [c for c in instruments.codes() if instruments.get(c).scales]


def answers_strategy(inst):
    fields = {}
    for it in inst.items:
        if it.options:
            value = st.sampled_from([o.code for o in it.options])
        elif it.kind == "integer":
            value = st.integers(int(it.min), int(it.max))
        else:  # a measured value (clinical measures): anything in its plausible range
            value = st.floats(it.min, it.max, allow_nan=False)
        fields[it.code] = st.one_of(st.none(), value)
    return st.fixed_dictionaries(fields).map(lambda a: one_unit(inst, a))


def one_unit(inst, answers):
    """Keep the first unit given of each measure (a measure in two units at once is refused)."""
    answers = dict(answers)
    for sc in inst.scales:
        if sc.method == "convert":
            given = [c for c in sc.items if answers.get(c) is not None]
            for extra in given[1:]:
                answers[extra] = None
    return answers


@pytest.mark.parametrize("code", SCORED)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_scores_in_range_and_threshold_respected(code, data):
    inst = instruments.get(code)
    answers = data.draw(answers_strategy(inst))
    ext = {}
    for sc in inst.scales:
        if sc.external:
            ext[sc.code] = data.draw(st.one_of(st.none(), st.floats(sc.range[0], sc.range[1])))
    for s in instruments.score(inst, answers, external_scores=ext):
        sc = inst.scale(s.scale)
        if s.value is not None:
            assert sc.range[0] <= s.value <= sc.range[1]
            assert s.band is not None or not sc.bands
        if sc.method == "derived":
            # a formula's value needs every input, and inputs inside the formula's domain
            assert s.value is None or s.items_answered == s.items_expected
            if s.value is None and s.items_answered == s.items_expected:
                assert "outside the range the formula applies to" in s.missing_reason
        elif sc.method != "lookup":
            # prorating never invents a score below the missing-data threshold
            assert (s.value is None) == (s.items_answered < sc.min_items)
            assert s.prorated <= (s.items_answered < len(sc.items))


@given(st.lists(st.integers(-5, 20), min_size=2, max_size=8, unique=True).map(sorted), st.data())
def test_reverse_scoring_is_an_involution(codes, data):
    item = Item("x_1", None, tuple(Option(c, str(c)) for c in codes), reverse=True)
    v = data.draw(st.sampled_from(codes))
    once = reverse_value(item, v)
    assert once in codes
    assert reverse_value(item, once) == v


@pytest.mark.parametrize("code", SCORED)
def test_score_frame_equals_score_row_by_row(code):
    inst = instruments.get(code)
    rng = np.random.default_rng(7)
    n = 150
    df = pd.DataFrame({"pid": [f"p{i}" for i in range(n)]})
    for it in inst.items:
        if it.options:
            col = rng.choice(np.array([o.code for o in it.options], dtype=float), n)
        else:
            col = np.round(rng.uniform(it.min, it.max, n), 0 if it.kind == "integer" else 2)
        col[rng.random(n) < 0.12] = np.nan
        df[it.code] = col
    for sc in inst.scales:
        if sc.method == "convert":  # one unit per measure
            first = df[sc.items[0]].notna()
            for extra in sc.items[1:]:
                df.loc[first, extra] = np.nan
                first |= df[extra].notna()
        if sc.external:
            ext = rng.uniform(sc.range[0], sc.range[1], n)
            ext[rng.random(n) < 0.3] = np.nan
            df[sc.code] = ext
    out = instruments.score_frame(inst, df, id_cols=["pid"], detail=True)
    assert list(out.columns[:9]) == [
        "pid",
        "scale",
        "value",
        "band",
        "level",
        "items_answered",
        "items_expected",
        "prorated",
        "missing_reason",
    ]
    assert len(out) == n * len(inst.scales)
    rows = out.itertuples(index=False)
    for i in range(n):
        answers = {it.code: (None if np.isnan(df.at[i, it.code]) else df.at[i, it.code]) for it in inst.items}
        ext = {sc.code: df.at[i, sc.code] for sc in inst.scales if sc.external}
        ext = {k: (None if np.isnan(v) else v) for k, v in ext.items()}
        for s in instruments.score(inst, answers, external_scores=ext):
            r = next(rows)
            assert r.pid == f"p{i}" and r.scale == s.scale
            if s.value is None:
                assert np.isnan(r.value)
            else:
                assert r.value == pytest.approx(s.value, abs=1e-12)
            assert r.band == s.band
            assert (None if pd.isna(r.level) else r.level) == s.level
            assert (r.items_answered, r.items_expected, r.prorated) == (s.items_answered, s.items_expected, s.prorated)
            assert r.missing_reason == s.missing_reason and list(r.flags) == s.flags


def test_score_frame_reports_invalid_values():
    df = pd.DataFrame({"phq9_1": [0, 4, 1], "phq9_2": ["1", "x", None]})
    with pytest.raises(instruments.ValidationFailed) as exc:
        instruments.score_frame("phq9", df)
    assert {(p.loc, p.rule) for p in exc.value.problems} == {("phq9_1", "not_an_option"), ("phq9_2", "not_a_number")}
    out = instruments.score_frame("phq9", df, errors="coerce")
    assert out["items_answered"].tolist() == [2, 0, 1]
