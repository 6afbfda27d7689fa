"""HTML building blocks of the report: its style sheet, Markdown, tables, plotly figures and
number cells."""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Any

from awbench.formatting import formatted, number

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
.scroll,div.table{overflow-x:auto;max-width:100%}.scroll table,div.table table{margin:6px 0}
nav a{overflow-wrap:break-word;hyphens:none}header .facts{font-size:.95em}header .fail{color:#ffb3b3}
details.records summary{cursor:pointer;color:#1f3b5a}
.explore{border:1px solid #dde3ea;border-radius:6px;padding:10px 16px;margin:12px 0;background:#fbfcfe}
.knobs{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:6px 20px;margin:6px 0}
.knobs label{display:flex;flex-direction:column;font-size:.95em}.knobs input{width:100%}
.knobs .hint{color:#777;font-size:.8em}.knobs output{font-weight:bold}
.explore .note{min-height:3em;font-size:.95em}.explore .snap{color:#b00020;font-weight:bold}
table.dataframe thead th{text-align:right}.verdicts{min-width:16em}.verdicts div{margin-bottom:3px}
header p.smoke{background:#fff4ce;color:#222;opacity:1;border-left:6px solid #b58900;padding:8px 12px;
margin:8px 0}
"""


def render_markdown(text: str) -> str:
    """Markdown to HTML with every raw HTML tag escaped: takeaways carry notebook parameters,
    which a user (or a batch grid) sets, so nothing in them may become markup or script."""
    try:
        return _markdown()(text)
    except ImportError:  # pragma: no cover - mistune comes with nbconvert / jupyterlab
        return "<p>" + html.escape(text).replace("\n\n", "</p><p>") + "</p>"


@functools.cache
def _markdown():
    import mistune

    # mistune.html's plugins, with raw HTML escaped
    return mistune.create_markdown(
        escape=True, plugins=["strikethrough", "footnotes", "table", "speedup"]
    )


TITLE_SEPARATOR = " — "
_BREAK = re.compile(r"\s*<br\s*/?>\s*", re.IGNORECASE)


def plain_title(title: str) -> str:
    """A plotly title as plain text: a line break (``title<br><sup>subtitle</sup>``) becomes
    :data:`TITLE_SEPARATOR`, other tags go, entities are decoded (the caller escapes)."""
    text = _BREAK.sub(TITLE_SEPARATOR, str(title))
    text = html.unescape(re.sub(r"<[^>]*>", "", text))
    return text.strip().removesuffix(TITLE_SEPARATOR.strip()).strip()


def figure_title(fig: dict) -> str:
    """The plain-text title of a figure dict (see :func:`plain_title`), "" without one."""
    title = (fig.get("layout") or {}).get("title") or ""
    return plain_title(title.get("text") or "" if isinstance(title, dict) else title)


# What a notebook's HTML output (a pandas table, a status line) may keep in the report: table
# and text markup with harmless attributes. Anything else is dropped (the contents of script,
# style and the like with it), text is escaped, ids go (they would clash with the report's).
_TAGS = frozenset({
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "colgroup", "col", "div",
    "span", "p", "b", "i", "em", "strong", "code", "pre", "br", "sub", "sup", "ul", "ol", "li",
    "small", "hr",
})  # fmt: skip
_VOID = frozenset({"br", "col", "hr"})
_ATTRS = frozenset({"class", "colspan", "rowspan", "align", "valign", "halign", "border", "title"})
_DROP = frozenset({"script", "style", "template", "noscript", "iframe", "object", "svg", "math"})
_SAFE_STYLE = re.compile(r"^[\w\s:;.,%#-]*$")


class _Sanitizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.dropping = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _DROP:
            self.dropping += 1
        elif tag in _TAGS and not self.dropping:
            kept = "".join(
                f' {k}="{html.escape(v or "")}"'
                for k, v in attrs
                if k in _ATTRS or (k == "style" and _SAFE_STYLE.match(v or ""))
            )
            self.out.append(f"<{tag}{kept}>")
            if tag not in _VOID:
                self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP:
            self.dropping = max(0, self.dropping - 1)
        elif tag in self.open and not self.dropping:
            while self.open:  # close what was left open inside it as well
                last = self.open.pop()
                self.out.append(f"</{last}>")
                if last == tag:
                    break

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.out.append(html.escape(data, quote=False))


def sanitize_html(fragment: str) -> str:
    """``fragment`` (a notebook's HTML output, or a cell built elsewhere) with only table and
    text markup left (:data:`_TAGS`; attributes class, colspan, rowspan, alignment, a plain
    inline style), every tag it opens closed, and all its text escaped: a computed value in it
    stays text, and nothing it holds runs or loads."""
    parser = _Sanitizer()
    parser.feed(fragment)
    parser.close()
    return "".join(parser.out) + "".join(f"</{t}>" for t in reversed(parser.open))


def fmt_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return number(v, 4) if v == 0 or 1e-3 <= abs(v) < 1e5 else formatted(v, ".3e")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {fmt_value(x)}" for k, x in v.items()) or "(none)"
    return str(v)


def record_columns(name: str, v: Any) -> str | None:
    """A record that is a table (equal-length columns, like ``<knob>.runs``) as a folded,
    scrolling table of formatted numbers; None for any other record."""
    if not (isinstance(v, dict) and v and all(isinstance(x, list) for x in v.values())):
        return None
    lengths = {len(x) for x in v.values()}
    if len(lengths) != 1:
        return None
    (n,) = lengths
    rows = [[html.escape(fmt_value(v[c][i])) for c in v] for i in range(n)]
    numeric = [j for j, c in enumerate(v) if all(_is_number(x) for x in v[c])]
    return (
        f'<details class="records"><summary><code>{html.escape(name)}</code>: {n} rows × '
        f"{len(v)} columns</summary>{html_table([str(c) for c in v], rows, numeric=numeric)}</details>"
    )


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_TD_NUMBER = re.compile(r"(<td[^>]*>)\s*(-?\d+\.\d{5,}(?:e[-+]?\d+)?|-?\d\.\d+e[-+]?\d+)\s*(</td>)")


def round_table_numbers(table_html: str) -> str:
    """A notebook's HTML table with its long decimals (pandas prints 6) cut to 4 significant
    digits; integers, text and numbers already short are left as they are."""
    return _TD_NUMBER.sub(
        lambda m: m.group(1) + fmt_value(float(m.group(2))) + m.group(3), table_html
    )


def html_table(headers: list[str], rows: Iterable[list[str]], numeric: Iterable[int] = ()) -> str:
    numeric = set(numeric)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def figure_html(fig: dict, div_id: str) -> str:
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


VERDICT_CLASS = {"supported": "ok", "contradicted": "fail", "inconclusive": "muted"}


def verdict_span(verdict: str, grey: bool = False) -> str:
    """A verdict word in its colour (green supported, red contradicted, grey otherwise); all
    grey with ``grey`` (a smoke run's verdicts, which are no results)."""
    cls = "muted" if grey else VERDICT_CLASS.get(verdict, "")
    return (
        f'<span class="{cls}">{html.escape(str(verdict))}</span>'
        if cls
        else html.escape(str(verdict))
    )
