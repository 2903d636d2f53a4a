"""HTML building blocks of the reviewer's report: styles, escaping, number format, tables.

Layer 5 (interfaces), used by :mod:`markov_migration.plots.report`. Numbers are shown
with about three significant digits (:func:`fmt`); every text is escaped (:func:`esc`).
"""

from __future__ import annotations

import base64
import html
import math

from markov_migration.plots.check_figures import figure_png

__all__ = ["CSS", "cell", "esc", "fmt", "head", "img", "interval", "row", "table"]

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #f6f7f9; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #e3e6ea; }
h3 { font-size: 1.05em; margin: 20px 0 6px; }
.sub { color: #555; margin: 0 0 16px; }
.verdict { display: inline-block; padding: 8px 14px; border-radius: 6px; font-weight: 600;
           margin: 8px 0; }
.verdict.ok { background: #e3f4e8; color: #17602f; border: 1px solid #9fd3ae; }
.verdict.bad { background: #fde8e8; color: #8a1c1c; border: 1px solid #f0a9a9; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.92em; }
th, td { border: 1px solid #dde1e6; padding: 4px 9px; text-align: right; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.l, th.l { text-align: left; }
tr.fail td { background: #fdf0f0; }
td.pass { color: #17602f; font-weight: 600; text-align: center; }
td.fail { color: #a11d1d; font-weight: 700; text-align: center; }
td.skip { color: #777; text-align: center; }
td.bad { color: #a11d1d; font-weight: 600; }
.ci { color: #666; font-size: 0.85em; white-space: nowrap; }
td.zero { color: #bbb; text-align: center; }
figure { margin: 10px 0 20px; }
figure img { max-width: 100%; border: 1px solid #e3e6ea; }
figcaption { color: #555; font-size: 0.9em; margin-top: 4px; }
pre { background: #f6f8fa; border: 1px solid #e3e6ea; padding: 10px; overflow-x: auto;
      font-size: 0.85em; }
dl.prov { display: grid; grid-template-columns: 210px 1fr; gap: 4px 12px; margin: 8px 0; }
dl.prov dt { font-weight: 600; color: #444; }
dl.prov dd { margin: 0; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.88em;
             word-break: break-all; }
.note { color: #555; font-size: 0.9em; }
footer { color: #888; font-size: 0.85em; margin-top: 40px; }
"""


def esc(value: object) -> str:
    """HTML-escape any value (quotes too)."""
    return html.escape(str(value), quote=True)


def fmt(x: float | None, digits: int = 3) -> str:
    """Format a number for tables: about 3 significant digits, trailing zeros kept."""
    if x is None or math.isnan(float(x)):
        return "–"
    x = float(x)
    ax = abs(x)
    if x == 0:
        return "0"
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 1:
        return f"{x:.{max(digits - 1 - int(math.log10(ax)), 0)}f}"
    if ax >= 0.01:
        return f"{x:.{digits}f}"
    return f"{x:.2g}"


def img(fig, alt: str, caption: str) -> str:
    """A ``<figure>`` with a matplotlib figure embedded as a base64 PNG and its caption."""
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return (
        f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def row(cells: list[str], cls: str = "") -> str:
    """A table row from rendered cells, with an optional CSS class."""
    return (
        f"<tr class='{cls}'>" + "".join(cells) + "</tr>"
        if cls
        else "<tr>" + "".join(cells) + "</tr>"
    )


def cell(text: object, cls: str = "", raw: bool = False) -> str:
    """A table cell; ``raw=True`` inserts ``text`` unescaped (already HTML)."""
    body = str(text) if raw else esc(text)
    return f"<td class='{cls}'>{body}</td>" if cls else f"<td>{body}</td>"


def head(*labels: str, left: tuple[str, ...] = ()) -> str:
    """A header row; labels in ``left`` are left-aligned."""
    cells = [f"<th class='l'>{esc(x)}</th>" if x in left else f"<th>{esc(x)}</th>" for x in labels]
    return row(cells)


def table(head: str, rows: list[str]) -> str:
    """A table from a header row and body rows."""
    return f"<table>{head}{''.join(rows)}</table>"


def interval(lo: float, hi: float, digits: int = 3) -> str:
    """A credible interval ``[lo, hi]`` in the muted interval style."""
    return f"<span class='ci'>[{fmt(lo, digits)}, {fmt(hi, digits)}]</span>"
