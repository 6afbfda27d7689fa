"""Ground truth for the curvature toolkit: operators, top eigenpairs, trace, spectral density.

References are dense Hessians built independently: torch.func.hessian for small nets, and the
autograd backend's identity-block products (itself checked against torch.func.hessian) for
the ~3k-parameter net. Everything runs in float64 on small synthetic problems.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch
import torch.nn.functional as F
from torch import nn

import awbench as aw
from awbench.config import ACTIVATIONS
from awbench.curvature.eigensolvers import DENSE_MAX_PARAMS, operator_eigenpairs, top_eigenpairs
from awbench.curvature.flat import (
    FlatModel,
    NondeterministicModelError,
    determinism_report,
    model_mode,
)
from awbench.curvature.layer import layer_hessian
from awbench.curvature.operators import GaussNewtonOperator, HessianOperator
from awbench.curvature.spectrum import (
    eigen_check,
    hessian_trace,
    lanczos_quadrature,
    operator_trace,
    spectral_density,
    trace_table,
)


def make_model(n_in, widths, n_out, activation="relu", bias=False, dropout=0.0, seed=0):
    cfg = aw.Config.preset("smoke").replace(
        dtype="float64", widths=widths, activation=activation, bias=bias, dropout=dropout, seed=seed
    )
    return aw.build_model(cfg, n_in, n_out)


def make_data(n, n_in, n_out, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_out, (n,), generator=g)
    return x, y


def func_hessian(model, x, y, params=None):
    flat = FlatModel(model, params)
    with model_mode(model, "eval"):
        return torch.func.hessian(lambda th: F.cross_entropy(flat.logits(th, x), y))(flat.theta0)


def func_gauss_newton(model, x, y, params=None):
    flat = FlatModel(model, params)
    with model_mode(model, "eval"):
        J = torch.func.jacrev(lambda th: flat.logits(th, x))(flat.theta0)  # (N, C, P)
        p = torch.softmax(flat.logits(flat.theta0, x), 1)
    Hz = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("ncp,ncd,ndq->pq", J, Hz, J) / len(x)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [
        m.training for m in model.modules()
    ]


def assert_untouched(model, snap):
    state, modes = snap
    now = model.state_dict()
    assert state.keys() == now.keys()
    for k in state:
        assert torch.equal(state[k], now[k]), f"{k} changed"
        assert state[k].dtype == now[k].dtype
    assert modes == [m.training for m in model.modules()], "a module's train/eval flag changed"


# --------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------

CASES = [
    ("relu", False, (7, 6), None),
    ("relu", True, (6, 5, 4), ["fc1.weight", "fc3"]),
    ("tanh", True, (7, 6), "fc2"),
    ("gelu", False, (6,), None),
    ("sigmoid", True, (5, 5), ["fc1", "fc3.bias"]),
]
# every activation of the table, so that a new one is checked without editing this file
CASES += [(name, True, (6, 5), None) for name in ACTIVATIONS if name not in {c[0] for c in CASES}]


@pytest.mark.parametrize("activation,bias,widths,params", CASES)
def test_operators_match_dense_autograd(activation, bias, widths, params):
    x, y = make_data(120, 9, 4, seed=1)
    model = make_model(9, widths, 4, activation, bias, dropout=0.2)  # dropout: eval mode only
    model.train()
    snap = snapshot(model)
    H = func_hessian(model, x, y, params)
    G = func_gauss_newton(model, x, y, params)
    V = torch.randn(H.shape[0], 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    scale = H.abs().max()
    for backend in ("mlp", "autograd"):
        for chunk in (None, 17):
            op = HessianOperator(model, x, y, params, backend=backend, chunk_size=chunk)
            assert op.backend == backend
            assert (op.apply(V) - H @ V).abs().max() <= 1e-12 * scale
            assert (op.dense() - H).abs().max() <= 1e-12 * scale
            gn = GaussNewtonOperator(model, x, y, params, backend=backend, chunk_size=chunk)
            assert (gn.apply(V) - G @ V).abs().max() <= 1e-12 * G.abs().max()
            assert (gn.dense() - G).abs().max() <= 1e-12 * G.abs().max()
    assert torch.linalg.eigvalsh(G).min() >= -1e-12 * G.abs().max()  # PSD
    flat = FlatModel(model, params)
    with model_mode(model, "eval"):
        loss = F.cross_entropy(flat.logits(flat.theta0, x), y)
        grad = torch.func.grad(lambda th: F.cross_entropy(flat.logits(th, x), y))(flat.theta0)
    op = HessianOperator(model, x, y, params, chunk_size=50)
    assert abs(op.loss0 - float(loss)) <= 1e-13
    assert (op.gradient - grad).abs().max() <= 1e-13
    assert_untouched(model, snap)


def test_operator_agrees_with_layer_hessian():
    x, y = make_data(200, 12, 5)
    for bias in (False, True):
        model = make_model(12, (10, 8), 5, bias=bias)
        H = HessianOperator(model, x, y, "fc2.weight").dense()
        assert torch.allclose(H, layer_hessian(model, "fc2", x, y), rtol=0, atol=1e-14)


def test_chunking_keeps_the_full_batch_mean():
    x, y = make_data(103, 8, 3)
    model = make_model(8, (9, 9), 3, "tanh", bias=True)
    v = torch.randn(
        FlatModel(model).size, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    for backend in ("mlp", "autograd"):
        ref = HessianOperator(model, x, y, backend=backend).apply(v)
        for chunk in (1, 7, 50, 103, 1000):
            op = HessianOperator(model, x, y, backend=backend, chunk_size=chunk)
            assert (op.apply(v) - ref).abs().max() <= 1e-14 * ref.abs().max() * 10


def test_scipy_and_torch_interfaces_and_product_count():
    x, y = make_data(60, 6, 3)
    model = make_model(6, (5,), 3)
    op = HessianOperator(model, x, y)
    H = func_hessian(model, x, y).numpy()
    v = np.random.default_rng(0).standard_normal(op.shape[0])
    hv = op.matvec(v)
    assert isinstance(hv, np.ndarray) and np.allclose(hv, H @ v, atol=1e-15)
    assert np.allclose(op @ v, H @ v, atol=1e-15)
    assert isinstance(op.matvec(torch.from_numpy(v)), torch.Tensor)
    V = np.random.default_rng(1).standard_normal((op.shape[0], 4))
    assert np.allclose(op.matmat(V), H @ V, atol=1e-15)
    assert op.n_products == 1 + 1 + 1 + 4
    vals = sla.eigsh(op, k=2, which="LA", return_eigenvectors=False)
    assert np.allclose(np.sort(vals), np.linalg.eigvalsh(H)[-2:], rtol=1e-10)


def test_float32_option_and_validation():
    x, y = make_data(50, 6, 3)
    model = make_model(6, (5,), 3)
    model32 = make_model(6, (5,), 3).float()
    op32 = HessianOperator(model32, x, y, dtype=None)
    assert op32.flat.dtype == torch.float32
    ref = HessianOperator(model, x, y).dense()
    assert (op32.dense().double() - ref).abs().max() <= 1e-5 * ref.abs().max()
    # The dense route of a float32 operator decomposes in float64 and reports float64 residuals.
    pairs = operator_eigenpairs(op32, k=2, method="dense")
    exact = np.linalg.eigvalsh(ref.numpy())[::-1][:2]
    assert np.allclose(pairs.values.numpy(), exact, rtol=1e-4)
    assert float(pairs.residuals.max()) <= 1e-12 * abs(exact[0])
    with pytest.raises(ValueError, match="mode"):
        HessianOperator(model, x, y, mode="inference")
    with pytest.raises(ValueError, match="neither a parameter nor a module"):
        HessianOperator(model, x, y, params="fc9")
    with pytest.raises(ValueError, match="per-sample"):
        HessianOperator(model, x, y, loss=lambda z, t: F.cross_entropy(z, t), backend="autograd")


# --------------------------------------------------------------------------------------
# Mode and determinism
# --------------------------------------------------------------------------------------


def test_mode_is_explicit_and_restored():
    x, y = make_data(80, 6, 3)
    model = make_model(6, (8, 8), 3, dropout=0.3)
    model.train()
    snap = snapshot(model)
    H_eval = HessianOperator(model, x, y, mode="eval").dense()
    assert model.training  # never switched silently
    model.eval()
    assert torch.equal(HessianOperator(model, x, y).dense(), H_eval)
    model.train()
    with pytest.raises(
        NondeterministicModelError, match=r"drop \(Dropout, p=0.3\) is active in train mode"
    ):
        HessianOperator(model, x, y, mode="train")
    assert_untouched(model, snap)
    with pytest.warns(UserWarning, match="Dropout"):
        HessianOperator(model, x, y, mode="train", check="warn")
    assert_untouched(model, snap)


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def test_determinism_report_names_batchnorm_and_dropout():
    x, y = make_data(64, 6, 3)
    torch.manual_seed(0)
    net = BNNet().double()
    with torch.no_grad():
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2.0)
    net.train()
    snap = snapshot(net)
    issues = determinism_report(net, "train", x)
    assert any("bn (BatchNorm1d) uses batch statistics in train mode" in s for s in issues)
    assert any("depends on the rest of the batch" in s for s in issues)
    assert determinism_report(net, "eval", x) == []
    with pytest.raises(NondeterministicModelError, match="BatchNorm1d"):
        HessianOperator(net, x, y, mode="train")
    op = HessianOperator(net, x, y, mode="eval", chunk_size=10)  # autograd backend, eval BN
    assert op.backend == "autograd"
    H = op.dense()
    flat = FlatModel(net)
    with model_mode(net, "eval"):
        ref = torch.func.hessian(lambda th: F.cross_entropy(flat.logits(th, x), y))(flat.theta0)
    assert (H - ref).abs().max() <= 1e-12 * ref.abs().max()
    assert_untouched(net, snap)  # running statistics not updated, train flag kept
    mlp = make_model(6, (5,), 3, dropout=0.5)
    assert any("Dropout" in s for s in determinism_report(mlp, "train", x))
    assert any("differ" in s for s in determinism_report(mlp, "train", x))
    assert determinism_report(mlp, "eval", x) == []


# --------------------------------------------------------------------------------------
# Eigenpairs
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def net3k():
    """~2.8k parameters (20 -> 40 -> 40 -> 8, biases), its dense Hessian and eigenvalues.

    The dense matrix comes from identity-block products of the explicit MLP backend and is
    certified against the independent autograd backend on random vectors (Freivalds: a
    wrong matrix passes with probability zero).
    """
    x, y = make_data(200, 20, 8, seed=3)
    model = make_model(20, (40, 40), 8, "tanh", bias=True, seed=1)
    H = HessianOperator(model, x, y).dense(block=512)
    V = torch.randn(H.shape[0], 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    ref = HessianOperator(model, x, y, backend="autograd").apply(V)
    assert (H @ V - ref).abs().max() <= 1e-12 * ref.abs().max()
    return model, x, y, H, torch.linalg.eigvalsh(H)


def reference(evals, evecs, k, which):
    key = {"LA": -evals, "SA": evals, "LM": -evals.abs()}[which]
    idx = torch.argsort(key, stable=True)[:k]
    return evals[idx], (None if evecs is None else evecs[:, idx].T)


def min_abs_cos(H, evals, values, vectors):
    """Certified lower bound on |cos(v, u)| to the exact eigenvectors u of the dense H.

    Davis-Kahan: sin angle(v, u_i) <= ||H v - theta v|| / delta_i, delta_i the distance from
    theta to the eigenvalues of H other than lambda_i (from eigvalsh of the same matrix).
    """
    worst = 1.0
    for theta, v in zip(values.tolist(), vectors):
        v = v / v.norm()
        r = float((H @ v - theta * v).norm())
        d = (evals - theta).abs()
        delta = float(torch.sort(d).values[1])  # skip lambda_i itself
        sin = min(1.0, r / delta)
        worst = min(worst, float(np.sqrt(1 - sin**2)))
    return worst


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
@pytest.mark.parametrize("method", ["lanczos", "arpack"])
def test_top_eigenpairs_match_dense_eigh(net3k, which, method):
    model, x, y, H, evals = net3k
    snap = snapshot(model)
    k = 6
    res = top_eigenpairs(model, x, y, k, which=which, method=method, seed=4)
    ref_vals, _ = reference(evals, None, k, which)
    assert res.vectors.shape == (k, evals.numel())
    assert torch.all((res.values - ref_vals).abs() <= 1e-8 * ref_vals.abs())
    assert min_abs_cos(H, evals, res.values, res.vectors) >= 1 - 1e-8
    assert bool(res.converged.all())
    Hv = H @ res.vectors.T - res.vectors.T * res.values
    assert torch.allclose(res.residuals, Hv.norm(dim=0), rtol=1e-3, atol=1e-14)  # honest residuals
    if which == "LA":
        assert torch.all(res.values[:-1] >= res.values[1:])  # descending
    assert_untouched(model, snap)


def test_top_eigenpairs_dense_route_and_seeding(net3k):
    model, x, y, H, evals = net3k
    assert evals.numel() > DENSE_MAX_PARAMS  # so the tests above exercised Lanczos/ARPACK
    small = make_model(20, (10,), 8)
    sx, sy = x[:100], y[:100]
    H = func_hessian(small, sx, sy)
    ev, U = torch.linalg.eigh(H)
    res = top_eigenpairs(small, sx, sy, 4)  # auto -> dense
    assert torch.allclose(res.values, ev.flip(0)[:4], rtol=1e-12, atol=0)
    assert torch.all((res.vectors * U.flip(1)[:, :4].T).sum(1).abs() >= 1 - 1e-12)
    a = top_eigenpairs(model, x, y, 3, method="lanczos", seed=7)
    b = top_eigenpairs(model, x, y, 3, method="lanczos", seed=7)
    assert torch.equal(a.values, b.values) and torch.equal(a.vectors, b.vectors)


class TieNet(nn.Module):
    """An MLP plus a bilinear pair: logits += c (u v + alpha u^2 / 2) e_0 at u = v = 0.

    There the (u, v) block of the Hessian decouples and equals g [[alpha, 1], [1, 0]] with
    g = c * mean(p_0 - [y = 0]): eigenvalues g (alpha/2 +- sqrt(1 + alpha^2/4)), a near-tie of
    opposite signs in magnitude (relative gap ~ alpha) above the MLP's own spectrum.
    """

    def __init__(self, base, c, alpha, n_out):
        super().__init__()
        self.base = base
        self.u = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.v = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.alpha = alpha
        e0 = torch.zeros(n_out, dtype=torch.float64)
        e0[0] = c
        self.register_buffer("e0", e0)

    def forward(self, x):
        s = self.u * self.v + 0.5 * self.alpha * self.u**2
        return self.base(x) + s * self.e0


def test_near_tie_of_opposite_signs():
    x, y = make_data(150, 10, 4, seed=5)
    base = make_model(10, (12, 12), 4, "tanh", seed=2)
    lam_base = float(torch.linalg.eigvalsh(func_hessian(base, x, y)).abs().max())
    p0 = torch.softmax(base.eval()(x), 1)[:, 0]
    g_unit = float((p0 - (y == 0).double()).mean().detach())
    alpha = 1e-3
    c = 3.0 * lam_base / abs(g_unit)  # |pair| = 3x the MLP's largest |lambda|
    net = TieNet(base, c, alpha, 4)
    H = func_hessian(net, x, y)
    evals, evecs = torch.linalg.eigh(H)
    g = c * g_unit
    pair = sorted(
        [g * (alpha / 2 + np.sqrt(1 + alpha**2 / 4)), g * (alpha / 2 - np.sqrt(1 + alpha**2 / 4))],
        key=lambda v: -abs(v),
    )
    ref_vals, ref_vecs = reference(evals, evecs, 2, "LM")
    assert np.allclose(ref_vals.numpy(), pair, rtol=1e-10)  # the construction does what it says
    assert abs(abs(pair[1]) / abs(pair[0]) - 1) < 2 * alpha  # near-tie, opposite signs
    assert pair[0] * pair[1] < 0
    for method in ("lanczos", "arpack", "dense"):
        res = top_eigenpairs(net, x, y, 2, which="LM", method=method)
        assert torch.all((res.values - ref_vals).abs() <= 1e-8 * ref_vals.abs()), method
        assert torch.all((res.vectors * ref_vecs).sum(1).abs() >= 1 - 1e-8), method
        assert bool(res.converged.all())
    la = top_eigenpairs(net, x, y, 1, which="LA", method="lanczos")
    sa = top_eigenpairs(net, x, y, 1, which="SA", method="lanczos")
    assert abs(float(la.values[0]) - max(pair)) <= 1e-8 * abs(max(pair))
    assert abs(float(sa.values[0]) - min(pair)) <= 1e-8 * abs(min(pair))


# --------------------------------------------------------------------------------------
# Trace and density
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trace_problem():
    x, y = make_data(150, 10, 5, seed=6)
    model = make_model(10, (14, 12), 5, "tanh", bias=True, seed=3)
    H = func_hessian(model, x, y)
    return model, x, y, H


def test_trace_within_three_standard_errors(trace_problem):
    model, x, y, H = trace_problem
    exact = float(torch.trace(H))
    snap = snapshot(model)
    for seed in range(8):
        est, se = hessian_trace(model, x, y, probes=60, seed=seed)
        assert se > 0 and abs(est - exact) <= 3 * se, (seed, est, se, exact)
        est, se = hessian_trace(model, x, y, probes=60, seed=seed, method="hutch++")
        assert se > 0 and abs(est - exact) <= 3 * se, (seed, est, se, exact)
    assert hessian_trace(model, x, y, 30, 11) == hessian_trace(model, x, y, 30, 11)  # seeded
    assert_untouched(model, snap)


def test_trace_standard_error_matches_spread(trace_problem):
    model, x, y, H = trace_problem
    op = HessianOperator(model, x, y)
    m, seeds = 20, range(200)
    results = [operator_trace(op, m, s) for s in seeds]
    estimates = np.array([r.estimate for r in results])
    ses = np.array([r.stderr for r in results])
    # Rademacher: Var(z^T H z) = 2 (||H||_F^2 - sum_i H_ii^2)
    se_theory = np.sqrt(2 * (float((H**2).sum()) - float((torch.diagonal(H) ** 2).sum())) / m)
    spread = estimates.std(ddof=1)
    assert 0.85 < spread / se_theory < 1.15
    assert 0.85 < np.sqrt(np.mean(ses**2)) / se_theory < 1.15
    assert abs(estimates.mean() - float(torch.trace(H))) < 4 * spread / np.sqrt(len(seeds))


def test_lanczos_quadrature_is_exact_for_low_moments(trace_problem):
    model, x, y, H = trace_problem
    op = HessianOperator(model, x, y)
    V0 = torch.randn(H.shape[0], 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    steps = 12
    nodes, weights = lanczos_quadrature(op, V0, steps)
    assert np.allclose(weights.sum(1), 1.0, atol=1e-12)
    Hn = H / H.abs().max()
    s = float(H.abs().max())
    for i in range(3):
        v = V0[:, i] / V0[:, i].norm()
        Hv = v.clone()
        for j in range(2 * steps):  # exact through degree 2 * steps - 1
            moment = float((weights[i] * (nodes[i] / s) ** j).sum())
            assert abs(moment - float(v @ Hv)) <= 1e-9 * max(1.0, abs(float(v @ Hv))), (i, j)
            Hv = Hn @ Hv


def test_spectral_density_full_steps_and_settings():
    x, y = make_data(80, 6, 4, seed=8)
    model = make_model(6, (7, 5), 4, "tanh", seed=4)
    H = func_hessian(model, x, y)
    P = H.shape[0]
    ev = torch.linalg.eigvalsh(H).numpy()
    sd = spectral_density(model, x, y, n_probes=4, steps=P + 50, seed=1)  # capped at P
    assert sd.nodes.shape == sd.weights.shape == (4, P)
    assert np.allclose(sd.weights.sum(1), 1.0, atol=1e-10)
    used = sd.weights > 1e-12
    # with a full Krylov space the nodes are eigenvalues of H
    dist = np.abs(sd.nodes[used][:, None] - ev[None, :]).min(1)
    assert dist.max() <= 1e-8 * np.abs(ev).max()
    assert np.isclose(np.trapezoid(sd.density, sd.grid), 1.0, atol=1e-3)
    # mean over probes of sum w theta estimates tr(H)/P
    est = float((sd.weights * sd.nodes).sum(1).mean())
    assert abs(est - ev.mean()) < 0.5 * np.abs(ev).max()
    for key in (
        "n_probes",
        "steps",
        "seed",
        "sigma",
        "kernel",
        "probe",
        "n_params",
        "reorthogonalisation",
    ):
        assert key in sd.settings
    assert sd.settings["steps"] == P
    again = spectral_density(model, x, y, n_probes=4, steps=P + 50, seed=1)
    assert np.array_equal(again.density, sd.density)


def test_eigen_check_is_the_worst_relative_error_against_the_sorted_exact_values():
    assert eigen_check([3.0, 2.0], [1.0, 2.0, 3.0]) == 0.0
    assert eigen_check([3.3, 2.0], [2.0, 3.0, 1.0]) == pytest.approx(0.1)


def test_trace_table_rows_are_the_seeded_hutchinson_estimates(trace_problem):
    model, x, y, H = trace_problem
    exact = float(torch.trace(H))
    table = trace_table(model, x, y, [30, 60], seed=1, params=None)
    assert list(table["probes"]) == [30, 60]
    assert ((table["estimate"] - exact).abs() <= 4 * table["stderr"]).all()
    est = hessian_trace(model, x, y, probes=60, seed=1)
    assert (table["estimate"].iloc[1], table["stderr"].iloc[1]) == (est.estimate, est.stderr)
