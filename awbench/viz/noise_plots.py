"""Figures of SGD's noise against the curvature (notebook 11, docs/science.md#11): pure
builders in the house style of :mod:`awbench.viz.gap_plots` (numbers in, a plotly Figure
out; nothing trains or reads files).

Inputs are :class:`awbench.analysis.noise.NoiseCurvature` results (one per run, by label),
per-seed tables (one row per seed with ``converged``, ``gamma`` with ``gamma_low``/
``gamma_high``, ``commutator`` and ``commutator_baseline``/``_std``), and the batch-size
table of :func:`awbench.analysis.noise.minibatch_trace`. Unconverged seeds are drawn hollow
and grey and left out of every number.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from awbench.viz.gap_plots import layout
from awbench.viz.sweep_stats import UNCONVERGED_COLOR

LOSS_COLORS = {"ce": "#d62728", "mse": "#1f77b4"}
LOSS_NAMES = {"ce": "cross-entropy", "mse": "MSE (after softmax)"}
_PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _color(label: str, i: int) -> str:
    return LOSS_COLORS.get(label.split()[0].lower(), _PALETTE[i % len(_PALETTE)])


def _fit_line(x: np.ndarray, fit) -> tuple[np.ndarray, np.ndarray]:
    ends = np.array([x.min(), x.max()])
    return ends, np.exp(fit.intercept) * ends**fit.exponent


def _power_law_panel(
    results: Mapping[str, object], x_of: str, y_of: str, fit_of: str, symbol: str
) -> go.Figure:
    fig = go.Figure()
    for i, (label, nc) in enumerate(results.items()):
        top = slice(0, nc.k)
        x, y = getattr(nc, x_of)[top], getattr(nc, y_of)[top]
        ok = (x > 0) & (y > 0)
        fit, color = getattr(nc, fit_of), _color(label, i)
        fig.add_scatter(
            x=x[ok],
            y=y[ok],
            mode="markers",
            name=label,
            marker={"color": color, "size": 5, "opacity": 0.6},
            hovertemplate="direction %{customdata}<br>x %{x:.3g}<br>y %{y:.3g}<extra></extra>",
            customdata=np.arange(1, nc.k + 1)[ok],
        )
        if np.isfinite(fit.exponent) and ok.sum() >= 2:
            fx, fy = _fit_line(x[ok], fit)
            fig.add_scatter(
                x=fx,
                y=fy,
                mode="lines",
                name=f"{label}: {symbol} = {fit.exponent:.3f} [{fit.low:.3f}, {fit.high:.3f}]",
                line={"color": color, "dash": "dash"},
                hoverinfo="skip",
            )
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def noise_against_curvature(results: Mapping[str, object]) -> go.Figure:
    """C_ii against H_ii in H's eigenbasis, log-log, over the top k directions of each run,
    with the fitted power law C_ii ~ H_ii^gamma and gamma's 95 % bootstrap interval."""
    fig = _power_law_panel(results, "lam", "C_diag", "gamma", "γ")
    return layout(
        fig,
        "SGD noise against curvature in H's eigenbasis: C_ii ~ H_ii^γ<br>"
        "<sup>top directions of H; dashed: the least-squares fit in log-log, "
        "95 % bootstrap interval</sup>",
        legend="below",
        xaxis_title="curvature H_ii = λ_i (nats per unit weight²)",
        yaxis_title="minibatch noise C_ii (nats² per unit weight²)",
    )


def noise_against_eh2(results: Mapping[str, object]) -> go.Figure:
    """C_ii against E[h²]_ii (the second moment of the per-sample Hessians) in H's eigenbasis,
    with the fitted exponent (1 when C is proportional to E[h²])."""
    fig = _power_law_panel(results, "Eh2_diag", "C_diag", "eh2_exponent", "exponent")
    return layout(
        fig,
        "SGD noise against the second moment of the per-sample Hessians<br>"
        "<sup>C_ii against E[h²]_ii in H's eigenbasis; exponent 1: C ∝ E[h²]</sup>",
        legend="below",
        xaxis_title="E[h²]_ii (nats² per unit weight⁴)",
        yaxis_title="minibatch noise C_ii (nats² per unit weight²)",
    )


def _seed_markers(table: pd.DataFrame, loss: str, offset: float) -> dict:
    ok = table["converged"].to_numpy(bool)
    return {
        "x": table["seed"].to_numpy(float) + offset,
        "color": [LOSS_COLORS.get(loss, "#444") if c else UNCONVERGED_COLOR for c in ok],
        "symbol": ["circle" if c else "circle-open" for c in ok],
    }


def gamma_over_seeds(tables: Mapping[str, pd.DataFrame], margin: float = 0.1) -> go.Figure:
    """Each seed's gamma with its bootstrap interval, per loss; the linear exponent 1 and the
    band 1 ± ``margin`` of the "about linear" claim. Unconverged seeds: hollow grey at 1."""
    fig = go.Figure()
    fig.add_hrect(y0=1 - margin, y1=1 + margin, fillcolor="#999", opacity=0.15, line_width=0)
    fig.add_hline(y=1, line={"color": "#888", "dash": "dash"})
    for j, (loss, table) in enumerate(tables.items()):
        m = _seed_markers(table, loss, 0.15 * (j - 0.5))
        gamma = table.get("gamma", pd.Series(np.nan, index=table.index)).to_numpy(float)
        low = table.get("gamma_low", pd.Series(np.nan, index=table.index)).to_numpy(float)
        high = table.get("gamma_high", pd.Series(np.nan, index=table.index)).to_numpy(float)
        fig.add_scatter(
            x=m["x"],
            y=np.where(np.isfinite(gamma), gamma, 1.0),
            mode="markers",
            name=LOSS_NAMES.get(loss, loss),
            marker={"color": m["color"], "symbol": m["symbol"], "size": 9},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": high - gamma,
                "arrayminus": gamma - low,
            },
            customdata=table["status"],
            hovertemplate="seed %{x:.0f}<br>γ %{y:.3f}<br>%{customdata}<extra></extra>",
        )
    return layout(
        fig,
        f"The exponent γ per seed, cross-entropy against MSE<br>"
        f"<sup>bars: 95 % bootstrap interval over directions; band: 1 ± {margin}; "
        f"hollow grey: not converged (left out)</sup>",
        xaxis_title="seed",
        yaxis_title="γ of C_ii ~ H_ii^γ",
    )


def commutator_against_baseline(tables: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Each seed's ||[C, H]|| / (||C|| ||H||) next to its random-eigenvector baseline (mean ±
    sd over Haar rotations), per loss: below the baseline, C commutes with H better than
    chance."""
    fig = go.Figure()
    for j, (loss, table) in enumerate(tables.items()):
        if "commutator" not in table:
            continue
        m = _seed_markers(table, loss, 0.15 * (j - 0.5))
        name = LOSS_NAMES.get(loss, loss)
        fig.add_scatter(
            x=m["x"],
            y=table["commutator"],
            mode="markers",
            name=f"{name}: measured",
            marker={"color": m["color"], "symbol": m["symbol"], "size": 9},
            hovertemplate="seed %{x:.0f}<br>commutator %{y:.3g}<extra></extra>",
        )
        fig.add_scatter(
            x=m["x"],
            y=table["commutator_baseline"],
            mode="markers",
            name=f"{name}: random eigenvectors",
            marker={"color": LOSS_COLORS.get(loss, "#444"), "symbol": "x", "size": 8},
            error_y={"type": "data", "array": table["commutator_baseline_std"]},
            hovertemplate="seed %{x:.0f}<br>baseline %{y:.3g}<extra></extra>",
        )
    return layout(
        fig,
        "How well C commutes with H: the commutator against chance<br>"
        "<sup>||[C, H]||_F / (||C||_F ||H||_F); crosses: the same spectra with random "
        "eigenvectors (mean ± sd)</sup>",
        xaxis_title="seed",
        yaxis_title="relative commutator",
    )


def noise_against_batch_size(frame: pd.DataFrame, n: int) -> go.Figure:
    """tr C against B, log-log: measured over minibatches drawn as the trainer draws them
    (± 2 standard errors) and the exact (N - B) / (B (N - 1)) tr Σ."""
    fig = go.Figure()
    fig.add_scatter(
        x=frame["batch_size"],
        y=frame["exact"],
        mode="lines",
        name="(N − B) / (B (N − 1)) · tr Σ",
        line={"color": "#888", "dash": "dash"},
    )
    fig.add_scatter(
        x=frame["batch_size"],
        y=frame["measured"],
        mode="markers",
        name="measured (Monte Carlo minibatches)",
        marker={"color": "#222", "size": 9},
        error_y={"type": "data", "array": 2 * frame["measured_se"]},
        customdata=frame["n_batches"],
        hovertemplate="B %{x}<br>tr C %{y:.3g}<br>%{customdata} batches<extra></extra>",
    )
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return layout(
        fig,
        f"Batch size as a knob: the noise's trace against B (N = {n})<br>"
        "<sup>the same trained network; B drawn without replacement, as the trainer does</sup>",
        legend="below",
        xaxis_title="batch size B",
        yaxis_title="tr C (nats² per unit weight²)",
    )
