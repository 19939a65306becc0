"""Mixed models and Cox models against published outputs of R on public data."""

import pytest

from analysis.survival import fit_cox
from analysis.trajectories import TrajectoryModel, compare_models

from .conftest import sleepstudy_long


def sig(x, n=4):
    return float(f"{x:.{n}g}")


@pytest.fixture(scope="module")
def sleep_slope():
    # lme4: lmer(Reaction ~ Days + (Days | Subject), sleepstudy)  (REML)
    return TrajectoryModel("reaction", random="slope", cluster=None, time_scale=1).fit(sleepstudy_long())


def test_sleepstudy_fixed_effects_match_lme4(sleep_slope):
    s = sleep_slope.summary.set_index("term")
    # Published lme4 summary: (Intercept) 251.405 (6.825), Days 10.467 (1.546)
    assert sig(s.loc["Intercept", "estimate"]) == 251.4
    assert sig(s.loc["years", "estimate"]) == 10.47
    assert sig(s.loc["Intercept", "se"]) == 6.825
    assert sig(s.loc["years", "se"]) == 1.546
    assert s.loc["years", "estimate"] == pytest.approx(10.467, abs=5e-4)
    assert s.loc["Intercept", "estimate"] == pytest.approx(251.405, abs=5e-4)


def test_sleepstudy_variance_components_match_lme4(sleep_slope):
    vc = sleep_slope.variance_components.set_index(["group", "term"])
    # lme4: Subject (Intercept) SD 24.741, Days SD 5.922, corr 0.066 (printed 0.07); residual SD 25.592
    assert sig(vc.loc[("participant", "(Intercept)"), "sd"]) == 24.74
    assert sig(vc.loc[("participant", "years"), "sd"]) == 5.922
    assert vc.loc[("participant", "years"), "corr"] == pytest.approx(0.066, abs=5e-4)
    assert sig(vc.loc[("residual", ""), "sd"]) == 25.59
    # REML criterion at convergence: 1743.6
    assert sleep_slope.fit_statistics["REML_criterion"].iloc[0] == pytest.approx(1743.6, abs=0.05)


def test_sleepstudy_ml_fit_and_lr_test_match_lme4_anova(sleep_slope):
    m0 = TrajectoryModel("reaction", random="intercept", cluster=None, time_scale=1).fit(sleepstudy_long())
    lr = compare_models(m0, sleep_slope)
    # anova(fm_intercept, fm_slope): AIC 1802.1 / 1763.9, BIC 1814.8 / 1783.1,
    # logLik -897.04 / -875.97, Chisq 42.139 on 2 df, p 7.072e-10
    assert lr["AIC"].round(1).tolist() == [1802.1, 1763.9]
    assert lr["BIC"].tolist() == pytest.approx([1814.8, 1783.1], abs=0.06)  # printed to 1 decimal
    assert lr["logLik"].round(2).tolist() == [-897.04, -875.97]
    assert lr["chisq"].iloc[1] == pytest.approx(42.139, abs=5e-4)
    assert lr["df"].iloc[1] == 2
    assert sig(lr["p"].iloc[1]) == pytest.approx(7.072e-10, rel=1e-3)
    assert sleep_slope.fit_statistics["AIC"].iloc[0] == pytest.approx(1763.94, abs=0.01)


def test_random_intercept_icc_is_share_of_variance():
    m = TrajectoryModel("reaction", random="intercept", cluster=None, time_scale=1).fit(sleepstudy_long())
    vc = m.variance_components
    # lme4 (1 | Subject): intercept SD 37.12, residual SD 30.99 (REML)
    assert sig(vc["sd"].iloc[0]) == 37.12
    assert sig(vc["sd"].iloc[1]) == 30.99
    assert m.icc == pytest.approx(37.12**2 / (37.12**2 + 30.99**2), abs=1e-3)


def test_rossi_cox_matches_r_survival():
    from lifelines.datasets import load_rossi

    _, tab = fit_cox(load_rossi(), "week", "arrest", ["fin", "age", "race", "wexp", "mar", "paro", "prio"])
    t = tab.set_index("term")
    # R: coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi)
    # (Fox & Weisberg, Cox regression appendix to An R Companion to Applied Regression)
    published = {
        "fin": (-0.37942, 0.19138),
        "age": (-0.05744, 0.02200),
        "race": (0.31390, 0.30799),
        "wexp": (-0.14980, 0.21222),
        "mar": (-0.43370, 0.38187),
        "paro": (-0.08487, 0.19576),
        "prio": (0.09150, 0.02865),
    }
    for term, (coef, se) in published.items():
        assert t.loc[term, "coef"] == pytest.approx(coef, abs=6e-5), term
        assert t.loc[term, "se"] == pytest.approx(se, abs=6e-5), term
    assert t.loc["fin", "hr"] == pytest.approx(0.68426, abs=1e-5)
    assert t.loc["fin", "p"] == pytest.approx(0.04742, abs=1e-5)
    assert t.loc["fin", "hr_ci_lower"] == pytest.approx(0.4702, abs=1e-4)
    assert t.loc["fin", "hr_ci_upper"] == pytest.approx(0.9957, abs=1e-4)
