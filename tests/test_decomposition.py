"""Ground truth for the layer Hessian and the gap decomposition (docs/science.md sections 1-3)."""

import copy
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from own_models import dense_reference_hessian
from scipy import stats
from torch.func import functional_call, hessian

import awbench as aw
from awbench.analysis.decomposition import (
    DIRECTION_COLUMNS,
    curved_directions,
    direction_statistics,
    spearman,
    spearman_ratio,
    spearman_sigma_g,
)
from awbench.config import ACTIVATIONS
from awbench.data import Data
from awbench.nn.mlp import MLP
from awbench.training.run import Run


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("bias", [False, True])
def test_layer_hessian_equals_torch_func_hessian(activation, bias):
    torch.manual_seed(0)
    model = MLP(7, (6, 5), 4, activation, bias).double()
    x, y = torch.randn(40, 7).double(), torch.randint(0, 4, (40,))
    for layer in model.layer_names:
        H = aw.layer_hessian(model, layer, x, y)
        ref = dense_reference_hessian(model.eval(), layer, x, y)
        assert float((H - ref).abs().max()) <= 1e-10
        assert torch.equal(H, H.T)


class WrappedMLP(torch.nn.Module):
    """The same function as an MLP, but not an awbench MLP: output_hessians takes autograd."""

    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        return self.mlp(x)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias", [False, True])
def test_output_hessians_explicit_mlp_route_equals_autograd_route(activation, bias):
    from awbench.curvature.layer import output_hessians
    from awbench.curvature.mlp_backend import mlp_backend_reason

    torch.manual_seed(2)
    mlp = MLP(7, (6, 5, 4), 3, activation, bias).double().eval()
    wrapped = WrappedMLP(mlp)
    assert mlp_backend_reason(mlp, "cross_entropy", "eval") is None
    assert mlp_backend_reason(wrapped, "cross_entropy", "eval") is not None
    x, y = torch.randn(25, 7).double(), torch.randint(0, 3, (25,))
    for layer in mlp.layer_names:
        G, a = output_hessians(mlp, layer, x, y)
        G_ref, a_ref = output_hessians(wrapped, f"mlp.{layer}", x, y)
        assert G.shape == (25, getattr(mlp, layer).out_features, getattr(mlp, layer).out_features)
        assert float((G - G_ref).abs().max()) <= 1e-12 and torch.equal(a, a_ref)
        H, H_ref = (
            aw.layer_hessian(mlp, layer, x, y),
            aw.layer_hessian(wrapped, f"mlp.{layer}", x, y),
        )
        assert float((H - H_ref).abs().max()) <= 1e-12
        assert float((H - dense_reference_hessian(mlp, layer, x, y)).abs().max()) <= 1e-10


def test_layer_hessian_matches_finite_differences_of_the_gradient():
    torch.manual_seed(1)
    model = MLP(5, (8, 6), 3, "tanh", False).double().eval()
    x, y = torch.randn(30, 5).double(), torch.randint(0, 3, (30,))
    H = aw.layer_hessian(model, "fc2", x, y)
    W = model.fc2.weight

    def grad_at(w):
        with torch.no_grad():
            W.copy_(w)
        loss = F.cross_entropy(model(x), y)
        return torch.autograd.grad(loss, W)[0].flatten()

    w0, eps = W.detach().clone(), 1e-6
    for j in (0, 7, 23, 47):
        e = torch.zeros_like(w0).flatten()
        e[j] = eps
        col = (grad_at(w0 + e.view_as(w0)) - grad_at(w0 - e.view_as(w0))) / (2 * eps)
        assert torch.allclose(H[:, j], col, atol=1e-8)
    grad_at(w0)


def test_layer_hessian_last_layer_closed_form():
    """Softmax output layer: H = mean_k (diag p_k - p_k p_k^T) kron a_k a_k^T."""
    torch.manual_seed(2)
    model = MLP(6, (5,), 4, "relu", False).double().eval()
    x, y = torch.randn(25, 6).double(), torch.randint(0, 4, (25,))
    a = aw.layer_inputs(model, "fc2", x)
    p = torch.softmax(model(x), 1).detach()
    ref = (
        sum(
            torch.kron(torch.diag(pk) - torch.outer(pk, pk), torch.outer(ak, ak))
            for pk, ak in zip(p, a)
        )
        / 25
    )
    assert float((aw.layer_hessian(model, "fc2", x, y) - ref).abs().max()) <= 1e-14


def test_layer_hessian_with_bias_covers_the_augmented_matrix():
    torch.manual_seed(3)
    model = MLP(4, (5,), 3, "tanh", True).double().eval()
    x, y = torch.randn(20, 4).double(), torch.randint(0, 3, (20,))
    H = aw.layer_hessian(model, "fc1", x, y, with_bias=True)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(wb):
        wb = wb.view(5, 5)
        p = dict(params, **{"fc1.weight": wb[:, :4], "fc1.bias": wb[:, 4]})
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    wb0 = torch.cat([params["fc1.weight"], params["fc1.bias"][:, None]], 1).flatten()
    assert float((H - hessian(loss)(wb0)).abs().max()) <= 1e-10
    with pytest.raises(ValueError, match="has no bias"):
        aw.layer_hessian(MLP(4, (5,), 3).double(), "fc1", x, y, with_bias=True)


@pytest.fixture(params=[1, 2], ids=["scipy-1-thread", "torch-2-threads"])
def torch_threads(request):
    """symmetric_eigh takes scipy's LAPACK with one torch thread and torch's with more."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def test_symmetric_eigh_splits_off_zero_rows_exactly(torch_threads):
    from awbench.curvature.layer import symmetric_eigh

    gen = torch.Generator().manual_seed(3)
    A = torch.randn(40, 40, generator=gen, dtype=torch.float64)
    H = A @ A.T - 30 * torch.eye(40, dtype=torch.float64)  # indefinite
    dead = torch.tensor([0, 7, 8, 39])
    H[dead, :] = 0.0
    H[:, dead] = 0.0
    lam, V = symmetric_eigh(H)
    eye = torch.eye(40, dtype=torch.float64)
    assert bool((lam[1:] >= lam[:-1]).all())
    assert float((V.T @ V - eye).abs().max()) <= 1e-13
    assert float((V @ torch.diag(lam) @ V.T - H).abs().max()) <= 1e-12
    assert np.allclose(lam.numpy(), torch.linalg.eigvalsh(H).numpy(), atol=1e-12)
    # Each dead coordinate is its own eigenvector with an exact zero eigenvalue.
    for i in dead.tolist():
        col = int(V[i].abs().argmax())
        assert (
            float(V[i, col]) == 1.0
            and float(V[:, col].abs().sum()) == 1.0
            and float(lam[col]) == 0.0
        )
    # A matrix that is all zero, or has no zero row, is handled the same way.
    lam0, V0 = symmetric_eigh(torch.zeros(5, 5, dtype=torch.float64))
    assert torch.equal(lam0, torch.zeros(5, dtype=torch.float64)) and torch.equal(V0, eye[:5, :5])
    full = A @ A.T
    lam1, V1 = symmetric_eigh(full)
    assert float((V1 @ torch.diag(lam1) @ V1.T - full).abs().max()) <= 1e-11
    with pytest.raises(ValueError, match=r"H of shape \(3, 4\)"):
        symmetric_eigh(torch.zeros(3, 4, dtype=torch.float64))


# --- the decomposition on trained runs ---------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run():
    cfg = aw.Config.preset("smoke").replace(max_epochs=15, seed=1)
    return aw.train(cfg)


def test_identity_is_exact_and_consistent(smoke_run):
    an = aw.analyze(smoke_run)
    assert an.identity_error <= 1e-10
    assert an.duality_error <= 1e-10
    assert an.n_pairs == len(smoke_run.data.y_test) and an.n_excluded == 0
    d = an.directions
    assert list(d.columns[: len(DIRECTION_COLUMNS)]) == DIRECTION_COLUMNS
    assert len(d) == an.n_weights == 400
    assert bool((np.diff(d["sigma_g"].to_numpy()) <= 0).all())
    assert an.sharp_gap + an.flat_gap == pytest.approx(an.pair_gap, abs=1e-12)
    assert an.sharp_gap == pytest.approx(d["contribution"][:10].sum(), abs=1e-12)
    assert an.estimated_gap == pytest.approx((d.c * d.sigma_g * d.sigma_w).sum(), abs=1e-12)
    assert an.estimated_gap + an.mean_term == pytest.approx(an.pair_gap, abs=1e-10)
    assert an.sharpness == pytest.approx((d.sigma_g**2).sum())
    assert an.size == pytest.approx((d.sigma_w**2).sum())
    # The mean per-pair gap equals mean of l(x'_k) - l(x_k) computed independently.
    model = smoke_run.model.double().eval()
    data = smoke_run.data
    with torch.no_grad():
        direct = F.cross_entropy(
            model(data.x_test.double()[an.pairs_test]), data.y_test[an.pairs_test], reduction="none"
        )
        base = F.cross_entropy(
            model(data.x_train.double()[an.pairs_train]),
            data.y_test[an.pairs_test],
            reduction="none",
        )
        real = F.cross_entropy(model(data.x_test.double()), data.y_test) - F.cross_entropy(
            model(data.x_clean.double()), data.y_clean
        )
    assert an.pair_gap == pytest.approx(float((direct - base).mean()), abs=1e-12)
    assert an.real_gap == pytest.approx(float(real), abs=1e-12)
    # Secant gradients reproduce each pair's gap: g_k . dw_k = dl_k.
    dots = (an.secant.flatten(1) * an.dual.flatten(1)).sum(1).numpy()
    assert np.allclose(dots, an.pair_gaps, atol=1e-13)
    # lam is the Hessian spectrum.
    H = aw.layer_hessian(model, "fc2", data.x_clean.double(), data.y_clean)
    assert np.allclose(np.sort(d["lam"].to_numpy()), torch.linalg.eigvalsh(H).numpy(), atol=1e-12)


def test_identity_holds_in_random_orthonormal_bases(smoke_run):
    for seed in range(3):
        Q, _ = torch.linalg.qr(
            torch.randn(
                400, 400, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
            )
        )
        an = aw.analyze(smoke_run, basis=Q)
        assert an.identity_error <= 1e-10
        assert an.hessian_method == "given"


def test_lanczos_with_complement_direction_keeps_the_identity(smoke_run):
    dense = aw.analyze(smoke_run)
    an = aw.analyze(smoke_run, dense_max=100, lanczos_k=30)
    assert an.hessian_method == "lanczos+complement"
    assert len(an.directions) == 30  # the complement is complement_gap, not a row
    assert an.identity_error <= 1e-10
    assert an.pair_gap == pytest.approx(dense.pair_gap, abs=1e-14)
    top = np.sort(an.directions["lam"].dropna().to_numpy())[::-1][:10]
    assert np.allclose(top, np.sort(dense.directions["lam"].to_numpy())[::-1][:10], rtol=1e-8)


def test_direction_statistics_population_definitions():
    theta = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]], dtype=torch.float64)
    gamma = torch.tensor([[2.0, 1.0], [4.0, 0.0], [9.0, 5.0]], dtype=torch.float64)
    s = direction_statistics(theta, gamma)
    assert s["mu_w"].tolist() == [3.0, 2.0]
    assert s["sigma_w"][0] == pytest.approx(np.std([1, 3, 5]))
    assert s["c"][0] == pytest.approx(np.corrcoef([1, 3, 5], [2, 4, 9])[0, 1])
    assert s["sigma_w"][1] == 0 and s["c"][1] == 0  # zero variance: c defined as 0


def test_rescaling_hidden_layers_scales_size_not_function(smoke_run):
    """ReLU is positively homogeneous: fc2*s, fc3/s leaves the function and the gap unchanged;
    every sigma_w scales by s and every sigma_g by 1/s (the size factor follows the weight norm)."""
    s = 3.0
    an = aw.analyze(smoke_run)
    model = copy.deepcopy(smoke_run.model)
    with torch.no_grad():
        model.fc2.weight.mul_(s)
        model.fc3.weight.div_(s)
    scaled = Run(smoke_run.config, model, smoke_run.data, smoke_run.history, smoke_run.status)
    an_s = aw.analyze(scaled)
    assert an_s.real_gap == pytest.approx(an.real_gap, abs=1e-9)
    assert an_s.pair_gap == pytest.approx(an.pair_gap, abs=1e-9)
    assert an_s.weight_norm == pytest.approx(s * an.weight_norm)
    assert an_s.size == pytest.approx(s**2 * an.size, rel=1e-9)
    assert an_s.sharpness == pytest.approx(an.sharpness / s**2, rel=1e-9)
    # Per direction, in one fixed basis, sigma_w scales by exactly s.
    V = an.eigenvectors
    a1, a2 = aw.analyze(smoke_run, basis=V), aw.analyze(scaled, basis=V)
    x1, x2 = a1.directions.sort_values("eigen_index"), a2.directions.sort_values("eigen_index")
    assert np.allclose(
        x2["sigma_w"].to_numpy(), s * x1["sigma_w"].to_numpy(), rtol=1e-9, atol=1e-14
    )
    assert np.allclose(x2["contribution"].to_numpy(), x1["contribution"].to_numpy(), atol=1e-12)


def _hand_made_run(
    x_train, y_train, x_test, y_test, clean=None, widths=(6,), seed=0, activation="relu"
):
    cfg = aw.Config(
        dataset="teacher",
        widths=widths,
        layer="fc1",
        n_train=max(10, len(y_train)),
        n_test=len(y_test),
    )
    torch.manual_seed(seed)
    model = MLP(x_train.shape[1], widths, int(max(y_train.max(), y_test.max())) + 1, activation)
    clean = torch.ones(len(y_train), dtype=torch.bool) if clean is None else clean
    data = Data("hand", x_train, y_train, x_test, y_test, clean)
    return Run(cfg, model, data, pd.DataFrame(), "max_epochs")


def test_identical_test_and_training_sample_gives_zero_pair():
    gen = torch.Generator().manual_seed(0)
    x_train, y_train = torch.randn(30, 4, generator=gen), torch.arange(30) % 3
    x_test, y_test = (
        torch.cat([x_train[:1], torch.randn(9, 4, generator=gen)]),
        torch.cat([y_train[:1], torch.arange(9) % 3]),
    )
    run = _hand_made_run(x_train, y_train, x_test, y_test)
    an = aw.analyze(run)
    first = int(np.flatnonzero(an.pairs_test == 0)[0])
    assert an.pairs_train[first] == 0
    assert float(an.dual[first].abs().max()) == 0.0 and an.pair_gaps[first] == 0.0
    assert float(an.secant[first].abs().max()) == 0.0
    assert an.identity_error <= 1e-12


def test_class_absent_from_test_set_and_fully_corrupted_class():
    gen = torch.Generator().manual_seed(1)
    x_train, y_train = torch.randn(40, 5, generator=gen), torch.arange(40) % 4
    x_test, y_test = (
        torch.randn(12, 5, generator=gen),
        torch.tensor([0, 1, 2] * 4),
    )  # class 3 absent
    clean = y_train != 2  # every class-2 training label corrupted
    an = aw.analyze(
        _hand_made_run(x_train, y_train, x_test, y_test, clean, activation="tanh"), layer="fc2"
    )
    assert an.n_excluded == 4 and an.n_pairs == 8
    assert not np.isin(an.pairs_test, np.flatnonzero(y_test.numpy() == 2)).any()
    assert an.identity_error <= 1e-12


def test_zero_activity_pairs_are_excluded_and_counted():
    gen = torch.Generator().manual_seed(2)
    x_train, y_train = torch.randn(30, 3, generator=gen), torch.arange(30) % 2
    x_test, y_test = torch.randn(10, 3, generator=gen), torch.arange(10) % 2
    run = _hand_made_run(x_train, y_train, x_test, y_test, widths=(4, 4))
    with torch.no_grad():
        run.model.fc1.weight.copy_(torch.tensor([[1.0, 0, 0]] * 4))  # relu(x0) = 0 when x0 <= 0
    an = aw.analyze(run, layer="fc2")
    pairs = aw.pair_samples(x_test, y_test, x_train, y_train)
    dead = int((x_train[pairs.train, 0] <= 0).sum())
    assert dead > 0 and an.n_excluded == dead and an.n_pairs == 10 - dead
    assert an.identity_error <= 1e-12


def test_analysis_leaves_the_model_untouched(smoke_run):
    before = {k: v.clone() for k, v in smoke_run.model.state_dict().items()}
    smoke_run.model.train()
    aw.analyze(smoke_run)
    assert smoke_run.model.training
    for k, v in smoke_run.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_pairing_variants_all_keep_the_identity(smoke_run):
    for pairing in ("feature", "knn", "random"):
        an = aw.analyze(smoke_run, pairing=pairing)
        assert an.identity_error <= 1e-10 and an.duality_error <= 1e-10
        expected = len(smoke_run.data.y_test) * (
            smoke_run.config.pairing_k if pairing == "knn" else 1
        )
        assert an.n_pairs == expected


def test_spearman_matches_scipy_with_ties_and_skips_non_finite():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 40).astype(float), rng.normal(size=40)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-12)
    assert spearman([*x, np.nan], [*y, 1.0]) == spearman(x, y)
    assert np.isnan(spearman([1.0, 2.0], [3.0, 4.0]))
    assert np.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_spearman_of_sigma_g_and_ratio_use_the_curved_directions_only():
    d = pd.DataFrame(
        {
            "lam": [1e-17, 0.5, 1.0, 2.0, 4.0],
            "sigma_g": [9.0, 1.0, 2.0, 3.0, 4.0],
            "sigma_w": [1.0, 0.5, 2.0, 1.0, 8.0],
        }
    )
    curved = curved_directions(d)
    assert list(curved.index) == [1, 2, 3, 4]
    an = SimpleNamespace(directions=d)
    assert spearman_sigma_g(an) == pytest.approx(1.0)
    ratio = curved["sigma_g"] / curved["sigma_w"]
    assert spearman_ratio(an) == pytest.approx(stats.spearmanr(curved["lam"], ratio).statistic)
