"""SGD's minibatch noise against the loss curvature at one Linear layer
(docs/science.md#11-sgd-noise-against-curvature).

At a Linear layer z = W a every per-sample quantity is a product of factors the analysis
already has: the layer input a_p, the output gradient delta_p = dl_p/dz_p and the output
Hessian G_p = d^2 l_p / dz_p^2. With P = n_out x n_in weights flattened row-major:

    g_p = delta_p a_p^T                    per-sample gradient
    h_p = G_p (x) a_p a_p^T                per-sample Hessian,   H = mean_p h_p
    h_p^2 = G_p^2 (x) |a_p|^2 a_p a_p^T    so E[h^2] = mean_p h_p^2
    C = (N - B) / (B (N - 1)) Cov_p(g_p)   minibatch noise, B of N drawn without replacement

Up to ``dense_max`` weights the three are built as P x P matrices; above it nothing P x P is
formed: H's top-k eigenpairs come from products H v (ARPACK over
:class:`~awbench.curvature.layer_operator.LayerHessianProducts`), C is projected on them from
the per-sample gradients a chunk of samples at a time, and E[h^2]_ii = mean_p |a_p|^2
|G_p V_i a_p|^2 is one product G_p u_p per direction.

:func:`minibatch_trace` measures tr C against the batch size by drawing minibatches of
:func:`per_sample_gradients` the way the trainer does, next to the exact factor.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse.linalg as sla
import scipy.stats
import torch
from torch import nn

from awbench.analysis.duality import augment
from awbench.analysis.eigenbasis import DENSE_HESSIAN_MAX, LANCZOS_TOL
from awbench.analysis.guards import analysis_device
from awbench.analysis.model_inputs import as_float64, read_split
from awbench.analysis.resolved import ResolvedLayer, resolve_layer
from awbench.curvature.eigensolvers import operator_eigenpairs
from awbench.curvature.flat import model_mode
from awbench.curvature.layer import hessian_chunk_rows, output_hessians, row_chunks, symmetric_eigh
from awbench.curvature.layer_operator import LayerHessianProducts
from awbench.curvature.mlp_backend import mlp_backend_reason
from awbench.nn import engine
from awbench.nn.losses import check_loss, per_sample_loss

# Directions of the power-law fits (the top of H's spectrum) when the caller gives no k.
NOISE_TOP_K = 100
# Bootstrap resamples of the exponents' intervals, and draws of the commutator's baseline.
BOOTSTRAP_RESAMPLES = 2000
BASELINE_DRAWS = 5
# Rows of per-sample gradients (rows x P numbers) held at once.
GRADIENT_CHUNK_BYTES = 2**26


@dataclass(frozen=True)
class PowerLawFit:
    """y ~ x^exponent by least squares of log y on log x, with a bootstrap interval."""

    exponent: float
    low: float  # the interval's ends (percentile bootstrap over the points, paired)
    high: float
    intercept: float  # of log y = intercept + exponent log x (natural logs)
    n: int  # points fitted (both coordinates > 0)

    @property
    def interval(self) -> tuple[float, float]:
        return (self.low, self.high)


def _slope(x, y, axis=-1):
    xm = x - x.mean(axis, keepdims=True)
    ym = y - y.mean(axis, keepdims=True)
    return (xm * ym).sum(axis) / (xm * xm).sum(axis)


def power_law_fit(
    x, y, level: float = 0.95, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> PowerLawFit:
    """Fit y = A x^exponent over the points where both are > 0 (log-log least squares).

    The interval is a percentile bootstrap over the points (pairs resampled with
    replacement, ``n_resamples`` times, scipy.stats.bootstrap): it does not assume the
    OLS model's independent homoscedastic residuals, which neighbouring eigen-directions do
    not have. Fewer than 3 usable points give NaN."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    n = int(ok.sum())
    if n < 3 or np.ptp(lx) == 0:
        return PowerLawFit(math.nan, math.nan, math.nan, math.nan, n)
    slope = float(_slope(lx, ly))
    intercept = float(ly.mean() - slope * lx.mean())
    # a resample of a handful of points can repeat one x only: its slope is NaN, and so is
    # the interval then (scipy warns; the NaN says it)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        boot = scipy.stats.bootstrap(
            (lx, ly),
            _slope,
            paired=True,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    ci = boot.confidence_interval
    return PowerLawFit(slope, float(ci.low), float(ci.high), intercept, n)


def commutator_norm(C: torch.Tensor, lam: torch.Tensor) -> float:
    """||[C, H]||_F / (||C||_F ||H||_F) for H = diag(lam) and C in H's eigenbasis:
    [C, H]_ij = C_ij (lam_j - lam_i)."""
    gap = lam[None, :] - lam[:, None]
    num = torch.linalg.norm(C * gap)
    den = torch.linalg.norm(C) * torch.linalg.norm(lam)
    return float(num / den) if float(den) > 0 else math.nan


def haar_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """An n x n orthogonal matrix drawn from the Haar measure (QR of a Gaussian matrix with
    the signs of R's diagonal moved into Q)."""
    Z = torch.randn(n, n, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(Z)
    return Q * torch.sign(torch.diagonal(R))[None, :]


def commutator_baseline(
    C: torch.Tensor, lam: torch.Tensor, draws: int = BASELINE_DRAWS, seed: int = 0
) -> tuple[float, float]:
    """Mean and standard deviation (ddof 1) of :func:`commutator_norm` of Q C' Q^T against
    diag(lam), C' = diag(eigenvalues of C), Q Haar-random: the same spectra, eigenvectors
    at random. ``draws`` draws from ``seed``."""
    mu = torch.linalg.eigvalsh(C)
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(draws):
        Q = haar_orthogonal(len(mu), gen)
        values.append(commutator_norm((Q * mu[None, :]) @ Q.T, lam))
    return float(np.mean(values)), float(np.std(values, ddof=1)) if draws > 1 else math.nan


def batch_factor(n: int, batch_size: int) -> float:
    """(N - B) / (B (N - 1)): the covariance of a mean of B of N samples drawn without
    replacement is this times the population covariance (ddof 0) of the N."""
    return (n - batch_size) / (batch_size * (n - 1)) if n > 1 else 0.0


@dataclass
class NoiseCurvature:
    """SGD's minibatch noise covariance C against the Hessian H at one layer.

    Diagonals are in H's eigenbasis, directions in descending eigenvalue order: ``lam`` (=
    H_ii), ``C_diag`` and ``Eh2_diag`` (of E[h^2]) over the computed directions (all P on the
    dense route, the top k on the Lanczos route). ``H``, ``C`` and ``Eh2`` are the P x P
    matrices on the dense route, None above ``dense_max`` weights. The fits run over the top
    ``k`` directions: ``gamma`` of C_ii ~ H_ii^gamma, ``gamma_predicted`` of E[h^2]_ii ~
    H_ii^gamma, ``eh2_exponent`` of C_ii ~ E[h^2]_ii^x (1 when C is proportional to E[h^2]).
    ``commutator`` is ||[C, H]||_F / (||C||_F ||H||_F) over ``commutator_scope`` (all of
    weight space on the dense route, the top-k eigenspace of H on the Lanczos route), next
    to the mean and spread of the same number for C with random eigenvectors.
    """

    layer: str
    loss: str
    batch_size: int
    n_samples: int
    n_weights: int
    route: str  # "dense" or "lanczos"
    k: int
    gamma: PowerLawFit
    gamma_predicted: PowerLawFit
    eh2_exponent: PowerLawFit
    commutator: float
    commutator_baseline: float
    commutator_baseline_std: float
    commutator_scope: str
    gradient_norm: float  # |mean_p g_p|, the full-batch gradient at the layer
    lam: np.ndarray = field(repr=False)
    C_diag: np.ndarray = field(repr=False)
    Eh2_diag: np.ndarray = field(repr=False)
    eigenvectors: torch.Tensor = field(repr=False)  # (P, m), column i = direction i
    H: torch.Tensor | None = field(default=None, repr=False)
    C: torch.Tensor | None = field(default=None, repr=False)
    Eh2: torch.Tensor | None = field(default=None, repr=False)

    @property
    def H_diag(self) -> np.ndarray:
        return self.lam

    def scalars(self) -> dict:
        """The headline numbers as a flat dict (records, tables)."""
        out = {
            "layer": self.layer,
            "loss": self.loss,
            "batch_size": self.batch_size,
            "n_samples": self.n_samples,
            "n_weights": self.n_weights,
            "route": self.route,
            "k": self.k,
            "commutator": self.commutator,
            "commutator_baseline": self.commutator_baseline,
            "commutator_baseline_std": self.commutator_baseline_std,
            "gradient_norm": self.gradient_norm,
        }
        for name in ("gamma", "gamma_predicted", "eh2_exponent"):
            fit = getattr(self, name)
            out.update({name: fit.exponent, f"{name}_low": fit.low, f"{name}_high": fit.high})
        return out

    def __repr__(self) -> str:
        g = self.gamma
        return (
            f"NoiseCurvature(layer={self.layer!r}, loss={self.loss!r}, B={self.batch_size}, "
            f"gamma={g.exponent:.3f} [{g.low:.3f}, {g.high:.3f}], gamma_predicted="
            f"{self.gamma_predicted.exponent:.3f}, commutator={self.commutator:.3g} "
            f"(random {self.commutator_baseline:.3g}), {self.route})"
        )


# -- per-sample factors ---------------------------------------------------------------------


def _chunk_rows(n_weights: int) -> int:
    return max(1, GRADIENT_CHUNK_BYTES // (8 * n_weights))


def _gradient_chunks(delta: torch.Tensor, a: torch.Tensor):
    """(rows, g) with g the (rows, P) per-sample gradients delta_p a_p^T, flattened."""
    for rows in row_chunks(len(a), _chunk_rows(delta.shape[1] * a.shape[1])):
        d, x = delta[rows], a[rows]
        yield rows, (d[:, :, None] * x[:, None, :]).reshape(len(d), -1)


class _MLPProducts:
    """LayerHessianProducts' interface for an awbench MLP, by the engine's explicit R-operator
    passes (:class:`awbench.nn.engine.OutputCurvature`): no autograd graph, a product costs
    a few GEMMs over the samples."""

    def __init__(self, target: ResolvedLayer, x, y):
        model = target.model
        depth = [getattr(model, name) for name in model.layer_names].index(target.module)
        act, layers = engine.activation_of(model), engine.mlp_layers(model)
        self.curvature = engine.OutputCurvature(layers, x, y, act, depth, target.loss)
        a = self.curvature.inputs
        self.inputs = augment(a) if target.with_bias else a
        self.output_gradients = self.curvature.output_gradient
        self.shape, self.n = target.shape, len(x)
        self.size = self.shape[0] * self.shape[1]

    def output_products(self, u: torch.Tensor) -> torch.Tensor:
        return self.curvature.products(u)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        a = self.inputs
        u = a @ v.reshape(self.shape).T
        return (self.output_products(u).T @ a).div_(self.n).reshape(-1)


def _output_factors(target: ResolvedLayer, x, y):
    """(a, delta, products): layer inputs (augmented with a 1 for a bias), dl_p/dz_p and the
    products G_p u_p: by the engine's explicit passes for an awbench MLP, else from one pass
    through the autograd graph downstream of the layer."""
    model = target.model
    if mlp_backend_reason(model, "cross_entropy", "eval") is None:
        products = _MLPProducts(target, x, y)
    else:
        with model_mode(model, "eval"):
            products = LayerHessianProducts(
                model, target.module, x, y, target.with_bias, target.loss
            )
    return products.inputs, products.output_gradients, products


def _dense_matrices(target: ResolvedLayer, x, y, a, delta, factor):
    """H, E[h^2] and C as P x P matrices (the mean over samples of Kronecker products, one
    GEMM per chunk of samples: (n_out^2, N) x (N, n_in^2))."""
    n_out, n_in = target.shape
    H = torch.zeros(n_out * n_out, n_in * n_in, dtype=torch.float64, device=a.device)
    E = torch.zeros_like(H)
    with model_mode(target.model, "eval"):
        for rows in row_chunks(len(x), hessian_chunk_rows(n_out, n_in)):
            G, _ = output_hessians(target.model, target.module, x[rows], y[rows], target.loss)
            G, ar = G.to(a.device), a[rows]
            outer = (ar[:, :, None] * ar[:, None, :]).reshape(len(ar), -1)
            H.addmm_(G.reshape(len(G), -1).T, outer)
            G2 = torch.bmm(G, G).reshape(len(G), -1)
            E.addmm_(G2.T, outer * (ar * ar).sum(1, keepdim=True))

    def kron(S):  # S[(o, o'), (i, j)] -> H[(o, i), (o', j)]
        S = S.reshape(n_out, n_out, n_in, n_in).permute(0, 2, 1, 3)
        return S.reshape(n_out * n_in, n_out * n_in).div_(len(x))

    C = torch.zeros(n_out * n_in, n_out * n_in, dtype=torch.float64, device=a.device)
    mean = torch.zeros(n_out * n_in, dtype=torch.float64, device=a.device)
    for _, g in _gradient_chunks(delta, a):
        C.addmm_(g.T, g)
        mean += g.sum(0)
    mean /= len(x)
    C.div_(len(x)).sub_(mean[:, None] * mean[None, :]).mul_(factor)
    return kron(H), kron(E), (C + C.T) / 2, mean


# -- the two routes -------------------------------------------------------------------------


def _dense_route(target: ResolvedLayer, x, y, factor: float, draws: int, seed: int) -> dict:
    a, delta, _ = _output_factors(target, x, y)
    H, E, C, mean = _dense_matrices(target, x, y, a, delta, factor)
    lam, V = symmetric_eigh(H)
    lam, V = lam.flip(0), V.flip(1).to(a.device)
    C_rot = V.T @ C @ V  # C in H's eigenbasis
    baseline = commutator_baseline(C_rot.cpu(), lam, draws, seed)
    return {
        "route": "dense",
        "lam": lam,
        "C_diag": torch.diagonal(C_rot).cpu(),
        "Eh2_diag": ((E @ V) * V).sum(0).cpu(),
        "commutator": commutator_norm(C_rot.cpu(), lam),
        "baseline": baseline,
        "scope": f"all {len(lam)} directions",
        "V": V.cpu(),
        "matrices": (H.cpu(), C.cpu(), E.cpu()),
        "gradient_norm": float(mean.norm()),
    }


def _top_eigenpairs(products: LayerHessianProducts, k: int):
    """H's top-k eigenpairs (descending) by ARPACK over the products H v."""
    n, device = products.size, products.inputs.device

    def matvec(v):
        v = torch.from_numpy(np.asarray(v, dtype=np.float64).reshape(-1)).to(device)
        return products.matvec(v).cpu().numpy()

    op = sla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    found = operator_eigenpairs(
        op, min(k, n - 2), "LA", method="arpack", tol=LANCZOS_TOL, seed=0, residuals=False
    )
    keep = torch.isfinite(found.values)
    return found.values[keep], found.vectors[keep].T.contiguous()  # values descending, (P, k)


def _lanczos_route(
    target: ResolvedLayer, x, y, factor: float, k: int, draws: int, seed: int
) -> dict:
    a, delta, products = _output_factors(target, x, y)
    lam, V = _top_eigenpairs(products, k)
    order = torch.argsort(lam, descending=True)
    lam, V = lam[order], V[:, order].to(a.device)
    proj = torch.empty(len(a), V.shape[1], dtype=torch.float64, device=a.device)
    for rows, g in _gradient_chunks(delta, a):
        proj[rows] = g @ V  # g_p . v_i
    mean = proj.mean(0)
    C_top = (proj.T @ proj).div_(len(a)).sub_(mean[:, None] * mean[None, :]).mul_(factor)
    C_top = ((C_top + C_top.T) / 2).cpu()
    norm_a2 = (a * a).sum(1)
    e_diag = torch.empty(V.shape[1], dtype=torch.float64)
    for i in range(V.shape[1]):
        u = a @ V[:, i].reshape(target.shape).T  # (N, n_out): V_i a_p
        w = products.output_products(u)  # G_p V_i a_p
        e_diag[i] = float((norm_a2 * (w * w).sum(1)).mean())
    return {
        "route": "lanczos",
        "lam": lam.cpu(),
        "C_diag": torch.diagonal(C_top).clone(),
        "Eh2_diag": e_diag,
        "commutator": commutator_norm(C_top, lam.cpu()),
        "baseline": commutator_baseline(C_top, lam.cpu(), draws, seed),
        "scope": f"the top-{V.shape[1]} eigenspace of H",
        "V": V.cpu(),
        "matrices": (None, None, None),
        "gradient_norm": float(torch.linalg.norm(delta.T @ a) / len(a)),
    }


# -- the entry point ------------------------------------------------------------------------


def _positive_int(name: str, value, lo: int = 1, hi: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        bound = f"an integer >= {lo}" + ("" if hi is None else f" and <= {hi}")
        raise ValueError(f"{name}={value!r} is not allowed: expected {bound}")
    return int(value)


def _from_run(run, layer, train, batch_size, loss):
    """A Run's defaults: its layer, all its training samples (what the trainer draws
    minibatches from, corrupted labels included), its batch size and loss."""
    cfg, data = run.config, run.data
    return (
        run.model,
        layer or cfg.layer,
        train if train is not None else (data.x_train, data.y_train),
        cfg.batch_size if batch_size is None else batch_size,
        cfg.loss if loss is None else loss,
    )


def noise_curvature(
    model,
    layer: str | nn.Module | None = None,
    train=None,
    batch_size: int | None = None,
    loss: str | None = None,
    *,
    k: int = NOISE_TOP_K,
    dense_max: int = DENSE_HESSIAN_MAX,
    baseline_draws: int = BASELINE_DRAWS,
    seed: int = 0,
    device: str | torch.device | None = None,
    logits=None,
) -> NoiseCurvature:
    """SGD's minibatch noise covariance C against the Hessian H at ``layer`` (an nn.Linear,
    by name or as the module), over the training samples ``train`` = (x, y).

    ``model`` is an nn.Module, or an awbench Run: then ``layer``, ``train`` (every training
    sample: what the trainer draws from), ``batch_size`` and ``loss`` default to the run's.
    C is the covariance of the mean gradient of ``batch_size`` samples drawn without
    replacement (the trainer's epochs are random permutations cut into consecutive
    batches). ``loss``: "ce" (default) or "mse". Up to ``dense_max`` weights H, C and
    E[h^2] are P x P matrices; above it the top ``k`` eigen-directions of H by Lanczos and the
    diagonals of C and E[h^2] in them. The fits use the top ``k`` directions; the
    commutator's baseline ``baseline_draws`` random rotations from ``seed``. The model is
    analysed as a float64 eval-mode copy (awbench/analysis/resolved.py); ``device`` and
    ``logits`` as in :func:`awbench.analyze_model`.
    """
    if hasattr(model, "config") and hasattr(model, "data"):
        model, layer, train, batch_size, loss = _from_run(model, layer, train, batch_size, loss)
    loss = check_loss("ce" if loss is None else loss)
    if layer is None or train is None or batch_size is None:
        raise ValueError(
            "noise_curvature(model, layer, train=(x, y), batch_size=B) needs all three"
        )
    x, y = read_split(train, "train")
    n = len(y)
    batch_size = _positive_int("batch_size", batch_size, 1, n)
    k = _positive_int("k", k, 3)
    draws = _positive_int("baseline_draws", baseline_draws, 2)
    dense_max = _positive_int("dense_max", dense_max, 0)
    target = resolve_layer(model, layer, analysis_device(device, model), logits, loss)
    x, y = as_float64(x).to(target.device), y.long().to(target.device)
    factor = batch_factor(n, batch_size)
    if target.n_weights <= dense_max:
        parts = _dense_route(target, x, y, factor, draws, seed)
    else:
        parts = _lanczos_route(target, x, y, factor, k, draws, seed)
    return _result(target, parts, batch_size, n, k, seed)


def _result(target: ResolvedLayer, parts: dict, batch_size: int, n: int, k: int, seed: int):
    lam, c, e = (parts[name].numpy() for name in ("lam", "C_diag", "Eh2_diag"))
    top = slice(0, min(k, len(lam)))
    H, C, E = parts["matrices"]
    return NoiseCurvature(
        layer=target.label,
        loss=target.loss,
        batch_size=batch_size,
        n_samples=n,
        n_weights=target.n_weights,
        route=parts["route"],
        k=len(lam[top]),
        gamma=power_law_fit(lam[top], c[top], seed=seed),
        gamma_predicted=power_law_fit(lam[top], e[top], seed=seed),
        eh2_exponent=power_law_fit(e[top], c[top], seed=seed),
        commutator=parts["commutator"],
        commutator_baseline=parts["baseline"][0],
        commutator_baseline_std=parts["baseline"][1],
        commutator_scope=parts["scope"],
        gradient_norm=parts["gradient_norm"],
        lam=lam,
        C_diag=c,
        Eh2_diag=e,
        eigenvectors=parts["V"],
        H=H,
        C=C,
        Eh2=E,
    )


# --- the minibatch noise against the batch size, measured -------------------------------

# Minibatches drawn per batch size for the Monte Carlo trace.
MC_BATCHES = 400


def per_sample_gradients(run, layer: str | None = None) -> torch.Tensor:
    """(N, P) float64 gradients of each training sample's loss with respect to ``layer``'s
    weight (the run's analysed layer by default), flattened row-major."""
    from torch.func import functional_call, grad, vmap

    model = run.model.double().eval()
    name = f"{layer or run.config.layer}.weight"
    params = {k: v.detach() for k, v in model.named_parameters()}
    x, y = run.data.x_train.double(), run.data.y_train.long()

    def loss_of(w, xi, yi):
        logits = functional_call(model, {**params, name: w}, (xi[None],))
        return per_sample_loss(run.config.loss, logits, yi[None]).sum()

    g = vmap(grad(loss_of), in_dims=(None, 0, 0))(params[name], x, y)
    return g.reshape(len(x), -1)


def minibatch_trace(
    g: torch.Tensor, sizes: Sequence[int], n_batches: int = MC_BATCHES, seed: int = 0
) -> pd.DataFrame:
    """tr C against B: measured, over ``n_batches`` minibatches drawn as the trainer draws
    them (each epoch a random permutation cut into consecutive batches of B; a shorter last
    batch is dropped), next to the exact (N - B) / (B (N - 1)) tr(Sigma) of the per-sample
    gradients ``g`` (N, P). Columns ``batch_size``, ``measured``, ``exact``, ``n_batches``."""
    n = len(g)
    mean = g.mean(0)
    sigma_trace = float(((g - mean) ** 2).sum(1).mean())
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for b in sizes:
        deviations = []
        while len(deviations) < n_batches:
            perm = torch.randperm(n, generator=gen)
            for start in range(0, n - b + 1, b):
                batch = g[perm[start : start + b]].mean(0)
                deviations.append(float(((batch - mean) ** 2).sum()))
        rows.append(
            {
                "batch_size": int(b),
                "measured": float(np.mean(deviations)),
                "measured_se": float(np.std(deviations, ddof=1) / math.sqrt(len(deviations))),
                "exact": batch_factor(n, b) * sigma_trace,
                "n_batches": len(deviations),
            }
        )
    return pd.DataFrame(rows)
