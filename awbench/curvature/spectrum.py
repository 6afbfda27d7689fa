"""Trace (Hutchinson / Hutch++ with standard errors) and spectral density (stochastic Lanczos
quadrature) of a curvature operator, and the notebook tables that check them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from awbench.curvature.eigensolvers import small_eigh
from awbench.curvature.operators import CurvatureOperator, HessianOperator

# ----------------------------------------------------------------------------------------
# Trace
# ----------------------------------------------------------------------------------------


class TraceEstimate(NamedTuple):
    """A stochastic trace estimate and its standard error."""

    estimate: float
    stderr: float


def _rademacher(P: int, m: int, gen: torch.Generator, dtype, device) -> torch.Tensor:
    return (torch.randint(0, 2, (P, m), generator=gen, dtype=torch.int64) * 2 - 1).to(device, dtype)


def operator_trace(
    op: CurvatureOperator,
    probes: int = 100,
    seed: int = 0,
    method: str = "hutchinson",
    block: int = 64,
) -> TraceEstimate:
    """Trace of a symmetric operator with ``probes`` products.

    "hutchinson": mean of z^T H z over Rademacher z; stderr = sample std (ddof 1) / sqrt(m).
    "hutch++" (Meyer et al. 2021): a third of the products sketch H S, the next third give
    tr(Q^T H Q) exactly on the range Q = orth(H S), the rest run Hutchinson on the deflated
    (I - QQ^T) H (I - QQ^T); its standard error (conditional on Q) is reported.
    """
    P = op.shape[0]
    probes = int(probes)
    gen = torch.Generator().manual_seed(int(seed))
    dtype, device = op.flat.dtype, op.flat.device

    def quad_forms(Z):
        out = []
        for s in range(0, Z.shape[1], block):
            Zb = Z[:, s : s + block]
            out.append((Zb * op.apply(Zb)).sum(0))
        return torch.cat(out)

    if method == "hutchinson":
        if probes < 2:
            raise ValueError(f"probes={probes} is not allowed: expected >= 2 for a standard error")
        q = quad_forms(_rademacher(P, probes, gen, dtype, device))
        return TraceEstimate(float(q.mean()), float(q.std(unbiased=True) / np.sqrt(probes)))
    if method == "hutch++":
        s = probes // 3
        g = probes - 2 * s
        if s < 1 or g < 2:
            raise ValueError(f"probes={probes} is not allowed for hutch++: expected >= 4")
        S = _rademacher(P, s, gen, dtype, device)
        G = _rademacher(P, g, gen, dtype, device)
        Q, _ = torch.linalg.qr(op.apply(S))
        low_rank = float((Q * op.apply(Q)).sum())
        Gp = G - Q @ (Q.T @ G)
        q = quad_forms(Gp)
        return TraceEstimate(low_rank + float(q.mean()), float(q.std(unbiased=True) / np.sqrt(g)))
    raise ValueError(f"method={method!r} is not allowed: expected 'hutchinson' or 'hutch++'")


def hessian_trace(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    probes: int = 100,
    seed: int = 0,
    *,
    params=None,
    method: str = "hutchinson",
    mode: str = "eval",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    loss="cross_entropy",
    check: str = "raise",
) -> TraceEstimate:
    """(estimate, standard error) of the trace of the full-batch Hessian over (x, y).

    Hutchinson with ``probes`` Rademacher vectors drawn from ``seed`` (or Hutch++ with
    ``method="hutch++"``, same number of Hessian-vector products); see :func:`operator_trace`.
    """
    op = HessianOperator(
        model, x, y, params, loss=loss, mode=mode, dtype=dtype, chunk_size=chunk_size, check=check
    )
    return operator_trace(op, probes, seed, method)


# ----------------------------------------------------------------------------------------
# Spectral density by stochastic Lanczos quadrature
# ----------------------------------------------------------------------------------------


class SpectralDensity(NamedTuple):
    """SLQ result. ``nodes``/``weights`` (n_probes, steps): each probe's Gauss quadrature
    (weights sum to 1 per probe; unused slots after an early breakdown are zero-weight zeros).
    ``grid``/``density``: the Gaussian-smoothed density, integrating to 1 (multiply by the
    parameter count for eigenvalues per unit lambda). ``settings``: how it was made."""

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    settings: dict


def lanczos_quadrature(
    op: CurvatureOperator, V0: torch.Tensor, steps: int, breakdown: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights of ``v^T f(H) v / |v|^2`` for each column of V0.

    Lanczos runs on all probes at once (one matmat per step) with full re-orthogonalisation
    (classical Gram-Schmidt, twice). A probe whose next beta falls below ``breakdown`` times
    the largest |alpha|, |beta| seen has found an invariant subspace and stops there.
    Exactness: sum_i w_i theta_i^j = v^T H^j v / |v|^2 for j <= 2 * steps - 1.
    """
    P, b = V0.shape
    steps = int(min(steps, P))
    dtype, device = op.flat.dtype, op.flat.device
    Q = torch.zeros(steps, P, b, dtype=dtype, device=device)
    alpha = torch.zeros(b, steps, dtype=dtype)
    beta = torch.zeros(b, steps, dtype=dtype)
    length = np.full(b, steps)
    active = torch.ones(b, dtype=torch.bool)
    q = V0.to(device, dtype)
    q = q / q.norm(dim=0, keepdim=True)
    scale = torch.zeros(b, dtype=dtype)
    for j in range(steps):
        Q[j] = q
        w = torch.zeros_like(q)
        idx = torch.nonzero(active).flatten()
        w[:, idx] = op.apply(q[:, idx])
        a = (q * w).sum(0)
        alpha[:, j] = a.cpu()
        for _ in range(2):  # full re-orthogonalisation against every Lanczos vector so far
            coef = torch.einsum("jpb,pb->jb", Q[: j + 1], w)
            w = w - torch.einsum("jpb,jb->pb", Q[: j + 1], coef)
        w[:, ~active.to(device)] = 0.0
        bt = w.norm(dim=0)
        scale = torch.maximum(scale, torch.maximum(a.abs().cpu(), bt.cpu()))
        stop = active & (bt.cpu() <= breakdown * scale)
        for i in torch.nonzero(stop).flatten().tolist():
            length[i] = j + 1
        active &= ~stop
        if j == steps - 1 or not active.any():
            break
        beta[:, j] = torch.where(active, bt.cpu(), torch.zeros_like(bt.cpu()))
        q = torch.where(
            active.to(device)[None, :], w / torch.where(bt > 0, bt, 1.0), torch.zeros_like(w)
        )
    nodes = np.zeros((b, steps))
    weights = np.zeros((b, steps))
    for i in range(b):
        L = int(length[i])
        T = np.diag(alpha[i, :L].numpy())
        if L > 1:
            off = beta[i, : L - 1].numpy()
            T += np.diag(off, 1) + np.diag(off, -1)
        theta, U = small_eigh(T)
        nodes[i, :L] = theta
        weights[i, :L] = U[0] ** 2
    return nodes, weights


def smooth_density(
    nodes: np.ndarray,
    weights: np.ndarray,
    sigma: float | None = None,
    grid: np.ndarray | None = None,
    n_grid: int = 1000,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Average over probes of Gaussian kernels at the nodes: (grid, density, sigma).

    Default sigma: 1% of the node range (0.01 if the range is 0). Default grid: n_grid points
    over [min - 5 sigma, max + 5 sigma]. The density integrates to 1 over an unbounded grid.
    """
    used = weights > 0
    lo, hi = float(nodes[used].min()), float(nodes[used].max())
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else 0.01
    sigma = float(sigma)
    if sigma <= 0:
        raise ValueError(f"sigma={sigma} is not allowed: expected > 0")
    if grid is None:
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(n_grid))
    grid = np.asarray(grid, dtype=np.float64)
    th, w = nodes[used], weights[used] / nodes.shape[0]
    density = np.zeros_like(grid)
    for start in range(0, len(th), 4096):  # bounded memory: grid x nodes block
        d = (grid[:, None] - th[None, start : start + 4096]) / sigma
        density += (np.exp(-0.5 * d * d) * w[None, start : start + 4096]).sum(1)
    density /= sigma * np.sqrt(2 * np.pi)
    return grid, density, sigma


def spectral_density(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_probes: int = 8,
    steps: int = 80,
    seed: int = 0,
    sigma: float | None = None,
    grid: np.ndarray | None = None,
    n_grid: int = 1000,
    params=None,
    mode: str = "eval",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    loss="cross_entropy",
    check: str = "raise",
    operator: CurvatureOperator | None = None,
) -> SpectralDensity:
    """Hessian spectral density by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    ``n_probes`` Rademacher probes from ``seed``, ``steps`` Lanczos steps each (capped at P)
    with full re-orthogonalisation, then Gaussian smoothing of width ``sigma`` on ``grid``
    (see :func:`smooth_density`). Pass ``operator`` to reuse a built operator (for instance a
    :class:`GaussNewtonOperator`); then model, x and y are not used.
    """
    op = (
        operator
        if operator is not None
        else HessianOperator(
            model,
            x,
            y,
            params,
            loss=loss,
            mode=mode,
            dtype=dtype,
            chunk_size=chunk_size,
            check=check,
        )
    )
    P = op.shape[0]
    if int(n_probes) < 1 or int(steps) < 1:
        raise ValueError(f"n_probes={n_probes}, steps={steps}: expected both >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    V0 = _rademacher(P, int(n_probes), gen, op.flat.dtype, op.flat.device)
    nodes, weights = lanczos_quadrature(op, V0, steps)
    grid_out, density, sigma = smooth_density(nodes, weights, sigma, grid, n_grid)
    settings = {
        "n_probes": int(n_probes),
        "steps": int(min(steps, P)),
        "seed": int(seed),
        "probe": "rademacher",
        "reorthogonalisation": "full",
        "kernel": "gaussian",
        "sigma": sigma,
        "n_grid": len(grid_out),
        "n_params": int(P),
        "operator": type(op).__name__,
        "mode": op.mode,
        "normalisation": "density integrates to 1; times n_params gives eigenvalues per unit lambda",
    }
    return SpectralDensity(nodes, weights, grid_out, density, settings)


def eigen_check(values, exact) -> float:
    """Largest relative error of the top-k eigenvalues against the dense ones (descending)."""
    top = torch.sort(torch.as_tensor(exact, dtype=torch.float64), descending=True).values[
        : len(values)
    ]
    v = torch.as_tensor(values, dtype=torch.float64)
    return float(((v - top).abs() / top.abs().clamp_min(1e-300)).max())


def trace_table(model, x, y, probes: Sequence[int], seed: int, params) -> pd.DataFrame:
    """Hutchinson estimate and standard error for each probe count."""
    rows = []
    for m in probes:
        est = hessian_trace(model, x, y, probes=int(m), seed=seed, params=params)
        rows.append({"probes": int(m), "estimate": est.estimate, "stderr": est.stderr})
    return pd.DataFrame(rows)
