"""What works for whom over time: the arm × time × context moderation of a CMO configuration.

:func:`analysis.realist.what_works_for_whom` tests a configuration at one follow-up wave (ANCOVA).
A programme can instead change how fast an outcome moves, and every wave carries information on
that. :func:`slope_moderation` fits the trajectory mixed model of
:class:`analysis.moderation.ModerationModel` (correlated random intercept and time slope per
participant, site as a fixed effect, REML, Satterthwaite df) with the context as a two-level
moderator (``in`` / ``out``); when that model has no optimum (few participants often cannot tell
intercept from slope variation) it fits a random intercept only, and ``slope_random`` says which.
It reports, in outcome points per year:

* ``slope_in`` / ``slope_out``: the arm's slope minus the reference arm's, in and outside the context;
* ``slope_moderation``: ``slope_in − slope_out``, the arm × time × context interaction.

A context that holds for whole sites (``site:setting == rural``) is collinear with site fixed
effects; for it the model leaves site out (the context term carries the site difference).

:func:`slope_moderation_table` does this for every configuration of a realist table and adds
Benjamini–Hochberg adjusted p-values across the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .moderation import ModerationModel
from .multiplicity import adjust_pvalues
from .realist import context_mask

__all__ = ["SLOPE_COLUMNS", "slope_moderation", "slope_moderation_table"]

SLOPE_COLUMNS = [
    "slope_random",
    "slope_n_in",
    "slope_n_out",
    "slope_in",
    "slope_in_ci_lower",
    "slope_in_ci_upper",
    "slope_out",
    "slope_out_ci_lower",
    "slope_out_ci_upper",
    "slope_moderation",
    "slope_se",
    "slope_df",
    "slope_ci_lower",
    "slope_ci_upper",
    "slope_p",
    "slope_p_bh",
    "slope_note",
]


def slope_moderation(
    long: pd.DataFrame,
    in_context: Mapping[str, bool],
    outcome: str,
    arm: str,
    reference: str,
    alpha: float = 0.05,
    min_per_cell: int = 5,
) -> dict[str, Any]:
    """The arm × time × context estimate of one configuration (see the module docstring).

    Parameters
    ----------
    long : DataFrame
        The long frame (``participant, site, arm, wave, wave_offset, days, scale, value``).
    in_context : mapping
        Participant code -> whether the participant is in the context (participants left out are
        not modelled: their context is unknown).
    outcome : str
        Scale code; every wave with a score is used.
    arm, reference : str
        The two arms compared (values of ``long["arm"]``).
    min_per_cell : int
        Fewest participants of each arm in and outside the context.

    Returns
    -------
    dict
        The :data:`SLOPE_COLUMNS` except ``slope_p_bh`` and ``slope_note``; ``slope_random`` is
        ``"intercept and slope"`` or ``"intercept"`` (the random part fitted).

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=4))
    >>> base = long[(long["scale"] == "lsns6") & (long["wave"] == "baseline")]
    >>> ctx = dict(zip(base["participant"], base["value"] < 12))
    >>> r = slope_moderation(long, ctx, "pam13_activation", "group", "usual_care")
    >>> bool(r["slope_ci_lower"] < r["slope_moderation"] < r["slope_ci_upper"])
    True
    """
    frame = long[long["arm"].isin([arm, reference]) & long["participant"].isin(list(in_context))].copy()
    frame["context"] = frame["participant"].map(lambda p: "in" if in_context[p] else "out")
    per = frame[(frame["scale"] == outcome) & frame["value"].notna()].drop_duplicates("participant")
    cells = pd.crosstab(per["context"], per["arm"]).reindex(index=["in", "out"], columns=[arm, reference], fill_value=0)
    if (cells.to_numpy() < min_per_cell).any():
        raise ValueError(
            f"fewer than {min_per_cell} participants with {outcome} in some arm in or out of the context "
            f"(in: {int(cells.loc['in'].sum())}, out: {int(cells.loc['out'].sum())})"
        )
    # A site-level context (every site wholly in or out) is collinear with site fixed effects: the
    # context term then stands for the sites, so site is left out of the model.
    site_level = "site" in frame and bool((per.groupby("site")["context"].nunique() <= 1).all())
    for random in ("slope", "intercept"):
        mm = ModerationModel(
            outcome,
            "context",
            min_per_cell=min_per_cell,
            random=random,
            reference=reference,
            alpha=alpha,
            cluster=None if site_level else "fixed",
        )
        with np.errstate(all="ignore"):  # failed trial steps of the optimiser; convergence is checked
            mm.fit(frame)
        # Few participants often cannot separate intercept from slope variation (a singular
        # covariance, no optimum): the random-intercept model is then the one that can be fitted.
        if mm.converged_:
            break
    else:
        raise ValueError("the mixed model did not converge (random intercept and slope, nor intercept only)")
    eff = mm.subgroup_effects.set_index("level")
    diff = mm.level_difference("in", "out").iloc[0]
    out: dict[str, Any] = {
        "slope_random": "intercept and slope" if random == "slope" else "intercept",
        "slope_n_in": int(cells.loc["in"].sum()),
        "slope_n_out": int(cells.loc["out"].sum()),
    }
    for lv in ("in", "out"):
        row = eff.loc[lv]
        out[f"slope_{lv}"] = float(row["effect"])
        out[f"slope_{lv}_ci_lower"] = float(row["ci_lower"])
        out[f"slope_{lv}_ci_upper"] = float(row["ci_upper"])
    out |= {
        "slope_moderation": float(diff["estimate"]),
        "slope_se": float(diff["se"]),
        "slope_df": float(diff["df"]),
        "slope_ci_lower": float(diff["ci_lower"]),
        "slope_ci_upper": float(diff["ci_upper"]),
        "slope_p": float(diff["p"]),
    }
    return out


def slope_moderation_table(
    long: pd.DataFrame,
    participants: pd.DataFrame,
    cmos: Sequence[Mapping[str, Any]],
    arm: str,
    reference: str,
    alpha: float = 0.05,
    fdr: float = 0.05,
    min_per_cell: int = 5,
) -> pd.DataFrame:
    """:func:`slope_moderation` for every configuration, in order, with BH across the table.

    ``participants`` has one row per participant (``participant`` and the context variables the
    configurations name); each configuration is ``{"outcome": scale, "context": predicate}``.
    A configuration that cannot be estimated gets missing numbers and a ``slope_note``.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(120, seed=4))
    >>> base = long[(long["scale"] == "lsns6") & (long["wave"] == "baseline")]
    >>> people = base[["participant", "value"]].rename(columns={"value": "lsns6"})
    >>> cmos = [{"outcome": "pam13_activation", "context": {"variable": "lsns6", "op": "<", "value": 12}},
    ...         {"outcome": "no_such_scale", "context": {"variable": "lsns6", "op": "<", "value": 12}}]
    >>> t = slope_moderation_table(long, people, cmos, "group", "usual_care")
    >>> len(t), bool(t.loc[0, "slope_p_bh"] >= t.loc[0, "slope_p"]), t.loc[1, "slope_note"] != ""
    (2, True, True)
    """
    rows = []
    for c in cmos:
        try:
            mask = context_mask(participants, c["context"])
            known = mask.notna()
            ctx = dict(zip(participants.loc[known, "participant"], mask[known].astype(bool), strict=True))
            rows.append(slope_moderation(long, ctx, c["outcome"], arm, reference, alpha, min_per_cell))
        except (ValueError, np.linalg.LinAlgError) as exc:
            rows.append({"slope_note": str(exc)})
    table = pd.DataFrame(rows).reindex(columns=SLOPE_COLUMNS)
    adj = adjust_pvalues(table["slope_p"].to_numpy(float), "bh", fdr)
    table["slope_p_bh"] = adj["p_adjusted"].to_numpy()
    table["slope_note"] = table["slope_note"].fillna("")
    return table
