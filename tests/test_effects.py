"""Sweep statistics of awbench.experiments.effects against hand-computed values."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from awbench.experiments.effects import (
    SUMMARY_COLUMNS,
    converged_mask,
    converged_runs,
    effects,
    effects_estimate,
    size_norm_slope,
)
from awbench.status import CONVERGED, FAILED, MAX_EPOCHS
from awbench.viz import sweep_stats as ss


def planted_runs() -> pd.DataFrame:
    """Three knob values x three seeds: every summary column is knob + seed / 10, except a
    run at the largest knob value that failed and one that hit the epoch limit."""
    rows = []
    for value in (1.0, 2.0, 4.0):
        for seed in range(3):
            row = {c: value + seed / 10 for c in SUMMARY_COLUMNS}
            row.update(knob="lr", lr=value, seed=seed, status=CONVERGED)
            row.update(duality_error=1e-13 * (seed + 1), identity_error=1e-14)
            rows.append(row)
    rows.append({**rows[-1], "seed": 3, "status": FAILED, "sharpness": 1e6})
    rows.append({**rows[-1], "seed": 4, "status": MAX_EPOCHS, "sharpness": 1e6})
    runs = pd.DataFrame(rows)
    runs["real_gap"] = 2.0
    runs["estimated_gap"] = 2.0 * (1 + runs["seed"] / 100)
    return runs


def test_converged_mask_prefers_the_flag_and_falls_back_to_status_where_it_is_missing():
    t = pd.DataFrame(
        {
            "status": ["converged", "converged", "max_epochs", "max_epochs"],
            "converged": [True, None, False, None],
        }
    )
    # a missing flag (a store older than the column) is decided by the status, never "counts"
    assert converged_mask(t).tolist() == [True, True, False, False]
    assert converged_mask(t.drop(columns="converged")).tolist() == [True, True, False, False]
    assert converged_mask(pd.DataFrame({"x": [1.0, 2.0]})).tolist() == [True, True]
    # the sweep figures draw by the same rule
    assert ss.split_runs(t)[0].index.tolist() == [0, 1]


def test_converged_runs_prefers_the_converged_flag():
    runs = planted_runs()
    assert len(converged_runs(runs)) == 9
    flagged = runs.assign(converged=runs["seed"] == 0)
    assert list(converged_runs(flagged)["seed"]) == [0, 0, 0]


def test_effects_are_the_planted_means_changes_and_noise_floor():
    e = effects(planted_runs(), "lr")
    assert (e["n_runs"], e["n_failed"], e["n_left_out"]) == (11.0, 1.0, 2.0)
    assert e["sharpness_low"] == pytest.approx(1.1)
    assert e["sharpness_high"] == pytest.approx(4.1)
    assert e["sharpness_change"] == pytest.approx(3.0 / 1.1)
    knob = [1, 1, 1, 2, 2, 2, 4, 4, 4]
    assert e["sharpness_rho"] == pytest.approx(stats.spearmanr(knob, range(9)).statistic)
    assert e["sharpness_seed_sd"] == pytest.approx(0.1)
    assert e["max_duality_error"] == pytest.approx(3e-13)
    assert e["estimate_rel_error"] == pytest.approx(0.01)
    assert e["sharp_share"] == pytest.approx(1.0)
    assert effects_estimate(converged_runs(planted_runs())) == pytest.approx(0.01)


def test_effects_of_a_sweep_with_nothing_converged_only_count():
    runs = planted_runs().assign(status=FAILED)
    assert effects(runs, "lr") == {"n_runs": 11.0, "n_failed": 11.0, "n_left_out": 11.0}


def test_size_norm_slope_recovers_a_power_law():
    norm = np.array([0.5, 1.0, 2.0, 4.0])
    runs = pd.DataFrame({"weight_norm": norm, "size": 3 * norm**2, "status": CONVERGED})
    assert size_norm_slope(runs) == pytest.approx(2.0, rel=1e-12)
    assert np.isnan(size_norm_slope(runs.iloc[:1]))
