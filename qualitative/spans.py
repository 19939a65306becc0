"""Agreement on coded spans, code by code: characters, segments with an overlap threshold, uα.

Three views of the same codings, each computed **per code** (a coder's codings of one code are
merged where they overlap) and for two or more coders where the method allows:

:func:`character_agreement`
    Every character of every transcript is one item, coded or not coded with the code by each
    coder (two coders). Percent agreement, both-coded and neither-coded shares as QualCoder's
    coder comparison reports them, Cohen's kappa over characters, Krippendorff's alpha (nominal)
    over characters, and QualCoder's own kappa (computed on the characters coded by either coder
    only), so a team moving from QualCoder can compare like with like.
:func:`segment_agreement`
    MAXQDA's segment-level check: every coded segment of either coder counts as an agreement when
    the other coder coded the same code over a segment that overlaps it by at least ``threshold``
    of the area both cover (intersection over union) and ``min_chars`` characters. Per code:
    agreements, non-agreements, percentage; overall with kappa after Brennan & Prediger (chance
    agreement 1 / number of codes), as MAXQDA reports it.
:func:`unitized_alpha`
    Krippendorff's alpha for unitizing (uα; Krippendorff 1995, 2004 §12.4): the continuum is the
    transcripts' characters laid end to end, each coder's segments of a code and the gaps between
    them are sections, and disagreement is the squared distance between overlapping sections.
    Per code ``cu_alpha = 1 - Do/De``; overall ``1 - sum(Do)/sum(De)``. Any number of coders.

References: Krippendorff, K. (1995). On the reliability of unitizing contiguous data. Sociological
Methodology 25, 47-76. Krippendorff, K. (2004). Content analysis (2nd ed.), pp. 251-256.
Brennan, R. L., & Prediger, D. J. (1981). Educational and Psychological Measurement 41, 687-699.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from .agreement import kappa_from_table, krippendorff_alpha_from_counts
from .codebook import Coding, codings_frame
from .transcripts import Transcript

__all__ = [
    "character_agreement",
    "segment_agreement",
    "unitized_alpha",
    "unitized_alpha_continuum",
    "merged_spans",
]

Span = tuple[int, int]


def merged_spans(spans: Iterable[Span]) -> list[Span]:
    """Union of overlapping spans as sorted ``(start, end)`` pairs; touching spans stay two units.

    >>> merged_spans([(5, 9), (0, 3), (2, 4), (9, 10)])
    [(0, 4), (5, 9), (9, 10)]
    """
    out: list[list[int]] = []
    for s, e in sorted((int(s), int(e)) for s, e in spans if e > s):
        if out and s < out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _prepare(codings, transcripts, coders, codes, two: bool):
    df = codings_frame(codings)
    transcripts = list(transcripts)
    coders = list(coders) if coders is not None else sorted(df["coder"].dropna().unique())
    if len(coders) < 2:
        raise ValueError("agreement needs at least two coders")
    if two and len(coders) != 2:
        raise ValueError("this method compares exactly two coders; name them with coders=[a, b]")
    df = df[df["coder"].isin(coders)]
    codes = list(codes) if codes is not None else sorted(df["code"].unique())
    lengths = {t.id: len(t.text) for t in transcripts}
    df = df[df["transcript"].isin(list(lengths))]
    spans: dict[tuple[str, str, object], list[Span]] = {}
    for code, coder, tid, s, e in zip(df["code"], df["coder"], df["transcript"], df["start"], df["end"], strict=True):
        end = min(int(e), lengths[tid])
        spans.setdefault((code, coder, tid), []).append((int(s), end))
    merged = {k: merged_spans(v) for k, v in spans.items()}
    return transcripts, coders, codes, lengths, merged


# --------------------------------------------------------------------------- characters


def _char_counts(a: list[Span], b: list[Span], length: int) -> tuple[int, int, int, int]:
    """coded by a, coded by b, coded by both, characters."""
    coded_a = sum(e - s for s, e in a)
    coded_b = sum(e - s for s, e in b)
    both = 0
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        both += max(0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return coded_a, coded_b, both, length


def _char_row(code: str, coded_a: int, coded_b: int, both: int, chars: int) -> dict:
    neither = chars - coded_a - coded_b + both
    table = [[both, coded_a - both], [coded_b - both, neither]]
    union = coded_a + coded_b - both
    qc = None
    if union:
        po = both / union
        pe = (coded_a / union * coded_b / union) * ((union - coded_a) / union * (union - coded_b) / union)
        qc = (po - pe) / (1 - pe)
    return {
        "code": code,
        "characters": chars,
        "coded_a": coded_a,
        "coded_b": coded_b,
        "both": both,
        "neither": neither,
        "agree_pct": 100 * (both + neither) / chars if chars else np.nan,
        "both_pct": 100 * both / chars if chars else np.nan,
        "neither_pct": 100 * neither / chars if chars else np.nan,
        "disagree_pct": 100 * (coded_a + coded_b - 2 * both) / chars if chars else np.nan,
        "kappa": kappa_from_table(table) if chars else np.nan,
        "alpha": krippendorff_alpha_from_counts(table),
        "kappa_qualcoder": np.nan if qc is None else qc,
    }


def character_agreement(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    *,
    coders: Sequence[str] | None = None,
    codes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Character-level agreement of two coders, per code and overall.

    Returns
    -------
    DataFrame
        code (``"(overall)"`` last: the codes' character tables summed), characters, coded_a,
        coded_b, both, neither, agree_pct, both_pct, neither_pct, disagree_pct, kappa (Cohen, over
        characters), alpha (Krippendorff, nominal, over characters), kappa_qualcoder.

    Examples
    --------
    Krippendorff's (1995, p. 57) pair Bertha and Bill on a 24-character continuum: Cohen's kappa
    on the digitized data is 0.385 and alpha 0.329.

    >>> t = Transcript(id="t", text="x" * 24)
    >>> cs = [Coding("t", "A", 2, 10, "bertha"), Coding("t", "A", 14, 20, "bertha"),
    ...       Coding("t", "A", 4, 8, "bill"), Coding("t", "A", 15, 17, "bill")]
    >>> row = character_agreement(cs, [t]).iloc[0]
    >>> [round(float(row[k]), 3) for k in ("kappa", "alpha", "agree_pct")]
    [0.385, 0.329, 66.667]
    """
    transcripts, coders, codes, lengths, merged = _prepare(codings, transcripts, coders, codes, two=True)
    a_name, b_name = coders
    rows: list[dict[str, Any]] = []
    totals = np.zeros(4, dtype=np.int64)
    for code in codes:
        counts = np.zeros(4, dtype=np.int64)
        for t in transcripts:
            counts += _char_counts(
                merged.get((code, a_name, t.id), []), merged.get((code, b_name, t.id), []), lengths[t.id]
            )
        rows.append(_char_row(code, *map(int, counts)))
        totals += counts
    rows.append(_char_row("(overall)", *map(int, totals)))
    out = pd.DataFrame(rows)
    out.attrs["coders"] = coders
    return out


# --------------------------------------------------------------------------- segments (MAXQDA)


def _iou(a: Span, b: Span) -> tuple[float, int]:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0]) if inter else (a[1] - a[0]) + (b[1] - b[0])
    return (inter / union if union else 0.0), inter


def segment_agreement(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    *,
    threshold: float = 0.9,
    min_chars: int = 1,
    coders: Sequence[str] | None = None,
    codes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """MAXQDA-style segment agreement of two coders with a minimum overlap.

    Parameters
    ----------
    threshold : float in (0, 1]
        Minimum overlap of two segments as a share of the area both cover (MAXQDA's "minimum code
        overlapping rate"; 0.9 = 90 %).
    min_chars : int
        Minimum overlap in characters as well.

    Returns
    -------
    DataFrame
        code (``"(overall)"`` last), segments_a, segments_b, agreements, disagreements, total,
        percent (agreements / total × 100), kappa (overall row only: Brennan & Prediger with
        chance agreement 1 / number of codes), threshold.

    Examples
    --------
    >>> t = Transcript(id="t", text="x" * 100)
    >>> cs = [Coding("t", "A", 0, 20, "ana"), Coding("t", "A", 1, 20, "ben"),  # 95 % overlap
    ...       Coding("t", "A", 40, 60, "ana"), Coding("t", "A", 50, 60, "ben")]  # 50 %
    >>> row = segment_agreement(cs, [t], threshold=0.9).iloc[0]
    >>> int(row["agreements"]), int(row["total"]), float(row["percent"])
    (2, 4, 50.0)
    """
    if not 0 < threshold <= 1:
        raise ValueError("threshold must be in (0, 1]")
    transcripts, coders, codes, _, merged = _prepare(codings, transcripts, coders, codes, two=True)
    a_name, b_name = coders
    rows: list[dict[str, Any]] = []
    for code in codes:
        agree = total = n_a = n_b = 0
        for t in transcripts:
            a = merged.get((code, a_name, t.id), [])
            b = merged.get((code, b_name, t.id), [])
            n_a, n_b = n_a + len(a), n_b + len(b)
            for mine, theirs in ((a, b), (b, a)):
                for seg in mine:
                    total += 1
                    agree += any(
                        iou >= threshold - 1e-12 and inter >= min_chars
                        for iou, inter in (_iou(seg, other) for other in theirs)
                    )
        rows.append(
            {
                "code": code,
                "segments_a": n_a,
                "segments_b": n_b,
                "agreements": agree,
                "disagreements": total - agree,
                "total": total,
                "percent": 100 * agree / total if total else np.nan,
                "kappa": np.nan,
                "threshold": threshold,
            }
        )
    agree = sum(r["agreements"] for r in rows)
    total = sum(r["total"] for r in rows)
    po = agree / total if total else np.nan
    coded = [r for r in rows if r["total"]]
    pc = 1 / len(coded) if coded else np.nan
    kappa = (po - pc) / (1 - pc) if coded and pc < 1 else np.nan
    rows.append(
        {
            "code": "(overall)",
            "segments_a": sum(r["segments_a"] for r in rows),
            "segments_b": sum(r["segments_b"] for r in rows),
            "agreements": agree,
            "disagreements": total - agree,
            "total": total,
            "percent": 100 * po if total else np.nan,
            "kappa": kappa,
            "threshold": threshold,
        }
    )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- unitized alpha


def _sections(units: list[Span], begin: int, end: int) -> list[tuple[int, int, bool]]:
    """A coder's continuum cut into (start, length, coded) sections."""
    out, pos = [], begin
    for s, e in units:
        if s > pos:
            out.append((pos, s - pos, False))
        out.append((s, e - s, True))
        pos = e
    if pos < end:
        out.append((pos, end - pos, False))
    return out


def _delta2(b1: int, l1: int, w1: bool, b2: int, l2: int, w2: bool) -> float:
    """Krippendorff's squared distance between two coders' sections (2004, p. 252)."""
    if w1 and w2:
        if -l1 < b1 - b2 < l2:  # the two coded sections overlap
            return float((b1 - b2) ** 2 + (b1 + l1 - b2 - l2) ** 2)
        return 0.0
    if w1 and not w2:
        return float(l1**2) if l2 - l1 >= b1 - b2 >= 0 else 0.0
    if w2 and not w1:
        return float(l2**2) if l1 - l2 >= b2 - b1 >= 0 else 0.0
    return 0.0


def unitized_alpha_continuum(units: dict[str, list[Span]], begin: int, length: int) -> dict[str, float]:
    """Binary uα of one category on one continuum: ``{"do", "de", "alpha"}``.

    Parameters
    ----------
    units : mapping coder -> list of (start, end)
        Each coder's units of the category (overlaps are merged); coders without units count.
    begin, length : int
        The continuum.

    Examples
    --------
    Krippendorff (2004, p. 254): two coders on a continuum from 150 to 450; category c.

    >>> r = unitized_alpha_continuum({"i": [(225, 295), (370, 400)],
    ...                               "j": [(220, 300), (355, 375), (400, 420)]}, 150, 300)
    >>> round(r["do"], 4), round(r["de"], 4), round(r["alpha"], 4)
    (0.0144, 0.0532, 0.7286)
    """
    m = len(units)
    if m < 2:
        raise ValueError("uα needs at least two coders")
    end = begin + length
    secs = {c: _sections(merged_spans(u), begin, end) for c, u in units.items()}
    total = 0.0
    for ci, cj in combinations(secs, 2):
        for b1, l1, w1 in secs[ci]:
            for b2, l2, w2 in secs[cj]:
                total += _delta2(b1, l1, w1, b2, l2, w2)
    do = 2 * total / (m * (m - 1) * length**2)
    coded = [sec[1] for s in secs.values() for sec in s if sec[2]]
    gaps = np.array(sorted(sec[1] for s in secs.values() for sec in s if not sec[2]), dtype=float)
    n_c = len(coded)
    num = 0.0
    suffix = np.concatenate([np.cumsum(gaps[::-1])[::-1], [0.0]])
    for ln in coded:
        k = int(np.searchsorted(gaps, ln))  # gaps at least as long as the unit
        n_long = len(gaps) - k
        fits = suffix[k] - n_long * (ln - 1)
        num += (n_c - 1) / 3 * (2 * ln**3 - 3 * ln**2 + ln) + ln**2 * fits
    den = m * length * (m * length - 1) - sum(ln * (ln - 1) for ln in coded)
    de = 2 / length * num / den if den else float("nan")
    alpha = 1 - do / de if de and not np.isnan(de) else float("nan")
    return {"do": float(do), "de": float(de), "alpha": float(alpha)}


def unitized_alpha(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    *,
    coders: Sequence[str] | None = None,
    codes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Krippendorff's uα per code (binary, ``cu_alpha``) and overall, on the transcripts laid end to end.

    Returns
    -------
    DataFrame
        code (``"(overall)"`` last), n_coders, units (coded sections of all coders), characters,
        do, de, alpha.

    Examples
    --------
    >>> t = Transcript(id="t", text="x" * 300)
    >>> cs = [Coding("t", "c", 75, 145, "i"), Coding("t", "c", 220, 250, "i"),
    ...       Coding("t", "c", 70, 150, "j"), Coding("t", "c", 205, 225, "j"), Coding("t", "c", 250, 270, "j")]
    >>> round(float(unitized_alpha(cs, [t]).iloc[0]["alpha"]), 4)
    0.7286
    """
    transcripts, coders, codes, lengths, merged = _prepare(codings, transcripts, coders, codes, two=False)
    offsets, pos = {}, 0
    for t in transcripts:
        offsets[t.id] = pos
        pos += lengths[t.id]
    rows: list[dict[str, Any]] = []
    for code in codes:
        units = {
            c: [(offsets[t.id] + s, offsets[t.id] + e) for t in transcripts for s, e in merged.get((code, c, t.id), [])]
            for c in coders
        }
        r = unitized_alpha_continuum(units, 0, pos) if pos else {"do": np.nan, "de": np.nan, "alpha": np.nan}
        rows.append(
            {"code": code, "n_coders": len(coders), "units": sum(map(len, units.values())), "characters": pos, **r}
        )
    do, de = sum(r["do"] for r in rows), sum(r["de"] for r in rows)
    rows.append(
        {
            "code": "(overall)",
            "n_coders": len(coders),
            "units": sum(r["units"] for r in rows),
            "characters": pos,
            "do": do,
            "de": de,
            "alpha": 1 - do / de if de else np.nan,
        }
    )
    return pd.DataFrame(rows)
