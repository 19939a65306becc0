"""What works for whom: the trajectory model with a moderator × arm × time interaction.

:class:`ModerationModel` tabulates the slope of every subgroup × arm and the arm difference in slope
within each subgroup, with Satterthwaite df as in :class:`analysis.trajectories.TrajectoryModel`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .frame import _ensure
from .trajectories import TrajectoryModel, _q

__all__ = ["ModerationModel", "fit_moderation"]


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
    continuous_ : bool
        The moderator was treated as continuous (slopes at the mean ± 1 SD).
    moderator_levels_ : list
        Levels tabulated; ``dropped_levels_`` those left out for sparse cells.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=2))
    >>> mm = ModerationModel("pam13_activation", "context_living_situation", min_per_cell=3).fit(long)
    >>> {"moderator", "level", "arm", "effect", "df", "p"} <= set(mm.subgroup_effects.columns)
    True
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
        self.continuous_ = False
        if isinstance(col.dtype, pd.CategoricalDtype):
            pass
        elif pd.api.types.is_numeric_dtype(col) and col.nunique() > 2:
            self.continuous_ = True
        else:
            df[self.moderator] = pd.Categorical(col.astype(str))
        self.dropped_levels_: list[str] = []
        if not self.continuous_:
            # A subgroup slope needs participants in every arm of that subgroup; sparse levels
            # would make the design singular, so they are set aside (and reported).
            per = df.drop_duplicates("participant")
            counts = pd.crosstab(per[self.moderator], per[self.by])
            keep = [lvl for lvl in counts.index if (counts.loc[lvl] >= self.min_per_cell).all()]
            self.dropped_levels_ = [str(lvl) for lvl in counts.index if lvl not in keep]
            df = df[df[self.moderator].isin(keep)].reset_index(drop=True)
            df[self.moderator] = pd.Categorical(df[self.moderator].astype(str), categories=[str(k) for k in keep])
            if len(keep) < 2:
                raise ValueError(
                    f"moderator {self.moderator!r}: fewer than two levels with at least "
                    f"{self.min_per_cell} participants in every arm"
                )
        m = _q(self.moderator)
        m = m if self.continuous_ else f"C({m})"
        self.extra_terms = [f"years:{m}", f"C({_q(self.by)}):{m}", f"years:C({_q(self.by)}):{m}"]
        if self.moderator not in self.covariates:
            self.extra_terms.insert(0, m)
        return df

    def fit(self, frame: pd.DataFrame) -> ModerationModel:
        super().fit(frame)
        if getattr(self, "_dropped_levels", None):
            self.warnings.append(
                f"Levels of {self.moderator} with fewer than {self.min_per_cell} participants in "
                f"some arm were left out: {', '.join(self.dropped_levels_)}."
            )
        return self

    @property
    def moderator_levels_(self) -> list[Any]:
        col = self.data_[self.moderator]
        if self.continuous_:
            mu, sd = float(col.mean()), float(col.std())
            return [mu - sd, mu, mu + sd]
        return list(col.cat.categories)

    def _level_rows(self, level) -> pd.DataFrame:
        base = self.data_.drop_duplicates("participant")
        if self.continuous_:
            return base
        sub = base[base[self.moderator] == level]
        return sub if len(sub) else base.iloc[:1]

    def _slope_L(self, arm, level) -> np.ndarray:
        base = self._level_rows(level)
        over = {self.by: arm, self.moderator: level}
        return (self._rows({**over, "years": 1.0}, base) - self._rows({**over, "years": 0.0}, base)).mean(axis=0)

    @property
    def subgroup_slopes(self) -> pd.DataFrame:
        """``moderator, level, arm, n_participants, slope, se, df, ci_lower, ci_upper, p``."""
        self._check()
        base = self.data_.drop_duplicates("participant")
        keys, Ls = [], []
        for level in self.moderator_levels_:
            for arm in self.levels_:
                n = (
                    int(((base[self.by] == arm) & (base[self.moderator] == level)).sum())
                    if not self.continuous_
                    else int((base[self.by] == arm).sum())
                )
                keys.append((self.moderator, level, arm, n))
                Ls.append(self._slope_L(arm, level))
        est, se, df, h = self._table(Ls)
        out = pd.DataFrame(keys, columns=["moderator", "level", self.by, "n_participants"])
        out["slope"], out["se"], out["df"] = est, se, df
        out["ci_lower"], out["ci_upper"] = est - h, est + h
        out["p"] = self._p(est, se, df)
        return out

    @property
    def subgroup_effects(self) -> pd.DataFrame:
        """``moderator, level, arm, n_participants, effect, se, df, ci_lower, ci_upper, p``."""
        self._check()
        base = self.data_.drop_duplicates("participant")
        keys, Ls = [], []
        for level in self.moderator_levels_:
            ref = self._slope_L(self.levels_[0], level)
            for arm in self.levels_[1:]:
                n = int((base[self.moderator] == level).sum()) if not self.continuous_ else len(base)
                keys.append((self.moderator, level, arm, n))
                Ls.append(self._slope_L(arm, level) - ref)
        est, se, df, h = self._table(Ls)
        out = pd.DataFrame(keys, columns=["moderator", "level", self.by, "n_participants"])
        out["effect"], out["se"], out["df"] = est, se, df
        out["ci_lower"], out["ci_upper"] = est - h, est + h
        out["p"] = self._p(est, se, df)
        return out

    def level_difference(self, level: Any, versus: Any) -> pd.DataFrame:
        """How much larger each arm's slope difference from the reference arm is in ``level`` than
        in ``versus`` (the arm × time × moderator contrast, per time unit).

        Returns
        -------
        DataFrame
            ``arm, estimate, se, df, ci_lower, ci_upper, p`` (Satterthwaite df), one row per
            non-reference arm.

        Examples
        --------
        >>> from analysis.synthetic import simulate_cohort
        >>> from analysis.frame import long_from_synthetic
        >>> long = long_from_synthetic(simulate_cohort(120, seed=2))
        >>> mm = ModerationModel("pam13_activation", "context_living_situation", min_per_cell=3).fit(long)
        >>> a, b = mm.moderator_levels_[:2]
        >>> list(mm.level_difference(a, b).columns)
        ['arm', 'estimate', 'se', 'df', 'ci_lower', 'ci_upper', 'p']
        """
        self._check()
        if self.continuous_:
            raise ValueError("level_difference needs a categorical moderator")
        for lv in (level, versus):
            if lv not in self.moderator_levels_:
                raise ValueError(f"{lv!r} is not a level of {self.moderator} in the fitted frame")
        ref = self.levels_[0]
        Ls = [
            (self._slope_L(arm, level) - self._slope_L(ref, level))
            - (self._slope_L(arm, versus) - self._slope_L(ref, versus))
            for arm in self.levels_[1:]
        ]
        est, se, df, h = self._table(Ls)
        return pd.DataFrame(
            {
                self.by: self.levels_[1:],
                "estimate": est,
                "se": se,
                "df": df,
                "ci_lower": est - h,
                "ci_upper": est + h,
                "p": self._p(est, se, df),
            }
        )

    @property
    def interaction_test(self) -> pd.DataFrame:
        """Wald chi-square test of the three-way ``years × arm × moderator`` terms."""
        self._check()
        names = self.exog_names_
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
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=2))
    >>> mm = fit_moderation(long, "pam13_activation", "context_living_situation", min_per_cell=3)
    >>> mm.continuous_
    False
    """
    return ModerationModel(outcome, moderator, **kwargs).fit(frame)
