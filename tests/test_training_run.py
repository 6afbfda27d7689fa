"""A training run's status and cache (awbench/training/run.py, awbench/cache.py): a blow-up
is "diverged", the cache is tied to the numerics version, and an unwritable cache never loses
a finished run."""

from __future__ import annotations

import errno
import math
import os
import warnings

import pytest
import torch

import awbench as aw
from awbench import config as config_module
from awbench.cache import cache_dir
from awbench.config import NUMERICS_VERSION
from awbench.experiments import experiment, sweep
from awbench.experiments.store import load_store
from awbench.status import DIVERGED, DONE_STATUSES
from awbench.training.run import divergence_bound, divergence_reason
from awbench.training.sgd import train
from awbench.training.stacked import train_stacked

SMOKE = aw.Config.preset("smoke")
BOUND_10 = f"{divergence_bound(10):.4g}"  # 23.03


# --- item 3: divergence is a loss beyond a stated bound, not only NaN/inf ----------------------


def test_the_bound_is_ten_times_the_loss_of_a_uniform_guess():
    assert divergence_bound(10) == pytest.approx(10 * math.log(10))
    assert divergence_bound(1) == divergence_bound(2) > 0  # one class: never a zero bound
    assert divergence_reason(2.3, 2.3, True, 10, 5, 0.05) is None
    assert divergence_reason(23.0, 23.0, True, 10, 5, 0.05) is None
    why = divergence_reason(24.0, 2.3, True, 10, 5, 0.05)
    assert why is not None and "24" in why and BOUND_10 in why and "epoch 5" in why
    assert "lr=0.05" in why
    assert "non-finite" in divergence_reason(math.nan, 2.3, True, 10, 5, 0.05)
    assert "non-finite" in divergence_reason(2.3, 2.3, False, 10, 5, 0.05)
    assert "training steps" in divergence_reason(2.3, math.inf, True, 10, 5, 0.05)


def _assert_blow_up(run, loss_kind: str) -> None:
    assert run.status == DIVERGED and not run.ok, (run.status, run.reason)
    assert loss_kind in run.reason
    assert f"divergence bound {BOUND_10}" in run.reason
    assert f"at epoch {run.epochs}" in run.reason and "lr=1000" in run.reason


def test_a_finite_tanh_blow_up_is_diverged_not_max_epochs():
    # Before: clean-train loss ~7400, stored as max_epochs after 100 epochs.
    run = train(SMOKE.replace(activation="tanh", lr=1000.0))
    _assert_blow_up(run, "training loss")
    assert run.epochs == 1 and math.isfinite(run.history["train_loss"].iloc[-1])
    assert run.history["train_loss"].iloc[-1] > divergence_bound(10)


def test_a_relu_blow_up_that_kills_every_unit_is_diverged_not_failed():
    # Before: the steps' losses reach 1e13, every ReLU dies, the clean-train loss sits at
    # ln 10 and the analysis failed with "no test sample could be paired" (status failed).
    cfg = SMOKE.replace(activation="relu", lr=1000.0, seed=0)
    run = train(cfg)
    _assert_blow_up(run, "mean loss of the training steps")
    res = experiment.result_of(run)
    assert res.status == DIVERGED and res.reason == run.reason


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_a_blow_up_is_diverged_in_the_multilearner_trainer(activation):
    cfg = SMOKE.replace(activation=activation, lr=1000.0, n_learners=2, algorithm="dpsgd")
    run = train(cfg)
    _assert_blow_up(run, "loss")


def test_a_blow_up_is_diverged_per_member_of_a_stack():
    cfgs = [SMOKE.replace(activation="tanh", lr=1000.0, seed=s) for s in range(3)]
    for run in train_stacked(cfgs):
        _assert_blow_up(run, "loss")


def test_learning_runs_are_never_flagged():
    # The loss starts at about ln 10 = 2.3, ten times below the bound.
    runs = train_stacked([SMOKE.replace(seed=s) for s in range(3)])
    runs.append(train(SMOKE.replace(activation="tanh", lr=1.0)))
    runs.append(train(SMOKE.replace(n_learners=2, algorithm="dpsgd")))
    for run in runs:
        assert run.status in DONE_STATUSES, run.reason
        assert run.history["train_loss"].max() < 0.2 * divergence_bound(10)


# --- item 5: a numerics version, out of the key, in the cache and the store ------------------

# Golden numbers of two fixed small runs and the NUMERICS_VERSION they belong to, run on one
# torch thread (conftest; sweeps run the same way). rel 1e-6 leaves room for BLAS rounding only.
# - smoke preset, seed 0: 41 epochs, within 1e-6 with 1 and 2 torch threads; so short that a
#   float32 reordering in the engine moves it by less than the tolerance (0269b10: 4e-7);
# - paper preset at n_train=324, seed 0 (a point of the shipped knob grid): 453 epochs to the
#   paper's stopping rule in about 1.5 s, long enough that such a reordering grows to 1e-4 (a
#   second torch thread alone moves it by 3e-6), so a silent change of trained numbers fails.
GOLDEN_VERSION = 2
GOLDEN = {
    "pair_gap": 0.25309927303636726,
    "sharpness": 1.4163565836263237,
    "size": 0.19778540801553754,
    "final_train_loss": 0.09813745319843292,
}
GOLDEN_EPOCHS = 41
PAPER_GOLDEN_CONFIG = aw.Config.preset("paper").replace(n_train=324, seed=0)
PAPER_GOLDEN = {
    "real_gap": 0.3192150265878916,
    "pair_gap": 0.3193348576754886,
    "sharpness": 2.2958977307169945,
    "size": 0.3477769339549158,
    "final_train_loss": 0.0009976463625207543,
}
PAPER_GOLDEN_EPOCHS = 453


def _check_golden(cfg, golden, golden_epochs, names):
    assert torch.get_num_threads() == 1, "golden numbers are for one torch thread"
    res = experiment.result_of(train(cfg))
    got = {name: res.scalars[name] for name in golden}
    if GOLDEN_VERSION != NUMERICS_VERSION:
        pytest.fail(
            f"NUMERICS_VERSION is {NUMERICS_VERSION} but the golden numbers are for version "
            f"{GOLDEN_VERSION}: set GOLDEN_VERSION = {NUMERICS_VERSION}, {names[0]} = {got!r} "
            f"and {names[1]} = {res.epochs} (status {res.status}), and regenerate the knob "
            "grid (awbench/apps/knobs/store/README.md)"
        )
    changed = {
        name: (golden[name], value)
        for name, value in got.items()
        if value != pytest.approx(golden[name], rel=1e-6, abs=1e-12)
    }
    assert res.status == "converged" and res.epochs == golden_epochs and not changed, (
        f"the numbers of the golden run {names[0]} (key {cfg.key()}) changed (golden, now): "
        f"{changed}, status {res.status}, epochs {golden_epochs} -> {res.epochs}, while NUMERICS_VERSION stayed {NUMERICS_VERSION}. "
        "If the change is intended, bump NUMERICS_VERSION in awbench/config.py (so that cached "
        f"results of the old code are recomputed), update GOLDEN_VERSION and {names[0]} here "
        "and regenerate the knob grid (awbench/apps/knobs/store/README.md)."
    )


def test_golden_numbers_change_only_with_a_numerics_version_bump():
    _check_golden(SMOKE, GOLDEN, GOLDEN_EPOCHS, ("GOLDEN", "GOLDEN_EPOCHS"))


def test_paper_golden_numbers_change_only_with_a_numerics_version_bump():
    # A run of the paper's protocol to its stopping rule: the smoke run is too short to see
    # rounding changes that move the knob grid and the report's runs.
    _check_golden(
        PAPER_GOLDEN_CONFIG,
        PAPER_GOLDEN,
        PAPER_GOLDEN_EPOCHS,
        ("PAPER_GOLDEN", "PAPER_GOLDEN_EPOCHS"),
    )


def test_the_numerics_version_is_not_in_the_run_key(monkeypatch):
    key = SMOKE.key()
    monkeypatch.setattr(config_module, "NUMERICS_VERSION", NUMERICS_VERSION + 1)
    assert SMOKE.key() == key


def test_a_cache_entry_of_other_numerics_is_recomputed(monkeypatch):
    cfg = SMOKE.replace(max_epochs=2, seed=31)
    first = experiment.run_experiment(cfg)
    blob = torch.load(experiment._path(cfg), weights_only=True)
    assert blob["numerics"] == NUMERICS_VERSION
    assert experiment.run_experiment(cfg).cached
    # an entry written by code of another numbers version (or by code before there was one)
    for stale in (dict(blob, numerics=NUMERICS_VERSION - 1), {**blob, "numerics": None}):
        torch.save(stale, experiment._path(cfg))
        assert experiment.load_cached(cfg) is None
        again = experiment.run_experiment(cfg)
        assert not again.cached and again.scalars == first.scalars
    # this process bumped its numbers: what the old code cached is not served
    assert experiment.run_experiment(cfg).cached
    monkeypatch.setattr(experiment, "NUMERICS_VERSION", NUMERICS_VERSION + 1)
    assert experiment.load_cached(cfg) is None


def test_store_rows_carry_the_numerics_version(tmp_path):
    grid = {"lr": [0.05]}
    sweep.run_sweep(grid, tmp_path, base=SMOKE.replace(max_epochs=2), workers=1, quiet=True)
    runs, _ = load_store(tmp_path)
    assert len(runs) == 1 and runs["numerics_version"].tolist() == [NUMERICS_VERSION]
    row = sweep.failed_row(SMOKE, "boom")
    assert row["numerics_version"] == NUMERICS_VERSION


# --- item 8: an unwritable cache is a warning, never a failed run ----------------------------


@pytest.fixture(params=["read-only", "full"])
def unwritable_cache(request, monkeypatch):
    """The results cache cannot be written: a read-only folder, or a full disk (ENOSPC).

    As root chmod does not stop writes; then the read-only case injects EROFS instead."""
    results = cache_dir() / "results"
    results.mkdir(parents=True, exist_ok=True)
    real_save = torch.save

    def failing_save(code: int):
        def save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)  # a partial file is left behind, then ...
            raise OSError(code, os.strerror(code), str(f))

        return save

    if request.param == "read-only":
        mode = results.stat().st_mode
        os.chmod(results, 0o555)
        probe = results / ".probe"
        try:
            probe.write_bytes(b"")
        except OSError:
            pass  # really read-only
        else:
            probe.unlink()
            monkeypatch.setattr(torch, "save", failing_save(errno.EROFS))
        yield results
        os.chmod(results, mode)
    else:
        monkeypatch.setattr(torch, "save", failing_save(errno.ENOSPC))
        yield results


def test_an_unwritable_cache_returns_the_finished_run(unwritable_cache):
    cfg = SMOKE.replace(max_epochs=3, seed=41)
    with pytest.warns(UserWarning, match="could not cache run"):
        res = experiment.run_experiment(cfg)
    assert res.status in DONE_STATUSES and not res.cached and "pair_gap" in res.scalars
    with pytest.warns(UserWarning, match="could not cache run"):
        results = experiment.run_experiments([cfg.replace(seed=s) for s in (42, 43)])
    assert [r.status in DONE_STATUSES for r in results] == [True, True]
    assert not [p for p in unwritable_cache.iterdir() if p.name.endswith(".tmp")]


def test_a_sweep_into_an_unwritable_cache_stores_its_runs(unwritable_cache, tmp_path):
    base = SMOKE.replace(max_epochs=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = sweep.run_sweep(
            {"lr": [0.05, 0.1]}, tmp_path / "store", base=base, seeds=[51], workers=1, quiet=True
        )
    runs, directions = load_store(tmp_path / "store")
    assert (report.ran, report.done, report.failed) == (2, 2, 0)
    assert sorted(runs["status"].isin(DONE_STATUSES).tolist()) == [True, True], runs["reason"]
    assert set(directions["key"]) == set(runs["key"])
