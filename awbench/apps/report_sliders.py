"""The report's "explore the knob grid" section: the sharpness-vs-size plane and the sigma_g /
sigma_w spectra of the shipped knob grid (:class:`~awbench.apps.knob_grid.KnobGrid`), driven
by one slider per knob in the page itself: no kernel, no CDN.

Why sliders plus a little inline JavaScript, not plotly's own sliders: a plotly slider step
carries fixed restyle arguments, so one plotly slider per knob moves one knob with the others
frozen at whatever that step was built with; combining seven knobs would need a frame per
combination. The shipped grid is sparse (batch size x weight decay, every other knob moved
alone from the default), so a combination the grid lacks must also snap to a grid point
with a visible note. A dozen lines of JavaScript do both: they read every slider, find the
run of that combination in the embedded grid (or the grid point closest to it that keeps
the knob just moved) and restyle the two figures with ``Plotly.restyle``. The sliders are
native range inputs: labelled in words, driven by the keyboard too.

The grid is embedded as JSON, the spectra thinned to about 160 log-spaced ranks and 4
significant digits (about 0.3 MB for the 57 runs; the figures' look is unchanged on their log
axes). The spectra traces are :mod:`awbench.apps.knob_panels`' own.
"""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np

from awbench.apps.knob_grid import KNOB_TEXT, KNOBS, KnobGrid, Setting, native_value
from awbench.apps.knob_panels import CURRENT, REFERENCE, sharpness_traces, size_traces
from awbench.apps.report_html import figure_html

PLANE_ID = "explore-plane"
SPECTRA_ID = "explore-spectra"
DATA_ID = "explore-data"
SPECTRUM_POINTS = 160
# The plane's traces: the grid points, the default, the seed's run, the point ("you are here").
PLANE_HERE = [2, 3]
# The spectra's "this setting" traces: sigma_g (first subplot), sigma_w (second).
SPECTRA_CURRENT = [1, 3]


def _r4(values: Any) -> list:
    """Numbers rounded to 4 significant digits, NaN as None (JSON null)."""
    out = []
    for v in np.asarray(values, dtype=float).ravel():
        out.append(float(f"{v:.4g}") if np.isfinite(v) else None)
    return out


def _thin(n: int) -> np.ndarray:
    """About SPECTRUM_POINTS rank positions, log-spaced (the spectra are drawn on log axes)."""
    if n <= SPECTRUM_POINTS:
        return np.arange(n)
    return np.unique(np.round(np.geomspace(1, n, SPECTRUM_POINTS)).astype(int)) - 1


def _spectrum(s: Setting) -> dict:
    keep = _thin(len(s.rank))
    return {"r": _r4(s.rank[keep]), "g": _r4(s.sigma_g[keep]), "w": _r4(s.sigma_w[keep])}


def grid_payload(grid: KnobGrid) -> tuple[dict, list[dict]]:
    """What the page needs: the knobs and their values, and per run its knob positions, its own
    sharpness and size, its grid point's converged-only means and its thinned spectra."""
    knobs = [k for k in KNOBS if len(grid.values[k]) > 1]
    pos = {k: {v: i for i, v in enumerate(grid.values[k])} for k in knobs}
    runs = []
    for _, row in grid.runs[grid.runs["source"] == "grid"].iterrows():
        values = {k: native_value(row[k]) for k in KNOBS}
        s = grid.lookup(values)
        if s is None or s.point is None:
            continue
        p = s.point.scalars
        runs.append(
            {
                "k": [pos[k][values[k]] for k in knobs],
                "conv": bool(s.converged),
                "status": s.status,
                "epochs": int(s.epochs),
                "own": _r4([s.scalars.get("sharpness"), s.scalars.get("size")]),
                "P": _r4([p.get("sharpness"), p.get("size"), p.get("real_gap")]),
                "pc": [s.point.n_converged, s.point.n],
                **_spectrum(s),
            }
        )
    default = [pos[k][native_value(grid.defaults[k])] for k in knobs]
    return {
        "knobs": knobs,
        "labels": {k: KNOB_TEXT.get(k, k) for k in knobs},
        "values": {k: list(grid.values[k]) for k in knobs},
        "default": default,
        "ref": next(i for i, r in enumerate(runs) if r["k"] == default),
        "plane": PLANE_ID,
        "spectra": SPECTRA_ID,
        "planeHere": PLANE_HERE,
        "spectraCur": SPECTRA_CURRENT,
    }, runs


def _point_label(payload: dict, k: list[int]) -> str:
    """The grid point in words: the knobs that differ from the default (seed left out)."""
    parts = [
        f"{payload['labels'][name]} = {payload['values'][name][i]:g}"
        for name, i, d in zip(payload["knobs"], k, payload["default"])
        if name != "seed" and i != d
    ]
    return ", ".join(parts) or "the default setting"


def plane_figure(payload: dict, runs: list[dict]) -> dict:
    """Sharpness against size: every grid point (mean over its converged seeds, coloured by
    its real gap), the default, the run on the sliders and its point ("you are here")."""
    import plotly.graph_objects as go

    from awbench.viz.gap_plots import TEMPLATE

    seed = payload["knobs"].index("seed") if "seed" in payload["knobs"] else None
    points: dict[tuple, dict] = {}
    for r in runs:
        key = tuple(v for j, v in enumerate(r["k"]) if j != seed)
        points.setdefault(key, r)
    ps = list(points.values())
    ref = runs[payload["ref"]]
    fig = go.Figure()
    fig.add_scatter(
        x=[p["P"][0] for p in ps],
        y=[p["P"][1] for p in ps],
        mode="markers",
        name="grid points",
        text=[_point_label(payload, p["k"]) for p in ps],
        customdata=[[p["P"][2], *p["pc"]] for p in ps],
        marker={
            "size": 11,
            "color": [p["P"][2] for p in ps],
            "colorscale": "Cividis",
            "colorbar": {"title": {"text": "real gap"}, "thickness": 12},
            "line": {"color": "#555", "width": 0.5},
        },
        hovertemplate="%{text}<br>Σσg² %{x:.3g} · Σσw² %{y:.3g}<br>real gap %{customdata[0]:.3g}"
        " · %{customdata[1]}/%{customdata[2]} seeds converged<extra></extra>",
    )
    fig.add_scatter(
        x=[ref["P"][0]],
        y=[ref["P"][1]],
        mode="markers",
        name="default setting",
        marker={"symbol": "circle-open", "size": 20, "color": REFERENCE, "line": {"width": 2}},
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=[ref["own"][0]],
        y=[ref["own"][1]],
        mode="markers",
        name="this seed's run",
        marker={"symbol": "x-thin-open", "size": 12, "color": CURRENT, "line": {"width": 2}},
        hovertemplate="this seed: Σσg² %{x:.3g} · Σσw² %{y:.3g}<extra></extra>",
    )
    fig.add_scatter(
        x=[ref["P"][0]],
        y=[ref["P"][1]],
        mode="markers",
        name="you are here",
        marker={
            "symbol": "star",
            "size": 20,
            "color": CURRENT,
            "line": {"color": "black", "width": 1},
        },
        hovertemplate="you are here<br>Σσg² %{x:.3g} · Σσw² %{y:.3g}<extra></extra>",
    )
    fig.update_layout(
        template=TEMPLATE,
        height=460,
        title={
            "text": "<b>Sharpness against size</b>: the two co-determinants of the gap",
            "x": 0.01,
        },
        margin={"t": 60, "l": 70, "r": 20, "b": 60},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "xanchor": "left"},
    )
    fig.update_xaxes(type="log", title_text="sharpness Σσg²", **_LOG_TICKS)
    fig.update_yaxes(type="log", title_text="size Σσw²", **_LOG_TICKS)
    return fig.to_plotly_json()


# Plain numbers on the plane's log axes (not plotly's minor-tick digits "2 3 4 5").
_TICKS = [0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20]
_LOG_TICKS = {"tickvals": _TICKS, "ticktext": [f"{t:g}" for t in _TICKS]}


def _first_panel(traces: list[dict], axis: str) -> list[dict]:
    """The first subplot's two traces (default, this setting), moved to ``axis``, thinned."""
    out = []
    for t in (t for t in traces if t.get("xaxis") == "x"):
        t = {**t, "xaxis": f"x{axis}", "yaxis": f"y{axis}"}
        if axis:
            t["showlegend"] = False
        out.append(t)
    return out


def spectra_figure(grid: KnobGrid, payload: dict, runs: list[dict]) -> dict:
    """sigma_g and sigma_w per direction (sigma_g order): the default dotted, the run on the
    sliders in colour; fixed axes over the whole grid so that a move reads as a move."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from awbench.apps.knob_panels import log_range
    from awbench.viz.gap_plots import TEMPLATE

    ref = runs[payload["ref"]]
    default = grid.default()
    traces = [
        *_first_panel(sharpness_traces(default, default)[0], ""),
        *_first_panel(size_traces(default, default)[0], "2"),
    ]
    thinned = [("r", "g"), ("r", "g"), ("r", "w"), ("r", "w")]
    for t, (x, y) in zip(traces, thinned):
        t["x"], t["y"] = ref[x], ref[y]
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("σg per direction (sharpness)", "σw per direction (size), σg order"),
        horizontal_spacing=0.1,
    )
    fig.add_traces([go.Scatter(**{k: v for k, v in t.items() if k != "type"}) for t in traces])
    g_range = log_range(*(np.array(r["g"], dtype=float) for r in runs))
    w_range = log_range(*(np.array(r["w"], dtype=float) for r in runs))
    fig.update_layout(
        template=TEMPLATE,
        height=380,
        margin={"t": 60, "l": 70, "r": 20, "b": 60},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "x": 0, "xanchor": "left"},
    )
    fig.update_xaxes(
        type="log",
        title_text="rank n (by σg)",
        tickvals=[1, 3, 10, 30, 100, 300, 1000],
        ticktext=["1", "3", "10", "30", "100", "300", "1000"],
    )
    fig.update_yaxes(type="log", exponentformat="power", title_text="σg,n", range=g_range, col=1)
    fig.update_yaxes(type="log", exponentformat="power", title_text="σw,n", range=w_range, col=2)
    return fig.to_plotly_json()


def _controls(payload: dict) -> str:
    items = []
    for j, k in enumerate(payload["knobs"]):
        values = payload["values"][k]
        d = payload["default"][j]
        items.append(
            f'<label><span>{html.escape(payload["labels"][k])}: <output id="explore-out-{k}">'
            f"{values[d]:g}</output></span>"
            f'<input type="range" id="explore-{k}" data-knob="{j}" min="0" max="{len(values) - 1}"'
            f' step="1" value="{d}" aria-label="{html.escape(payload["labels"][k])}">'
            f'<span class="hint"><code>{k}</code>: {", ".join(f"{v:g}" for v in values)}</span></label>'
        )
    return '<div class="knobs">' + "".join(items) + "</div>"


def explore_section(grid: KnobGrid | None = None) -> list[str]:
    """The section's HTML (heading, sliders, note, plane, spectra, data, script), or a line
    saying why it is missing when the shipped grid cannot be read."""
    out = ['<h2 id="explore">Explore the knob grid</h2>']
    try:
        grid = grid if grid is not None else KnobGrid()
        payload, runs = grid_payload(grid)
    except Exception as exc:  # noqa: BLE001 - the report is written without the section
        return out + [
            f'<p class="fail">The shipped knob grid could not be read: {html.escape(str(exc))}</p>'
        ]
    seed = payload["knobs"].index("seed") if "seed" in payload["knobs"] else None
    n_points = len({tuple(v for j, v in enumerate(r["k"]) if j != seed) for r in runs})
    out.append(
        '<p class="muted">The grid shipped with the package (notebook 08, '
        f"<code>awbench/apps/knobs_store</code>): {len(runs)} runs at {n_points} points, "
        "independent of this report's profile. Move a slider (or focus it and use the arrow "
        "keys): the star is the grid point's mean over its converged seeds, the cross the run "
        "of the seed on the slider, whose spectra are drawn below. Batch size and weight decay "
        "are crossed; every other knob was moved alone from the default, so a combination the "
        "grid lacks snaps to the nearest grid point, with a note.</p>"
    )
    out.append('<div class="explore">' + _controls(payload))
    out.append('<p class="note" id="explore-note" aria-live="polite"></p>')
    out.append(figure_html(plane_figure(payload, runs), PLANE_ID))
    out.append(figure_html(spectra_figure(grid, payload, runs), SPECTRA_ID) + "</div>")
    data = json.dumps({**payload, "runs": runs}, separators=(",", ":")).replace("</", "<\\/")
    out.append(f'<script type="application/json" id="{DATA_ID}">{data}</script>')
    out.append(f"<script>{_SCRIPT}</script>")
    return out


# Reads every slider, finds the run (or snaps to the closest grid point that keeps the knob
# just moved, ties going to the default), then restyles both figures and writes the note.
_SCRIPT = """(function(){
var D=JSON.parse(document.getElementById('@DATA_ID@').textContent),R=D.runs,K=D.knobs;
var byKey={};R.forEach(function(r,i){byKey[r.k.join(',')]=i;});
var sel=R[D.ref].k.slice(),note=document.getElementById('explore-note');
function fmt(v){return v==null?'n/a':String(+Number(v).toPrecision(3));}
function val(j,i){return String(+Number(D.values[K[j]][i]).toPrecision(6));}
function find(changed){
  var hit=byKey[sel.join(',')];if(hit!==undefined)return hit;
  var best=D.ref,score=-1;
  R.forEach(function(r,i){
    if(changed>=0&&r.k[changed]!==sel[changed])return;
    var s=0;r.k.forEach(function(v,j){s+=v===sel[j]?100:(v===D['default'][j]?1:0);});
    if(s>score){score=s;best=i;}
  });return best;}
function show(i,changed){
  var r=R[i],moved=[];
  r.k.forEach(function(v,j){if(v!==sel[j])moved.push(D.labels[K[j]]+' to '+val(j,v));});
  var snap=moved.length?'<span class="snap">'+D.labels[K[changed]]+' = '+val(changed,sel[changed])+
    ' with the other knobs as set is not on the grid: moved '+moved.join(', ')+'.</span><br>':'';
  sel=r.k.slice();
  K.forEach(function(k,j){document.getElementById('explore-'+k).value=sel[j];
    document.getElementById('explore-out-'+k).textContent=val(j,sel[j]);});
  var diff=[];K.forEach(function(k,j){if(k!=='seed'&&sel[j]!==D['default'][j])diff.push(D.labels[k]+' = '+val(j,sel[j]));});
  var seed=K.indexOf('seed'),who=seed>=0?'seed '+val(seed,sel[seed]):'this run';
  var run=r.conv?who+' converged after '+r.epochs+' epochs':'<span class="snap">'+who+' did not converge ('+r.status+'): not a result</span>';
  note.innerHTML=snap+'<b>'+(diff.join(', ')||'the default setting')+'</b> · '+run+
    ' · point: '+r.pc[0]+'/'+r.pc[1]+' seeds converged, Σσg² '+fmt(r.P[0])+', Σσw² '+fmt(r.P[1])+
    ', real gap '+fmt(r.P[2])+' (mean of converged seeds)';
  if(window.Plotly){
    Plotly.restyle(D.plane,{x:[[r.own[0]],[r.P[0]]],y:[[r.own[1]],[r.P[1]]]},D.planeHere);
    Plotly.restyle(D.spectra,{x:[r.r,r.r],y:[r.g,r.w]},D.spectraCur);}
}
K.forEach(function(k,j){document.getElementById('explore-'+k).addEventListener('input',function(e){
  sel[j]=+e.target.value;show(find(j),j);});});
show(D.ref,-1);
})();""".replace("@DATA_ID@", DATA_ID)
