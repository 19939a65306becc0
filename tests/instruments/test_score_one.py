"""``score()`` scores one response with plain floats (``instruments.engine._score_one``); ``score_frame``
scores many with arrays, the code the published worked examples check. Both must give the same
scores, bands, counts, missing-data reasons and flags for every response of every instrument."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

import instruments
from instruments import registry

N = 400  # random responses per instrument


def _responses(inst, rng: np.random.Generator) -> list[tuple[dict, dict]]:
    """Random answers: any option (missing codes included) or none, numbers anywhere in range,
    external scores present or not; one in five gives every choice item its lowest or highest code
    (so the extreme-pattern flags fire) and one in five leaves most items out (missing-data rules)."""
    choice = [it for it in inst.items if it.kind == "choice" and it.options]
    # the edges first: nothing answered, every item answered "missing" (N/A, don't know), each
    # with and without an external score
    missing = {
        it.code: next(o.code for o in it.options if o.missing) for it in choice if any(o.missing for o in it.options)
    }
    external_mid = {sc.code: (sc.range[0] + sc.range[1]) / 2 for sc in inst.scales if sc.external and sc.range}
    out = [(a, e) for a in ({}, missing) for e in ({}, external_mid)]
    for _ in range(N):
        mode = rng.integers(5)
        answers: dict = {}
        for it in inst.items:
            if it.kind not in ("choice", "integer", "number") or rng.random() < (0.7 if mode == 1 else 0.08):
                continue
            if it.kind == "choice":
                if not it.options:
                    continue
                codes = [o.code for o in it.options]
                substantive = sorted(o.code for o in it.options if not o.missing) or codes
                if mode == 0:
                    answers[it.code] = substantive[-1] if rng.random() < 0.5 else substantive[0]
                else:
                    answers[it.code] = codes[rng.integers(len(codes))]
            else:
                lo = it.min if it.min is not None else 0
                hi = it.max if it.max is not None else lo + 100
                v = rng.uniform(lo, hi)
                answers[it.code] = int(round(v)) if it.kind == "integer" else round(float(v), 2)
        if mode == 0 and choice:  # one extreme for every choice item
            pick = 0 if rng.random() < 0.5 else -1
            for it in choice:
                substantive = sorted(o.code for o in it.options if not o.missing)
                if substantive:
                    answers[it.code] = substantive[pick]
        external = {
            sc.code: round(float(rng.uniform(*sc.range)), 1)
            for sc in inst.scales
            if sc.external and sc.range and rng.random() < 0.5
        }
        if not instruments.validate(inst, answers, external):
            out.append((answers, external))
    return out


def _same(code: str) -> None:
    inst = registry.get(code)
    rng = np.random.default_rng(sum(map(ord, code)))
    responses = _responses(inst, rng)
    assert len(responses) >= 50, "the generator should make valid responses"
    frame = pd.DataFrame([{**a, **e, "row": i} for i, (a, e) in enumerate(responses)])
    for it in inst.items:  # every item a column, as an export has them
        if it.kind in ("choice", "integer", "number") and it.code not in frame:
            frame[it.code] = np.nan
    arrays = instruments.score_frame(inst, frame, ["row"], detail=True)
    for i, (answers, external) in enumerate(responses):
        # an external score not given is a blank in the frame's column: None here
        external = {sc.code: external.get(sc.code) for sc in inst.scales if sc.external}
        one = instruments.score(inst, answers, external)
        rows = arrays[arrays["row"] == i]
        assert [s.scale for s in one] == list(rows["scale"])
        for s, (_, r) in zip(one, rows.iterrows(), strict=True):
            where = (code, i, s.scale, answers, external)
            if s.value is None:
                assert math.isnan(r["value"]), where
            else:
                assert s.value == pytest.approx(r["value"], rel=1e-12, abs=1e-12), where
            assert s.band == r["band"], where
            assert s.level == (None if pd.isna(r["level"]) else r["level"]), where
            assert (s.items_answered, s.items_expected, s.prorated) == (
                r["items_answered"],
                r["items_expected"],
                r["prorated"],
            ), where
            assert s.missing_reason == r["missing_reason"], where
            assert s.flags == r["flags"], where


@pytest.mark.parametrize("code", instruments.codes())
def test_one_response_scores_as_the_arrays_do(code):
    _same(code)


def test_with_a_calibration_table_the_lookup_scores_as_the_arrays_do():
    # Covers only part of the raw range: raw scores outside it are not scored (reason 3), between
    # rows they are interpolated.
    table = "raw,activation\n20,10\n30,45.5\n40,80\n45,92.3\n"
    instruments.load_calibration(io.StringIO(table), instrument="pam13")
    try:
        _same("pam13")
    finally:
        instruments.clear_calibration()
