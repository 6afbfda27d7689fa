"""Plot builders for the gap decomposition and the knob sweeps (PAPER.md section 6, figs 1-6).

Every builder is a pure function: tables or arrays in, a ``plotly.graph_objects.Figure`` out,
with a title, labelled axes (units: gaps and losses in nats, eigenvalues in nats per unit
weight squared) and hover text. Nothing here trains, reads files or mutates its inputs, so
the same builder serves a notebook, the headless report and a ``FigureWidget``.

Sweep tables are one row per run with (at least) the knob's column, ``seed`` and the Analysis
scalars (``real_gap``, ``pair_gap``, ``estimated_gap``, ``sharp_gap``, ``flat_gap``,
``sharpness``, ``size``, ``weight_norm`` ...). Error bars are the standard deviation over
seeds (0 with a single seed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

TEMPLATE = "plotly_white"
COLORS = {
    "real_gap": "#222222",
    "pair_gap": "#1f77b4",
    "estimated_gap": "#ff7f0e",
    "sharp_gap": "#d62728",
    "flat_gap": "#2ca02c",
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
    "flat_gap": "flat part (the rest)",
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
# Knobs whose values span a factor of 8 or more read best on a log axis.
LOG_KNOBS = ("batch_size", "lr", "n_train")


def knob_label(knob: str) -> str:
    return KNOB_LABELS.get(knob, knob)


def _diagonal(ends: Sequence[float], name: str) -> go.Scatter:
    """The grey dashed y = x reference line through ``ends``."""
    return go.Scatter(
        x=ends, y=ends, mode="lines", name=name, line={"color": "#888", "dash": "dash"}, hoverinfo="skip"
    )


def _layout(fig: go.Figure, title: str, **kw) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template=TEMPLATE,
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        margin={"t": 90, "l": 70, "r": 30, "b": 60},
        **kw,
    )
    return fig


def seed_stats(runs: pd.DataFrame, knob: str, columns: Sequence[str]) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; 0 for one seed) and count per knob value."""
    g = runs.groupby(knob, sort=True)[list(columns)]
    mean, std, n = g.mean(), g.std(ddof=1).fillna(0.0), g.count()
    out = pd.DataFrame(index=mean.index)
    for c in columns:
        out[f"{c}_mean"], out[f"{c}_std"], out[f"{c}_n"] = mean[c], std[c], n[c]
    return out.reset_index()


def spearman(x: Iterable[float], y: Iterable[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN for fewer than 3 points."""
    x, y = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return float("nan")
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


# --- one run ----------------------------------------------------------------------------


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
    return _layout(fig, title, height=380)


def _direction_hover(d: pd.DataFrame) -> tuple[np.ndarray, str]:
    custom = d[["rank", "lam", "sigma_g", "sigma_w", "c", "contribution"]].to_numpy()
    tmpl = (
        "rank %{customdata[0]}<br>λ %{customdata[1]:.3g}<br>σg %{customdata[2]:.3g}"
        "<br>σw %{customdata[3]:.3g}<br>c %{customdata[4]:.3f}"
        "<br>contribution %{customdata[5]:.3g} nats<extra></extra>"
    )
    return custom, tmpl


def direction_spectra(
    directions: pd.DataFrame, n_sharp: int = 10, title: str | None = None
) -> go.Figure:
    """PAPER.md figure 3: σg, cumulative Σσw, c and λ against the σg rank (log x).

    ``directions`` is ``Analysis.directions`` (sorted by σg descending). The shaded band marks
    the ``n_sharp`` directions counted as the sharp part.
    """
    d = directions.sort_values("rank")
    x = d["rank"].to_numpy() + 1
    custom, tmpl = _direction_hover(d)
    panels = [
        ("sigma_g", "σg,n (sharpness factor)", True, d["sigma_g"]),
        ("cum_sigma_w", "cumulative Σ σw,n (size factor)", False, d["sigma_w"].cumsum()),
        ("c", "correlation c_n", False, d["c"]),
        ("lam", "Hessian eigenvalue λ_n", False, d["lam"]),
    ]
    fig = make_subplots(
        rows=2, cols=2, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.1
    )
    for i, (key, label, log_y, y) in enumerate(panels):
        r, c = divmod(i, 2)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="markers+lines",
                name=label,
                marker={"size": 4},
                line={"width": 1},
                customdata=custom,
                hovertemplate=tmpl,
                showlegend=False,
            ),
            row=r + 1,
            col=c + 1,
        )
        fig.add_vrect(
            x0=0.8,
            x1=n_sharp + 0.5,
            fillcolor="#d62728",
            opacity=0.07,
            line_width=0,
            row=r + 1,
            col=c + 1,
        )
        fig.update_xaxes(type="log", title_text="rank by σg (1 = sharpest)", row=r + 1, col=c + 1)
        if log_y:
            fig.update_yaxes(type="log", row=r + 1, col=c + 1)
    fig.update_yaxes(title_text="σg", row=1, col=1)
    fig.update_yaxes(title_text="Σ σw", row=1, col=2)
    fig.update_yaxes(title_text="c", row=2, col=1)
    fig.update_yaxes(title_text="λ", row=2, col=2)
    return _layout(
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
    return _layout(fig, title, height=420)


def gap_budget(scalars: Mapping[str, float], title: str = "Where the gap comes from") -> go.Figure:
    """Bars: real gap, the exact pair gap and its sharp/flat split, the cσσ estimate, the mean
    term and the second-order reading, all in nats."""
    keys = [
        "real_gap",
        "pair_gap",
        "sharp_gap",
        "flat_gap",
        "estimated_gap",
        "mean_term",
        "second_order_gap",
    ]
    keys = [k for k in keys if k in scalars and scalars[k] is not None]
    vals = [float(scalars[k]) for k in keys]
    fig = go.Figure(
        go.Bar(
            x=[LABELS[k] for k in keys],
            y=vals,
            marker_color=[COLORS[k] for k in keys],
            text=[f"{v:.4g}" for v in vals],
            textposition="outside",
            hovertemplate="%{x}<br>%{y:.6g} nats<extra></extra>",
        )
    )
    fig.update_yaxes(title_text="nats")
    return _layout(fig, title, height=420, showlegend=False)


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
    return _layout(fig, title, height=400, showlegend=False)


def curved_directions(directions: pd.DataFrame, rel_floor: float = 1e-12) -> pd.DataFrame:
    """Directions with λ above ``rel_floor`` × λ_max (the rest are numerically flat: dead
    units and the null space give λ ~ 1e-16) and nonzero σw, σg."""
    lam_max = float(directions["lam"].max())
    keep = (
        (directions["lam"] > rel_floor * lam_max)
        & (directions["sigma_w"] > 0)
        & (directions["sigma_g"] > 0)
    )
    return directions[keep]


def sharpness_vs_lam(directions: pd.DataFrame, title: str | None = None) -> go.Figure:
    """PAPER.md figure 6: σg,n and σg,n/σw,n against λ_n (log-log), each with Spearman's ρ.

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
    return _layout(fig, text, height=440)


# --- the duality (figure 1) -------------------------------------------------------------


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
    return _layout(fig, title, height=440, showlegend=False)


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
        fig.add_trace(_diagonal([lo, hi], "y = x"))
    fig.update_xaxes(title_text="‖W Δa‖ / ‖a‖")
    fig.update_yaxes(title_text="‖ΔW*‖_F")
    return _layout(fig, title, height=420)


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
    return _layout(fig, title, height=400, showlegend=False)


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
            _diagonal(s, "y = s"),
        ]
    )
    fig.update_xaxes(title_text="layer rescaled by s")
    fig.update_yaxes(title_text="mean ‖ΔW*(sW)‖ / ‖ΔW*(W)‖")
    return _layout(fig, title, height=380)


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
    return _layout(fig, title, height=380)


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
    return _layout(fig, title, height=400)


# --- sweeps (figures 2, 4, 5) -------------------------------------------------------------


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


def gap_vs_knob(runs: pd.DataFrame, knob: str, title: str | None = None) -> go.Figure:
    """PAPER.md figure 4: the gap against one knob, mean ± sd over seeds, sharp/flat split.

    Stacked bars show the sharp and flat parts (their sum is the exact pair gap); lines show
    the real gap, the pair gap and the Σ cσσ estimate.
    """
    cols = ["real_gap", "pair_gap", "estimated_gap", "sharp_gap", "flat_gap"]
    s = seed_stats(runs, knob, cols)
    x = s[knob].to_numpy()
    n = s["pair_gap_n"].to_numpy()
    is_log = knob in LOG_KNOBS and len(x) > 1 and x.min() > 0 and x.max() / x.min() >= 8
    fig = go.Figure()
    # Bars are positioned by category so they stay visible on a log axis: draw them as
    # thick error-free markers instead when the axis is logarithmic.
    for key in ("sharp_gap", "flat_gap"):
        hover = f"{LABELS[key]}<br>{knob} %{{x}}<br>%{{y:.4g}} ± %{{customdata[0]:.2g}} nats (n=%{{customdata[1]}})<extra></extra>"
        custom = np.stack([s[f"{key}_std"], n], 1)
        if is_log:
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=s[f"{key}_mean"],
                    mode="markers+lines",
                    name=LABELS[key],
                    marker={"color": COLORS[key], "size": 9, "symbol": "square"},
                    line={"color": COLORS[key], "width": 1, "dash": "dot"},
                    error_y={"type": "data", "array": s[f"{key}_std"]},
                    customdata=custom,
                    hovertemplate=hover,
                )
            )
        else:
            fig.add_trace(
                go.Bar(
                    x=x,
                    y=s[f"{key}_mean"],
                    name=LABELS[key],
                    marker_color=COLORS[key],
                    opacity=0.45,
                    customdata=custom,
                    hovertemplate=hover,
                )
            )
    for key, dash in (("real_gap", "solid"), ("pair_gap", "dash"), ("estimated_gap", "dot")):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=s[f"{key}_mean"],
                mode="markers+lines",
                name=LABELS[key],
                line={"color": COLORS[key], "dash": dash},
                marker={"size": 8},
                error_y={"type": "data", "array": s[f"{key}_std"], "visible": True},
                customdata=np.stack([s[f"{key}_std"], n], 1),
                hovertemplate=f"{LABELS[key]}<br>{knob} %{{x}}<br>%{{y:.4g}} ± %{{customdata[0]:.2g}} nats (n=%{{customdata[1]}})<extra></extra>",
            )
        )
    if not is_log:
        fig.update_layout(barmode="stack")
        fig.update_xaxes(tickvals=x)
    _x_axis(fig, knob, x)
    fig.update_yaxes(title_text="generalization gap (nats)")
    seeds = int(n.max()) if len(n) else 0
    return _layout(
        fig,
        title
        or f"Gap against {knob_label(knob)} (mean ± sd over {seeds} seed{'s' if seeds != 1 else ''})",
        height=440,
    )


def factors_vs_knob(runs: pd.DataFrame, knob: str, title: str | None = None) -> go.Figure:
    """Sharpness Σσg², size Σσw² and the layer weight norm against one knob, mean ± sd."""
    keys = ["sharpness", "size", "weight_norm"]
    s = seed_stats(runs, knob, keys)
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=[LABELS[k] for k in keys], horizontal_spacing=0.08
    )
    for i, key in enumerate(keys, start=1):
        fig.add_trace(
            go.Scatter(
                x=s[knob],
                y=s[f"{key}_mean"],
                mode="markers+lines",
                name=LABELS[key],
                marker={"color": COLORS[key], "size": 8},
                line={"color": COLORS[key]},
                error_y={"type": "data", "array": s[f"{key}_std"]},
                customdata=np.stack([s[f"{key}_std"], s[f"{key}_n"]], 1),
                hovertemplate=f"{LABELS[key]}<br>{knob} %{{x}}<br>%{{y:.4g}} ± %{{customdata[0]:.2g}} (n=%{{customdata[1]}})<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=i,
        )
        _x_axis(fig, knob, s[knob], row=1, col=i)
    fig.update_yaxes(title_text="Σ σg²", row=1, col=1)
    fig.update_yaxes(title_text="Σ σw²", row=1, col=2)
    fig.update_yaxes(title_text="‖W‖_F", row=1, col=3)
    return _layout(fig, title or f"Which factor moves with {knob_label(knob)}", height=380)


def metric_vs_knob(
    runs: pd.DataFrame, knob: str, metric: str, title: str | None = None
) -> go.Figure:
    """One Analysis scalar (e.g. ``test_error``) against a knob, mean ± sd over seeds, with
    every run as a faint dot."""
    s = seed_stats(runs, knob, [metric])
    label = LABELS.get(metric, metric)
    fig = go.Figure(
        [
            go.Scatter(
                x=runs[knob],
                y=runs[metric],
                mode="markers",
                name="runs",
                marker={"size": 6, "color": "#bbb"},
                customdata=runs[["seed"]].to_numpy(),
                hovertemplate=f"{knob} %{{x}} seed %{{customdata[0]}}<br>{metric} %{{y:.4g}}<extra></extra>",
            ),
            go.Scatter(
                x=s[knob],
                y=s[f"{metric}_mean"],
                mode="markers+lines",
                name="mean ± sd",
                marker={"size": 9, "color": "#1f77b4"},
                error_y={"type": "data", "array": s[f"{metric}_std"]},
                hovertemplate=f"{knob} %{{x}}<br>{metric} %{{y:.4g}}<extra></extra>",
            ),
        ]
    )
    _x_axis(fig, knob, s[knob])
    fig.update_yaxes(title_text=label)
    return _layout(fig, title or f"{label} against {knob_label(knob)}", height=380)


def factor_plane(runs: pd.DataFrame, knob: str, title: str | None = None) -> go.Figure:
    """Every run in the (size, sharpness) plane, coloured by its real gap; the mean path over
    the knob's values is drawn as a line with the values as labels."""
    s = seed_stats(runs, knob, ["sharpness", "size", "real_gap"])
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=runs["size"],
            y=runs["sharpness"],
            mode="markers",
            name="runs",
            marker={
                "size": 8,
                "color": runs["real_gap"],
                "colorscale": "Plasma",
                "colorbar": {"title": "real gap"},
                "line": {"width": 0.5, "color": "#333"},
            },
            customdata=np.stack([runs[knob], runs["seed"], runs["real_gap"]], 1),
            hovertemplate=f"{knob} %{{customdata[0]}} seed %{{customdata[1]}}<br>size %{{x:.4g}}<br>"
            "sharpness %{y:.4g}<br>real gap %{customdata[2]:.4g}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=s["size_mean"],
            y=s["sharpness_mean"],
            mode="lines+markers+text",
            name="mean over seeds",
            text=[f"{knob}={v:g}" for v in s[knob]],
            textposition="top center",
            line={"color": "#333", "width": 1.5},
            marker={"symbol": "x", "size": 9, "color": "#333"},
            hovertemplate=f"{knob} %{{text}}<br>size %{{x:.4g}}<br>sharpness %{{y:.4g}}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="size Σ σw²")
    fig.update_yaxes(title_text="sharpness Σ σg²")
    return _layout(fig, title or f"Sharpness against size as {knob_label(knob)} varies", height=460)


def estimated_vs_actual(
    runs: pd.DataFrame,
    color: str | None = None,
    title: str = "Estimated against actual gap, every run",
) -> go.Figure:
    """PAPER.md figure 2: the identity total ⟨Δl⟩ (circles) and the Σ cσσ estimate (crosses)
    against the real gap, one point per run, grouped by ``color`` (e.g. the swept knob)."""
    fig = go.Figure()
    groups = [("all runs", runs)] if color is None else list(runs.groupby(color, sort=False))
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
    vals = pd.concat([runs["real_gap"], runs["pair_gap"], runs["estimated_gap"]]).astype(float)
    # Gaps spanning more than a decade (label noise) read best on log axes.
    log = bool(len(vals)) and float(vals.min()) > 0 and float(vals.max()) / float(vals.min()) > 10
    if len(vals):
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.05 * (hi - lo if hi > lo else 1.0)
        lo, hi = (lo / 1.1, hi * 1.1) if log else (lo - pad, hi + pad)
        fig.add_trace(_diagonal([lo, hi], "y = x"))
    axis = "log" if log else "linear"
    fig.update_xaxes(title_text="real gap: test CE − clean-train CE (nats)", type=axis)
    fig.update_yaxes(title_text="decomposition (nats)", type=axis)
    fig = _layout(fig, title, height=520)
    if len(groups) > 2:  # many groups: a vertical legend beside the plot, clear of the title
        fig.update_layout(
            legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"},
            margin={"r": 260},
        )
    return fig


def size_vs_weight_norm(
    runs: pd.DataFrame, color: str | None = "knob", title: str | None = None
) -> go.Figure:
    """PAPER.md figure 5: size Σσw² against the layer's weight norm (log-log) with the
    least-squares power law; dual weights are linear in W, so slope 2 at fixed activities."""
    r = runs[(runs["size"] > 0) & (runs["weight_norm"] > 0)]
    fig = go.Figure()
    groups = [("runs", r)] if color is None else list(r.groupby(color, sort=False))
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
    slope = float("nan")
    if len(r) >= 2 and r["weight_norm"].nunique() > 1:
        lx, ly = np.log(r["weight_norm"].to_numpy()), np.log(r["size"].to_numpy())
        slope, icpt = np.polyfit(lx, ly, 1)
        xs = np.linspace(lx.min(), lx.max(), 20)
        fig.add_trace(
            go.Scatter(
                x=np.exp(xs),
                y=np.exp(icpt + slope * xs),
                mode="lines",
                name=f"fit: size ∝ ‖W‖^{slope:.2f}",
                line={"color": "#333", "dash": "dash"},
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(type="log", title_text="layer weight norm ‖W‖_F")
    fig.update_yaxes(type="log", title_text="size Σ σw²")
    return _layout(
        fig, title or f"Size factor against weight norm (log-log slope {slope:.2f})", height=460
    )


def knob_effects(
    effects: pd.DataFrame,
    title: str = "What each knob did (relative change, smallest → largest value)",
) -> go.Figure:
    """Grouped bars: relative change of sharpness, size and real gap per knob.

    ``effects`` has one row per knob with columns knob, sharpness_change, size_change, gap_change.
    """
    fig = go.Figure()
    for key, label in (
        ("sharpness_change", "sharpness"),
        ("size_change", "size"),
        ("gap_change", "real gap"),
    ):
        color = COLORS.get(label.replace("real gap", "real_gap"), "#333")
        fig.add_trace(
            go.Bar(
                x=[knob_label(k) for k in effects["knob"]],
                y=100 * effects[key],
                name=label,
                marker_color=color,
                hovertemplate=f"{label}<br>%{{x}}<br>%{{y:+.1f}} %<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="change (%)")
    return _layout(fig, title, height=420)


def finite(values: Iterable[float]) -> bool:
    """True when every value is a finite number (used by takeaways and tests)."""
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
