"""awbench.analysis.noise: H, C and E[h^2] against explicit per-sample derivatives, C against
Monte Carlo minibatches drawn as the trainer draws them, the power-law fit and the
commutator's baseline."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian, vmap

import awbench as aw
from awbench.analysis.noise import (
    batch_factor,
    commutator_baseline,
    commutator_norm,
    haar_orthogonal,
    power_law_fit,
)
from awbench.nn.losses import per_sample_loss
from awbench.nn.mlp import MLP


def small_mlp(bias=False, seed=0):
    torch.manual_seed(seed)
    return MLP(6, (5, 4), 3, "tanh", bias=bias).double()


def samples(n=30, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=gen, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=gen
    )


def per_sample_truth(model, layer, x, y, loss):
    """Per-sample gradients (N, P) and Hessians (N, P, P) of the layer's weight [| bias],
    by torch.func on the model itself."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    names = [f"{layer}.weight"] + ([f"{layer}.bias"] if f"{layer}.bias" in params else [])
    shapes = [params[n].shape for n in names]

    def loss_of(flat, xp, yp):
        W = flat[: shapes[0].numel()].reshape(shapes[0])
        p = dict(params, **{names[0]: W})
        if len(names) == 2:
            # [W | b] flattened row by row, as the analysis lays out a layer with a bias
            Wb = flat.reshape(shapes[0][0], shapes[0][1] + 1)
            p[names[0]], p[names[1]] = Wb[:, :-1], Wb[:, -1]
        logits = functional_call(model, p, (xp[None],))
        return per_sample_loss(loss, logits, yp[None])[0]

    W = params[names[0]]
    flat = (
        torch.cat([W, params[names[1]][:, None]], 1).reshape(-1)
        if len(names) == 2
        else W.reshape(-1)
    )
    g = vmap(grad(loss_of), in_dims=(None, 0, 0))(flat, x, y)
    h = vmap(hessian(loss_of), in_dims=(None, 0, 0))(flat, x, y)
    return g, h


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("bias", [False, True])
def test_dense_matrices_match_per_sample_derivatives(loss, bias):
    model, (x, y) = small_mlp(bias), samples()
    B = 7
    nc = aw.noise_curvature(model, "fc2", train=(x, y), batch_size=B, loss=loss, k=5)
    g, h = per_sample_truth(model, "fc2", x, y, loss)
    N = len(x)
    H = h.mean(0)
    E = (h @ h).mean(0)
    gm = g.mean(0)
    C = (N - B) / (B * (N - 1)) * ((g.T @ g) / N - torch.outer(gm, gm))
    assert nc.route == "dense" and nc.H.shape == H.shape
    for got, want in ((nc.H, H), (nc.Eh2, E), (nc.C, C)):
        scale = float(want.abs().max())
        assert float((got - want).abs().max()) <= 1e-10 * max(scale, 1.0)
    # diagonals in H's eigenbasis, descending
    lam, V = torch.linalg.eigh(H)
    lam, V = lam.flip(0), V.flip(1)
    np.testing.assert_allclose(nc.lam, lam.numpy(), atol=1e-12)
    np.testing.assert_allclose(nc.C_diag, torch.diagonal(V.T @ C @ V).numpy(), atol=1e-12)
    np.testing.assert_allclose(nc.Eh2_diag, torch.diagonal(V.T @ E @ V).numpy(), atol=1e-12)
    assert math.isclose(nc.gradient_norm, float(gm.norm()), rel_tol=1e-10)


def test_any_model_takes_the_autograd_route_with_the_same_numbers():
    model, (x, y) = sequential(), samples()
    nc = aw.noise_curvature(model, "2", train=(x, y), batch_size=5, loss="mse", k=5)
    _, h = per_sample_truth(model, "2", x, y, "mse")
    assert float((nc.H - h.mean(0)).abs().max()) < 1e-12
    assert float((nc.Eh2 - (h @ h).mean(0)).abs().max()) < 1e-12


def sequential(seed=3):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    return net.double()


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("kind", ["mlp", "sequential"])  # engine R-passes / autograd graph
def test_the_product_route_matches_the_dense_route(loss, kind):
    model, name = (small_mlp(bias=True), "fc2") if kind == "mlp" else (sequential(), "2")
    x, y = samples(40)
    dense = aw.noise_curvature(model, name, train=(x, y), batch_size=8, loss=loss, k=8)
    lanczos = aw.noise_curvature(
        model, name, train=(x, y), batch_size=8, loss=loss, k=8, dense_max=0
    )
    assert lanczos.route == "lanczos" and lanczos.H is None and len(lanczos.lam) == 8
    np.testing.assert_allclose(lanczos.lam, dense.lam[:8], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(lanczos.C_diag, dense.C_diag[:8], rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(lanczos.Eh2_diag, dense.Eh2_diag[:8], rtol=1e-6, atol=1e-14)
    assert math.isclose(lanczos.gradient_norm, dense.gradient_norm, rel_tol=1e-10)
    assert math.isclose(lanczos.gamma.exponent, dense.gamma.exponent, rel_tol=1e-5)
    # the top-k commutator is that of C's top block in H's eigenbasis
    V = torch.from_numpy(np.ascontiguousarray(dense.eigenvectors[:, :8].numpy()))
    block = V.T @ dense.C @ V
    assert math.isclose(
        lanczos.commutator, commutator_norm(block, torch.from_numpy(dense.lam[:8])), rel_tol=1e-5
    )


def test_covariance_matches_minibatches_drawn_as_the_trainer_draws_them():
    """The trainer shuffles each epoch (torch.randperm on a seeded CPU generator) and cuts the
    permutation into consecutive batches of B: each batch is B of N drawn without
    replacement. With M batches the empirical covariance around the exact mean gradient is
    unbiased; each entry's standard error is the standard deviation of its outer-product
    terms over sqrt(M). Batches of one epoch partition the samples and are not independent,
    so the test allows 5 standard errors per entry, and checks the trace to 3 %: the
    with-replacement factor 1/B would be (N - 1)/(N - B) = 22 % larger."""
    model, (x, y) = small_mlp(), samples(40)
    N, B = 40, 8
    nc = aw.noise_curvature(model, "fc1", train=(x, y), batch_size=B, k=5)
    g, _ = per_sample_truth(model, "fc1", x, y, "ce")
    gm = g.mean(0)
    gen = torch.Generator().manual_seed(0)
    means = []
    for _ in range(4000):
        order = torch.randperm(N, generator=gen)
        means.append(g[order].reshape(N // B, B, -1).mean(1))
    dev = torch.cat(means) - gm  # (M, P)
    M = len(dev)
    terms = dev[:, :, None] * dev[:, None, :]
    emp, se = terms.mean(0), terms.std(0) / math.sqrt(M)
    z = (emp - nc.C) / se.clamp_min(1e-300)
    assert float(z.abs().max()) < 5
    ratio = float(torch.trace(emp) / torch.trace(nc.C))
    assert abs(ratio - 1) < 0.03
    assert abs(ratio - (N - 1) / (N - B)) > 0.15


def test_batch_factor_is_the_finite_population_correction():
    assert batch_factor(100, 100) == 0.0  # the whole set: no noise
    assert batch_factor(100, 1) == pytest.approx(1.0)  # one sample: the population covariance
    assert batch_factor(40, 8) == pytest.approx(32 / (8 * 39))


def test_power_law_fit_recovers_a_planted_exponent():
    rng = np.random.default_rng(0)
    x = np.logspace(-4, 0, 100)
    exact = power_law_fit(x, 3.0 * x**1.4)
    assert exact.exponent == pytest.approx(1.4, abs=1e-12)
    assert exact.intercept == pytest.approx(math.log(3.0), abs=1e-12)
    noisy = power_law_fit(x, 3.0 * x**1.4 * np.exp(0.3 * rng.standard_normal(100)), seed=1)
    assert noisy.low < 1.4 < noisy.high
    assert noisy.high - noisy.low < 0.2
    assert noisy.n == 100
    # non-positive points are left out; too few give NaN
    assert power_law_fit([1, 2, -1, 0], [1, 2, 3, 4]).n == 2
    assert math.isnan(power_law_fit([1, 2], [1, 2]).exponent)


def test_power_law_interval_covers_the_planted_exponent_about_95_percent():
    rng = np.random.default_rng(5)
    x = np.logspace(-3, 0, 60)
    hits = sum(
        f.low < 1.2 < f.high
        for f in (
            power_law_fit(x, x**1.2 * np.exp(0.2 * rng.standard_normal(60)), n_resamples=500)
            for _ in range(60)
        )
    )
    assert hits >= 52  # 95 % of 60 is 57; binomial 1 % quantile ~ 52


def test_commuting_matrices_give_zero_and_a_random_rotation_does_not():
    lam = torch.linspace(1.0, 0.01, 50, dtype=torch.float64)
    C = torch.diag(lam**1.5)  # diagonal in H's eigenbasis: commutes with H
    assert commutator_norm(C, lam) == 0.0
    mean, std = commutator_baseline(C, lam, draws=5, seed=0)
    assert mean > 0.05 and std < mean / 3
    Q = haar_orthogonal(50, torch.Generator().manual_seed(1))
    assert float((Q.T @ Q - torch.eye(50, dtype=torch.float64)).abs().max()) < 1e-12


def test_a_run_gives_its_own_defaults():
    cfg = aw.Config.preset("smoke").replace(max_epochs=2, loss="mse", batch_size=40)
    run = aw.train(cfg, show_progress=False)
    nc = aw.noise_curvature(run, k=10)
    assert nc.loss == "mse" and nc.batch_size == 40 and nc.layer == "fc2"
    assert nc.n_samples == len(run.data.y_train)
    assert set(nc.scalars()) >= {"gamma", "gamma_low", "gamma_high", "commutator"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": 31}, "batch_size=31"),
        ({"batch_size": 5, "loss": "l1"}, "loss='l1'"),
        ({"batch_size": 5, "k": 1}, "k=1"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    model, (x, y) = small_mlp(), samples()
    with pytest.raises(ValueError, match=match):
        aw.noise_curvature(model, "fc2", train=(x, y), **kwargs)
