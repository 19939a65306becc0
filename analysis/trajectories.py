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
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM

from .frame import _ensure, participants, scale_frame, wave_order
from .lmm import Component, Marginal, fit_mixedlm

__all__ = ["TrajectoryModel", "fit_trajectory", "compare_models"]

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


class TrajectoryModel:
    """Linear mixed model of an outcome's trajectory by arm (lifelines-style fitter).

    Parameters
    ----------
    outcome : str
        Scale code in the long frame (``phq9``, ``pam13_activation``, ...).
    time : {"days", "wave"}
        ``"days"``: continuous time from the ``days`` column, in ``time_scale`` units (years by
        default: slopes per year). ``"wave"``: wave as a categorical factor (a mean per wave and arm);
        random slopes then use the planned offset.
    by : str
        Grouping column (default ``arm``); the control arm (``arm_kind == "control"``) is the
        reference level unless ``reference`` is given.
    covariates : list of str
        Extra fixed effects: ``context_*`` columns (categorical) or numeric participant columns.
    random : {"intercept", "slope"}
        Random intercept, or random intercept and time slope (correlated) per participant.
    cluster : {"fixed", None, "group", "site"}
        ``"fixed"``: site as a fixed effect (dropped when the frame has one site or none);
        ``None``: site ignored; ``"group"``: participants nested in peer groups (column ``group_col``),
        a random group intercept for participants who have a group; participants without one
        (a control arm in a partially nested trial) have none (Candlish et al. 2018); ``"site"``:
        participants (within peer groups, when ``group_col`` is present) within sites, with a random
        site intercept; refused with fewer than ``min_sites`` sites. The participant's intercept–slope
        covariance is estimated at every level. (``"variance"`` is an old spelling of ``"site"``.)
    reml : bool
        Restricted maximum likelihood (default). AIC/BIC always come from an ML fit.
    reference : str, optional
        Reference level of ``by``.
    alpha : float
        1 − confidence level of the intervals.
    time_scale : float
        Days per time unit (365.25: slopes per year; 1: per day).
    formula, re_formula, vc_formula : str, str, dict, optional
        Escape hatch in statsmodels formula syntax: ``formula`` replaces the fixed part (right-hand
        side, or ``"value ~ ..."``), ``re_formula`` the participant random part (``"~years"``),
        ``vc_formula`` adds variance components within participant. Columns of the modelling frame:
        ``value, years, planned_years, wave, participant, site, arm`` and the covariates.
    df_method : {"satterthwaite", "normal"}
        Satterthwaite denominator degrees of freedom (t-based p-values and intervals; the lmerTest
        default) or large-sample normal ones.
    group_col : str
        Peer-group column for ``cluster="group"``/``"site"`` (default ``peer_group``).
    min_sites : int
        Fewest sites for which a site variance is estimated (default 5).

    Attributes (after :meth:`fit`)
    ------------------------------
    summary : DataFrame
        Fixed effects: ``term, estimate, se, df, t, p, ci_lower, ci_upper``.
    variance_components : DataFrame
        ``group, term, variance, sd, corr``.
    icc : float
        Share of the variance at time 0 that lies between participants (all random intercepts).
    icc_levels : DataFrame
        ``level, variance, icc`` per random level (site, group, participant).
    fit_statistics : DataFrame
        ``nobs, n_participants, method, logLik, REML_criterion, logLik_ML, AIC, BIC, converged``.
    predicted_means : DataFrame
        ``arm, wave, time, mean, se, df, ci_lower, ci_upper`` at the planned wave offsets, averaged
        over the participants' covariate values.
    levels_, reference_, waves_ : list, str, list
        Levels of ``by`` (reference first), the reference level, the waves modelled.
    data_ : DataFrame
        The modelling frame (one row per observation used).
    n_participants_, nobs_ : int
    formula_, re_formula_ : str
        The fixed and participant random parts as fitted.
    params_, cov_params_, df_ : Series, ndarray, Series
        Fixed effects, their covariance, their Satterthwaite df.
    fit_report_ : :class:`analysis.lmm.FitReport`
        The optimiser that reached the optimum, every attempt, the gradient check.
    converged_ : bool
    warnings : list of str
        Estimation problems in plain words.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(60, seed=2))
    >>> m = TrajectoryModel("phq9", random="slope").fit(long)
    >>> m.reference_, m.converged_
    ('usual_care', True)
    >>> list(m.summary.columns)
    ['term', 'estimate', 'se', 'df', 't', 'p', 'ci_lower', 'ci_upper']
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
        formula: str | None = None,
        re_formula: str | None = None,
        vc_formula: dict[str, str] | None = None,
        df_method: str = "satterthwaite",
        group_col: str = "peer_group",
        min_sites: int = 5,
    ):
        if time not in ("days", "wave"):
            raise ValueError("time must be 'days' or 'wave'")
        if random not in ("intercept", "slope"):
            raise ValueError("random must be 'intercept' or 'slope'")
        if cluster == "variance":
            cluster = "site"
        if cluster not in ("fixed", None, "group", "site"):
            raise ValueError("cluster must be 'fixed', None, 'group' or 'site'")
        if df_method not in ("satterthwaite", "normal"):
            raise ValueError("df_method must be 'satterthwaite' or 'normal'")
        if (re_formula or vc_formula) and cluster in ("group", "site"):
            raise ValueError("re_formula/vc_formula apply to two-level models; use cluster='fixed' or None")
        self.outcome, self.time, self.by = outcome, time, by
        self.covariates = list(covariates)
        self.random, self.cluster, self.reml = random, cluster, reml
        self.reference, self.alpha = reference, alpha
        self.time_scale = float(time_scale)
        self.formula, self.re_formula, self.vc_formula = formula, re_formula, dict(vc_formula or {})
        self.df_method, self.group_col, self.min_sites = df_method, group_col, int(min_sites)
        self.extra_terms: list[str] = []  # moderation adds its interaction terms here
        self._fitted = False

    # ------------------------------------------------------------------ design
    def _prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        long = _ensure(frame)
        df = scale_frame(long, self.outcome)
        per = participants(long)
        extra_cols = [c for c in self.covariates if c not in df.columns]
        if self.cluster in ("group", "site") and self.group_col in long.columns and self.group_col not in df.columns:
            extra_cols.append(self.group_col)
        missing = [c for c in [self.by] + extra_cols if c not in df.columns and c not in long.columns]
        if missing:
            raise ValueError(f"column(s) not in the frame: {missing}")
        if extra_cols:
            first = long.groupby("participant")[extra_cols].first().reset_index()
            df = df.merge(first, on="participant", how="left")
        del per
        df["years"] = df["days"].where(df["days"].notna(), df["wave_offset"]) / self.time_scale
        df["planned_years"] = df["wave_offset"] / self.time_scale
        has_site = "site" in df.columns and df["site"].notna().any()
        self.site_fixed_ = bool(self.cluster == "fixed" and has_site and df["site"].nunique() > 1)
        keep = ["value", "years", "participant", self.by] + self.covariates
        if self.site_fixed_ or self.cluster == "site":
            keep.append("site")
        df = df.dropna(subset=[c for c in keep if c in df.columns])
        if df.empty:
            raise ValueError(f"{self.outcome}: no rows with an outcome, time, {self.by} and the covariates")
        if self.by == "arm":
            self.levels_ = _arm_levels(df, self.reference)
        else:
            self.levels_ = sorted(df[self.by].astype(str).unique().tolist())
            if self.reference:
                if self.reference not in self.levels_:
                    raise ValueError(f"reference {self.reference!r} is not a level of {self.by}")
                self.levels_ = [self.reference] + [x for x in self.levels_ if x != self.reference]
            df[self.by] = df[self.by].astype(str)
        self.reference_ = self.levels_[0]
        df[self.by] = pd.Categorical(df[self.by], categories=self.levels_)
        self.waves_ = [w for w in wave_order(long) if w in set(df["wave"].astype(str))]
        df["wave"] = pd.Categorical(df["wave"].astype(str), categories=self.waves_)
        for c in self.covariates:
            if not pd.api.types.is_numeric_dtype(df[c]):
                df[c] = pd.Categorical(df[c].astype(str))
        return df.reset_index(drop=True)

    def _rhs(self) -> str:
        if self.formula:
            return self.formula.split("~", 1)[1].strip() if "~" in self.formula else self.formula.strip()
        by = f"C({_q(self.by)})"
        t = "years" if self.time == "days" else "C(wave)"
        rhs = [f"{t} * {by}"]
        if self.site_fixed_:
            rhs.append("C(site)")
        for c in self.covariates:
            rhs.append(_q(c))
        rhs += self.extra_terms
        return " + ".join(rhs)

    def _slope_col(self) -> str:
        return "years" if self.time == "days" else "planned_years"

    def _re_formula(self) -> str:
        if self.re_formula:
            return self.re_formula
        return f"~{self._slope_col()}" if self.random == "slope" else "~1"

    # ------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame) -> TrajectoryModel:
        """Fit the model to a long frame (DataFrame or path); returns ``self``."""
        df = self._prepare(frame)
        if df["participant"].nunique() < 3:
            raise ValueError(f"{self.outcome}: too few participants with data to fit a mixed model")
        self.data_ = df
        self.n_participants_ = int(df["participant"].nunique())
        self.nobs_ = len(df)
        self.formula_ = f"value ~ {self._rhs()}"
        self._ml_llf_: float | None = None
        msgs: list[str] = []
        if self.cluster in ("group", "site"):
            self._fit_nested(df, msgs)
        else:
            self._fit_statsmodels(df, msgs)
        if not self.converged_:
            msgs.append(
                "The optimiser did not reach an optimum of the likelihood (tried L-BFGS, BFGS, Powell and "
                "Nelder–Mead from several starting points): estimates may be unreliable. Simplify the random "
                "part (random='intercept') or check the time scale."
            )
        msgs += self._boundary_messages()
        self.warnings = list(dict.fromkeys(msgs))
        self._fitted = True
        self.df_ = pd.Series(self._dfs(np.eye(len(self.exog_names_))), index=self.exog_names_)
        return self

    def _fit_statsmodels(self, df: pd.DataFrame, msgs: list[str]) -> None:
        vc = self.vc_formula or None
        model = MixedLM.from_formula(
            self.formula_, df, groups="participant", re_formula=self._re_formula(), vc_formula=vc
        )
        self.re_formula_ = self._re_formula()
        self.design_info_ = model.data.model_spec
        self.exog_names_ = [_pretty(c) for c in model.exog_names]
        self._model = model
        self.result_, self.fit_report_, self.engine_ = fit_mixedlm(model, reml=self.reml)
        self.theta_ = self.fit_report_.theta
        k = len(self.exog_names_)
        self.params_ = pd.Series(np.asarray(self.result_.fe_params), index=self.exog_names_)
        self.cov_params_ = np.asarray(self.result_.cov_params())[:k, :k]
        self.llf_ = float(self.result_.llf)
        self.converged_ = bool(self.fit_report_.converged)
        re_names = patsy.dmatrix(self.re_formula_, df.head(2), return_type="dataframe").columns
        terms = [
            "(Intercept)" if c == "Intercept" else ("years" if c == self._slope_col() else _pretty(c)) for c in re_names
        ]
        self._components = [Component("participant", terms)]
        if self.vc_formula:
            self._components += [Component(str(n), ["(Intercept)"]) for n in model.exog_vc.names]

    def _fit_nested(self, df: pd.DataFrame, msgs: list[str]) -> None:
        if self.cluster == "site":
            n_sites = df["site"].nunique()
            if n_sites < self.min_sites:
                raise ValueError(
                    f"a site variance needs at least {self.min_sites} sites; this frame has {n_sites}. "
                    "Use cluster='fixed' (site as a fixed effect) or cluster='group'."
                )
        has_groups = self.group_col in df.columns and df[self.group_col].notna().any()
        if self.cluster == "group" and not has_groups:
            raise ValueError(f"cluster='group' needs a {self.group_col!r} column naming each participant's peer group")
        fe = patsy.dmatrix(self._rhs(), df, return_type="dataframe", NA_action="raise")
        self.design_info_ = fe.design_info
        self.exog_names_ = [_pretty(c) for c in fe.columns]
        self.re_formula_ = self._re_formula()
        slope = self.random == "slope"
        t = df[self._slope_col()].to_numpy(float)
        part = df["participant"].astype(str).to_numpy()
        grp = (
            df[self.group_col].astype(object).where(df[self.group_col].notna(), None).to_numpy()
            if has_groups
            else np.full(len(df), None)
        )
        grp = np.array([None if g is None else f"g:{g}" for g in grp], dtype=object)
        site = df["site"].astype(str).to_numpy() if self.cluster == "site" else None
        comps = []
        if self.cluster == "site":
            comps.append(Component("site", ["(Intercept)"]))
        if has_groups:
            comps.append(Component("group", ["(Intercept)"]))
        comps.append(Component("participant", ["(Intercept)", "years"] if slope else ["(Intercept)"]))
        top = site if site is not None else np.where(grp != None, grp, "p:" + part)  # noqa: E711
        clusters = []
        for key in pd.unique(top):
            rows = np.flatnonzero(top == key)
            cols, blocks = [], []
            if self.cluster == "site":
                cols.append(np.ones(len(rows)))
                blocks.append(1)
            if has_groups:
                gs = [g for g in pd.unique(grp[rows]) if g is not None]
                for g in gs:
                    cols.append((grp[rows] == g).astype(float))
                blocks.append(len(gs))
            ps = pd.unique(part[rows])
            for pid in ps:
                ind = (part[rows] == pid).astype(float)
                cols.append(ind)
                if slope:
                    cols.append(ind * t[rows])
            blocks.append(len(ps))
            clusters.append((rows, np.column_stack(cols), blocks))
        engine = Marginal(fe.to_numpy(), df["value"].to_numpy(float), clusters, comps)
        report = engine.fit(reml=self.reml)
        self.engine_, self.fit_report_, self.theta_ = engine, report, report.theta
        self._components = comps
        self.result_ = None
        self.params_ = pd.Series(engine.beta(report.theta), index=self.exog_names_)
        self.cov_params_ = engine.cov_beta(report.theta)
        self.llf_ = float(report.llf)
        self.converged_ = bool(report.converged)

    def _boundary_messages(self) -> list[str]:
        out = []
        psis = self.engine_.psis_from_theta(self.theta_[:-1])
        sigma2 = self.theta_[-1]
        for comp, psi in zip(self._components, psis, strict=False):
            for i, term in enumerate(comp.terms):
                if psi[i, i] <= 1e-6 * sigma2:
                    out.append(
                        f"The {comp.name} variance of {term} is estimated at zero: the data carry no evidence "
                        "of that variation; a simpler random part may suffice."
                    )
            if comp.d == 2 and psi[0, 0] > 0 and psi[1, 1] > 0:
                r = psi[0, 1] / np.sqrt(psi[0, 0] * psi[1, 1])
                if abs(r) > 0.999:
                    out.append(
                        "The random-effects covariance is singular (intercept–slope correlation ±1): intercept "
                        "and slope variation cannot be told apart; try random='intercept'."
                    )
        return out

    def _check(self):
        if not self._fitted:
            raise RuntimeError("call fit() first")

    def _dfs(self, L: np.ndarray) -> np.ndarray:
        L = np.atleast_2d(L)
        if self.df_method == "normal":
            return np.full(len(L), np.inf)
        return self.engine_.satterthwaite(self.theta_, L, reml=self.reml)

    def _q(self, df) -> np.ndarray:
        df = np.asarray(df, float)
        return np.where(
            np.isfinite(df),
            stats.t.ppf(1 - self.alpha / 2, np.where(np.isfinite(df), df, 1)),
            stats.norm.ppf(1 - self.alpha / 2),
        )

    def _p(self, est, se, df) -> np.ndarray:
        tval = np.asarray(est, float) / np.asarray(se, float)
        df = np.asarray(df, float)
        return np.where(
            np.isfinite(df),
            2 * stats.t.sf(np.abs(tval), np.where(np.isfinite(df), df, 1)),
            2 * stats.norm.sf(np.abs(tval)),
        )

    # ------------------------------------------------------------------ tables
    @property
    def summary(self) -> pd.DataFrame:
        """Fixed effects with Satterthwaite df and t-based p-values and intervals."""
        self._check()
        est = self.params_.to_numpy()
        se = np.sqrt(np.diag(self.cov_params_))
        df = self.df_.to_numpy()
        q = self._q(df)
        return pd.DataFrame(
            {
                "term": self.exog_names_,
                "estimate": est,
                "se": se,
                "df": df,
                "t": est / se,
                "p": self._p(est, se, df),
                "ci_lower": est - q * se,
                "ci_upper": est + q * se,
            }
        )

    def contrast(self, L: Sequence[float] | np.ndarray, label: str = "contrast") -> pd.DataFrame:
        """Test of a linear combination ``L β`` (lmerTest's ``contest1D``).

        Returns ``term, estimate, se, df, t, p, ci_lower, ci_upper``.

        Examples
        --------
        >>> from analysis.synthetic import simulate_cohort
        >>> from analysis.frame import long_from_synthetic
        >>> m = TrajectoryModel("phq9").fit(long_from_synthetic(simulate_cohort(60, seed=2)))
        >>> L = [1.0 if t == "years" else 0.0 for t in m.exog_names_]
        >>> float(m.contrast(L)["estimate"].iloc[0]) == float(m.params_["years"])
        True
        """
        self._check()
        L = np.asarray(L, float)
        est, se = self._contrast(L)
        df = float(self._dfs(L)[0])
        q = float(self._q(df))
        return pd.DataFrame(
            [
                {
                    "term": label,
                    "estimate": est,
                    "se": se,
                    "df": df,
                    "t": est / se,
                    "p": float(self._p(est, se, df)),
                    "ci_lower": est - q * se,
                    "ci_upper": est + q * se,
                }
            ]
        )

    @property
    def variance_components(self) -> pd.DataFrame:
        """``group, term, variance, sd, corr`` (residual last)."""
        self._check()
        rows = []
        psis = self.engine_.psis_from_theta(self.theta_[:-1])
        for comp, psi in zip(self._components, psis, strict=False):
            name = "participant" if comp.name == "re" else comp.name
            for i, term in enumerate(comp.terms):
                term = "years" if term == self._slope_col() else term
                corr = np.nan
                if i > 0 and psi[0, 0] > 0 and psi[i, i] > 0:
                    corr = psi[0, i] / np.sqrt(psi[0, 0] * psi[i, i])
                rows.append(
                    {
                        "group": name,
                        "term": _pretty(term) if term != "Intercept" else "(Intercept)",
                        "variance": float(psi[i, i]),
                        "corr": corr,
                    }
                )
        rows.append({"group": "residual", "term": "", "variance": float(self.theta_[-1]), "corr": np.nan})
        out = pd.DataFrame(rows)
        out["sd"] = np.sqrt(out["variance"].clip(lower=0))
        return out[["group", "term", "variance", "sd", "corr"]]

    @property
    def icc_levels(self) -> pd.DataFrame:
        """Share of the time-0 variance at each random level: ``level, variance, icc``."""
        vc = self.variance_components
        ints = vc[vc["term"] == "(Intercept)"]
        total = ints["variance"].sum() + float(vc[vc["group"] == "residual"]["variance"].iloc[0])
        out = ints[["group", "variance"]].rename(columns={"group": "level"}).reset_index(drop=True)
        out["icc"] = out["variance"] / total
        return out

    @property
    def icc(self) -> float:
        return float(self.icc_levels["icc"].sum())

    def _ml_llf(self) -> float:
        if not self.reml:
            return self.llf_
        if self._ml_llf_ is None:
            if self.result_ is not None:
                res, _, _ = fit_mixedlm(self._model, reml=False)
                self._ml_llf_ = float(res.llf)
            else:
                self._ml_llf_ = float(self.engine_.fit(reml=False).llf)
        return self._ml_llf_

    @property
    def n_params(self) -> int:
        """Fixed effects + variance parameters + residual variance (for AIC/BIC and LR tests)."""
        self._check()
        return len(self.exog_names_) + self.engine_.k

    @property
    def fit_statistics(self) -> pd.DataFrame:
        """Fit statistics; AIC and BIC from the ML log-likelihood (refitted by ML if needed)."""
        self._check()
        ll_ml = self._ml_llf()
        n, k = self.nobs_, self.n_params
        return pd.DataFrame(
            [
                {
                    "nobs": int(n),
                    "n_participants": self.n_participants_,
                    "method": "REML" if self.reml else "ML",
                    "logLik": self.llf_,
                    "REML_criterion": -2 * self.llf_ if self.reml else np.nan,
                    "logLik_ML": ll_ml,
                    "AIC": -2 * ll_ml + 2 * k,
                    "BIC": -2 * ll_ml + np.log(n) * k,
                    "converged": self.converged_,
                    "optimizer": self.fit_report_.method,
                }
            ]
        )

    def _rows(self, overrides: dict[str, Any], base: pd.DataFrame | None = None) -> np.ndarray:
        """Design rows of every participant (first row each) with some columns overridden."""
        base = self.data_.drop_duplicates("participant") if base is None else base
        d = base.copy()
        for k, v in overrides.items():
            if k not in d.columns:
                continue
            if isinstance(d[k].dtype, pd.CategoricalDtype):
                d[k] = pd.Categorical([v] * len(d), categories=d[k].cat.categories)
            else:
                d[k] = v
        return np.asarray(patsy.build_design_matrices([self.design_info_], d)[0])

    def _contrast(self, L: np.ndarray) -> tuple[float, float]:
        est = float(L @ self.params_.to_numpy())
        se = float(np.sqrt(L @ self.cov_params_ @ L))
        return est, se

    def _table(self, Ls: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Estimates, SEs, dfs and interval half-widths of several contrasts at once."""
        L = np.vstack(Ls)
        est = L @ self.params_.to_numpy()
        se = np.sqrt(np.einsum("rp,pq,rq->r", L, self.cov_params_, L))
        df = self._dfs(L)
        return est, se, df, self._q(df) * se

    @property
    def predicted_means(self) -> pd.DataFrame:
        """Model-predicted mean per arm and wave (population average over covariates)."""
        self._check()
        offsets = self.data_.groupby("wave", observed=True)["wave_offset"].first()
        keys, Ls = [], []
        for lvl in self.levels_:
            for w in self.waves_:
                t = float(offsets.get(w, np.nan)) / self.time_scale
                keys.append((lvl, w, t))
                Ls.append(self._rows({self.by: lvl, "years": t, "planned_years": t, "wave": w}).mean(axis=0))
        est, se, df, h = self._table(Ls)
        out = pd.DataFrame(keys, columns=[self.by, "wave", "time"])
        out["mean"], out["se"], out["df"] = est, se, df
        out["ci_lower"], out["ci_upper"] = est - h, est + h
        return out

    def slopes(self) -> pd.DataFrame:
        """Slope per arm (per time unit) and its difference from the reference arm (``time="days"`` only).

        Columns: ``arm, slope, se, df, ci_lower, ci_upper, diff, diff_se, diff_df, diff_ci_lower,
        diff_ci_upper, diff_p``.
        """
        self._check()
        if self.time != "days":
            raise ValueError("slopes need time='days'")
        L = {
            lvl: (self._rows({self.by: lvl, "years": 1.0}) - self._rows({self.by: lvl, "years": 0.0})).mean(axis=0)
            for lvl in self.levels_
        }
        ref = L[self.levels_[0]]
        est, se, df, h = self._table([L[lvl] for lvl in self.levels_])
        dest, dse, ddf, dh = self._table([L[lvl] - ref for lvl in self.levels_])
        out = pd.DataFrame(
            {self.by: self.levels_, "slope": est, "se": se, "df": df, "ci_lower": est - h, "ci_upper": est + h}
        )
        out["diff"], out["diff_se"], out["diff_df"] = dest, dse, ddf
        out["diff_ci_lower"], out["diff_ci_upper"] = dest - dh, dest + dh
        with np.errstate(invalid="ignore", divide="ignore"):
            out["diff_p"] = np.where(dse > 0, self._p(dest, np.where(dse > 0, dse, 1), ddf), np.nan)
        return out

    def observed_means(self) -> pd.DataFrame:
        """Observed mean ± CI (t) per arm and wave: ``arm, wave, time, n, mean, sd, ci_lower, ci_upper``."""
        self._check()
        g = self.data_.groupby([self.by, "wave"], observed=True)
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
        print(f"<TrajectoryModel: {self.formula_}  random: {self.re_formula_} | participant>")
        print(
            f"random={self.random!r}  cluster={self.cluster!r}  method={fs['method']}  "
            f"n={fs['nobs']} observations, {fs['n_participants']} participants"
        )
        print(
            f"logLik={fs['logLik']:.{decimals}f}  AIC(ML)={fs['AIC']:.{decimals}f}  BIC(ML)={fs['BIC']:.{decimals}f}  "
            f"ICC={self.icc:.{decimals}f}"
        )
        print("\nFixed effects (Satterthwaite df)" if self.df_method == "satterthwaite" else "\nFixed effects")
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
    time_scale: float = YEAR,
    **kwargs,
) -> TrajectoryModel:
    """Fit a :class:`TrajectoryModel` (functional form); see the class for the parameters.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> m = fit_trajectory(long_from_synthetic(simulate_cohort(60, seed=2)), "phq9", random="slope")
    >>> "years:arm[group]" in m.summary["term"].tolist()
    True
    """
    return TrajectoryModel(
        outcome,
        time=time,
        by=by,
        covariates=covariates,
        random=random,
        cluster=cluster,
        reml=reml,
        reference=reference,
        time_scale=time_scale,
        **kwargs,
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

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(60, seed=2))
    >>> m0 = TrajectoryModel("phq9").fit(long)
    >>> m1 = TrajectoryModel("phq9", random="slope").fit(long)
    >>> int(compare_models(m0, m1)["df"].iloc[1])
    2
    """
    for m in (m0, m1):
        m._check()
    if m0.nobs_ != m1.nobs_:
        raise ValueError("the models were fitted on different observations; compare nested models on the same rows")
    ll0, ll1 = m0._ml_llf(), m1._ml_llf()
    k0, k1 = m0.n_params, m1.n_params
    if k1 < k0:
        raise ValueError("m1 must be the larger model (more parameters)")
    chisq = max(2 * (ll1 - ll0), 0.0)
    df = k1 - k0
    n = m0.nobs_
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


def __getattr__(name: str):
    # Moderation builds on the trajectory model and lives in analysis.moderation; importable from here as before.
    if name in ("ModerationModel", "fit_moderation"):
        from . import moderation

        return getattr(moderation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
