"""Ground truth for the size-free curvature and the control bases (docs/science.md section 3):
curvature = sharpness / size and sigma_g / sigma_w exactly, s^2 when every secant curvature
is s, the gap identity in every basis, and the dual weights' principal axes against numpy's
eigh of the explicit covariance."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import awbench as aw
from awbench.analysis import control_basis as cb
from awbench.analysis.decomposition import _identity_terms, _project
from awbench.analysis.directions import DIRECTION_COLUMNS, direction_table
from awbench.analysis.pair_gaps import PairGaps
from awbench.experiments.store import Store, config_columns


@pytest.fixture(scope="module")
def smoke_an():
    cfg = aw.Config.preset("smoke").replace(max_epochs=15, seed=1)
    return aw.analyze(aw.train(cfg))


def _pairs(K: int, n_out: int, n_in: int, s=None, seed: int = 0) -> PairGaps:
    """Random rank-one dual weights dw_k = u_k b_k^T with secant curvatures s_k (given or
    random) and the exact gaps they imply, dl_k = s_k |dw_k|^2."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(K, n_out, generator=g, dtype=torch.float64) + 0.5
    b = torch.randn(K, n_in, generator=g, dtype=torch.float64)
    gaps = PairGaps(u, b)
    s = torch.randn(K, generator=g, dtype=torch.float64) if s is None else s
    gaps.secant_scale = s
    gaps.dl = s * gaps.squared_norms
    return gaps


def _explicit(gaps: PairGaps) -> torch.Tensor:
    return torch.einsum("ko,ki->koi", gaps.u, gaps.b).reshape(len(gaps.u), -1)


# --- the curvature part ---------------------------------------------------------------------


def test_curvature_is_sharpness_over_size_and_sigma_g_over_sigma_w(smoke_an):
    an = smoke_an
    assert an.curvature * an.size == pytest.approx(an.sharpness, rel=1e-14)
    assert "curvature" in an.scalars()
    d = an.directions
    assert list(d.columns[: len(DIRECTION_COLUMNS)]) == DIRECTION_COLUMNS
    np.testing.assert_allclose(d["curvature"], d["sigma_g"] / d["sigma_w"], rtol=0)
    # A direction along which every pair has the same coordinate has no size: NaN, not inf.
    theta = torch.tensor([[1.0, 2.0], [3.0, 2.0]], dtype=torch.float64)
    flat = direction_table(theta, theta * torch.tensor([[0.5], [1.5]]), np.zeros(2))
    assert flat.sort_values("eigen_index")["curvature"].isna().tolist() == [False, True]


def test_equal_secant_curvatures_give_curvature_s_squared():
    s = -0.37  # the sign of s drops out: curvature is s^2, per direction |s|
    gaps = _pairs(40, 3, 5, s=torch.full((40,), s, dtype=torch.float64))
    proj = _project(gaps, torch.eye(15, dtype=torch.float64))
    d = direction_table(proj.theta, proj.gamma, np.zeros(15))
    terms = _identity_terms(gaps.dl, d, 3, proj)
    assert terms["curvature"] == pytest.approx(s * s, rel=1e-13)
    np.testing.assert_allclose(d["curvature"], abs(s), rtol=1e-13)
    assert math.fsum(d["contribution"]) == pytest.approx(float(gaps.dl.mean()), abs=1e-12)


def test_zero_size_gives_nan_curvature():
    # Four copies of one dual weight with small integer entries: every sum is exact, size 0.
    u = torch.tensor([[1.0, 2.0]] * 4, dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    gaps = PairGaps(u, b, secant_scale=torch.full((4,), 0.5, dtype=torch.float64))
    gaps.dl = gaps.secant_scale * gaps.squared_norms
    proj = _project(gaps, torch.eye(4, dtype=torch.float64))
    d = direction_table(proj.theta, proj.gamma, np.zeros(4))
    assert proj.size == 0.0
    assert math.isnan(_identity_terms(gaps.dl, d, 2, proj)["curvature"])


def test_a_store_without_the_curvature_column_still_loads(tmp_path):
    store = Store(tmp_path / "s")
    old, new = (aw.Config.preset("smoke").replace(seed=s) for s in (0, 1))
    cols = {"rank": np.arange(3), "sigma_g": np.ones(3), "sigma_w": np.ones(3)}
    for cfg, extra in ((old, {}), (new, {"curvature": np.full(3, 2.0)})):
        row = {"key": cfg.key(), "status": "converged", "reason": "", **config_columns(cfg)}
        store.write(row, pd.DataFrame(cols | extra))
    d = store.load().directions
    assert len(d) == 6
    assert d.loc[d["key"] == old.key(), "curvature"].isna().all()
    assert (d.loc[d["key"] == new.key(), "curvature"] == 2.0).all()


# --- the control bases ----------------------------------------------------------------------


def test_identity_holds_in_every_basis_and_shares_sum_to_one(smoke_an):
    an = smoke_an
    tables = cb.control_tables(an, seed=3)
    assert set(tables) == set(cb.BASES)
    for name, d in tables.items():
        assert len(d) == an.n_weights, name
        assert math.fsum(d["contribution"]) == pytest.approx(an.pair_gap, abs=1e-12), name
        assert bool((np.diff(d.sort_values("rank")["sigma_g"].to_numpy()) <= 0).all()), name
    curves = cb.share_curves(tables, an.pair_gap)
    for name, curve in curves.items():
        assert curve[-1] == pytest.approx(1.0, abs=1e-12), name
    shares = cb.basis_shares(an, k=10, seed=3)
    assert shares["hessian"] == pytest.approx(an.sharp_gap / an.pair_gap, rel=1e-12)
    for name in cb.BASES:
        assert shares[name] == pytest.approx(curves[name][9], abs=1e-12)


def test_dual_pca_basis_is_orthonormal_and_its_variances_are_the_spread(smoke_an):
    gaps = cb.gaps_of(smoke_an)
    var, V = cb.dual_pca_basis(gaps)
    P = gaps.n_weights
    assert V.shape == (P, P)
    assert float((V.T @ V - torch.eye(P, dtype=torch.float64)).abs().max()) <= 1e-12
    assert bool((var[:-1] >= var[1:]).all())
    # The variance of dw_k along each axis, measured on the pairs, is its eigenvalue.
    d = cb.basis_table(gaps, V, var).sort_values("eigen_index")
    np.testing.assert_allclose(d["sigma_w"] ** 2, var.numpy(), atol=1e-12 * float(var[0]))


def test_dual_pca_axes_equal_eigh_of_the_explicit_covariance():
    gaps = _pairs(200, 3, 4)  # more pairs than weights: a full-rank covariance
    X = _explicit(gaps).numpy()
    Xc = X - X.mean(0)
    lam_np, V_np = np.linalg.eigh(Xc.T @ Xc / len(X))
    lam_np, V_np = lam_np[::-1], V_np[:, ::-1]
    assert np.min(np.diff(lam_np[::-1])) > 1e-3 * lam_np[0]  # distinct: axes defined up to sign
    var, V = cb.dual_pca_basis(gaps)
    np.testing.assert_allclose(var.numpy(), lam_np, rtol=1e-12, atol=1e-14)
    overlap = np.abs(np.sum(V.numpy() * V_np, axis=0))  # |v_i . v_i^numpy| = 1
    np.testing.assert_allclose(overlap, 1.0, atol=1e-10)


def test_dual_pca_null_space_has_one_axis_along_the_mean():
    gaps = _pairs(5, 3, 4)  # 5 pairs, 12 weights: rank 4 spread, an 8-dim null space
    X = _explicit(gaps)
    var, V = cb.dual_pca_basis(gaps)
    assert int((var > 0).sum()) == 4
    theta = X @ V
    null = theta[:, 4:]
    # In the null space dw_k has the mean's part only: one axis carries it, the rest nothing.
    assert float((null[:, 1:]).abs().max()) <= 1e-12
    mean = X.mean(0)
    resid = mean - V[:, :4] @ (V[:, :4].T @ mean)
    np.testing.assert_allclose(null[:, 0].abs(), float(resid.norm()), rtol=1e-10)
    d = cb.basis_table(gaps, V, var)
    assert math.fsum(d["contribution"]) == pytest.approx(float(gaps.dl.mean()), abs=1e-12)


def test_random_basis_is_orthonormal_and_seeded():
    V = cb.random_basis(30, seed=4)
    assert float((V.T @ V - torch.eye(30, dtype=torch.float64)).abs().max()) <= 1e-12
    assert torch.equal(V, cb.random_basis(30, seed=4))
    assert not torch.equal(V, cb.random_basis(30, seed=5))


def test_control_bases_refuse_layers_above_the_limit():
    gaps = _pairs(5, 3, 4)
    with pytest.raises(ValueError, match="limited to 10 weights; this layer has 12"):
        cb.dual_pca_basis(gaps, max_weights=10)
    with pytest.raises(ValueError, match="limited to 10 weights"):
        cb.random_basis(12, max_weights=10)
    assert cb.random_basis(12, max_weights=12).shape == (12, 12)


def test_control_summary_gives_nan_controls_above_the_limit(smoke_an):
    shares, curves = cb.control_summary(smoke_an, k=10)
    assert set(curves) == set(cb.BASES) and all(math.isfinite(v) for v in shares.values())
    shares, curves = cb.control_summary(smoke_an, k=10, max_weights=10)
    assert list(curves) == ["hessian"]
    assert math.isnan(shares["dual_pca"]) and math.isnan(shares["random"])
    assert shares["hessian"] == pytest.approx(smoke_an.sharp_gap / smoke_an.pair_gap)


# --- what notebook 03 shows -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "says"),
    [
        ({"hessian": 0.71, "dual_pca": 0.80, "random": 0.035}, "concentrates the gap more than"),
        ({"hessian": 0.71, "dual_pca": 0.69, "random": 0.035}, "about as much as"),
        ({"hessian": 0.90, "dual_pca": 0.50, "random": 0.03}, "beyond the dual weights"),
        ({"hessian": 0.06, "dual_pca": 0.50, "random": 0.03}, "no better than a random"),
        ({"hessian": 0.71, "dual_pca": float("nan"), "random": 0.03}, "no comparison"),
    ],
)
def test_control_takeaway_says_what_the_numbers_show(shares, says):
    from awbench.viz.run_takeaways import control_basis_takeaway

    text = control_basis_takeaway(shares, 10)
    assert says in text
    assert f"{100 * shares['hessian']:.3g} %" in text


def test_basis_share_curves_figure(smoke_an):
    from awbench.viz.decomposition_plots import basis_share_curves

    _, curves = cb.control_summary(smoke_an, k=10)
    fig = basis_share_curves(curves, 10)
    assert fig.layout.title.text and len(fig.data) == 3
    for trace, curve in zip(fig.data, curves.values()):
        assert trace.y[-1] == pytest.approx(1.0, abs=1e-12) and len(trace.x) == len(curve)


def test_report_shows_the_control_shares_with_notebook_03():
    from awbench.apps.report.claims import CLAIMS
    from awbench.experiments import record_names as rn

    records = {name: 0.5 for name in rn.EXPECTED["03_gap_decomposition"]}
    records |= {rn.TOP_SHARE_HESSIAN: 0.7097, rn.TOP_SHARE_DUAL_PCA: 0.8042}
    records |= {rn.TOP_SHARE_RANDOM: 0.0348, rn.CURVATURE: 2.965}
    text = " ".join(c.measured(records) for c in CLAIMS if c.notebook == "03_gap_decomposition")
    for shown in ("Hessian basis 71.0%", "(no Hessian) 80.4%", "random basis 3.5%", "2.96"):
        assert shown in text, shown
