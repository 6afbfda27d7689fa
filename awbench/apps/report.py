"""`make reproduce`: run every notebook headless, then build one offline HTML report.

    from awbench.apps.report import reproduce
    reproduce(out="outputs", profile="quick")   # -> outputs/report/index.html

``reproduce`` executes ``notebooks/NN_*.ipynb`` in order with papermill (``AWBENCH_QUIET=1``,
the given profile) into ``OUT/notebooks/`` and calls :func:`build_report`, which collects
every figure, every computed takeaway, every table and every recorded number of the
executed notebooks into ``OUT/report/index.html``: plotly.js embedded once (no CDN, works
offline), a table of contents, the paper's claims next to what this run measured, a table of
what each knob did, and each notebook's time. A notebook that fails is shown with its error
and makes ``reproduce`` raise after the report is written.

``export_figures`` writes every figure as PNG and SVG (needs the ``export`` extra: kaleido
and a Chromium).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from awbench.experiments import record_names as rn
from awbench.experiments.records import MIME as RECORD_MIME
from awbench.experiments.records import read_records
from awbench.status import CONVERGED

PLOTLY_MIME = "application/vnd.plotly.v1+json"
NOTEBOOK_PATTERN = re.compile(r"^\d\d_.+\.ipynb$")


# --- the paper's claims, and how this run's records speak to them ------------------------


MISSING = "missing record: "
# The rendered claims table turns each of these into a red "fail" span.
_MISSING_RE = re.compile(re.escape(MISSING) + r"[\w.\-]+")


def _num(r: dict, name: str, spec: str = ".3g") -> str:
    # n/a is for a recorded value that is not a finite number; a record the notebook never
    # wrote means the notebook and the report disagree on its name, which must show.
    if name not in r:
        return MISSING + name
    v = r.get(name)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return format(v, spec)
    return "n/a"


def _pct(r: dict, name: str) -> str:
    if name not in r:
        return MISSING + name
    v = r.get(name)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return f"{100 * v:+.0f} %"
    return "n/a"


def _knob(r: dict, knob: str, label: str) -> str:
    def k(q: str) -> str:
        return rn.knob_record(knob, q)

    verdict = r.get(k(rn.VERDICT), "")
    return (
        f"{label}: sharpness {_pct(r, k(rn.SHARPNESS_CHANGE))}, size {_pct(r, k(rn.SIZE_CHANGE))}, "
        f"real gap {_pct(r, k(rn.REAL_GAP_CHANGE))}" + (f" — {verdict}" if verdict else "")
    )


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p) or "not measured in this run"


@dataclass(frozen=True)
class Claim:
    notebook: str  # stem, e.g. "01_duality"
    claim: str  # the paper's statement (docs/science.md sections 1, 3, 7)
    measured: Callable[[dict], str]  # records -> what this run measured


CLAIMS: list[Claim] = [
    Claim(
        "01_duality",
        "A change of activity is reproduced exactly by a change of weights: "
        "loss(x′, W) = loss(x, W + ΔW*) for every pair, at any layer (section 1).",
        lambda r: (
            f"worst logit error over all layers {_num(r, rn.DUALITY_ERROR, '.1e')} in float64 "
            f"({_num(r, rn.FLOAT32_LOGIT_ERROR, '.1e')} in float32)"
        ),
    ),
    Claim(
        "01_duality",
        "ΔW* is the smallest dual weight, and it is linear in W, so the dual weights' spread "
        "scales with the weight norm (section 1).",
        lambda r: (
            f"smallest norm ratio of any family member to ΔW*: {_num(r, rn.FAMILY_MIN_NORM_RATIO, '.6f')}; "
            f"ΔW*(sW) = s ΔW*(W) to {_num(r, rn.LINEARITY_DEVIATION, '.1e')}"
        ),
    ),
    Claim(
        "00_tour",
        "The generalization gap decomposes exactly as Σₙ μg μw + c σg σw over the Hessian's "
        "eigen-directions; dropping the mean term, ΔL ≈ Σ c σg σw (section 3).",
        lambda r: (
            f"identity error {_num(r, rn.IDENTITY_ERROR, '.1e')}; estimate {_num(r, rn.ESTIMATED_GAP, '.4g')} "
            f"vs exact pair gap {_num(r, rn.PAIR_GAP, '.4g')} vs real gap {_num(r, rn.REAL_GAP, '.4g')} nats"
        ),
    ),
    Claim(
        "03_gap_decomposition",
        "Each direction contributes sharpness σg × size σw; the sharp directions "
        "(top 10 by σg) carry the gap (section 3).",
        lambda r: (
            f"top-10 share of the exact gap {_num(r, rn.SHARP_SHARE, '.1%')}; σg vs λ Spearman "
            f"{_num(r, rn.SPEARMAN_SIGMA_G_LAM, '.2f')}, σg/σw vs λ {_num(r, rn.SPEARMAN_RATIO_LAM, '.2f')}; "
            f"identity error at every layer ≤ {_num(r, rn.IDENTITY_ERROR_ALL_LAYERS, '.1e')}"
        ),
    ),
    Claim(
        "03_gap_decomposition",
        "The Σ c σg σw estimate tracks the real gap across runs (figure 2).",
        lambda r: f"median relative error over seeds {_num(r, rn.SEEDS_ESTIMATE_REL_ERROR, '.1%')}",
    ),
    Claim(
        "02_hessian_and_landscape",
        "Sharpness is a property of the loss landscape: large curvature along "
        "few directions (figure 7).",
        lambda r: (
            f"top Hessian eigenvalue {_num(r, rn.LAM_MAX, '.4g')}; "
            f"trace {_num(r, rn.TRACE, '.4g')} ± {_num(r, rn.TRACE_SE, '.2g')}; "
            f"quadratic model ½λt² matches the slice curvature to "
            f"{_num(r, rn.SLICE_CURVATURE_REL_ERROR, '.1e')}"
        ),
    ),
    Claim(
        "04_sgd_batch_and_lr",
        "SGD batch size and learning rate act on the geometric factors (section 7; the "
        "directions, larger batch or smaller learning rate → sharper, are our hypotheses).",
        lambda r: _join(_knob(r, "batch_size", "batch size ↑"), _knob(r, "lr", "learning rate ↑")),
    ),
    Claim(
        "05_weight_decay_and_init_scale",
        "Weight decay acts on the factors (section 7; our hypotheses: weight decay → smaller, "
        "larger init → larger).",
        lambda r: _join(
            _knob(r, "weight_decay", "weight decay ↑"),
            _knob(r, "init_scale", "init scale ↑"),
            f"size vs weight norm: Spearman {_num(r, rn.SIZE_NORM_RHO, '.2f')}, log-log slope "
            f"{_num(r, rn.SIZE_NORM_SLOPE, '.2f')}",
        ),
    ),
    Claim(
        "06_dropout",
        "Dropout acts on one or both factors (section 7).",
        lambda r: _knob(r, "dropout", "dropout ↑"),
    ),
    Claim(
        "07_data_size_and_label_noise",
        "More data and label noise act on the factors (plausible: more data "
        "→ smaller size; label noise → both grow: our hypotheses) (section 7).",
        lambda r: _join(
            _knob(r, "n_train", "training set ↑"), _knob(r, "label_noise", "label noise ↑")
        ),
    ),
    Claim(
        "00_tour",
        "Flatter and smaller solutions generalize better: sharpness and size act together "
        "(section 7).",
        lambda r: (
            f"this run: sharpness Σσg² {_num(r, rn.SHARPNESS)}, size Σσw² {_num(r, rn.SIZE)}, "
            f"real gap {_num(r, rn.REAL_GAP, '.4g')} nats — see the knob table for how they move together"
        ),
    ),
]

KNOB_ORDER = list(rn.KNOBS)


# --- reading executed notebooks ------------------------------------------------------------


@dataclass
class Block:
    kind: str  # markdown (a cell) | takeaway (a computed markdown output) | figure | html | text | error
    content: Any
    title: str = ""
    anchor: str = ""


@dataclass
class NotebookPage:
    stem: str
    title: str
    path: Path
    blocks: list[Block] = field(default_factory=list)
    records: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    seconds: float | None = None
    error: str = ""


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _render_markdown(text: str) -> str:
    try:
        import mistune

        return mistune.html(text)
    except ImportError:  # pragma: no cover - mistune comes with nbconvert / jupyterlab
        return "<p>" + html.escape(text).replace("\n\n", "</p><p>") + "</p>"


def _figure_title(fig: dict) -> str:
    title = fig.get("layout", {}).get("title", "")
    if isinstance(title, dict):
        title = title.get("text", "")
    return re.sub(r"<[^>]+>", "", str(title))


def read_notebook(path: str | os.PathLike) -> NotebookPage:
    """Blocks (markdown, figures, tables, takeaways, errors) of one executed notebook."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    page = NotebookPage(stem=path.stem, title=path.stem, path=path)
    page.parameters = nb.get("metadata", {}).get("papermill", {}).get("parameters", {}) or {}
    page.seconds = nb.get("metadata", {}).get("papermill", {}).get("duration")
    n_fig = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = _text(cell.get("source", ""))
            if page.title == page.stem:
                m = re.match(r"\s*#\s+(.+)", src)
                if m:
                    page.title = m.group(1).strip()
            page.blocks.append(Block("markdown", src))
            continue
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "error":
                tb = "\n".join(out.get("traceback", []))
                tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)
                page.blocks.append(
                    Block("error", f"{out.get('ename')}: {out.get('evalue')}\n\n{tb}")
                )
                page.error = page.error or f"{out.get('ename')}: {out.get('evalue')}"
                continue
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                n_fig += 1
                fig = data[PLOTLY_MIME]
                if isinstance(fig, str):
                    fig = json.loads(fig)
                page.blocks.append(
                    Block(
                        "figure",
                        fig,
                        _figure_title(fig) or f"Figure {n_fig}",
                        f"{page.stem}-fig{n_fig}",
                    )
                )
            elif RECORD_MIME in data:
                continue  # collected with read_records
            elif "text/markdown" in data:
                page.blocks.append(Block("takeaway", _text(data["text/markdown"])))
            elif "text/html" in data:
                page.blocks.append(Block("html", _text(data["text/html"])))
            elif "text/plain" in data and kind == "execute_result":
                page.blocks.append(Block("text", _text(data["text/plain"])))
    page.records = read_records(nb)
    return page


# --- HTML ----------------------------------------------------------------------------------

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


def knob_rows(pages: list[NotebookPage]) -> list[dict]:
    """One row per knob found in the records: values, changes of sharpness, size, gap, verdict."""
    records: dict = {}
    for p in pages:
        records.update(p.records)
    rows = []
    found = {rn.knob_of(k, rn.SHARPNESS_CHANGE) for k in records} - {None}
    for knob in KNOB_ORDER + sorted(found - set(KNOB_ORDER)):
        if knob not in found:
            continue

        def k(q: str, knob: str = knob) -> str:
            return rn.knob_record(knob, q)

        vals = records.get(k(rn.VALUES), [])
        rows.append(
            {
                "knob": knob,
                "values": ", ".join(_fmt_value(v) for v in vals)
                if isinstance(vals, list)
                else str(vals),
                "seeds": records.get(k(rn.N_SEEDS)),
                "sharpness": records.get(k(rn.SHARPNESS_CHANGE)),
                "size": records.get(k(rn.SIZE_CHANGE)),
                "weight_norm": records.get(k(rn.WEIGHT_NORM_CHANGE)),
                "real_gap": records.get(k(rn.REAL_GAP_CHANGE)),
                "gap_low": records.get(k(rn.REAL_GAP_LOW)),
                "gap_high": records.get(k(rn.REAL_GAP_HIGH)),
                "verdict": records.get(k(rn.VERDICT), ""),
            }
        )
    return rows


def all_runs(pages: list[NotebookPage]):
    """Every run of every knob sweep, from the ``<knob>.runs`` records, as one DataFrame."""
    import pandas as pd

    frames = []
    for p in pages:
        for name, value in p.records.items():
            knob = rn.knob_of(name, rn.RUNS)
            if knob in KNOB_ORDER and isinstance(value, dict) and value.get("real_gap"):
                frame = pd.DataFrame(value)
                frame.insert(0, "knob", knob)
                frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def knob_sweeps(pages: list[NotebookPage]) -> dict:
    """``{knob: runs}`` from the ``<knob>.runs`` records, with the knob's own column, as
    :func:`awbench.experiments.verdicts.verdict_table` wants them."""
    runs = all_runs(pages)
    if runs is None:
        return {}
    out = {}
    for knob, frame in runs.groupby("knob", sort=False):
        frame = frame.drop(columns=["knob"]).rename(columns={"value": knob})
        if "status" not in frame:  # records of an older notebook: nothing says it converged
            frame["status"] = "unknown"
        out[knob] = frame.reset_index(drop=True)
    return {k: out[k] for k in KNOB_ORDER if k in out}


# The quantities the paper's DPSGD claims are about: one Holm family of three.
CLAIM_QUANTITIES = ("real_gap", "sharpness", "size")


def dpsgd_comparisons(pages: list[NotebookPage]) -> dict:
    """Paired DPSGD-minus-SSGD comparisons per quantity from notebook 09's per-seed records
    (seed pairs where both runs converged)."""
    import pandas as pd

    from awbench.experiments.verdicts import paired_comparison

    records: dict = {}
    for p in pages:
        records.update(p.records)
    pairs = records.get(rn.MULTILEARNER_PAIRS)
    if not isinstance(pairs, dict) or not pairs.get("seed"):
        return {}
    frame = pd.DataFrame(pairs)
    both = frame[(frame["status_ssgd"] == CONVERGED) & (frame["status_dpsgd"] == CONVERGED)]
    out = {}
    for q in CLAIM_QUANTITIES:
        if f"{q}_ssgd" in both:
            out[q] = paired_comparison(
                both.set_index("seed")[f"{q}_ssgd"], both.set_index("seed")[f"{q}_dpsgd"]
            )
            out[q]["n_left_out"] = int(len(frame) - len(both))
    return out


def verdict_tables(pages: list[NotebookPage]):
    """(verdict table over every knob, claims table) or (None, None) without knob sweeps."""
    from awbench.experiments.verdicts import claim_verdicts, verdict_table

    sweeps = knob_sweeps(pages)
    if not sweeps:
        return None, None
    table = verdict_table(sweeps)
    claims = claim_verdicts(table, comparisons=dpsgd_comparisons(pages) or None)
    return table, claims


def paper_values_left_out(knob: str, values_run) -> list:
    """The paper's values of ``knob`` (scaled to the digits, as the sweep presets do) that
    this run did not sweep: a quick profile runs fewer values, and the report says which."""
    from awbench.config import Config
    from awbench.experiments.grids import PAPER_VALUES, knob_values

    if knob not in PAPER_VALUES:
        return []
    run = {round(float(v), 9) for v in values_run}
    return [
        v
        for v in knob_values(knob, "paper", Config.preset("paper"))
        if round(float(v), 9) not in run
    ]


def pooled_verdicts(table) -> dict:
    """``{<knob>.verdict record name: verdict line}`` from the pooled verdict table (empty
    without knob sweeps)."""
    if table is None:
        return {}
    from awbench.viz.notebook_support import which_factor

    return {
        rn.knob_record(knob, rn.VERDICT): which_factor(rows)
        for knob, rows in table.groupby("knob", sort=False)
    }


def convergence_rows(pages: list[NotebookPage]) -> list[list[str]]:
    """Per knob: runs, converged, left out by status, values without a converged run, and the
    paper's values this profile did not run."""
    rows = []
    for knob, runs in knob_sweeps(pages).items():
        conv = runs["status"] == CONVERGED
        per_value = runs.assign(conv=conv).groupby(knob)["conv"].sum()
        empty = [_fmt_value(v) for v, n in per_value.items() if n == 0]
        other = runs.loc[~conv, "status"].value_counts()
        rows.append(
            [
                f"<code>{knob}</code>",
                str(len(runs)),
                str(int(conv.sum())),
                html.escape(", ".join(f"{k} {v}" for k, v in other.items()) or "none"),
                html.escape(", ".join(empty) or "none"),
                html.escape(
                    ", ".join(_fmt_value(v) for v in paper_values_left_out(knob, per_value.index))
                    or "none"
                ),
            ]
        )
    return rows


def summary_figures(pages: list[NotebookPage]) -> list[tuple[str, str, dict]]:
    """Figures across notebooks: estimated against actual gap for every run of every sweep
    (figure 2 of docs/science.md#9-figure-map) and the relative change each knob caused."""
    import pandas as pd

    from awbench.viz import gap_plots as gp

    out = []
    runs = all_runs(pages)
    if runs is not None and len(runs):
        fig = gp.estimated_vs_actual(
            runs,
            color="knob",
            title=f"Estimated against actual gap, every run of every sweep ({len(runs)} runs)",
        )
        out.append(("summary-estimate", fig.layout.title.text, fig.to_plotly_json()))
    rows = knob_rows(pages)
    if rows:
        eff = pd.DataFrame(
            [
                {
                    "knob": r["knob"],
                    "sharpness_change": r["sharpness"],
                    "size_change": r["size"],
                    "gap_change": r["real_gap"],
                }
                for r in rows
            ]
        ).astype({"sharpness_change": float, "size_change": float, "gap_change": float})
        fig = gp.knob_effects(eff)
        out.append(("summary-knobs", fig.layout.title.text, fig.to_plotly_json()))
    return out


def _verdict_section(table, claims, pages: list[NotebookPage]) -> list[str]:
    from awbench.experiments.verdicts import RULE

    out = ['<h2 id="verdicts">Verdicts with their uncertainty</h2>']
    if table is None:
        return out + ["<p>No knob sweep was run.</p>"]
    out.append(
        '<p class="muted">Only networks that met the stopping rule count (see '
        '<a href="#convergence">convergence</a>); the claims below separate the paper\'s own '
        "statements from our per-knob hypotheses (docs/science.md#7-claims-and-hypotheses). "
        f"{table.attrs.get('n_comparisons', len(table))} comparisons, Holm-corrected.</p>"
        f'<details><summary>The verdict rule</summary><p class="muted">{html.escape(RULE)}</p></details>'
    )
    out.append(
        _table(
            ["claim", "source", "verdict", "because"],
            [
                [
                    html.escape(c.text),
                    "the paper" if c.source == "paper" else "our hypothesis",
                    f'<span class="{_VERDICT_CLASS.get(c.verdict, "")}">{html.escape(c.verdict)}</span>',
                    html.escape(str(c.because)),
                ]
                for c in claims.itertuples()
            ],
        )
    )
    out.append(
        _table(
            [
                "knob",
                "quantity",
                "verdict",
                "Spearman ρ [95 % interval]",
                "Holm p",
                "change",
                "runs",
                "left out",
            ],
            [
                [
                    f"<code>{r.knob}</code>",
                    r.quantity,
                    html.escape(r.verdict),
                    f"{r.rho:.2f} [{r.rho_low:.2f}, {r.rho_high:.2f}]",
                    f"{r.p_monotone_holm:.3f}",
                    _pct_cell(r.change),
                    str(r.n_runs),
                    html.escape(str(r.left_out) or "0"),
                ]
                for r in table.itertuples()
            ],
            numeric=(3, 4, 5, 6),
        )
    )
    out.append('<h3 id="convergence">Convergence</h3>')
    out.append(
        '<p class="muted">Runs per knob and how many met the stopping rule. Values with no '
        "converged run are listed and left out of their verdict. The quick profile sweeps three "
        "values per knob to fit <code>make reproduce</code> in 15 minutes; the last column lists "
        "the paper's values (scaled to the digits) it leaves out, which the paper profile runs "
        "(docs/science.md#6-sweeps).</p>"
    )
    out.append(
        _table(
            [
                "knob",
                "runs",
                "converged",
                "left out (status)",
                "values without a converged run",
                "paper's values not run in this profile",
            ],
            convergence_rows(pages),
            numeric=(1, 2),
        )
    )
    return out


_VERDICT_CLASS = {"supported": "ok", "contradicted": "fail", "inconclusive": "muted"}


def _pct_cell(v: Any) -> str:
    return f"{100 * v:+.0f} %" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def render(
    pages: list[NotebookPage],
    profile: str = "",
    timings: dict | None = None,
    failures: dict | None = None,
    total_seconds: float | None = None,
) -> str:
    """The whole report as one HTML string (plotly.js inlined once)."""
    from plotly.offline import get_plotlyjs

    timings = timings or {}
    failures = failures or {}
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    by_stem = {p.stem: p for p in pages}
    n_figs = sum(b.kind == "figure" for p in pages for b in p.blocks)

    nav = [
        "<nav><b>Contents</b><ol>",
        '<li><a href="#claims">The paper\'s claims vs this run</a></li>',
        '<li><a href="#verdicts">Verdicts with their uncertainty</a></li>',
        (
            '<li><a href="#knobs">What each knob did</a><ol><li><a href="#summary-estimate">Estimated against '
            'actual gap, every run</a></li><li><a href="#summary-knobs">Relative change per knob</a></li></ol></li>'
        ),
        '<li><a href="#timing">Notebooks and times</a></li>',
    ]
    for p in pages:
        figs = [b for b in p.blocks if b.kind == "figure"]
        sub = "".join(
            f'<li><a href="#{b.anchor}">{html.escape(b.title[:80])}</a></li>' for b in figs
        )
        nav.append(
            f'<li><a href="#{p.stem}">{html.escape(p.title)}</a>'
            + (f"<ol>{sub}</ol>" if sub else "")
            + "</li>"
        )
    nav.append("</ol></nav>")

    body = []
    verdicts, claims = verdict_tables(pages)
    # One verdict per knob in the whole report: the pooled table's (Holm over every knob and
    # quantity) replaces the verdict each notebook recorded under its own, smaller family.
    pooled = pooled_verdicts(verdicts)
    claim_rows = []
    for c in CLAIMS:
        page = by_stem.get(c.notebook)
        if page is None:
            measured = '<span class="muted">notebook not run</span>'
        elif page.error:
            measured = f'<span class="fail">notebook failed: {html.escape(page.error)}</span>'
        else:
            measured = _MISSING_RE.sub(
                lambda m: f'<span class="fail">{m.group(0)}</span>',
                html.escape(c.measured({**page.records, **pooled})),
            )
        claim_rows.append(
            [html.escape(c.claim), f'<a href="#{c.notebook}">{c.notebook}</a>', measured]
        )
    body.append('<h2 id="claims">The paper\'s claims vs this run</h2>')
    body.append(
        '<p class="muted">Claims as stated in the paper (Feng, Zhang &amp; Tu, 2023), in our words in docs/science.md; the right column is '
        "computed from the numbers the notebooks recorded in this run.</p>"
    )
    body.append(_table(["the paper's claim", "notebook", "measured in this run"], claim_rows))

    rows = knob_rows(pages)
    for r in rows:
        r["verdict"] = pooled.get(rn.knob_record(r["knob"], rn.VERDICT), r["verdict"])
    body.append('<h2 id="knobs">What each knob did</h2>')
    if rows:
        body.append(
            '<p class="muted">Relative change of the mean over seeds from the smallest to the largest value '
            "swept, converged runs only. The verdict is the pooled one of the table below (Holm over "
            "every knob and quantity), so it can be more cautious than a notebook's own, whose Holm "
            "family is that notebook's knobs only.</p>"
        )
        body.append(
            _table(
                [
                    "knob",
                    "values",
                    "sharpness Σσg²",
                    "size Σσw²",
                    "‖W‖",
                    "real gap",
                    "gap (nats)",
                    "verdict",
                ],
                [
                    [
                        f"<code>{r['knob']}</code>",
                        html.escape(r["values"]),
                        _pct_cell(r["sharpness"]),
                        _pct_cell(r["size"]),
                        _pct_cell(r["weight_norm"]),
                        _pct_cell(r["real_gap"]),
                        f"{_fmt_value(r['gap_low'])} → {_fmt_value(r['gap_high'])}",
                        html.escape(str(r["verdict"])),
                    ]
                    for r in rows
                ],
                numeric=(2, 3, 4, 5),
            )
        )
    else:
        body.append("<p>No knob sweep was run.</p>")

    body.extend(_verdict_section(verdicts, claims, pages))
    for anchor, title, fig in summary_figures(pages):
        body.append(
            f'<div class="figure" id="{anchor}">{_figure_html(fig, anchor + "-plot")}</div>'
        )
    body.append('<h2 id="timing">Notebooks and times</h2>')
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
                f'<a href="#{p.stem}">{p.stem}</a>',
                status,
                f"{secs:.0f} s" if secs else "n/a",
                str(n_f),
                str(len(p.records))
                + "".join(
                    f'<br><span class="fail">{MISSING}{html.escape(n)}</span>'
                    for n in ([] if p.error else rn.missing(p.stem, p.records))
                ),
                f'<a href="../notebooks/{p.path.name}">{p.path.name}</a>',
            ]
        )
    body.append(
        _table(
            ["notebook", "status", "time", "figures", "records", "executed notebook"],
            t_rows,
            numeric=(2, 3, 4),
        )
    )

    for p in pages:
        body.append(f'<section class="nb" id="{p.stem}">')
        if p.parameters:
            params = ", ".join(
                f"<code>{html.escape(k)}={html.escape(repr(v))}</code>"
                for k, v in p.parameters.items()
            )
            body.append(f'<p class="params muted">papermill parameters: {params}</p>')
        for b in p.blocks:
            if b.kind == "markdown":
                body.append(f"<div>{_render_markdown(b.content)}</div>")
            elif b.kind == "takeaway":
                body.append(f'<div class="takeaway">{_render_markdown(b.content)}</div>')
            elif b.kind == "figure":
                body.append(
                    f'<div class="figure" id="{b.anchor}">{_figure_html(b.content, b.anchor + "-plot")}</div>'
                )
            elif b.kind == "html":
                body.append(f'<div class="table">{b.content}</div>')
            elif b.kind == "text":
                body.append(f"<pre>{html.escape(b.content)}</pre>")
            elif b.kind == "error":
                body.append(f'<pre class="error">{html.escape(b.content)}</pre>')
        if p.records:
            body.append("<h3>Recorded numbers</h3>")
            body.append(
                _table(
                    ["name", "value"],
                    [
                        [f"<code>{html.escape(k)}</code>", html.escape(_fmt_value(v))]
                        for k, v in p.records.items()
                    ],
                    numeric=(1,),
                )
            )
        body.append("</section>")

    total = f"; total {total_seconds / 60:.1f} min" if total_seconds else ""
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<title>awbench report: the activity-weight duality</title>"
        f"<style>{CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        "<header><h1>awbench: the activity–weight duality, reproduced</h1>"
        "<p>Feng, Zhang &amp; Tu, “Activity–weight duality in feed-forward neural networks reveals two "
        "co-determinants for generalization”, Nature Machine Intelligence 5, 908–918 (2023).</p>"
        f"<p>profile <b>{html.escape(profile or '?')}</b>; {len(pages)} notebooks, {n_figs} figures{total}; "
        f"built {stamp}.</p></header><main>{''.join(nav)}<article>{''.join(body)}</article></main></body></html>"
    )


def notebook_paths(folder: str | os.PathLike) -> list[Path]:
    """``NN_*.ipynb`` files of ``folder`` in order."""
    return sorted(p for p in Path(folder).iterdir() if NOTEBOOK_PATTERN.match(p.name))


def build_report(
    notebook_dir: str | os.PathLike,
    dest: str | os.PathLike,
    profile: str = "",
    timings: dict | None = None,
    failures: dict | None = None,
    total_seconds: float | None = None,
) -> Path:
    """Write the HTML report of the executed notebooks in ``notebook_dir`` to ``dest``."""
    pages = [read_notebook(p) for p in notebook_paths(notebook_dir)]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_text(render(pages, profile, timings, failures, total_seconds), encoding="utf-8")
    os.replace(tmp, dest)
    return dest


# --- running the notebooks -----------------------------------------------------------------


def default_notebook_dir() -> Path:
    """The repository's ``notebooks/`` (next to the package), else ``./notebooks``."""
    here = Path(__file__).resolve().parents[2] / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def execute(src: Path, dst: Path, parameters: dict, kernel: str = "python3") -> tuple[float, str]:
    """Run one notebook with papermill; return (seconds, error or "")."""
    import papermill as pm

    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(src),
            str(dst),
            parameters=parameters,
            kernel_name=kernel,
            progress_bar=False,
            log_output=False,
            cwd=str(src.parent),
        )
        error = ""
    except pm.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    return time.perf_counter() - start, error


def reproduce(
    out: str | os.PathLike = "outputs",
    profile: str = "quick",
    notebooks: Iterable[str] | None = None,
    notebook_dir: str | os.PathLike | None = None,
    kernel: str = "python3",
) -> Path:
    """Execute every notebook (or those whose stem starts with one of ``notebooks``) with
    ``profile`` into ``OUT/notebooks/``, build ``OUT/report/index.html`` and print its path.

    Raises RuntimeError (after writing the report) if a notebook failed.
    """
    from awbench.experiments.grids import check_profile

    check_profile(profile)
    src_dir = Path(notebook_dir) if notebook_dir else default_notebook_dir()
    sources = notebook_paths(src_dir)
    if notebooks:
        wanted = tuple(notebooks)
        sources = [p for p in sources if p.stem.startswith(wanted)]
    if not sources:
        raise FileNotFoundError(f"no notebooks NN_*.ipynb in {src_dir}")
    out = Path(out)
    run_dir, report = out / "notebooks", out / "report" / "index.html"
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in notebook_paths(run_dir):
        if notebooks is None:
            stale.unlink()  # a full run replaces every executed notebook
    old = os.environ.get("AWBENCH_QUIET")
    os.environ["AWBENCH_QUIET"] = "1"
    timings: dict[str, float] = {}
    failures: dict[str, str] = {}
    start = time.perf_counter()
    try:
        for src in sources:
            print(f"[reproduce] {src.name} (profile {profile}) ...", flush=True)
            secs, error = execute(src, run_dir / src.name, {"profile": profile}, kernel)
            timings[src.stem] = secs
            if error:
                failures[src.stem] = error
            print(
                f"[reproduce] {src.name}: {'FAILED ' + error if error else 'ok'} in {secs:.0f} s",
                flush=True,
            )
    finally:
        if old is None:
            os.environ.pop("AWBENCH_QUIET", None)
        else:
            os.environ["AWBENCH_QUIET"] = old
    total = time.perf_counter() - start
    (out / "report").mkdir(parents=True, exist_ok=True)
    (out / "report" / "timings.json").write_text(
        json.dumps(
            {
                "profile": profile,
                "total_seconds": total,
                "notebooks": timings,
                "failures": failures,
            },
            indent=1,
        )
    )
    path = build_report(run_dir, report, profile, timings, failures, total)
    print(
        f"[reproduce] {len(sources)} notebooks in {total / 60:.1f} min; report: {path.resolve()}",
        flush=True,
    )
    if failures:
        raise RuntimeError(
            f"{len(failures)} notebook(s) failed: "
            + "; ".join(f"{k}: {v}" for k, v in failures.items())
            + f" (see {path})"
        )
    return path


def export_figures(
    notebook_dir: str | os.PathLike = "outputs/notebooks",
    dest: str | os.PathLike = "outputs/figures",
    formats: Iterable[str] = ("png", "svg"),
) -> list[Path]:
    """Write every figure of the executed notebooks as ``dest/<notebook>-figN.<fmt>``.

    Needs kaleido (``pip install 'awbench[export]'``) and a Chromium it can drive."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise ImportError(
            "exporting figures needs kaleido: pip install 'awbench[export]'"
        ) from None
    import plotly.io as pio

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebook_paths(notebook_dir):
        for b in read_notebook(path).blocks:
            if b.kind != "figure":
                continue
            fig = pio.from_json(json.dumps(b.content), skip_invalid=True)
            for fmt in formats:
                target = dest / f"{b.anchor}.{fmt}"
                fig.write_image(
                    str(target), format=fmt, width=1100, height=fig.layout.height or 500
                )
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m awbench.apps.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    parser.add_argument("--profile", default="quick", help="smoke | quick | paper (default: quick)")
    parser.add_argument(
        "--only", nargs="*", help="run only notebooks whose name starts with these, e.g. 00 03"
    )
    parser.add_argument(
        "--build-only", action="store_true", help="rebuild the report from OUT/notebooks"
    )
    args = parser.parse_args(argv)
    if args.build_only:
        print(
            build_report(
                Path(args.out) / "notebooks", Path(args.out) / "report" / "index.html", args.profile
            )
        )
        return 0
    try:
        reproduce(args.out, args.profile, args.only)
    except RuntimeError as exc:
        print(f"[reproduce] {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
