"""The report document: sections in, one self-contained HTML page out (inline CSS and SVG, no
script, no external reference), printable to A4.

Examples
--------
>>> doc = render_document("Trial", [Section("harms", "Harms", "<p>none</p>")], meta={"Study": "1"})
>>> doc.startswith("<!DOCTYPE html>") and 'id="harms"' in doc and "://" not in doc
True
>>> absent("no screening log recorded")
'<p class="absent">No screening log recorded.</p>'
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import pandas as pd

__all__ = ["Section", "render_document", "absent", "table_html", "table1_html", "figure_svg", "p_text"]


@dataclass(frozen=True)
class Section:
    """One section of the report: anchor ``key``, ``title``, its HTML body, and whether its data
    exist (an absent section keeps its place and says what is missing)."""

    key: str
    title: str
    body: str
    present: bool = True


def absent(message: str) -> str:
    """The sentence an absent section shows instead of its content."""
    text = message.strip()
    text = text[:1].upper() + text[1:]
    return f'<p class="absent">{escape(text)}{"" if text.endswith(".") else "."}</p>'


def p_text(p: float | None) -> str:
    """A p-value for a table: ``0.042``, ``< 0.001``; blank when missing."""
    if p is None or pd.isna(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _cell(v: Any, decimals: int) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{decimals}f}"
    return str(v)


def table_html(
    df: pd.DataFrame,
    columns: Mapping[str, str],
    *,
    decimals: int = 2,
    p_columns: Sequence[str] = (),
    caption: str | None = None,
    key: str | None = None,
) -> str:
    """``df`` as an HTML table of ``columns`` (column -> header), escaped; p-value columns print as
    :func:`p_text`. ``key`` names the table (``data-table``)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in columns.values())
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in columns:
            v = row.get(c)
            text = p_text(v) if c in p_columns else _cell(v, decimals)
            num = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(f"<td{' class=num' if num else ''}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    attr = f' data-table="{escape(key)}"' if key else ""
    return f"<table{attr}>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def table1_html(t1: pd.DataFrame, arms: Sequence[str], sizes: Mapping[str, int], caption: str = "") -> str:
    """Table 1 (see :func:`analysis.trialreport.baseline.table1`) laid out with one column per arm.

    Each cell carries ``data-cell="<variable>|<level>|<arm>"`` and each missing count
    ``data-missing="<variable>|<arm>"``, so the numbers can be read back from the page.
    """
    head = "<th>Characteristic</th>" + "".join(
        f'<th data-arm="{escape(a)}">{escape(a)}<br><span class="n">(N = {sizes.get(a, 0)})</span></th>' for a in arms
    )
    body = []
    for var, grp in t1.groupby("variable", sort=False):
        label, kind, stat = grp["label"].iloc[0], grp["kind"].iloc[0], grp["statistic"].iloc[0]
        if kind == "continuous":
            cells = "".join(
                f'<td data-cell="{escape(str(var))}||{escape(a)}">{escape(r["cell"])}</td>'
                for a in arms
                for _, r in grp[grp["arm"] == a].iterrows()
            )
            body.append(f"<tr><th scope=row>{escape(label)}, {escape(stat)}</th>{cells}</tr>")
        else:
            body.append(f'<tr class="group"><th scope=row colspan="{len(arms) + 1}">{escape(label)}, n (%)</th></tr>')
            for lev, lg in grp.groupby("level", sort=False):
                cells = "".join(
                    f'<td data-cell="{escape(str(var))}|{escape(str(lev))}|{escape(a)}">{escape(r["cell"])}</td>'
                    for a in arms
                    for _, r in lg[lg["arm"] == a].iterrows()
                )
                body.append(f'<tr><th scope=row class="level">{escape(str(lev))}</th>{cells}</tr>')
        miss = {a: int(grp.loc[grp["arm"] == a, "missing"].iloc[0]) for a in arms if (grp["arm"] == a).any()}
        if any(miss.values()):
            cells = "".join(f'<td data-missing="{escape(str(var))}|{escape(a)}">{miss.get(a, 0)}</td>' for a in arms)
            body.append(f'<tr class="missing"><th scope=row class="level">Missing</th>{cells}</tr>')
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f'<table data-table="table1">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure_svg(fig: Any, alt: str) -> str:
    """A matplotlib figure as inline SVG (text as paths, so no font is fetched), closed afterwards."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<svg ", f'<svg role="img" aria-label="{escape(alt)}" ', svg, count=1)
    return f'<figure class="plot">{svg}<figcaption>{escape(alt)}</figcaption></figure>'


_CSS = """
@page { size: A4; margin: 16mm 14mm; }
* { box-sizing: border-box; }
body { font: 14px/1.45 "DejaVu Sans", Arial, Helvetica, sans-serif; color: #111; margin: 0 auto; max-width: 1100px;
       padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; border-bottom: 2px solid #1e3a8a; padding-bottom: 3px;
  margin-top: 32px; } h3 { font-size: 16px; margin-top: 20px; }
.meta { color: #374151; margin: 0 0 16px; } .meta dt { font-weight: bold; float: left; clear: left; width: 190px; }
.meta dd { margin: 0 0 2px 200px; }
nav ol { columns: 2; } nav a { color: #1e3a8a; }
table { border-collapse: collapse; margin: 10px 0 16px; font-size: 12.5px; }
caption { text-align: left; font-weight: bold; padding-bottom: 4px; }
th, td { border-top: 1px solid #d1d5db; padding: 3px 8px; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #111; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.group th { background: #f3f4f6; } th.level { font-weight: normal; padding-left: 22px; }
.absent { color: #92400e; background: #fffbeb; border-left: 4px solid #f59e0b; padding: 6px 10px; }
.note { color: #374151; font-size: 12.5px; }
figure { margin: 10px 0; display: inline-block; vertical-align: top; width: 49%; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #374151; } .flow svg { max-width: 100%; height: auto; }
code { font-size: 12px; background: #f3f4f6; padding: 1px 3px; }
table[data-table^="realist"] td:nth-child(2), table[data-table="trajectory_matrix"] td:first-child,
table[data-table="case_matrix"] td:first-child { white-space: nowrap; }
table[data-table^="realist"], table[data-table="trajectory_matrix"], table[data-table="case_matrix"] {
  font-size: 12px; }
@media print { body { padding: 0; max-width: none; } nav { display: none; } figure { width: 49%; }
  table[data-table^="realist"], table[data-table="trajectory_matrix"], table[data-table="case_matrix"] {
    font-size: 10.5px; }
  h2 { break-after: avoid; } table, figure, .flow { break-inside: avoid; } section { break-before: auto; } }
"""


def render_document(
    title: str, sections: Sequence[Section], *, meta: Mapping[str, str] | None = None, subtitle: str = ""
) -> str:
    """The whole report as one HTML page (A4 print styles, a contents list, every section in order)."""
    meta_html = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in (meta or {}).items())
    toc = "".join(
        f'<li><a href="#{escape(s.key)}">{escape(s.title)}</a>{"" if s.present else " (no data yet)"}</li>'
        for s in sections
    )
    body = "\n".join(
        f'<section id="{escape(s.key)}" data-present="{str(s.present).lower()}"><h2>{escape(s.title)}</h2>\n'
        f"{s.body}\n</section>"
        for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        f"<header><h1>{escape(title)}</h1>"
        + (f'<p class="meta">{escape(subtitle)}</p>' if subtitle else "")
        + f'<dl class="meta">{meta_html}</dl></header>\n'
        f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>\n{body}\n</body></html>\n"
    )
