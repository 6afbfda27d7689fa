"""Figures of one run's gap decomposition (docs/science.md section 6, figures 3 and 6): the
training curves, the per-direction spectra, how the gap accumulates over directions, where it
comes from, the second-order reading, and sharpness against curvature.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from awbench.analysis.decomposition import curved_directions, spearman
from awbench.analysis.summary import sharp_count
from awbench.viz.gap_plots import COLORS, LABELS, layout


def training_curves(history: pd.DataFrame, title: str = "Training curves") -> go.Figure:
    """Clean-train and test cross-entropy (log scale) and accuracy per epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("cross-entropy", "accuracy"))
    for col, name, color, dash in [
        ("train", "clean train", "#1f77b4", None),
        ("test", "test", "#d62728", "dot"),
    ]:
        for i, metric in enumerate(("loss", "acc"), start=1):
            fig.add_trace(
                go.Scatter(
                    x=history["epoch"],
                    y=history[f"{col}_{metric}"],
                    mode="lines",
                    name=name,
                    line={"color": color, "dash": dash},
                    legendgroup=col,
                    showlegend=i == 1,
                    hovertemplate=f"{name}<br>epoch %{{x}}<br>{metric} %{{y:.4g}}<extra></extra>",
                ),
                row=1,
                col=i,
            )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="cross-entropy (nats)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", row=1, col=2)
    return layout(fig, title, height=380)


def _direction_hover(d: pd.DataFrame) -> tuple[np.ndarray, str]:
    custom = d[["rank", "lam", "sigma_g", "sigma_w", "c", "contribution"]].to_numpy()
    tmpl = (
        "rank %{customdata[0]}<br>λ %{customdata[1]:.3g}<br>σg %{customdata[2]:.3g}"
        "<br>σw %{customdata[3]:.3g}<br>c %{customdata[4]:.3f}"
        "<br>contribution %{customdata[5]:.3g} nats<extra></extra>"
    )
    return custom, tmpl


SPECTRA_PANELS = (  # key, panel title, log y, y-axis title
    ("sigma_g", "σg,n (sharpness factor)", True, "σg"),
    ("cum_sigma_w", "cumulative Σ σw,n (size factor)", False, "Σ σw"),
    ("c", "correlation c_n", False, "c_n (correlation)"),
    ("lam", "Hessian eigenvalue λ_n", False, "λ"),
)


def _add_spectra(fig: go.Figure, directions: pd.DataFrame, n_sharp: int, first_row: int) -> None:
    """The four spectra panels into rows ``first_row`` and ``first_row + 1`` of ``fig``."""
    d = directions.sort_values("rank")
    x = d["rank"].to_numpy() + 1
    custom, tmpl = _direction_hover(d)
    values = {"sigma_g": d["sigma_g"], "cum_sigma_w": d["sigma_w"].cumsum()}
    values.update(c=d["c"], lam=d["lam"])
    for i, (key, label, log_y, _) in enumerate(SPECTRA_PANELS):
        row, col = (k + 1 for k in divmod(i, 2))
        row += first_row - 1
        fig.add_trace(
            go.Scatter(
                x=x,
                y=values[key],
                mode="markers+lines",
                name=label,
                marker={"size": 4},
                line={"width": 1},
                customdata=custom,
                hovertemplate=tmpl,
                showlegend=False,
            ),
            row=row,
            col=col,
        )
        fig.add_vrect(
            x0=0.8,
            x1=n_sharp + 0.5,
            fillcolor="#d62728",
            opacity=0.07,
            line_width=0,
            row=row,
            col=col,
        )
        fig.update_xaxes(type="log", title_text="rank by σg (1 = sharpest)", row=row, col=col)
        if log_y:
            fig.update_yaxes(type="log", row=row, col=col)
    for i, (*_, y_title) in enumerate(SPECTRA_PANELS):
        row, col = (k + 1 for k in divmod(i, 2))
        fig.update_yaxes(title_text=y_title, row=row + first_row - 1, col=col)


def direction_spectra(
    directions: pd.DataFrame, n_sharp: int = 10, title: str | None = None
) -> go.Figure:
    """figure 3 of docs/science.md#9-figure-map: σg, cumulative Σσw, c and λ against the σg rank (log x).

    ``directions`` is ``Analysis.directions`` (sorted by σg descending). The shaded band marks
    the ``n_sharp`` directions counted as the sharp part.
    """
    fig = make_subplots(
        rows=2, cols=2, subplot_titles=[p[1] for p in SPECTRA_PANELS], horizontal_spacing=0.1
    )
    _add_spectra(fig, directions, n_sharp, first_row=1)
    return layout(
        fig, title or f"Per-direction spectra (shaded: the {n_sharp} sharp directions)", height=620
    )


def cumulative_gap(
    directions: pd.DataFrame,
    pair_gap: float,
    real_gap: float,
    n_sharp: int = 10,
    title: str = "How the gap accumulates over directions",
) -> go.Figure:
    """Running sum of per-direction contributions against rank, with the exact totals."""
    d = directions.sort_values("rank")
    x = d["rank"].to_numpy() + 1
    custom, tmpl = _direction_hover(d)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=d["contribution"].cumsum(),
            mode="lines",
            name="Σ contributions up to rank",
            line={"color": COLORS["pair_gap"]},
            customdata=custom,
            hovertemplate=tmpl,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=(d["c"] * d["sigma_g"] * d["sigma_w"]).cumsum(),
            mode="lines",
            name="Σ c σg σw up to rank",
            line={"color": COLORS["estimated_gap"], "dash": "dash"},
            customdata=custom,
            hovertemplate=tmpl,
        )
    )
    fig.add_hline(
        y=pair_gap,
        line={"color": COLORS["pair_gap"], "dash": "dot"},
        annotation_text=f"⟨Δl⟩ = {pair_gap:.4g}",
        annotation_position="bottom right",
    )
    fig.add_hline(
        y=real_gap,
        line={"color": COLORS["real_gap"], "dash": "dot"},
        annotation_text=f"real gap = {real_gap:.4g}",
        annotation_position="top left",
    )
    fig.add_vline(x=n_sharp + 0.5, line={"color": COLORS["sharp_gap"], "dash": "dot"})
    fig.update_xaxes(type="log", title_text="rank by σg (1 = sharpest)")
    fig.update_yaxes(title_text="cumulative gap (nats)")
    return layout(fig, title, height=420)


BUDGET_KEYS = (
    "real_gap",
    "pair_gap",
    "sharp_gap",
    "flat_gap",
    "complement_gap",
    "estimated_gap",
    "mean_term",
    "second_order_gap",
)


def _budget_bar(scalars: Mapping[str, float]) -> go.Bar:
    keys = [k for k in BUDGET_KEYS if k in scalars and scalars[k] is not None]
    if not scalars.get("complement_gap"):  # a complete basis: nothing beyond it to show
        keys = [k for k in keys if k != "complement_gap"]
    vals = [float(scalars[k]) for k in keys]
    return go.Bar(
        x=[LABELS[k] for k in keys],
        y=vals,
        marker_color=[COLORS[k] for k in keys],
        text=[f"{v:.4g}" for v in vals],
        textposition="outside",
        hovertemplate="%{x}<br>%{y:.6g} nats<extra></extra>",
    )


def gap_budget(scalars: Mapping[str, float], title: str = "Where the gap comes from") -> go.Figure:
    """Bars: real gap, the exact pair gap and its sharp/flat split (and the complement beyond
    the computed directions when there is one, so the split's bars add up to the pair gap),
    the cσσ estimate, the mean term and the second-order reading, all in nats."""
    fig = go.Figure(_budget_bar(scalars))
    fig.update_yaxes(title_text="nats")
    return layout(fig, title, height=420, showlegend=False)


def analysis_figure(an, n_sharp: int | None = None, title: str | None = None) -> go.Figure:
    """``Analysis.plot()``: the gap budget (top) over the four per-direction spectra, one
    figure. ``n_sharp`` (the shaded band) defaults to the count behind ``an.sharp_gap``."""
    if n_sharp is None:
        n_sharp = sharp_count(an) or 0
    fig = make_subplots(
        rows=3,
        cols=2,
        specs=[[{"colspan": 2}, None], [{}, {}], [{}, {}]],
        subplot_titles=["Where the gap comes from (nats)"] + [p[1] for p in SPECTRA_PANELS],
        row_heights=[0.34, 0.33, 0.33],
        horizontal_spacing=0.1,
        vertical_spacing=0.1,
    )
    fig.add_trace(_budget_bar(an.scalars()), row=1, col=1)
    fig.update_yaxes(title_text="nats", row=1, col=1)
    _add_spectra(fig, an.directions, n_sharp, first_row=2)
    m = len(an.directions)
    text = title or (
        f"Layer {an.layer}: where the gap comes from and the spectra of its {m} computed "
        f"directions ({an.hessian_method}; shaded: the {n_sharp} sharp ones)"
    )
    return layout(fig, text, height=1000, showlegend=False)


def second_order(
    scalars: Mapping[str, float], title: str = "Second-order reading against the exact gap"
) -> go.Figure:
    """Exact ⟨Δl⟩ next to the first-order term, the ½Σλ(σw²+μw²) term and their sum."""
    names = ["exact ⟨Δl⟩", "first order ⟨∇l·Δw⟩", "second order ½Σλ(σw²+μw²)", "first + second"]
    keys = ["pair_gap", "first_order_term", "second_order_term", "second_order_gap"]
    vals = [float(scalars[k]) for k in keys]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=vals,
            marker_color=["#1f77b4", "#aec7e8", "#ffbb78", "#8c564b"],
            text=[f"{v:.4g}" for v in vals],
            textposition="outside",
            hovertemplate="%{x}<br>%{y:.6g} nats<extra></extra>",
        )
    )
    fig.update_yaxes(title_text="nats")
    return layout(fig, title, height=400, showlegend=False)


def sharpness_vs_lam(directions: pd.DataFrame, title: str | None = None) -> go.Figure:
    """figure 6 of docs/science.md#9-figure-map: σg,n and σg,n/σw,n against λ_n (log-log), each with Spearman's ρ.

    Numerically flat directions (λ <= 1e-12 λ_max) are left out and counted in the title.
    """
    d = curved_directions(directions)
    ratio = d["sigma_g"] / d["sigma_w"]
    rho_g, rho_r = spearman(d["lam"], d["sigma_g"]), spearman(d["lam"], ratio)
    custom, tmpl = _direction_hover(d)
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=(
            f"σg,n against λ_n (Spearman ρ = {rho_g:.2f})",
            f"σg,n / σw,n against λ_n (Spearman ρ = {rho_r:.2f})",
        ),
    )
    color = np.log10(d["sigma_w"])
    for col, y in ((1, d["sigma_g"]), (2, ratio)):
        fig.add_trace(
            go.Scatter(
                x=d["lam"],
                y=y,
                mode="markers",
                name="directions",
                showlegend=False,
                marker={
                    "size": 5,
                    "color": color,
                    "colorscale": "Viridis",
                    "colorbar": {"title": "log10 σw"} if col == 2 else None,
                    "showscale": col == 2,
                },
                customdata=custom,
                hovertemplate=tmpl,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(type="log", title_text="Hessian eigenvalue λ_n", row=1, col=col)
        fig.update_yaxes(type="log", row=1, col=col)
    fig.update_yaxes(title_text="σg,n", row=1, col=1)
    fig.update_yaxes(title_text="σg,n / σw,n", row=1, col=2)
    excluded = len(directions) - len(d)
    text = title or (
        f"Sharpness factor against curvature ({len(d)} directions; {excluded} numerically flat "
        "ones left out)"
    )
    return layout(fig, text, height=440)


BASIS_STYLE = {  # basis -> (label, colour, dash)
    "hessian": ("Hessian eigenbasis", "#d62728", None),
    "dual_pca": ("dual weights' principal axes (no Hessian)", "#1f77b4", "dash"),
    "random": ("random orthonormal basis", "#7f7f7f", "dot"),
}


def basis_share_curves(
    curves: Mapping[str, np.ndarray],
    k: int = 10,
    title: str = "Is the Hessian basis special? Top-k share of the gap in three bases",
) -> go.Figure:
    """Cumulative share of the pair gap over the top-k directions (each basis ranked by its
    own σg) against k, log x; ``curves`` from awbench.analysis.control_basis.share_curves.
    A dotted line marks k and the grey line the whole gap (every complete basis ends at 1)."""
    fig = go.Figure()
    for name, curve in curves.items():
        label, color, dash = BASIS_STYLE.get(name, (name, None, None))
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, len(curve) + 1),
                y=curve,
                mode="lines",
                name=label,
                line={"color": color, "dash": dash},
                hovertemplate=f"{label}<br>top %{{x}}: %{{y:.1%}} of the gap<extra></extra>",
            )
        )
    fig.add_vline(x=k, line={"color": "#444", "dash": "dot"}, annotation_text=f"k = {k}")
    fig.add_hline(y=1.0, line={"color": "#bbb"})
    fig.update_xaxes(type="log", title_text="k: directions with the largest σg in that basis")
    fig.update_yaxes(title_text="share of the exact gap ⟨Δl⟩", tickformat=".0%")
    return layout(fig, title, height=420)
