"""Is the Hessian eigenbasis special? Control bases for the gap decomposition
(docs/science.md#3-the-gap-decomposition).

The identity <dl> = sum_n mu_g,n mu_w,n + c_n sigma_g,n sigma_w,n holds in every complete
orthonormal basis, so "the top k Hessian directions carry x % of the gap" means something only
next to what other bases give with the same ranking (by that basis's sigma_g). Two controls:

- ``dual_pca``: the principal axes of the dual weights, the eigenvectors of the covariance of
  dw_k over the pairs. It uses no Hessian at all, only the dual weights' own spread.
- ``random``: a Haar-random orthonormal basis (QR of a Gaussian matrix, signs fixed).

Both are built explicitly (P x P), so they are limited to ``CONTROL_MAX`` weights, the dense
Hessian's limit: above it, :func:`control_tables` raises ValueError. That is a deliberate
choice over a randomized SVD of the K x P dual weights: it keeps the control exact and on the
same footing as the dense Hessian basis it is compared with. It is a separate function, not
part of :func:`~awbench.analysis.decomposition.analyze`: the two P x P decompositions (an
eigh and a QR) cost more than the whole analysis on the paper preset (P = 900, 2 cores,
medians of 7: ``basis_shares`` 0.19 s against ``analyze`` 0.16 s).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from awbench.analysis.directions import direction_table
from awbench.analysis.eigenbasis import DENSE_HESSIAN_MAX
from awbench.analysis.memory import pair_block
from awbench.analysis.pair_gaps import PairGaps
from awbench.curvature.layer import row_chunks, symmetric_eigh

CONTROL_MAX = DENSE_HESSIAN_MAX  # weights: the controls are dense P x P like that Hessian
BASES = ("hessian", "dual_pca", "random")


def _check_size(n_weights: int, max_weights: int) -> None:
    if n_weights > max_weights:
        raise ValueError(
            f"the control bases are built as P x P matrices, limited to {max_weights} weights; "
            f"this layer has {n_weights}"
        )


def dual_weight_covariance(gaps: PairGaps) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, C): the mean dual weight (P,) and the population covariance of dw_k (P, P),
    accumulated over blocks of pairs (never a K x P matrix)."""
    K, P = len(gaps.u), gaps.n_weights
    mean = ((gaps.u.T @ gaps.b) / K).reshape(P)
    C = torch.zeros(P, P, dtype=gaps.u.dtype, device=gaps.u.device)
    for rows in row_chunks(K, pair_block(P)):
        x = torch.einsum("ko,ki->koi", gaps.u[rows], gaps.b[rows]).reshape(-1, P) - mean
        C += x.T @ x
    return mean, C / K


def dual_pca_basis(
    gaps: PairGaps, max_weights: int = CONTROL_MAX
) -> tuple[torch.Tensor, torch.Tensor]:
    """(variance, V): the principal axes of the dual weights as a complete orthonormal basis
    (columns of V, P x P, by decreasing variance), and the variance of dw_k along each.

    With fewer pairs than weights the covariance has a null space (variance 0) in which any
    basis is an eigenbasis; it is made canonical by one axis along the mean dual weight's part
    in it (a Householder reflection), so that every other null axis carries exactly nothing."""
    _check_size(gaps.n_weights, max_weights)
    mean, C = dual_weight_covariance(gaps)
    var, V = symmetric_eigh(C)
    var, V = var.flip(0).numpy(), V.flip(1).numpy()
    null = var <= max(var[0], 0.0) * max(C.shape[0], len(gaps.u)) * np.finfo(float).eps
    if null.sum() > 1:
        N = V[:, null]
        m = N.T @ mean.cpu().numpy()
        norm = float(np.linalg.norm(m))
        if norm > 0:
            w = m / norm
            w[0] += math.copysign(1.0, w[0])  # reflect m onto -+e_1, the stable sign
            V[:, null] = N - 2.0 * np.outer(N @ w, w) / float(w @ w)
        var[null] = 0.0
    return torch.from_numpy(var), torch.from_numpy(V).to(gaps.u.device)


def random_basis(
    n_weights: int, seed: int = 0, device=None, max_weights: int = CONTROL_MAX
) -> torch.Tensor:
    """(P, P) Haar-random orthonormal basis: QR of a Gaussian matrix, R's diagonal made
    positive (without that sign fix QR's output is not uniformly distributed)."""
    _check_size(n_weights, max_weights)
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n_weights, n_weights, generator=g, dtype=torch.float64))
    return (Q * torch.sign(torch.diagonal(R))).to(device)


def basis_table(gaps: PairGaps, V: torch.Tensor, lam=None) -> pd.DataFrame:
    """The direction table (as ``Analysis.directions``) of the pairs in the basis V (P, m)."""
    theta = gaps.coordinates(V)
    lam = np.full(V.shape[1], np.nan) if lam is None else lam
    return direction_table(theta, gaps.secant_scale[:, None] * theta, lam)


def gaps_of(an) -> PairGaps:
    """The pairs of an :class:`~awbench.analysis.decomposition.Analysis` as PairGaps."""
    return PairGaps(
        an.dual_u,
        an.dual_a,
        dl=torch.as_tensor(an.pair_gaps, dtype=torch.float64),
        secant_scale=an.secant_scale,
    )


def control_tables(an, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Direction tables in the three bases: ``hessian`` (``an.directions``), ``dual_pca``
    (lam holds the variance of dw along each axis) and ``random`` (lam NaN); each ranked by
    its own sigma_g, so ``contribution`` sums to ``an.pair_gap`` in each complete basis."""
    gaps = gaps_of(an)
    var, V_pca = dual_pca_basis(gaps)
    return {
        "hessian": an.directions,
        "dual_pca": basis_table(gaps, V_pca, var),
        "random": basis_table(gaps, random_basis(gaps.n_weights, seed, gaps.u.device)),
    }


def share_curves(tables: dict[str, pd.DataFrame], pair_gap: float) -> dict[str, np.ndarray]:
    """Cumulative share of the pair gap over the top-k directions, k = 1..m, per basis."""
    return {
        name: np.cumsum(d.sort_values("rank")["contribution"].to_numpy()) / pair_gap
        for name, d in tables.items()
    }


def top_share(directions: pd.DataFrame, pair_gap: float, k: int) -> float:
    """Share of the pair gap in the k directions of largest sigma_g (compensated sum)."""
    top = directions.sort_values("rank")["contribution"].to_numpy()[:k]
    return math.fsum(top.tolist()) / pair_gap if pair_gap else float("nan")


def basis_shares(an, k: int = 10, seed: int = 0) -> dict[str, float]:
    """Top-k share of the pair gap in the Hessian basis, the dual weights' principal axes and
    a random orthonormal basis: ``{"hessian": ..., "dual_pca": ..., "random": ...}``."""
    tables = control_tables(an, seed)
    return {name: top_share(d, an.pair_gap, k) for name, d in tables.items()}


def control_summary(
    an, k: int = 10, seed: int = 0, max_weights: int = CONTROL_MAX
) -> tuple[dict[str, float], dict]:
    """(top-k shares, share curves) for a notebook: as :func:`basis_shares` and
    :func:`share_curves`, but above ``max_weights`` the controls are NaN and only the
    Hessian's curve is drawn, instead of an error."""
    if an.n_weights > max_weights:
        tables = {"hessian": an.directions}
    else:
        tables = control_tables(an, seed)
    shares = {
        b: top_share(tables[b], an.pair_gap, k) if b in tables else float("nan") for b in BASES
    }
    return shares, share_curves(tables, an.pair_gap)
