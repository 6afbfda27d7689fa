"""on_epoch: how callers observe training (train, multi-learner, stacked, run_experiment)."""

import math

import pandas as pd
import pytest

import awbench as aw
from awbench.experiments import experiment
from awbench.training.run import divergence_bound
from awbench.training.stacked import train_stacked

SMOKE = aw.Config.preset("smoke").replace(n_train=120, n_test=60)


class Recorder:
    def __init__(self):
        self.calls: list[tuple[int, int, dict]] = []

    def __call__(self, epoch: int, budget: int, row: dict) -> None:
        self.calls.append((epoch, budget, row))


def assert_calls_follow(calls, history: pd.DataFrame, budget: int) -> None:
    """One call per history row, in order, epochs 1, 2, ..., the rows equal to the history's."""
    assert [epoch for epoch, _, _ in calls] == list(range(1, len(history) + 1))
    assert {b for _, b, _ in calls} == {budget}
    assert [row["epoch"] for _, _, row in calls] == list(history["epoch"])
    pd.testing.assert_frame_equal(pd.DataFrame([row for _, _, row in calls]), history)


def test_train_calls_on_epoch_once_per_epoch_with_its_history_row():
    cfg = SMOKE.replace(max_epochs=5)
    seen = Recorder()
    run = aw.train(cfg, on_epoch=seen)
    assert run.epochs == 5
    assert_calls_follow(seen.calls, run.history, 5)


def test_on_epoch_sees_the_stopping_epoch_and_the_diverged_epoch():
    converging = SMOKE.replace(max_epochs=10, stop_loss=1e3, stop_acc=0.0, stop_window=3)
    seen = Recorder()
    run = aw.train(converging, on_epoch=seen)
    assert run.status == "converged" and run.epochs == 3
    assert_calls_follow(seen.calls, run.history, 10)

    diverging = SMOKE.replace(max_epochs=8, weight_decay=30.0, weight_decay_mode="squared")
    seen = Recorder()
    run = aw.train(diverging, on_epoch=seen)
    assert run.status == "diverged"
    assert_calls_follow(seen.calls, run.history, 8)
    assert not seen.calls[-1][2]["train_loss"] <= divergence_bound(10)  # huge or NaN


def test_a_callback_that_edits_its_row_changes_nothing():
    cfg = SMOKE.replace(max_epochs=4)

    def vandal(epoch, budget, row):
        row["train_loss"] = -1.0

    assert aw.train(cfg, on_epoch=vandal).history.equals(aw.train(cfg).history)


def test_multilearner_training_calls_on_epoch_with_its_extra_columns():
    cfg = SMOKE.replace(max_epochs=3, algorithm="ssgd", n_learners=2)
    seen = Recorder()
    run = aw.train(cfg, on_epoch=seen)
    assert_calls_follow(seen.calls, run.history, 3)
    assert {"consensus", "learner_train_loss"} <= set(seen.calls[0][2])


def test_train_stacked_calls_on_epoch_per_member_in_config_order():
    cfg = SMOKE.replace(
        dtype="float64", n_train=200, lr=0.5, stop_loss=0.3, stop_acc=0.9, stop_window=2
    )
    cfgs = [cfg.replace(max_epochs=20, seed=s) for s in (5, 1, 0)]  # 20, 14 and 17 epochs
    seen = Recorder()
    runs = train_stacked(cfgs, on_epoch=seen, test_every=4)
    epochs = [run.epochs for run in runs]
    assert len(set(epochs)) == 3, "the case needs members that stop at different epochs"
    # epoch by epoch, one call for each member still training, in the order of cfgs
    expected = [
        (epoch, m)
        for epoch in range(1, max(epochs) + 1)
        for m, run in enumerate(runs)
        if run.epochs >= epoch
    ]
    assert [epoch for epoch, _, _ in seen.calls] == [epoch for epoch, _ in expected]
    for m, run in enumerate(runs):
        mine = [call for call, (_, owner) in zip(seen.calls, expected) if owner == m]
        # the row is complete when reported: the member's last epoch has its test columns
        assert_calls_follow(mine, run.history, 20)
        assert math.isfinite(mine[-1][2]["test_loss"])


def test_run_experiment_calls_on_epoch_but_not_on_a_cache_hit():
    cfg = SMOKE.replace(max_epochs=4, seed=31)
    seen = Recorder()
    res = aw.run_experiment(cfg, on_epoch=seen)
    assert not res.cached
    assert_calls_follow(seen.calls, res.history, 4)
    again = Recorder()
    assert aw.run_experiment(cfg, on_epoch=again).cached
    assert again.calls == []


class Stop(Exception):
    pass


def test_an_exception_from_on_epoch_propagates_and_leaves_no_cache_entry():
    cfg = SMOKE.replace(max_epochs=6, seed=32)
    seen = []

    def stop_at_2(epoch, budget, row):
        seen.append(epoch)
        if epoch == 2:
            raise Stop("enough")

    with pytest.raises(Stop, match="enough"):
        aw.train(cfg, on_epoch=stop_at_2)
    assert seen == [1, 2], "training went on after the callback raised"
    with pytest.raises(Stop):
        train_stacked([cfg, cfg.replace(seed=33)], on_epoch=stop_at_2)
    with pytest.raises(Stop):
        aw.run_experiment(cfg, on_epoch=stop_at_2)
    assert experiment.load_cached(cfg) is None
    assert not experiment._path(cfg).exists()
    assert not aw.run_experiment(cfg).cached  # and a later run trains it whole
