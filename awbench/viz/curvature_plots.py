"""Figures of the Hessian checks (notebook 02): the Hutchinson trace estimate against the
number of probes, and the curvature along each kind of direction.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from awbench.viz.gap_plots import layout


def trace_convergence(
    estimates: pd.DataFrame,
    exact: float | None = None,
    title: str = "Hutchinson trace estimate against the number of probes",
) -> go.Figure:
    """``estimates`` columns: probes, estimate, stderr. Error bars are ±2 standard errors;
    the dashed line is the exact trace when known."""
    fig = go.Figure(
        go.Scatter(
            x=estimates["probes"],
            y=estimates["estimate"],
            mode="markers+lines",
            name="estimate ± 2 s.e.",
            error_y={"type": "data", "array": 2 * estimates["stderr"]},
            marker={"size": 9},
            customdata=estimates[["stderr"]].to_numpy(),
            hovertemplate="%{x} probes<br>trace %{y:.5g} ± %{customdata[0]:.2g}<extra></extra>",
        )
    )
    if exact is not None and math.isfinite(exact):
        fig.add_hline(
            y=exact,
            line={"color": "#d62728", "dash": "dash"},
            annotation_text=f"exact trace {exact:.5g}",
        )
    probes = sorted({int(p) for p in estimates["probes"]})
    fig.update_xaxes(
        type="log",
        title_text="Rademacher probes (Hessian-vector products)",
        tickvals=probes,
        ticktext=[str(p) for p in probes],
    )
    fig.update_yaxes(title_text="trace of the Hessian")
    return layout(fig, title, height=380)


def direction_curvatures(
    table: pd.DataFrame,
    lam_max: float | None = None,
    title: str = "Curvature along each kind of direction (Rayleigh quotient dᵀHd/‖d‖²)",
) -> go.Figure:
    """Bars of the Rayleigh quotient per direction (``table`` columns: direction, kind,
    rayleigh), with λ_max as a dashed line."""
    palette = {"eigenvector": "#1f77b4", "dual weight": "#ff7f0e", "random": "#7f7f7f"}
    fig = go.Figure()
    for kind, g in table.groupby("kind", sort=False):
        fig.add_trace(
            go.Bar(
                x=g["direction"],
                y=g["rayleigh"],
                name=kind,
                marker_color=palette.get(kind, "#333"),
                hovertemplate="%{x}<br>dᵀHd/‖d‖² %{y:.4g}<extra></extra>",
            )
        )
    if lam_max is not None:
        fig.add_hline(
            y=lam_max,
            line={"color": "#d62728", "dash": "dash"},
            annotation_text=f"λ_max {lam_max:.3g}",
        )
    fig.update_yaxes(type="log", title_text="dᵀHd / ‖d‖²")
    fig.update_xaxes(title_text="direction")
    return layout(fig, title, height=400)
