"""Split the generalization gap into per-eigen-direction sharpness x size terms (docs/science.md#3-the-gap-decomposition).

For pairs k (test sample x'_k, training partner x_k): dual weight dw_k, exact gap
dl_k = l(x'_k, W) - l(x_k, W), secant gradient g_k = dl_k dw_k / |dw_k|^2. Projected on an
orthonormal basis v_n (the training Hessian's eigenvectors), population statistics give the
exact identity  <dl> = sum_n mu_g,n mu_w,n + c_n sigma_g,n sigma_w,n.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import torch
from torch import nn

from awbench.analysis.directions import (  # noqa: F401 - DIRECTION_COLUMNS re-exported
    DIRECTION_COLUMNS,
    direction_statistics,
    direction_table,
)
from awbench.analysis.duality_guard import DualityError  # noqa: F401 - re-exported
from awbench.analysis.eigenbasis import DENSE_HESSIAN_MAX, LANCZOS_K, eigenbasis
from awbench.analysis.guards import (
    analysis_device,
    check_analysis_memory,
    check_arguments,
    check_basis,
    check_finite,
    check_routes,
)
from awbench.analysis.model_inputs import (
    PairingRule,
    Samples,
    as_float64,
    check_model,
    read_samples,
)
from awbench.analysis.pair_gaps import PairedActivities, PairGaps, active_pairs, pair_gaps
from awbench.analysis.resolved import ResolvedLayer, resolve_layer, unwrap_compiled
from awbench.analysis.summary import registered_figure, short_repr, summary_html, summary_text
from awbench.curvature.flat import model_mode
from awbench.curvature.layer import output_as_leaf, row_chunks
from awbench.curvature.layer_operator import frozen_parameters
from awbench.nn.losses import check_loss, summed_loss


@dataclass
class Analysis:
    """Everything the decomposition of one trained network at one layer yields.

    Gaps are in nats (cross-entropy). ``contribution`` of a direction is its full term
    mu_g mu_w + c sigma_g sigma_w, so ``sharp_gap + flat_gap + complement_gap == pair_gap``
    exactly; ``estimated_gap`` is the paper's approximation sum_n c_n sigma_g,n sigma_w,n.

    On the dense route the basis is complete and ``complement_gap`` is 0. On the
    ``"lanczos+complement"`` route (and for a ``basis`` with fewer than P columns) the
    directions are the m computed eigenvectors only: ``directions`` has m rows, and the
    per-direction fields (``sharp_gap``, ``flat_gap``, ``estimated_gap``, ``mean_term``,
    ``second_order_term``, ``lam_max``) sum over them. What lies outside their span is one
    number, ``complement_gap = mean_k r_w,k . r_g,k`` (the residuals of dw_k and g_k after
    projection), never a row and never ranked. So ``sharp_gap`` is the same top-n_sharp sum as
    on the dense route whenever those directions were computed, and the dense route's
    ``flat_gap`` is this route's ``flat_gap + complement_gap``. ``sharpness`` and ``size`` are
    traces of the covariances of g_k and dw_k, computed without a basis: identical on every
    route.
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
    flat_gap: float  # contributions of all other computed directions
    complement_gap: float  # mean_k r_w . r_g outside the computed directions (0 when complete)
    first_order_term: float  # <grad l_k . dw_k>
    second_order_term: float  # 1/2 sum lam (sigma_w^2 + mu_w^2)
    second_order_gap: float  # first + second order
    second_order_error: float  # |second_order_gap - pair_gap|
    sharpness: float  # sum sigma_g^2 over a complete basis: trace of the covariance of g_k
    size: float  # sum sigma_w^2 over a complete basis: trace of the covariance of dw_k
    # sharpness / size: the |dw_k|^2-weighted mean squared secant curvature s_k^2 (NaN when
    # size is 0). Sharpness ~ <s_k^2 |dw_k|^2> restates size, so a knob that only shrinks the
    # dual weights lowers sharpness too; this ratio is the part that size does not explain.
    curvature: float
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
    # dW_k = dual_u[k] dual_a[k]^T: rank one, kept as factors (K x (n_out + n_in) numbers)
    dual_u: torch.Tensor = field(repr=False)  # (K, n_out) W da_k
    dual_a: torch.Tensor = field(repr=False)  # (K, n_in[+1]) a_k / |a_k|^2
    secant_scale: torch.Tensor = field(repr=False)  # (K,) g_k = secant_scale[k] dw_k
    eigenvectors: torch.Tensor = field(
        repr=False
    )  # (P, m): column j is the direction with eigen_index j
    # "ce" or "mse": the unit of every gap (a run's config carries it, so it is no scalar)
    loss: str = field(default="ce", repr=False)

    @property
    def dual(self) -> torch.Tensor:
        """(K, n_out, n_in[+1]) dual weights, built on access (K x P float64 numbers)."""
        return torch.einsum("ko,ki->koi", self.dual_u, self.dual_a)

    @property
    def secant(self) -> torch.Tensor:
        """(K, n_out, n_in[+1]) secant gradients g_k, built on access."""
        return self.secant_scale[:, None, None] * self.dual

    def scalars(self) -> dict:
        """The scalar fields as a flat dict (for stores, records and tables)."""
        skip = {
            "directions",
            "pairs_test",
            "pairs_train",
            "pair_gaps",
            "dual_u",
            "dual_a",
            "secant_scale",
            "eigenvectors",
            "loss",
        }
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    def summary(self) -> str:
        """The result in words: gaps, sharp/flat/complement shares, curvature, exactness,
        route, and what to change when the complement is large or the duality not exact."""
        return summary_text(self)

    def _repr_html_(self) -> str:
        return summary_html(self)

    def __repr__(self) -> str:
        return short_repr(self)

    def plot(self):
        """The gap budget and the per-direction spectra in one plotly figure
        (awbench.viz.decomposition_plots.analysis_figure)."""
        return registered_figure(self)


@dataclass
class _Projection:
    """The pairs in the basis V (P, m) and what needs no basis."""

    theta: torch.Tensor  # (K, m) dw_k . v_n
    gamma: torch.Tensor  # (K, m) g_k . v_n
    complement_gap: float  # mean_k r_w . r_g, the part outside span(V) (0 for a complete V)
    sharpness: float  # mean_k |g_k - <g>|^2, the trace of the covariance of g
    size: float  # mean_k |dw_k - <dw>|^2, the trace of the covariance of dw


def _project(gaps: PairGaps, V: torch.Tensor) -> _Projection:
    """Coordinates of dw_k and g_k in V, the complement's gap and the basis-free totals."""
    K, s = len(gaps.u), gaps.secant_scale
    theta = gaps.coordinates(V)
    complement = 0.0
    if V.shape[1] < gaps.n_weights:
        # |r_w|^2 = |dw|^2 - |V^T dw|^2 for orthonormal V, and r_g = s_k r_w, so
        # r_w . r_g = s_k |r_w|^2: its rounding is eps |dl_k|, as s_k |dw_k|^2 = dl_k.
        r_sq = gaps.squared_norms - (theta * theta).sum(1)
        complement = math.fsum((s * r_sq).tolist()) / K
    ones = torch.ones_like(s)
    return _Projection(
        theta,
        s[:, None] * theta,  # g_k is a multiple of dw_k: its projections are dw_k's rescaled
        complement,
        math.fsum(gaps.deviations(s).tolist()) / K,
        math.fsum(gaps.deviations(ones).tolist()) / K,
    )


def _identity_terms(
    dl: torch.Tensor, directions: pd.DataFrame, n_sharp: int, proj: _Projection
) -> dict:
    """The exact identity's sums over the directions, split into sharp, flat and complement."""
    col = {k: directions[k].to_numpy() for k in ("mu_w", "sigma_w", "mu_g", "sigma_g", "c")}
    contribution = directions["contribution"].to_numpy()
    mean_dl = float(dl.mean())
    # Compensated (fsum) sums are correctly rounded, so the identity's error is rounding only
    # and the sums do not depend on the table's order.
    directions_sum = float(math.fsum(contribution))
    sharp = float(math.fsum(contribution[:n_sharp]))
    return {
        "pair_gap": mean_dl,
        "estimated_gap": float(math.fsum(col["c"] * col["sigma_g"] * col["sigma_w"])),
        "mean_term": float(math.fsum(col["mu_g"] * col["mu_w"])),
        "identity_error": abs(mean_dl - math.fsum([directions_sum, proj.complement_gap])),
        "sharp_gap": sharp,
        "flat_gap": directions_sum - sharp,
        "complement_gap": proj.complement_gap,
        "sharpness": proj.sharpness,
        "size": proj.size,
        "curvature": proj.sharpness / proj.size if proj.size > 0 else float("nan"),
    }


def _second_order_terms(
    target: ResolvedLayer,
    x_pairs,
    pairs: PairedActivities,
    gaps: PairGaps,
    lam,
    n_basis,
    directions,
    method,
) -> dict:
    """<grad l_k . dw_k> + 1/2 sum_n lam_n (sigma_w^2 + mu_w^2), and its distance to <dl>."""
    # Gradient of l_k w.r.t. W is (dl/dz)_k a_k^T, dl/dz obtained by backprop to the layer output.
    dz = _output_grads(target, x_pairs, gaps.y)
    # grad l_k . dW_k = (dz_k . u_k)(b_k . a_k) for the rank-one dW_k = u_k b_k^T.
    first_order = float(((dz * gaps.u).sum(1) * (gaps.b * pairs.a_train).sum(1)).mean())
    if method == "given":
        second_order = float("nan")
    else:
        lam_np = np.nan_to_num(lam.numpy()[:n_basis], nan=0.0)
        s = directions.sort_values("eigen_index")
        sigma_w, mu_w = s["sigma_w"].to_numpy()[:n_basis], s["mu_w"].to_numpy()[:n_basis]
        second_order = 0.5 * float(math.fsum(lam_np * (sigma_w**2 + mu_w**2)))
    mean_dl = float(gaps.dl.mean())
    return {
        "first_order_term": first_order,
        "second_order_term": second_order,
        "second_order_gap": first_order + second_order,
        "second_order_error": abs(first_order + second_order - mean_dl),
    }


def _model_losses(model, x_test, y_test, x_clean, y_clean, loss: str = "ce") -> dict:
    test_loss, train_loss, wrong = 0.0, 0.0, 0
    with torch.no_grad(), model_mode(model, "eval"):
        for rows in row_chunks(len(y_test)):
            logits = model(x_test[rows])
            test_loss += float(summed_loss(loss, logits, y_test[rows]))
            wrong += int((logits.argmax(1) != y_test[rows]).sum())
        for rows in row_chunks(len(y_clean)):
            train_loss += float(summed_loss(loss, model(x_clean[rows]), y_clean[rows]))
    test_loss, train_loss = test_loss / len(y_test), train_loss / len(y_clean)
    return {
        "real_gap": test_loss - train_loss,
        "test_error": wrong / len(y_test),
        "train_loss": train_loss,
        "test_loss": test_loss,
    }


def _per_pair_fields(pairs: PairedActivities, gaps: PairGaps) -> dict:
    return {
        "n_pairs": len(pairs.test),
        "n_excluded": pairs.n_excluded,
        "n_weights": gaps.n_weights,
        "pairs_test": pairs.test,
        "pairs_train": pairs.train,
        "pair_gaps": gaps.dl.cpu().numpy(),
        "dual_u": gaps.u.cpu(),
        "dual_a": gaps.b.cpu(),
        "secant_scale": gaps.secant_scale.cpu(),
    }


def analyze_model(
    model: nn.Module,
    layer: str | nn.Module,
    train,
    test,
    clean: torch.Tensor | None = None,
    pairing: str = "input",
    n_sharp: int = 10,
    *,
    pairing_k: int = 1,
    seed: int = 0,
    pairing_layer: str | None = None,
    dense_max: int = DENSE_HESSIAN_MAX,
    lanczos_k: int = LANCZOS_K,
    basis: torch.Tensor | None = None,
    memory_limit: int | str | None = None,
    device: str | torch.device | None = None,
    logits=None,
    loss: str = "ce",
) -> Analysis:
    """Decompose the generalization gap of any ``model`` at its ``nn.Linear`` ``layer`` (a
    name such as "classifier.3", or the module itself).

    ``train`` and ``test`` are ``(x, y)`` pairs of tensors or numpy arrays, or DataLoaders of
    ``(x, y)`` batches (read in order, twice: both passes must agree, so switch off shuffling
    and augmentation). ``x`` may have any shape (images N x C x H x W); ``y`` holds class
    labels, and the loss is **cross-entropy** of the model's logits (N, n_classes), the mean
    over samples, with no regularizer (``loss="mse"``: the squared error of their softmax
    against the one-hot label, mean over classes; every gap is then in that loss's units);
    ``logits`` picks them from an output that is not a
    tensor (a key or index such as "logits" or 0, an attribute name, or a callable). ``clean``
    (bool per training sample, default all) selects the samples of the training loss, the
    Hessian and the pairing. The model is analysed as a float64 copy in eval mode, without
    hooks; a ``torch.compile``d model as its original module.

    The duality must hold (awbench/analysis/duality_guard.py): the layer's output must be the
    only way its input reaches the logits (no residual or skip path around it), its weight
    not shared, no hook on it. Otherwise DualityError (a ValueError) names the cause, before
    the work where it can be seen and after the dual losses when some pair's duality error
    exceeds DUALITY_RTOL.

    ``pairing``: "input" (nearest same-class training sample in raw input space, flattened),
    "feature" (nearest in the input space of ``pairing_layer``, any named module, by default
    the analysed layer), "knn" (``pairing_k`` nearest) or "random" (drawn with ``seed``);
    distances and features are computed in chunks, so memory stays bounded.
    ``n_sharp``, ``dense_max``, ``lanczos_k``, ``basis`` and ``memory_limit`` (bytes, or "2G")
    are as in :func:`analyze`. ``device`` ("cpu", "cuda", "cuda:1"; None: where the model is)
    is where the float64 copy and the samples go; every tensor of the result is on the CPU.
    ValueError naming the parameter, its value and what is allowed for every bad argument;
    NondeterministicModelError when the model is not deterministic in eval mode.
    """
    model = unwrap_compiled(model)
    check_loss(loss)
    s = read_samples(train, test, clean)
    check_arguments(pairing, n_sharp, pairing_k, seed, pairing_layer)
    routes = check_routes(dense_max, lanczos_k, basis, memory_limit)
    check_finite(model, s.x_train, s.x_test)
    target = resolve_layer(model, layer, analysis_device(device, model), logits, loss)
    s = Samples(
        *(t.to(target.device) for t in (as_float64(s.x_train), s.y_train, as_float64(s.x_test))),
        s.y_test.to(target.device),
        s.clean.to(target.device),
    )
    check_model(target, s, pairing_layer if pairing == "feature" else None)
    if routes.basis is not None:
        check_basis(routes.basis, target.n_weights, target.label)
    rule = PairingRule(pairing, pairing_k, seed, pairing_layer)
    return _decompose(target, s, rule, n_sharp, routes)


def _decompose(target: ResolvedLayer, s: Samples, rule: PairingRule, n_sharp, routes) -> Analysis:
    """The decomposition at a resolved layer of a checked float64 model in eval mode."""
    x_train, x_test = s.x_train, s.x_test
    x_clean, y_clean = x_train[s.clean], s.y_train[s.clean]

    pairs = active_pairs(target, rule, s)
    check_analysis_memory(target, x_clean, y_clean, len(pairs.test), routes)
    gaps = pair_gaps(target, pairs, x_train, x_test, s.y_test)
    lam, V, method = eigenbasis(target, x_clean, y_clean, routes)
    proj = _project(gaps, V)
    directions = direction_table(proj.theta, proj.gamma, lam)
    identity = _identity_terms(gaps.dl, directions, n_sharp, proj)
    second_order = _second_order_terms(
        target, x_train[pairs.train], pairs, gaps, lam, V.shape[1], directions, method
    )
    losses = _model_losses(target.model, x_test, s.y_test, x_clean, y_clean, target.loss)
    return Analysis(
        layer=target.label,
        pairing=rule.method,
        **identity,
        **second_order,
        **losses,
        **_per_pair_fields(pairs, gaps),
        duality_error=gaps.duality_error,
        weight_norm=float(target.module.weight.detach().norm()),
        lam_max=float(np.nanmax(lam.numpy())) if method != "given" else float("nan"),
        hessian_method=method,
        directions=directions,
        eigenvectors=V.cpu(),
        loss=target.loss,
    )


def analyze(
    run,
    layer: str | None = None,
    pairing: str | None = None,
    n_sharp: int | None = None,
    dense_max: int = DENSE_HESSIAN_MAX,
    lanczos_k: int = LANCZOS_K,
    basis: torch.Tensor | None = None,
    memory_limit: int | None = None,
) -> Analysis:
    """Decompose ``run``'s generalization gap at ``layer`` (defaults from ``run.config``).

    :func:`analyze_model` on the run's model and data, with the config's pairing settings.
    Everything is computed in float64 on a copy of the model in eval mode. ``basis`` (P, m)
    with orthonormal columns replaces the Hessian eigenbasis (the identity holds for any
    complete orthonormal basis; ``complement_gap`` covers what an incomplete one misses).
    ``memory_limit`` (bytes) caps the estimated memory (awbench/analysis/memory.py): over it,
    AnalysisMemoryError (a ValueError) names the estimate before any large allocation.
    """
    cfg, data = run.config, run.data
    return analyze_model(
        run.model,
        layer or cfg.layer,
        (data.x_train, data.y_train),
        (data.x_test, data.y_test),
        data.clean,
        pairing or cfg.pairing,
        cfg.n_sharp if n_sharp is None else n_sharp,
        pairing_k=cfg.pairing_k,
        seed=cfg.seed,
        dense_max=dense_max,
        lanczos_k=lanczos_k,
        basis=basis,
        memory_limit=memory_limit,
        loss=cfg.loss,
    )


def _output_grads(target: ResolvedLayer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample dl_k/dz_k at the layer's output (eval mode), shape (K, n_out)."""
    model, grads = target.model, []
    with frozen_parameters(model), model_mode(model, "eval"), torch.enable_grad():
        for rows in row_chunks(len(y)):
            with output_as_leaf(model, target.module) as captured:
                total = summed_loss(target.loss, model(x[rows]), y[rows])
                grads.append(torch.autograd.grad(total, captured["z"])[0])
    return torch.cat(grads)


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
