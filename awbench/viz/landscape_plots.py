"""Spectrum and landscape figures (notebook 02): pure functions, data in, ``go.Figure`` out.

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

from awbench.viz.gap_plots import TEMPLATE, layout, number_ticks

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
    return layout(fig, title, legend="below", height=420)


# The quadratic ½λt² (λ = dᵀHd, the eigenvalue along a unit eigenvector) is the Taylor model
# of the loss at the trained weights: drawn only where it is one, i.e. for λ > 0 (at λ ≤ 0 it
# predicts no rise, or a fall) and over the |t| around 0 where it stays within this fraction
# of the measured loss.
QUADRATIC_TOLERANCE = 0.1
QUADRATIC_RULE = (
    "dashed: L(0) + ½λt², λ = dᵀHd, drawn only for λ > 0 and where it is within "
    f"{QUADRATIC_TOLERANCE:.0%} of the measured loss"
)


def quadratic_range(s, tolerance: float = QUADRATIC_TOLERANCE) -> np.ndarray:
    """Where the slice's quadratic model is meaningful: a boolean mask over ``s.t``, True on
    the contiguous run of points around t = 0 with ``|quadratic − loss| <= tolerance·loss``,
    all False when the curvature is not > 0 (or not finite)."""
    t, loss, quad = _array(s.t), _array(s.loss), _array(s.quadratic)
    mask = np.zeros(len(t), dtype=bool)
    lam = float(s.curvature)
    if not (np.isfinite(lam) and lam > 0) or not len(t):
        return mask
    ok = np.isfinite(quad) & np.isfinite(loss) & (np.abs(quad - loss) <= tolerance * np.abs(loss))
    centre = int(np.argmin(np.abs(t)))
    order = np.argsort(t)
    pos = int(np.flatnonzero(order == centre)[0])
    lo = hi = pos
    if not ok[order[pos]]:
        return mask
    while lo > 0 and ok[order[lo - 1]]:
        lo -= 1
    while hi < len(t) - 1 and ok[order[hi + 1]]:
        hi += 1
    mask[order[lo : hi + 1]] = True
    return mask


def _quadratic_trace(s, name: str, color: str) -> tuple[go.Scatter | None, str]:
    """The dashed quadratic over its meaningful range, or None and why it is not drawn."""
    lam = float(s.curvature)
    if not (np.isfinite(lam) and lam > 0):
        return None, f"{name} (λ = {lam:.3g} ≤ 0)"
    mask = quadratic_range(s)
    if mask.sum() < 2:
        return None, f"{name} (within {QUADRATIC_TOLERANCE:.0%} nowhere beyond t = 0)"
    t, quad = _array(s.t)[mask], _array(s.quadratic)[mask]
    order = np.argsort(t)
    value = "" if "λ=" in name or "λ =" in name else f", λ = {lam:.3g}"  # eigen labels carry it
    trace = go.Scatter(
        x=t[order],
        y=quad[order],
        mode="lines",
        name=f"{name}: ½λt²{value} (|t| ≤ {np.abs(t).max():.3g}, where it holds)",
        line={"color": color, "dash": "dash"},
        hovertemplate="t %{x:.3g}<br>L(0) + ½λt² %{y:.4g}<extra></extra>",
    )
    return trace, ""


def slice_figure(
    slices,
    *,
    title: str = "Loss along directions",
    xlabel: str = "t (step along the direction)",
    ylabel: str = LOSS_LABEL,
    overlay: bool = True,
) -> go.Figure:
    """1-D loss slices, each with its quadratic model ``L(0) + ½λt²`` dashed where meaningful.

    ``slices``: one :class:`awbench.landscape.Slice1D` or a sequence of them (any objects
    with ``t``, ``loss``, ``quadratic``, ``curvature`` and ``label``). With ``overlay`` the
    quadratic is drawn only for λ > 0 and over :func:`quadratic_range`; the title's second
    line states that rule and names the slices whose quadratic is left out, and why.
    """
    if hasattr(slices, "t"):
        slices = [slices]
    fig = go.Figure()
    left_out = []
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
            trace, why = _quadratic_trace(s, name, color)
            if trace is not None:
                fig.add_trace(trace)
            else:
                left_out.append(why)
    fig.update_xaxes(title_text=xlabel)
    fig.update_yaxes(title_text=ylabel)
    if overlay:
        note = QUADRATIC_RULE + (f"; not drawn for {', '.join(left_out)}" if left_out else "")
        title = f"{title}<br><sup>{note}</sup>"
    return layout(fig, title, height=460)


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
    number_ticks(fig)
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
        template=TEMPLATE,
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
        template=TEMPLATE,
        scene={
            "xaxis_title": f"t1 along {labels[0]}",
            "yaxis_title": f"t2 along {labels[1]}",
            "zaxis_title": "log10 loss" if log else LOSS_LABEL,
        },
    )
    return fig
