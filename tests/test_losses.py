"""awbench.nn.losses: cross-entropy and the softmax's squared error, their exact logit
derivatives, the engine's passes, training and the decomposition with either loss."""

import math

import pytest
import torch
from torch import nn
from torch.func import grad, hessian, vmap

import awbench as aw
from awbench.nn import engine
from awbench.nn.losses import LogitHessian, check_loss, logit_derivatives, per_sample_loss
from awbench.nn.mlp import MLP

LOSSES = ["ce", "mse"]


def data(n=12, d=5, classes=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=gen)


def test_mse_is_the_mean_squared_error_of_the_softmax_against_the_one_hot_label():
    z, y = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    onehot = nn.functional.one_hot(y, 4).double()
    want = nn.MSELoss(reduction="none")(torch.softmax(z, 1), onehot).mean(1)
    assert torch.allclose(per_sample_loss("mse", z, y), want, atol=1e-15)
    with pytest.raises(ValueError, match=r"loss='l2' is not allowed: expected one of 'ce', 'mse'"):
        check_loss("l2")


@pytest.mark.parametrize("loss", LOSSES)
def test_logit_derivatives_match_torch_func(loss):
    z, y = data(9, 4, 4)
    g, G = logit_derivatives(loss, z, y)

    def one(zp, yp):
        return per_sample_loss(loss, zp[None], yp[None])[0]

    assert float((vmap(grad(one))(z, y) - g).abs().max()) < 1e-14
    assert float((vmap(hessian(one))(z, y) - G).abs().max()) < 1e-14


@pytest.mark.parametrize("loss", LOSSES)
def test_closed_form_logit_hessian_products_are_the_hessians_times_u(loss):
    z, y = data(9, 4, 4, seed=5)
    _, G = logit_derivatives(loss, z, y)
    u = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = torch.einsum("nij,nj->ni", G, u)
    assert float((LogitHessian(loss, z, y).products(u) - expected).abs().max()) < 1e-15


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_engine_gradients_and_output_hessians_match_autograd(loss, activation):
    torch.manual_seed(0)
    model = MLP(5, (4, 3), 4, activation, bias=True).double()
    x, y = data()
    got = engine.mlp_gradients(model, x, y, loss=loss)
    want = torch.autograd.grad(per_sample_loss(loss, model(x), y).mean(), list(model.parameters()))
    assert max(float((a - b.detach()).abs().max()) for a, b in zip(got, want)) < 1e-14
    G, _ = engine.output_hessians(
        engine.mlp_layers(model), x, y, engine.activation_of(model), 1, loss
    )
    z = model.fc2(model.act(model.fc1(x))).detach()

    def from_z(zp, yp):
        return per_sample_loss(loss, model.fc3(model.act(zp))[None], yp[None])[0]

    assert float((vmap(hessian(from_z))(z, y) - G).abs().max()) < 1e-14


@pytest.mark.parametrize("loss", LOSSES)
def test_the_duality_and_the_exact_identity_hold_for_either_loss(loss):
    torch.manual_seed(1)
    model = MLP(5, (6, 6), 4, "relu").double()
    x, y = data(60, 5, 4, seed=2)
    xt, yt = data(30, 5, 4, seed=3)
    an = aw.analyze_model(model, "fc2", (x, y), (xt, yt), loss=loss)
    assert an.duality_error < 1e-13
    assert an.identity_error < 1e-14
    want = float(
        per_sample_loss(loss, model(xt), yt).mean() - per_sample_loss(loss, model(x), y).mean()
    )
    assert math.isclose(an.real_gap, want, rel_tol=1e-10, abs_tol=1e-15)
    # the summary names the loss its gaps are in
    name = {"ce": "test CE − train CE", "mse": "test MSE − train MSE"}[loss]
    assert an.loss == loss and name in an.summary()
    hess = aw.layer_hessian(model, "fc2", x, y, loss=loss)
    assert torch.allclose(
        torch.from_numpy(an.directions.sort_values("eigen_index")["lam"].to_numpy()),
        torch.linalg.eigvalsh(hess),
        atol=1e-12,
    )


def test_the_hessian_of_each_loss_is_its_own():
    torch.manual_seed(1)
    model = MLP(5, (6, 6), 4, "tanh").double()
    x, y = data(20)
    ce, mse = (aw.layer_hessian(model, "fc2", x, y, loss=loss) for loss in LOSSES)
    assert float((ce - mse).abs().max()) > 1e-3


def test_training_with_mse_reports_the_mse_and_stops_on_it():
    cfg = aw.Config.preset("smoke").replace(loss="mse", max_epochs=3)
    run = aw.train(cfg, show_progress=False)
    clean = run.data.clean
    with torch.no_grad():
        logits = run.model(run.data.x_train[clean])
        mse = float(per_sample_loss("mse", logits, run.data.y_train[clean]).mean())
    assert run.history["train_loss"].iloc[-1] == pytest.approx(mse, rel=1e-5)
    assert aw.analyze(run).real_gap < 2 / 10  # MSE of probabilities: at most 2 / C


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("depth", [0, 1, 2])
def test_output_curvature_products_match_the_output_hessians(loss, depth):
    torch.manual_seed(2)
    model = MLP(5, (4, 3), 4, "tanh", bias=True).double()
    x, y = data()
    layers, act = engine.mlp_layers(model), engine.activation_of(model)
    G, a = engine.output_hessians(layers, x, y, act, depth, loss)
    oc = engine.OutputCurvature(layers, x, y, act, depth, loss)
    u = torch.randn(len(x), G.shape[1], dtype=torch.float64)
    assert float((oc.products(u) - torch.bmm(G, u[:, :, None])[:, :, 0]).abs().max()) < 1e-14
    assert torch.equal(oc.inputs, a)


@pytest.mark.parametrize("loss", LOSSES)
def test_the_generic_hessian_operator_speaks_the_training_losses(loss):
    torch.manual_seed(4)
    model = MLP(5, (6, 6), 4, "tanh").double()
    x, y = data(30, 5, 4, seed=6)
    op = aw.HessianOperator(model, x, y, "fc2.weight", loss=loss)
    assert torch.allclose(op.dense(), aw.layer_hessian(model, "fc2", x, y, loss=loss), atol=1e-13)
