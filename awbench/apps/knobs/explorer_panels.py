"""The panels of ``awbench present``: pure builders, sized for one 1280x720 screen.

Four small figures, each a ``*_traces`` function (plotly trace dicts and flat layout updates,
written into a ``FigureWidget`` by :class:`~awbench.apps.present.app.PresentApp`) and a frame
(:func:`present_figure` puts them together):

- plane: sharpness Σσg² against size Σσw², every run of the grid as grey context, the line of
  the knob last moved, the default setting and a "you are here" star;
- gap: the real gap and its sharp and flat parts, default against this setting;
- sigma_g and sigma_w: the spectra of this setting and the default.

Axes are fixed over the whole grid (:class:`Ranges`), so a move is seen as a move. Colours
are Okabe-Ito (colour-blind safe); fonts are 16 px or larger. The text of a setting (its
training line, the takeaway sentence) is :mod:`awbench.apps.knobs.explorer_text`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from awbench.apps.knobs.grid import KNOB_TEXT, KNOBS, KnobGrid, Setting, native_value
from awbench.apps.knobs.panels import get_path, nested
from awbench.formatting import number

# Okabe & Ito (2008), "Color universal design": safe for the common colour-vision deficiencies
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}
HERE = OKABE_ITO["vermillion"]  # this setting
DEFAULT = "#7a7a7a"  # the default setting
CONTEXT = "#c4c4c4"  # every other run of the grid
SHARPNESS = OKABE_ITO["blue"]
SIZE = OKABE_ITO["green"]
KNOB_LINE = OKABE_ITO["purple"]
GAP_COLORS = (OKABE_ITO["black"], OKABE_ITO["orange"], OKABE_ITO["sky"])
GAP_BARS = ("real gap", "sharp part", "flat part")
GAP_COLUMNS = ("real_gap", "sharp_gap", "flat_gap")

FONT = 16  # px, everywhere: readable from the back of a room
WIDTH, HEIGHT = 440, 300  # px, one of four panels on a 1280x720 screen
PANELS = ("plane", "gap", "sigma_g", "sigma_w")


@dataclass(frozen=True)
class Ranges:
    """Axis ranges over the whole grid (log10 for the log axes)."""

    sharpness: tuple[float, float]
    size: tuple[float, float]
    gap: tuple[float, float]
    rank: tuple[float, float]
    sigma_g: tuple[float, float]
    sigma_w: tuple[float, float]


def _log_span(values: np.ndarray, pad: float = 0.08, floor_decades: float | None = None):
    v = values[np.isfinite(values) & (values > 0)]
    if not len(v):
        return (-1.0, 1.0)
    lo, hi = math.log10(v.min()), math.log10(v.max())
    if floor_decades is not None:
        lo = max(lo, hi - floor_decades)
    span = max(hi - lo, 0.1)
    return (lo - pad * span, hi + pad * span)


def grid_ranges(grid: KnobGrid) -> Ranges:
    """Fixed axis ranges covering every run of the grid (spectra: five decades)."""
    runs = grid.runs
    settings = [grid.lookup(dict(zip(KNOBS, row))) for row in _knob_rows(runs)]
    settings = [s for s in settings if s is not None]
    sg = np.concatenate([s.sigma_g for s in settings] or [np.ones(1)])
    sw = np.concatenate([s.sigma_w for s in settings] or [np.ones(1)])
    ranks = np.concatenate([s.rank for s in settings] or [np.ones(1)])
    gaps = runs[list(GAP_COLUMNS)].to_numpy(dtype=float)
    top = float(np.nanmax(gaps)) if np.isfinite(gaps).any() else 1.0
    bottom = min(0.0, float(np.nanmin(gaps)))
    return Ranges(
        sharpness=_log_span(runs["sharpness"].to_numpy(dtype=float)),
        size=_log_span(runs["size"].to_numpy(dtype=float)),
        gap=(bottom * 1.15, top * 1.2),
        rank=(-0.05, math.log10(max(float(np.nanmax(ranks)), 2.0)) + 0.05),
        sigma_g=_log_span(sg, pad=0.04, floor_decades=5.0),
        sigma_w=_log_span(sw, pad=0.04, floor_decades=5.0),
    )


def _knob_rows(runs: pd.DataFrame) -> list[tuple]:
    return [
        tuple(native_value(v) for v in row)
        for row in runs[list(KNOBS)].itertuples(index=False, name=None)
    ]


def _frame(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        template="plotly_white",
        width=WIDTH,
        height=HEIGHT,
        margin={"t": 44, "l": 70, "r": 12, "b": 56},
        font={"size": FONT, "color": "#111111"},
        title={"text": title, "x": 0.01, "xanchor": "left", "y": 0.97, "font": {"size": FONT + 1}},
        showlegend=False,
        hoverlabel={"font": {"size": FONT}},
    )
    return fig


# --- the sharpness-size plane ----------------------------------------------------------------


def _context_text(runs: pd.DataFrame, base: dict) -> list[str]:
    """Hover text of every run: the knobs that differ from the default."""
    out = []
    for row in runs[list(KNOBS)].itertuples(index=False):
        diff = [
            f"{KNOB_TEXT.get(k, k)} {native_value(v):g}"
            for k, v in zip(KNOBS, row)
            if native_value(v) != base[k]
        ]
        out.append(", ".join(diff) or "the default setting")
    return out


def plane_traces(
    grid: KnobGrid, curve: pd.DataFrame, knob: str, cur: Setting | None, ref: Setting | None
) -> tuple[list[dict], dict]:
    """Plane panel: every run (grey), the line of ``knob`` through the setting (its grid
    points' means over converged seeds), the default (grey ring) and "you are here" (star)."""
    runs = grid.runs
    conv = runs["converged"].to_numpy(dtype=bool)
    label = KNOB_TEXT.get(knob, knob)
    hx = [get_path(cur, "size")] if cur is not None else []
    hy = [get_path(cur, "sharpness")] if cur is not None else []
    traces = [
        {
            "type": "scatter",
            "mode": "markers",
            "x": runs["size"].to_numpy(dtype=float),
            "y": runs["sharpness"].to_numpy(dtype=float),
            "marker": {
                "color": CONTEXT,
                "size": 9,
                "symbol": ["circle" if c else "x" for c in conv],
            },
            "hovertext": _context_text(runs, grid.defaults),
            "hovertemplate": "%{hovertext}<br>size %{x:.3g}, sharpness %{y:.3g}<extra>grid</extra>",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": curve["size_mean"].to_numpy(dtype=float) if len(curve) else [],
            "y": curve["sharpness_mean"].to_numpy(dtype=float) if len(curve) else [],
            "line": {"color": KNOB_LINE, "width": 3},
            "marker": {"size": 8, "color": KNOB_LINE},
            "text": [f"{native_value(v):g}" for v in curve[knob]] if len(curve) else [],
            "hovertemplate": f"{label} %{{text}}<extra>along {label}</extra>",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "x": [get_path(ref, "size")],
            "y": [get_path(ref, "sharpness")],
            "marker": {"size": 16, "symbol": "circle-open", "color": DEFAULT, "line": {"width": 3}},
            "hovertemplate": "the default setting<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "x": hx,
            "y": hy,
            "marker": {
                "size": 24,
                "symbol": "star",
                "color": HERE,
                "line": {"color": "black", "width": 1.5},
            },
            "hovertemplate": "you are here<br>size %{x:.3g}, sharpness %{y:.3g}<extra></extra>",
        },
    ]
    title = (
        f'<b>Sharpness vs size</b> · <span style="color:{HERE}">★ you</span> · '
        f'<span style="color:{KNOB_LINE}">— {label}</span>'
    )
    return traces, {"title.text": title}


def log_ticks(log_range: Sequence[float]) -> dict:
    """Ticks at 1, 2 and 5 times the powers of ten inside a log axis's range, written out in
    full: plotly's own minor labels on a short log axis read "5 2 1 5" for 0.5, 0.2, 1, 5."""
    lo, hi = log_range
    values = [
        m * 10.0**e
        for e in range(math.floor(lo), math.ceil(hi) + 1)
        for m in (1, 2, 5)
        if lo <= math.log10(m * 10.0**e) <= hi
    ]
    return {"tickvals": values, "ticktext": [f"{v:g}" for v in values]}


def plane_frame(ranges: Ranges) -> go.Figure:
    fig = _frame("<b>Sharpness vs size</b>")
    fig.update_xaxes(
        type="log",
        range=list(ranges.size),
        title={"text": "size Σσw²", "standoff": 4},
        **log_ticks(ranges.size),
    )
    fig.update_yaxes(
        type="log",
        range=list(ranges.sharpness),
        title={"text": "sharpness Σσg²", "standoff": 2},
        **log_ticks(ranges.sharpness),
    )
    return fig


# --- the gap -----------------------------------------------------------------------------------


def gap_traces(cur: Setting | None, ref: Setting | None) -> tuple[list[dict], dict]:
    """Gap panel: real gap, sharp part, flat part (nats), the default beside this setting."""

    def vals(s: Setting | None) -> list[float]:
        return [get_path(s, c) for c in GAP_COLUMNS]

    traces = [
        {
            "type": "bar",
            "x": list(GAP_BARS),
            "y": vals(ref),
            "marker": {"color": "#dddddd", "line": {"color": DEFAULT, "width": 2}},
            "hovertemplate": "default: %{x} %{y:.3g} nats<extra></extra>",
            "offsetgroup": "ref",
        },
        {
            "type": "bar",
            "x": list(GAP_BARS),
            "y": vals(cur),
            "text": [number(v) for v in vals(cur)],
            "textposition": "outside",
            "textfont": {"size": FONT},
            "marker": {"color": list(GAP_COLORS)},
            "hovertemplate": "this setting: %{x} %{y:.3g} nats<extra></extra>",
            "offsetgroup": "cur",
        },
    ]
    title = (
        f"<b>Gap</b> {number(get_path(cur, 'real_gap'))} nats "
        f'<span style="color:{DEFAULT}">(default {number(get_path(ref, "real_gap"))})</span>'
    )
    return traces, {"title.text": title}


def gap_frame(ranges: Ranges) -> go.Figure:
    fig = _frame("<b>Gap</b>")
    fig.update_layout(barmode="group", bargap=0.25, bargroupgap=0.05)
    fig.update_yaxes(range=list(ranges.gap), title={"text": "nats", "standoff": 2})
    fig.add_annotation(
        text="grey: default",
        x=1,
        y=1,
        xref="paper",
        yref="paper",
        xanchor="right",
        yanchor="top",
        showarrow=False,
        font={"size": FONT - 1, "color": DEFAULT},
    )
    return fig


# --- the spectra -------------------------------------------------------------------------------

_SPECTRA = {
    "sigma_g": ("σg", "sharpness", SHARPNESS, "per direction: how sharp"),
    "sigma_w": ("σw", "size", SIZE, "per direction: how big"),
}


def spectrum_traces(name: str, cur: Setting | None, ref: Setting | None) -> tuple[list[dict], dict]:
    """A spectrum panel (``name`` "sigma_g" or "sigma_w"), in σg rank order."""
    symbol, total, color, _ = _SPECTRA[name]
    empty = np.zeros(0)
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": ref.rank if ref is not None else empty,
            "y": getattr(ref, name) if ref is not None else empty,
            "line": {"color": DEFAULT, "dash": "dot", "width": 2.5},
            "hovertemplate": f"rank %{{x}}: {symbol} %{{y:.3g}}<extra>default</extra>",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": cur.rank if cur is not None else empty,
            "y": getattr(cur, name) if cur is not None else empty,
            "line": {"color": color, "width": 3.5},
            "hovertemplate": f"rank %{{x}}: {symbol} %{{y:.3g}}<extra>this setting</extra>",
        },
    ]
    title = (
        f'<b><span style="color:{color}">{symbol}</span></b> spectrum · {total} Σ{symbol}² '
        f"{number(get_path(cur, total))} "
        f'<span style="color:{DEFAULT}">(default {number(get_path(ref, total))})</span>'
    )
    return traces, {"title.text": title}


def spectrum_frame(name: str, ranges: Ranges) -> go.Figure:
    symbol, _, _, _ = _SPECTRA[name]
    fig = _frame(f"<b>{symbol}</b>")
    fig.update_xaxes(
        type="log", range=list(ranges.rank), title={"text": "direction (by σg)", "standoff": 4}
    )
    fig.update_yaxes(
        type="log",
        range=list(getattr(ranges, name)),
        exponentformat="power",
        title={"text": f"{symbol} per direction", "standoff": 2},
    )
    fig.add_annotation(
        text="dotted: default",
        x=0.02,
        y=0.02,
        xref="paper",
        yref="paper",
        xanchor="left",
        yanchor="bottom",
        showarrow=False,
        font={"size": FONT - 1, "color": DEFAULT},
    )
    return fig


def frame(name: str, ranges: Ranges) -> go.Figure:
    """The empty frame (axes, fixed ranges) of one panel."""
    if name == "plane":
        return plane_frame(ranges)
    if name == "gap":
        return gap_frame(ranges)
    return spectrum_frame(name, ranges)


def present_figure(name: str, ranges: Ranges, traces: list[dict], layout: dict) -> go.Figure:
    """A static figure of one panel (its frame, traces and layout updates)."""
    fig = frame(name, ranges)
    kinds = {"scatter": go.Scatter, "bar": go.Bar}
    fig.add_traces(
        [kinds[t["type"]](**{k: v for k, v in t.items() if k != "type"}) for t in traces]
    )
    fig.update_layout(nested(layout))
    return fig
