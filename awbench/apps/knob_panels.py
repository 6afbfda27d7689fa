"""The panels of notebook 08's knob widget: pure builders, settings in, traces and text out.

Each panel is a ``*_traces`` function (plotly trace dicts and flat layout updates, which the
live :class:`~awbench.apps.widgets.KnobPanel` writes into its ``FigureWidget``) and a frame
(:func:`build_figure` puts the two together into a static figure, for a headless run):

- sharpness: the sigma_g spectrum, the top eigenvalues of the layer Hessian, and the loss
  along its top eigenvector with the quadratic model 1/2 lam t^2;
- size: the sigma_w spectrum (in sigma_g order) and the layer's weight norm;
- gap: real gap vs the exact pair gap and the sum c sigma_g sigma_w estimate; sharp vs flat;
- sweep: real gap, sharpness and size along one knob (mean and spread over the converged
  seeds), with a "you are here" marker.

Also here: the sentences about a setting or the grid that are not tied to the widget (why a
run did not converge, which factor each knob moves most).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from awbench.apps.knob_grid import (
    CURVE_COLUMNS,
    KNOB_TEXT,
    KnobGrid,
    Setting,
    _fmt,
    _native,
)
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


def _get(s: Setting | None, name: str) -> float:
    return float("nan") if s is None else s.scalars.get(name, float("nan"))


def _log_range(*arrays: np.ndarray, decades: float = 5.0) -> list[float] | None:
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


def sharpness_traces(cur: Setting | None, ref: Setting | None) -> tuple[list[dict], dict]:
    """Sharpness panel: sigma_g spectrum, top layer-Hessian eigenvalues, loss slice."""
    r, c = ref, cur

    def n_lam(s: Setting | None) -> np.ndarray:
        return np.arange(1, len(s.top_lam) + 1) if s is not None else _E

    rank_hover, slice_hover = "rank %{x}<br>σg %{y:.3g}", "t %{x:.3g}<br>loss %{y:.4g}"
    default = {"color": REFERENCE, "dash": "dot", "group": "ref"}
    traces = [
        _line(
            _field(r, "rank"),
            _field(r, "sigma_g"),
            "",
            rank_hover,
            "default",
            name="default setting",
            **default,
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
            n_lam(r),
            _field(r, "top_lam"),
            "2",
            "λ%{x} = %{y:.3g}",
            "default",
            marker_size=6,
            **default,
        ),
        _line(
            n_lam(c),
            _field(c, "top_lam"),
            "2",
            "λ%{x} = %{y:.3g}",
            "this setting",
            CURRENT,
            group="cur",
            marker_size=7,
        ),
        _line(
            _field(r, "slice_t"), _field(r, "slice_loss"), "3", slice_hover, "default", **default
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
    layer = (c or r).config.layer if (c or r) is not None else "layer"
    title = _unconverged_flag(c, r) + (
        f"<b>Sharpness</b>  Σσg² = {_fmt(_get(c, 'sharpness'))} "
        f"(default {_fmt(_get(r, 'sharpness'))}) · λmax of the {layer} Hessian = "
        f"{_fmt(_get(c, 'lam_max'))} (default {_fmt(_get(r, 'lam_max'))})"
    )
    ymax = [np.max(s.slice_loss) for s in (c, r) if s is not None and len(s.slice_loss)]
    ymin = [np.min(s.slice_loss) for s in (c, r) if s is not None and len(s.slice_loss)]
    layout = {
        "title.text": title,
        "yaxis.range": _log_range(*(x.sigma_g for x in (c, r) if x is not None)),
    }
    if ymax:  # the quadratic may shoot far above the slice: frame the slices
        span = max(ymax) - min(ymin)
        layout["yaxis3.range"] = [min(ymin) - 0.05 * span, max(ymax) + 0.1 * span]
    return traces, layout


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
            "y": [_get(r, "weight_norm"), _get(c, "weight_norm")],
            "text": [_fmt(_get(r, "weight_norm")), _fmt(_get(c, "weight_norm"))],
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
            "y": [_get(r, "size"), _get(c, "size")],
            "text": [_fmt(_get(r, "size")), _fmt(_get(c, "size"))],
            "textposition": "auto",
            "xaxis": "x3",
            "yaxis": "y3",
            "hovertemplate": "%{x}: Σσw² = %{y:.4g}<extra></extra>",
        },
    ]
    title = _unconverged_flag(c, r) + (
        f"<b>Size</b>  Σσw² = {_fmt(_get(c, 'size'))} (default {_fmt(_get(r, 'size'))})"
        f" · ‖W‖F = {_fmt(_get(c, 'weight_norm'))} (default {_fmt(_get(r, 'weight_norm'))})"
    )
    return traces, {
        "title.text": title,
        "yaxis.range": _log_range(*(x.sigma_w for x in (c, r) if x is not None)),
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
        return [_get(s, "real_gap"), _get(s, "pair_gap"), _get(s, "estimated_gap")]

    sharp = [_get(r, "sharp_gap"), _get(c, "sharp_gap")]
    flat = [_get(r, "flat_gap"), _get(c, "flat_gap")]
    traces = [
        {
            "type": "bar",
            "name": "default setting",
            "marker": {"color": REFERENCE},
            "x": list(GAP_BARS),
            "y": vals(r),
            "text": [_fmt(v) for v in vals(r)],
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
            "text": [_fmt(v) for v in vals(c)],
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
            "text": [_fmt(v) for v in sharp],
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
            "text": [_fmt(v) for v in flat],
            "textposition": "inside",
            "hovertemplate": "%{x}: flat part %{y:.4g} nats<extra></extra>",
        },
    ]
    share = _get(c, "sharp_gap") / _get(c, "pair_gap") if _get(c, "pair_gap") else float("nan")
    title = _unconverged_flag(c, r) + (
        f"<b>Gap</b>  real {_fmt(_get(c, 'real_gap'))} nats "
        f"(default {_fmt(_get(r, 'real_gap'))}) · estimate {_fmt(_get(c, 'estimated_gap'))} · "
        f"sharp directions carry {_fmt(100 * share, 2)} % · "
        f"test error {_fmt(100 * _get(c, 'test_error'), 3)} %"
    )
    return traces, {"title.text": title}


def _gap_frame() -> go.Figure:
    fig = _subplots(
        2,
        ("real gap and its decomposition (nats)", "sharp vs flat directions (nats)"),
        widths=[0.55, 0.45],
    )
    return fig


def sweep_traces(
    curve: pd.DataFrame, knob: str, options: list, cur: Setting | None
) -> tuple[list[dict], dict]:
    """Sweep panel: gap, sharpness, size along ``knob`` (mean ± sd over seeds), "you are here"."""
    pos = {v: i for i, v in enumerate(options)}
    xs = (
        np.array([pos.get(_native(v), np.nan) for v in curve[knob]], dtype=float)
        if len(curve)
        else _E
    )
    has_counts = len(curve) and "converged" in curve
    converged = curve["converged"].to_numpy() if has_counts else np.ones(len(curve), dtype=int)
    seeds = curve["seeds"].to_numpy() if has_counts else curve["n"].to_numpy()
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
    unconverged = int((converged == 0).sum())
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
                "text": [f"{_native(v)}" for v in curve[knob]] if len(curve) else [],
            }
        )
    here_x = [pos.get(_native(getattr(cur.config, knob)), np.nan)] if cur is not None else []
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
                "y": [_get(cur, col)] if cur is not None else [],
                "xaxis": f"x{axis}",
                "yaxis": f"y{axis}",
                "hovertemplate": f"you are here<br>{col} %{{y:.4g}}<extra></extra>",
            }
        )
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
    return traces, layout


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
    fig.update_layout(_nested(layout))
    return fig


def _nested(flat: Mapping[str, Any]) -> dict:
    """{"title.text": t, "xaxis2": {...}} -> {"title": {"text": t}, "xaxis2": {...}}."""
    out: dict = {}
    for key, value in flat.items():
        parts = key.split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    return out


# --- sentences ----------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.0f} %"


def not_converged_reason(s: Setting) -> str:
    """Why a run is not a result, e.g. "stopped at the budget of 150 epochs with train loss
    0.0037 > 0.001"."""
    cfg = s.config
    if s.epoch_budget and s.epochs >= s.epoch_budget:
        where = f"stopped at the budget of {s.epoch_budget} epochs"
    else:
        where = f"stopped after {s.epochs} of {s.epoch_budget} epochs"
    loss, acc = s.final_train_loss, s.final_train_acc
    if math.isfinite(loss) and loss >= cfg.stop_loss:
        why = f"train loss {_fmt(loss)} {'>' if loss > cfg.stop_loss else '='} {cfg.stop_loss:g}"
    elif math.isfinite(acc) and acc <= cfg.stop_acc:
        why = f"train accuracy {_fmt(acc, 4)} ≤ {cfg.stop_acc:g}"
    elif math.isfinite(loss):
        why = (
            f"train loss {_fmt(loss)} but a mean train accuracy over the last "
            f"{cfg.stop_window} epochs ≤ {cfg.stop_acc:g}"
        )
    else:
        why = "the stopping rule not met"
    return f"{where} with {why}"


def warnings_of(s: Setting) -> list[str]:
    """The warnings the panel shows for a setting: the run on screen not converged, seeds
    of its grid point not converged. Empty for a converged run at a converged point."""
    out = []
    if not s.converged:
        out.append(f"⚠ not converged: {not_converged_reason(s)} — its numbers are not a result")
    p = s.point
    if p is not None and p.n > 1 and p.n_converged < p.n:
        if p.converged:
            missed = ", ".join(str(x) for x in p.seeds if x not in p.converged_seeds)
            out.append(
                f"⚠ {p.n - p.n_converged}/{p.n} seeds at this point did not converge (seed "
                f"{missed}): the grid's means here average the {p.n_converged} that did"
            )
        else:
            out.append(
                f"⚠ none of the {p.n} seeds at this point converged: the grid's numbers "
                "here are not a result"
            )
    return out


def _effect_line(r: Mapping[str, Any]) -> str | None:
    """A Markdown list item for one row of :func:`~awbench.apps.knob_grid.grid_effects`
    (None: nothing to say)."""
    left = int(r.get("left_out", 0) or 0)
    note = (
        f" ({left} unconverged point{'s' if left > 1 else ''} left out: {r['left_out_values']})"
        if left
        else ""
    )
    label = KNOB_TEXT.get(r["knob"], r["knob"])
    if not math.isfinite(r["sharpness_change"]) or not math.isfinite(r["size_change"]):
        return (
            f"- **{label}**: no comparison, fewer than two points converged{note}" if left else None
        )
    lead = "sharpness" if abs(r["sharpness_change"]) > abs(r["size_change"]) else "size"
    return (
        f"- **{label}** {r['values']}: gap {_pct(r['real_gap_change'])}, "
        f"sharpness {_pct(r['sharpness_change'])}, size {_pct(r['size_change'])} → mostly "
        f"**{lead}**{note}"
    )


def effects_takeaway(effects: pd.DataFrame) -> str:
    """Markdown: which factor each knob of the grid moves most (from
    :func:`~awbench.apps.knob_grid.grid_effects`), saying which points were left out because
    none of their seeds converged."""
    rows = [r._asdict() for r in effects.itertuples(index=False)]
    lines = [line for line in map(_effect_line, rows) if line is not None]
    left_total = effects.attrs.get(
        "left_out_points", sum(int(r.get("left_out", 0) or 0) for r in rows)
    )
    held = effects.attrs.get("held", "at the default")
    text = (
        f"Along each knob of the grid (other knobs {held}, mean over the converged seeds):\n\n"
        + ("\n".join(lines) if lines else "- no knob has two points to compare")
    )
    if left_total:
        text += (
            f"\n\n**⚠ {left_total} point{'s' if left_total > 1 else ''} left out:** none of "
            "their seeds met the stopping rule, so their numbers are not results."
        )
    return text
