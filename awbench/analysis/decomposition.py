"""Split the generalization gap into per-eigen-direction sharpness x size terms (docs/science.md#3-the-gap-decomposition).

For pairs k (test sample x'_k, training partner x_k): dual weight dw_k, exact gap
dl_k = l(x'_k, W) - l(x_k, W), secant gradient g_k = dl_k dw_k / |dw_k|^2. Projected on an
orthonormal basis v_n (the training Hessian's eigenvectors), population statistics give the
exact identity  <dl> = sum_n mu_g,n mu_w,n + c_n sigma_g,n sigma_w,n.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import scipy.sparse.linalg as sla
import torch
import torch.nn.functional as F
from torch import nn

from awbench.analysis.duality import (
    augment,
    dual_weights,
    eval_mode,
    layer_inputs,
    layer_matrix,
    pair_samples,
    per_sample_weights,
)
from awbench.curvature.hessian import (
    _layer,
    layer_hessian,
    output_as_leaf,
    output_hessians,
    symmetric_eigh,
)

# Above this many weights the dense Hessian (P^2 entries, P^3 eigh) gives way to Lanczos top-k
# plus one orthogonal-complement direction.
DENSE_HESSIAN_MAX = 6000
LANCZOS_K = 100

DIRECTION_COLUMNS = ["rank", "lam", "mu_w", "sigma_w", "mu_g", "sigma_g", "c", "contribution"]


@dataclass
class Analysis:
    """Everything the decomposition of one trained network at one layer yields.

    Gaps are in nats (cross-entropy). ``contribution`` of a direction is its full term
    mu_g mu_w + c sigma_g sigma_w, so ``sharp_gap + flat_gap == pair_gap`` exactly;
    ``estimated_gap`` is the paper's approximation sum_n c_n sigma_g,n sigma_w,n.
    """

    layer: str
    pairing: str
    real_gap: float  # test CE (test set) minus train CE (clean training set)
    pair_gap: float  # <dl>, mean exact per-pair gap
    estimated_gap: float  # sum c sigma_g sigma_w
    mean_term: float  # sum mu_g mu_w
    identity_error: float  # |<dl> - sum (mu_g mu_w + c sigma_g sigma_w)|
    duality_error: float  # max_k |l(x_k, W + dw_k) - l(x'_k, W)|
    sharp_gap: float  # contributions of the n_sharp directions with largest sigma_g
    flat_gap: float  # contributions of all other directions
    first_order_term: float  # <grad l_k . dw_k>
    second_order_term: float  # 1/2 sum lam (sigma_w^2 + mu_w^2)
    second_order_gap: float  # first + second order
    second_order_error: float  # |second_order_gap - pair_gap|
    sharpness: float  # sum sigma_g^2
    size: float  # sum sigma_w^2
    weight_norm: float  # Frobenius norm of the layer's weight
    lam_max: float
    test_error: float
    train_loss: float
    test_loss: float
    n_pairs: int
    n_excluded: int  # pairs dropped: zero training activity, or no same-class partner
    n_weights: int
    hessian_method: str  # "dense" or "lanczos+complement"
    directions: pd.DataFrame = field(repr=False)
    pairs_test: np.ndarray = field(repr=False)
    pairs_train: np.ndarray = field(repr=False)
    pair_gaps: np.ndarray = field(repr=False)  # dl_k
    dual: torch.Tensor = field(repr=False)  # (K, n_out, n_in[+1]) dual weights
    secant: torch.Tensor = field(repr=False)  # (K, n_out, n_in[+1]) secant gradients
    eigenvectors: torch.Tensor = field(
        repr=False
    )  # (P, m): column j is the direction with eigen_index j

    def scalars(self) -> dict:
        """The scalar fields as a flat dict (for stores, records and tables)."""
        skip = {
            "directions",
            "pairs_test",
            "pairs_train",
            "pair_gaps",
            "dual",
            "secant",
            "eigenvectors",
        }
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def direction_statistics(theta: torch.Tensor, gamma: torch.Tensor) -> dict[str, np.ndarray]:
    """Population mean, std (ddof 0) and Pearson correlation per column (c = 0 if undefined)."""
    mu_w, mu_g = theta.mean(0), gamma.mean(0)
    dw, dg = theta - mu_w, gamma - mu_g
    sigma_w = dw.pow(2).mean(0).sqrt()
    sigma_g = dg.pow(2).mean(0).sqrt()
    cov = (dw * dg).mean(0)
    denom = sigma_w * sigma_g
    c = torch.where(
        denom > 0,
        cov / torch.where(denom > 0, denom, torch.ones_like(denom)),
        torch.zeros_like(denom),
    )
    return {
        k: v.numpy()
        for k, v in {
            "mu_w": mu_w,
            "sigma_w": sigma_w,
            "mu_g": mu_g,
            "sigma_g": sigma_g,
            "c": c,
        }.items()
    }


def _pair_losses(model, layer, x_train, x_test, y, delta):
    with torch.no_grad(), eval_mode(model):
        base = F.cross_entropy(model(x_train), y, reduction="none")
        direct = F.cross_entropy(model(x_test), y, reduction="none")
        with per_sample_weights(model, layer, delta):
            dual = F.cross_entropy(model(x_train), y, reduction="none")
    return base, direct, dual


def _lanczos_basis(model, layer, x, y, with_bias, k):
    """Top-k eigenpairs of the layer Hessian from the closed-form product H v."""
    with eval_mode(model):
        G, a = output_hessians(model, layer, x, y)
    if with_bias:
        a = augment(a)
    n, n_out, n_in = len(a), G.shape[1], a.shape[1]

    def matvec(v):
        V = torch.from_numpy(np.asarray(v, dtype=np.float64).reshape(n_out, n_in))
        u = a @ V.T  # (N, n_out)
        w = torch.einsum("kio,ko->ki", G, u)
        return ((w.T @ a) / n).reshape(-1).numpy()

    op = sla.LinearOperator((n_out * n_in, n_out * n_in), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n_out * n_in)
    lam, vecs = sla.eigsh(op, k=min(k, n_out * n_in - 1), which="LA", v0=v0, tol=1e-10)
    return torch.from_numpy(lam), torch.from_numpy(vecs)


def analyze(
    run,
    layer: str | None = None,
    pairing: str | None = None,
    n_sharp: int | None = None,
    dense_max: int = DENSE_HESSIAN_MAX,
    lanczos_k: int = LANCZOS_K,
    basis: torch.Tensor | None = None,
) -> Analysis:
    """Decompose ``run``'s generalization gap at ``layer`` (defaults from ``run.config``).

    Everything is computed in float64 on a copy of the model in eval mode. ``basis`` (P, m)
    with orthonormal columns replaces the Hessian eigenbasis (the identity holds for any
    complete orthonormal basis; the complement direction covers an incomplete one).
    """
    cfg = run.config
    layer = layer or cfg.layer
    pairing = pairing or cfg.pairing
    n_sharp = cfg.n_sharp if n_sharp is None else n_sharp
    model: nn.Module = copy.deepcopy(run.model).double().eval()
    module = _layer(model, layer)
    data = run.data
    x_train, y_train = data.x_train.double(), data.y_train
    x_test, y_test = data.x_test.double(), data.y_test
    clean = data.clean
    with_bias = module.bias is not None

    # Pairs: the demo's rule pairs in raw input space; "feature" pairs at the analysed layer.
    if pairing == "feature":
        qa, ra = layer_inputs(model, layer, x_test), layer_inputs(model, layer, x_train)
        pairs = pair_samples(qa, y_test, ra, y_train, clean, method="input", seed=cfg.seed)
    else:
        method = "knn" if pairing == "knn" else ("random" if pairing == "random" else "input")
        pairs = pair_samples(
            x_test, y_test, x_train, y_train, clean, method, cfg.pairing_k, cfg.seed
        )
    a_tr = layer_inputs(model, layer, x_train[pairs.train])
    a_te = layer_inputs(model, layer, x_test[pairs.test])
    if with_bias:
        a_tr, a_te = augment(a_tr), augment(a_te)
    nonzero = (a_tr * a_tr).sum(1) > 0
    n_excluded = int(len(pairs.unpaired) + (~nonzero).sum())
    keep = nonzero.numpy()
    test_idx, train_idx = pairs.test[keep], pairs.train[keep]
    a_tr, a_te = a_tr[nonzero], a_te[nonzero]
    if len(test_idx) == 0:
        raise ValueError(
            f"no test sample could be paired at layer={layer!r}: every candidate pair has a zero "
            "training activity or no clean same-class training sample"
        )
    W = layer_matrix(module)
    dW = dual_weights(W, a_tr, a_te)
    K = len(test_idx)
    dw = dW.reshape(K, -1)
    y_pair = y_test[test_idx]
    base, direct, dual = _pair_losses(
        model, layer, x_train[train_idx], x_test[test_idx], y_pair, dW
    )
    dl = direct - base
    duality_error = float((dual - direct).abs().max())

    dw_sq = (dw * dw).sum(1)
    safe = torch.where(dw_sq > 0, dw_sq, torch.ones_like(dw_sq))
    # g_k is a multiple of dw_k, so its projections are those of dw_k rescaled (one GEMM, not two).
    secant_scale = torch.where(dw_sq > 0, dl / safe, torch.zeros_like(dl))
    g = secant_scale[:, None] * dw

    # Basis: dense eigh of the layer Hessian, or Lanczos top-k plus the complement direction.
    P = dw.shape[1]
    x_clean, y_clean = x_train[clean], y_train[clean]
    if basis is not None:
        lam = torch.full((basis.shape[1],), float("nan"), dtype=torch.float64)
        V, method = basis.double(), "given"
    elif P <= dense_max:
        H = layer_hessian(model, layer, x_clean, y_clean, with_bias=with_bias)
        lam, V = symmetric_eigh(H)
        method = "dense"
    else:
        lam, V = _lanczos_basis(model, layer, x_clean, y_clean, with_bias, lanczos_k)
        method = "lanczos+complement"
    theta = dw @ V
    gamma = secant_scale[:, None] * theta
    if V.shape[1] < P:
        r_w, r_g = dw - theta @ V.T, g - gamma @ V.T
        r_norm = r_w.norm(dim=1)
        # One scalar direction per pair carries what the basis misses: theta_c * gamma_c
        # equals r_w . r_g exactly, so the identity stays exact.
        theta_c = r_norm
        gamma_c = torch.where(
            r_norm > 0, (r_w * r_g).sum(1) / torch.where(r_norm > 0, r_norm, 1.0), 0.0
        )
        theta = torch.cat([theta, theta_c[:, None]], 1)
        gamma = torch.cat([gamma, gamma_c[:, None]], 1)
        lam = torch.cat([lam, torch.tensor([float("nan")], dtype=torch.float64)])
    stats = direction_statistics(theta, gamma)
    corr_term = stats["c"] * stats["sigma_g"] * stats["sigma_w"]
    contribution = stats["mu_g"] * stats["mu_w"] + corr_term
    directions = pd.DataFrame({"lam": lam.numpy(), **stats, "contribution": contribution})
    directions["eigen_index"] = np.arange(len(directions))
    order = np.argsort(-directions["sigma_g"].to_numpy(), kind="stable")
    directions = directions.iloc[order].reset_index(drop=True)
    directions.insert(0, "rank", np.arange(len(directions)))
    mean_dl = float(dl.mean())
    # Sum the identity with compensated (fsum) accumulation so its error is rounding only.
    identity_sum = float(math.fsum(contribution))
    sharp = float(math.fsum(directions["contribution"].to_numpy()[:n_sharp]))

    # Second-order reading: <grad l_k . dw_k> + 1/2 sum_n lam_n (sigma_w^2 + mu_w^2).
    # Gradient of l_k w.r.t. W is (dl/dz)_k a_k^T, dl/dz obtained by backprop to the layer output.
    dz = _output_grads(model, layer, x_train[train_idx], y_pair)
    first_order = float(torch.einsum("ko,koi,ki->k", dz, dW, a_tr).mean())
    if method == "given":
        second_order = float("nan")
    else:
        lam_np = np.nan_to_num(lam.numpy()[: V.shape[1]], nan=0.0)
        s = directions.sort_values("eigen_index")
        second_order = 0.5 * float(
            math.fsum(
                lam_np
                * (
                    s["sigma_w"].to_numpy()[: V.shape[1]] ** 2
                    + s["mu_w"].to_numpy()[: V.shape[1]] ** 2
                )
            )
        )

    with torch.no_grad(), eval_mode(model):
        test_logits = model(x_test)
        test_loss = float(F.cross_entropy(test_logits, y_test))
        train_loss = float(F.cross_entropy(model(x_clean), y_clean))
        test_error = float((test_logits.argmax(1) != y_test).double().mean())
    sigma_w, sigma_g = directions["sigma_w"].to_numpy(), directions["sigma_g"].to_numpy()
    return Analysis(
        layer=layer,
        pairing=pairing,
        real_gap=test_loss - train_loss,
        pair_gap=mean_dl,
        estimated_gap=float(math.fsum(corr_term)),
        mean_term=float(math.fsum(stats["mu_g"] * stats["mu_w"])),
        identity_error=abs(mean_dl - identity_sum),
        duality_error=duality_error,
        sharp_gap=sharp,
        flat_gap=identity_sum - sharp,
        first_order_term=first_order,
        second_order_term=second_order,
        second_order_gap=first_order + second_order,
        second_order_error=abs(first_order + second_order - mean_dl),
        sharpness=float(math.fsum(sigma_g**2)),
        size=float(math.fsum(sigma_w**2)),
        weight_norm=float(module.weight.detach().norm()),
        lam_max=float(np.nanmax(lam.numpy())) if method != "given" else float("nan"),
        test_error=test_error,
        train_loss=train_loss,
        test_loss=test_loss,
        n_pairs=K,
        n_excluded=n_excluded,
        n_weights=P,
        hessian_method=method,
        directions=directions,
        pairs_test=test_idx,
        pairs_train=train_idx,
        pair_gaps=dl.numpy(),
        dual=dW,
        secant=g.reshape(dW.shape),
        eigenvectors=V,
    )


def _output_grads(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample dl_k/dz_k at ``layer``'s output (eval mode), shape (K, n_out)."""
    with output_as_leaf(model, layer) as captured, eval_mode(model), torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, captured["z"])
    return grad


def spearman(x: Iterable[float], y: Iterable[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN for fewer than 3 points."""
    x, y = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return float("nan")
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def curved_directions(directions: pd.DataFrame, rel_floor: float = 1e-12) -> pd.DataFrame:
    """Directions with λ above ``rel_floor`` × λ_max (the rest are numerically flat: dead
    units and the null space give λ ~ 1e-16) and nonzero σw, σg."""
    lam_max = float(directions["lam"].max())
    keep = (
        (directions["lam"] > rel_floor * lam_max)
        & (directions["sigma_w"] > 0)
        & (directions["sigma_g"] > 0)
    )
    return directions[keep]


def spearman_sigma_g(an) -> float:
    """Spearman ρ of σg against λ over the curved directions."""
    d = curved_directions(an.directions)
    return spearman(d["lam"], d["sigma_g"])


def spearman_ratio(an) -> float:
    """Spearman ρ of σg/σw against λ over the curved directions."""
    d = curved_directions(an.directions)
    return spearman(d["lam"], d["sigma_g"] / d["sigma_w"])
