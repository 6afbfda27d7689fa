"""HTML building blocks of the report: its style sheet, Markdown, tables, plotly figures and
number cells."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;line-height:1.5}
header{background:#1f3b5a;color:#fff;padding:18px 32px}header h1{margin:0 0 4px 0;font-size:1.6em}
header p{margin:2px 0;opacity:.9}main{display:flex}nav{position:sticky;top:0;align-self:flex-start;
width:300px;max-height:100vh;overflow:auto;padding:16px;border-right:1px solid #ddd;font-size:.88em;
box-sizing:border-box}nav ol{padding-left:18px}nav li{margin:2px 0}nav a{color:#1f3b5a;text-decoration:none}
article{flex:1;padding:8px 32px 64px 32px;max-width:1200px;min-width:0}
section.nb{border-top:3px solid #1f3b5a;margin-top:40px}table{border-collapse:collapse;margin:10px 0;
font-size:.9em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.figure{margin:12px 0 4px 0;border:1px solid #eee}.takeaway{background:#f6f9fc;border-left:4px solid #1f77b4;
padding:2px 12px;margin:6px 0 18px 0}pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:.85em}
pre.error{background:#fff0f0;border-left:4px solid #d62728}.ok{color:#2ca02c}.fail{color:#d62728;font-weight:bold}
.params code{font-size:.85em}.muted{color:#777;font-size:.9em}
"""


def _render_markdown(text: str) -> str:
    try:
        import mistune

        return mistune.html(text)
    except ImportError:  # pragma: no cover - mistune comes with nbconvert / jupyterlab
        return "<p>" + html.escape(text).replace("\n\n", "</p><p>") + "</p>"


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) and (v == 0 or 1e-3 <= abs(v) < 1e5) else f"{v:.3e}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def _table(headers: list[str], rows: Iterable[list[str]], numeric: Iterable[int] = ()) -> str:
    numeric = set(numeric)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(fig: dict, div_id: str) -> str:
    import plotly.io as pio

    # A figure without a layout height would take the height of its container (nothing
    # sensible in a long page): give it plotly's usual 480 px, or its own height.
    height = (fig.get("layout") or {}).get("height") or 480
    return pio.to_html(
        fig,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        default_height=f"{int(height)}px",
        default_width="100%",
        config={"displaylogo": False, "responsive": True},
        validate=False,
    )


_VERDICT_CLASS = {"supported": "ok", "contradicted": "fail", "inconclusive": "muted"}


def _pct_cell(v: Any) -> str:
    return f"{100 * v:+.0f} %" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"
