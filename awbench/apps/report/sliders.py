"""The report's "explore the knob grid" section: the knob explorer of
:mod:`awbench.apps.knobs.explorer` (the one notebook 08 and ``awbench present`` show) embedded with
the shipped grid's data and its script; plotly.js is the page's own. No kernel, no CDN: a
move is a lookup in the page, every panel and text updated together.

:func:`grid_payload`, :func:`plane_figure` and :func:`spectra_figure` give the same panels
as static figures at the default setting (the report's exported figures), built by
:func:`panel_figure` with the traces the script draws (:func:`panel_traces`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from awbench.apps.knobs.explorer import explorer_payload
from awbench.apps.knobs.explorer_view import explorer_html
from awbench.apps.knobs.grid import KnobGrid

ROOT_ID = "explore-knobs"
DATA_ID = f"{ROOT_ID}-data"
SPECTRUM_POINTS = 160


def panel_traces(payload: Mapping, name: str, run: int, knob: str) -> list[dict]:
    """The traces ``explorer.js`` draws in panel ``name`` for ``run`` after a move of
    ``knob`` (the same dicts; the script builds them from the same payload)."""
    D, C = payload, payload["colors"]
    r, ref = D["runs"][run], D["runs"][D["ref"]]
    j = D["knobs"].index(knob)
    if name == "plane":
        line, label = D["lines"][r["L"][j]], D["labels"][knob]
        p, pref, pts = D["points"][r["p"]], D["points"][ref["p"]], D["points"]
        return [
            {"type": "scatter", "mode": "markers", "x": [q["x"] for q in pts],
             "y": [q["y"] for q in pts], "hovertext": [q["label"] for q in pts],
             "marker": {"color": C["context"], "size": 9,
                        "symbol": ["circle" if q["conv"] else "x" for q in pts]},
             "hovertemplate": "%{hovertext}<br>size %{x:.3g}, sharpness %{y:.3g}"
             "<extra>grid point</extra>"},
            {"type": "scatter", "mode": "lines+markers", "x": line["x"], "y": line["y"],
             "text": line["text"], "line": {"color": C["line"], "width": 3},
             "marker": {"size": 8, "color": C["line"]},
             "hovertemplate": f"{label} %{{text}}<extra>along {label}</extra>"},
            {"type": "scatter", "mode": "markers", "x": [pref["x"]], "y": [pref["y"]],
             "marker": {"size": 16, "symbol": "circle-open", "color": C["default"],
                        "line": {"width": 3}},
             "hovertemplate": "the default setting<extra></extra>"},
            {"type": "scatter", "mode": "markers", "x": [r["own"][0]], "y": [r["own"][1]],
             "marker": {"size": 11, "symbol": "x-thin-open", "color": C["here"],
                        "line": {"color": C["here"], "width": 2.5}},
             "hovertemplate": "this seed's run<br>size %{x:.3g}, sharpness %{y:.3g}"
             "<extra></extra>"},
            {"type": "scatter", "mode": "markers", "x": [p["x"]], "y": [p["y"]],
             "marker": {"size": 24, "symbol": "star", "color": C["here"],
                        "line": {"color": "black", "width": 1.5}},
             "hovertemplate": "you are here (seed mean)<br>size %{x:.3g}, sharpness %{y:.3g}"
             "<extra></extra>"},
        ]  # fmt: skip
    if name == "gap":
        return [
            {"type": "bar", "x": D["gapBars"], "y": ref["gap"], "offsetgroup": "ref",
             "marker": {"color": "#dddddd", "line": {"color": C["default"], "width": 2}},
             "hovertemplate": "default: %{x} %{y:.3g} nats<extra></extra>"},
            {"type": "bar", "x": D["gapBars"], "y": r["gap"], "text": r["gapText"],
             "textposition": "outside", "textfont": {"size": D["font"]}, "offsetgroup": "cur",
             "marker": {"color": C["gap"]},
             "hovertemplate": "this setting: %{x} %{y:.3g} nats<extra></extra>"},
        ]  # fmt: skip
    sym, ys = ("σg", "g") if name == "sigma_g" else ("σw", "w")
    return [
        {"type": "scatter", "mode": "lines", "x": ref["r"], "y": ref[ys],
         "line": {"color": C["default"], "dash": "dot", "width": 2.5},
         "hovertemplate": f"rank %{{x}}: {sym} %{{y:.3g}}<extra>default</extra>"},
        {"type": "scatter", "mode": "lines", "x": r["r"], "y": r[ys],
         "line": {"color": C[name], "width": 3.5},
         "hovertemplate": f"rank %{{x}}: {sym} %{{y:.3g}}<extra>this setting</extra>"},
    ]  # fmt: skip


def panel_figure(
    payload: Mapping, name: str, run: int | None = None, knob: str | None = None
) -> dict:
    """Panel ``name`` as a plotly figure dict, as the explorer draws it (default: the default
    setting, the payload's first knob)."""
    run = payload["ref"] if run is None else run
    knob = payload["knobs"][payload["knob"]] if knob is None else knob
    layout = json.loads(json.dumps(payload["layouts"][name]))
    layout["template"] = payload["template"]
    j = payload["knobs"].index(knob)
    title = payload["planeTitles"][j] if name == "plane" else payload["runs"][run]["titles"][name]
    layout["title"] = {**layout.get("title", {}), "text": title}
    return {"data": panel_traces(payload, name, run, knob), "layout": layout}


def grid_payload(grid: KnobGrid) -> tuple[dict, list[dict]]:
    """The explorer's payload of ``grid`` and its runs."""
    payload = explorer_payload(grid)
    return payload, payload["runs"]


def plane_figure(payload: dict, runs: Any = None) -> dict:
    """The sharpness-size plane at the default setting, as the explorer draws it."""
    return panel_figure(payload, "plane")


def spectra_figure(grid: Any, payload: dict, runs: Any = None) -> dict:
    """The σg and σw spectra at the default setting side by side, as the explorer's panels."""
    g, w = panel_figure(payload, "sigma_g"), panel_figure(payload, "sigma_w")
    layout = dict(g["layout"])
    layout.pop("annotations", None)
    width = layout.get("width", 440)
    layout["width"] = 2 * width
    layout["title"] = {**layout["title"], "text": "<b>σg and σw spectra</b> (default setting)"}
    layout["xaxis"] = {**g["layout"]["xaxis"], "domain": [0, 0.45]}
    layout["yaxis"] = {**g["layout"]["yaxis"], "anchor": "x"}
    layout["xaxis2"] = {**w["layout"]["xaxis"], "domain": [0.55, 1], "anchor": "y2"}
    layout["yaxis2"] = {**w["layout"]["yaxis"], "anchor": "x2"}
    data = [*g["data"], *({**t, "xaxis": "x2", "yaxis": "y2"} for t in w["data"])]
    return {"data": data, "layout": layout}


def explore_section(grid: KnobGrid | None = None) -> list[str]:
    """The section's HTML (heading, a line on the grid, the explorer), or a line saying why it
    is missing when the shipped grid cannot be read."""
    out = ['<h2 id="explore">Explore the knob grid</h2>']
    try:
        grid = grid if grid is not None else KnobGrid()
        payload = explorer_payload(grid)
    except Exception as exc:  # noqa: BLE001 - the report is written without the section
        return out + [
            f'<p class="fail">The shipped knob grid could not be read: {html.escape(str(exc))}</p>'
        ]
    out.append(
        '<p class="muted">The grid shipped with the package (notebook 08, '
        f"<code>awbench/apps/knobs/store</code>): {len(payload['runs'])} runs at "
        f"{len(payload['points'])} points, independent of this report's profile; the same "
        "explorer as notebook 08 and <code>awbench present</code>. Move a slider (or focus it "
        "and use the arrow keys): the star is the grid point's mean over its converged seeds, "
        "the cross the run of the seed on the slider, whose gap and spectra the other panels "
        "show. A combination the grid lacks snaps to the nearest grid point, with a note.</p>"
    )
    out.append(explorer_html(payload, ROOT_ID))
    return out
