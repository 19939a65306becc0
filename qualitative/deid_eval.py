"""Recall and over-redaction of de-identification on a seeded corpus, reported per kind.

The de-identification literature reports recall first (a missed identifier is a privacy breach;
an extra redaction only costs some analytic content), with over-redaction measured on words that
must survive: decoys that look like names ("Hope", "May", "Will") and clinical terms.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .deid import DeidResult

__all__ = ["deid_report"]

Span = tuple[int, int, str]


def _covered(result: DeidResult) -> set[int]:
    out: set[int] = set()
    for r in result.replacements:
        out.update(range(r.start, r.end))
    return out


def deid_report(cases: Iterable[tuple[DeidResult, Iterable[Span], Iterable[Span]]]) -> pd.DataFrame:
    """Per-kind recall of identifiers and over-redaction of words that must survive.

    Parameters
    ----------
    cases : iterable of (result, identifiers, survivors)
        ``result`` from :func:`qualitative.deidentify`; ``identifiers`` are ``(start, end, kind)``
        spans of the original text that must disappear; ``survivors`` are spans that must stay
        (decoys, clinical terms), with their kind.

    Returns
    -------
    DataFrame
        One row per kind: ``kind, role, n, removed, recall, redacted, over_redaction``. ``role`` is
        ``"identifier"`` (recall = removed / n; a span counts as removed when every character lies
        inside replaced text) or ``"survivor"`` (over_redaction = redacted / n; any replaced
        character counts). A last row ``all`` sums the identifiers.

    Examples
    --------
    >>> import warnings
    >>> from qualitative import deidentify
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # "statistical NER is off"
    ...     r = deidentify("P01: May I say, email a@b.org", model=None)
    >>> table = deid_report([(r, [(22, 29, "email")], [(5, 8, "decoy")])])
    >>> table[["kind", "n", "recall", "over_redaction"]].to_string(index=False).splitlines()[1:]
    ['email  1     1.0             NaN', 'decoy  1     NaN             0.0', '  all  1     1.0             NaN']
    """
    rows = []
    for result, ids, survivors in cases:
        cov = _covered(result)
        for s, e, kind in ids:
            rows.append({"kind": kind, "role": "identifier", "hit": all(i in cov for i in range(s, e))})
        for s, e, kind in survivors:
            rows.append({"kind": kind, "role": "survivor", "hit": any(i in cov for i in range(s, e))})
    df = pd.DataFrame(rows, columns=["kind", "role", "hit"])
    out = df.groupby(["role", "kind"]).agg(n=("hit", "size"), hits=("hit", "sum")).reset_index()
    ids_ = df[df["role"] == "identifier"]
    total = pd.DataFrame([{"role": "identifier", "kind": "all", "n": len(ids_), "hits": int(ids_["hit"].sum())}])
    out = pd.concat([out, total], ignore_index=True)
    is_id = out["role"] == "identifier"
    out["removed"] = out["hits"].where(is_id)
    out["recall"] = (out["hits"] / out["n"]).where(is_id)
    out["redacted"] = out["hits"].where(~is_id)
    out["over_redaction"] = (out["hits"] / out["n"]).where(~is_id)
    return out[["kind", "role", "n", "removed", "recall", "redacted", "over_redaction"]]
