"""Plot builders for the gap decomposition and the knob sweeps (docs/science.md section 6, figs 1-6).

Every builder is a pure function: tables or arrays in, a ``plotly.graph_objects.Figure`` out,
with a title, labelled axes (units: gaps and losses in nats, eigenvalues in nats per unit
weight squared) and hover text. Nothing here trains, reads files or mutates its inputs, so
the same builder serves a notebook, the headless report and a ``FigureWidget``.

Sweep tables are one row per run with (at least) the knob's column, ``seed`` and the Analysis
scalars (``real_gap``, ``pair_gap``, ``estimated_gap``, ``sharp_gap``, ``flat_gap``,
``sharpness``, ``size``, ``weight_norm`` ...), and normally ``status``, ``ok`` and
``converged``. An unconverged network is not a result (docs/science.md#5): the sweep builders
draw such runs as hollow grey markers ("not converged (left out)") and compute every mean,
error bar, fit and correlation over converged runs only. Error bars are the 95 % confidence
interval of the mean over seeds (Student t, ``t × sd / √n``); a single converged run has none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from awbench.analysis.decomposition import curved_directions, spearman
from awbench.status import CONVERGED, DONE_STATUSES

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

# Unconverged runs are drawn (hiding them would hide how often training fell short) but in a
# colour no statistic uses, so they cannot be mistaken for results.
NOT_CONVERGED = "not converged (left out)"
UNCONVERGED_COLOR = "#999"
LEVEL = 0.95
INTERVAL = "95 % CI of the mean, t-based"


def knob_label(knob: str) -> str:
    return KNOB_LABELS.get(knob, knob)


def _diagonal(ends: Sequence[float], name: str) -> go.Scatter:
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


def _layout(fig: go.Figure, title: str, legend: str = "right", **kw) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template=TEMPLATE,
        hovermode="closest",
        legend=_LEGENDS[legend],
        margin={"t": 100 if "<br>" in title else 80, "l": 70, "r": 30, "b": 60},
        **kw,
    )
    return fig


# --- which runs count -------------------------------------------------------------------


def converged_mask(runs: pd.DataFrame) -> pd.Series:
    """True for the runs that count as results: the ``converged`` column, else status ==
    "converged". Rows where ``converged`` is missing (stores written before it existed) fall
    back to their status; a table with neither column has nothing to mark and counts whole."""
    if "status" in runs:
        from_status = runs["status"].astype(str).eq(CONVERGED)
    else:
        from_status = pd.Series(True, index=runs.index)
    if "converged" not in runs:
        return from_status
    c = runs["converged"]
    known = c.notna()
    return from_status.where(~known, c.where(known, False).astype(bool)).astype(bool)


def _has_numbers(runs: pd.DataFrame) -> pd.Series:
    if "ok" in runs:
        return runs["ok"].fillna(False).astype(bool)
    if "status" in runs:
        return runs["status"].astype(str).isin(DONE_STATUSES)
    return pd.Series(True, index=runs.index)


def split_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(converged runs, runs with numbers that did not converge). Diverged and failed runs
    have no numbers to draw and are in neither; they still count in :func:`converged_note`."""
    conv = converged_mask(runs)
    return runs[conv], runs[_has_numbers(runs) & ~conv]


def converged_note(runs: pd.DataFrame) -> str:
    """The line "n of m runs converged" when some run did not, else an empty string."""
    n, m = int(converged_mask(runs).sum()), len(runs)
    return "" if n == m else f"{n} of {m} runs converged"


def _titled(title: str, runs: pd.DataFrame) -> str:
    note = converged_note(runs)
    if not note:
        return title
    # The space before <br> keeps the words apart where a caption strips the tags.
    rest = "the others are drawn hollow grey and left out of every statistic"
    return f"{title} <br><sup>{note}; {rest}</sup>"


def t_interval(sd, n, level: float = LEVEL) -> np.ndarray:
    """Half-width of the ``level`` confidence interval of a mean: t(n−1) × sd / √n; NaN for
    fewer than two runs (one run says nothing about the spread)."""
    from scipy.stats import t as student_t

    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    out = np.full(sd.shape, np.nan)
    two = n >= 2
    out[two] = student_t.ppf(0.5 + level / 2, n[two] - 1) * sd[two] / np.sqrt(n[two])
    return out


def seed_stats(
    runs: pd.DataFrame, knob: str, columns: Sequence[str], level: float = LEVEL
) -> pd.DataFrame:
    """Per knob value, over converged runs only: mean, standard deviation over seeds (ddof 1;
    0 for one run), the ``level`` confidence half-width of the mean (``_ci``, NaN below two
    runs) and the count of finite values (``_n``). Every value of the knob gets a row, so a
    value whose runs all failed to converge is there with NaN means; ``n_runs`` and
    ``n_converged`` count the runs at each value."""
    cols = list(columns)
    conv, _ = split_runs(runs)
    values = pd.Index(sorted(runs[knob].dropna().unique()), name=knob)
    g = conv.groupby(knob, sort=True)[cols]
    mean, std = g.mean().reindex(values), g.std(ddof=1).reindex(values)
    n = g.count().reindex(values).fillna(0).astype(int)
    out = pd.DataFrame(index=values)
    for c in cols:
        sd = std[c].where(n[c] != 1, 0.0)
        out[f"{c}_mean"], out[f"{c}_std"], out[f"{c}_n"] = mean[c], sd, n[c]
        out[f"{c}_ci"] = t_interval(sd, n[c], level)
    out["n_runs"] = runs.groupby(knob).size().reindex(values).fillna(0).astype(int)
    out["n_converged"] = conv.groupby(knob).size().reindex(values).fillna(0).astype(int)
    return out.reset_index()


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
    """figure 3 of docs/science.md#9-figure-map: σg, cumulative Σσw, c and λ against the σg rank (log x).

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


def _is_log(knob: str, x) -> bool:
    x = np.asarray(x, dtype=float)
    return bool(knob in LOG_KNOBS and len(x) > 1 and x.min() > 0 and x.max() / x.min() >= 8)


def _spread(s: pd.DataFrame, key: str, unit: str = "") -> np.ndarray:
    """Per knob value, what its error bar is (one hover line each), as a customdata column."""
    out = []
    for ci, sd, n, m in zip(s[f"{key}_ci"], s[f"{key}_std"], s[f"{key}_n"], s["n_runs"]):
        if n == 0:
            out.append(f"no converged run ({m} run{'s' if m != 1 else ''}): no mean")
        elif n == 1:
            out.append(f"a single converged run of {m}: no interval")
        else:
            out.append(
                f"± {ci:.2g}{unit} ({INTERVAL})<br>sd over seeds {sd:.2g}; {n} of {m} runs converged"
            )
    return np.array(out, dtype=object).reshape(-1, 1)


def _error(s: pd.DataFrame, key: str) -> dict:
    # Below two converged runs there is no interval: a zero bar, and the hover says why.
    return {"type": "data", "array": s[f"{key}_ci"].fillna(0.0).to_numpy(), "visible": True}


def _seeds(s: pd.DataFrame, key: str) -> str:
    n = s.loc[s[f"{key}_n"] > 0, f"{key}_n"]
    if n.empty:
        return "no converged seed"
    lo, hi = int(n.min()), int(n.max())
    return f"{hi if lo == hi else f'{lo}–{hi}'} converged seed{'s' if hi != 1 else ''}"


def _unconverged_marks(
    runs: pd.DataFrame,
    x: str,
    y: str,
    xy_hover: str,
    knob: str | None = None,
    numbers: Mapping[str, str] | None = None,
    symbol: str = "circle-open",
    **kw,
) -> go.Scatter:
    """Hollow grey markers for runs that did not converge, each named in the hover by its
    knob value, seed and status, with ``numbers`` ({column: label}) listed below."""
    names = (knob,) if knob else ("knob", "value")
    ids = [c for c in (*names, "seed", "status", "epochs") if c in runs]
    nums = [c for c in (numbers or {}) if c in runs]
    custom = runs[ids + nums].to_numpy(dtype=object) if ids or nums else None
    lines = [
        NOT_CONVERGED,
        " ".join(f"{c} %{{customdata[{j}]}}" for j, c in enumerate(ids)),
        xy_hover,
        *(f"{numbers[c]} %{{customdata[{len(ids) + j}]:.4g}}" for j, c in enumerate(nums)),
    ]
    kw.setdefault("name", NOT_CONVERGED)
    return go.Scatter(
        x=runs[x],
        y=runs[y],
        mode="markers",
        marker={"symbol": symbol, "color": UNCONVERGED_COLOR, "size": 9, "line": {"width": 1.5}},
        customdata=custom,
        hovertemplate="<br>".join(line for line in lines if line) + "<extra></extra>",
        **kw,
    )


def _mark_empty(
    fig: go.Figure, s: pd.DataFrame, knob: str, log: bool, xref: str = "x", yref: str = "y"
) -> None:
    """Label each knob value without a converged run at the top of its column."""
    for v in s.loc[s["n_converged"] == 0, knob]:
        fig.add_annotation(
            x=math.log10(v) if log else v,
            xref=xref,
            y=1,
            yref=f"{yref} domain",
            yanchor="top",
            text="no converged run",
            showarrow=False,
            font={"color": UNCONVERGED_COLOR, "size": 10},
        )


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
    n_uncon = uncon.groupby(knob).size().reindex(s[knob]).fillna(0).astype(int).to_numpy()
    grey = (s["n_converged"] == 0).to_numpy() & (n_uncon > 0)
    uncon_mean = uncon.groupby(knob)[cols].mean().reindex(s[knob])
    is_log = _is_log(knob, x)
    fig = go.Figure()
    # Bars sit at numeric x and vanish on a log axis: square markers stand in for them there.
    for key, grey_color in (("sharp_gap", "#999"), ("flat_gap", "#cfcfcf")):
        hover = f"{LABELS[key]}<br>{knob} %{{x}}<br>%{{y:.4g}} nats<br>%{{customdata[0]}}<extra></extra>"
        parts = [(LABELS[key], True, x, s[f"{key}_mean"], COLORS[key], _spread(s, key, " nats"))]
        if grey.any():
            why = [
                f"no converged run: greyed, the mean of {k} unconverged run{'s' if k != 1 else ''}, "
                "left out of every statistic"
                for k in n_uncon[grey]
            ]
            parts.append(
                (
                    f"{LABELS[key].split(' (')[0]}: no converged run (greyed)",
                    False,
                    x[grey],
                    uncon_mean[key].to_numpy()[grey],
                    grey_color,
                    np.array(why, dtype=object).reshape(-1, 1),
                )
            )
        for name, counted, xs, ys, color, custom in parts:
            err = _error(s, key) if counted else None
            if is_log:
                trace = go.Scatter(
                    x=xs,
                    y=ys,
                    mode="markers+lines" if counted else "markers",
                    marker={"color": color, "size": 9, "symbol": "square"},
                    line={"color": color, "width": 1, "dash": "dot"},
                    error_y=err,
                )
            else:
                trace = go.Bar(x=xs, y=ys, marker_color=color, opacity=0.45 if counted else 0.7)
            trace.update(name=name, customdata=custom, hovertemplate=hover)
            fig.add_trace(trace)
    for key, dash in (("real_gap", "solid"), ("pair_gap", "dash"), ("estimated_gap", "dot")):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=s[f"{key}_mean"],
                mode="markers+lines",
                name=f"{LABELS[key]}, mean ± 95 % CI",
                line={"color": COLORS[key], "dash": dash},
                marker={"size": 8, "color": COLORS[key]},
                error_y=_error(s, key),
                customdata=_spread(s, key, " nats"),
                hovertemplate=f"{LABELS[key]}<br>{knob} %{{x}}<br>mean %{{y:.4g}} nats<br>%{{customdata[0]}}<extra></extra>",
            )
        )
    if len(uncon):
        fig.add_trace(
            _unconverged_marks(
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
    _mark_empty(fig, s, knob, is_log)
    fig.update_yaxes(title_text="generalization gap (nats)")
    text = title or f"Gap against {knob_label(knob)} (mean ± 95 % CI over {_seeds(s, 'pair_gap')})"
    return _layout(fig, _titled(text, runs), legend="below", height=520)


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
                error_y=_error(s, key),
                customdata=_spread(s, key),
                hovertemplate=f"{LABELS[key]}<br>{knob} %{{x}}<br>mean %{{y:.4g}}<br>%{{customdata[0]}}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=i,
        )
        if len(uncon):
            fig.add_trace(
                _unconverged_marks(
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
        _mark_empty(fig, s, knob, log, xref=f"x{axis}", yref=f"y{axis}")
    fig.update_yaxes(title_text="Σ σg²", row=1, col=1)
    fig.update_yaxes(title_text="Σ σw²", row=1, col=2)
    fig.update_yaxes(title_text="‖W‖_F", row=1, col=3)
    text = title or f"Which factor moves with {knob_label(knob)} (mean ± 95 % CI of converged runs)"
    return _layout(fig, _titled(text, runs), legend="below", height=420)


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
        fig.add_trace(_unconverged_marks(uncon, knob, metric, f"{metric} %{{y:.4g}}", knob=knob))
    fig.add_trace(
        go.Scatter(
            x=s[knob],
            y=s[f"{metric}_mean"],
            mode="markers+lines",
            name="mean ± 95 % CI (converged)",
            marker={"size": 9, "color": "#1f77b4"},
            error_y=_error(s, metric),
            customdata=_spread(s, metric),
            hovertemplate=f"{knob} %{{x}}<br>mean {metric} %{{y:.4g}}<br>%{{customdata[0]}}<extra></extra>",
        )
    )
    _x_axis(fig, knob, s[knob])
    _mark_empty(fig, s, knob, _is_log(knob, s[knob]))
    fig.update_yaxes(title_text=label)
    text = title or f"{label} against {knob_label(knob)}"
    return _layout(fig, _titled(text, runs), legend="below", height=420)


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
            _unconverged_marks(
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
            text=[f"{knob}={v:g}" if h else "" for v, h in zip(s[knob], has)],
            textposition="top center",
            line={"color": "#333", "width": 1.5},
            marker={"symbol": "x", "size": 9, "color": "#333"},
            error_x={**_error(s, "size"), "thickness": 1, "color": "#333"},
            error_y={**_error(s, "sharpness"), "thickness": 1, "color": "#333"},
            customdata=np.concatenate([_spread(s, "size"), _spread(s, "sharpness")], 1),
            hovertemplate="%{text}<br>size %{x:.4g} %{customdata[0]}<br>"
            "sharpness %{y:.4g} %{customdata[1]}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="size Σ σw²")
    fig.update_yaxes(title_text="sharpness Σ σg²")
    text = title or f"Sharpness against size as {knob_label(knob)} varies"
    # Below, not beside: the colour bar holds the right-hand side.
    return _layout(fig, _titled(text, runs), legend="below", height=500)


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
                _unconverged_marks(
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
        fig.add_trace(_diagonal([lo, hi], "y = x"))
    axis = "log" if log else "linear"
    fig.update_xaxes(title_text="real gap: test CE − clean-train CE (nats)", type=axis)
    fig.update_yaxes(title_text="decomposition (nats)", type=axis)
    return _layout(fig, _titled(title, runs), height=520)


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
            _unconverged_marks(uncon, "weight_norm", "size", "‖W‖ %{x:.4g}<br>size %{y:.4g}")
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
    return _layout(fig, _titled(text, runs), height=460)


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
    return _layout(fig, text, height=420)


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


def finite(values: Iterable[float]) -> bool:
    """True when every value is a finite number (used by takeaways and tests)."""
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
