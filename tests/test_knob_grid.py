"""Issue 21 item 6: the shipped knob grid holds the numbers of today's code.

The grid (``awbench/apps/knobs/store``, package data) was once trained by older code and kept
its numbers after the training engine's rounding changed. Every runs row records the
NUMERICS_VERSION of the code that computed it, and a retrain of one shipped point reproduces it.
When NUMERICS_VERSION is bumped, regenerate the grid (awbench/apps/knobs/store/README.md).
"""

from __future__ import annotations

import pytest
import torch

from awbench.apps.knobs.grid import shipped_store
from awbench.config import NUMERICS_VERSION
from awbench.experiments import experiment
from awbench.experiments.store import config_from_row, load_store
from awbench.status import CONVERGED
from awbench.training.sgd import train

REBUILD = "regenerate it as awbench/apps/knobs/store/README.md says ('Rebuild')"
# the numbers a retrain must reproduce, and how closely (BLAS rounding only, one torch thread)
REPRODUCED = ("real_gap", "sharpness", "size")
REL = 1e-6


@pytest.fixture(scope="module")
def shipped_runs():
    store = shipped_store()
    if not (store / "runs").is_dir():
        pytest.skip("awbench/apps/knobs/store is not there")
    runs, _ = load_store(store)
    assert len(runs), "the shipped knob grid has no runs"
    return runs


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
