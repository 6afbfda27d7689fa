"""Figures of one knob's sweep (docs/science.md section 6, figure 4): the gap and its
sharp/flat split, the factors, any metric and the (size, sharpness) plane against the knob.

Means and 95 % confidence intervals are over converged seeds only (``sweep_stats``);
unconverged runs are drawn hollow grey and a knob value without a converged run is labelled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from awbench.viz.gap_plots import COLORS, LABELS, knob_label, layout
from awbench.viz.sweep_stats import (
    error_bars,
    mark_empty,
    seed_counts,
    seed_stats,
    split_runs,
    spread,
    titled,
    unconverged_marks,
)

# Knobs whose values span a factor of 8 or more read best on a log axis.
LOG_KNOBS = ("batch_size", "lr", "n_train")


def _x_axis(fig: go.Figure, knob: str, values, **kw) -> None:
    vals = sorted({float(v) for v in values})
    log = knob in LOG_KNOBS and len(vals) > 1 and vals[0] > 0 and vals[-1] / vals[0] >= 8
    fig.update_xaxes(
        title_text=knob_label(knob),
        type="log" if log else "linear",
        tickvals=vals,
        ticktext=[f"{v:g}" for v in vals],
        **kw,
    )


def _is_log(knob: str, x) -> bool:
    x = np.asarray(x, dtype=float)
    return bool(knob in LOG_KNOBS and len(x) > 1 and x.min() > 0 and x.max() / x.min() >= 8)


def gap_vs_knob(runs: pd.DataFrame, knob: str, title: str | None = None) -> go.Figure:
    """figure 4 of docs/science.md#9-figure-map: the gap against one knob, mean ± 95 % CI over converged seeds, with
    the sharp/flat split.

    Stacked bars show the sharp and flat parts (their sum is the exact pair gap); lines show
    the real gap, the pair gap and the Σ cσσ estimate. Unconverged runs appear as hollow grey
    circles at their real gap; a value with no converged run keeps grey bars (the mean of its
    unconverged runs, for orientation only) and no point on the lines.
    """
    cols = ["real_gap", "pair_gap", "estimated_gap", "sharp_gap", "flat_gap"]
    s = seed_stats(runs, knob, cols)
    _, uncon = split_runs(runs)
    x = s[knob].to_numpy()
    is_log = _is_log(knob, x)
    fig = go.Figure()
    _add_split_parts(fig, s, uncon, knob, cols, is_log)
    _add_gap_lines(fig, s, knob)
    if len(uncon):
        fig.add_trace(
            unconverged_marks(
                uncon,
                knob,
                "real_gap",
                "real gap %{y:.4g} nats",
                knob=knob,
                numbers={"pair_gap": "pair gap ⟨Δl⟩", "estimated_gap": "estimate Σ cσσ"},
            )
        )
    if not is_log:
        fig.update_layout(barmode="stack")
    _x_axis(fig, knob, x)
    mark_empty(fig, s, knob, is_log)
    fig.update_yaxes(title_text="generalization gap (nats)")
    text = (
        title
        or f"Gap against {knob_label(knob)} (mean ± 95 % CI over {seed_counts(s, 'pair_gap')})"
    )
    return layout(fig, titled(text, runs), legend="below", height=520)


def _add_split_parts(
    fig: go.Figure,
    s: pd.DataFrame,
    uncon: pd.DataFrame,
    knob: str,
    cols: Sequence[str],
    is_log: bool,
) -> None:
    """The sharp and flat parts per knob value (stacked bars), and greyed ones at the values
    without a converged run (the mean of their unconverged runs)."""
    x = s[knob].to_numpy()
    n_uncon = uncon.groupby(knob).size().reindex(s[knob]).fillna(0).astype(int).to_numpy()
    grey = (s["n_converged"] == 0).to_numpy() & (n_uncon > 0)
    uncon_mean = uncon.groupby(knob)[list(cols)].mean().reindex(s[knob])
    for key, grey_color in (("sharp_gap", "#999"), ("flat_gap", "#cfcfcf")):
        hover = f"{LABELS[key]}<br>{knob} %{{x}}<br>%{{y:.4g}} nats<br>%{{customdata[0]}}<extra></extra>"
        parts = [(LABELS[key], True, x, s[f"{key}_mean"], COLORS[key], spread(s, key, " nats"))]
        if grey.any():
            ys = uncon_mean[key].to_numpy()[grey]
            parts.append(_greyed_part(key, x[grey], ys, grey_color, n_uncon[grey]))
        for name, counted, xs, ys, color, custom in parts:
            err = error_bars(s, key) if counted else None
            trace = _part_trace(xs, ys, color, counted, err, is_log)
            trace.update(name=name, customdata=custom, hovertemplate=hover)
            fig.add_trace(trace)


def _greyed_part(key: str, xs, ys, color: str, counts) -> tuple:
    """A part drawn at values without a converged run, with the hover saying why it is grey."""
    why = [
        f"no converged run: greyed, the mean of {k} unconverged run{'s' if k != 1 else ''}, "
        "left out of every statistic"
        for k in counts
    ]
    name = f"{LABELS[key].split(' (')[0]}: no converged run (greyed)"
    return (name, False, xs, ys, color, np.array(why, dtype=object).reshape(-1, 1))


def _part_trace(xs, ys, color: str, counted: bool, err, is_log: bool) -> go.Scatter | go.Bar:
    """One part as a bar, or as square markers on a log axis (bars at numeric x vanish there)."""
    if is_log:
        return go.Scatter(
            x=xs,
            y=ys,
            mode="markers+lines" if counted else "markers",
            marker={"color": color, "size": 9, "symbol": "square"},
            line={"color": color, "width": 1, "dash": "dot"},
            error_y=err,
        )
    return go.Bar(x=xs, y=ys, marker_color=color, opacity=0.45 if counted else 0.7)


def _add_gap_lines(fig: go.Figure, s: pd.DataFrame, knob: str) -> None:
    """The real gap, the pair gap and the Σ cσσ estimate: mean ± 95 % CI lines."""
    x = s[knob].to_numpy()
    for key, dash in (("real_gap", "solid"), ("pair_gap", "dash"), ("estimated_gap", "dot")):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=s[f"{key}_mean"],
                mode="markers+lines",
                name=f"{LABELS[key]}, mean ± 95 % CI",
                line={"color": COLORS[key], "dash": dash},
                marker={"size": 8, "color": COLORS[key]},
                error_y=error_bars(s, key),
                customdata=spread(s, key, " nats"),
                hovertemplate=f"{LABELS[key]}<br>{knob} %{{x}}<br>mean %{{y:.4g}} nats<br>%{{customdata[0]}}<extra></extra>",
            )
        )


def factors_vs_knob(runs: pd.DataFrame, knob: str, title: str | None = None) -> go.Figure:
    """Sharpness Σσg², size Σσw² and the layer weight norm against one knob, mean ± 95 % CI
    over converged seeds; unconverged runs as hollow grey circles."""
    keys = ["sharpness", "size", "weight_norm"]
    s = seed_stats(runs, knob, keys)
    _, uncon = split_runs(runs)
    log = _is_log(knob, s[knob])
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=[LABELS[k] for k in keys], horizontal_spacing=0.08
    )
    for i, key in enumerate(keys, start=1):
        fig.add_trace(
            go.Scatter(
                x=s[knob],
                y=s[f"{key}_mean"],
                mode="markers+lines",
                name=f"{LABELS[key]}, mean ± 95 % CI",
                marker={"color": COLORS[key], "size": 8},
                line={"color": COLORS[key]},
                error_y=error_bars(s, key),
                customdata=spread(s, key),
                hovertemplate=f"{LABELS[key]}<br>{knob} %{{x}}<br>mean %{{y:.4g}}<br>%{{customdata[0]}}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=i,
        )
        if len(uncon):
            fig.add_trace(
                unconverged_marks(
                    uncon,
                    knob,
                    key,
                    f"{LABELS[key]} %{{y:.4g}}",
                    knob=knob,
                    legendgroup="unconverged",
                    showlegend=i == 1,
                ),
                row=1,
                col=i,
            )
        _x_axis(fig, knob, s[knob], row=1, col=i)
        axis = "" if i == 1 else str(i)
        mark_empty(fig, s, knob, log, xref=f"x{axis}", yref=f"y{axis}")
    fig.update_yaxes(title_text="Σ σg²", row=1, col=1)
    fig.update_yaxes(title_text="Σ σw²", row=1, col=2)
    fig.update_yaxes(title_text="‖W‖_F", row=1, col=3)
    text = title or f"Which factor moves with {knob_label(knob)} (mean ± 95 % CI of converged runs)"
    return layout(fig, titled(text, runs), legend="below", height=420)


def metric_vs_knob(
    runs: pd.DataFrame, knob: str, metric: str, title: str | None = None
) -> go.Figure:
    """One Analysis scalar (e.g. ``test_error``) against a knob, mean ± 95 % CI over converged
    seeds, with every converged run as a faint dot and every unconverged one hollow grey."""
    s = seed_stats(runs, knob, [metric])
    conv, uncon = split_runs(runs)
    label = LABELS.get(metric, metric)
    fig = go.Figure(
        go.Scatter(
            x=conv[knob],
            y=conv[metric],
            mode="markers",
            name="converged runs",
            marker={"size": 6, "color": "#9ecae1"},
            customdata=conv[["seed"]].to_numpy() if "seed" in conv else None,
            hovertemplate=f"{knob} %{{x}} seed %{{customdata[0]}}<br>{metric} %{{y:.4g}}<extra></extra>",
        )
    )
    if len(uncon):
        fig.add_trace(unconverged_marks(uncon, knob, metric, f"{metric} %{{y:.4g}}", knob=knob))
    fig.add_trace(
        go.Scatter(
            x=s[knob],
            y=s[f"{metric}_mean"],
            mode="markers+lines",
            name="mean ± 95 % CI (converged)",
            marker={"size": 9, "color": "#1f77b4"},
            error_y=error_bars(s, metric),
            customdata=spread(s, metric),
            hovertemplate=f"{knob} %{{x}}<br>mean {metric} %{{y:.4g}}<br>%{{customdata[0]}}<extra></extra>",
        )
    )
    _x_axis(fig, knob, s[knob])
    mark_empty(fig, s, knob, _is_log(knob, s[knob]))
    fig.update_yaxes(title_text=label)
    text = title or f"{label} against {knob_label(knob)}"
    return layout(fig, titled(text, runs), legend="below", height=420)


def point_label(knob: str, value: float) -> str:
    """A knob value as a marker's label: by the knob's symbol (``B = 400``, ``α = 0.1``), else
    by its name (``training samples (clean) = 1000``)."""
    symbol = knob_label(knob).rsplit(" ", 1)[-1]
    return f"{symbol if len(symbol) <= 2 else knob_label(knob)} = {value:g}"


def factor_plane(runs: pd.DataFrame, knob: str, title: str | None = None) -> go.Figure:
    """Every run in the (size, sharpness) plane: converged ones coloured by their real gap,
    unconverged ones hollow grey. The mean path over the knob's values (converged runs, with
    95 % CIs of both means) is drawn as a line with the values as labels."""
    s = seed_stats(runs, knob, ["sharpness", "size", "real_gap"])
    conv, uncon = split_runs(runs)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=conv["size"],
            y=conv["sharpness"],
            mode="markers",
            name="converged runs",
            marker={
                "size": 8,
                "color": conv["real_gap"],
                "colorscale": "Plasma",
                "colorbar": {"title": "real gap"},
                "line": {"width": 0.5, "color": "#333"},
            },
            customdata=np.stack([conv[knob], conv["seed"], conv["real_gap"]], 1)
            if "seed" in conv
            else None,
            hovertemplate=f"{knob} %{{customdata[0]}} seed %{{customdata[1]}}<br>size %{{x:.4g}}<br>"
            "sharpness %{y:.4g}<br>real gap %{customdata[2]:.4g}<extra></extra>",
        )
    )
    if len(uncon):
        fig.add_trace(
            unconverged_marks(
                uncon,
                "size",
                "sharpness",
                "size %{x:.4g}<br>sharpness %{y:.4g}",
                knob=knob,
                numbers={"real_gap": "real gap"},
            )
        )
    has = s["n_converged"] > 0
    fig.add_trace(
        go.Scatter(
            x=s["size_mean"],
            y=s["sharpness_mean"],
            mode="lines+markers+text",
            name="mean over converged seeds ± 95 % CI",
            text=[point_label(knob, v) if h else "" for v, h in zip(s[knob], has)],
            # right of the vertical error bar, above the horizontal one
            textposition="top right",
            line={"color": "#333", "width": 1.5},
            marker={"symbol": "x", "size": 9, "color": "#333"},
            error_x={**error_bars(s, "size"), "thickness": 1, "color": "#333"},
            error_y={**error_bars(s, "sharpness"), "thickness": 1, "color": "#333"},
            customdata=np.concatenate([spread(s, "size"), spread(s, "sharpness")], 1),
            hovertemplate="%{text}<br>size %{x:.4g} %{customdata[0]}<br>"
            "sharpness %{y:.4g} %{customdata[1]}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="size Σ σw²")
    fig.update_yaxes(title_text="sharpness Σ σg²")
    text = title or f"Sharpness against size as {knob_label(knob)} varies"
    # Below, not beside: the colour bar holds the right-hand side.
    return layout(fig, titled(text, runs), legend="below", height=500)
