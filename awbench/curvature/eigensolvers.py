"""Extreme eigenpairs of a curvature operator: dense eigh, thick-restart Lanczos or ARPACK."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import nn

from awbench.curvature.layer import symmetric_eigh
from awbench.curvature.operators import CurvatureOperator, HessianOperator

# Up to this many parameters top_eigenpairs(method="auto") builds the dense Hessian (exact to
# rounding: Kronecker-factored layer blocks for a ReLU MLP, else P products in batched blocks)
# and calls eigh, which returns every pair exactly, ties included; above it, thick-restart
# Lanczos over the operator. At P = 2048 the matrix takes 32 MiB and eigh about a second;
# Lanczos for a top-10 to 1e-12 typically takes 40-150 products.
DENSE_MAX_PARAMS = 2048


WHICH = ("LA", "SA", "LM")


class Eigenpairs(NamedTuple):
    """``values`` (k,), ``vectors`` (k, P) unit rows, ``residuals`` ||H v - lam v|| (k,),
    ``converged`` (k,) bool. Ordered from the most extreme per ``which``: LA descending, SA
    ascending, LM by descending |lam|. float64 torch tensors on CPU."""

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    converged: torch.Tensor


def _order(values: np.ndarray, which: str) -> np.ndarray:
    if which == "LA":
        return np.argsort(-values, kind="stable")
    if which == "SA":
        return np.argsort(values, kind="stable")
    return np.argsort(-np.abs(values), kind="stable")


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Make the largest-magnitude entry of each row positive (a deterministic sign)."""
    idx = np.argmax(np.abs(vectors), axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), idx])
    signs[signs == 0] = 1.0
    return vectors * signs[:, None]


def small_eigh(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """eigh of a small symmetric matrix through torch (numpy's threaded LAPACK stalls on
    busy machines for matrices this small)."""
    vals, vecs = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(T)))
    return vals.numpy(), vecs.numpy()


def _gaps(values: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Distance from each value to the nearest *other* entry of ``others`` (inf if none)."""
    d = np.abs(values[:, None] - others[None, :])
    d[d == 0] = np.inf  # the value itself (an exact duplicate is treated like itself)
    return d.min(axis=1) if d.shape[1] else np.full(len(values), np.inf)


def _converged(values, residuals, gaps, tol, scale):
    """Eigenvalue accuracy test: r <= sqrt(tol) |theta| and min(r, r^2/gap) <= tol |theta|.

    min(r, r^2/gap) bounds |theta - lambda| (Bauer-Fike; Kato-Temple with the gap to the rest
    of the spectrum, here estimated by the nearest other computed value). The first condition
    keeps an overestimated gap from passing a poor pair.
    """
    ref = np.maximum(np.abs(values), 1e-14 * scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.minimum(residuals, residuals**2 / np.maximum(gaps, residuals))
    return (residuals <= np.sqrt(tol) * ref) & (bound <= tol * ref)


def _select(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    return _order(theta, which)[:k]


def _krylov_schur(op, k, which, tol, ncv, max_restarts, seed):
    """Thick-restart (Krylov-Schur) Lanczos with full re-orthogonalisation.

    Keeps the basis V and the products HV, so the projected matrix V^T H V and the Ritz
    residuals ||H y - theta y|| are computed exactly at no extra product. Stops when every
    wanted Ritz value's error bound min(r, r^2/gap) is <= tol * |theta| (gap: distance to the
    nearest other Ritz value). On a full basis it restarts from the best k + (ncv - k) // 2
    Ritz vectors plus the Lanczos continuation vector.
    """
    P = op.shape[0]
    dtype, device = op.flat.dtype, op.flat.device
    rng = np.random.default_rng(seed)
    V = torch.zeros(P, ncv, dtype=dtype, device=device)
    HV = torch.zeros(P, ncv, dtype=dtype, device=device)
    T = np.zeros((ncv, ncv))

    def orthogonalise(w, nb):
        for _ in range(2):
            w = w - V[:, :nb] @ (V[:, :nb].T @ w)
        return w

    def new_direction(nb):
        for _ in range(5):
            w = orthogonalise(torch.from_numpy(rng.standard_normal(P)).to(device, dtype), nb)
            if w.norm() > 1e-8:
                return w / w.norm()
        raise RuntimeError("could not extend the Krylov basis")

    v = torch.from_numpy(rng.standard_normal(P)).to(device, dtype)
    V[:, 0] = v / v.norm()
    basis, m, restarts, scale = 1, 0, 0, 0.0
    theta = S = None
    while True:
        HV[:, m] = op.apply(V[:, m])
        col = (V[:, : m + 1].T @ HV[:, m]).cpu().numpy()
        T[: m + 1, m] = col
        T[m, : m + 1] = col
        m += 1
        theta, S = small_eigh(T[:m, :m])
        scale = max(scale, float(np.abs(theta).max()))
        if m >= k:
            want = _select(theta, k, which)
            Sw = torch.from_numpy(S[:, want]).to(device, dtype)
            R = HV[:, :m] @ Sw - (V[:, :m] @ Sw) * torch.from_numpy(theta[want]).to(device, dtype)
            res = R.norm(dim=0).cpu().numpy()
            if np.all(_converged(theta[want], res, _gaps(theta[want], theta), tol, scale)):
                break
        if m < basis:
            continue
        w = orthogonalise(HV[:, m - 1].clone(), basis)
        beta = float(w.norm())
        if basis < ncv:  # extend the basis
            if beta <= 1e-12 * max(
                scale, 1e-300
            ):  # invariant subspace: exact pairs, look elsewhere
                V[:, basis] = new_direction(basis)
            else:
                V[:, basis] = w / beta
            basis += 1
            continue
        if restarts >= max_restarts:
            break
        restarts += 1  # thick restart
        keep = _select(theta, min(m - 1, k + (ncv - k) // 2), which)
        Sk = torch.from_numpy(S[:, keep]).to(device, dtype)
        nk = len(keep)
        V[:, :nk], HV[:, :nk] = V[:, :m] @ Sk, HV[:, :m] @ Sk
        T[:] = 0.0
        T[np.arange(nk), np.arange(nk)] = theta[keep]
        V[:, nk:] = 0.0
        HV[:, nk:] = 0.0
        V[:, nk] = (w / beta) if beta > 1e-12 * max(scale, 1e-300) else new_direction(nk)
        V[:, nk] = orthogonalise(V[:, nk], nk)
        V[:, nk] /= V[:, nk].norm()
        basis, m = nk + 1, nk
        # the kept Ritz vectors already have products: resume the loop at the new vector
    want = _select(theta, k, which)
    Y = (V[:, :m] @ torch.from_numpy(S[:, want]).to(device, dtype)).cpu().numpy().T
    return theta[want], Y, res, _gaps(theta[want], theta), scale


def operator_eigenpairs(
    op: CurvatureOperator,
    k: int,
    which: str = "LA",
    *,
    method: str = "auto",
    tol: float = 1e-12,
    ncv: int | None = None,
    maxiter: int | None = None,
    seed: int = 0,
    residuals: bool = True,
) -> Eigenpairs:
    """k eigenpairs of a symmetric operator: dense eigh, thick-restart Lanczos or ARPACK.

    method
        "auto": "dense" when P <= DENSE_MAX_PARAMS (or k >= P - 1), else "lanczos".
        "dense": the dense matrix (``op.dense()``) and :func:`symmetric_eigh`.
        "lanczos": thick-restart (Krylov-Schur) Lanczos with full re-orthogonalisation from a
        seeded Gaussian start; ``ncv`` basis vectors (default max(3k + 10, 50), at most P),
        at most ``maxiter`` restarts (default 100). Residuals come free from the stored
        products; it stops when every wanted pair passes the convergence test below, so
        ``tol`` is the relative accuracy asked of the eigenvalues.
        "arpack": scipy's eigsh (implicitly restarted Lanczos) over the operator with the
        same v0, ``ncv`` (default max(2k + 1, 20)), ``maxiter`` and ARPACK's own ``tol`` on
        the residual (0: machine precision); the residuals are then recomputed with k extra
        products (``residuals=False`` skips them: residuals NaN, and a pair counts as
        converged when ARPACK delivered it, by its own test). If ARPACK stops early
        (ArpackNoConvergence) the pairs it delivered are kept and the missing ones are NaN.
    ``converged`` flags pairs with r <= sqrt(tol) |lam| and min(r, r^2/gap) <= tol |lam|, where
    r = ||H v - lam v|| and gap is the distance to the nearest other computed eigenvalue (the
    Lanczos Ritz values; for ARPACK, the k returned values, with tol at least 1e-12), so the
    eigenvalue error is about tol |lam| and the vector's angle error at most r / gap. Every
    dense pair is converged. Like any single-vector Krylov method, Lanczos finds one copy of
    an exactly repeated eigenvalue only through rounding; use method="dense" for such cases.
    """
    if which not in WHICH:
        raise ValueError(f"which={which!r} is not allowed: expected one of {', '.join(WHICH)}")
    P = op.shape[0]
    k = int(k)
    if not 1 <= k <= P:
        raise ValueError(f"k={k} is not allowed: expected 1 <= k <= {P} (the number of parameters)")
    if method not in ("auto", "dense", "lanczos", "arpack"):
        raise ValueError(
            f"method={method!r} is not allowed: expected 'auto', 'dense', 'lanczos' or 'arpack'"
        )
    if tol < 0:
        raise ValueError(f"tol={tol} is not allowed: expected >= 0")
    if method == "auto":
        method = "dense" if P <= DENSE_MAX_PARAMS or k >= P - 1 else "lanczos"
    if method in ("lanczos", "arpack") and k >= P - 1:
        raise ValueError(f"method={method!r} needs k < P - 1 = {P - 1}; use method='dense'")

    if method == "dense":
        found = _dense_eigenpairs(op, k, which)
    elif method == "lanczos":
        found = _lanczos_eigenpairs(op, k, which, tol, ncv, maxiter, seed)
    else:
        found = _arpack_eigenpairs(op, k, which, tol, ncv, maxiter, seed, residuals)
    values, vectors, residuals, converged = found
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    return Eigenpairs(t(values), t(vectors), t(residuals), t(np.asarray(converged, dtype=bool)))


def _dense_eigenpairs(op, k, which):
    H = op.dense().cpu().double()
    vals, vecs = symmetric_eigh(H)
    idx = _order(vals.numpy(), which)[:k]
    values, vectors = vals.numpy()[idx], _fix_signs(vecs.numpy().T[idx])
    Y = torch.from_numpy(np.ascontiguousarray(vectors.T))
    residuals = (H @ Y - Y * torch.from_numpy(values)).norm(dim=0).numpy()
    return values, vectors, residuals, np.ones(k, dtype=bool)


def _lanczos_eigenpairs(op, k, which, tol, ncv, maxiter, seed):
    P = op.shape[0]
    ncv = min(P, max(3 * k + 10, 50)) if ncv is None else int(ncv)
    if not k < ncv <= P:
        raise ValueError(f"ncv={ncv} is not allowed: expected k < ncv <= P ({k} < ncv <= {P})")
    values, vectors, residuals, gaps, scale = _krylov_schur(
        op, k, which, tol, ncv, 100 if maxiter is None else int(maxiter), seed
    )
    converged = _converged(values, residuals, gaps, tol, scale)
    return values, _fix_signs(vectors), residuals, converged


def _arpack_eigenpairs(op, k, which, tol, ncv, maxiter, seed, with_residuals=True):
    P = op.shape[0]
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(P)
    ncv = min(P, max(2 * k + 1, 20)) if ncv is None else int(ncv)
    try:
        vals, vecs = sla.eigsh(op, k=k, which=which, v0=v0, ncv=ncv, tol=tol, maxiter=maxiter)
    except sla.ArpackNoConvergence as err:
        vals, vecs = err.eigenvalues, err.eigenvectors
    vals = np.asarray(vals, dtype=np.float64)
    vecs = np.asarray(vecs, dtype=np.float64).T.reshape(len(vals), P)
    idx = _order(vals, which)
    values, vectors = vals[idx], (_fix_signs(vecs[idx]) if len(vals) else vecs)
    if with_residuals:  # eigsh returns no residuals, so k more products give them.
        R = op.matmat(vectors.T) - vectors.T * values if len(values) else np.zeros((P, 0))
        residuals = np.linalg.norm(R, axis=0)
        scale = float(np.abs(values).max()) if len(values) else 0.0
        converged = _converged(values, residuals, _gaps(values, values), max(tol, 1e-12), scale)
    else:
        residuals, converged = np.full(len(values), np.nan), np.ones(len(values), dtype=bool)
    if len(values) < k:  # pad what ARPACK did not deliver
        pad = k - len(values)
        values = np.concatenate([values, np.full(pad, np.nan)])
        vectors = np.concatenate([vectors, np.zeros((pad, P))])
        residuals = np.concatenate([residuals, np.full(pad, np.nan)])
        converged = np.concatenate([converged, np.zeros(pad, dtype=bool)])
    return values, vectors, residuals, converged


def top_eigenpairs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int,
    params=None,
    which: str = "LA",
    *,
    mode: str = "eval",
    method: str = "auto",
    tol: float = 1e-12,
    ncv: int | None = None,
    maxiter: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    loss="cross_entropy",
    check: str = "raise",
) -> Eigenpairs:
    """k extreme eigenpairs of the full-batch Hessian of the mean loss over (x, y).

    ``which``: "LA" largest algebraic (default; values descending), "SA" smallest algebraic,
    "LM" largest magnitude. ``params`` picks the parameters (all by default); vectors are rows
    over them in ``model.named_parameters()`` order (see :class:`FlatModel`). Dense eigh when
    there are at most DENSE_MAX_PARAMS parameters (``method="auto"``), else thick-restart
    Lanczos seeded by ``seed`` (``method="arpack"``: scipy's eigsh over the same operator).
    ``tol`` is the relative accuracy asked of the eigenvalues. See :class:`HessianOperator`
    for mode, dtype, chunking and checks, and :func:`operator_eigenpairs` for the methods,
    ncv, maxiter and the convergence flags.

    Example::

        eig = aw.top_eigenpairs(run.model, run.data.x_clean, run.data.y_clean, k=10)
        eig.values, eig.converged.all()          # descending, all True
        layer = aw.top_eigenpairs(model, x, y, 5, params="fc2.weight")
    """
    op = HessianOperator(
        model, x, y, params, loss=loss, mode=mode, dtype=dtype, chunk_size=chunk_size, check=check
    )
    return operator_eigenpairs(
        op, k, which, method=method, tol=tol, ncv=ncv, maxiter=maxiter, seed=seed
    )
