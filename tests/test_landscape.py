"""Loss slices and planes, their directions, and the plot builders.

Ground truth: direct functional evaluation of the loss, finite differences, the dense
Hessian, and the defining properties of each kind of direction.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F

import awbench as aw
from awbench import plots
from awbench.curvature.eigensolvers import top_eigenpairs
from awbench.curvature.flat import FlatModel, NondeterministicModelError, model_mode
from awbench.curvature.operators import HessianOperator
from awbench.curvature.spectrum import spectral_density
from awbench.landscape import (
    dual_directions,
    eigen_slices,
    fd_curvature,
    landscape_directions,
    losses_at,
    plane_2d,
    random_directions,
    rayleigh,
    rayleigh_ratio,
    slice_1d,
    slices,
    span,
    unit,
)


def make_model(n_in, widths, n_out, activation="tanh", bias=True, dropout=0.0, seed=0):
    cfg = aw.Config.preset("smoke").replace(
        dtype="float64", widths=widths, activation=activation, bias=bias, dropout=dropout, seed=seed
    )
    return aw.build_model(cfg, n_in, n_out)


def make_data(n, n_in, n_out, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=g, dtype=torch.float64), torch.randint(
        0, n_out, (n,), generator=g
    )


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [
        m.training for m in model.modules()
    ]


def assert_untouched(model, snap):
    state, modes = snap
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), f"{k} changed"
    assert modes == [m.training for m in model.modules()]


def direct_loss(model, x, y, theta, params=None):
    flat = FlatModel(model, params)
    with model_mode(model, "eval"), torch.no_grad():
        return float(F.cross_entropy(flat.logits(theta, x), y))


@pytest.fixture(scope="module")
def problem():
    x, y = make_data(160, 8, 4, seed=1)
    model = make_model(8, (12, 10), 4, dropout=0.25, seed=2)
    model.train()  # slices must use eval mode explicitly and leave this flag alone
    return model, x, y


# --------------------------------------------------------------------------------------
# Slices and planes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_finite_difference_curvature_along_eigenvector_is_lambda(activation):
    x, y = make_data(200, 8, 4, seed=3)
    model = make_model(8, (12, 10), 4, activation, seed=4)
    snap = snapshot(model)
    eig = top_eigenpairs(model, x, y, 3)
    for i in range(3):
        lam = float(eig.values[i])
        h = 1e-3 if activation == "tanh" else 1e-5  # ReLU: stay inside one linear region
        s = slice_1d(model, x, y, eig.vectors[i], [-h, 0.0, h])
        fd = (s.loss[0] - 2 * s.loss[1] + s.loss[2]) / h**2
        assert abs(fd - lam) <= 1e-4 * abs(lam), (i, fd, lam)
        assert abs(s.curvature - lam) <= 1e-10 * abs(lam)  # d^T H d of a unit eigenvector
        assert s.loss[1] == pytest.approx(s.loss0, abs=1e-15)
        assert np.allclose(
            s.quadratic, s.loss0 + 0.5 * lam * np.array([h * h, 0.0, h * h]), rtol=0, atol=1e-15
        )
    assert_untouched(model, snap)


def test_slice_values_curvature_and_slope_match_direct_evaluation(problem):
    model, x, y = problem
    snap = snapshot(model)
    flat = FlatModel(model)
    d = (
        torch.randn(flat.size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        * 0.1
    )
    ts = np.linspace(-2, 2, 9)
    s = slice_1d(model, x, y, d, ts, label="random")
    for t, value in zip(ts, s.loss):
        assert value == pytest.approx(direct_loss(model, x, y, flat.theta0 + t * d), abs=1e-13)
    H = HessianOperator(model, x, y).dense()
    assert s.curvature == pytest.approx(float(d @ H @ d), rel=1e-12)
    with model_mode(model, "eval"):
        grad = torch.func.grad(lambda th: F.cross_entropy(flat.logits(th, x), y))(flat.theta0)
    assert s.slope == pytest.approx(float(grad @ d), rel=1e-10)
    assert s.label == "random" and np.array_equal(s.t, ts)
    assert_untouched(model, snap)


def test_plane_matches_direct_evaluation_and_batching_is_exact(problem):
    model, x, y = problem
    snap = snapshot(model)
    d1, d2 = random_directions(model, 2, seed=5)
    t1, t2 = np.linspace(-1, 1, 7), np.linspace(-0.5, 0.5, 5)
    plane = plane_2d(model, x, y, d1, d2, t1, t2, labels=("rand1", "rand2"))
    assert plane.loss.shape == (7, 5) and plane.labels == ("rand1", "rand2")
    theta0 = FlatModel(model).theta0
    for i, j in [(0, 0), (3, 2), (6, 4), (2, 1)]:
        ref = direct_loss(model, x, y, theta0 + t1[i] * d1 + t2[j] * d2)
        assert plane.loss[i, j] == pytest.approx(ref, abs=1e-13)
    assert plane.loss0 == pytest.approx(direct_loss(model, x, y, theta0), abs=1e-15)
    # one grid point and a few dozen samples per pass: the same numbers as large batched passes
    tiny = plane_2d(model, x, y, d1, d2, t1, t2, max_elements=2000)
    assert np.allclose(tiny.loss, plane.loss, rtol=0, atol=1e-13)
    assert_untouched(model, snap)


def test_model_is_never_displaced_even_when_a_sweep_fails(problem):
    model, x, y = problem
    snap = snapshot(model)
    D = random_directions(model, 2, seed=1)
    calls = {"n": 0}

    def flaky_loss(logits, target):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("boom")
        return F.cross_entropy(logits, target, reduction="none")

    with pytest.raises(RuntimeError, match="boom"):
        losses_at(
            model,
            x,
            y,
            D,
            torch.rand(50, 2, dtype=torch.float64),
            loss=flaky_loss,
            max_elements=500,
        )
    assert_untouched(model, snap)
    eigen = eigen_slices(model, x, y, 2, np.linspace(-0.5, 0.5, 5))
    assert [round(s.curvature, 12) for s in eigen] == [
        round(float(v), 12) for v in top_eigenpairs(model, x, y, 2).values
    ]
    assert_untouched(model, snap)


def test_points_fall_back_to_one_by_one_when_vmap_cannot_batch(problem):
    model, x, y = problem
    D = random_directions(model, 2, seed=2)
    coords = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(6, 2)

    def branching_loss(logits, target):  # data-dependent control flow: vmap refuses it
        if bool(logits.sum() > -1e300):
            return F.cross_entropy(logits, target, reduction="none")
        return F.cross_entropy(logits, target, reduction="none") * 0

    got = losses_at(model, x, y, D, coords, loss=branching_loss)
    assert np.allclose(got, losses_at(model, x, y, D, coords), rtol=0, atol=1e-14)


def test_train_mode_with_dropout_is_refused(problem):
    model, x, y = problem
    d = random_directions(model, 1, seed=0)[0]
    with pytest.raises(NondeterministicModelError, match="Dropout"):
        slice_1d(model, x, y, d, [0.0, 1.0], mode="train")


# --------------------------------------------------------------------------------------
# Directions
# --------------------------------------------------------------------------------------


def test_random_directions_are_filter_normalised_zero_mean_and_orthogonal():
    model = make_model(30, (50, 40), 10, bias=True, seed=6)
    flat = FlatModel(model)
    where = flat.slices()
    D = random_directions(model, 3, seed=11)
    assert D.shape == (3, flat.size) and D.dtype == torch.float64
    for a in range(3):
        for b in range(a):
            assert abs(float(D[a] @ D[b])) <= 1e-12 * float(D[a].norm() * D[b].norm())
    for d in D:
        for layer in ("fc1", "fc2", "fc3"):
            W = getattr(model, layer).weight.detach()
            bias = getattr(model, layer).bias.detach()
            dW = d[where[f"{layer}.weight"]].view_as(W)
            db = d[where[f"{layer}.bias"]]
            # each unit's [weight row | bias] is rescaled once to the model's [row | bias] norm
            got = torch.sqrt((dW**2).sum(1) + db**2)
            want = torch.sqrt((W**2).sum(1) + bias**2)
            assert torch.allclose(got, want, rtol=1e-12, atol=0)
        # zero-mean Gaussian draws: signs balanced (uniform [0, 1] draws would be all positive)
        z = d / d.abs().mean()
        assert abs(float(z.mean())) < 4 * float(z.std()) / np.sqrt(z.numel())
        assert 0.45 < float((d > 0).double().mean()) < 0.55
    assert torch.equal(random_directions(model, 3, seed=11), D)
    assert not torch.equal(random_directions(model, 3, seed=12), D)
    Z = random_directions(model, 2, seed=11, bias="zero")
    assert float(Z[:, where["fc2.bias"]].abs().max()) == 0.0
    W = model.fc2.weight.detach()
    assert torch.allclose(
        Z[0, where["fc2.weight"]].view_as(W).norm(dim=1), W.norm(dim=1), rtol=1e-12
    )
    assert abs(float(Z[0] @ Z[1])) <= 1e-12 * float(Z[0].norm() * Z[1].norm())
    only = random_directions(model, 2, seed=0, params="fc2.weight")
    assert only.shape == (2, W.numel())


def test_dual_directions_mean_and_principal_axes():
    x, y = make_data(120, 8, 4, seed=7)
    model = make_model(8, (12, 10), 4, bias=False, seed=8)
    W = model.fc2.weight.detach()
    g = torch.Generator().manual_seed(1)
    a_train = torch.relu(torch.randn(60, 12, generator=g, dtype=torch.float64)) + 0.1
    a_test = a_train + 0.2 * torch.randn(60, 12, generator=g, dtype=torch.float64)
    da = a_test - a_train
    dual = (da @ W.T)[:, :, None] * a_train[:, None, :] / (a_train**2).sum(1)[:, None, None]
    # the minimal dual weight reproduces the test activity's pre-activation
    assert torch.allclose(((W + dual) @ a_train[:, :, None])[..., 0], a_test @ W.T, atol=1e-12)
    dd = dual_directions(model, dual, "fc2", 3, params="fc2")
    flat = FlatModel(model, "fc2")
    assert dd.mean.shape == (flat.size,)
    assert torch.allclose(dd.mean.view_as(W), dual.mean(0), atol=1e-15)
    C = dd.components
    assert torch.allclose(C @ C.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    proj = (dual.reshape(60, -1) - dual.reshape(60, -1).mean(0)) @ C.T
    assert np.allclose(dd.sigma, proj.std(0, unbiased=False).numpy(), rtol=1e-10)
    assert np.all(np.diff(dd.sigma) <= 1e-15) and 0 < dd.explained.sum() <= 1 + 1e-12
    full = dual_directions(model, dual, "fc2", 2)  # default: embedded in all parameters
    where = FlatModel(model).slices()
    assert torch.allclose(full.mean[where["fc2.weight"]], dd.mean, rtol=0, atol=1e-16)
    assert float(full.mean[where["fc1.weight"]].abs().max()) == 0.0
    s = slice_1d(model, x, y, full.mean, [0.0, 1.0], label="mean dual weight")
    assert s.loss[0] == pytest.approx(s.loss0, abs=1e-15)
    with pytest.raises(ValueError, match="shape"):
        dual_directions(model, dual[:, :, :5], "fc2")


# --------------------------------------------------------------------------------------
# Plot builders
# --------------------------------------------------------------------------------------


def test_plot_builders(problem):
    model, x, y = problem
    eig = top_eigenpairs(model, x, y, 5)
    sd = spectral_density(model, x, y, n_probes=2, steps=20)
    fig = plots.spectrum_figure(eig.values, sd, title="Spectrum")
    assert isinstance(fig, go.Figure) and fig.layout.title.text == "Spectrum"
    assert fig.layout.xaxis.title.text == "rank" and fig.layout.yaxis2.type == "log"
    assert len(fig.data) == 4
    only = plots.spectrum_figure(eig.values.numpy())
    assert len(only.data) == 2
    slices = eigen_slices(model, x, y, 2, np.linspace(-1, 1, 11))
    fig = plots.slice_figure(slices, title="Slices")
    assert len(fig.data) == 4 and fig.data[1].line.dash == "dash"
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert plots.slice_figure(slices[0], overlay=False).data[0].name.startswith("v1")
    D = random_directions(model, 2, seed=0)
    plane = plane_2d(
        model, x, y, D[0], D[1], np.linspace(-1, 1, 5), np.linspace(-1, 1, 4), labels=("a", "b")
    )
    c = plots.contour_figure(plane, title="Plane")
    assert isinstance(c.data[0], go.Contour) and np.asarray(c.data[0].z).shape == (4, 5)
    assert c.layout.xaxis.title.text == "t1 along a" and c.layout.title.text == "Plane"
    srf = plots.surface_figure(plane, log=True)
    assert isinstance(srf.data[0], go.Surface) and srf.layout.scene.zaxis.title.text == "log10 loss"


# --------------------------------------------------------------------------------------
# Curvature along named directions (notebook 02)
# --------------------------------------------------------------------------------------


def test_rayleigh_and_fd_curvature_match_the_dense_layer_hessian():
    x, y = make_data(150, 8, 4, seed=5)
    model = make_model(8, (12, 10), 4, bias=False, seed=6)
    H = aw.layer_hessian(model, "fc2", x, y)
    g = torch.Generator().manual_seed(0)
    d1, d2 = (torch.randn(H.shape[0], generator=g, dtype=torch.float64) for _ in range(2))
    table = rayleigh(model, x, y, {"a": ("dual weight", d1), "b": ("random", 3 * d2)}, "fc2")
    for d, got in zip((d1, d2), table["rayleigh"], strict=True):
        assert got == pytest.approx(float(d @ H @ d / (d @ d)), rel=1e-10)
    assert rayleigh_ratio(table) == pytest.approx(table["rayleigh"][0] / table["rayleigh"][1])
    u = unit(d1)
    assert float(u.norm()) == pytest.approx(1.0, rel=1e-15)
    # along the sharpest direction the curvature dwarfs the rounding error of the difference
    v = torch.linalg.eigh(H).eigenvectors[:, -1]
    assert fd_curvature(model, x, y, v, "fc2", h=1e-3) == pytest.approx(float(v @ H @ v), rel=1e-4)


def test_span_is_where_the_quadratic_rises_by_the_given_amount():
    for lam in (0.3, 7.0):
        assert 0.5 * lam * span(lam, rise=0.4) ** 2 == pytest.approx(0.4, rel=1e-14)
    assert span(0.0) == 1.0  # no curvature: unit range


def test_landscape_directions_and_slices_carry_the_exact_curvature():
    x, y = make_data(120, 8, 4, seed=7)
    model = make_model(8, (12, 10), 4, bias=False, seed=8)
    H = aw.layer_hessian(model, "fc2", x, y)
    eig = top_eigenpairs(model, x, y, 2, params="fc2")
    a = aw.layer_inputs(model, "fc2", x)
    dw = aw.dual_weights(model.fc2.weight.detach(), a[:20], a[20:40])
    dirs = landscape_directions(model, eig, dw, "fc2", n_eigen=2, seed=0)
    kinds = [v[0] for v in dirs.values()]
    assert kinds == ["eigenvector"] * 2 + ["dual weight"] * 3 + ["random"] * 2
    for kind in ("eigenvector", "dual weight", "random"):
        got = slices(model, x, y, dirs, kind, points=5, layer="fc2", eig=eig)
        vectors = [v[1].reshape(-1) for v in dirs.values() if v[0] == kind]
        assert len(got) == len(vectors)
        for s, d in zip(got, vectors, strict=True):
            assert s.curvature == pytest.approx(float(d @ H @ d), rel=1e-8)
