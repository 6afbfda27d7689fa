"""The house style of every gap figure, and the figures that summarise many runs at once
(docs/science.md section 6: figures 2 and 5, and what each knob did).

Every builder in ``awbench.viz`` is a pure function: tables or arrays in, a
``plotly.graph_objects.Figure`` out, with a title, labelled axes (units: gaps and losses in
nats, eigenvalues in nats per unit weight squared) and hover text. Nothing here trains, reads
files or mutates its inputs, so the same builder serves a notebook, the headless report and a
``FigureWidget``. This module holds what they share (template, colours, labels, layout); the
figures live by job in ``decomposition_plots`` (one run, figures 3 and 6), ``duality_plots``
(figure 1), ``curvature_plots`` (the Hessian checks) and ``knob_plots`` (one knob's sweep,
figure 4); which runs count and their statistics over seeds in ``sweep_stats``.

Sweep tables are one row per run with (at least) the knob's column, ``seed`` and the Analysis
scalars (``real_gap``, ``pair_gap``, ``estimated_gap``, ``sharp_gap``, ``flat_gap``,
``sharpness``, ``size``, ``weight_norm`` ...), and normally ``status``, ``ok`` and
``converged``. An unconverged network is not a result (docs/science.md#5): the sweep builders
draw such runs as hollow grey markers ("not converged (left out)") and compute every mean,
error bar, fit and correlation over converged runs only. Error bars are the 95 % confidence
interval of the mean over seeds (Student t, ``t × sd / √n``); a single converged run has none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from awbench.viz.sweep_stats import UNCONVERGED_COLOR, split_runs, titled, unconverged_marks


def _house_template() -> go.layout.Template:
    """plotly_white, with every cartesian axis ticking in numbers: plotly's default exponent
    format labels 1e-15 as "1f" and 1e-4 as "100µ" (SI prefixes); "power" writes 10⁻¹⁵."""
    template = go.layout.Template(pio.templates["plotly_white"])
    template.layout.xaxis.exponentformat = "power"
    template.layout.yaxis.exponentformat = "power"
    return template


TEMPLATE = _house_template()
COLORS = {
    "real_gap": "#222222",
    "pair_gap": "#1f77b4",
    "estimated_gap": "#ff7f0e",
    "sharp_gap": "#d62728",
    "flat_gap": "#2ca02c",
    "complement_gap": "#98df8a",
    "mean_term": "#9467bd",
    "second_order_gap": "#8c564b",
    "sharpness": "#d62728",
    "size": "#1f77b4",
    "weight_norm": "#7f7f7f",
}
LABELS = {
    "real_gap": "real gap (test CE − train CE)",
    "pair_gap": "pair gap ⟨Δl⟩ (exact identity)",
    "estimated_gap": "estimate Σ c σg σw",
    "sharp_gap": "sharp part (top directions)",
    "flat_gap": "flat part (other computed directions)",
    "complement_gap": "complement (beyond the computed directions)",
    "mean_term": "mean term Σ μg μw",
    "second_order_gap": "second-order reading",
    "sharpness": "sharpness Σ σg²",
    "size": "size Σ σw²",
    "weight_norm": "layer weight norm ‖W‖_F",
    "test_error": "test error",
}
KNOB_LABELS = {
    "batch_size": "batch size B",
    "lr": "learning rate α",
    "weight_decay": "weight decay β",
    "init_scale": "init scale s",
    "dropout": "dropout d",
    "label_noise": "label noise ρ",
    "n_train": "training samples (clean)",
}


def knob_label(knob: str) -> str:
    return KNOB_LABELS.get(knob, knob)


def diagonal(ends: Sequence[float], name: str) -> go.Scatter:
    """The grey dashed y = x reference line through ``ends``."""
    return go.Scatter(
        x=ends,
        y=ends,
        mode="lines",
        name=name,
        line={"color": "#888", "dash": "dash"},
        hoverinfo="skip",
    )


# Legend beside the plot (top-aligned) or under it: either way it never shares the top
# margin with the title, which a horizontal legend above the plot did as soon as it was wide.
_LEGENDS = {
    "right": {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"},
    # yref "container" makes plotly reserve the legend's height below the x-axis title.
    "below": {
        "orientation": "h",
        "xref": "paper",
        "x": 0,
        "xanchor": "left",
        "yref": "container",
        "y": 0,
        "yanchor": "bottom",
    },
}


def number_ticks(fig: go.Figure) -> go.Figure:
    """Set every cartesian axis (log ones above all) to tick in numbers (10⁻³), never in SI
    prefixes (1m, 100µ, 1f); explicit on each axis so an exported figure keeps it."""
    fig.for_each_xaxis(lambda axis: axis.update(exponentformat="power"))
    fig.for_each_yaxis(lambda axis: axis.update(exponentformat="power"))
    return fig


def layout(fig: go.Figure, title: str, legend: str = "right", **kw) -> go.Figure:
    """The house layout: template, title top left, legend beside or below the plot (never in
    the title's margin) and axes that tick in numbers."""
    number_ticks(fig)
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template=TEMPLATE,
        hovermode="closest",
        legend=_LEGENDS[legend],
        margin={"t": 100 if "<br>" in title else 80, "l": 70, "r": 30, "b": 60},
        **kw,
    )
    return fig


# --- many runs at once (figures 2, 5) ----------------------------------------------------


def estimated_vs_actual(
    runs: pd.DataFrame,
    color: str | None = None,
    title: str = "Estimated against actual gap, every run",
) -> go.Figure:
    """figure 2 of docs/science.md#9-figure-map: the identity total ⟨Δl⟩ (circles) and the Σ cσσ estimate (crosses)
    against the real gap, one point per run, grouped by ``color`` (e.g. the swept knob).
    Unconverged runs are drawn as hollow grey circles and crosses, in no group."""
    conv, uncon = split_runs(runs)
    fig = go.Figure()
    groups = [("converged runs", conv)] if color is None else list(conv.groupby(color, sort=False))
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#17becf",
    ]
    hover_cols = [c for c in ("knob", "value", "seed") if c in runs.columns]
    for i, (name, g) in enumerate(groups):
        col = palette[i % len(palette)]
        custom = g[hover_cols].astype(str).to_numpy() if hover_cols else None
        extra = "".join(f"<br>{c} %{{customdata[{j}]}}" for j, c in enumerate(hover_cols))
        for key, symbol in (("pair_gap", "circle"), ("estimated_gap", "x")):
            fig.add_trace(
                go.Scatter(
                    x=g["real_gap"],
                    y=g[key],
                    mode="markers",
                    name=f"{name}: {LABELS[key].split(' (')[0]}",
                    legendgroup=str(name),
                    marker={
                        "color": col,
                        "symbol": symbol,
                        "size": 8,
                        "line": {"width": 1} if symbol == "circle" else None,
                    },
                    customdata=custom,
                    hovertemplate=f"{LABELS[key]}{extra}<br>real %{{x:.4g}}<br>value %{{y:.4g}}<extra></extra>",
                )
            )
    for key, symbol in (("pair_gap", "circle-open"), ("estimated_gap", "x-open")):
        if len(uncon):
            fig.add_trace(
                unconverged_marks(
                    uncon,
                    "real_gap",
                    key,
                    f"real gap %{{x:.4g}}<br>{LABELS[key].split(' (')[0]} %{{y:.4g}}",
                    symbol=symbol,
                    legendgroup="unconverged",
                    showlegend=key == "pair_gap",
                )
            )
    drawn = pd.concat([conv, uncon])
    vals = pd.concat([drawn["real_gap"], drawn["pair_gap"], drawn["estimated_gap"]]).astype(float)
    vals = vals[np.isfinite(vals)]
    # Gaps spanning more than a decade (label noise) read best on log axes.
    log = bool(len(vals)) and float(vals.min()) > 0 and float(vals.max()) / float(vals.min()) > 10
    if len(vals):
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.05 * (hi - lo if hi > lo else 1.0)
        lo, hi = (lo / 1.1, hi * 1.1) if log else (lo - pad, hi + pad)
        fig.add_trace(diagonal([lo, hi], "y = x"))
    axis = "log" if log else "linear"
    fig.update_xaxes(title_text="real gap: test CE − clean-train CE (nats)", type=axis)
    fig.update_yaxes(title_text="decomposition (nats)", type=axis)
    return layout(fig, titled(title, runs), height=520)


def size_vs_weight_norm(
    runs: pd.DataFrame, color: str | None = "knob", title: str | None = None
) -> go.Figure:
    """figure 5 of docs/science.md#9-figure-map: size Σσw² against the layer's weight norm (log-log) with the
    least-squares power law over converged runs; dual weights are linear in W, so slope 2 at
    fixed activities. Unconverged runs are drawn hollow grey and left out of the fit."""
    r = runs[(runs["size"] > 0) & (runs["weight_norm"] > 0)]
    conv, uncon = split_runs(r)
    fig = go.Figure()
    if color is not None and color not in conv:
        color = None
    groups = [("converged runs", conv)] if color is None else list(conv.groupby(color, sort=False))
    for name, g in groups:
        custom_cols = [c for c in ("knob", "value", "seed") if c in g.columns]
        extra = "".join(f"<br>{c} %{{customdata[{j}]}}" for j, c in enumerate(custom_cols))
        fig.add_trace(
            go.Scatter(
                x=g["weight_norm"],
                y=g["size"],
                mode="markers",
                name=str(name),
                marker={"size": 8},
                customdata=g[custom_cols].astype(str).to_numpy() if custom_cols else None,
                hovertemplate=f"{name}{extra}<br>‖W‖ %{{x:.4g}}<br>size %{{y:.4g}}<extra></extra>",
            )
        )
    if len(uncon):
        fig.add_trace(
            unconverged_marks(uncon, "weight_norm", "size", "‖W‖ %{x:.4g}<br>size %{y:.4g}")
        )
    slope = float("nan")
    if len(conv) >= 2 and conv["weight_norm"].nunique() > 1:
        lx, ly = np.log(conv["weight_norm"].to_numpy()), np.log(conv["size"].to_numpy())
        slope, icpt = np.polyfit(lx, ly, 1)
        xs = np.linspace(lx.min(), lx.max(), 20)
        fig.add_trace(
            go.Scatter(
                x=np.exp(xs),
                y=np.exp(icpt + slope * xs),
                mode="lines",
                name=f"fit (converged): size ∝ ‖W‖^{slope:.2f}",
                line={"color": "#333", "dash": "dash"},
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(type="log", title_text="layer weight norm ‖W‖_F")
    fig.update_yaxes(type="log", title_text="size Σ σw²")
    text = title or f"Size factor against weight norm (log-log slope {slope:.2f}, converged runs)"
    return layout(fig, titled(text, runs), height=460)


def knob_effects(
    effects: pd.DataFrame,
    title: str = "What each knob did (relative change, smallest → largest value)",
) -> go.Figure:
    """Grouped bars: relative change of sharpness, size and real gap per knob.

    ``effects`` has one row per knob with columns knob, sharpness_change, size_change,
    gap_change (computed over converged runs by the caller), and optionally ``left_out``
    (runs that did not converge or failed) or ``n_runs`` and ``n_converged``; those counts go
    into the hover and the title. A knob without any change to show (no converged run) is
    labelled instead of left blank.
    """
    fig = go.Figure()
    names = [knob_label(k) for k in effects["knob"]]
    left_out = _left_out(effects)
    custom = np.array(
        [
            f"<br>{k} run{'s' if k != 1 else ''} left out (not converged or failed)" if k else ""
            for k in left_out
        ],
        dtype=object,
    ).reshape(-1, 1)
    for key, label in (
        ("sharpness_change", "sharpness"),
        ("size_change", "size"),
        ("gap_change", "real gap"),
    ):
        color = COLORS.get(label.replace("real gap", "real_gap"), "#333")
        fig.add_trace(
            go.Bar(
                x=names,
                y=100 * effects[key],
                name=label,
                marker_color=color,
                customdata=custom,
                hovertemplate=f"{label}<br>%{{x}}<br>%{{y:+.1f}} %%{{customdata[0]}}<extra></extra>",
            )
        )
    changes = effects[["sharpness_change", "size_change", "gap_change"]].astype(float)
    for name, none in zip(names, changes.isna().all(axis=1)):
        if none:
            fig.add_annotation(
                x=name,
                y=0,
                text="no converged run",
                showarrow=False,
                yanchor="bottom",
                font={"color": UNCONVERGED_COLOR, "size": 11},
            )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="change (%)")
    note = _effects_note(effects, left_out)
    text = f"{title} <br><sup>{note}</sup>" if note else title
    return layout(fig, text, height=420)


def _left_out(effects: pd.DataFrame) -> np.ndarray:
    if "n_runs" in effects and "n_converged" in effects:
        return (effects["n_runs"] - effects["n_converged"]).fillna(0).astype(int).to_numpy()
    if "left_out" in effects:
        return effects["left_out"].fillna(0).astype(int).to_numpy()
    return np.zeros(len(effects), dtype=int)


def _effects_note(effects: pd.DataFrame, left_out: np.ndarray) -> str:
    if not left_out.sum():
        return ""
    if "n_runs" in effects and "n_converged" in effects:
        n, m = int(effects["n_converged"].sum()), int(effects["n_runs"].sum())
        return f"{n} of {m} runs converged; changes over converged runs only"
    k = int(left_out.sum())
    return f"{k} run{'s' if k != 1 else ''} did not converge or failed, left out; changes over converged runs only"
