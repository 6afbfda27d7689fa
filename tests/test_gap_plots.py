"""Sweep figures count converged runs only and still show the rest, hollow and grey.

A synthetic sweep (4 knob values x 3 seeds) plants one max_epochs run with an absurd gap at
value 0.2, so any statistic that let it in would be off by far more than rounding, and
leaves value 0.4 with no converged run at all (two max_epochs runs and one that diverged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy.stats import t as student_t

from awbench.viz import decomposition_plots as dp
from awbench.viz import gap_plots as gp
from awbench.viz import knob_plots as kp
from awbench.viz import sweep_stats as ss

KNOB = "dropout"
VALUES = (0.0, 0.1, 0.2, 0.4)
PLANTED = (0.2, 2)  # (value, seed) of the max_epochs run with the extreme numbers
EMPTY = 0.4  # no converged run here
EXTREME = 50.0
NUMBERS = [
    "real_gap",
    "pair_gap",
    "estimated_gap",
    "sharp_gap",
    "flat_gap",
    "sharpness",
    "size",
    "weight_norm",
    "test_error",
]


def _runs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for v in VALUES:
        for seed in range(3):
            status = "converged"
            if (v, seed) == PLANTED or (v == EMPTY and seed < 2):
                status = "max_epochs"
            elif v == EMPTY:
                status = "diverged"
            gap = 0.1 + v + rng.normal(0, 0.01)
            row = {
                "real_gap": gap,
                "pair_gap": gap * 1.01,
                "estimated_gap": gap * 0.9,
                "sharp_gap": gap * 0.3,
                "flat_gap": gap * 0.71,
                "sharpness": 1.0 + v + rng.normal(0, 0.05),
                "size": 2.0 - v + rng.normal(0, 0.05),
                "weight_norm": 3.0 + v + rng.normal(0, 0.05),
                "test_error": 0.1 + v / 10,
            }
            if (v, seed) == PLANTED:
                row = {k: EXTREME for k in row}
            if status == "diverged":
                row = {k: np.nan for k in row}
            rows.append({KNOB: v, "seed": seed, "status": status, **row})
    runs = pd.DataFrame(rows)
    # The columns knob_sweeps.with_run_columns adds.
    runs["ok"] = runs["status"].isin(("converged", "max_epochs")) & runs["pair_gap"].notna()
    runs["converged"] = runs["status"] == "converged"
    runs.insert(0, "knob", KNOB)
    runs.insert(1, "value", runs[KNOB])
    return runs


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return _runs()


def _converged_means(runs: pd.DataFrame, col: str) -> list[float]:
    conv = runs[runs["status"] == "converged"]
    return [conv.loc[conv[KNOB] == v, col].mean() for v in VALUES]  # NaN at EMPTY


def _trace(fig: go.Figure, name: str, nth: int = 0):
    hits = [t for t in fig.data if t.name == name]
    assert len(hits) > nth, f"no trace {name!r} in {[t.name for t in fig.data]}"
    return hits[nth]


def _unconverged(fig: go.Figure) -> list:
    return [t for t in fig.data if t.name == ss.NOT_CONVERGED]


def _assert_hollow_planted(fig: go.Figure, xcol_value=None) -> None:
    """The planted run is in a hollow grey 'not converged' trace and in no other trace."""
    hollow = _unconverged(fig)
    assert hollow, "no 'not converged (left out)' trace"
    for t in hollow:
        assert t.marker.symbol.endswith("-open") and t.marker.color == ss.UNCONVERGED_COLOR
    assert any(t.showlegend is not False for t in hollow)
    assert any(EXTREME in np.asarray(t.y, dtype=float) for t in hollow)
    for t in fig.data:
        if t.name != ss.NOT_CONVERGED and t.y is not None:
            assert EXTREME not in np.asarray(t.y, dtype=float), t.name
            if t.x is not None and not isinstance(t, go.Bar):
                assert EXTREME not in np.asarray(t.x, dtype=float), t.name


def _note(runs: pd.DataFrame) -> str:
    return f"{int(runs['converged'].sum())} of {len(runs)} runs converged"


def test_seed_stats_uses_converged_runs_only(runs):
    s = ss.seed_stats(runs, KNOB, ["real_gap"])
    assert s[KNOB].tolist() == list(VALUES)  # the value without a converged run keeps a row
    np.testing.assert_allclose(s["real_gap_mean"], _converged_means(runs, "real_gap"))
    assert s["n_converged"].tolist() == [3, 3, 2, 0] and s["n_runs"].tolist() == [3] * 4
    conv = runs[runs["converged"] & (runs[KNOB] == 0.2)]["real_gap"]
    half = student_t.ppf(0.975, 1) * conv.std(ddof=1) / np.sqrt(2)
    assert s.loc[2, "real_gap_ci"] == pytest.approx(half)
    assert np.isnan(s.loc[3, "real_gap_ci"])


def test_t_interval_needs_two_runs():
    ci = ss.t_interval([1.0, 1.0, 1.0], [1, 2, 10])
    assert np.isnan(ci[0])
    assert ci[1] == pytest.approx(12.706 / np.sqrt(2), rel=1e-4)
    assert ci[2] == pytest.approx(2.262 / np.sqrt(10), rel=1e-3)


# --- per-value figures -------------------------------------------------------------------


def test_gap_vs_knob_means_error_bars_and_hollow_runs(runs):
    fig = kp.gap_vs_knob(runs, KNOB)
    s = ss.seed_stats(runs, KNOB, ["real_gap", "pair_gap"])
    for key in ("real_gap", "pair_gap"):
        mean = _trace(fig, f"{gp.LABELS[key]}, mean ± 95 % CI")
        np.testing.assert_allclose(np.asarray(mean.y, float), _converged_means(runs, key))
        np.testing.assert_allclose(mean.error_y.array, s[f"{key}_ci"].fillna(0.0))
        assert "95 % CI of the mean" in mean.customdata[0][0]
    _assert_hollow_planted(fig)
    assert _note(runs) in fig.layout.title.text
    assert "95 % CI" in fig.layout.title.text


def test_gap_vs_knob_greys_a_value_without_converged_run(runs):
    fig = kp.gap_vs_knob(runs, KNOB)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    coloured = [t for t in bars if "greyed" not in t.name]
    greyed = [t for t in bars if "greyed" in t.name]
    assert len(coloured) == 2 and len(greyed) == 2
    for t in coloured:  # no coloured bar at the empty value
        assert np.isnan(np.asarray(t.y, float)[list(t.x).index(EMPTY)])
    unconverged = runs[(runs[KNOB] == EMPTY) & runs["ok"]]
    for t, key in zip(greyed, ("sharp_gap", "flat_gap")):
        assert list(t.x) == [EMPTY]
        assert t.marker.color in ("#999", "#cfcfcf")
        assert t.y[0] == pytest.approx(unconverged[key].mean())
        assert "no converged run" in t.customdata[0][0]
    assert any(a.text == "no converged run" for a in fig.layout.annotations)


def test_gap_vs_knob_log_axis_greys_with_markers(runs):
    r = runs.assign(batch_size=runs[KNOB].map({0.0: 8, 0.1: 32, 0.2: 128, 0.4: 512}))
    fig = kp.gap_vs_knob(r, "batch_size")
    assert fig.layout.xaxis.type == "log"
    greyed = [t for t in fig.data if t.name and "greyed" in t.name]
    assert greyed and all(list(t.x) == [512] for t in greyed)
    assert all(t.marker.color in ("#999", "#cfcfcf") for t in greyed)
    _assert_hollow_planted(fig)


def test_factors_vs_knob(runs):
    fig = kp.factors_vs_knob(runs, KNOB)
    for key in ("sharpness", "size", "weight_norm"):
        mean = _trace(fig, f"{gp.LABELS[key]}, mean ± 95 % CI")
        np.testing.assert_allclose(np.asarray(mean.y, float), _converged_means(runs, key))
    assert len(_unconverged(fig)) == 3
    assert sum(t.showlegend is not False for t in _unconverged(fig)) == 1
    _assert_hollow_planted(fig)
    assert _note(runs) in fig.layout.title.text


def test_metric_vs_knob(runs):
    fig = kp.metric_vs_knob(runs, KNOB, "test_error")
    mean = _trace(fig, "mean ± 95 % CI (converged)")
    np.testing.assert_allclose(np.asarray(mean.y, float), _converged_means(runs, "test_error"))
    dots = _trace(fig, "converged runs")
    assert len(dots.x) == int(runs["converged"].sum())
    _assert_hollow_planted(fig)
    assert _note(runs) in fig.layout.title.text


# --- every-run figures ---------------------------------------------------------------------


def test_factor_plane(runs):
    fig = kp.factor_plane(runs, KNOB)
    dots = _trace(fig, "converged runs")
    assert len(dots.x) == int(runs["converged"].sum())
    path = _trace(fig, "mean over converged seeds ± 95 % CI")
    np.testing.assert_allclose(np.asarray(path.x, float), _converged_means(runs, "size"))
    np.testing.assert_allclose(np.asarray(path.y, float), _converged_means(runs, "sharpness"))
    _assert_hollow_planted(fig)
    assert _note(runs) in fig.layout.title.text


@pytest.mark.parametrize("color", [None, "knob"])
def test_estimated_vs_actual(runs, color):
    ok = runs[runs["ok"]]
    fig = gp.estimated_vs_actual(ok, color=color)
    _assert_hollow_planted(fig)
    hollow = _unconverged(fig)
    assert {t.marker.symbol for t in hollow} == {"circle-open", "x-open"}
    n_unconverged = int((~ok["converged"]).sum())
    assert all(len(t.x) == n_unconverged for t in hollow)
    counted = [t for t in fig.data if t.name not in (ss.NOT_CONVERGED, "y = x")]
    assert sum(len(t.x) for t in counted) == 2 * int(ok["converged"].sum())
    assert _note(ok) in fig.layout.title.text


def test_size_vs_weight_norm_fits_converged_runs_only(runs):
    ok = runs[runs["ok"]]
    fig = gp.size_vs_weight_norm(ok)
    _assert_hollow_planted(fig)
    conv = ok[ok["converged"]]
    slope = np.polyfit(np.log(conv["weight_norm"]), np.log(conv["size"]), 1)[0]
    assert f"{slope:.2f}" in fig.layout.title.text
    assert _note(ok) in fig.layout.title.text


def test_all_converged_adds_no_note_and_no_grey(runs):
    conv = runs[runs["converged"]]
    for fig in (
        kp.gap_vs_knob(conv, KNOB),
        kp.factors_vs_knob(conv, KNOB),
        kp.metric_vs_knob(conv, KNOB, "test_error"),
        kp.factor_plane(conv, KNOB),
        gp.estimated_vs_actual(conv, color="knob"),
        gp.size_vs_weight_norm(conv),
    ):
        assert "converged" not in fig.layout.title.text.split("(")[0]
        assert "runs converged" not in fig.layout.title.text
        assert not _unconverged(fig)
        assert not [t for t in fig.data if t.name and "greyed" in t.name]


def test_no_converged_run_at_all_still_draws(runs):
    none = runs.assign(converged=False, status=runs["status"].replace("converged", "max_epochs"))
    fig = kp.gap_vs_knob(none, KNOB)
    assert f"0 of {len(runs)} runs converged" in fig.layout.title.text
    assert all(np.isnan(np.asarray(t.y, float)).all() for t in fig.data if "mean" in t.name)
    _assert_hollow_planted(fig)


def test_knob_effects_notes_left_out_runs():
    effects = pd.DataFrame(
        {
            "knob": ["lr", "dropout"],
            "sharpness_change": [0.1, np.nan],
            "size_change": [-0.2, np.nan],
            "gap_change": [0.3, np.nan],
            "left_out": [2, 3],
        }
    )
    fig = gp.knob_effects(effects)
    assert "5 runs" in fig.layout.title.text
    assert "left out" in fig.data[0].customdata[0][0]
    assert any(a.text == "no converged run" for a in fig.layout.annotations)
    assert "<br>" not in gp.knob_effects(effects.assign(left_out=0)).layout.title.text


# --- layout --------------------------------------------------------------------------------


def _legend_clear_of_title(fig: go.Figure) -> None:
    leg = fig.layout.legend
    beside = leg.orientation == "v" and leg.x is not None and leg.x >= 1 and leg.xanchor == "left"
    below = leg.orientation == "h" and leg.yref == "container" and leg.y == 0
    assert beside or below, leg


def test_legends_stay_clear_of_titles(runs):
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.0, 0.5, 0.2],
            "test_loss": [1.0, 0.7, 0.6],
            "train_acc": [0.5, 0.8, 0.9],
            "test_acc": [0.5, 0.7, 0.75],
        }
    )
    for fig in (
        kp.gap_vs_knob(runs, KNOB),
        kp.gap_vs_knob(runs[runs["converged"]], KNOB),
        dp.training_curves(history),
        kp.factor_plane(runs, KNOB),
        gp.estimated_vs_actual(runs[runs["ok"]], color="knob"),
    ):
        _legend_clear_of_title(fig)
        assert fig.layout.margin.t >= 80
    assert kp.gap_vs_knob(runs, KNOB).layout.margin.t >= 100  # two-line title


def test_builders_leave_their_input_alone(runs):
    before = runs.copy()
    kp.gap_vs_knob(runs, KNOB)
    kp.factor_plane(runs, KNOB)
    gp.estimated_vs_actual(runs, color="knob")
    pd.testing.assert_frame_equal(runs, before)


def test_gap_budget_shows_the_complement_so_the_split_adds_up():
    scalars = {
        "real_gap": 0.074,
        "pair_gap": 0.0746,
        "sharp_gap": 0.0373,
        "flat_gap": 0.0198,
        "complement_gap": 0.0175,
        "estimated_gap": 0.0568,
        "mean_term": 0.0003,
        "second_order_gap": 0.004,
    }
    bars = dict(zip(*(dp.gap_budget(scalars).data[0][k] for k in ("x", "y")), strict=True))
    split = [gp.LABELS[k] for k in ("sharp_gap", "flat_gap", "complement_gap")]
    assert all(label in bars for label in split)
    assert sum(bars[label] for label in split) == pytest.approx(bars[gp.LABELS["pair_gap"]])
    dense = dp.gap_budget({**scalars, "complement_gap": 0.0, "flat_gap": 0.0373})
    assert gp.LABELS["complement_gap"] not in dense.data[0]["x"]
