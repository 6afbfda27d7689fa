"""Stacked training: every member is the single run of its seed (awbench.training.sgd and the
autograd/torch.optim.SGD reference), members stop and freeze on their own, test_every, and
the checks on the configs."""

import math

import pandas as pd
import pytest
import torch
from test_train import reference_sgd

import awbench
from awbench.config import ACTIVATIONS, Config
from awbench.nn.mlp import MLP
from awbench.training.stacked import train_stacked

SMOKE = Config.preset("smoke")
SEEDS = (2, 0, 1)  # not sorted: runs must come back in input order
COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]


def members(cfg, seeds=SEEDS):
    return [cfg.replace(seed=s) for s in seeds]


def assert_same_run(run, single, atol=1e-10):
    """``run`` (a stacked member) against ``single`` (awbench.training.sgd of the same Config)."""
    assert run.config == single.config
    assert (run.status, run.reason, run.epochs) == (single.status, single.reason, single.epochs)
    assert isinstance(run.model, MLP) and not run.model.training
    for (name, p), q in zip(run.model.named_parameters(), single.model.parameters()):
        assert p.dtype == q.dtype
        torch.testing.assert_close(p, q, rtol=0, atol=atol, equal_nan=True, msg=name)
    assert list(run.history.columns) == COLUMNS
    pd.testing.assert_frame_equal(run.history, single.history, check_exact=False, rtol=0, atol=atol)


# --- every member is its seed's single run ---------------------------------------------------

REFERENCE_CASES = {
    "plain": {},
    "momentum+squared-decay-2-epochs": {
        "momentum": 0.5,
        "weight_decay": 0.01,
        "weight_decay_mode": "squared",
        "weight_decay_epochs": 2,
    },
    "norm-decay": {"weight_decay": 0.05, "weight_decay_epochs": 6},
    "tanh+bias+ragged-batches": {"activation": "tanh", "bias": True, "batch_size": 30},
    "3-hidden-layers+label-noise": {"widths": (16, 12, 8), "lr": 0.05, "label_noise": 0.2},
}


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_members_match_train_and_torch_optim_sgd_in_float64(case):
    changes = {"dtype": "float64", "n_train": 200, "batch_size": 25, "max_epochs": 6}
    cfg = SMOKE.replace(**{**changes, **REFERENCE_CASES[case]})
    runs = train_stacked(members(cfg))
    assert [r.config.seed for r in runs] == list(SEEDS)
    for run in runs:
        assert_same_run(run, awbench.train(run.config))
        ref_model, ref_history = reference_sgd(run.config)
        for (name, p), q in zip(run.model.named_parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-10, msg=name)
        pd.testing.assert_frame_equal(
            run.history, ref_history, check_exact=False, rtol=0, atol=1e-10
        )


def test_dropout_masks_are_each_members_own():
    # ragged batches (200 = 6 x 30 + 20): the epoch's masks must be cut where train()'s are
    cfg = SMOKE.replace(dtype="float64", n_train=200, batch_size=30, max_epochs=5, dropout=0.2)
    for run in train_stacked(members(cfg)):
        assert_same_run(run, awbench.train(run.config))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_members_match_train(activation):
    cfg = SMOKE.replace(n_train=200, max_epochs=4, activation=activation, bias=True, dropout=0.1)
    for run in train_stacked(members(cfg)):
        single = awbench.train(run.config)
        assert (run.status, run.reason, run.epochs) == (single.status, single.reason, single.epochs)
        assert all(p.dtype == torch.float32 for p in run.model.parameters())
        for p, q in zip(run.model.parameters(), single.model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        pd.testing.assert_frame_equal(run.history, single.history, check_exact=False, rtol=1e-5)


# --- members stop, diverge and freeze on their own -----------------------------------------


def test_members_stop_independently_and_stay_frozen():
    cfg = SMOKE.replace(
        dtype="float64",
        n_train=200,
        lr=0.5,
        stop_loss=0.3,
        stop_acc=0.9,
        stop_window=2,
        max_epochs=20,
    )
    seeds = (0, 1, 2, 3, 4, 5)  # converge after 17, 14, 15, 16, 19 epochs; 5 never does
    singles = [awbench.train(c) for c in members(cfg, seeds)]
    epochs = [s.epochs for s in singles]
    assert len(set(epochs)) > 1 and min(epochs) < cfg.max_epochs  # the case needs both
    runs = train_stacked(members(cfg, seeds))
    for run, single in zip(runs, singles):
        # a member that kept stepping after its stop would end on other parameters
        assert_same_run(run, single)
    assert [r.status for r in runs] == [s.status for s in singles]


def test_divergence_is_each_members_status():
    # lr * beta > 2 makes squared decay an exploding map: w <- (1 - lr*beta) w
    cfg = SMOKE.replace(
        n_train=200, lr=1e3, weight_decay=1.0, weight_decay_mode="squared", init_scale=10.0
    )
    runs = train_stacked(members(cfg))
    for run in runs:
        single = awbench.train(run.config)
        assert run.status == "diverged" and not run.ok and "non-finite" in run.reason
        assert (run.status, run.reason, run.epochs) == (single.status, single.reason, single.epochs)
        assert not math.isfinite(run.history["train_loss"].iloc[-1])
        for p, q in zip(run.model.parameters(), single.model.parameters()):
            torch.testing.assert_close(p, q, equal_nan=True)


def test_automatic_budget_configs_run():
    # max_epochs / weight_decay_epochs None: the automatic budget; a rule every epoch meets
    cfg = SMOKE.replace(
        dtype="float64",
        n_train=200,
        max_epochs=None,
        weight_decay=0.01,
        weight_decay_epochs=None,
        stop_loss=1e3,
        stop_acc=0.0,
        stop_window=2,
    )
    for run in train_stacked(members(cfg)):
        assert_same_run(run, awbench.train(run.config))
        assert run.status == "converged" and run.epochs == 2 and run.train_seconds > 0


# --- test_every ------------------------------------------------------------------------------


def test_test_every_evaluates_test_set_sparsely_and_at_the_end():
    cfg = SMOKE.replace(
        dtype="float64", n_train=200, lr=0.5, stop_loss=0.3, stop_acc=0.9, stop_window=2
    )
    cfg = cfg.replace(max_epochs=20)
    # seeds 1 and 10 stop after 14 epochs, 2 and 6 after 15, 4 after 19: pairs of members end
    # together between test epochs
    seeds = (1, 10, 2, 6, 4)
    runs = train_stacked(members(cfg, seeds), test_every=4)
    for run in runs:
        single = awbench.train(run.config)
        assert (run.status, run.epochs) == (single.status, single.epochs)
        h, s = run.history, single.history
        tested = h["test_loss"].notna()
        expected = (h["epoch"] % 4 == 0) | (h["epoch"] == run.epochs)
        assert tested.tolist() == expected.tolist()
        assert h["test_acc"].notna().tolist() == expected.tolist()
        pd.testing.assert_frame_equal(h[tested], s[tested], check_exact=False, rtol=0, atol=1e-10)
        pd.testing.assert_frame_equal(
            h[["epoch", "train_loss", "train_acc"]],
            s[["epoch", "train_loss", "train_acc"]],
            check_exact=False,
            rtol=0,
            atol=1e-10,
        )
    assert len({r.epochs for r in runs}) > 1  # some members ended between test epochs


# --- what the configs must be ----------------------------------------------------------------


def test_configs_differing_beyond_seed_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"lr \(cfgs\[0\]: 0\.1, cfgs\[1\]: 0\.2\)"):
        train_stacked([SMOKE, SMOKE.replace(seed=1, lr=0.2)])
    with pytest.raises(ValueError, match="batch_size") as info:
        train_stacked([SMOKE, SMOKE.replace(seed=1), SMOKE.replace(seed=2, batch_size=7)])
    assert "cfgs[2]" in str(info.value) and "lr" not in str(info.value)


@pytest.mark.parametrize(
    "cfgs, match",
    [
        ([], "at least one"),
        ([SMOKE, SMOKE.replace(seed=1), SMOKE], "duplicate seeds"),
        ([SMOKE.replace(n_learners=2, algorithm="ssgd")], "single-learner"),
    ],
    ids=["empty", "duplicate-seeds", "multi-learner"],
)
def test_invalid_configs_are_refused(cfgs, match):
    with pytest.raises(ValueError, match=match):
        train_stacked(cfgs)


@pytest.mark.parametrize("test_every", [0, -1, 1.5, True])
def test_test_every_must_be_a_positive_integer(test_every):
    with pytest.raises(ValueError, match="test_every"):
        train_stacked([SMOKE], test_every=test_every)


def test_training_leaves_global_rng_alone():
    cfg = SMOKE.replace(n_train=200, max_epochs=2, dropout=0.2)
    state = torch.get_rng_state()
    train_stacked(members(cfg))
    assert torch.equal(torch.get_rng_state(), state)
