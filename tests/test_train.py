"""Training: explicit backprop vs autograd, weight decay, the whole loop vs torch.optim.SGD,
determinism, divergence, the stopping rule."""

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import awbench
from awbench.config import ACTIVATIONS, Config
from awbench.data import load_data
from awbench.nn.engine import mlp_gradients
from awbench.nn.mlp import MLP, build_model
from awbench.status import STATUSES
from awbench.training.run import add_weight_decay, evaluate, stopping_rule_met, weight_penalty

SMOKE = Config.preset("smoke")


def make_mlp(widths, activation="relu", bias=False, dropout=0.0, n_in=7, n_out=5, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MLP(n_in, tuple(widths), n_out, activation, bias, dropout).double()
        for p in model.parameters():  # larger than default init: more kinks and curvature
            p.data.mul_(2.0)
    return model


def batch(n=16, n_in=7, n_out=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=g, dtype=torch.float64), torch.randint(
        0, n_out, (n,), generator=g
    )


def autograd_grads(model, x, y, forward=None):
    loss = F.cross_entropy((forward or model)(x), y)
    return torch.autograd.grad(loss, list(model.parameters()))


def assert_grads_close(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def forward_with_mask(model, mask):
    """The MLP forward with an explicit dropout mask after the first hidden activation."""

    def forward(x):
        h = x
        for i in range(1, model.n_layers):
            h = model.act(getattr(model, f"fc{i}")(h))
            if i == 1:
                h = h * mask
        return getattr(model, f"fc{model.n_layers}")(h)

    return forward


# --- explicit backprop ---------------------------------------------------------------------


@pytest.mark.parametrize("widths", [(), (6,), (6, 4), (6, 4, 5), (6, 4, 5, 3)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_gradients_match_autograd(activation, bias, widths):
    model = make_mlp(widths, activation, bias, dropout=0.2).eval()  # eval: dropout off
    x, y = batch()
    assert_grads_close(mlp_gradients(model, x, y), autograd_grads(model, x, y))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_gradients_without_dropout_same_in_train_mode(activation):
    model = make_mlp((6, 4), activation, bias=True).train()
    x, y = batch()
    assert_grads_close(mlp_gradients(model, x, y), autograd_grads(model, x, y))


@pytest.mark.parametrize("widths", [(6,), (6, 4), (6, 4, 5)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_gradients_with_dropout_match_autograd_with_same_mask(activation, bias, widths):
    p = 0.3
    model = make_mlp(widths, activation, bias, dropout=p).train()
    x, y = batch()
    gen = torch.Generator().manual_seed(5)
    replay = torch.Generator().manual_seed(5)
    grads = mlp_gradients(model, x, y, gen)
    # the mask inverted dropout draws from the same generator state: drop where u < p
    u = torch.rand((len(x), widths[0]), generator=replay, dtype=torch.float64)
    mask = (u >= p).double() / (1 - p)
    assert_grads_close(grads, autograd_grads(model, x, y, forward_with_mask(model, mask)))
    assert torch.equal(gen.get_state(), replay.get_state())  # one draw, nothing else consumed


def test_dropout_mask_read_back_from_gradients():
    """Infer the mask without assuming how it is drawn: with one sample and positive (sigmoid)
    activations, row j of fc2's gradient is dz2[j] * (h1 * mask), so its ratio to h1 is zero
    exactly on dropped units and one constant elsewhere."""
    p, width = 0.3, 4000
    model = make_mlp((width,), "sigmoid", bias=False, dropout=p, n_in=3).train()
    x, y = batch(n=1, n_in=3)
    grads = mlp_gradients(model, x, y, torch.Generator().manual_seed(11))
    h1 = torch.sigmoid(model.fc1(x))[0].detach()
    ratio = grads[1][0] / h1
    dropped = ratio == 0
    kept_values = ratio[~dropped]
    torch.testing.assert_close(
        kept_values, kept_values[0].expand_as(kept_values), rtol=1e-9, atol=0
    )
    assert abs(dropped.double().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / width)
    # with that mask scaled by 1/(1-p) (inverted dropout, as nn.Dropout) autograd agrees
    mask = (~dropped).double()[None, :] / (1 - p)
    assert_grads_close(grads, autograd_grads(model, x, y, forward_with_mask(model, mask)))


def test_dropout_masks_depend_on_generator_and_mode():
    model = make_mlp((6, 4), "relu", dropout=0.5).train()
    x, y = batch()
    a = mlp_gradients(model, x, y, torch.Generator().manual_seed(1))
    b = mlp_gradients(model, x, y, torch.Generator().manual_seed(1))
    c = mlp_gradients(model, x, y, torch.Generator().manual_seed(2))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))
    gen = torch.Generator().manual_seed(1)
    state = gen.get_state()
    model.eval()  # eval mode: no dropout, the generator is left alone
    assert_grads_close(mlp_gradients(model, x, y, gen), autograd_grads(model, x, y))
    assert torch.equal(gen.get_state(), state)


# --- weight decay --------------------------------------------------------------------------


def weight_decay_on(model, grads, cfg):
    """add_weight_decay on one model: its weights and their gradients as a stack of one."""
    names = [name for name, _ in model.named_parameters()]
    pick = [i for i, name in enumerate(names) if name.endswith("weight")]
    params = list(model.parameters())
    add_weight_decay(
        [grads[i].unsqueeze(0) for i in pick], [params[i].unsqueeze(0) for i in pick], cfg
    )


@pytest.mark.parametrize("mode", ["norm", "squared"])
@pytest.mark.parametrize("bias", [False, True])
def test_weight_decay_gradient_matches_autograd(mode, bias):
    model = make_mlp((6, 4), bias=bias)
    cfg = Config(weight_decay=0.03, weight_decay_mode=mode)
    params = list(model.parameters())
    grads = [torch.randn_like(p) for p in params]
    before = [g.clone() for g in grads]
    with torch.no_grad():  # as in training
        weight_decay_on(model, grads, cfg)
    expected = torch.autograd.grad(weight_penalty(model, cfg), params, allow_unused=True)
    for (name, _), g, g0, e in zip(model.named_parameters(), grads, before, expected):
        e = torch.zeros_like(g) if e is None else e
        torch.testing.assert_close(g - g0, e, rtol=1e-12, atol=1e-15)
        if name.endswith("bias"):
            assert torch.equal(g, g0)  # biases are not decayed


def test_weight_penalty_values():
    model = make_mlp((6,), bias=True)
    sq = sum(
        float(p.detach().pow(2).sum()) for n, p in model.named_parameters() if n.endswith("weight")
    )
    norm_mode, squared = (
        Config(weight_decay=0.1),
        Config(weight_decay=0.1, weight_decay_mode="squared"),
    )
    assert weight_penalty(model, norm_mode).item() == pytest.approx(0.1 * math.sqrt(sq))
    assert weight_penalty(model, squared).item() == pytest.approx(0.05 * sq)


def test_norm_weight_decay_at_zero_weights_is_zero():
    model = make_mlp((6,))
    for p in model.parameters():
        p.data.zero_()
    grads = [torch.ones_like(p) for p in model.parameters()]
    weight_decay_on(model, grads, Config(weight_decay=0.1))
    assert all(torch.equal(g, torch.ones_like(g)) for g in grads)


# --- the whole loop against torch.optim.SGD ------------------------------------------------


def reference_sgd(cfg: Config):
    """The paper's loop written the usual way: autograd, torch.optim.SGD, the penalty in the
    loss, the same batch order (torch.randperm from a generator seeded with cfg.seed)."""
    data = load_data(cfg)
    dtype = getattr(torch, cfg.dtype)
    x, y = data.x_train.to(dtype), data.y_train
    model = build_model(cfg, data.n_features, data.n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    for epoch in range(cfg.epoch_budget()):
        model.train()
        decay_on = cfg.weight_decay > 0 and epoch < cfg.decay_epochs()
        order = torch.randperm(len(y), generator=g)
        for start in range(0, len(y), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if decay_on:
                loss = loss + weight_penalty(model, cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            row = {"epoch": epoch + 1}
            for split, xs, ys in (
                ("train", x[data.clean], y[data.clean]),
                ("test", data.x_test.to(dtype), data.y_test),
            ):
                logits = model(xs)
                row[f"{split}_loss"] = F.cross_entropy(logits, ys).item()
                row[f"{split}_acc"] = (logits.argmax(1) == ys).double().mean().item()
        history.append(row)
    return model, pd.DataFrame(history)


REFERENCE_CASES = {
    "plain": {},
    "momentum": {"momentum": 0.9},
    "momentum+squared-decay-2-epochs": {
        "momentum": 0.5,
        "weight_decay": 0.01,
        "weight_decay_mode": "squared",
        "weight_decay_epochs": 2,
    },
    "norm-decay-all-epochs": {"weight_decay": 0.05, "weight_decay_epochs": None},
    "tanh+bias+ragged-batches": {"activation": "tanh", "bias": True, "batch_size": 30, "seed": 3},
    "label-noise+3-layers": {"label_noise": 0.2, "widths": (16, 12, 8), "lr": 0.05},
}


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_train_matches_torch_optim_sgd_in_float64(case):
    cfg = SMOKE.replace(dtype="float64", max_epochs=4, n_train=200, **REFERENCE_CASES[case])
    run = awbench.train(cfg)
    ref_model, ref_history = reference_sgd(cfg)
    assert run.status == "max_epochs" and run.epochs == 4
    for (name, p), q in zip(run.model.named_parameters(), ref_model.parameters()):
        assert p.dtype == torch.float64
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10, msg=name)
    pd.testing.assert_frame_equal(run.history, ref_history, check_exact=False, rtol=0, atol=1e-10)


# --- determinism, seeds, global state ------------------------------------------------------


def state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "changes",
    [{}, {"dropout": 0.2, "momentum": 0.5, "weight_decay": 0.01, "label_noise": 0.1}],
    ids=["plain", "dropout+momentum+decay+noise"],
)
def test_same_config_gives_bitwise_identical_runs(changes):
    cfg = SMOKE.replace(max_epochs=5, **changes)
    a, b = awbench.train(cfg), awbench.train(cfg)
    assert state_equal(a.model, b.model)
    pd.testing.assert_frame_equal(a.history, b.history, check_exact=True)
    assert (a.status, a.reason) == (b.status, b.reason)


def test_training_leaves_global_rng_alone():
    cfg = SMOKE.replace(max_epochs=2, dropout=0.2)
    state = torch.get_rng_state()
    awbench.train(cfg)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # and the global RNG does not leak into a run
    a = awbench.train(cfg)
    torch.manual_seed(456)
    b = awbench.train(cfg)
    assert state_equal(a.model, b.model)


def test_different_seeds_different_weights_same_data():
    a = awbench.train(SMOKE.replace(max_epochs=2, seed=0))
    b = awbench.train(SMOKE.replace(max_epochs=2, seed=1))
    assert not torch.equal(a.model.fc1.weight, b.model.fc1.weight)
    for name in ("x_train", "y_train", "x_test", "y_test", "clean"):
        assert torch.equal(getattr(a.data, name), getattr(b.data, name))
    init_a = build_model(a.config, a.data.n_features, a.data.n_classes)
    init_b = build_model(b.config, b.data.n_features, b.data.n_classes)
    assert not torch.equal(init_a.fc2.weight, init_b.fc2.weight)  # the init differs too


def test_build_model_init_scale_and_layers():
    cfg = SMOKE.replace(widths=(20, 10, 5))
    base = build_model(cfg, 64, 10)
    scaled = build_model(cfg.replace(init_scale=4.0), 64, 10)
    assert [n for n, _ in base.named_parameters()] == [
        "fc1.weight",
        "fc2.weight",
        "fc3.weight",
        "fc4.weight",
    ]
    assert (base.fc1.in_features, base.fc4.out_features) == (64, 10)
    for layer in base.layer_names:
        torch.testing.assert_close(getattr(scaled, layer).weight, 4.0 * getattr(base, layer).weight)


# --- divergence, stopping, weight-decay epochs, momentum -----------------------------------


def test_divergence_is_a_status_not_an_exception():
    # lr * beta > 2 makes squared decay an exploding map: w <- (1 - lr*beta) w
    cfg = SMOKE.replace(lr=1e3, weight_decay=1.0, weight_decay_mode="squared", init_scale=10.0)
    run = awbench.train(cfg)
    assert run.status == "diverged" and not run.ok
    assert "non-finite" in run.reason and f"epoch {run.epochs}" in run.reason
    assert 1 <= run.epochs < cfg.max_epochs
    assert not math.isfinite(run.history["train_loss"].iloc[-1])


def test_max_epochs_status():
    run = awbench.train(SMOKE.replace(max_epochs=3))
    assert run.status == "max_epochs" and run.ok and run.epochs == 3
    assert "max_epochs=3" in run.reason
    assert list(run.history.columns) == [
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
    ]
    assert run.history["epoch"].tolist() == [1, 2, 3]
    assert run.train_seconds > 0 and not run.model.training
    assert run.status in STATUSES


def test_converged_run_stops_at_first_epoch_meeting_the_rule():
    cfg = SMOKE.replace(stop_loss=0.6, stop_acc=0.8, stop_window=3)
    run = awbench.train(cfg)
    assert run.status == "converged" and str(run.epochs) in run.reason
    rows = run.history.to_dict("records")
    assert stopping_rule_met(rows, cfg)
    assert not any(stopping_rule_met(rows[:k], cfg) for k in range(1, len(rows)))


def h(acc, loss):
    return {"train_acc": acc, "train_loss": loss}


@pytest.mark.parametrize(
    "history, met",
    [
        ([], False),
        ([h(1.0, 0.0)] * 2, False),  # shorter than the window
        ([h(1.0, 1e-4)] * 3, True),
        ([h(0.0, 1.0)] * 5 + [h(1.0, 1e-4)] * 3, True),  # old epochs are outside the window
        ([h(0.5, 1e-4), h(0.75, 1e-4), h(1.0, 1e-4)], False),  # mean 0.75 is not > 0.75
        ([h(0.5, 1e-4), h(1.0, 1e-4), h(1.0, 1e-4)], True),  # mean 0.83
        ([h(1.0, 1e-4), h(0.5, 1e-4), h(0.5, 1e-4)], False),  # mean 0.67
        ([h(1.0, 1e-4), h(1.0, 1e-4), h(1.0, 2e-3)], False),  # the last loss counts
        ([h(1.0, 2e-3), h(1.0, 2e-3), h(1.0, 5e-4)], True),
        ([h(1.0, 1e-3)] * 3, False),  # loss must be strictly below stop_loss
    ],
)
def test_stopping_rule(history, met):
    # 0.75 and 1e-3 sit on exact binary fractions of the means above, so ties are real ties
    cfg = Config(stop_window=3, stop_acc=0.75, stop_loss=1e-3)
    assert stopping_rule_met(history, cfg) is met


def test_stopping_rule_paper_thresholds():
    cfg = Config.preset("paper")  # window 9, accuracy > 0.99, loss < 1e-3
    assert not stopping_rule_met([h(1.0, 1e-4)] * 8, cfg)
    assert stopping_rule_met([h(1.0, 1e-4)] * 9, cfg)
    assert not stopping_rule_met([h(0.9, 1e-4)] + [h(1.0, 1e-4)] * 8, cfg)  # mean 0.989
    assert stopping_rule_met([h(0.9, 1e-4)] + [h(1.0, 1e-4)] * 9, cfg)


def test_weight_decay_epochs_zero_is_no_weight_decay():
    a = awbench.train(SMOKE.replace(max_epochs=3, weight_decay=0.05, weight_decay_epochs=0))
    b = awbench.train(SMOKE.replace(max_epochs=3, weight_decay=0.0))
    assert state_equal(a.model, b.model)
    pd.testing.assert_frame_equal(a.history, b.history, check_exact=True)


def test_weight_decay_epochs_limits_decay():
    limited = awbench.train(SMOKE.replace(max_epochs=5, weight_decay=0.05, weight_decay_epochs=2))
    always = awbench.train(SMOKE.replace(max_epochs=5, weight_decay=0.05, weight_decay_epochs=None))
    never = awbench.train(SMOKE.replace(max_epochs=5, weight_decay=0.0))
    pd.testing.assert_frame_equal(
        limited.history.iloc[:2], always.history.iloc[:2], check_exact=True
    )
    assert not limited.history.iloc[2:].equals(always.history.iloc[2:])
    assert not limited.history.iloc[:1].equals(never.history.iloc[:1])
    # decay shrinks weights: the run that decays longest ends smallest
    norm = lambda r: sum(float(p.detach().pow(2).sum()) for p in r.model.parameters())
    assert norm(always) < norm(limited) < norm(never)


def test_momentum_changes_training():
    a = awbench.train(SMOKE.replace(max_epochs=2, momentum=0.0))
    b = awbench.train(SMOKE.replace(max_epochs=2, momentum=0.9))
    assert not torch.equal(a.model.fc1.weight, b.model.fc1.weight)
    assert not a.history.equals(b.history)


def test_evaluate_restores_mode():
    model = make_mlp((6,), dropout=0.5).train()
    x, y = batch()
    loss, acc = evaluate(model, x, y)
    assert model.training
    model.eval()
    assert loss == pytest.approx(F.cross_entropy(model(x), y).item()) and 0 <= acc <= 1


def test_smoke_preset_learns():
    run = awbench.train(SMOKE)
    assert run.ok and run.epochs <= SMOKE.max_epochs
    assert run.history["train_loss"].iloc[-1] < 0.5 * run.history["train_loss"].iloc[0]
    assert run.history["test_acc"].iloc[-1] > 0.8
