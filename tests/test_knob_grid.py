"""The shipped knob grid: what it holds, and that it holds the numbers of today's code.

The grid (``awbench/apps/knobs/store``, package data) crosses batch size, learning rate, weight
decay and dropout (three values each) with every point's seeds converged, and stays small
enough to ship. It was once trained by older code and kept its numbers after the training
engine's rounding changed: every runs row records the NUMERICS_VERSION of the code that
computed it, and a retrain of one shipped point reproduces it. When NUMERICS_VERSION is
bumped, regenerate the grid (awbench/apps/knobs/store/README.md).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from awbench.apps.knobs.grid import KNOBS, shipped_store
from awbench.config import NUMERICS_VERSION
from awbench.experiments import experiment
from awbench.experiments.grids import KNOBS_CROSSED, KNOBS_SEEDS
from awbench.experiments.store import config_from_row, load_store
from awbench.status import CONVERGED
from awbench.training.sgd import train

REBUILD = "regenerate it as awbench/apps/knobs/store/README.md says ('Rebuild')"
# the numbers a retrain must reproduce, and how closely (BLAS rounding only, one torch thread)
REPRODUCED = ("real_gap", "sharpness", "size")
REL = 1e-6
MAX_BYTES = 5 * 2**20  # package data


@pytest.fixture(scope="module")
def shipped_runs():
    store = shipped_store()
    if not (store / "runs").is_dir():
        pytest.skip("awbench/apps/knobs/store is not there")
    runs, _ = load_store(store)
    assert len(runs), "the shipped knob grid has no runs"
    return runs


def test_four_knobs_are_fully_crossed_with_three_converged_seeds_at_every_point(shipped_runs):
    assert len(KNOBS_CROSSED) == 4 and all(len(v) >= 3 for v in KNOBS_CROSSED.values())
    assert KNOBS_SEEDS >= 3
    runs = shipped_runs
    assert (runs["status"] == CONVERGED).all(), "a run that did not converge is not a result"
    alone = [k for k in KNOBS if k not in KNOBS_CROSSED and k != "seed"]
    defaults = {k: runs[k].mode().iloc[0] for k in alone}
    cross = runs
    for k, v in defaults.items():
        cross = cross[cross[k] == v]
    found = {tuple(row) for row in cross[list(KNOBS_CROSSED)].itertuples(index=False)}
    assert found == set(itertools.product(*KNOBS_CROSSED.values()))
    seeds = runs.groupby([k for k in KNOBS if k != "seed"])["seed"].nunique()
    assert (seeds >= KNOBS_SEEDS).all(), seeds[seeds < KNOBS_SEEDS]
    for k in alone:  # the other knobs, moved alone from the default: three values each
        assert runs[k].nunique() >= 3, k


def test_the_shipped_store_fits_in_5_mb():
    store = shipped_store()
    if not (store / "runs").is_dir():
        pytest.skip("awbench/apps/knobs/store is not there")
    size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    assert size <= MAX_BYTES, f"the shipped store is {size / 2**20:.2f} MB"


def test_every_shipped_row_is_of_the_current_numerics_version(shipped_runs):
    assert "numerics_version" in shipped_runs, (
        f"the shipped knob grid's runs have no numerics_version column: {REBUILD}"
    )
    versions = shipped_runs["numerics_version"]
    stale = shipped_runs.loc[versions.isna() | (versions != NUMERICS_VERSION), "key"]
    assert stale.empty, (
        f"{len(stale)} of {len(shipped_runs)} shipped knob-grid runs were computed by code of "
        f"another NUMERICS_VERSION (now {NUMERICS_VERSION}; theirs: "
        f"{sorted(set(versions.astype(str)))}), e.g. {list(stale[:3])}: {REBUILD}"
    )


def cheapest_converged(runs):
    """The converged run that is quickest to retrain (fewest samples seen, then its key)."""
    done = runs[runs["status"] == CONVERGED]
    assert len(done), "no converged run in the shipped knob grid"
    cost = done["epochs"] * done["n_train"]
    return done.assign(_cost=cost).sort_values(["_cost", "key"]).iloc[0]


def test_a_retrain_of_a_shipped_point_reproduces_its_numbers(shipped_runs):
    # Sweeps train on one torch thread (a second thread moves a paper-preset run by ~1e-6),
    # and the tests run on one (conftest).
    assert torch.get_num_threads() == 1
    row = cheapest_converged(shipped_runs)
    cfg = config_from_row(row)
    assert cfg.key() == row["key"]
    res = experiment.result_of(train(cfg))
    now = {name: res.scalars[name] for name in REPRODUCED}
    stored = {name: float(row[name]) for name in REPRODUCED}
    changed = {
        name: (stored[name], now[name])
        for name in REPRODUCED
        if now[name] != pytest.approx(stored[name], rel=REL)
    }
    assert res.status == CONVERGED and res.epochs == row["epochs"] and not changed, (
        f"a retrain of shipped knob-grid run {row['key']} (n_train={cfg.n_train}, seed "
        f"{cfg.seed}) no longer gives its stored numbers (stored, now): {changed}, status "
        f"{res.status}, epochs {row['epochs']} -> {res.epochs}. The code's numbers changed: "
        f"bump NUMERICS_VERSION (now {NUMERICS_VERSION}) if the golden tests did not already "
        f"ask for it, and {REBUILD}"
    )
