"""The report page: every section of ``index.html`` and :func:`render`, which puts them
together (contents, the paper's claims vs this run, what each knob did, verdicts with their
uncertainty, summary figures, notebooks and times, then each notebook's own page)."""

from __future__ import annotations

import html
import math
import re
from datetime import datetime, timezone
from urllib.parse import quote

from awbench.apps.report.claims import CHECK_TOL, CLAIMS, MISSING, MISSING_RE
from awbench.apps.report.html import (
    CSS,
    figure_html,
    figure_title,
    fmt_value,
    html_table,
    record_columns,
    render_markdown,
    round_table_numbers,
    sanitize_html,
    verdict_span,
)
from awbench.apps.report.knobs import (
    convergence_rows,
    knob_rows,
    pooled_verdicts,
    profile_of,
    run_facts,
    summary_figures,
    verdict_tables,
)
from awbench.apps.report.pages import Block, NotebookPage
from awbench.experiments import record_names as rn
from awbench.formatting import number, signed_percent

SMOKE_NOTE = (
    '<p class="smoke" role="note"><b>Smoke run: these numbers check the machinery, they are not '
    "results.</b> The smoke profile trains tiny networks, 2 seeds and 2 values per knob, to show "
    "that every notebook runs end to end; its verdicts are shown in grey and mean nothing. For "
    "results run the quick profile (<code>make reproduce</code>) or the paper profile.</p>"
)
NAV_TITLE = 80  # characters of a figure title in the contents, cut at a word
_RECORDS_HEADING = re.compile(r"^\s*#+\s*(?:[\w.]+\s*·\s*)?Recorded numbers\b", re.IGNORECASE)


def anchor(name: str) -> str:
    """``name`` (a notebook's stem, a figure's anchor) as an id and URL fragment: letters,
    digits, ``_`` and ``-`` only (a notebook file may be named anything)."""
    return re.sub(r"[^\w-]", "-", str(name), flags=re.ASCII)


def _seconds(secs) -> str:
    ok = isinstance(secs, (int, float)) and not isinstance(secs, bool) and math.isfinite(secs)
    return f"{secs:.0f} s" if ok and secs else "n/a"


def _short(title: str, limit: int = NAV_TITLE) -> str:
    """``title`` cut at the last word boundary before ``limit`` characters, with an ellipsis."""
    title = " ".join(title.split())
    if len(title) <= limit:
        return title
    cut = title[: limit + 1].rsplit(" ", 1)[0].rstrip(" ,;:·-–(")
    return (cut or title[:limit]) + "…"


def _nav(pages: list[NotebookPage], explore: bool = True) -> str:
    """The table of contents: the report's own sections, then each notebook and its figures."""
    nav = [
        "<nav><b>Contents</b><ol>",
        '<li><a href="#claims">The paper\'s claims vs this run</a></li>',
        '<li><a href="#verdicts">Verdicts with their uncertainty</a></li>',
        (
            '<li><a href="#knobs">What each knob did</a><ol><li><a href="#summary-estimate">Estimated against '
            'actual gap, every run</a></li><li><a href="#summary-knobs">Relative change per knob</a></li></ol></li>'
        ),
        *(['<li><a href="#explore">Explore the knob grid (sliders)</a></li>'] if explore else []),
        '<li><a href="#timing">Notebooks and times</a></li>',
    ]
    for p in pages:
        figs = [b for b in p.blocks if b.kind == "figure"]
        titles = [figure_title(b.content) or b.title for b in figs]
        sub = "".join(
            f'<li><a href="#{anchor(b.anchor)}" title="{html.escape(t)}">{html.escape(_short(t))}</a></li>'
            for b, t in zip(figs, titles)
        )
        nav.append(
            f'<li><a href="#{anchor(p.stem)}">{html.escape(p.title)}</a>'
            + (f"<ol>{sub}</ol>" if sub else "")
            + "</li>"
        )
    nav.append("</ol></nav>")
    return "".join(nav)


def _claims_section(pages: list[NotebookPage], pooled: dict, claims, grey: bool) -> list[str]:
    """The paper's claims next to what this run measured (missing records in red) and the
    verdict of each (``claims``: the claims table, or None without knob sweeps; ``grey``: no
    verdict colours, for a smoke run)."""
    by_stem = {p.stem: p for p in pages}
    verdicts = {} if claims is None else dict(zip(claims["id"], claims["verdict"]))
    claim_rows = []
    for c in CLAIMS:
        page = by_stem.get(c.notebook)
        records = {} if page is None else {**page.records, **pooled}
        if page is None:
            measured = '<span class="muted">notebook not run</span>'
        elif page.error:
            measured = f'<span class="fail">notebook failed: {html.escape(page.error)}</span>'
        else:
            measured = MISSING_RE.sub(
                lambda m: f'<span class="fail">{m.group(0)}</span>',
                html.escape(c.measured(records)),
            )
        ran = page is not None and not page.error
        claim_rows.append(
            [
                html.escape(c.claim),
                f'<a href="#{anchor(c.notebook)}">{html.escape(c.notebook)}</a>',
                measured,
                _claim_verdict(c, records if ran else None, verdicts, grey),
            ]
        )
    return [
        '<h2 id="claims">The paper\'s claims vs this run</h2>',
        (
            '<p class="muted">Claims as stated in the paper (Feng, Zhang &amp; Tu, 2023), in our words in docs/science.md; the right columns are '
            "computed from the numbers the notebooks recorded in this run.</p>"
        ),
        html_table(
            ["the paper's claim", "notebook", "measured in this run", "verdict"], claim_rows
        ),
        (
            '<p class="muted">Verdict: that of each claim\'s own test in '
            '<a href="#verdicts">Verdicts with their uncertainty</a> (supported, contradicted '
            f"or inconclusive); check: an identity, which passes when its error is below "
            f"{CHECK_TOL:g} (rounding); —: no test of this row.</p>"
        ),
    ]


def _claim_verdict(c, records: dict | None, verdicts: dict, grey: bool) -> str:
    """The verdict cell of one row of the first table (``records`` None: its notebook did
    not run)."""
    if c.check is not None:
        passed = None if records is None else c.check(records)
        if passed is None:
            return 'check: <span class="muted">not measured</span>'
        return "check: " + (
            '<span class="ok">passes</span>' if passed else '<span class="fail">fails</span>'
        )
    if not c.verdicts:
        return "—"
    if not verdicts:
        return '<span class="muted">not judged: no knob sweep ran</span>'
    return (
        '<div class="verdicts">'
        + "".join(
            f"<div>{verdict_span(verdicts.get(cid, 'not judged'), grey)}: {html.escape(label)}</div>"
            for cid, label in c.verdicts
        )
        + "</div>"
    )


def _knobs_section(pages: list[NotebookPage], pooled: dict) -> list[str]:
    """What each knob did: relative changes from the smallest to the largest value swept."""
    rows = knob_rows(pages)
    for r in rows:
        r["verdict"] = pooled.get(rn.knob_record(r["knob"], rn.VERDICT), r["verdict"])
    out = ['<h2 id="knobs">What each knob did</h2>']
    if not rows:
        return out + ["<p>No knob sweep was run.</p>"]
    out.append(
        '<p class="muted">Relative change of the mean over seeds from the smallest to the largest value '
        "swept, converged runs only. The curvature part is sharpness / size (Σσg²/Σσw²): "
        "sharpness carries size in it (σg,n is curvature times the spread of the dual weights "
        "along n), so the ratio is the part of sharpness a knob moves beyond size. The verdicts "
        "are those of the table below, word for word the notebooks' own (each cell corrected "
        "for the profile's whole table).</p>"
    )
    out.append(
        html_table(
            [
                "knob",
                "values",
                "sharpness Σσg²",
                "size Σσw²",
                "curvature Σσg²/Σσw²",
                "‖W‖",
                "real gap",
                "gap (nats)",
                "verdict",
            ],
            [
                [
                    f"<code>{html.escape(str(r['knob']))}</code>",
                    html.escape(r["values"]),
                    signed_percent(r["sharpness"]),
                    signed_percent(r["size"]),
                    signed_percent(r["curvature"]),
                    signed_percent(r["weight_norm"]),
                    signed_percent(r["real_gap"]),
                    html.escape(f"{fmt_value(r['gap_low'])} → {fmt_value(r['gap_high'])}"),
                    html.escape(str(r["verdict"])),
                ]
                for r in rows
            ],
            numeric=(2, 3, 4, 5, 6),
        )
    )
    return out


def _p_text(p: float, adjusted: float) -> str:
    """``3e-05 (0.0013)``: the raw p and, in brackets, the corrected one."""
    return f"{number(p, 2)} ({number(adjusted, 2)})"


_SOURCES = {"paper": "the paper", "hypothesis": "our hypothesis", "follow-up": "the follow-up"}


def _claims_table(claims, grey: bool = False) -> str:
    return html_table(
        ["claim", "source", "verdict", "p (Holm)", "because"],
        [
            [
                html.escape(c.text),
                _SOURCES.get(c.source, html.escape(str(c.source))),
                verdict_span(c.verdict, grey),
                html.escape(_p_text(c.p, c.p_holm)),
                html.escape(str(c.because)),
            ]
            for c in claims.itertuples()
        ],
    )


def _cells_table(table) -> str:
    from awbench.experiments.verdicts import change_text

    return html_table(
        [
            "knob",
            "quantity",
            "verdict",
            "change first → last [95 %]",
            "p (adjusted)",
            "runs",
            "seeds",
            "left out",
        ],
        [
            [
                f"<code>{html.escape(str(r.knob))}</code>",
                html.escape(str(r.quantity)),
                html.escape(r.verdict),
                html.escape(change_text(r)),
                html.escape(_p_text(r.p_trend, r.p_trend_adj)),
                html.escape(str(r.n_runs)),
                html.escape(str(r.n_seeds)),
                html.escape(str(r.left_out) or "0"),
            ]
            for r in table.itertuples()
        ],
        numeric=(4, 5, 6),
    )


def _verdict_section(table, claims, pages: list[NotebookPage], grey: bool) -> list[str]:
    from awbench.experiments.verdicts import RULE

    out = ['<h2 id="verdicts">Verdicts with their uncertainty</h2>']
    if table is None:
        return out + ["<p>No knob sweep was run.</p>"]
    out.append(
        '<p class="muted">Only networks that met the stopping rule count (see '
        '<a href="#convergence">convergence</a>). The claims are the confirmatory family: one '
        f"test each, Holm over all {len(claims)} claims (one without evidence here counts as "
        "p = 1); they separate the paper's own statements, those of its follow-up on SGD noise "
        "(Zhang, Yang & Tu 2026) and our per-knob hypotheses "
        "(docs/science.md#7-claims-and-hypotheses). The knob × quantity table after them is "
        f"descriptive: each cell is corrected for the {int(table.attrs.get('family', len(table)))} "
        "cells of the profile's table (Bonferroni), and its change is within seeds, first → "
        "last value, with a 95 % t-interval.</p>"
        f'<details><summary>The verdict rule</summary><p class="muted">{html.escape(RULE)}</p></details>'
    )
    out.append(_claims_table(claims, grey))
    out.append(_cells_table(table))
    out.append('<h3 id="convergence">Convergence</h3>')
    out.append(
        '<p class="muted">Runs per knob and how many met the stopping rule. Values with no '
        "converged run are listed and left out of their verdict. The quick profile sweeps three "
        "values per knob to fit <code>make reproduce</code> in 15 minutes; the last column lists "
        "the paper's values (scaled to the digits) it leaves out, which the paper profile runs "
        "(docs/science.md#6-sweeps).</p>"
    )
    out.append(
        html_table(
            [
                "knob",
                "runs",
                "converged",
                "left out (status)",
                "values without a converged run",
                "paper's values not run in this profile",
            ],
            [[sanitize_html(cell) for cell in row] for row in convergence_rows(pages)],
            numeric=(1, 2),
        )
    )
    return out


def _summary_section(pages: list[NotebookPage]) -> list[str]:
    """The figures across notebooks (estimated against actual gap, change per knob)."""
    return [
        f'<div class="figure" id="{name}">{figure_html(fig, name + "-plot")}</div>'
        for name, title, fig in summary_figures(pages)
    ]


def _timing_section(pages: list[NotebookPage], timings: dict, failures: dict) -> list[str]:
    """Each notebook's status, time, figures and records (missing records in red)."""
    t_rows = []
    for p in pages:
        secs = timings.get(p.stem, p.seconds)
        status = (
            f'<span class="fail">failed: {html.escape(failures.get(p.stem) or p.error)}</span>'
            if (p.stem in failures or p.error)
            else '<span class="ok">ok</span>'
        )
        n_f = sum(b.kind == "figure" for b in p.blocks)
        t_rows.append(
            [
                f'<a href="#{anchor(p.stem)}">{html.escape(p.stem)}</a>',
                status,
                _seconds(secs),
                str(n_f),
                str(len(p.records))
                + "".join(
                    f'<br><span class="fail">{MISSING}{html.escape(n)}</span>'
                    for n in ([] if p.error else rn.missing(p.stem, p.records))
                ),
                f'<a href="../notebooks/{quote(p.path.name)}">{html.escape(p.path.name)}</a>',
            ]
        )
    return [
        '<h2 id="timing">Notebooks and times</h2>',
        html_table(
            ["notebook", "status", "time", "figures", "records", "executed notebook"],
            t_rows,
            numeric=(2, 3, 4),
        ),
    ]


def _block_html(b: Block) -> str | None:
    """One block of a notebook page as HTML (None for a kind the report does not show)."""
    if b.kind == "markdown":
        return f"<div>{render_markdown(b.content)}</div>"
    if b.kind == "takeaway":
        return f'<div class="takeaway">{render_markdown(b.content)}</div>'
    if b.kind == "figure":
        div = anchor(b.anchor)
        return f'<div class="figure" id="{div}">{figure_html(b.content, div + "-plot")}</div>'
    if b.kind == "html":
        return f'<div class="table">{sanitize_html(round_table_numbers(b.content))}</div>'
    if b.kind == "text":
        return f"<pre>{html.escape(b.content)}</pre>"
    if b.kind == "error":
        return f'<pre class="error">{html.escape(b.content)}</pre>'
    return None


def _notebook_section(p: NotebookPage) -> list[str]:
    """One notebook's page: its papermill parameters, blocks and recorded numbers."""
    out = [f'<section class="nb" id="{anchor(p.stem)}">']
    if p.parameters:
        params = ", ".join(
            f"<code>{html.escape(k)}={html.escape(repr(v))}</code>" for k, v in p.parameters.items()
        )
        out.append(f'<p class="params muted">papermill parameters: {params}</p>')
    out.extend(h for h in map(_block_html, p.blocks) if h is not None)
    if p.records:
        # The notebooks end in a "Recorded numbers" heading of their own: no second one.
        markdown = [b for b in p.blocks if b.kind == "markdown"]
        if not (markdown and _RECORDS_HEADING.match(markdown[-1].content)):
            out.append("<h3>Recorded numbers</h3>")
        tables = {k: record_columns(k, v) for k, v in p.records.items()}
        out.append(
            html_table(
                ["name", "value"],
                [
                    [f"<code>{html.escape(k)}</code>", html.escape(fmt_value(v))]
                    for k, v in p.records.items()
                    if tables[k] is None
                ],
                numeric=(1,),
            )
        )
        out.extend(t for t in tables.values() if t is not None)
    out.append("</section>")
    return out


def render(
    pages: list[NotebookPage],
    profile: str = "",
    timings: dict | None = None,
    failures: dict | None = None,
    total_seconds: float | None = None,
    explore: bool = True,
) -> str:
    """The whole report as one HTML string (plotly.js inlined once); ``explore``: with the
    sliders over the shipped knob grid (:mod:`awbench.apps.report.sliders`)."""
    from plotly.offline import get_plotlyjs

    from awbench.apps.report.sliders import explore_section

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_figs = sum(b.kind == "figure" for p in pages for b in p.blocks)
    verdicts, claims = verdict_tables(pages)
    smoke = (profile or profile_of(pages)) == "smoke"
    # One verdict per knob in the whole report: the pooled table's (Holm over every knob and
    # quantity) replaces the verdict each notebook recorded under its own, smaller family.
    pooled = pooled_verdicts(verdicts, pages)
    body = [
        *_claims_section(pages, pooled, claims, smoke),
        *_knobs_section(pages, pooled),
        *_verdict_section(verdicts, claims, pages, smoke),
        *_summary_section(pages),
        *(explore_section() if explore else []),
        *_timing_section(pages, timings or {}, failures or {}),
    ]
    for p in pages:
        body.extend(_notebook_section(p))

    total = f"; total {total_seconds / 60:.1f} min" if total_seconds else ""
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<title>awbench report: the activity-weight duality</title>"
        f"<style>{CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        "<header><h1>awbench: the activity–weight duality, reproduced</h1>"
        f"{SMOKE_NOTE if smoke else ''}"
        "<p>Feng, Zhang &amp; Tu, “Activity–weight duality in feed-forward neural networks reveals two "
        "co-determinants for generalization”, Nature Machine Intelligence 5, 908–918 (2023).</p>"
        f"<p>{len(pages)} notebooks, {n_figs} figures{total}; "
        f"built {stamp}.</p><p class=facts>{sanitize_html(run_facts(pages, profile))}</p></header><main>{_nav(pages, explore)}<article>{''.join(body)}</article></main></body></html>"
    )
