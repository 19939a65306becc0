"""Joint displays mixed-methods researchers recognise (Fetters, Guetterman; Creswell & Plano Clark).

* :func:`trajectory_theme_matrix` — outcome trajectory groups (improved / no change / worsened, by
  a minimal clinically important difference) against themes, one column group per arm: how many
  of each group expressed each theme, the prevalence, and *different* illustrative quotes per
  cell (a quote is never repeated across cells).
* :func:`case_matrix` — one row per interviewed participant: arm, trajectory, change, any case
  variables (dose, site) and a 0/1 column per theme, sortable by any column.
* :func:`adjust_joint_display` — Benjamini-Hochberg adjusted p-values across a statistics-by-theme
  table (:func:`qualitative.joint_display`) and a warning per row when a group is small.
* :func:`joint_display_html` — an HTML fragment of any of these tables (escaped), for reports.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .codebook import Codebook, Coding
from .coding import attribute_codings, segments
from .mixed import outcome_change, quantitise
from .transcripts import Transcript

__all__ = [
    "TRAJECTORIES",
    "classify_trajectory",
    "reliable_change_threshold",
    "trajectory_theme_matrix",
    "case_matrix",
    "bh_adjust",
    "adjust_joint_display",
    "joint_display_html",
]

TRAJECTORIES = ("improved", "no change", "worsened")
SMALL_N = 5


def classify_trajectory(change: float, mcid: float, higher_is_better: bool = True) -> str:
    """``improved`` / ``no change`` / ``worsened`` by a minimal clinically important difference.

    >>> classify_trajectory(-5, 5, higher_is_better=False), classify_trajectory(4.9, 5)
    ('improved', 'no change')
    """
    if mcid <= 0:
        raise ValueError("mcid must be positive")
    if change != change:  # NaN
        return "no data"
    signed = change if higher_is_better else -change
    if signed >= mcid:
        return "improved"
    if signed <= -mcid:
        return "worsened"
    return "no change"


def reliable_change_threshold(baseline_values, reliability: float) -> float:
    """Smallest change that is reliable at the 5 % level (Jacobson & Truax 1991):
    ``1.96 * SD_baseline * sqrt(2 * (1 - reliability))``.

    >>> round(reliable_change_threshold([40, 50, 60, 50, 45, 55], reliability=0.9), 3)
    6.198
    """
    if not 0 <= reliability < 1:
        raise ValueError("reliability must be in [0, 1)")
    sd = float(np.std(np.asarray(baseline_values, dtype=float), ddof=1))
    return 1.96 * sd * float(np.sqrt(2 * (1 - reliability)))


def _trajectories(outcomes, scale, mcid, higher_is_better, baseline, followup, reliability=None) -> pd.DataFrame:
    change = outcome_change(outcomes, baseline=baseline, followup=followup)
    change = change[change["scale"] == scale].copy()
    if reliability is not None:
        # Reliable change: the threshold comes from every participant's baseline spread.
        mcid = reliable_change_threshold(change["baseline"], reliability)
    if mcid is None:
        raise ValueError("give mcid or reliability")
    change["trajectory"] = [classify_trajectory(c, mcid, higher_is_better) for c in change["change"]]
    change.attrs["threshold"] = mcid
    return change


def _theme_members(theme: str, codebook: Codebook | None) -> list[str]:
    members = [theme]
    if codebook is not None and theme in codebook:
        members += [d.id for d in codebook.descendants(theme)]
    return members


def _quote(row, max_chars: int) -> str:
    text = " ".join(row.text.split())
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return f"“{text}” ({row.participant})"


def trajectory_theme_matrix(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    outcomes: pd.DataFrame,
    themes: Sequence[str],
    *,
    scale: str,
    mcid: float | None = None,
    reliability: float | None = None,
    higher_is_better: bool = True,
    baseline: str | None = None,
    followup: str | None = None,
    codebook: Codebook | None = None,
    quotes: int = 2,
    quote_chars: int = 200,
) -> pd.DataFrame:
    """Trajectory group × theme, per arm, with prevalence and different quotes per cell.

    Trajectories are improved / no change / worsened by ``mcid`` points, or — with
    ``reliability`` (the scale's test-retest or internal-consistency reliability) — by the
    reliable change index of Jacobson & Truax (:func:`reliable_change_threshold`).

    Returns
    -------
    DataFrame
        One row per (trajectory, theme, arm): trajectory, theme, theme_name, arm, n_group
        (interviewed participants of the arm in this trajectory), n_theme (of them, who expressed
        the theme), prevalence (n_theme / n_group), quotes (list of str, never repeated in another
        cell), participants (who expressed it).

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> ts = [parse_text(f"P{i}: I felt less alone.", id=f"t{i}", participant=f"P{i}") for i in range(4)]
    >>> cs = [Coding(f"t{i}", "iso", 4, 21, "ana") for i in range(3)]
    >>> out = pd.DataFrame({"participant": [f"P{i}" for i in range(4) for _ in (0, 1)],
    ...                     "arm": ["group"] * 8, "wave": ["b", "f"] * 4, "scale": "pam",
    ...                     "value": [50, 60, 50, 58, 50, 50, 50, 40], "days": [0, 90] * 4})
    >>> m = trajectory_theme_matrix(cs, ts, out, ["iso"], scale="pam", mcid=5, quotes=1)
    >>> m[["trajectory", "n_group", "n_theme", "prevalence"]].values.tolist()
    [['improved', 2, 2, 1.0], ['no change', 1, 1, 1.0], ['worsened', 1, 0, 0.0]]
    >>> len({q for qs in m["quotes"] for q in qs}) == sum(len(qs) for qs in m["quotes"])
    True
    """
    transcripts = list(transcripts)
    cf = attribute_codings(codings, transcripts)
    traj = _trajectories(outcomes, scale, mcid, higher_is_better, baseline, followup, reliability)
    interviewed: set[str] = set()
    for t in transcripts:
        interviewed.update(str(p) for p in [*(t.participants or []), t.participant] if p)
    traj = traj[traj["participant"].isin(interviewed)]
    arms: list[str | None] = [*sorted(str(a) for a in traj["arm"].dropna().unique())] or [None]
    used_quotes: set[str] = set()
    rows = []
    for trajectory in TRAJECTORIES:
        for theme in themes:
            seg = segments(cf, transcripts, _theme_members(theme, codebook))
            seg = seg[seg["participant"].notna() & (seg["text"].str.strip().str.len() > 0)]
            name = codebook[theme].name if codebook is not None and theme in codebook else theme
            for arm in arms:
                group = traj[(traj["trajectory"] == trajectory) & ((traj["arm"] == arm) if arm else True)]
                people = set(group["participant"])
                said = seg[seg["participant"].isin(people)]
                who = sorted(set(said["participant"]))
                cell_quotes: list[str] = []
                said = said.assign(dist=(said["text"].str.len() - 120).abs()).sort_values(["dist", "participant"])
                seen_people: set[str] = set()
                for row in said.itertuples():
                    if len(cell_quotes) >= quotes:
                        break
                    q = _quote(row, quote_chars)
                    if q in used_quotes or row.participant in seen_people:
                        continue
                    used_quotes.add(q)
                    seen_people.add(row.participant)
                    cell_quotes.append(q)
                rows.append(
                    {
                        "trajectory": trajectory,
                        "theme": theme,
                        "theme_name": name,
                        "arm": arm,
                        "n_group": len(people),
                        "n_theme": len(who),
                        "prevalence": len(who) / len(people) if people else np.nan,
                        "quotes": cell_quotes,
                        "participants": who,
                    }
                )
    return pd.DataFrame(rows)


def case_matrix(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    outcomes: pd.DataFrame,
    themes: Sequence[str],
    *,
    scale: str,
    mcid: float | None = None,
    reliability: float | None = None,
    higher_is_better: bool = True,
    baseline: str | None = None,
    followup: str | None = None,
    codebook: Codebook | None = None,
    case_variables: Mapping[str, Mapping[str, object]] | None = None,
    sort_by: Sequence[str] = ("arm", "trajectory", "participant"),
) -> pd.DataFrame:
    """One row per interviewed participant: arm, trajectory, baseline, follow-up, change, case
    variables (e.g. dose) and ``theme:<id>`` (0/1) per theme, sorted by ``sort_by``.

    Raises ``KeyError`` for a ``sort_by`` column the matrix does not have.
    """
    transcripts = list(transcripts)
    q = quantitise(
        codings, transcripts, codes=list(themes), codebook=codebook, include_descendants=codebook is not None
    )
    traj = _trajectories(outcomes, scale, mcid, higher_is_better, baseline, followup, reliability)
    m = q[["participant", *[f"code:{t}" for t in themes]]].merge(
        traj[["participant", "arm", "baseline", "followup", "change", "trajectory"]], on="participant", how="left"
    )
    m["trajectory"] = m["trajectory"].fillna("no data")
    m = m.rename(columns={f"code:{t}": f"theme:{t}" for t in themes})
    if case_variables:
        extra = pd.DataFrame.from_dict({k: dict(v) for k, v in case_variables.items()}, orient="index")
        extra = extra.drop(columns=[c for c in extra.columns if c in m.columns], errors="ignore")
        m = m.merge(extra, left_on="participant", right_index=True, how="left")
    front = ["participant", "arm", "trajectory", "baseline", "followup", "change"]
    m = m[front + [c for c in m.columns if c not in front]]
    missing = [c for c in sort_by if c not in m.columns]
    if missing:
        raise KeyError(missing[0])
    return m.sort_values(list(sort_by), kind="stable", na_position="last").reset_index(drop=True)


def bh_adjust(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN kept), as R's ``p.adjust(p, "BH")``.

    >>> bh_adjust([0.01, 0.04, 0.03, 0.005]).round(4).tolist()
    [0.02, 0.04, 0.04, 0.02]
    """
    arr = np.asarray(p, dtype=float)
    out = np.full_like(arr, np.nan)
    ok = ~np.isnan(arr)
    v = arr[ok]
    n = len(v)
    if n == 0:
        return out
    order = np.argsort(v)[::-1]
    ranked = v[order] * n / np.arange(n, 0, -1)
    adj = np.minimum.accumulate(ranked)
    res = np.empty(n)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def adjust_joint_display(table: pd.DataFrame, changes: pd.DataFrame | None = None, *, small_n: int = SMALL_N):
    """Add Welch's ``p``, BH-adjusted ``p_bh`` across the whole table and a ``warning`` per row.

    ``table`` is :func:`qualitative.joint_display`'s frame. The p-value is Welch's t-test of the
    change with vs without the theme, from the table's means, SDs and counts. A row warns when a
    group has fewer than ``small_n`` participants, and every row names the number of tests the
    adjustment spans.
    """
    t = table.copy()
    ps = []
    for r in t.itertuples():
        n1, n2 = int(r.n_with), int(r.n_without)
        if n1 >= 2 and n2 >= 2 and r.sd_change_with == r.sd_change_with and r.sd_change_without == r.sd_change_without:
            res = stats.ttest_ind_from_stats(
                r.mean_change_with,
                r.sd_change_with,
                n1,
                r.mean_change_without,
                r.sd_change_without,
                n2,
                equal_var=False,
            )
            ps.append(float(res.pvalue))
        else:
            ps.append(np.nan)
    t["p"] = ps
    t["p_bh"] = bh_adjust(ps)
    m = int(np.sum(~np.isnan(ps)))
    warn = []
    for r in t.itertuples():
        notes = []
        if min(int(r.n_with), int(r.n_without)) < small_n:
            notes.append(f"small groups (n {int(r.n_with)} with, {int(r.n_without)} without the theme)")
        notes.append(f"{m} tests in this table: read p_bh, not p")
        warn.append("; ".join(notes))
    t["warning"] = warn
    return t


def _cell(value) -> str:
    if isinstance(value, list | tuple):
        return "<ul>" + "".join(f"<li>{html.escape(str(v))}</li>" for v in value) + "</ul>" if value else ""
    if isinstance(value, float):
        return "" if value != value else f"{value:.3g}"
    return html.escape("" if value is None else str(value))


def joint_display_html(table: pd.DataFrame, *, caption: str | None = None, columns: Sequence[str] | None = None) -> str:
    """An HTML ``<table>`` fragment of a joint display (every value escaped; lists as bullet lists).

    >>> joint_display_html(pd.DataFrame({"theme": ["<b>x</b>"], "quotes": [["“a” (P1)"]]}), caption="Themes")
    '<table class="joint-display"><caption>Themes</caption><thead><tr><th scope="col">theme</th><th scope="col">quotes</th></tr></thead><tbody><tr><td>&lt;b&gt;x&lt;/b&gt;</td><td><ul><li>“a” (P1)</li></ul></td></tr></tbody></table>'
    """  # noqa: E501
    cols = list(columns) if columns is not None else list(table.columns)
    head = "".join(f'<th scope="col">{html.escape(str(c))}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row[c])}</td>" for c in cols) + "</tr>" for _, row in table.iterrows())
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="joint-display">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
