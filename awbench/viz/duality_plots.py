"""Figures of the duality (docs/science.md section 6, figure 1): it is exact at every layer,
the minimal dual weight has the closed-form norm, other members of the family are exact but
bigger, and dual weights scale linearly with the layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from awbench.viz.gap_plots import diagonal, layout


def duality_exactness(
    errors: Mapping[str, Sequence[float]],
    threshold: float = 1e-10,
    title: str = "The duality is exact: |logits(x′,W) − logits(x,W+ΔW*)| per pair",
) -> go.Figure:
    """Per-pair max logit error for each layer (log y), with the test threshold."""
    fig = go.Figure()
    floor = 1e-18  # exact zeros cannot sit on a log axis; shown at the floor
    for name, err in errors.items():
        e = np.asarray(err, dtype=float)
        e = e[np.isfinite(e)]
        fig.add_trace(
            go.Box(
                y=np.maximum(e, floor),
                name=name,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"size": 3},
                hovertemplate=f"{name}<br>error %{{y:.3g}}<extra></extra>",
            )
        )
    fig.add_hline(
        y=threshold,
        line={"color": "#d62728", "dash": "dash"},
        annotation_text=f"test threshold {threshold:g}",
    )
    fig.add_hline(
        y=np.finfo(np.float64).eps,
        line={"color": "#888", "dash": "dot"},
        annotation_text="float64 machine ε",
        annotation_position="bottom right",
    )
    fig.update_yaxes(type="log", title_text=f"max |Δ logit| (zeros shown at {floor:g})")
    fig.update_xaxes(title_text="analysed layer")
    return layout(fig, title, height=440, showlegend=False)


def dual_norm_check(
    predicted: Sequence[float],
    actual: Sequence[float],
    title: str = "‖ΔW*‖_F equals ‖W Δa‖ / ‖a‖ for every pair",
) -> go.Figure:
    """Scatter of the closed-form norm against the computed dual-weight norm."""
    p, a = np.asarray(predicted, float), np.asarray(actual, float)
    fig = go.Figure(
        go.Scatter(
            x=p,
            y=a,
            mode="markers",
            marker={"size": 5},
            name="pairs",
            hovertemplate="‖WΔa‖/‖a‖ %{x:.4g}<br>‖ΔW*‖ %{y:.4g}<extra></extra>",
        )
    )
    if len(p):
        lo, hi = float(min(p.min(), a.min())), float(max(p.max(), a.max()))
        fig.add_trace(diagonal([lo, hi], "y = x"))
    fig.update_xaxes(title_text="‖W Δa‖ / ‖a‖")
    fig.update_yaxes(title_text="‖ΔW*‖_F")
    return layout(fig, title, height=420)


def general_family(
    family: pd.DataFrame,
    title: str = "The general family: every member exact, the minimal one smallest",
) -> go.Figure:
    """``family`` columns: scale (of M), norm_ratio (‖ΔW‖/‖ΔW*‖, mean over pairs), max_error."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("norm relative to the minimal dual", "max |Δ logit|")
    )
    fig.add_trace(
        go.Scatter(
            x=family["scale"],
            y=family["norm_ratio"],
            mode="markers+lines",
            name="‖ΔW‖/‖ΔW*‖",
            hovertemplate="scale %{x}<br>ratio %{y:.4g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=family["scale"],
            y=np.maximum(family["max_error"], 1e-18),
            mode="markers+lines",
            name="max error",
            marker={"color": "#d62728"},
            hovertemplate="scale %{x}<br>error %{y:.3g}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="scale of M (× ‖ΔW*‖ per pair)")
    fig.update_yaxes(title_text="‖ΔW‖_F / ‖ΔW*‖_F", row=1, col=1)
    fig.update_yaxes(title_text="max |Δ logit|", type="log", row=1, col=2)
    return layout(fig, title, height=400, showlegend=False)


def scaling_check(
    scales: Sequence[float],
    ratios: Sequence[float],
    title: str = "Dual weights scale linearly with the layer",
) -> go.Figure:
    """‖ΔW*(sW)‖ / ‖ΔW*(W)‖ against s, with the line y = s."""
    s, r = np.asarray(scales, float), np.asarray(ratios, float)
    fig = go.Figure(
        [
            go.Scatter(
                x=s,
                y=r,
                mode="markers",
                name="measured",
                marker={"size": 9},
                hovertemplate="s %{x}<br>ratio %{y:.6g}<extra></extra>",
            ),
            diagonal(s, "y = s"),
        ]
    )
    fig.update_xaxes(title_text="layer rescaled by s")
    fig.update_yaxes(title_text="mean ‖ΔW*(sW)‖ / ‖ΔW*(W)‖")
    return layout(fig, title, height=380)
