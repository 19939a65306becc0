"""Joining qualitative with quantitative data.

* :func:`quantitise` turns codings into participant-level indicators
  (``code:<id>``, 0/1) and counts (``count:<id>``), joinable to the cohort
  frame on ``participant``;
* :func:`joint_display` builds a table per theme: participants who expressed it
  vs those who did not, their outcome change per scale, Hedges' g with a
  confidence interval and exemplar (de-identified) quotes;
* :func:`plot_joint_display` draws it (matplotlib, Agg canvas) and saves PNG or SVG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .codebook import Codebook, Coding
from .coding import attribute_codings, segments
from .transcripts import Transcript

__all__ = ["quantitise", "hedges_g", "hedges_g_from_stats", "outcome_change", "joint_display", "plot_joint_display"]


def _participants(transcripts: Iterable[Transcript]) -> list[str]:
    seen: dict[str, None] = {}
    for t in transcripts:
        for p in t.participants:
            seen.setdefault(p, None)
    return list(seen)


def quantitise(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    *,
    codes: Sequence[str] | None = None,
    codebook: Codebook | None = None,
    include_descendants: bool = False,
    wave: str | None = None,
) -> pd.DataFrame:
    """Participant-level code indicators and counts.

    Parameters
    ----------
    codes : list of str, optional
        Codes to report (default: every codable code of ``codebook``, else every
        code used).
    include_descendants : bool
        Count codings of sub-codes towards their parent.
    wave : str, optional
        Use only transcripts of this wave.

    Returns
    -------
    DataFrame
        ``participant``, then ``code:<id>`` (0/1) and ``count:<id>`` per code;
        one row per interviewed participant (zeros for those never coded).

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> ts = [parse_text("P01: alone", id="t1", participant="P01"), parse_text("P02: ok", id="t2", participant="P02")]
    >>> for row in quantitise([Coding("t1", "isolation", 5, 10, "x")], ts).to_dict("records"):
    ...     print(row)
    {'participant': 'P01', 'code:isolation': 1, 'count:isolation': 1}
    {'participant': 'P02', 'code:isolation': 0, 'count:isolation': 0}
    """
    transcripts = [t for t in transcripts if wave is None or t.wave == wave]
    df = attribute_codings(codings, transcripts)
    df = df[df["transcript"].isin({t.id for t in transcripts}) & df["participant"].notna()]
    if codes is None:
        codes = [c.id for c in codebook if c.codable] if codebook is not None else sorted(df["code"].unique())
    out = pd.DataFrame({"participant": _participants(transcripts)})
    for code in codes:
        members = {code}
        if include_descendants:
            if codebook is None:
                raise ValueError("include_descendants needs the codebook")
            members |= {d.id for d in codebook.descendants(code)}
        counts = df[df["code"].isin(members)].groupby("participant").size()
        out[f"count:{code}"] = out["participant"].map(counts).fillna(0).astype(int)
        out[f"code:{code}"] = (out[f"count:{code}"] > 0).astype(int)
    ordered = ["participant"] + [c for code in codes for c in (f"code:{code}", f"count:{code}")]
    return out[ordered]


def hedges_g_from_stats(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int, ci: float = 0.95) -> dict:
    """Hedges' g from summary statistics (group 1 minus group 2).

    ``g = J * d`` with ``d = (m1 - m2) / s_pooled`` and the small-sample
    correction ``J = 1 - 3 / (4 * df - 1)``, ``df = n1 + n2 - 2``;
    ``Var(g) = J**2 * ((n1 + n2) / (n1 * n2) + d**2 / (2 * (n1 + n2)))``;
    normal-theory confidence interval.

    Examples
    --------
    Borenstein et al. (2009), *Introduction to Meta-Analysis*, ch. 4:

    >>> r = hedges_g_from_stats(103, 5.5, 50, 100, 4.5, 50)
    >>> round(r["d"], 4), round(r["g"], 4), round(r["se"], 4)
    (0.597, 0.5924, 0.2028)
    """
    df = n1 + n2 - 2
    if n1 < 2 or n2 < 2:
        return {"d": np.nan, "g": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    if not all(np.isfinite([m1, s1, m2, s2])):
        return {"d": np.nan, "g": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    sp = math.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / df)
    if sp == 0:
        return {"d": np.nan, "g": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    d = (m1 - m2) / sp
    j = 1 - 3 / (4 * df - 1)
    g = j * d
    var_d = (n1 + n2) / (n1 * n2) + d**2 / (2 * (n1 + n2))
    se = math.sqrt(j**2 * var_d)
    z = stats.norm.ppf(0.5 + ci / 2)
    return {"d": float(d), "g": float(g), "se": float(se), "ci_low": float(g - z * se), "ci_high": float(g + z * se)}


def hedges_g(x: Sequence[float], y: Sequence[float], ci: float = 0.95) -> dict:
    """Hedges' g of ``x`` minus ``y`` with its confidence interval.

    Examples
    --------
    >>> round(hedges_g([2, 3, 4, 5], [1, 2, 3, 4])["g"], 3)
    0.674
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    return hedges_g_from_stats(
        x.mean() if len(x) else np.nan,
        x.std(ddof=1) if len(x) > 1 else np.nan,
        len(x),
        y.mean() if len(y) else np.nan,
        y.std(ddof=1) if len(y) > 1 else np.nan,
        len(y),
        ci,
    )


def outcome_change(outcomes: pd.DataFrame, *, baseline: str | None = None, followup: str | None = None) -> pd.DataFrame:
    """Change in each scale per participant (follow-up minus baseline).

    Parameters
    ----------
    outcomes : DataFrame
        Long frame with columns participant, arm, wave, scale, value, days.
    baseline, followup : str, optional
        Wave codes; by default each participant's earliest and latest
        observation of the scale (by ``days``).

    Returns
    -------
    DataFrame
        participant, arm, scale, baseline, followup, change.
    """
    need = {"participant", "wave", "scale", "value", "days"}
    missing = need - set(outcomes.columns)
    if missing:
        raise ValueError(f"outcomes lacks columns {sorted(missing)}")
    o = outcomes.dropna(subset=["value"]).sort_values(["participant", "scale", "days"])
    if "arm" not in o.columns:
        o = o.assign(arm=None)
    keys = ["participant", "scale"]
    first = o[o["wave"] == baseline] if baseline else o.groupby(keys, as_index=False).head(1)
    last = o[o["wave"] == followup] if followup else o.groupby(keys, as_index=False).tail(1)
    first = first.drop_duplicates(keys)
    last = last.drop_duplicates(keys, keep="last")
    m = first[["participant", "arm", "scale", "value", "days"]].merge(
        last[["participant", "scale", "value", "days"]], on=keys, suffixes=("_b", "_f")
    )
    m = m[m["days_f"] > m["days_b"]]
    m = m.rename(columns={"value_b": "baseline", "value_f": "followup"})
    m["change"] = m["followup"] - m["baseline"]
    return m[["participant", "arm", "scale", "baseline", "followup", "change"]].reset_index(drop=True)


def _pick_quotes(seg: pd.DataFrame, k: int, max_chars: int) -> list[str]:
    seg = seg[seg["text"].str.strip().str.len() > 0].copy()
    if seg.empty or k <= 0:
        return []
    seg["len"] = seg["text"].str.len()
    # Prefer one quote per participant, mid-length ones first: very short
    # fragments say little and very long ones crowd a joint display.
    seg["dist"] = (seg["len"] - min(max_chars, 160)).abs()
    seg = seg.sort_values(["dist", "participant", "transcript", "start"])
    chosen, seen = [], set()
    for row in seg.itertuples():
        if row.participant in seen:
            continue
        seen.add(row.participant)
        text = " ".join(row.text.split())
        if len(text) > max_chars:
            text = text[: max_chars - 1].rstrip() + "…"
        label = ", ".join(str(x) for x in (row.participant, row.wave) if x is not None and x == x)
        chosen.append(f"“{text}” ({label})")
        if len(chosen) == k:
            break
    return chosen


def joint_display(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    outcomes: pd.DataFrame,
    themes: Sequence[str] | None = None,
    *,
    codebook: Codebook | None = None,
    include_descendants: bool = True,
    scales: Sequence[str] | None = None,
    baseline: str | None = None,
    followup: str | None = None,
    arm: str | None = None,
    quotes: int = 2,
    quote_chars: int = 240,
    ci: float = 0.95,
) -> pd.DataFrame:
    """A joint display: themes against outcome change.

    For each theme (code) and scale: participants who expressed the theme vs
    interviewed participants who did not, mean (SD) change from baseline to
    follow-up in each group, Hedges' g (expressed minus not) with its
    confidence interval, and exemplar quotes. Quotes come from the transcripts
    as given, so pass the de-identified transcripts.

    Parameters
    ----------
    outcomes : DataFrame
        Long frame: participant, arm, wave, scale, value, days.
    themes : list of str, optional
        Code ids (default: the codebook's top-level codes, else every code used).
    arm : str, optional
        Restrict to participants of one arm.

    Returns
    -------
    DataFrame
        theme, theme_name, scale, n_with, n_without, mean_change_with,
        sd_change_with, mean_change_without, sd_change_without, hedges_g,
        ci_low, ci_high, quotes (list of str).
    """
    transcripts = list(transcripts)
    cf = attribute_codings(codings, transcripts)
    if themes is None:
        themes = [c.id for c in codebook.roots()] if codebook is not None else sorted(cf["code"].unique())
    q = quantitise(
        cf,
        transcripts,
        codes=themes,
        codebook=codebook,
        include_descendants=include_descendants and codebook is not None,
    )
    change = outcome_change(outcomes, baseline=baseline, followup=followup)
    if arm is not None:
        change = change[change["arm"] == arm]
    if scales is not None:
        change = change[change["scale"].isin(scales)]
    data = change.merge(q, on="participant", how="inner")
    rows = []
    for theme in themes:
        members = [theme]
        if codebook is not None and include_descendants and theme in codebook:
            members += [d.id for d in codebook.descendants(theme)]
        seg = segments(cf, transcripts, members)
        seg = seg[seg["participant"].notna()]
        name = codebook[theme].name if codebook is not None and theme in codebook else theme
        for scale, g in data.groupby("scale", sort=True):
            with_ = g.loc[g[f"code:{theme}"] == 1, "change"].to_numpy(float)
            without = g.loc[g[f"code:{theme}"] == 0, "change"].to_numpy(float)
            es = hedges_g(with_, without, ci=ci)
            rows.append(
                {
                    "theme": theme,
                    "theme_name": name,
                    "scale": scale,
                    "n_with": len(with_),
                    "n_without": len(without),
                    "mean_change_with": with_.mean() if len(with_) else np.nan,
                    "sd_change_with": with_.std(ddof=1) if len(with_) > 1 else np.nan,
                    "mean_change_without": without.mean() if len(without) else np.nan,
                    "sd_change_without": without.std(ddof=1) if len(without) > 1 else np.nan,
                    "hedges_g": es["g"],
                    "ci_low": es["ci_low"],
                    "ci_high": es["ci_high"],
                    "quotes": _pick_quotes(seg, quotes, quote_chars),
                }
            )
    cols = [
        "theme",
        "theme_name",
        "scale",
        "n_with",
        "n_without",
        "mean_change_with",
        "sd_change_with",
        "mean_change_without",
        "sd_change_without",
        "hedges_g",
        "ci_low",
        "ci_high",
        "quotes",
    ]
    return pd.DataFrame(rows, columns=cols)


def plot_joint_display(table: pd.DataFrame, path: str | Path | None = None, *, title: str | None = None):
    """Forest-style plot of a joint display: Hedges' g and CI per theme and scale.

    Each row is labelled with the theme, the scale and the group sizes; the
    first exemplar quote is printed beside it. Saved as PNG or SVG according
    to ``path``'s suffix when ``path`` is given.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = table.reset_index(drop=True)
    n = max(len(t), 1)
    fig = Figure(figsize=(11, 1.0 + 0.55 * n))
    FigureCanvasAgg(fig)  # draw off-screen whatever pyplot backend is active
    ax = fig.add_axes([0.30, 0.12, 0.33, 0.76])
    y = np.arange(len(t))[::-1]
    for yi, row in zip(y, t.itertuples(), strict=True):
        if np.isfinite(row.hedges_g):
            ax.plot([row.ci_low, row.ci_high], [yi, yi], color="#555555", lw=1.5)
            ax.plot(row.hedges_g, yi, "o", color="#1F77B4", ms=7)
        label = f"{row.theme_name} · {row.scale}  (n={row.n_with} vs {row.n_without})"
        ax.text(-0.02, yi, label, transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8)
        quote = row.quotes[0] if len(row.quotes) else ""
        if len(quote) > 90:
            quote = quote[:89] + "…"
        ax.text(
            1.02,
            yi,
            quote,
            transform=ax.get_yaxis_transform(),
            ha="left",
            va="center",
            fontsize=7,
            style="italic",
            color="#333333",
        )
    ax.axvline(0, color="#999999", lw=0.8, ls="--")
    ax.set_yticks([])
    ax.set_ylim(-0.8, len(t) - 0.2)
    ax.set_xlabel("Hedges' g: change, expressed theme minus not (95% CI)")
    ax.set_title(title or "Joint display: themes and outcome change", fontsize=10)
    if path is not None:
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower() or "png"
        if fmt not in {"png", "svg"}:
            raise ValueError("save as .png or .svg")
        fig.savefig(path, format=fmt, dpi=150)
    return fig
