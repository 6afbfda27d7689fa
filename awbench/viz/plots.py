"""Plotly figure builders: pure functions, data in, ``go.Figure`` out.

No builder computes anything expensive, reads global state or touches a model; the same
figure serves static output (papermill, HTML reports) and ``go.FigureWidget(fig)`` in a live
notebook. Builders take the NamedTuples the analysis functions return (or anything with the
same attributes) or plain arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

LOSS_LABEL = "mean training cross-entropy"
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _array(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def spectrum_figure(
    values,
    density=None,
    *,
    title: str = "Hessian spectrum",
    log_density: bool = True,
    floor: float = 1e-8,
) -> go.Figure:
    """Top-k eigenvalues as stems against rank, and beside them the smoothed spectral density.

    ``values``: eigenvalues (e.g. ``top_eigenpairs(...).values``, any order; drawn by rank
    of the given order). ``density``: a :class:`awbench.curvature.spectrum.SpectralDensity` (or any
    object with ``grid``, ``density`` and ``settings``), or None for the stems alone. The
    density panel marks the top-k eigenvalues on its lambda axis; with ``log_density`` its y
    axis is logarithmic and values below ``floor`` are clipped to it.
    """
    lam = _array(values).reshape(-1)
    rank = np.arange(1, len(lam) + 1)
    cols = 2 if density is not None else 1
    titles = ["top eigenvalues"] + (["spectral density (SLQ)"] if density is not None else [])
    fig = make_subplots(rows=1, cols=cols, subplot_titles=titles, horizontal_spacing=0.12)
    stem_x = np.repeat(rank, 3).astype(float)
    stem_y = np.column_stack([np.zeros_like(lam), lam, np.full_like(lam, np.nan)]).ravel()
    fig.add_trace(
        go.Scatter(
            x=stem_x,
            y=stem_y,
            mode="lines",
            line={"color": _COLORS[0], "width": 1.5},
            hoverinfo="skip",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=rank,
            y=lam,
            mode="markers",
            marker={"color": _COLORS[0], "size": 8},
            name="eigenvalue",
            hovertemplate="rank %{x}<br>lambda %{y:.4g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.update_xaxes(title_text="rank", row=1, col=1)
    fig.update_yaxes(title_text="eigenvalue lambda", row=1, col=1)
    if density is not None:
        grid, dens = _array(density.grid), _array(density.density)
        settings = getattr(density, "settings", {}) or {}
        shown = np.maximum(dens, floor) if log_density else dens
        label = "density"
        if "sigma" in settings:
            label += f" (sigma={settings['sigma']:.2g}, {settings.get('n_probes', '?')} probes, {settings.get('steps', '?')} steps)"
        fig.add_trace(
            go.Scatter(x=grid, y=shown, mode="lines", line={"color": _COLORS[2]}, name=label),
            row=1,
            col=2,
        )
        if len(lam):
            fig.add_trace(
                go.Scatter(
                    x=lam,
                    y=np.full_like(lam, max(float(shown.max()), floor)),
                    mode="markers",
                    marker={"symbol": "line-ns-open", "size": 14, "color": _COLORS[0]},
                    name="top-k eigenvalues",
                ),
                row=1,
                col=2,
            )
        fig.update_xaxes(title_text="eigenvalue lambda", row=1, col=2)
        fig.update_yaxes(
            title_text="density", type="log" if log_density else "linear", row=1, col=2
        )
    fig.update_layout(title=title, template="plotly_white", legend={"orientation": "h", "y": -0.2})
    return fig


def slice_figure(
    slices,
    *,
    title: str = "Loss along directions",
    xlabel: str = "t (step along the direction)",
    ylabel: str = LOSS_LABEL,
    overlay: bool = True,
) -> go.Figure:
    """1-D loss slices, each with its quadratic model ``loss0 + 1/2 c t^2`` dashed.

    ``slices``: one :class:`awbench.landscape.Slice1D` or a sequence of them (any objects
    with ``t``, ``loss``, ``quadratic``, ``curvature`` and ``label``).
    """
    if hasattr(slices, "t"):
        slices = [slices]
    fig = go.Figure()
    for i, s in enumerate(slices):
        color = _COLORS[i % len(_COLORS)]
        name = s.label or f"direction {i + 1}"
        fig.add_trace(
            go.Scatter(
                x=_array(s.t),
                y=_array(s.loss),
                mode="lines+markers",
                name=name,
                line={"color": color},
                marker={"size": 4},
            )
        )
        if overlay:
            fig.add_trace(
                go.Scatter(
                    x=_array(s.t),
                    y=_array(s.quadratic),
                    mode="lines",
                    name=f"{name}: 1/2 c t^2, c={s.curvature:.3g}",
                    line={"color": color, "dash": "dash"},
                )
            )
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, template="plotly_white")
    return fig


def _plane_axes(plane, labels):
    labels = labels or getattr(plane, "labels", ("d1", "d2"))
    return _array(plane.t1), _array(plane.t2), _array(plane.loss), labels


def contour_figure(
    plane,
    *,
    title: str = "Loss on a plane",
    labels: Sequence[str] | None = None,
    log: bool = False,
) -> go.Figure:
    """Contour map of a :class:`awbench.landscape.Plane2D` (x: t1, y: t2), the origin marked."""
    t1, t2, loss, labels = _plane_axes(plane, labels)
    z = np.log10(np.maximum(loss, 1e-300)) if log else loss
    fig = go.Figure(
        go.Contour(
            x=t1,
            y=t2,
            z=z.T,
            colorscale="Viridis",
            ncontours=30,
            colorbar={"title": "log10 loss" if log else "loss"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[0.0],
            y=[0.0],
            mode="markers",
            name="trained weights",
            marker={
                "symbol": "x",
                "size": 10,
                "color": "white",
                "line": {"width": 1, "color": "black"},
            },
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title=f"t1 along {labels[0]}",
        yaxis_title=f"t2 along {labels[1]}",
        template="plotly_white",
    )
    return fig


def surface_figure(
    plane,
    *,
    title: str = "Loss surface",
    labels: Sequence[str] | None = None,
    log: bool = False,
) -> go.Figure:
    """3-D surface of a :class:`awbench.landscape.Plane2D` (x: t1, y: t2, z: loss)."""
    t1, t2, loss, labels = _plane_axes(plane, labels)
    z = np.log10(np.maximum(loss, 1e-300)) if log else loss
    fig = go.Figure(
        go.Surface(
            x=t1,
            y=t2,
            z=z.T,
            colorscale="Viridis",
            colorbar={"title": "log10 loss" if log else "loss"},
        )
    )
    fig.update_layout(
        title=title,
        template="plotly_white",
        scene={
            "xaxis_title": f"t1 along {labels[0]}",
            "yaxis_title": f"t2 along {labels[1]}",
            "zaxis_title": "log10 loss" if log else LOSS_LABEL,
        },
    )
    return fig
