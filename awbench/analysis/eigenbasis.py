"""The basis the gap is decomposed in: a given one, the dense layer Hessian's eigenvectors,
or its top eigenpairs by Lanczos (docs/science.md#3-the-gap-decomposition).

The route: up to ``DENSE_HESSIAN_MAX`` weights the layer Hessian is built (Kronecker
structure, awbench/curvature/layer.py) and fully diagonalised; above it ARPACK finds the top
``lanczos_k`` eigenpairs from structured products ``H v`` that run only the layers after the
analysed one (awbench/curvature/layer_operator.py), through the eigensolver module's entry
point, and the rest is one number, ``complement_gap``.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import scipy.sparse.linalg as sla
import torch

from awbench.analysis.resolved import ResolvedLayer, Routes
from awbench.curvature.eigensolvers import operator_eigenpairs
from awbench.curvature.flat import model_mode
from awbench.curvature.layer import layer_hessian, symmetric_eigh
from awbench.curvature.layer_operator import LayerHessianProducts
from awbench.progress import progress

# The one threshold between the routes, in weights P of the analysed layer. The dense route
# costs the P x P Hessian (8 P^2 bytes: 288 MB at 6000) and its eigendecomposition (~P^3:
# about a minute at 6000 on two cores); Lanczos costs about 2.5 k products H v, each a pass
# through the layers downstream of the analysed one. Up to 6000 the dense route is exact in
# every direction at an acceptable cost; above it the cubic term dominates.
DENSE_HESSIAN_MAX = 6000
LANCZOS_K = 100
# ARPACK's residual tolerance on the Lanczos route (relative to the largest eigenvalue).
LANCZOS_TOL = 1e-10


def lanczos_basis(target: ResolvedLayer, x, y, k):
    """Top-k eigenpairs of the layer Hessian from structured products H v (no G_k, no H),
    by the eigensolver module's ARPACK entry point: pairs ARPACK does not deliver are
    dropped (the complement covers them), with a warning."""
    with model_mode(target.model, "eval"):
        products = LayerHessianProducts(
            target.model, target.module, x, y, target.with_bias, target.loss
        )
    n = products.size
    # ARPACK decides how many products it needs; the total is an estimate, measured at about
    # 2.5 k for k = 100 (253 at 40,000 weights) and 42 for k = 10 (its basis of 2 k + 1 twice).
    expected = max(40, round(2.5 * min(k, n - 1)))
    bar = progress(itertools.count(), total=expected, desc=f"{target.label}: Lanczos, H v products")
    count = iter(bar)

    def matvec(v):
        next(count)
        v = torch.from_numpy(np.asarray(v, dtype=np.float64).reshape(-1)).to(x.device)
        return products.matvec(v).cpu().numpy()

    op = sla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    try:
        found = operator_eigenpairs(
            op, min(k, n - 2), "LA", method="arpack", tol=LANCZOS_TOL, seed=0, residuals=False
        )
    finally:
        getattr(bar, "close", lambda: None)()
    delivered = torch.isfinite(found.values)
    if not bool(delivered.all()):
        warnings.warn(
            f"layer={target.label!r}: ARPACK delivered {int(delivered.sum())} of "
            f"{len(delivered)} eigenpairs; the missing directions are in complement_gap",
            stacklevel=4,
        )
    # Ascending and row-major (P, k), as eigsh gives them: the projections' GEMM then runs
    # the same kernel on the same layout, so results do not move by an ulp with the route.
    return found.values[delivered].flip(0), found.vectors[delivered].flip(0).T.contiguous()


def eigenbasis(target: ResolvedLayer, x, y, routes: Routes):
    """(lam, V, method): the given basis, a dense eigh of the layer Hessian, or Lanczos top-k;
    lam on the CPU, V on the samples' device."""
    if routes.basis is not None:
        lam = torch.full((routes.basis.shape[1],), float("nan"), dtype=torch.float64)
        return lam, routes.basis.to(x.device), "given"
    if target.n_weights <= routes.dense_max:
        H = layer_hessian(
            target.model, target.module, x, y, with_bias=target.with_bias, loss=target.loss
        )
        lam, V = symmetric_eigh(H)
        return lam, V.to(x.device), "dense"
    lam, V = lanczos_basis(target, x, y, routes.lanczos_k)
    return lam, V.to(x.device), "lanczos+complement"
