"""Pure functions over codings: retrieval, co-occurrence and crosstabs.

All functions take codings as a list of :class:`~qualitative.codebook.Coding`
or a frame with at least ``transcript, code, start, end`` (plus ``coder``), and
return tidy DataFrames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from .codebook import Codebook, Coding, codings_frame
from .transcripts import Transcript, paragraph_spans

__all__ = ["attribute_codings", "segments", "co_occurrence", "co_occurrence_matrix", "crosstab", "unit_spans"]


def _tmap(transcripts: Iterable[Transcript]) -> dict[str, Transcript]:
    return {t.id: t for t in transcripts}


def _speaker_participant(t: Transcript, start: int) -> str | None:
    """Participant a coded span belongs to.

    In a focus group the span belongs to the participant whose turn contains
    its start; in an interview to the interviewee.
    """
    if t.kind == "focus_group" or (not t.participant and len(t.participants) > 1):
        for turn in t.turns:
            if turn.start <= start < turn.end:
                return turn.speaker if turn.role == "participant" else None
        return None
    return t.participant or (t.participants[0] if t.participants else None)


def attribute_codings(codings: Sequence[Coding] | pd.DataFrame, transcripts: Iterable[Transcript]) -> pd.DataFrame:
    """Codings with ``participant``, ``wave`` and ``speaker`` columns added.

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> t = parse_text("Interviewer: Hi\\nP01: Lonely before.", id="t1", participant="P01", wave="w1")
    >>> attribute_codings([Coding("t1", "isolation", 21, 34, "ana")], [t])[["participant", "speaker"]].values.tolist()
    [['P01', 'P01']]
    """
    df = codings_frame(codings)
    tm = _tmap(transcripts)
    parts, waves, speakers = [], [], []
    for tid, start in zip(df["transcript"], df["start"], strict=True):
        t = tm.get(tid)
        if t is None:
            parts.append(None), waves.append(None), speakers.append(None)
            continue
        parts.append(_speaker_participant(t, int(start)))
        waves.append(t.wave)
        speakers.append(t.speaker_at(int(start)))
    df["participant"] = parts
    df["wave"] = waves
    df["speaker"] = speakers
    return df


def _expand_codes(code: str | Sequence[str], codebook: Codebook | None, include_descendants: bool) -> set[str]:
    codes = {code} if isinstance(code, str) else set(code)
    if include_descendants:
        if codebook is None:
            raise ValueError("include_descendants needs the codebook")
        for c in list(codes):
            codes |= {d.id for d in codebook.descendants(c)}
    return codes


def segments(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    code: str | Sequence[str] | None = None,
    *,
    codebook: Codebook | None = None,
    include_descendants: bool = False,
    coder: str | None = None,
) -> pd.DataFrame:
    """Retrieve every coded segment (with its text) for one or more codes.

    Returns
    -------
    DataFrame
        transcript, participant, wave, speaker, code, coder, start, end, text, memo;
        sorted by transcript and start.

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> t = parse_text("P01: The group made me feel less alone.", id="t1", participant="P01")
    >>> segments([Coding("t1", "isolation", 5, 39, "ana")], [t], "isolation")["text"].tolist()
    ['The group made me feel less alone.']
    """
    transcripts = list(transcripts)
    df = attribute_codings(codings, transcripts)
    if code is not None:
        df = df[df["code"].isin(_expand_codes(code, codebook, include_descendants))]
    if coder is not None:
        df = df[df["coder"] == coder]
    tm = _tmap(transcripts)
    df = df.copy()
    df["text"] = [
        tm[t].text[int(s) : int(e)] if t in tm else None
        for t, s, e in zip(df["transcript"], df["start"], df["end"], strict=True)
    ]
    cols = ["transcript", "participant", "wave", "speaker", "code", "coder", "start", "end", "text", "memo"]
    return df[cols].sort_values(["transcript", "start", "end", "code"]).reset_index(drop=True)


def unit_spans(t: Transcript, unit: str) -> list[tuple[int, int]]:
    """Spans of the analysis units of a transcript.

    ``"turn"``: speaker turns (falls back to paragraphs when the transcript has
    none); ``"paragraph"``: non-empty lines; ``"transcript"``: the whole text.
    """
    if unit == "turn":
        return [(u.start, u.end) for u in t.turns] or paragraph_spans(t.text)
    if unit == "paragraph":
        return paragraph_spans(t.text)
    if unit == "transcript":
        return [(0, len(t.text))]
    raise ValueError(f"unknown unit {unit!r}: use 'turn', 'paragraph' or 'transcript'")


def _units_of(spans: list[tuple[int, int]], start: int, end: int) -> list[int]:
    return [i for i, (a, b) in enumerate(spans) if a < end and start < b]


def co_occurrence(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript] | None = None,
    *,
    unit: str = "overlap",
    coder: str | None = None,
) -> pd.DataFrame:
    """How often two codes occur together.

    Parameters
    ----------
    unit : {"overlap", "turn", "paragraph", "transcript"}
        ``"overlap"`` counts pairs of codings whose spans overlap within a
        transcript; the other units count units (turns, paragraphs, whole
        transcripts) touched by codings of both codes (transcripts are needed
        for "turn" and "paragraph").

    Returns
    -------
    DataFrame
        code_a, code_b (code_a < code_b), n, unit.

    Examples
    --------
    >>> cs = [Coding("t1", "a", 0, 10, "x"), Coding("t1", "b", 5, 12, "x"), Coding("t1", "c", 20, 30, "x")]
    >>> co_occurrence(cs)[["code_a", "code_b", "n"]].values.tolist()
    [['a', 'b', 1]]
    """
    df = codings_frame(codings)
    if coder is not None:
        df = df[df["coder"] == coder]
    counts: dict[tuple[str, str], int] = {}
    if unit == "overlap":
        for _, g in df.groupby("transcript"):
            g = g.sort_values("start")
            rows = list(zip(g["code"], g["start"], g["end"], strict=True))
            for i, (ca, _, ea) in enumerate(rows):
                for cb, sb, _ in rows[i + 1 :]:
                    if sb >= ea:
                        break
                    if ca != cb:
                        key = tuple(sorted((ca, cb)))
                        counts[key] = counts.get(key, 0) + 1
    else:
        if unit != "transcript" and transcripts is None:
            raise ValueError(f"unit={unit!r} needs the transcripts")
        tm = _tmap(transcripts or [])
        for tid, g in df.groupby("transcript"):
            if unit == "transcript":
                present = {0: set(g["code"])}
            else:
                spans = unit_spans(tm[tid], unit)
                present: dict[int, set] = {}
                for code, s, e in zip(g["code"], g["start"], g["end"], strict=True):
                    for u in _units_of(spans, int(s), int(e)):
                        present.setdefault(u, set()).add(code)
            for codes in present.values():
                for key in combinations(sorted(codes), 2):
                    counts[key] = counts.get(key, 0) + 1
    out = pd.DataFrame([(a, b, n) for (a, b), n in sorted(counts.items())], columns=["code_a", "code_b", "n"])
    out["unit"] = unit
    return out


def co_occurrence_matrix(table: pd.DataFrame, codes: Sequence[str] | None = None) -> pd.DataFrame:
    """Symmetric code x code matrix from :func:`co_occurrence` output."""
    codes = list(codes) if codes is not None else sorted(set(table["code_a"]) | set(table["code_b"]))
    m = pd.DataFrame(0, index=codes, columns=codes, dtype=int)
    for a, b, n in zip(table["code_a"], table["code_b"], table["n"], strict=True):
        if a in m.index and b in m.index:
            m.loc[a, b] = m.loc[b, a] = n
    return m


def crosstab(
    codings: Sequence[Coding] | pd.DataFrame,
    transcripts: Iterable[Transcript],
    attributes: pd.DataFrame | None = None,
    by: str | Sequence[str] = "arm",
    *,
    codes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Code x attribute crosstab at participant level.

    Parameters
    ----------
    attributes : DataFrame, optional
        One row per participant: a ``participant`` column plus any attribute
        (arm, site, sex ...). ``wave`` comes from the transcripts.
    by : str or list of str
        Attribute column(s) to cross with the codes.

    Returns
    -------
    DataFrame
        code, <by...>, n_participants (who expressed the code), n_codings,
        n_group (participants with a transcript in the group), pct
        (= 100 * n_participants / n_group).

    Examples
    --------
    >>> from qualitative.transcripts import parse_text
    >>> ts = [parse_text("P01: alone", id="t1", participant="P01"), parse_text("P02: fine", id="t2", participant="P02")]
    >>> attrs = pd.DataFrame({"participant": ["P01", "P02"], "arm": ["peer", "control"]})
    >>> crosstab([Coding("t1", "isolation", 5, 10, "x")], ts, attrs, "arm")[["code", "arm", "pct"]].values.tolist()
    [['isolation', 'control', 0.0], ['isolation', 'peer', 100.0]]
    """
    transcripts = list(transcripts)
    by = [by] if isinstance(by, str) else list(by)
    coded = attribute_codings(codings, transcripts)
    coded = coded[coded["participant"].notna()]
    # Everyone who was interviewed forms the denominator, coded or not.
    people = []
    for t in transcripts:
        for p in t.participants:
            people.append({"participant": p, "wave": t.wave, "transcript": t.id})
    base = pd.DataFrame(people, columns=["participant", "wave", "transcript"])
    if attributes is not None:
        # Attributes may be per participant or per participant and wave.
        keys = ["participant", "wave"] if "wave" in attributes.columns else ["participant"]
        attrs = attributes.drop_duplicates(subset=keys)
        base = base.merge(attrs, on=keys, how="left")
        extra = [c for c in attrs.columns if c not in keys and c in coded.columns]
        coded = coded.drop(columns=extra).merge(attrs, on=keys, how="left")
    missing = [b for b in by if b not in base.columns]
    if missing:
        raise ValueError(f"unknown attribute(s) {missing}: give them in `attributes`")
    codes = list(codes) if codes is not None else sorted(coded["code"].unique())
    groups = base.dropna(subset=by).groupby(by)["participant"].nunique().rename("n_group").reset_index()
    rows = []
    for code in codes:
        sub = coded[coded["code"] == code]
        agg = sub.groupby(by).agg(n_participants=("participant", "nunique"), n_codings=("code", "size")).reset_index()
        merged = groups.merge(agg, on=by, how="left")
        merged.insert(0, "code", code)
        rows.append(merged)
    if not rows:
        return pd.DataFrame(columns=["code", *by, "n_participants", "n_codings", "n_group", "pct"])
    out = pd.concat(rows, ignore_index=True)
    out[["n_participants", "n_codings"]] = out[["n_participants", "n_codings"]].fillna(0).astype(int)
    out["pct"] = np.where(out["n_group"] > 0, 100.0 * out["n_participants"] / out["n_group"], np.nan)
    return (
        out[["code", *by, "n_participants", "n_codings", "n_group", "pct"]]
        .sort_values(["code", *by])
        .reset_index(drop=True)
    )
