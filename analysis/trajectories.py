"""Trajectories: linear mixed models of an outcome over time by arm, and what works for whom.

:class:`TrajectoryModel` fits ``outcome ~ time * arm (+ site) (+ covariates)`` with a random
intercept (or intercept and slope) per participant using statsmodels ``MixedLM``, and returns tidy
tables: fixed effects, variance components, ICC, fit statistics, plain-word convergence
warnings and model-predicted means per arm and wave. :class:`ModerationModel` adds a moderator
(a ``context_*`` answer or a quantitised qualitative ``code:*`` column) interacting with arm ×
time and tabulates the slope of every subgroup × arm.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from .frame import _ensure, participants, scale_frame, wave_order

__all__ = ["TrajectoryModel", "fit_trajectory", "compare_models", "ModerationModel", "fit_moderation"]

YEAR = 365.25


def _q(name: str) -> str:
    """Quote a column name for a patsy formula (``code:reduced_isolation`` has a colon)."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f'Q("{name}")'


def _pretty(term: str) -> str:
    """patsy term names -> readable ones: ``C(arm)[T.group]`` -> ``arm[group]``."""
    term = re.sub(r'C\(Q\("([^"]+)"\)\)\[T\.([^\]]+)\]', r"\1[\2]", term)
    term = re.sub(r"C\(([^)]+)\)\[T\.([^\]]+)\]", r"\1[\2]", term)
    term = re.sub(r'Q\("([^"]+)"\)', r"\1", term)
    return term


def _arm_levels(df: pd.DataFrame, reference: str | None) -> list[str]:
    arms = sorted(df["arm"].dropna().unique().tolist())
    if reference is None:
        kinds = df.groupby("arm")["arm_kind"].first()
        controls = [a for a in arms if kinds.get(a) == "control"] or [
            a for a in arms if kinds.get(a) == "active_comparator"
        ]
        reference = controls[0] if controls else arms[0]
    if reference not in arms:
        raise ValueError(f"reference arm {reference!r} is not in the frame (arms: {arms})")
    return [reference] + [a for a in arms if a != reference]


_PLAIN = [
    (
        r"converge",
        "The fit did not converge: estimates may be unreliable. Simplify the random part "
        "(random='intercept'), check the time scale, or collect more follow-up.",
    ),
    (
        r"boundary",
        "A variance component is estimated at the boundary (zero): the data carry no "
        "evidence of that between-participant variation; random='intercept' may suffice.",
    ),
    (
        r"singular|positive definite",
        "The random-effects covariance is singular: intercept and slope "
        "variation cannot be told apart; try random='intercept'.",
    ),
    (
        r"Hessian|hessian",
        "The standard errors of the variance components could not be computed; "
        "fixed effects and their standard errors are still usable.",
    ),
]


def _plain(msg: str) -> str:
    for pat, plain in _PLAIN:
        if re.search(pat, msg):
            return plain
    return msg


@dataclass
class _Design:
    data: pd.DataFrame
    fe_info: Any
    exog: np.ndarray
    exog_names: list[str]
    exog_re: np.ndarray | None
    exog_vc: dict | None
    groups: np.ndarray
    endog: np.ndarray


class TrajectoryModel:
    """Linear mixed model of an outcome's trajectory by arm (lifelines-style fitter).

    Parameters
    ----------
    outcome : str
        Scale code in the long frame (``phq9``, ``pam13_activation``, ...).
    time : {"days", "wave"}
        ``"days"``: continuous time from the ``days`` column, in years (slopes per year).
        ``"wave"``: wave as a categorical factor (a mean per wave and arm); random slopes then
        use the planned offset in years.
    by : str
        Grouping column (default ``arm``); the control arm (``arm_kind == "control"``) is the
        reference level unless ``reference`` is given.
    covariates : list of str
        Extra fixed effects: ``context_*`` columns (categorical) or numeric participant columns.
    random : {"intercept", "slope"}
        Random intercept, or random intercept and time slope (correlated) per participant.
    cluster : {"fixed", "variance", None}
        Site as a fixed effect, as a variance component (participants nested in sites; the
        intercept–slope covariance is then not estimated), or ignored.
    reml : bool
        Restricted maximum likelihood (default). AIC/BIC always come from an ML fit.
    reference : str, optional
        Reference level of ``by``.
    time_scale : float
        Days per time unit of the ``years`` term (365.25: slopes per year; 1: per day).

    Attributes (after :meth:`fit`)
    ------------------------------
    summary : DataFrame
        Fixed effects: ``term, estimate, se, z, p, ci_lower, ci_upper``.
    variance_components : DataFrame
        ``group, term, variance, sd, corr``.
    icc : float
        Between-participant share of variance at time 0: ``var(intercept) / (var(intercept) + residual)``.
    fit_statistics : DataFrame
        ``nobs, n_participants, method, logLik, REML_criterion, logLik_ML, AIC, BIC, converged``.
    predicted_means : DataFrame
        ``arm, wave, time, mean, se, ci_lower, ci_upper``: population-averaged predictions at the
        planned wave offsets, averaged over the participants' covariate values.
    warnings : list of str
        Convergence and estimation problems in plain words.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=2))        # doctest: +SKIP
    >>> m = TrajectoryModel("pam13_activation", random="slope").fit(long)  # doctest: +SKIP
    >>> m.summary.set_index("term").loc["years:arm[group]", "estimate"]  # doctest: +SKIP
    """

    def __init__(
        self,
        outcome: str,
        time: str = "days",
        by: str = "arm",
        covariates: Sequence[str] = (),
        random: str = "intercept",
        cluster: str | None = "fixed",
        reml: bool = True,
        reference: str | None = None,
        alpha: float = 0.05,
        time_scale: float = YEAR,
    ):
        if time not in ("days", "wave"):
            raise ValueError("time must be 'days' or 'wave'")
        if random not in ("intercept", "slope"):
            raise ValueError("random must be 'intercept' or 'slope'")
        if cluster not in ("fixed", "variance", None):
            raise ValueError("cluster must be 'fixed', 'variance' or None")
        self.outcome, self.time, self.by = outcome, time, by
        self.covariates = list(covariates)
        self.random, self.cluster, self.reml = random, cluster, reml
        self.reference, self.alpha = reference, alpha
        self.time_scale = float(time_scale)
        self.extra_terms: list[str] = []  # moderation adds its interaction terms here
        self._fitted = False

    # ------------------------------------------------------------------ design
    def _prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        long = _ensure(frame)
        df = scale_frame(long, self.outcome)
        need = [self.by] + [c for c in self.covariates if c not in df.columns]
        per = participants(long)
        missing = [c for c in need if c not in df.columns and c not in per.columns]
        if missing:
            raise ValueError(f"column(s) not in the frame: {missing}")
        extra = [c for c in self.covariates if c not in df.columns]
        if extra:
            df = df.merge(per[["participant"] + extra], on="participant", how="left")
        df["years"] = df["days"].where(df["days"].notna(), df["wave_offset"]) / self.time_scale
        df["planned_years"] = df["wave_offset"] / self.time_scale
        keep = ["value", "years", "participant", self.by] + self.covariates
        if self.cluster is not None:
            keep.append("site")
        df = df.dropna(subset=[c for c in keep if c in df.columns])
        self._levels = (
            _arm_levels(df.rename(columns={self.by: "arm"}) if self.by != "arm" else df, self.reference)
            if self.by == "arm"
            else sorted(df[self.by].unique().tolist())
        )
        if self.by != "arm" and self.reference:
            self._levels = [self.reference] + [x for x in self._levels if x != self.reference]
        df[self.by] = pd.Categorical(df[self.by], categories=self._levels)
        self._waves = [w for w in wave_order(long) if w in set(df["wave"].astype(str))]
        df["wave"] = pd.Categorical(df["wave"].astype(str), categories=self._waves)
        for c in self.covariates:
            if not pd.api.types.is_numeric_dtype(df[c]):
                df[c] = pd.Categorical(df[c].astype(str))
        return df.reset_index(drop=True)

    def _formula(self) -> str:
        by = f"C({_q(self.by)})"
        t = "years" if self.time == "days" else "C(wave)"
        rhs = [f"{t} * {by}"]
        if self.cluster == "fixed":
            rhs.append("C(site)")
        for c in self.covariates:
            rhs.append(_q(c))
        rhs += self.extra_terms
        return " + ".join(rhs)

    def _design(self, df: pd.DataFrame) -> _Design:
        rhs = self._formula()
        fe = patsy.dmatrix(rhs, df, return_type="dataframe", NA_action="raise")
        slope_col = "years" if self.time == "days" else "planned_years"
        if self.cluster == "variance":
            groups = df["site"].astype(str).to_numpy()
            exog_re = np.ones((len(df), 1))
            part = pd.get_dummies(df["participant"].astype(str)).to_numpy(float)
            exog_vc = {"participant": {}}
            vc = {"participant": {}, "participant_slope": {}} if self.random == "slope" else {"participant": {}}
            for g in np.unique(groups):
                idx = groups == g
                cols = part[idx].any(axis=0)
                vc["participant"][g] = part[idx][:, cols]
                if self.random == "slope":
                    vc["participant_slope"][g] = part[idx][:, cols] * df.loc[idx, slope_col].to_numpy()[:, None]
            exog_vc = vc
        else:
            groups = df["participant"].astype(str).to_numpy()
            if self.random == "slope":
                exog_re = np.column_stack([np.ones(len(df)), df[slope_col].to_numpy(float)])
            else:
                exog_re = np.ones((len(df), 1))
            exog_vc = None
        return _Design(
            df,
            fe.design_info,
            fe.to_numpy(),
            [_pretty(c) for c in fe.columns],
            exog_re,
            exog_vc,
            groups,
            df["value"].to_numpy(float),
        )

    def _build(self, design: _Design, reml: bool) -> MixedLM:
        kw = {}
        if design.exog_vc is not None:
            kw["exog_vc"] = design.exog_vc
        model = MixedLM(design.endog, design.exog, design.groups, exog_re=design.exog_re, **kw)
        model.exog_names[:] = design.exog_names
        return model

    def _fit_model(self, design: _Design, reml: bool):
        model = self._build(design, reml)
        caught: list[str] = []
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            result = model.fit(reml=reml)
        for x in w:
            if issubclass(x.category, (ConvergenceWarning, RuntimeWarning, UserWarning)):
                caught.append(str(x.message))
        return result, caught

    # ------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame) -> TrajectoryModel:
        """Fit the model to a long frame (DataFrame or path); returns ``self``."""
        df = self._prepare(frame)
        if df["participant"].nunique() < 3:
            raise ValueError(f"{self.outcome}: too few participants with data to fit a mixed model")
        self._df = df
        self._design_ = self._design(df)
        self.result_, caught = self._fit_model(self._design_, self.reml)
        msgs = [_plain(m) for m in caught]
        if not getattr(self.result_, "converged", True):
            msgs.append(_plain("converge"))
        cov = np.atleast_2d(self.result_.cov_re)
        if self.cluster != "variance" and np.any(np.diag(cov) < 1e-8 * max(self.result_.scale, 1e-12)):
            msgs.append(_plain("boundary"))
        self.warnings = list(dict.fromkeys(msgs))
        self._ml_ = None
        self._fitted = True
        return self

    def _check(self):
        if not self._fitted:
            raise RuntimeError("call fit() first")

    @property
    def params_(self) -> pd.Series:
        self._check()
        return pd.Series(np.asarray(self.result_.fe_params), index=self._design_.exog_names)

    @property
    def cov_params_(self) -> np.ndarray:
        self._check()
        k = len(self._design_.exog_names)
        return np.asarray(self.result_.cov_params())[:k, :k]

    @property
    def summary(self) -> pd.DataFrame:
        self._check()
        est = self.params_.to_numpy()
        se = np.sqrt(np.diag(self.cov_params_))
        z = est / se
        q = stats.norm.ppf(1 - self.alpha / 2)
        return pd.DataFrame(
            {
                "term": self._design_.exog_names,
                "estimate": est,
                "se": se,
                "z": z,
                "p": 2 * stats.norm.sf(np.abs(z)),
                "ci_lower": est - q * se,
                "ci_upper": est + q * se,
            }
        )

    @property
    def variance_components(self) -> pd.DataFrame:
        self._check()
        r = self.result_
        rows = []
        if self.cluster == "variance":
            rows.append({"group": "site", "term": "(Intercept)", "variance": float(np.atleast_2d(r.cov_re)[0, 0])})
            for name, v in zip(r.model.exog_vc.names, np.asarray(r.vcomp)):
                rows.append(
                    {
                        "group": "participant",
                        "term": "(Intercept)" if name == "participant" else "years",
                        "variance": float(v),
                    }
                )
        else:
            cov = np.atleast_2d(r.cov_re)
            rows.append({"group": "participant", "term": "(Intercept)", "variance": float(cov[0, 0])})
            if cov.shape[0] > 1:
                corr = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]) if cov[0, 0] > 0 and cov[1, 1] > 0 else np.nan
                rows.append(
                    {"group": "participant", "term": "years", "variance": float(cov[1, 1]), "corr": float(corr)}
                )
        rows.append({"group": "residual", "term": "", "variance": float(r.scale)})
        out = pd.DataFrame(rows)
        if "corr" not in out:
            out["corr"] = np.nan
        out["sd"] = np.sqrt(out["variance"].clip(lower=0))
        return out[["group", "term", "variance", "sd", "corr"]]

    @property
    def icc(self) -> float:
        vc = self.variance_components
        between = vc[(vc["term"] == "(Intercept)")]["variance"].sum()
        return float(between / (between + vc[vc["group"] == "residual"]["variance"].iloc[0]))

    def _ml_result(self):
        if self.reml is False:
            return self.result_
        if self._ml_ is None:
            self._ml_, _ = self._fit_model(self._design_, reml=False)
        return self._ml_

    @property
    def n_params(self) -> int:
        """Fixed effects + variance parameters + residual variance (for AIC/BIC and LR tests)."""
        self._check()
        k_fe = len(self._design_.exog_names)
        k_re = self.result_.model.k_re
        k_vc = self.result_.model.k_vc
        return k_fe + k_re * (k_re + 1) // 2 + k_vc + 1

    @property
    def fit_statistics(self) -> pd.DataFrame:
        """Fit statistics; AIC and BIC from the ML log-likelihood (refitted by ML if needed)."""
        self._check()
        ml = self._ml_result()
        n = self.result_.nobs
        k = self.n_params
        ll_ml = float(ml.llf)
        return pd.DataFrame(
            [
                {
                    "nobs": int(n),
                    "n_participants": int(self._df["participant"].nunique()),
                    "method": "REML" if self.reml else "ML",
                    "logLik": float(self.result_.llf),
                    "REML_criterion": -2 * float(self.result_.llf) if self.reml else np.nan,
                    "logLik_ML": ll_ml,
                    "AIC": -2 * ll_ml + 2 * k,
                    "BIC": -2 * ll_ml + np.log(n) * k,
                    "converged": bool(getattr(self.result_, "converged", True)),
                }
            ]
        )

    def _rows(self, overrides: dict[str, Any], base: pd.DataFrame | None = None) -> np.ndarray:
        """Design rows of every participant (first row each) with some columns overridden."""
        base = self._df.drop_duplicates("participant") if base is None else base
        d = base.copy()
        for k, v in overrides.items():
            if isinstance(d[k].dtype, pd.CategoricalDtype):
                d[k] = pd.Categorical([v] * len(d), categories=d[k].cat.categories)
            else:
                d[k] = v
        return np.asarray(patsy.build_design_matrices([self._design_.fe_info], d)[0])

    def _contrast(self, L: np.ndarray) -> tuple[float, float]:
        est = float(L @ self.params_.to_numpy())
        se = float(np.sqrt(L @ self.cov_params_ @ L))
        return est, se

    @property
    def predicted_means(self) -> pd.DataFrame:
        """Model-predicted mean per arm and wave (population average over covariates)."""
        self._check()
        q = stats.norm.ppf(1 - self.alpha / 2)
        offsets = self._df.groupby("wave", observed=True)["wave_offset"].first()
        rows = []
        for lvl in self._levels:
            for w in self._waves:
                t = float(offsets.get(w, np.nan)) / self.time_scale
                X = self._rows({self.by: lvl, "years": t, "planned_years": t, "wave": w})
                L = X.mean(axis=0)
                est, se = self._contrast(L)
                rows.append(
                    {
                        self.by: lvl,
                        "wave": w,
                        "time": t,
                        "mean": est,
                        "se": se,
                        "ci_lower": est - q * se,
                        "ci_upper": est + q * se,
                    }
                )
        return pd.DataFrame(rows)

    def slopes(self) -> pd.DataFrame:
        """Yearly slope per arm and its difference from the reference arm (``time="days"`` only).

        Columns: ``arm, slope, se, ci_lower, ci_upper, diff, diff_se, diff_ci_lower, diff_ci_upper, diff_p``.
        """
        self._check()
        if self.time != "days":
            raise ValueError("slopes need time='days'")
        q = stats.norm.ppf(1 - self.alpha / 2)
        L = {
            lvl: (self._rows({self.by: lvl, "years": 1.0}) - self._rows({self.by: lvl, "years": 0.0})).mean(axis=0)
            for lvl in self._levels
        }
        ref = L[self._levels[0]]
        rows = []
        for lvl in self._levels:
            est, se = self._contrast(L[lvl])
            d, dse = self._contrast(L[lvl] - ref)
            rows.append(
                {
                    self.by: lvl,
                    "slope": est,
                    "se": se,
                    "ci_lower": est - q * se,
                    "ci_upper": est + q * se,
                    "diff": d,
                    "diff_se": dse,
                    "diff_ci_lower": d - q * dse,
                    "diff_ci_upper": d + q * dse,
                    "diff_p": 2 * stats.norm.sf(abs(d / dse)) if dse > 0 else np.nan,
                }
            )
        return pd.DataFrame(rows)

    def observed_means(self) -> pd.DataFrame:
        """Observed mean ± 95% CI (t) per arm and wave: ``arm, wave, time, n, mean, sd, ci_lower, ci_upper``."""
        self._check()
        g = self._df.groupby([self.by, "wave"], observed=True)
        out = g["value"].agg(n="count", mean="mean", sd="std").reset_index()
        out["time"] = g["wave_offset"].first().to_numpy() / self.time_scale
        h = stats.t.ppf(1 - self.alpha / 2, np.maximum(out["n"] - 1, 1)) * out["sd"] / np.sqrt(out["n"])
        out["ci_lower"], out["ci_upper"] = out["mean"] - h, out["mean"] + h
        out[self.by] = out[self.by].astype(str)
        out["wave"] = out["wave"].astype(str)
        return out[[self.by, "wave", "time", "n", "mean", "sd", "ci_lower", "ci_upper"]]

    def print_summary(self, decimals: int = 3) -> None:
        """Print the model, fixed effects, variance components and warnings."""
        self._check()
        fs = self.fit_statistics.iloc[0]
        print(f"<TrajectoryModel: {self.outcome} ~ {self._formula()}>")
        print(
            f"random={self.random!r}  cluster={self.cluster!r}  method={fs['method']}  "
            f"n={fs['nobs']} observations, {fs['n_participants']} participants"
        )
        print(
            f"logLik={fs['logLik']:.{decimals}f}  AIC(ML)={fs['AIC']:.{decimals}f}  BIC(ML)={fs['BIC']:.{decimals}f}  "
            f"ICC={self.icc:.{decimals}f}"
        )
        print("\nFixed effects")
        print(self.summary.round(decimals).to_string(index=False))
        print("\nVariance components")
        print(self.variance_components.round(decimals).to_string(index=False))
        for w in self.warnings:
            print(f"\nWarning: {w}")

    def plot(self, ax=None, path=None):
        """Observed means ± CI with model predictions per arm; see :func:`analysis.plots.plot_trajectory`."""
        from .plots import plot_trajectory

        return plot_trajectory(self, ax=ax, path=path)


def fit_trajectory(
    frame: pd.DataFrame,
    outcome: str,
    time: str = "days",
    by: str = "arm",
    covariates: Sequence[str] = (),
    random: str = "intercept",
    cluster: str | None = "fixed",
    reml: bool = True,
    reference: str | None = None,
) -> TrajectoryModel:
    """Fit a :class:`TrajectoryModel` (functional form); see the class for the parameters.

    Examples
    --------
    >>> # m = fit_trajectory(long, "phq9", random="slope"); m.summary
    """
    return TrajectoryModel(
        outcome, time=time, by=by, covariates=covariates, random=random, cluster=cluster, reml=reml, reference=reference
    ).fit(frame)


def compare_models(m0: TrajectoryModel, m1: TrajectoryModel) -> pd.DataFrame:
    """Likelihood-ratio test of two nested models, both refitted by maximum likelihood.

    The models must be fitted on the same observations. When the larger model adds a variance
    component, the chi-square p-value is conservative (the null lies on the boundary; a 50:50
    mixture of chi-square distributions would halve it).

    Returns
    -------
    DataFrame
        One row per model: ``model, n_params, logLik, AIC, BIC, chisq, df, p`` (test on the second row).
    """
    for m in (m0, m1):
        m._check()
    if m0.result_.nobs != m1.result_.nobs:
        raise ValueError("the models were fitted on different observations; compare nested models on the same rows")
    ll0, ll1 = float(m0._ml_result().llf), float(m1._ml_result().llf)
    k0, k1 = m0.n_params, m1.n_params
    if k1 < k0:
        raise ValueError("m1 must be the larger model (more parameters)")
    chisq = max(2 * (ll1 - ll0), 0.0)
    df = k1 - k0
    n = m0.result_.nobs
    rows = []
    for name, ll, k in (("m0", ll0, k0), ("m1", ll1, k1)):
        rows.append(
            {"model": name, "n_params": k, "logLik": ll, "AIC": -2 * ll + 2 * k, "BIC": -2 * ll + np.log(n) * k}
        )
    out = pd.DataFrame(rows)
    out["chisq"] = [np.nan, chisq]
    out["df"] = [np.nan, df]
    out["p"] = [np.nan, stats.chi2.sf(chisq, df) if df > 0 else np.nan]
    return out


class ModerationModel(TrajectoryModel):
    """What works for whom: the trajectory model with a moderator × arm × time interaction.

    Parameters
    ----------
    outcome : str
    moderator : str
        A participant-level column: a ``context_*`` answer, a ``code:*`` quantitised qualitative
        code (0/1), or any categorical column. Numeric moderators with more than two values are
        treated as continuous (slopes are then given at the mean ± 1 SD).
    min_per_cell : int
        Levels with fewer participants than this in any arm are left out (listed in ``warnings``).
    **kwargs
        As :class:`TrajectoryModel` (``time`` must be ``"days"``).

    Attributes (after :meth:`fit`)
    ------------------------------
    subgroup_slopes : DataFrame
        ``moderator, level, arm, n_participants, slope, se, ci_lower, ci_upper, p``.
    subgroup_effects : DataFrame
        Slope difference of each arm from the reference arm within each level:
        ``moderator, level, arm, n_participants, effect, se, ci_lower, ci_upper, p``.
    interaction_test : DataFrame
        Wald test that the arm × time effect is the same in every level: ``chisq, df, p``.
    """

    def __init__(self, outcome: str, moderator: str, min_per_cell: int = 5, **kwargs):
        kwargs.setdefault("time", "days")
        self.min_per_cell = int(min_per_cell)
        if kwargs["time"] != "days":
            raise ValueError("moderation needs time='days'")
        super().__init__(outcome, **kwargs)
        self.moderator = moderator

    def _prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        long = _ensure(frame)
        if self.moderator not in long.columns:
            raise ValueError(f"moderator {self.moderator!r} is not a column of the frame")
        covs = self.covariates
        self.covariates = covs + [self.moderator] if self.moderator not in covs else covs
        try:
            df = super()._prepare(long)
        finally:
            self.covariates = covs
        col = df[self.moderator]
        self._continuous = False
        if isinstance(col.dtype, pd.CategoricalDtype):
            pass
        elif pd.api.types.is_numeric_dtype(col) and col.nunique() > 2:
            self._continuous = True
        else:
            df[self.moderator] = pd.Categorical(col.astype(str))
        self._dropped_levels: list[str] = []
        if not self._continuous:
            # A subgroup slope needs participants in every arm of that subgroup; sparse levels
            # would make the design singular, so they are set aside (and reported).
            per = df.drop_duplicates("participant")
            counts = pd.crosstab(per[self.moderator], per[self.by])
            keep = [lvl for lvl in counts.index if (counts.loc[lvl] >= self.min_per_cell).all()]
            self._dropped_levels = [str(lvl) for lvl in counts.index if lvl not in keep]
            df = df[df[self.moderator].isin(keep)].reset_index(drop=True)
            df[self.moderator] = pd.Categorical(df[self.moderator].astype(str), categories=[str(k) for k in keep])
            if len(keep) < 2:
                raise ValueError(
                    f"moderator {self.moderator!r}: fewer than two levels with at least "
                    f"{self.min_per_cell} participants in every arm"
                )
        m = _q(self.moderator)
        m = m if self._continuous else f"C({m})"
        self.extra_terms = [f"years:{m}", f"C({_q(self.by)}):{m}", f"years:C({_q(self.by)}):{m}"]
        if self.moderator not in self.covariates:
            self.extra_terms.insert(0, m)
        return df

    def fit(self, frame: pd.DataFrame) -> ModerationModel:
        super().fit(frame)
        if getattr(self, "_dropped_levels", None):
            self.warnings.append(
                f"Levels of {self.moderator} with fewer than {self.min_per_cell} participants in "
                f"some arm were left out: {', '.join(self._dropped_levels)}."
            )
        return self

    def _levels_of_moderator(self) -> list[Any]:
        col = self._df[self.moderator]
        if self._continuous:
            mu, sd = float(col.mean()), float(col.std())
            return [mu - sd, mu, mu + sd]
        return list(col.cat.categories)

    def _level_rows(self, level) -> pd.DataFrame:
        base = self._df.drop_duplicates("participant")
        if self._continuous:
            return base
        sub = base[base[self.moderator] == level]
        return sub if len(sub) else base.iloc[:1]

    def _slope_L(self, arm, level) -> np.ndarray:
        base = self._level_rows(level)
        over = {self.by: arm, self.moderator: level}
        return (self._rows({**over, "years": 1.0}, base) - self._rows({**over, "years": 0.0}, base)).mean(axis=0)

    @property
    def subgroup_slopes(self) -> pd.DataFrame:
        self._check()
        q = stats.norm.ppf(1 - self.alpha / 2)
        base = self._df.drop_duplicates("participant")
        rows = []
        for level in self._levels_of_moderator():
            for arm in self._levels:
                est, se = self._contrast(self._slope_L(arm, level))
                n = (
                    int(((base[self.by] == arm) & (base[self.moderator] == level)).sum())
                    if not self._continuous
                    else int((base[self.by] == arm).sum())
                )
                rows.append(
                    {
                        "moderator": self.moderator,
                        "level": level,
                        self.by: arm,
                        "n_participants": n,
                        "slope": est,
                        "se": se,
                        "ci_lower": est - q * se,
                        "ci_upper": est + q * se,
                        "p": 2 * stats.norm.sf(abs(est / se)) if se > 0 else np.nan,
                    }
                )
        return pd.DataFrame(rows)

    @property
    def subgroup_effects(self) -> pd.DataFrame:
        self._check()
        q = stats.norm.ppf(1 - self.alpha / 2)
        base = self._df.drop_duplicates("participant")
        rows = []
        for level in self._levels_of_moderator():
            ref = self._slope_L(self._levels[0], level)
            for arm in self._levels[1:]:
                est, se = self._contrast(self._slope_L(arm, level) - ref)
                n = int((base[self.moderator] == level).sum()) if not self._continuous else len(base)
                rows.append(
                    {
                        "moderator": self.moderator,
                        "level": level,
                        self.by: arm,
                        "n_participants": n,
                        "effect": est,
                        "se": se,
                        "ci_lower": est - q * se,
                        "ci_upper": est + q * se,
                        "p": 2 * stats.norm.sf(abs(est / se)) if se > 0 else np.nan,
                    }
                )
        return pd.DataFrame(rows)

    @property
    def interaction_test(self) -> pd.DataFrame:
        """Wald chi-square test of the three-way ``years × arm × moderator`` terms."""
        self._check()
        names = self._design_.exog_names
        idx = [i for i, n in enumerate(names) if n.startswith("years:") and n.count(":") == 2]
        if not idx:
            return pd.DataFrame([{"chisq": np.nan, "df": 0, "p": np.nan}])
        b = self.params_.to_numpy()[idx]
        V = self.cov_params_[np.ix_(idx, idx)]
        chisq = float(b @ np.linalg.pinv(V) @ b)
        return pd.DataFrame([{"chisq": chisq, "df": len(idx), "p": stats.chi2.sf(chisq, len(idx))}])

    def plot(self, ax=None, path=None):
        from .plots import plot_forest

        return plot_forest(self.subgroup_effects, ax=ax, path=path)


def fit_moderation(frame: pd.DataFrame, outcome: str, moderator: str, **kwargs) -> ModerationModel:
    """Fit a :class:`ModerationModel` (functional form).

    Examples
    --------
    >>> # fit_moderation(long, "pam13_activation", "context_living_situation").subgroup_effects
    """
    return ModerationModel(outcome, moderator, **kwargs).fit(frame)
