"""The CONSORT 2010 flow of participants: counts from tidy frames, and the diagram as SVG.

:func:`flow_counts` counts every box of the diagram from three frames (screening, participants,
assessments); :func:`flow_svg` draws them with the CONSORT layout (enrolment, allocation,
follow-up, analysis; one column per arm). Every count sits in an element carrying ``data-count``
(``assessed``, ``excluded``, ``randomised``, ``arm:<label>:allocated`` …) so tools can read the
diagram back.

Examples
--------
>>> import pandas as pd
>>> screening = pd.DataFrame({"outcome": ["enrolled"] * 4 + ["not_eligible", "declined"],
...                           "reason": [None] * 4 + ["age under 18", "no time"]})
>>> people = pd.DataFrame({"participant": list("abcd"), "arm": ["Peer", "Peer", "Usual", "Usual"],
...                        "status": ["active", "withdrawn", "active", "lost_to_follow_up"],
...                        "status_reason": [None, "moved away", None, None], "status_days": [None, 20, None, 40]})
>>> assessed = pd.DataFrame({"participant": list("abcd") + ["a", "c"],
...                          "wave": ["baseline"] * 4 + ["m6", "m6"]})
>>> flow = flow_counts(screening, people, assessed, waves=[("baseline", 0), ("m6", 182)], primary_wave="m6")
>>> flow["assessed"], flow["excluded"], flow["randomised"]
(6, 2, 4)
>>> [(a["arm"], a["allocated"], a["withdrew"], a["lost"], a["analysed"]) for a in flow["arms"]]
[('Peer', 2, 1, 0, 1), ('Usual', 2, 0, 1, 1)]
>>> flow_svg(flow).startswith("<svg")
True
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

import pandas as pd

__all__ = ["flow_counts", "flow_svg", "EXCLUSION_LABELS"]

#: How the diagram names the screening outcomes that exclude a person before randomisation.
EXCLUSION_LABELS = {
    "not_eligible": "Not meeting inclusion criteria",
    "declined": "Declined to participate",
    "other": "Other reasons",
}


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and pd.isna(v)) or (isinstance(v, str) and not v.strip())


def _reasons(values: Sequence[Any], unstated: str = "reason not recorded") -> dict[str, int]:
    return dict(Counter(unstated if _blank(v) else str(v).strip() for v in values).most_common())


def flow_counts(
    screening: pd.DataFrame | None,
    people: pd.DataFrame,
    assessed: pd.DataFrame,
    *,
    waves: Sequence[tuple[str, int]],
    primary_wave: str | None = None,
    baseline_wave: str | None = None,
    participant_flow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every number of the CONSORT flow diagram.

    Parameters
    ----------
    screening : DataFrame or None
        The screening log: ``outcome`` (enrolled | not_eligible | declined | other) and ``reason``;
        None when no log was recorded (the diagram then starts at randomisation).
    people : DataFrame
        One row per allocated participant: ``participant``, ``arm`` (label), ``status`` (active |
        withdrawn | lost_to_follow_up | completed), ``status_reason``, ``status_days``; optional
        ``received`` (bool, NaN = unknown) with ``not_received_reason``, ``discontinued`` (bool)
        with ``discontinued_reason``, ``due_offset`` (largest wave offset due, as in the long frame).
    assessed : DataFrame
        ``participant``, ``wave``: the waves at which a participant has at least one score.
    waves : sequence of (code, offset in days)
        The study's waves in order.
    primary_wave, baseline_wave : str, optional
        The primary analysis compares ``primary_wave`` adjusted for ``baseline_wave`` (defaults:
        the last and the first wave); a participant is analysed with both.
    participant_flow : dict, optional
        The result of :func:`analysis.flow.participant_flow` for the same participants (arms as in
        ``people``, which then lists only those whose data may be used). When given, allocation
        counts, discontinued intervention and the follow-up of every wave (withdrew, lost to
        follow-up, consent for use of data withdrawn, missed, not yet due, each with reasons) come
        from it, and withdrawal of consent for data is a reason for exclusion from analysis.

    Returns
    -------
    dict
        ``assessed`` (None without a screening log), ``excluded``, ``excluded_by`` (outcome ->
        {``n``, ``reasons``}), ``randomised``, ``unscreened`` (allocated participants without a
        screening entry), ``primary_wave``, and ``arms``: one dict per arm with ``allocated``,
        ``received``/``not_received`` (None when unknown) and ``not_received_reasons``, ``lost``,
        ``withdrew``, ``discontinued`` (None when unknown), their ``*_reasons``, ``waves`` (code,
        ``due``: window closed, ``assessed``: of those due, ``early``: assessed before their window
        closed, ``left``: of those due, withdrawn or lost before the wave), ``analysed``,
        ``excluded_analysis`` and ``excluded_analysis_reasons``; with ``participant_flow`` each
        arm also holds ``follow_up``: its per-wave buckets.
    """
    codes = [w for w, _ in waves]
    primary = primary_wave or (codes[-1] if codes else None)
    base = baseline_wave or (codes[0] if codes else None)
    offsets = dict(waves)
    done = {(p, w) for p, w in zip(assessed["participant"], assessed["wave"], strict=True)}
    out: dict[str, Any] = {"primary_wave": primary, "baseline_wave": base}
    linked = 0
    if screening is not None and len(screening):
        excl = screening[screening["outcome"] != "enrolled"]
        out["excluded"] = len(excl)
        out["excluded_by"] = {
            k: {"n": int((excl["outcome"] == k).sum()), "reasons": _reasons(excl.loc[excl["outcome"] == k, "reason"])}
            for k in EXCLUSION_LABELS
        }
        linked = int((screening["outcome"] == "enrolled").sum())
        out["unscreened"] = max(len(people) - linked, 0)
        out["assessed"] = len(excl) + len(people)
    else:
        out.update(assessed=None, excluded=None, excluded_by=None, unscreened=len(people))
    by_arm = {str(a["arm"]): a for a in participant_flow["arms"]} if participant_flow else {}
    if participant_flow is not None:
        allocated = sum(a["allocated"] for a in participant_flow["arms"])
        out["randomised"] = allocated
        if out["assessed"] is not None:
            out["assessed"] = out["excluded"] + allocated
            out["unscreened"] = max(allocated - linked, 0)
        out["voided"] = participant_flow.get("voided", 0)
    else:
        out["randomised"] = len(people)
    groups = dict(list(people.groupby("arm", sort=False)))
    names = list(dict.fromkeys([*map(str, groups), *by_arm]))
    arms = []
    for arm in names:
        grp = groups.get(arm, people.iloc[0:0])
        pf = by_arm.get(arm)
        a: dict[str, Any] = {"arm": str(arm), "allocated": pf["allocated"] if pf else len(grp)}
        if "received" in grp and grp["received"].notna().any():
            rec = grp["received"].astype("boolean")
            a["received"] = int((rec == True).sum())  # noqa: E712 - NA stays out of both counts
            a["not_received"] = int((rec == False).sum())  # noqa: E712
            a["unknown_received"] = int(rec.isna().sum())
            a["not_received_reasons"] = _reasons(grp.loc[rec == False, "not_received_reason"])  # noqa: E712
        else:
            a.update(received=None, not_received=None, unknown_received=len(grp), not_received_reasons={})
        lost = grp[grp["status"] == "lost_to_follow_up"]
        wd = grp[grp["status"] == "withdrawn"]
        a["lost"], a["lost_reasons"] = len(lost), _reasons(lost["status_reason"])
        a["withdrew"], a["withdrew_reasons"] = len(wd), _reasons(wd["status_reason"])
        if pf is not None:
            a["discontinued"] = pf["discontinued_intervention"]["n"]
            a["discontinued_reasons"] = pf["discontinued_intervention"]["reasons"]
            a["follow_up"] = pf["waves"]
        elif "discontinued" in grp and grp["discontinued"].notna().any():
            dis = grp[grp["discontinued"].fillna(False).astype(bool)]
            a["discontinued"], a["discontinued_reasons"] = len(dis), _reasons(dis["discontinued_reason"])
        else:
            a["discontinued"], a["discontinued_reasons"] = None, {}
        per_wave = []
        for w in codes:
            due = grp if "due_offset" not in grp else grp[grp["due_offset"].fillna(-1) >= offsets[w]]
            done_all = sum((p, w) in done for p in grp["participant"])
            done_due = sum((p, w) in done for p in due["participant"])
            gone = due["status"].isin(("withdrawn", "lost_to_follow_up")) & (
                pd.to_numeric(due["status_days"], errors="coerce") < offsets[w]
            )
            per_wave.append(
                {
                    "wave": w,
                    "due": len(due),
                    "assessed": done_due,
                    "early": done_all - done_due,
                    "left": int(gone.sum()),
                }
            )
        a["waves"] = per_wave
        why: list[str | None] = []
        for p, due_off in zip(grp["participant"], grp.get("due_offset", pd.Series([None] * len(grp))), strict=True):
            if primary is None:
                why.append("no waves")
            elif (p, base) not in done:
                why.append(f"no {base} score")
            elif (p, primary) in done:
                why.append(None)
            elif due_off is not None and not pd.isna(due_off) and due_off < offsets[primary]:
                why.append(f"{primary} not yet due")
            else:
                why.append(f"no {primary} score")
        consent = pf["waves"][0]["data_withdrawn"]["n"] if pf and pf["waves"] else 0
        why += ["consent for use of data withdrawn"] * consent
        a["analysed"] = sum(r is None for r in why)
        a["excluded_analysis"] = len(why) - a["analysed"]
        a["excluded_analysis_reasons"] = dict(Counter(r for r in why if r is not None).most_common())
        arms.append(a)
    out["arms"] = arms
    return out


# ---- drawing -----------------------------------------------------------------------------------

_W = 250  # box width
_GAP = 30  # between arm columns
_LINE = 15  # line height
_CHARS = 40  # characters per wrapped line at 11 px
_LEFT = 110  # the stage labels' column

Line = tuple[str, str | None, int]  # text, data-count key, indent


_CONT = "+"  # the key of a wrapped line's continuation


def _lines(items: list[Line]) -> list[Line]:
    """Wrap (text, data-count key, indent) lines to the box width."""
    out: list[Line] = []
    for text, key, indent in items:
        parts = textwrap.wrap(text, _CHARS - 3 * indent) or [""]
        out.append((parts[0], key, indent))
        out.extend((p, _CONT, indent + 1) for p in parts[1:])
    return out


def _box(x: float, y: float, lines: list[Line], width: float = _W) -> tuple[str, float]:
    """A box of lines; a wrapped line stays one ``<text>`` (continuations are ``<tspan>``), so that
    its ``data-count`` element holds the whole sentence."""
    h = 12 + _LINE * len(lines)
    svg = [f'<rect x="{x}" y="{y}" width="{width}" height="{h}" rx="3" class="box"/>']
    for i, (text, key, indent) in enumerate(lines):
        tx = x + 8 + 12 * indent
        if key == _CONT:
            svg[-1] = svg[-1].removesuffix("</text>") + f'<tspan x="{tx}" dy="{_LINE}">{escape(text)}</tspan></text>'
            continue
        attr = f' data-count="{escape(key, {chr(34): "&quot;"})}"' if key else ""
        svg.append(f'<text x="{tx}" y="{y + 18 + _LINE * i}"{attr}>{escape(text)}</text>')
    return "\n".join(svg), h


def _n(v: int | None) -> str:
    return "not recorded" if v is None else str(v)


def _reason_lines(reasons: dict[str, int], indent: int = 1, limit: int = 6) -> list[Line]:
    items = list(reasons.items())
    out: list[Line] = [(f"{r} (n={k})", None, indent) for r, k in items[:limit]]
    if len(items) > limit:
        out.append((f"{len(items) - limit} other reasons (n={sum(k for _, k in items[limit:])})", None, indent))
    return out


def _status_lines(a: dict[str, Any], k: str) -> list[Line]:
    """The follow-up box from participant status (without the participant flow)."""
    fl: list[Line] = [(f"Lost to follow-up (n={a['lost']})", f"{k}:lost", 0)]
    fl += _reason_lines(a["lost_reasons"])
    fl.append((f"Withdrew (n={a['withdrew']})", f"{k}:withdrew", 0))
    fl += _reason_lines(a["withdrew_reasons"])
    fl.append(
        (
            f"Discontinued intervention (n={_n(a['discontinued'])})".replace(" (n=not recorded)", ": not recorded"),
            f"{k}:discontinued",
            0,
        )
    )
    fl += _reason_lines(a["discontinued_reasons"])
    for w in a["waves"]:
        early = f" (+{w['early']} not yet due)" if w.get("early") else ""
        left = f"; {w['left']} had left the study" if w.get("left") else ""
        fl.append((f"{w['wave']}: assessed {w['assessed']} of {w['due']} due{early}{left}", f"{k}:wave:{w['wave']}", 0))
    return fl


#: The follow-up buckets of :func:`analysis.flow.participant_flow` that carry reasons, as the diagram names them.
FOLLOW_UP_LABELS = {
    "withdrew": "Withdrew from follow-up",
    "lost_to_follow_up": "Lost to follow-up",
    "data_withdrawn": "Withdrew consent for use of data",
}


def _follow_up_lines(a: dict[str, Any], k: str) -> list[Line]:
    """The follow-up box from the participant flow: discontinued intervention, then every wave's
    buckets (they add up to the arm's allocated participants)."""
    fl: list[Line] = [
        (
            f"Discontinued intervention (n={_n(a['discontinued'])})".replace(" (n=not recorded)", ": not recorded"),
            f"{k}:discontinued",
            0,
        )
    ]
    fl += _reason_lines(a["discontinued_reasons"])
    for w in a["follow_up"]:
        wk = f"{k}:wave:{w['wave']}"
        fl.append((f"{w['wave']} (day {w['offset_days']}): assessed (n={w['responded']})", wk, 0))
        for bucket, label in FOLLOW_UP_LABELS.items():
            if bucket == "data_withdrawn" and not w[bucket]["n"]:
                continue
            fl.append((f"{label} (n={w[bucket]['n']})", f"{wk}:{bucket}", 1))
            fl += _reason_lines(w[bucket]["reasons"], indent=2)
        fl.append((f"Missed the wave (n={w['missed']})", f"{wk}:missed", 1))
        if w["not_yet_due"]:
            fl.append((f"Not yet due (n={w['not_yet_due']})", f"{wk}:not_yet_due", 1))
    return fl


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="arrow" marker-end="url(#head)"/>'


def flow_svg(flow: dict[str, Any], title: str = "CONSORT 2010 flow diagram") -> str:
    """The flow diagram of :func:`flow_counts` as a standalone SVG string (no external reference)."""
    arms = flow["arms"] or [
        {
            "arm": "no participant allocated",
            "allocated": 0,
            "received": None,
            "not_received": None,
            "unknown_received": 0,
            "not_received_reasons": {},
            "lost": 0,
            "lost_reasons": {},
            "withdrew": 0,
            "withdrew_reasons": {},
            "discontinued": None,
            "discontinued_reasons": {},
            "waves": [],
            "analysed": 0,
            "excluded_analysis": 0,
            "excluded_analysis_reasons": {},
        }
    ]
    ncol = len(arms)
    width = _LEFT + ncol * _W + (ncol - 1) * _GAP + 20
    mid = _LEFT + (ncol * _W + (ncol - 1) * _GAP) / 2
    parts: list[str] = []
    y = 20.0
    stages: list[tuple[str, float, float]] = []
    # Enrolment.
    top = y
    if flow["assessed"] is not None:
        box, h = _box(mid - _W / 2, y, _lines([(f"Assessed for eligibility (n={flow['assessed']})", "assessed", 0)]))
        parts.append(box)
        ax = mid
        y_ex = y + h + 20
        ex_lines: list[Line] = [(f"Excluded (n={flow['excluded']})", "excluded", 0)]
        for k, label in EXCLUSION_LABELS.items():
            e = flow["excluded_by"][k]
            ex_lines.append((f"{label} (n={e['n']})", f"excluded:{k}", 1))
            ex_lines += _reason_lines(e["reasons"], indent=2, limit=4)
        ex_box, ex_h = _box(mid + 30, y_ex, _lines(ex_lines), width=min(_W + 40, width - mid - 40))
        parts.append(ex_box)
        y_r = y_ex + ex_h + 20
        parts.append(_arrow(ax, y + h, ax, y_r))
        parts.append(_arrow(ax, y_ex + 16, mid + 30, y_ex + 16))
        y = y_r
    else:
        box, h = _box(
            mid - _W / 2, y, _lines([("No screening log recorded: assessed and excluded not known", None, 0)])
        )
        parts.append(box)
        y += h + 20
        parts.append(_arrow(mid, y - 20, mid, y))
    rl: list[Line] = [(f"Randomised (n={flow['randomised']})", "randomised", 0)]
    if flow.get("unscreened") and flow["assessed"] is not None:
        rl.append((f"of whom {flow['unscreened']} without a screening entry", "unscreened", 1))
    box, h = _box(mid - _W / 2, y, _lines(rl))
    parts.append(box)
    stages.append(("Enrolment", top, y + h))
    y += h
    xs = [_LEFT + i * (_W + _GAP) for i in range(ncol)]
    # Allocation, follow-up, analysis: one column per arm, rows aligned on the tallest box.
    rows: list[tuple[str, list[list[Line]]]] = []
    alloc, follow, analysis = [], [], []
    for a in arms:
        k = f"arm:{a['arm']}"
        al: list[Line] = [(f"Allocated to {a['arm']} (n={a['allocated']})", f"{k}:allocated", 0)]
        if a["received"] is None:
            al.append(("Received allocated intervention: not recorded", f"{k}:received", 1))
        else:
            al.append((f"Received allocated intervention (n={a['received']})", f"{k}:received", 1))
            al.append((f"Did not receive allocated intervention (n={a['not_received']})", f"{k}:not_received", 1))
            al += _reason_lines(a["not_received_reasons"], indent=2)
            if a.get("unknown_received"):
                al.append((f"Not yet known (n={a['unknown_received']})", f"{k}:unknown_received", 1))
        alloc.append(_lines(al))
        fl = _follow_up_lines(a, k) if "follow_up" in a else _status_lines(a, k)
        follow.append(_lines(fl))
        an: list[Line] = [
            (f"Analysed (n={a['analysed']})", f"{k}:analysed", 0),
            (f"Excluded from analysis (n={a['excluded_analysis']})", f"{k}:excluded_analysis", 0),
        ]
        an += _reason_lines(a["excluded_analysis_reasons"])
        analysis.append(_lines(an))
    rows = [("Allocation", alloc), ("Follow-up", follow), ("Analysis", analysis)]
    # Fan out from the randomised box to each arm.
    y += 20
    for x in xs:
        parts.append(f'<polyline points="{mid},{y - 20} {mid},{y - 10} {x + _W / 2},{y - 10}" class="arrow"/>')
        parts.append(_arrow(x + _W / 2, y - 10, x + _W / 2, y))
    for i, (stage, boxes) in enumerate(rows):
        top = y
        heights = []
        for x, lines in zip(xs, boxes, strict=True):
            box, h = _box(x, y, lines)
            parts.append(box)
            heights.append(h)
        hmax = max(heights)
        stages.append((stage, top, top + hmax))
        y += hmax
        if i < len(rows) - 1:
            for x, h in zip(xs, heights, strict=True):  # from each box's own bottom
                parts.append(_arrow(x + _W / 2, top + h, x + _W / 2, y + 24))
            y += 24
    for stage, y0, y1 in stages:
        parts.append(f'<rect x="8" y="{y0}" width="{_LEFT - 24}" height="{max(y1 - y0, 20)}" rx="3" class="stage"/>')
        parts.append(f'<text x="{8 + (_LEFT - 24) / 2}" y="{(y0 + y1) / 2 + 4}" class="stagelabel">{stage}</text>')
    height = y + 20
    style = (
        "<style>.box{fill:#fff;stroke:#1f2937;stroke-width:1}.stage{fill:#dbeafe;stroke:#1e3a8a;stroke-width:1}"
        "text{font:11px 'DejaVu Sans',Arial,sans-serif;fill:#111}"
        ".stagelabel{font-weight:bold;text-anchor:middle}.arrow{stroke:#1f2937;stroke-width:1.2;fill:none}</style>"
    )
    defs = (
        '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#1f2937"/></marker></defs>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{style}{defs}\n" + "\n".join(parts) + "\n</svg>"
    )
