"""The figures' layout (awbench/viz): legends clear of titles, log axes ticking in
numbers, one colour per algorithm in notebook 09's figures, the letter c kept for the
correlation, and the ½λt² curve drawn only where it is a meaningful local model.

Every figure is built from small hand-made inputs and checked on the figure object.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from awbench.viz import decomposition_plots as dp
from awbench.viz import gap_plots as gp
from awbench.viz import knob_plots as kp
from awbench.viz import landscape_plots
from awbench.viz import learner_comparison as lc
from awbench.viz.gap_plots import TEMPLATE

KNOB = "batch_size"
NUMBERS = ("real_gap", "pair_gap", "estimated_gap", "sharp_gap", "flat_gap")


def _sweep(knob: str = KNOB, values=(8, 32, 128)) -> pd.DataFrame:
    rows = []
    for v in values:
        for seed in range(2):
            gap = 0.05 + 1e-3 * v + 1e-3 * seed
            rows.append(
                {
                    knob: v,
                    "seed": seed,
                    "status": "converged",
                    "real_gap": gap,
                    "pair_gap": gap * 1.01,
                    "estimated_gap": gap * 0.9,
                    "sharp_gap": gap * 0.3,
                    "flat_gap": gap * 0.71,
                    "sharpness": 1.0 + 1e-3 * v,
                    "size": 2.0 - 1e-3 * v,
                    "weight_norm": 3.0 + 1e-3 * v,
                    "test_error": 0.1,
                }
            )
    runs = pd.DataFrame(rows)
    runs["ok"] = True
    runs["converged"] = True
    runs.insert(0, "knob", knob)
    runs.insert(1, "value", runs[knob])
    return runs


def _history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "train_loss": [1.0, 1e-2, 1e-4, 1e-15],
            "test_loss": [1.0, 0.7, 0.6, 0.6],
            "train_acc": [0.5, 0.8, 0.9, 1.0],
            "test_acc": [0.5, 0.7, 0.75, 0.76],
        }
    )


def _directions(n: int = 12) -> pd.DataFrame:
    rank = np.arange(n)
    lam = np.logspace(0, -14, n)
    return pd.DataFrame(
        {
            "rank": rank,
            "lam": lam,
            "mu_w": 0.0,
            "sigma_w": np.logspace(-3, -1, n),
            "mu_g": 0.0,
            "sigma_g": np.sqrt(lam),
            "c": np.linspace(0.9, 0.1, n),
            "contribution": 1e-3 * np.ones(n),
        }
    )


# --- legends against titles ----------------------------------------------------------------


def _legend_clear_of_title(fig: go.Figure) -> None:
    """The legend sits beside the plot (left edge right of it, top at the plot's top, under the
    title's margin) or below everything (horizontal, at the container's bottom); never in the
    top margin that holds the title."""
    leg, title = fig.layout.legend, fig.layout.title
    assert title.text and fig.layout.margin.t >= 80, (title, fig.layout.margin)
    beside = (
        leg.orientation == "v"
        and leg.x is not None
        and leg.x >= 1
        and leg.xanchor == "left"
        and (leg.y is None or leg.y <= 1)
        and leg.yanchor in (None, "top", "auto")
    )
    below = leg.orientation == "h" and (
        (leg.yref == "container" and leg.y is not None and leg.y <= 0.05)
        or (leg.y is not None and leg.y < 0)
    )
    assert beside or below, leg
    # The title is in the top margin, above the plot area: either its own y is above any
    # legend's, or it is placed by plotly in the margin ("auto"), which the legend never enters.
    if title.y is not None and leg.y is not None and leg.yref != "container":
        assert title.y > leg.y


@pytest.mark.parametrize("knob", ["batch_size", "dropout"])
def test_gap_against_knob_legend_below_title(knob):
    values = (8, 32, 128) if knob == "batch_size" else (0.0, 0.1, 0.2)
    runs = _sweep(knob, values)
    for fig in (
        kp.gap_vs_knob(runs, knob),
        kp.factors_vs_knob(runs, knob),
        kp.metric_vs_knob(runs, knob, "test_error"),
        kp.factor_plane(runs, knob),
    ):
        _legend_clear_of_title(fig)
    fig = kp.gap_vs_knob(runs, knob)
    assert fig.layout.title.text.startswith("Gap against")
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.yref == "container"


def test_training_curves_legend_clear_of_title():
    fig = dp.training_curves(_history(), title="Training curves (digits, seed 0)")
    _legend_clear_of_title(fig)


def test_multi_learner_legends_clear_of_titles():
    table = _learner_table()
    for fig in (
        lc.gap_by_algorithm(table, ["ssgd", "dpsgd"]),
        lc.factors_by_algorithm(table, ["ssgd", "dpsgd"]),
    ):
        _legend_clear_of_title(fig)


# --- log axes tick in numbers --------------------------------------------------------------


def _axes(fig: go.Figure) -> list:
    return list(fig.select_xaxes()) + list(fig.select_yaxes())


def _numbers_on_log_axes(fig: go.Figure) -> int:
    """Every log axis ticks in numbers: exponentformat "power"/"e"/"E"/"none" or a
    tickformat or explicit tick text, never plotly's default SI prefixes ("B": 1f, 100µ)."""
    logs = [a for a in _axes(fig) if a.type == "log"]
    for axis in logs:
        fmt = axis.exponentformat
        assert fmt in ("power", "e", "E", "none") or axis.tickformat or axis.ticktext, axis
    return len(logs)


def test_log_axes_tick_in_numbers():
    runs = _sweep()
    directions = _directions()
    density = SimpleNamespace(
        grid=np.linspace(-1, 5, 50), density=np.exp(-(np.linspace(-1, 5, 50) ** 2)), settings={}
    )
    figs = [
        dp.training_curves(_history()),
        dp.direction_spectra(directions, n_sharp=3),
        dp.cumulative_gap(directions, 0.012, 0.011, n_sharp=3),
        dp.sharpness_vs_lam(directions),
        gp.size_vs_weight_norm(runs),
        kp.gap_vs_knob(runs, KNOB),
        kp.factors_vs_knob(runs, KNOB),
        landscape_plots.spectrum_figure(np.array([5.0, 1.0, 1e-9]), density),
        lc.factors_by_algorithm(_learner_table(counts=(2, 4, 8, 16)), ["ssgd", "dpsgd"]),
    ]
    assert sum(_numbers_on_log_axes(f) for f in figs) >= 10
    # The house template carries the same default for any axis a caller adds later.
    assert TEMPLATE.layout.xaxis.exponentformat == "power"
    assert TEMPLATE.layout.yaxis.exponentformat == "power"
    fig = dp.training_curves(_history())
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.exponentformat == "power"


# --- notebook 09: one colour per algorithm -----------------------------------------------


def _learner_table(counts=(2, 8), algorithms=("ssgd", "dpsgd", "local_sgd")) -> pd.DataFrame:
    rows = []
    for n in counts:
        for i, alg in enumerate(algorithms):
            for seed in range(3):
                rows.append(
                    {
                        "n_learners": n,
                        "algorithm": alg,
                        "seed": seed,
                        "real_gap": 0.1 + 0.01 * i + 0.001 * seed,
                        "sharpness": 1.0 + i + 0.1 * seed,
                        "size": 5.0 + 0.2 * i + 0.1 * seed,
                    }
                )
    runs = pd.DataFrame(rows)
    cols = ["real_gap", "sharpness", "size"]
    return runs.groupby(["n_learners", "algorithm"])[cols].agg(["mean", "std"])


def _panel_traces(fig: go.Figure, xaxis: str) -> list:
    return [t for t in fig.data if (t.xaxis or "x") == xaxis]


def test_size_panel_names_each_algorithm_by_colour():
    algorithms = ["ssgd", "dpsgd", "local_sgd"]
    fig = lc.factors_by_algorithm(_learner_table(), algorithms)
    legend = {t.legendgroup: t for t in fig.data if t.showlegend is not False}
    assert sorted(legend) == sorted(algorithms)  # one legend entry per algorithm
    colours = {alg: legend[alg].marker.color for alg in algorithms}
    assert len(set(colours.values())) == len(algorithms)  # distinct
    for alg, t in legend.items():
        assert t.name == lc.algorithm_label(alg) and t.line.color == colours[alg]
    size = _panel_traces(fig, "x2")
    assert len(size) == len(algorithms)
    for t in size:  # the size panel draws each algorithm in its legend colour
        assert t.marker.color == colours[t.legendgroup] == t.line.color
    # the sharpness panel too: a colour never means two algorithms
    for t in _panel_traces(fig, "x"):
        assert t.marker.color == colours[t.legendgroup]


def test_notebook_09_figures_use_house_style():
    table = _learner_table(algorithms=("ssgd", "dpsgd"))
    for fig in (
        lc.gap_by_algorithm(table, ["ssgd", "dpsgd"]),
        lc.factors_by_algorithm(table, ["ssgd", "dpsgd"]),
    ):
        assert fig.layout.template.layout.xaxis.exponentformat == "power"
        assert fig.layout.title.x == 0.01 and fig.layout.title.xanchor == "left"
        assert all(t.marker.color in lc.ALGORITHM_COLORS.values() for t in fig.data)
        assert "sd over converged seeds" in fig.layout.title.text
    gap = lc.gap_by_algorithm(table, ["ssgd", "dpsgd", "local_sgd"])  # absent ones skipped
    assert [t.name for t in gap.data] == [lc.algorithm_label(a) for a in ("ssgd", "dpsgd")]
    assert list(gap.layout.xaxis.tickvals) == [2, 8]


# --- the letter c --------------------------------------------------------------------------


def _texts(fig: go.Figure) -> list[str]:
    out = [fig.layout.title.text or ""]
    out += [t.name or "" for t in fig.data]
    out += [a.text or "" for a in fig.layout.annotations]
    out += [(a.title.text or "") for a in _axes(fig)]
    return out


def test_c_means_correlation_only():
    fig = landscape_plots.slice_figure(_slice(2.0), title="Slices")
    for text in _texts(fig):
        assert " c t" not in text and "c=" not in text and "c =" not in text, text
    assert any("½λt²" in t for t in _texts(fig))
    spectra = dp.direction_spectra(_directions(), n_sharp=3)
    assert "correlation" in spectra.layout.yaxis3.title.text


# --- ½λt² only where it is meaningful ----------------------------------------------------


def _slice(lam: float, label: str = "v1", t=None, cubic: float = 0.0):
    t = np.linspace(-1, 1, 21) if t is None else np.asarray(t, dtype=float)
    loss0 = 0.5
    rise = 0.5 * lam * t**2 if lam > 0 else 0.01 * t**2  # lam <= 0 (or nan): a small real rise
    loss = loss0 + rise + cubic * t**4
    return SimpleNamespace(
        t=t,
        loss=loss,
        quadratic=loss0 + 0.5 * lam * t**2,
        loss0=loss0,
        curvature=lam,
        slope=0.0,
        label=label,
    )


def _quadratics(fig: go.Figure) -> list:
    return [t for t in fig.data if t.line.dash == "dash"]


@pytest.mark.parametrize("lam", [0.0, -0.3, float("nan")])
def test_quadratic_absent_without_positive_curvature(lam):
    fig = landscape_plots.slice_figure(_slice(lam), title="Slices")
    assert _quadratics(fig) == []
    assert len(fig.data) == 1  # the measured slice is still drawn
    title = fig.layout.title.text
    assert landscape_plots.QUADRATIC_RULE in title and "not drawn for v1" in title
    assert "≤ 0" in title or "nan" in title


def test_quadratic_present_for_positive_curvature_with_note():
    fig = landscape_plots.slice_figure([_slice(2.0), _slice(-1.0, label="v2")], title="Slices")
    quads = _quadratics(fig)
    assert len(quads) == 1 and quads[0].name.startswith("v1: ½λt², λ = 2")
    assert "where it holds" in quads[0].name
    title = fig.layout.title.text
    assert landscape_plots.QUADRATIC_RULE in title and "λ > 0" in title
    assert "v2 (λ = -1 ≤ 0)" in title and "v1 (" not in title
    # exact quadratic: drawn over the whole slice
    assert np.allclose(sorted(quads[0].x), np.linspace(-1, 1, 21))


def test_quadratic_clipped_to_where_it_holds():
    # loss = 0.5 + t² + 2 t⁴: the quadratic 0.5 + t² is within 10 % of it only for small |t|.
    s = _slice(2.0, cubic=2.0)
    mask = landscape_plots.quadratic_range(s)
    t = s.t[mask]
    err = np.abs(s.quadratic - s.loss) / s.loss
    assert mask.any() and not mask.all()
    assert np.all(err[mask] <= landscape_plots.QUADRATIC_TOLERANCE)
    assert np.abs(t).max() < 1  # the ends, where the quartic dominates, are left out
    (quad,) = _quadratics(landscape_plots.slice_figure(s))
    assert np.isclose(np.abs(quad.x).max(), np.abs(t).max())
    assert f"|t| ≤ {np.abs(t).max():.3g}" in quad.name


def test_quadratic_left_out_when_it_holds_nowhere():
    s = _slice(2.0)
    s.loss = s.loss + 10 * np.abs(s.t)  # a kink at 0: no quadratic fits beyond t = 0
    fig = landscape_plots.slice_figure(s)
    assert _quadratics(fig) == []
    assert "nowhere beyond t = 0" in fig.layout.title.text


def test_no_overlay_no_quadratic_and_no_note():
    fig = landscape_plots.slice_figure(_slice(2.0), title="Slices", overlay=False)
    assert _quadratics(fig) == [] and fig.layout.title.text == "Slices"


def test_eigen_label_keeps_its_lambda_once():
    (quad,) = _quadratics(landscape_plots.slice_figure(_slice(2.0, label="v1 (λ=2)")))
    assert quad.name.startswith("v1 (λ=2): ½λt² (|t| ≤") and quad.name.count("λ") == 2


def test_plane_labels_its_means_by_the_knob_symbol():
    fig = kp.factor_plane(_sweep(values=(8, 32, 128)), KNOB)
    (means,) = [t for t in fig.data if t.mode and "text" in t.mode]
    assert list(means.text) == ["B = 8", "B = 32", "B = 128"]
    assert kp.point_label("n_train", 1000) == "training samples (clean) = 1000"
