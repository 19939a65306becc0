import pytest

import instruments
from instruments import InstrumentError

EXPECTED = {
    "pam13",
    "semcd6",
    "gse",
    "hls_eu_q16",
    "hls_eu_q6",
    "bhls",
    "sils",
    "eheals",
    "phq9",
    "gad7",
    "phq4",
    "lsns6",
    "lsns18",
    "context",
}
FIRST = {"phq9", "gad7", "pam13", "semcd6", "lsns6", "context"}


def test_core_codes_present():
    assert FIRST <= set(instruments.codes())


def test_unknown_code_raises():
    with pytest.raises(InstrumentError):
        instruments.get("hads")


def test_get_is_cached():
    assert instruments.get("phq9") is instruments.get("phq9")


def test_item_codes_follow_published_order():
    phq9 = instruments.get("phq9")
    assert [i.code for i in phq9.items] == [f"phq9_{n}" for n in range(1, 11)]
    assert not phq9.item("phq9_10").scored
    assert not instruments.get("gad7").item("gad7_8").scored


def test_pam13_wording_not_shipped():
    pam = instruments.get("pam13")
    assert pam.wording_shipped is False
    assert all(i.text is None for i in pam.items)
    assert pam.item("pam13_1").label == "PAM item 1"


def test_mcid_values():
    assert instruments.get("phq9").scale("phq9").mcid == 5
    assert instruments.get("gad7").scale("gad7").mcid == 4
    assert instruments.get("pam13").scale("pam13_activation").mcid is None
    assert instruments.get("semcd6").scale("semcd6").mcid is None


def test_context_items_are_categorical():
    ctx = instruments.get("context")
    codes = [i.code for i in ctx.items]
    for name in (
        "context_age_band",
        "context_gender",
        "context_employment",
        "context_income_band",
        "context_education",
        "context_living_situation",
        "context_condition_main",
        "context_years_since_diagnosis",
        "context_prior_peer_support",
        "context_family_attitude",
        "context_motivation",
    ):
        assert name in codes
    assert all(i.kind == "choice" and i.options and not i.identifier for i in ctx.items)
    assert ctx.scales == ()
