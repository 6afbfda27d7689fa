"""The panels of notebook 08's knob widget: pure builders, settings in, traces and text out.

Each panel is a ``*_traces`` function (plotly trace dicts and flat layout updates, which the
live :class:`~awbench.apps.knobs.widgets.KnobPanel` writes into its ``FigureWidget``) and a frame
(:func:`build_figure` puts the two together into a static figure, for a headless run):

- sharpness: the sigma_g spectrum, the top eigenvalues of the layer Hessian, and the loss
  along its top eigenvector with the quadratic model 1/2 lam t^2;
- size: the sigma_w spectrum (in sigma_g order) and the layer's weight norm;
- gap: real gap vs the exact pair gap and the sum c sigma_g sigma_w estimate; sharp vs flat;
- sweep: real gap, sharpness and size along one knob (mean and spread over the converged
  seeds), with a "you are here" marker.

The sentences about a setting or the grid that are not tied to the widget (why a run did not
converge, which factor each knob moves most) are :mod:`awbench.apps.knobs.sentences`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from awbench.apps.knobs.grid import (
    CURVE_COLUMNS,
    KNOB_TEXT,
    KnobGrid,
    Setting,
    native_value,
)
from awbench.formatting import number
from awbench.viz.gap_plots import COLORS, TEMPLATE

CURRENT = "#d62728"  # this setting
WARNING = "#b00020"  # not converged: not a result
REFERENCE = "#9e9e9e"  # the default setting
SIZE_COLOR = COLORS["size"]


_E = np.zeros(0)


def _subplots(cols: int, titles: tuple[str, ...], widths=None) -> go.Figure:
    fig = make_subplots(
        rows=1, cols=cols, subplot_titles=titles, column_widths=widths, horizontal_spacing=0.09
    )
    fig.update_layout(
        template=TEMPLATE,
        height=370,
        margin={"t": 70, "l": 60, "r": 20, "b": 95},
        legend={"orientation": "h", "yanchor": "top", "y": -0.25, "xanchor": "left", "x": 0},
        title={"x": 0.01, "xanchor": "left", "font": {"size": 14}},
        barmode="group",
    )
    return fig


def get_path(s: Setting | None, name: str) -> float:
    return float("nan") if s is None else s.scalars.get(name, float("nan"))


def log_range(*arrays: np.ndarray, decades: float = 5.0) -> list[float] | None:
    """A log-axis range over ``decades`` below the largest value (spectra end in exact zeros)."""
    vals = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays if len(a)] or [np.zeros(0)])
    if not len(vals):
        return None
    top = math.log10(vals.max())
    return [max(top - decades, math.log10(vals.min())) - 0.1, top + 0.2]


def _line(
    x: np.ndarray,
    y: np.ndarray,
    axis: str,
    hover: str,
    label: str,
    color: str,
    *,
    name: str | None = None,
    group: str | None = None,
    dash: str | None = None,
    width: float | None = None,
    marker_size: int | None = None,
) -> dict:
    """One scatter trace of a panel; ``axis`` is "" for the first subplot, then "2", "3"."""
    line = {
        "color": color,
        **({"dash": dash} if dash else {}),
        **({"width": width} if width else {}),
    }
    trace = {
        "type": "scatter",
        "mode": "lines+markers" if marker_size else "lines",
        "line": line,
        "x": x,
        "y": y,
        "xaxis": f"x{axis}",
        "yaxis": f"y{axis}",
        "hovertemplate": f"{hover}<extra>{label}</extra>",
    }
    if name is None:
        trace["showlegend"] = False
    else:
        trace["name"] = name
    if group is not None:
        trace["legendgroup"] = group
    if marker_size:
        trace["marker"] = {"size": marker_size}
    return trace


def _field(s: Setting | None, name: str) -> np.ndarray:
    return _E if s is None else getattr(s, name)


def _unconverged_flag(cur: Setting | None, ref: Setting | None) -> str:
    """A red title prefix when this setting or the default did not converge."""
    bad_cur = cur is not None and not cur.converged
    bad_ref = ref is not None and not ref.converged
    if not (bad_cur or bad_ref):
        return ""
    if bad_cur and bad_ref and cur.key != ref.key:
        text = "⚠ neither converged"
    elif bad_cur:
        text = "⚠ NOT CONVERGED"
    else:
        text = "⚠ default not converged"
    return f'<span style="color:{WARNING}"><b>{text}</b></span> · '


_DEFAULT_LINE = {"color": REFERENCE, "dash": "dot", "group": "ref"}


def _n_lam(s: Setting | None) -> np.ndarray:
    return np.arange(1, len(s.top_lam) + 1) if s is not None else _E


def _sharpness_spectra(c: Setting | None, r: Setting | None) -> list[dict]:
    """The sigma_g spectra (first subplot) and the top eigenvalues (second), default first."""
    rank_hover = "rank %{x}<br>σg %{y:.3g}"
    return [
        _line(
            _field(r, "rank"),
            _field(r, "sigma_g"),
            "",
            rank_hover,
            "default",
            name="default setting",
            **_DEFAULT_LINE,
        ),
        _line(
            _field(c, "rank"),
            _field(c, "sigma_g"),
            "",
            rank_hover,
            "this setting",
            CURRENT,
            name="this setting",
            group="cur",
        ),
        _line(
            _n_lam(r),
            _field(r, "top_lam"),
            "2",
            "λ%{x} = %{y:.3g}",
            "default",
            marker_size=6,
            **_DEFAULT_LINE,
        ),
        _line(
            _n_lam(c),
            _field(c, "top_lam"),
            "2",
            "λ%{x} = %{y:.3g}",
            "this setting",
            CURRENT,
            group="cur",
            marker_size=7,
        ),
    ]


def _sharpness_slices(c: Setting | None, r: Setting | None) -> list[dict]:
    """The loss along the top eigenvector (third subplot): default, quadratic model, this."""
    slice_hover = "t %{x:.3g}<br>loss %{y:.4g}"
    return [
        _line(
            _field(r, "slice_t"),
            _field(r, "slice_loss"),
            "3",
            slice_hover,
            "default",
            **_DEFAULT_LINE,
        ),
        _line(
            _field(c, "slice_t"),
            _field(c, "slice_quadratic"),
            "3",
            "t %{x:.3g}<br>L(0)+½λt² %{y:.4g}",
            "quadratic",
            CURRENT,
            name="½λt² model",
            dash="dash",
            width=1,
        ),
        _line(
            _field(c, "slice_t"),
            _field(c, "slice_loss"),
            "3",
            slice_hover,
            "this setting",
            CURRENT,
            group="cur",
            width=2.5,
        ),
    ]


def _sharpness_layout(c: Setting | None, r: Setting | None) -> dict:
    """The sharpness panel's title and axis ranges."""
    layer = (c or r).config.layer if (c or r) is not None else "layer"
    title = _unconverged_flag(c, r) + (
        f"<b>Sharpness</b>  Σσg² = {number(get_path(c, 'sharpness'))} "
        f"(default {number(get_path(r, 'sharpness'))}) · λmax of the {layer} Hessian = "
        f"{number(get_path(c, 'lam_max'))} (default {number(get_path(r, 'lam_max'))})"
    )
    ymax = [np.max(s.slice_loss) for s in (c, r) if s is not None and len(s.slice_loss)]
    ymin = [np.min(s.slice_loss) for s in (c, r) if s is not None and len(s.slice_loss)]
    layout = {
        "title.text": title,
        "yaxis.range": log_range(*(x.sigma_g for x in (c, r) if x is not None)),
    }
    if ymax:  # the quadratic may shoot far above the slice: frame the slices
        span = max(ymax) - min(ymin)
        layout["yaxis3.range"] = [min(ymin) - 0.05 * span, max(ymax) + 0.1 * span]
    return layout


def sharpness_traces(cur: Setting | None, ref: Setting | None) -> tuple[list[dict], dict]:
    """Sharpness panel: sigma_g spectrum, top layer-Hessian eigenvalues, loss slice."""
    traces = [*_sharpness_spectra(cur, ref), *_sharpness_slices(cur, ref)]
    return traces, _sharpness_layout(cur, ref)


def _sharpness_frame() -> go.Figure:
    fig = _subplots(
        3,
        (
            "σg per direction (sharpness)",
            "top eigenvalues of the layer Hessian",
            "loss along the top eigenvector",
        ),
    )
    fig.update_xaxes(title_text="rank n (by σg)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="σg,n", type="log", exponentformat="power", row=1, col=1)
    fig.update_xaxes(title_text="n", dtick=1, row=1, col=2)
    fig.update_yaxes(title_text="λn", row=1, col=2)
    fig.update_xaxes(title_text="t (step along v1)", row=1, col=3)
    fig.update_yaxes(title_text="loss (nats)", row=1, col=3)
    return fig


def size_traces(cur: Setting | None, ref: Setting | None) -> tuple[list[dict], dict]:
    """Size panel: sigma_w per direction (sigma_g order) and the layer's weight norm."""
    r, c = ref, cur
    rank_hover = "rank %{x}<br>σw %{y:.3g}"
    traces = [
        _line(
            _field(r, "rank"),
            _field(r, "sigma_w"),
            "",
            rank_hover,
            "default",
            REFERENCE,
            name="default setting",
            dash="dot",
        ),
        _line(
            _field(c, "rank"),
            _field(c, "sigma_w"),
            "",
            rank_hover,
            "this setting",
            SIZE_COLOR,
            name="this setting",
        ),
        {
            "type": "bar",
            "showlegend": False,
            "marker": {"color": [REFERENCE, SIZE_COLOR]},
            "x": ["default", "this setting"],
            "y": [get_path(r, "weight_norm"), get_path(c, "weight_norm")],
            "text": [number(get_path(r, "weight_norm")), number(get_path(c, "weight_norm"))],
            "textposition": "auto",
            "xaxis": "x2",
            "yaxis": "y2",
            "hovertemplate": "%{x}: ‖W‖F = %{y:.4g}<extra></extra>",
        },
        {
            "type": "bar",
            "showlegend": False,
            "marker": {"color": [REFERENCE, SIZE_COLOR], "opacity": 0.6},
            "x": ["default", "this setting"],
            "y": [get_path(r, "size"), get_path(c, "size")],
            "text": [number(get_path(r, "size")), number(get_path(c, "size"))],
            "textposition": "auto",
            "xaxis": "x3",
            "yaxis": "y3",
            "hovertemplate": "%{x}: Σσw² = %{y:.4g}<extra></extra>",
        },
    ]
    title = _unconverged_flag(c, r) + (
        f"<b>Size</b>  Σσw² = {number(get_path(c, 'size'))} (default {number(get_path(r, 'size'))})"
        f" · ‖W‖F = {number(get_path(c, 'weight_norm'))} (default {number(get_path(r, 'weight_norm'))})"
    )
    return traces, {
        "title.text": title,
        "yaxis.range": log_range(*(x.sigma_w for x in (c, r) if x is not None)),
    }


def _size_frame() -> go.Figure:
    fig = _subplots(
        3,
        ("σw per direction (size), σg order", "layer weight norm ‖W‖F", "size Σσw²"),
        widths=[0.6, 0.2, 0.2],
    )
    fig.update_xaxes(title_text="rank n (by σg)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="σw,n", type="log", exponentformat="power", row=1, col=1)
    return fig


GAP_BARS = ("real gap", "exact ⟨Δl⟩", "Σ cσgσw")


def gap_traces(cur: Setting | None, ref: Setting | None) -> tuple[list[dict], dict]:
    """Gap panel: real gap, exact pair gap and estimate; sharp vs flat directions."""
    r, c = ref, cur

    def vals(s: Setting | None) -> list[float]:
        return [get_path(s, "real_gap"), get_path(s, "pair_gap"), get_path(s, "estimated_gap")]

    sharp = [get_path(r, "sharp_gap"), get_path(c, "sharp_gap")]
    flat = [get_path(r, "flat_gap"), get_path(c, "flat_gap")]
    traces = [
        {
            "type": "bar",
            "name": "default setting",
            "marker": {"color": REFERENCE},
            "x": list(GAP_BARS),
            "y": vals(r),
            "text": [number(v) for v in vals(r)],
            "textposition": "auto",
            "xaxis": "x",
            "yaxis": "y",
            "hovertemplate": "%{x}: %{y:.4g} nats<extra>default</extra>",
            "offsetgroup": "ref",
        },
        {
            "type": "bar",
            "name": "this setting",
            "marker": {"color": COLORS["estimated_gap"]},
            "x": list(GAP_BARS),
            "y": vals(c),
            "text": [number(v) for v in vals(c)],
            "textposition": "auto",
            "xaxis": "x",
            "yaxis": "y",
            "hovertemplate": "%{x}: %{y:.4g} nats<extra>this setting</extra>",
            "offsetgroup": "cur",
        },
        {
            "type": "bar",
            "name": "sharp directions",
            "marker": {"color": COLORS["sharp_gap"]},
            "x": ["default", "this setting"],
            "y": sharp,
            "xaxis": "x2",
            "yaxis": "y2",
            "offsetgroup": "split",
            "text": [number(v) for v in sharp],
            "textposition": "inside",
            "hovertemplate": "%{x}: sharp part %{y:.4g} nats<extra></extra>",
        },
        {
            "type": "bar",
            "name": "flat directions",
            "marker": {"color": COLORS["flat_gap"]},
            "x": ["default", "this setting"],
            "y": flat,
            "base": [0.0 if math.isnan(v) else v for v in sharp],
            "xaxis": "x2",
            "yaxis": "y2",
            "offsetgroup": "split",
            "text": [number(v) for v in flat],
            "textposition": "inside",
            "hovertemplate": "%{x}: flat part %{y:.4g} nats<extra></extra>",
        },
    ]
    share = (
        get_path(c, "sharp_gap") / get_path(c, "pair_gap")
        if get_path(c, "pair_gap")
        else float("nan")
    )
    title = _unconverged_flag(c, r) + (
        f"<b>Gap</b>  real {number(get_path(c, 'real_gap'))} nats "
        f"(default {number(get_path(r, 'real_gap'))}) · estimate {number(get_path(c, 'estimated_gap'))} · "
        f"sharp directions carry {number(100 * share, 2)} % · "
        f"test error {number(100 * get_path(c, 'test_error'), 3)} %"
    )
    return traces, {"title.text": title}


def _gap_frame() -> go.Figure:
    fig = _subplots(
        2,
        ("real gap and its decomposition (nats)", "sharp vs flat directions (nats)"),
        widths=[0.55, 0.45],
    )
    return fig


def _seed_counts(curve: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per point of the curve: how many seeds converged, and how many seeds there are."""
    has_counts = len(curve) and "converged" in curve
    converged = curve["converged"].to_numpy() if has_counts else np.ones(len(curve), dtype=int)
    seeds = curve["seeds"].to_numpy() if has_counts else curve["n"].to_numpy()
    return converged, seeds


def _curve_traces(
    curve: pd.DataFrame, knob: str, xs: np.ndarray, converged: np.ndarray, seeds: np.ndarray
) -> list[dict]:
    """The grid's mean ± sd along ``knob``, one subplot per quantity; a point none of whose
    seeds converged is drawn as an ×."""
    seeds_text = [
        f"mean of {n} converged seed(s) ({k}/{m} converged)"
        if k
        else f"⚠ not converged (0/{m} seeds): not a result"
        for n, k, m in zip(curve["n"] if len(curve) else [], converged, seeds)
    ]
    marker = {
        "symbol": ["circle" if k else "x" for k in converged],
        "size": [7 if k else 11 for k in converged],
    }
    traces = []
    for j, col in enumerate(CURVE_COLUMNS, start=1):
        axis = "" if j == 1 else str(j)
        mean = curve[f"{col}_mean"].to_numpy(dtype=float) if len(curve) else _E
        sd = curve[f"{col}_sd"].to_numpy(dtype=float) if len(curve) else _E
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "grid (mean ± sd over seeds)",
                "showlegend": j == 1,
                "legendgroup": "curve",
                "line": {"color": COLORS.get(col, "#444")},
                "marker": marker,
                "x": xs,
                "y": mean,
                "error_y": {"type": "data", "array": sd, "visible": True},
                "customdata": seeds_text,
                "xaxis": f"x{axis}",
                "yaxis": f"y{axis}",
                "hovertemplate": f"{knob} %{{text}}<br>{col} %{{y:.4g}} ± %{{error_y.array:.2g}}"
                "<br>%{customdata}<extra></extra>",
                "text": [f"{native_value(v)}" for v in curve[knob]] if len(curve) else [],
            }
        )
    return traces


def _here_traces(cur: Setting | None, knob: str, pos: dict) -> list[dict]:
    """The "you are here" star of the setting on screen, one per subplot."""
    here_x = [pos.get(native_value(getattr(cur.config, knob)), np.nan)] if cur is not None else []
    traces = []
    for j, col in enumerate(CURVE_COLUMNS, start=1):
        axis = "" if j == 1 else str(j)
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "you are here",
                "showlegend": j == 1,
                "legendgroup": "here",
                "marker": {
                    "symbol": "star",
                    "size": 16,
                    "color": CURRENT,
                    "line": {"color": "black", "width": 1},
                },
                "x": here_x,
                "y": [get_path(cur, col)] if cur is not None else [],
                "xaxis": f"x{axis}",
                "yaxis": f"y{axis}",
                "hovertemplate": f"you are here<br>{col} %{{y:.4g}}<extra></extra>",
            }
        )
    return traces


def _sweep_layout(curve: pd.DataFrame, knob: str, options: list, unconverged: int) -> dict:
    """The sweep panel's title (points on the grid, unconverged ones) and its knob axes."""
    label = KNOB_TEXT.get(knob, knob)
    ticks = {
        "tickmode": "array",
        "tickvals": list(range(len(options))),
        "ticktext": [f"{v:g}" for v in options],
        "range": [-0.4, max(len(options) - 0.6, 0.4)],
        "title": {"text": label},
    }
    layout = {
        "title.text": f"<b>Sweep of {label}</b>, the other knobs as set above "
        f"({len(curve)} of {len(options)} values on the grid"
        + (
            f'; <span style="color:{WARNING}">{unconverged} not converged (×): not results</span>'
            if unconverged
            else ""
        )
        + ")"
    }
    for j in range(1, 4):
        layout[f"xaxis{'' if j == 1 else j}"] = ticks
    return layout


def sweep_traces(
    curve: pd.DataFrame, knob: str, options: list, cur: Setting | None
) -> tuple[list[dict], dict]:
    """Sweep panel: gap, sharpness, size along ``knob`` (mean ± sd over seeds), "you are here"."""
    pos = {v: i for i, v in enumerate(options)}
    xs = (
        np.array([pos.get(native_value(v), np.nan) for v in curve[knob]], dtype=float)
        if len(curve)
        else _E
    )
    converged, seeds = _seed_counts(curve)
    traces = [
        *_curve_traces(curve, knob, xs, converged, seeds),
        *_here_traces(cur, knob, pos),
    ]
    unconverged = int((converged == 0).sum())
    return traces, _sweep_layout(curve, knob, options, unconverged)


def _sweep_frame() -> go.Figure:
    fig = _subplots(3, ("real gap (nats)", "sharpness Σσg²", "size Σσw²"))
    return fig


def sweep_figure(grid: KnobGrid, knob: str, values: Mapping[str, Any] | None = None) -> go.Figure:
    """Static sweep panel of ``knob`` with the other knobs at ``values`` (default setting)."""
    values = {**grid.defaults, **dict(values or {})}
    traces, layout = sweep_traces(
        grid.curve(knob, values), knob, grid.values[knob], grid.lookup(values)
    )
    layout["title.text"] = layout["title.text"].replace("as set above", "held")
    return build_figure("sweep", traces, layout)


FRAMES = {
    "sharpness": _sharpness_frame,
    "size": _size_frame,
    "gap": _gap_frame,
    "sweep": _sweep_frame,
}


def build_figure(panel: str, traces: list[dict], layout: dict) -> go.Figure:
    """A static figure of one panel from its traces and layout updates."""
    fig = FRAMES[panel]()
    kinds = {"scatter": go.Scatter, "bar": go.Bar}
    fig.add_traces(
        [kinds[t["type"]](**{k: v for k, v in t.items() if k != "type"}) for t in traces]
    )
    fig.update_layout(nested(layout))
    return fig


def nested(flat: Mapping[str, Any]) -> dict:
    """{"title.text": t, "xaxis2": {...}} -> {"title": {"text": t}, "xaxis2": {...}}."""
    out: dict = {}
    for key, value in flat.items():
        parts = key.split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    return out
