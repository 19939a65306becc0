"""Inter-coder agreement: percent agreement, Cohen's kappa, Krippendorff's alpha.

Statistics on raw ratings
-------------------------
:func:`krippendorff_alpha` takes a coders x units matrix (missing values
allowed); :func:`cohens_kappa` two raters' labels; :func:`kappa_from_table` a
k x k contingency table; :func:`percent_agreement` a coders x units matrix.

Agreement on codings
--------------------
:func:`agreement` turns character-span codings into presence/absence of each
code in each *unit of analysis* and reports, per code and overall, percent
agreement, Cohen's kappa (two coders; the mean of pairwise kappas, Light's
kappa, for more) and Krippendorff's alpha (nominal). The unit is named in the
output:

``"turn"``
    speaker turns of the transcript;
``"paragraph"``
    non-empty lines;
``"segment"``
    coded segments, built per code: the codings of one code (all coders) in a
    transcript merged into clusters of overlapping spans; a coder "has" the code
    in a segment when one of their codings of it overlaps the segment. Each code
    is judged on its own segments only (no code is "absent" in another code's
    segment).

For agreement on the spans themselves — characters, MAXQDA's segment overlap
threshold, Krippendorff's unitized alpha — see :mod:`qualitative.spans`.

A code is present in a unit when a coding overlaps it by at least
``min_chars`` characters. "Overall" pools every (unit, code) pair as one binary
item. :func:`disagreements` lists the (unit, code) pairs the coders disagree
on, with the unit's text, for reconciliation.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from .codebook import Coding, codings_frame
from .coding import unit_spans
from .transcripts import Transcript

__all__ = [
    "krippendorff_alpha",
    "cohens_kappa",
    "kappa_from_table",
    "krippendorff_alpha_from_counts",
    "percent_agreement",
    "unit_matrix",
    "agreement",
    "disagreements",
]


def _is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(np.isnan(v))
    except (TypeError, ValueError):
        return False


def krippendorff_alpha(data, level: str = "nominal") -> float:
    """Krippendorff's alpha for a coders x units reliability matrix.

    Parameters
    ----------
    data : array-like or DataFrame, shape (coders, units)
        Values may be any hashable labels; ``None``/``NaN`` mark missing data.
    level : {"nominal", "ordinal", "interval", "ratio"}
        Difference function of Krippendorff (2011): ordinal through the ranks of the values' marginal
        frequencies, ratio ``((c - k) / (c + k))²``.

    Returns
    -------
    float
        ``nan`` when fewer than two pairable values exist or when there is no
        variation at all (expected disagreement is zero).

    Notes
    -----
    Follows Krippendorff's coincidence-matrix formulation: units coded by fewer
    than two coders are not pairable and drop out; each unit with ``m_u``
    values contributes ``n_uc * n_uk / (m_u - 1)`` to the coincidence of values
    ``c`` and ``k``; ``alpha = 1 - (n - 1) * sum(o_ck * d_ck) / sum(n_c * n_k * d_ck)``.

    Examples
    --------
    Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal
    data, 4 coders x 12 units with missing values:

    >>> nan = None
    >>> data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    ...         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    ...         [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    ...         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    >>> round(krippendorff_alpha(data), 3)
    0.743
    """
    if level not in {"nominal", "ordinal", "interval", "ratio"}:
        raise ValueError("level must be 'nominal', 'ordinal', 'interval' or 'ratio'")
    rows = data.values.tolist() if isinstance(data, pd.DataFrame) else [list(r) for r in data]
    if not rows:
        return float("nan")
    n_units = max(len(r) for r in rows)
    labels: dict[Hashable, int] = {}
    unit_counts: list[dict[int, int]] = []
    for u in range(n_units):
        counts: dict[int, int] = {}
        for r in rows:
            v = r[u] if u < len(r) else None
            if _is_missing(v):
                continue
            idx = labels.setdefault(v, len(labels))
            counts[idx] = counts.get(idx, 0) + 1
        if sum(counts.values()) >= 2:
            unit_counts.append(counts)
    if not unit_counts or len(labels) == 0:
        return float("nan")
    V = len(labels)
    N = np.zeros((len(unit_counts), V))
    for i, counts in enumerate(unit_counts):
        for k, c in counts.items():
            N[i, k] = c
    m = N.sum(axis=1)
    W = N / (m - 1)[:, None]
    coincidences = N.T @ W - np.diag(W.sum(axis=0))
    n_c = coincidences.sum(axis=1)
    n = n_c.sum()
    if level == "nominal":
        delta = 1.0 - np.eye(V)
    else:
        vals = np.array([float(v) for v in labels])
        if level == "interval":
            delta = (vals[:, None] - vals[None, :]) ** 2
        elif level == "ratio":
            with np.errstate(invalid="ignore", divide="ignore"):
                s = vals[:, None] + vals[None, :]
                delta = np.where(s != 0, ((vals[:, None] - vals[None, :]) / np.where(s != 0, s, 1)) ** 2, 0.0)
        else:  # ordinal: ranks through the marginal frequencies between the two values (Krippendorff 2011)
            order = np.argsort(vals)
            cum = np.cumsum(n_c[order])
            pos = np.empty(V)
            pos[order] = cum - n_c[order] / 2  # mid-rank of each value
            delta = (pos[:, None] - pos[None, :]) ** 2
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0:
        return float("nan")
    return float(1.0 - (n - 1) * (coincidences * delta).sum() / expected)


def krippendorff_alpha_from_counts(table) -> float:
    """Krippendorff's alpha (nominal) for two coders from a k x k table of their paired labels.

    Each item is one pair of values, so the coincidence matrix is the table plus its transpose.

    Examples
    --------
    Krippendorff (1995, p. 57), Bertha and Bill digitized: both 6, Bertha only 8, neither 10.

    >>> round(krippendorff_alpha_from_counts([[6, 8], [0, 10]]), 3)
    0.329
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError("table must be square")
    o = t + t.T
    n_c = o.sum(axis=1)
    n = n_c.sum()
    expected = n_c.sum() ** 2 - (n_c**2).sum()
    if n < 2 or expected == 0:
        return float("nan")
    observed = o.sum() - np.trace(o)
    return float(1.0 - (n - 1) * observed / expected)


def kappa_from_table(table) -> float:
    """Cohen's kappa from a k x k contingency table (rows: rater 1, columns: rater 2).

    Examples
    --------
    The two readers x 50 grant proposals example (20, 5 / 10, 15):

    >>> kappa_from_table([[20, 5], [10, 15]])
    0.4
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError("table must be square")
    n = t.sum()
    if n == 0:
        return float("nan")
    po = np.trace(t) / n
    pe = float((t.sum(axis=1) * t.sum(axis=0)).sum() / n**2)
    if pe == 1.0:
        return float("nan")
    return float(round((po - pe) / (1 - pe), 12))


def cohens_kappa(rater1: Sequence, rater2: Sequence) -> float:
    """Cohen's kappa for two raters' labels of the same items (missing pairs dropped).

    Examples
    --------
    >>> cohens_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    0.5
    """
    if len(rater1) != len(rater2):
        raise ValueError("raters must label the same items")
    pairs = [(a, b) for a, b in zip(rater1, rater2, strict=True) if not _is_missing(a) and not _is_missing(b)]
    labels = sorted({x for p in pairs for x in p}, key=str)
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for a, b in pairs:
        table[index[a], index[b]] += 1
    return kappa_from_table(table)


def percent_agreement(data) -> float:
    """Share of units (coded by two or more coders) on which all coders agree.

    Examples
    --------
    >>> percent_agreement([[1, 1, 0, None], [1, 0, 0, 1]])
    0.6666666666666666
    """
    rows = data.values.tolist() if isinstance(data, pd.DataFrame) else [list(r) for r in data]
    agree = total = 0
    for u in range(max(len(r) for r in rows)):
        vals = [r[u] for r in rows if u < len(r) and not _is_missing(r[u])]
        if len(vals) < 2:
            continue
        total += 1
        agree += len(set(vals)) == 1
    return agree / total if total else float("nan")


# --------------------------------------------------------------------------- codings -> units


def _segment_spans(df: pd.DataFrame, text_len: int) -> list[tuple[int, int]]:
    spans = sorted(zip(df["start"].astype(int), df["end"].astype(int), strict=True))
    merged: list[list[int]] = []
    for s, e in spans:
        if merged and s < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, min(e, text_len)])
    return [tuple(x) for x in merged]


def _unit_records(tid, spans, sub: pd.DataFrame, codes, coders, min_chars: int, first: int = 0) -> list[dict]:
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([e for _, e in spans], dtype=np.int64)
    present = np.zeros((len(spans), len(codes), len(coders)), dtype=np.int8)
    code_ix = {c: i for i, c in enumerate(codes)}
    coder_ix = {c: i for i, c in enumerate(coders)}
    for code, coder, s, e in zip(sub["code"], sub["coder"], sub["start"], sub["end"], strict=True):
        if code not in code_ix:
            continue
        overlap = np.minimum(ends, int(e)) - np.maximum(starts, int(s))
        hit = overlap >= min(min_chars, max(int(e) - int(s), 1))
        present[hit, code_ix[code], coder_ix[coder]] = 1
    records = []
    for ui, (s, e) in enumerate(spans):
        for ci, code in enumerate(codes):
            rec = {"transcript": tid, "unit_index": first + ui, "start": s, "end": e, "code": code}
            rec.update({c: int(present[ui, ci, k]) for k, c in enumerate(coders)})
            records.append(rec)
    return records


def unit_matrix(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    *,
    unit: str = "turn",
    coders: Sequence[str] | None = None,
    codes: Sequence[str] | None = None,
    min_chars: int = 1,
) -> pd.DataFrame:
    """Presence (1) / absence (0) of every code in every unit, per coder.

    Returns
    -------
    DataFrame
        transcript, unit_index, start, end, code, and one 0/1 column per coder.
    """
    df = codings_frame(codings)
    coders = list(coders) if coders is not None else sorted(df["coder"].dropna().unique())
    if len(coders) < 2:
        raise ValueError("agreement needs at least two coders")
    df = df[df["coder"].isin(coders)]
    codes = list(codes) if codes is not None else sorted(df["code"].unique())
    records: list[dict] = []
    for t in transcripts:
        sub = df[df["transcript"] == t.id]
        if unit == "segment":
            # Segments are built per code: one code's codings (all coders) merged where they overlap,
            # so another code's codings never widen or join them.
            first = 0
            for code in codes:
                one = sub[sub["code"] == code]
                spans = _segment_spans(one, len(t.text))
                records += _unit_records(t.id, spans, one, [code], coders, min_chars, first)
                first += len(spans)
            continue
        records += _unit_records(t.id, unit_spans(t, unit), sub, codes, coders, min_chars)
    return pd.DataFrame(records, columns=["transcript", "unit_index", "start", "end", "code", *coders])


def _stats(block: np.ndarray) -> dict:
    """block: items x coders, 0/1."""
    n_coders = block.shape[1]
    if block.shape[0] == 0:
        return {"percent_agreement": np.nan, "kappa": np.nan, "alpha": np.nan}
    pa = float((block.min(axis=1) == block.max(axis=1)).mean())
    kappas = [cohens_kappa(block[:, i], block[:, j]) for i, j in combinations(range(n_coders), 2)]
    kappa = float(np.nanmean(kappas)) if not all(np.isnan(kappas)) else float("nan")
    alpha = krippendorff_alpha(block.T.tolist())
    return {"percent_agreement": pa, "kappa": kappa, "alpha": alpha}


def agreement(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    *,
    unit: str = "turn",
    coders: Sequence[str] | None = None,
    codes: Sequence[str] | None = None,
    min_chars: int = 1,
) -> pd.DataFrame:
    """Per-code and overall agreement between coders.

    Returns
    -------
    DataFrame
        code (``"(overall)"`` last), unit, n_units, n_coders, n_coded (units
        where any coder applied the code), percent_agreement, kappa,
        kappa_method (``"cohen"`` or ``"light"``), alpha (nominal).

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> t = parse_text("P01: a\\nP01: b\\nP01: c\\nP01: d", id="t")
    >>> cs = [Coding("t", "x", 5, 6, "ana"), Coding("t", "x", 5, 6, "ben"), Coding("t", "x", 12, 13, "ben")]
    >>> row = agreement(cs, [t]).iloc[0]
    >>> row["unit"], int(row["n_units"]), float(row["percent_agreement"])
    ('turn', 4, 0.75)
    """
    transcripts = list(transcripts)
    mat = unit_matrix(codings, transcripts, unit=unit, coders=coders, codes=codes, min_chars=min_chars)
    coder_cols = list(mat.columns[5:])
    method = "cohen" if len(coder_cols) == 2 else "light"
    rows = []
    for code, g in mat.groupby("code", sort=True):
        block = g[coder_cols].to_numpy()
        rows.append(
            {
                "code": code,
                "unit": unit,
                "n_units": len(g),
                "n_coders": len(coder_cols),
                "n_coded": int((block.max(axis=1) > 0).sum()),
                **_stats(block),
                "kappa_method": method,
            }
        )
    block = mat[coder_cols].to_numpy()
    rows.append(
        {
            "code": "(overall)",
            "unit": unit,
            "n_units": int(mat[["transcript", "unit_index"]].drop_duplicates().shape[0]),
            "n_coders": len(coder_cols),
            "n_coded": int((block.max(axis=1) > 0).sum()),
            **_stats(block),
            "kappa_method": method,
        }
    )
    cols = ["code", "unit", "n_units", "n_coders", "n_coded", "percent_agreement", "kappa", "kappa_method", "alpha"]
    return pd.DataFrame(rows, columns=cols)


def disagreements(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    *,
    unit: str = "turn",
    coders: Sequence[str] | None = None,
    codes: Sequence[str] | None = None,
    min_chars: int = 1,
) -> pd.DataFrame:
    """Units where coders disagree on a code, with the unit's text.

    Returns
    -------
    DataFrame
        transcript, unit, unit_index, start, end, code, coded_by, not_coded_by, text.
    """
    transcripts = list(transcripts)
    tm = {t.id: t for t in transcripts}
    mat = unit_matrix(codings, transcripts, unit=unit, coders=coders, codes=codes, min_chars=min_chars)
    coder_cols = list(mat.columns[5:])
    block = mat[coder_cols].to_numpy()
    rows = []
    for i in np.flatnonzero(block.min(axis=1) != block.max(axis=1)):
        r = mat.iloc[i]
        rows.append(
            {
                "transcript": r["transcript"],
                "unit": unit,
                "unit_index": int(r["unit_index"]),
                "start": int(r["start"]),
                "end": int(r["end"]),
                "code": r["code"],
                "coded_by": [c for c in coder_cols if r[c] == 1],
                "not_coded_by": [c for c in coder_cols if r[c] == 0],
                "text": tm[r["transcript"]].text[int(r["start"]) : int(r["end"])],
            }
        )
    cols = ["transcript", "unit", "unit_index", "start", "end", "code", "coded_by", "not_coded_by", "text"]
    return pd.DataFrame(rows, columns=cols)
