"""Span agreement through the service: unit=character, segment with a threshold, continuum (uα)."""

from __future__ import annotations

import math

import pytest


@pytest.fixture
def coded(client, make_study, enrol, make_user, admin):
    study = make_study()
    enrol(study, site="north", study_code="SA-001")
    a, b = make_user("coordinator", [study.sites["north"]]), make_user("coordinator", [study.sites["north"]])
    text = "SA-001: " + " ".join(f"word{i:03d}" for i in range(40))
    r = client.post(
        f"/studies/{study.id}/transcripts",
        headers=admin.headers,
        data={"participants": "SA-001"},
        files={"file": ("sa.txt", text.encode(), "text/plain")},
    )
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["text"] == text  # nothing to de-identify
    code = client.post(f"/studies/{study.id}/codes", headers=admin.headers, json={"name": "Support"}).json()
    for user, (s, e) in ((a, (10, 110)), (b, (20, 110))):
        r = client.post(
            f"/transcripts/{t['id']}/codings", headers=user.headers, json={"code_id": code["id"], "start": s, "end": e}
        )
        assert r.status_code == 201, r.text
    emails = [client.get("/me", headers=u.headers).json()["email"] for u in (a, b)]
    return study, ",".join(emails), len(text)


def _get(client, study, headers, **params):
    return client.get(f"/studies/{study.id}/coding/agreement", params=params, headers=headers)


def test_character_unit(client, coded, analyst):
    study, coders, n = coded
    r = _get(client, study, analyst.headers, unit="character", coders=coders)
    assert r.status_code == 200, r.text
    row = next(x for x in r.json() if x["code"] == "support")
    assert (row["coded_a"], row["coded_b"], row["both"], row["characters"]) == (100, 90, 90, n)
    # Cohen's kappa from the 2x2 character table, by hand.
    both, a_only, b_only, neither = 90, 10, 0, n - 100
    po = (both + neither) / n
    pe = ((both + a_only) * (both + b_only) + (neither + b_only) * (neither + a_only)) / n**2
    assert math.isclose(row["kappa"], (po - pe) / (1 - pe), rel_tol=1e-9)
    assert row["method"] == "characters" and row["unit"] == "character"


def test_segment_threshold(client, coded, analyst):
    study, coders, _ = coded
    # Overlap 90 of the 100 characters both cover: agreement at 0.9, not at 0.95.
    at90 = _get(client, study, analyst.headers, unit="segment", threshold=0.9, coders=coders).json()
    at95 = _get(client, study, analyst.headers, unit="segment", threshold=0.95, coders=coders).json()
    row90 = next(x for x in at90 if x["code"] == "support")
    row95 = next(x for x in at95 if x["code"] == "support")
    assert (row90["agreements"], row90["total"], row90["percent"]) == (2, 2, 100.0)
    assert (row95["agreements"], row95["percent"]) == (0, 0.0)
    assert row90["method"] == "segment_overlap" and row90["threshold"] == 0.9
    # min_chars applies too.
    strict = _get(client, study, analyst.headers, unit="segment", threshold=0.9, min_chars=95, coders=coders).json()
    assert next(x for x in strict if x["code"] == "support")["agreements"] == 0


def test_continuum_unitized_alpha(client, coded, analyst):
    study, coders, n = coded
    r = _get(client, study, analyst.headers, unit="continuum", coders=coders)
    assert r.status_code == 200, r.text
    row = next(x for x in r.json() if x["code"] == "support")
    # Only the two coded sections overlap: delta^2 = (10-20)^2 + (110-110)^2 = 100, counted for
    # both ordered coder pairs, over m(m-1)L^2.
    assert math.isclose(row["do"], 2 * 100 / (2 * n**2), rel_tol=1e-9)
    assert 0.8 < row["alpha"] < 1 and row["method"] == "krippendorff_u_alpha"


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"unit": "turn", "threshold": 0.9}, ["query", "threshold"]),
        ({"unit": "segment", "threshold": 1.5}, ["query", "threshold"]),
        ({"unit": "segment", "threshold": 0}, ["query", "threshold"]),
        ({"unit": "character", "min_chars": 0}, ["query", "min_chars"]),
        ({"unit": "characters"}, ["query", "unit"]),
    ],
)
def test_bad_parameters_are_422_naming_the_field(client, coded, analyst, params, loc):
    study, coders, _ = coded
    r = _get(client, study, analyst.headers, coders=coders, **params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc
