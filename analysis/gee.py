"""Generalised estimating equations: continuous, binary and count outcomes over time, robust SEs.

:class:`GEEModel` fits population-averaged models of a scale over waves by arm with statsmodels'
``GEE`` and the sandwich (robust) covariance: the sensitivity analysis to the mixed model for
continuous outcomes, and the main model for binary outcomes (responders, PHQ-9 below 10: logit link,
odds ratios) and counts (GP visits: log link, rate ratios). Clusters are participants by default, or
peer groups / sites when the intervention is delivered in groups. With few clusters the
Mancl–DeRouen bias-reduced covariance is available (``cov_type="bias_reduced"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .frame import _ensure, participants, scale_frame, wave_order
from .trial import reference_arm

__all__ = ["GEEModel", "fit_gee"]

_FAMILIES = ("gaussian", "binomial", "poisson")
_CORR = ("exchangeable", "independence", "ar1", "unstructured")


class GEEModel:
    """Population-averaged model of a scale over time by arm (lifelines-style fitter).

    Parameters
    ----------
    outcome : str
        Scale code in the long frame.
    family : {"gaussian", "binomial", "poisson"}
        Identity, logit or log link.
    corr : {"exchangeable", "independence", "ar1", "unstructured"}
        Working correlation within a cluster (AR(1) and unstructured follow wave order).
    time : {"wave", "days"}
        Waves as categories (a mean per wave and arm) or a linear trend in ``time_scale`` units.
    threshold, direction : float, {"below", "above", "at_least"}, optional
        Make a binary outcome from the score: 1 when ``value < threshold`` (``below``), ``> threshold``
        (``above``) or ``>= threshold`` (``at_least``). Leaves ``family`` to you (use ``"binomial"``).
    covariates : sequence of str
        Participant-level columns.
    cluster : str
        ``participant`` (default), or ``site`` / ``peer_group`` (participants without a group are
        their own cluster).
    cov_type : {"robust", "bias_reduced", "naive"}
    reference : str, optional
        Reference arm (default: the control arm).
    formula : str, optional
        Escape hatch: the right-hand side in statsmodels formula syntax over ``wave, years, arm`` and the
        covariates (``"years + C(arm)"``); :attr:`arm_effects` then needs the default form.

    Attributes (after :meth:`fit`)
    ------------------------------
    summary : DataFrame
        ``term, estimate, se, z, p, ci_lower, ci_upper`` and ``exp_estimate, exp_ci_lower,
        exp_ci_upper`` (odds or rate ratios) for logit/log links.
    arm_effects : DataFrame
        Arm contrasts at each wave (``time="wave"``) or in slope (``time="days"``).
    working_correlation_ : float or ndarray
    n_clusters_, nobs_, levels_, reference_, formula_ : int, int, list, str, str
    result_ : statsmodels GEEResults

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=2))
    >>> g = GEEModel("phq9", family="binomial", threshold=10, direction="below").fit(long)
    >>> g.reference_, "exp_estimate" in g.summary.columns
    ('usual_care', True)
    """

    def __init__(
        self,
        outcome: str,
        family: str = "gaussian",
        corr: str = "exchangeable",
        time: str = "wave",
        threshold: float | None = None,
        direction: str = "below",
        covariates: Sequence[str] = (),
        cluster: str = "participant",
        cov_type: str = "robust",
        reference: str | None = None,
        alpha: float = 0.05,
        time_scale: float = 365.25,
        formula: str | None = None,
    ):
        if family not in _FAMILIES:
            raise ValueError(f"family must be one of {_FAMILIES}")
        if corr not in _CORR:
            raise ValueError(f"corr must be one of {_CORR}")
        if time not in ("wave", "days"):
            raise ValueError("time must be 'wave' or 'days'")
        if direction not in ("below", "above", "at_least"):
            raise ValueError("direction must be 'below', 'above' or 'at_least'")
        if cov_type not in ("robust", "bias_reduced", "naive"):
            raise ValueError("cov_type must be 'robust', 'bias_reduced' or 'naive'")
        self.outcome, self.family, self.corr, self.time = outcome, family, corr, time
        self.threshold, self.direction = threshold, direction
        self.covariates, self.cluster, self.cov_type = list(covariates), cluster, cov_type
        self.reference, self.alpha, self.time_scale = reference, alpha, float(time_scale)
        self.formula = formula

    def fit(self, frame: pd.DataFrame) -> GEEModel:
        """Fit to a long frame; returns ``self``."""
        import statsmodels.api as sm
        import statsmodels.formula.api as smf

        long = _ensure(frame)
        df = scale_frame(long, self.outcome)
        per = participants(long)
        extra = [c for c in self.covariates + [self.cluster] if c not in df.columns and c in long.columns]
        if extra:
            df = df.merge(long.groupby("participant")[extra].first().reset_index(), on="participant", how="left")
        missing = [c for c in self.covariates + [self.cluster] if c not in df.columns]
        if missing:
            raise ValueError(f"column(s) not in the frame: {missing}")
        if self.threshold is not None:
            v = df["value"]
            df["value"] = {"below": v < self.threshold, "above": v > self.threshold, "at_least": v >= self.threshold}[
                self.direction
            ].astype(float)
        if self.family == "binomial" and not set(df["value"].dropna().unique()) <= {0.0, 1.0}:
            raise ValueError("family='binomial' needs a 0/1 outcome: give threshold= to dichotomise the score")
        if self.family == "poisson" and (df["value"] < 0).any():
            raise ValueError("family='poisson' needs non-negative counts")
        self.reference_ = reference_arm(per, self.reference)
        self.levels_ = [self.reference_] + sorted(a for a in df["arm"].dropna().unique() if a != self.reference_)
        df["arm"] = pd.Categorical(df["arm"], categories=self.levels_)
        self.waves_ = [w for w in wave_order(long) if w in set(df["wave"].astype(str))]
        df["wave"] = pd.Categorical(df["wave"].astype(str), categories=self.waves_)
        df["years"] = df["days"].where(df["days"].notna(), df["wave_offset"]) / self.time_scale
        df = df.dropna(subset=["value", "arm"] + self.covariates).copy()
        groups = df[self.cluster].astype(object)
        groups = groups.where(groups.notna(), "p:" + df["participant"].astype(str))
        df["_cluster"] = pd.factorize(groups)[0]
        df["_t"] = df["wave"].cat.codes
        df = df.sort_values(["_cluster", "participant", "_t"]).reset_index(drop=True)
        t = "C(wave)" if self.time == "wave" else "years"
        rhs = [f"{t} * C(arm)"] + [
            f"C({c})" if not pd.api.types.is_numeric_dtype(df[c]) else c for c in self.covariates
        ]
        self.formula_ = "value ~ " + (self.formula.split("~", 1)[-1].strip() if self.formula else " + ".join(rhs))
        fam = {
            "gaussian": sm.families.Gaussian(),
            "binomial": sm.families.Binomial(),
            "poisson": sm.families.Poisson(),
        }[self.family]
        cs = {
            "exchangeable": sm.cov_struct.Exchangeable(),
            "independence": sm.cov_struct.Independence(),
            "ar1": sm.cov_struct.Autoregressive(grid=True),
            "unstructured": sm.cov_struct.Unstructured(),
        }[self.corr]
        kw = {"time": df["_t"].to_numpy()} if self.corr in ("ar1", "unstructured") else {}
        model = smf.gee(self.formula_, groups="_cluster", data=df, family=fam, cov_struct=cs, **kw)
        self.result_ = model.fit(cov_type=self.cov_type)
        self.data_ = df
        self.nobs_ = int(self.result_.nobs)
        self.n_clusters_ = int(df["_cluster"].nunique())
        dep = model.cov_struct.dep_params
        self.working_correlation_ = 0.0 if dep is None else (float(dep) if np.ndim(dep) == 0 else np.asarray(dep))
        self._names = [_pretty(n) for n in self.result_.params.index]
        return self

    @property
    def summary(self) -> pd.DataFrame:
        r = self.result_
        q = stats.norm.ppf(1 - self.alpha / 2)
        est, se = r.params.to_numpy(), r.bse.to_numpy()
        out = pd.DataFrame(
            {
                "term": self._names,
                "estimate": est,
                "se": se,
                "z": est / se,
                "p": 2 * stats.norm.sf(np.abs(est / se)),
                "ci_lower": est - q * se,
                "ci_upper": est + q * se,
            }
        )
        if self.family != "gaussian":
            for c in ("estimate", "ci_lower", "ci_upper"):
                out[f"exp_{c}"] = np.exp(out[c])
        return out

    @property
    def arm_effects(self) -> pd.DataFrame:
        """Each arm vs the reference: at every wave (``time="wave"``) or in slope (``time="days"``).

        Columns ``arm, reference, wave, estimate, se, z, p, ci_lower, ci_upper`` (+ ``exp_*`` for
        logit/log links: odds or rate ratios).
        """
        if self.formula:
            raise ValueError("arm_effects needs the default model; read summary for a custom formula")
        names = list(self.result_.params.index)
        b, V = self.result_.params.to_numpy(), np.asarray(self.result_.cov_params())
        q = stats.norm.ppf(1 - self.alpha / 2)
        rows = []
        for arm in self.levels_[1:]:
            at = self.waves_ if self.time == "wave" else ["per time unit"]
            for w in at:
                L = np.zeros(len(names))
                if self.time == "wave":
                    L[names.index(f"C(arm)[T.{arm}]")] = 1
                    inter = f"C(wave)[T.{w}]:C(arm)[T.{arm}]"
                    if inter in names:
                        L[names.index(inter)] = 1
                else:
                    L[names.index(f"years:C(arm)[T.{arm}]")] = 1
                est, se = float(L @ b), float(np.sqrt(L @ V @ L))
                rows.append(
                    {
                        "arm": arm,
                        "reference": self.reference_,
                        "wave": w,
                        "estimate": est,
                        "se": se,
                        "z": est / se,
                        "p": float(2 * stats.norm.sf(abs(est / se))),
                        "ci_lower": est - q * se,
                        "ci_upper": est + q * se,
                    }
                )
        out = pd.DataFrame(rows)
        if self.family != "gaussian":
            for c in ("estimate", "ci_lower", "ci_upper"):
                out[f"exp_{c}"] = np.exp(out[c])
        return out


def _pretty(term: str) -> str:
    import re

    return re.sub(r"C\(([^)]+)\)\[T\.([^\]]+)\]", r"\1[\2]", term)


def fit_gee(frame: pd.DataFrame, outcome: str, **kwargs) -> GEEModel:
    """Fit a :class:`GEEModel` (functional form).

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> g = fit_gee(long_from_synthetic(simulate_cohort(120, seed=2)), "phq9")
    >>> g.arm_effects["wave"].tolist()[:2]
    ['baseline', 'm1']
    """
    return GEEModel(outcome, **kwargs).fit(frame)
