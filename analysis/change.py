"""Change from baseline: pre–post effect sizes and responder analysis against the MCID.

Effect sizes follow pingouin's definitions (``compute_effsize`` / ``compute_esci``): within an
arm, Cohen's d for paired samples uses the average of the pre and post SDs (d_av); between arms,
Hedges' g on the change scores (pooled SD, small-sample corrected). Responders have improved by at
least the instrument's minimal clinically important difference (``Scale.mcid``; PHQ-9 5, GAD-7 4;
a study setting where none is published, e.g. PAM-13 activation), in the scale's better
direction (``Scale.higher_is``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pingouin as pg
from statsmodels.stats.proportion import proportion_confint

from .frame import _ensure, participants, wave_order, wide

__all__ = ["change_scores", "effect_sizes", "scale_meta", "responders", "reliable_change"]


def scale_meta(scale: str) -> dict:
    """MCID, direction (``better``: "higher" | "lower") and range of a scale from ``instruments``.

    Unknown scales (custom, or the library unavailable) give ``mcid=None, better="higher"``.

    Examples
    --------
    >>> scale_meta("phq9")["mcid"], scale_meta("phq9")["better"]
    (5, 'lower')
    """
    try:
        import instruments

        for inst in instruments.all_instruments():
            for sc in inst.scales:
                if sc.code == scale:
                    better = "lower" if sc.higher_is == "worse" else "higher"
                    return {"mcid": sc.mcid, "better": better, "range": sc.range, "label": sc.label}
    except Exception:  # noqa: BLE001 - metadata is optional for analysis of custom scales
        pass
    return {"mcid": None, "better": "higher", "range": None, "label": scale}


def change_scores(frame: pd.DataFrame, scale: str, post: str, pre: str | None = None) -> pd.DataFrame:
    """Participants with both a pre and a post score: ``participant, arm, arm_kind, site, pre, post, change``.

    ``pre`` defaults to the first wave; ``post`` (the follow-up wave) is always named by the caller.

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> d = change_scores(long_from_synthetic(simulate_cohort(60, seed=2)), "phq9", post="m6")
    >>> bool((d["change"] == d["post"] - d["pre"]).all())
    True
    """
    frame = _ensure(frame)
    pre = pre or wave_order(frame)[0]
    w = wide(frame, scale)
    for wv in (pre, post):
        if wv not in w.columns:
            raise ValueError(f"wave {wv!r} has no {scale} scores")
    d = w[[pre, post]].dropna().rename(columns={pre: "pre", post: "post"}).reset_index()
    d["change"] = d["post"] - d["pre"]
    meta = participants(frame)[["participant", "arm", "arm_kind", "site"]]
    return meta.merge(d, on="participant")


def _reference_arm(d: pd.DataFrame) -> str:
    kinds = d.groupby("arm")["arm_kind"].first()
    ctrl = [a for a, k in kinds.items() if k == "control"]
    return ctrl[0] if ctrl else sorted(kinds.index)[0]


def effect_sizes(
    frame: pd.DataFrame, scale: str, post: str, pre: str | None = None, reference: str | None = None, ci: float = 0.95
) -> pd.DataFrame:
    """Pre–post effect sizes within each arm and between each arm and the reference arm.

    Returns
    -------
    DataFrame
        ``scale, baseline_wave, followup_wave, comparison ("within"|"between"), arm, reference, n,
        n_reference, mean_change, mean_change_reference, effect ("cohen_d_av"|"hedges_g"), estimate,
        ci_lower, ci_upper``. Signs follow the raw change (post − pre; a PHQ-9 fall is negative).

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> es = effect_sizes(long_from_synthetic(simulate_cohort(60, seed=2)), "phq9", post="m6")
    >>> es[["baseline_wave", "followup_wave"]].drop_duplicates().values.tolist()
    [['baseline', 'm6']]
    """
    pre = pre or wave_order(_ensure(frame))[0]
    d = change_scores(frame, scale, post, pre)
    ref = reference or _reference_arm(d)
    rows = []
    for arm, g in d.groupby("arm"):
        n = len(g)
        if n < 3:
            continue
        es = float(pg.compute_effsize(g["post"], g["pre"], paired=True, eftype="cohen"))
        r = float(np.corrcoef(g["pre"], g["post"])[0, 1]) if g["pre"].std() > 0 and g["post"].std() > 0 else 0.0
        lo, hi = pg.compute_esci(stat=es, nx=n, ny=n, paired=True, eftype="cohen", confidence=ci, decimals=6)
        rows.append(
            {
                "scale": scale,
                "comparison": "within",
                "arm": arm,
                "reference": pre or "baseline",
                "n": n,
                "n_reference": n,
                "mean_change": float(g["change"].mean()),
                "mean_change_reference": np.nan,
                "effect": "cohen_d_av",
                "estimate": es,
                "ci_lower": float(lo),
                "ci_upper": float(hi),
                "pre_post_r": r,
            }
        )
    rg = d[d["arm"] == ref]
    for arm, g in d.groupby("arm"):
        if arm == ref or len(g) < 3 or len(rg) < 3:
            continue
        es = float(pg.compute_effsize(g["change"], rg["change"], paired=False, eftype="hedges"))
        lo, hi = pg.compute_esci(
            stat=es, nx=len(g), ny=len(rg), paired=False, eftype="hedges", confidence=ci, decimals=6
        )
        rows.append(
            {
                "scale": scale,
                "comparison": "between",
                "arm": arm,
                "reference": ref,
                "n": len(g),
                "n_reference": len(rg),
                "mean_change": float(g["change"].mean()),
                "mean_change_reference": float(rg["change"].mean()),
                "effect": "hedges_g",
                "estimate": es,
                "ci_lower": float(lo),
                "ci_upper": float(hi),
                "pre_post_r": np.nan,
            }
        )
    out = pd.DataFrame(rows)
    out.insert(1, "baseline_wave", pre)
    out.insert(2, "followup_wave", post)
    return out


def responders(
    frame: pd.DataFrame,
    scale: str,
    post: str,
    pre: str | None = None,
    mcid: float | None = None,
    mcids: Mapping[str, float] | None = None,
    reference: str | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Share of participants improving (and deteriorating) by at least the MCID, per arm.

    Parameters
    ----------
    mcid : float, optional
        Overrides the instrument's MCID (required for scales without one, e.g. PAM-13 activation).
    mcids : mapping, optional
        Study settings ``{scale: mcid}`` consulted when ``mcid`` is not given.

    Returns
    -------
    DataFrame
        ``scale, baseline_wave, followup_wave, arm, mcid, better, n, improved, improved_prop,
        improved_ci_lower, improved_ci_upper, deteriorated, deteriorated_prop, risk_difference,
        rd_ci_lower, rd_ci_upper`` (risk difference of improvement vs the reference arm, Wald CI).

    Examples
    --------
    >>> from analysis.synthetic import simulate_cohort
    >>> from analysis.frame import long_from_synthetic
    >>> long = long_from_synthetic(simulate_cohort(60, seed=2))
    >>> r = responders(long, "phq9", post="m6")            # MCID 5 from the PHQ-9 definition
    >>> r[["followup_wave", "mcid"]].drop_duplicates().values.tolist()
    [['m6', 5.0]]
    """
    meta = scale_meta(scale)
    m = mcid if mcid is not None else (mcids or {}).get(scale, meta["mcid"])
    if m is None:
        raise ValueError(f"{scale}: no MCID is defined; pass mcid= (a study setting)")
    pre = pre or wave_order(_ensure(frame))[0]
    d = change_scores(frame, scale, post, pre)
    improvement = -d["change"] if meta["better"] == "lower" else d["change"]
    d["improved"] = improvement >= m
    d["deteriorated"] = improvement <= -m
    ref = reference or _reference_arm(d)
    from scipy import stats

    z = stats.norm.ppf(1 - (1 - ci) / 2)
    rows = []
    ref_g = d[d["arm"] == ref]
    p_ref = ref_g["improved"].mean() if len(ref_g) else np.nan
    for arm, g in d.groupby("arm"):
        n, k = len(g), int(g["improved"].sum())
        lo, hi = proportion_confint(k, n, alpha=1 - ci, method="wilson")
        p = k / n
        if arm != ref and len(ref_g):
            rd = p - p_ref
            se = np.sqrt(p * (1 - p) / n + p_ref * (1 - p_ref) / len(ref_g))
            rd_lo, rd_hi = rd - z * se, rd + z * se
        else:
            rd = rd_lo = rd_hi = np.nan
        rows.append(
            {
                "scale": scale,
                "baseline_wave": pre,
                "followup_wave": post,
                "arm": arm,
                "mcid": float(m),
                "better": meta["better"],
                "n": n,
                "improved": k,
                "improved_prop": p,
                "improved_ci_lower": lo,
                "improved_ci_upper": hi,
                "deteriorated": int(g["deteriorated"].sum()),
                "deteriorated_prop": float(g["deteriorated"].mean()),
                "risk_difference": rd,
                "rd_ci_lower": rd_lo,
                "rd_ci_upper": rd_hi,
            }
        )
    return pd.DataFrame(rows)


def reliable_change(
    frame: pd.DataFrame,
    scale: str,
    post: str,
    reliability: float,
    pre: str | None = None,
    sd: float | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Reliable change index (Jacobson & Truax 1991) per participant, beside MCID responders.

    ``RCI = (post − pre) / S_diff`` with ``S_diff = √2 · SE`` and ``SE = SD_pre · √(1 − r_xx)``; a
    change is reliable when ``|RCI| > z_{(1+ci)/2}`` (1.96). ``reliability`` is the scale's test–retest
    or internal-consistency coefficient (e.g. Cronbach's alpha at baseline); ``sd`` the baseline SD
    (default: the sample's, over all arms).

    Returns
    -------
    DataFrame
        One row per participant: ``participant, arm, pre, post, change, rci, reliable_improvement,
        reliable_deterioration``, with ``s_diff`` and ``threshold`` (the smallest reliable change, in
        scale points) repeated on every row, and ``baseline_wave, followup_wave``.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"participant": ["a", "a", "b", "b"], "arm": "x", "scale": "phq9",
    ...     "wave": ["baseline", "m6"] * 2, "wave_offset": [0, 182] * 2, "value": [20.0, 10.0, 12.0, 11.0]})
    >>> r = reliable_change(long, "phq9", post="m6", reliability=0.84, sd=5.0)
    >>> round(float(r["s_diff"].iloc[0]), 4), r["reliable_improvement"].tolist()
    (2.8284, [True, False])
    """
    from scipy import stats

    if not 0 <= reliability < 1:
        raise ValueError("reliability must be in [0, 1)")
    pre = pre or wave_order(_ensure(frame))[0]
    d = change_scores(frame, scale, post, pre)
    s1 = float(sd) if sd is not None else float(d["pre"].std())
    se = s1 * np.sqrt(1 - reliability)
    s_diff = np.sqrt(2) * se
    z = stats.norm.ppf(1 - (1 - ci) / 2)
    better = scale_meta(scale)["better"]
    d["rci"] = d["change"] / s_diff
    improving = -d["rci"] if better == "lower" else d["rci"]
    d["reliable_improvement"] = improving > z
    d["reliable_deterioration"] = improving < -z
    d["s_diff"], d["threshold"] = s_diff, z * s_diff
    d["baseline_wave"], d["followup_wave"] = pre, post
    cols = ["participant", "arm", "baseline_wave", "followup_wave", "pre", "post", "change", "rci"]
    return d[cols + ["reliable_improvement", "reliable_deterioration", "s_diff", "threshold"]]
