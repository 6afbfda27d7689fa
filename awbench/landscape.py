"""Loss landscapes: 1-D slices and 2-D planes along chosen directions in parameter space.

A direction is a flat float64 vector over a parameter subset (the same ``params`` and the same
order as :class:`awbench.curvature.flat.FlatModel`, hence as ``top_eigenpairs(...).vectors``). The
loss at ``theta0 + t1 d1 + t2 d2`` is evaluated functionally (``torch.func.functional_call``
on copies): the model's own parameters are never written, so nothing can be left displaced
by an error halfway through a sweep.
Grid points are batched with ``torch.func.vmap`` where that is faster (see :func:`losses_at`).

Directions:

- Hessian eigenvectors (:func:`awbench.curvature.eigensolvers.top_eigenpairs`): unit vectors, so ``t`` is in
  eigen-units and the quadratic model along v_n is ``L0 + 1/2 lam_n t^2``.
- Dual-weight directions (:func:`dual_directions`): the mean dual weight and the principal
  directions of the dual-weight cloud of the analysed layer (docs/science.md#3-the-gap-decomposition).
- Filter-normalised Gaussian random directions (:func:`random_directions`, Li et al. 2018):
  zero-mean Gaussian entries, each filter (row of a weight matrix, with its bias entry when
  ``bias="filter"``) rescaled once to the norm of the same filter of the model; the second
  and later directions are orthogonalised filter by filter, so they are exactly orthogonal
  to the first and stay filter-normalised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from awbench.curvature.eigensolvers import top_eigenpairs
from awbench.curvature.flat import FlatModel, check_determinism, model_mode, per_sample_loss
from awbench.curvature.operators import HessianOperator

# Memory cap of one pass: grid points x samples x activations (elements of ``dtype``).
MAX_ELEMENTS = 2**24
# Work per vmap-batched pass that pays for itself. On a CPU a point over thousands of samples
# is already one large GEMM per layer and batching points only adds memory traffic (measured:
# slower above ~2^18 elements per pass); below that, batching removes per-call overhead. A
# GPU wants large batches.
BATCH_ELEMENTS = {"cpu": 2**18, "cuda": 2**26}


class Slice1D(NamedTuple):
    """Loss along ``theta0 + t d``: ``loss[i]`` at ``t[i]``; ``quadratic = loss0 + 1/2 curvature t^2``
    with ``curvature = d^T H d`` (the eigenvalue for a unit eigenvector) and ``slope = grad . d``."""

    t: np.ndarray
    loss: np.ndarray
    quadratic: np.ndarray
    loss0: float
    curvature: float
    slope: float
    label: str


class Plane2D(NamedTuple):
    """Loss on ``theta0 + t1[i] d1 + t2[j] d2``: ``loss[i, j]`` (rows follow t1, columns t2)."""

    t1: np.ndarray
    t2: np.ndarray
    loss: np.ndarray
    loss0: float
    labels: tuple


class DualDirections(NamedTuple):
    """Directions from dual weights dW_k of one layer, as flat vectors over ``params``.

    ``mean``: the mean dual weight (t = 1 moves the layer by it). ``components`` (n, P): unit
    principal directions of the centred cloud, ``sigma`` (n,) its population standard
    deviation along each (t = sigma[i] is one standard deviation), ``explained`` (n,) the
    fraction of the cloud's variance each carries."""

    mean: torch.Tensor
    components: torch.Tensor
    sigma: np.ndarray
    explained: np.ndarray


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


def _activation_elements(flat: FlatModel, x: torch.Tensor) -> int:
    """Floating elements every module outputs for one sample (to size batched passes)."""
    total = [0]

    def count(mod, inp, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    handles = [m.register_forward_hook(count) for m in flat.model.modules()]
    try:
        with torch.no_grad():
            flat.logits(flat.theta0, x[:1])
    finally:
        for h in handles:
            h.remove()
    return max(total[0], 1)


def losses_at(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: torch.Tensor,
    coords: torch.Tensor,
    *,
    params=None,
    mode: str = "eval",
    dtype: torch.dtype = torch.float64,
    loss="cross_entropy",
    check: str = "raise",
    max_elements: int = MAX_ELEMENTS,
) -> np.ndarray:
    """Mean loss over (x, y) at ``theta0 + coords[g] @ directions`` for every grid point g.

    ``directions`` (r, P) and ``coords`` (G, r). Samples are chunked only when one point's
    pass (samples x activations) would exceed ``max_elements``. Grid points are batched with
    ``torch.func.vmap`` when a pass is small enough for batching to pay (see
    BATCH_ELEMENTS: many points over a few hundred samples on a CPU, large batches on a GPU),
    else evaluated one after the other; a model that ``vmap`` cannot batch falls back to one
    point at a time. Returns a float64 array of shape (G,).
    """
    flat = FlatModel(model, params, dtype)
    x, y = flat.prepare(x, y)
    D = torch.as_tensor(directions).to(flat.device, flat.dtype)
    C = torch.as_tensor(coords).to(flat.device, flat.dtype)
    if D.ndim == 1:
        D = D[None]
    if D.shape[1] != flat.size:
        raise ValueError(
            f"directions have {D.shape[1]} entries but params select {flat.size} parameters"
        )
    if C.ndim != 2 or C.shape[1] != D.shape[0]:
        raise ValueError(f"coords must have shape (G, {D.shape[0]}), got {tuple(C.shape)}")
    per_sample = per_sample_loss(loss)
    n = x.shape[0]
    with model_mode(model, mode):
        check_determinism(model, mode, x, check, chunked=True)
        per_sample_elements = _activation_elements(flat, x)
        n_chunk = max(1, min(n, max_elements // per_sample_elements))
        budget = min(max_elements, BATCH_ELEMENTS.get(flat.device.type, BATCH_ELEMENTS["cpu"]))
        points = max(1, budget // (per_sample_elements * n_chunk))

        def point_loss(theta, xc, yc):
            return per_sample(flat.logits(theta, xc), yc).sum()

        batched = torch.func.vmap(point_loss, in_dims=(0, None, None))

        def one_by_one(thetas, xc, yc):
            return torch.stack([point_loss(t, xc, yc) for t in thetas])

        evaluate = batched if points > 1 else one_by_one
        out = torch.zeros(C.shape[0], dtype=flat.dtype, device=flat.device)
        with torch.no_grad():
            for g0 in range(0, C.shape[0], points):
                thetas = flat.theta0 + C[g0 : g0 + points] @ D
                for s in range(0, n, n_chunk):
                    xc, yc = x[s : s + n_chunk], y[s : s + n_chunk]
                    try:
                        out[g0 : g0 + points] += evaluate(thetas, xc, yc)
                    except RuntimeError:
                        if evaluate is one_by_one:
                            raise
                        evaluate = one_by_one  # no batching rule for some op: go point by point
                        out[g0 : g0 + points] += evaluate(thetas, xc, yc)
    return (out / n).cpu().numpy()


def _curvature_and_slope(model, x, y, d, params, mode, dtype, loss, check, need_curvature=True):
    op = HessianOperator(model, x, y, params, loss=loss, mode=mode, dtype=dtype, check=check)
    if d.numel() != op.size:
        raise ValueError(
            f"direction has {d.numel()} entries but params select {op.size} parameters"
        )
    d = d.to(op.flat.device, op.flat.dtype)
    c = float(d @ op.apply(d)) if need_curvature else float("nan")
    return c, float(op.gradient @ d), op.loss0


def slice_1d(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    direction: torch.Tensor,
    t: Sequence[float] | np.ndarray,
    *,
    params=None,
    curvature: float | None = None,
    label: str = "",
    mode: str = "eval",
    dtype: torch.dtype = torch.float64,
    loss="cross_entropy",
    check: str = "raise",
    max_elements: int = MAX_ELEMENTS,
) -> Slice1D:
    """Loss along ``theta0 + t * direction`` with the quadratic model ``loss0 + 1/2 lam t^2``.

    ``lam = d^T H d`` is computed exactly with one Hessian-vector product unless ``curvature``
    is given (pass an eigenvalue to skip it); ``slope = grad . d`` is reported beside it.
    For a unit Hessian eigenvector ``t`` is in eigen-units and ``lam`` is its eigenvalue.
    (The letter c is kept for the per-direction correlation c_n.)
    """
    d = torch.as_tensor(direction, dtype=torch.float64).reshape(-1)
    ts = np.asarray(t, dtype=np.float64).reshape(-1)
    c, slope, loss0 = _curvature_and_slope(
        model, x, y, d, params, mode, dtype, loss, check, need_curvature=curvature is None
    )
    if curvature is not None:
        c = float(curvature)
    values = losses_at(
        model,
        x,
        y,
        d[None],
        torch.from_numpy(ts)[:, None],
        params=params,
        mode=mode,
        dtype=dtype,
        loss=loss,
        check="off",
        max_elements=max_elements,
    )
    return Slice1D(ts, values, loss0 + 0.5 * c * ts**2, loss0, c, slope, label)


def eigen_slices(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int,
    t: Sequence[float] | np.ndarray,
    *,
    params=None,
    which: str = "LA",
    mode: str = "eval",
    seed: int = 0,
    max_elements: int = MAX_ELEMENTS,
) -> list[Slice1D]:
    """1-D slices along the top-k Hessian eigenvectors (eigen-units), each with 1/2 lam t^2."""
    eig = top_eigenpairs(model, x, y, k, params=params, which=which, mode=mode, seed=seed)
    return [
        slice_1d(
            model,
            x,
            y,
            eig.vectors[i],
            t,
            params=params,
            curvature=float(eig.values[i]),
            label=f"v{i + 1} (lam={float(eig.values[i]):.3g})",
            mode=mode,
            max_elements=max_elements,
        )
        for i in range(k)
    ]


def plane_2d(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    d1: torch.Tensor,
    d2: torch.Tensor,
    t1: Sequence[float] | np.ndarray,
    t2: Sequence[float] | np.ndarray,
    *,
    params=None,
    labels: tuple = ("d1", "d2"),
    mode: str = "eval",
    dtype: torch.dtype = torch.float64,
    loss="cross_entropy",
    check: str = "raise",
    max_elements: int = MAX_ELEMENTS,
) -> Plane2D:
    """Loss on the plane ``theta0 + a d1 + b d2`` over the grid t1 x t2 (batched passes)."""
    t1 = np.asarray(t1, dtype=np.float64).reshape(-1)
    t2 = np.asarray(t2, dtype=np.float64).reshape(-1)
    D = torch.stack(
        [
            torch.as_tensor(d1, dtype=torch.float64).reshape(-1),
            torch.as_tensor(d2, dtype=torch.float64).reshape(-1),
        ]
    )
    A, B = np.meshgrid(t1, t2, indexing="ij")
    coords = torch.from_numpy(np.stack([A.ravel(), B.ravel()], axis=1))
    values = losses_at(
        model,
        x,
        y,
        D,
        coords,
        params=params,
        mode=mode,
        dtype=dtype,
        loss=loss,
        check=check,
        max_elements=max_elements,
    )
    loss0 = float(
        losses_at(
            model,
            x,
            y,
            D,
            torch.zeros(1, 2),
            params=params,
            mode=mode,
            dtype=dtype,
            loss=loss,
            check="off",
        )[0]
    )
    return Plane2D(t1, t2, values.reshape(len(t1), len(t2)), loss0, tuple(labels))


# --------------------------------------------------------------------------------------
# Directions
# --------------------------------------------------------------------------------------


def _filter_ids(flat: FlatModel, model: nn.Module, bias: str) -> torch.Tensor:
    """Filter id of every flat entry (-1: entry gets no random component).

    A filter is a slice along dim 0 of a parameter with 2+ dims (a Linear layer's output
    unit, a conv filter). With ``bias="filter"`` a bias entry joins the filter of its unit
    when the module's weight is among the parameters; other 1-D parameters (and all of them
    with ``bias="zero"``) get 0, as Li et al.'s "ignore biasbn".
    """
    if bias not in ("filter", "zero"):
        raise ValueError(f"bias={bias!r} is not allowed: expected 'filter' or 'zero'")
    ids = torch.full((flat.size,), -1, dtype=torch.long)
    where = flat.slices()
    next_id = 0
    first_of = {}
    for name, shape in zip(flat.names, flat.shapes):
        if len(shape) >= 2:
            rows = shape[0]
            per = int(np.prod(shape[1:]))
            sl = where[name]
            ids[sl] = (next_id + torch.arange(rows)).repeat_interleave(per)
            first_of[name] = next_id
            next_id += rows
    if bias == "filter":
        for name, shape in zip(flat.names, flat.shapes):
            if len(shape) == 1 and name.endswith(".bias"):
                weight = name[: -len("bias")] + "weight"
                if weight in first_of and flat.shapes[flat.names.index(weight)][0] == shape[0]:
                    ids[where[name]] = first_of[weight] + torch.arange(shape[0])
    return ids


def _group_sum(values: torch.Tensor, ids: torch.Tensor, n: int) -> torch.Tensor:
    keep = ids >= 0
    return torch.zeros(n, dtype=values.dtype).index_add_(0, ids[keep], values[keep])


def random_directions(
    model: nn.Module,
    n: int = 2,
    seed: int = 0,
    *,
    params=None,
    bias: str = "filter",
) -> torch.Tensor:
    """``n`` filter-normalised Gaussian directions (Li et al. 2018), shape (n, P), float64.

    Entries are drawn N(0, 1) (zero mean, seeded); each filter of a direction is rescaled to
    the norm of the same filter of the model, exactly once (see ``bias``: "filter" makes a
    bias entry part of its unit's filter, "zero" leaves biases and other 1-D parameters at 0).
    Direction k >= 2 is Gram-Schmidt-orthogonalised against the earlier ones *within each
    filter* before rescaling, so directions are exactly orthogonal and all filter-normalised.
    A filter of the model with zero norm gets a zero direction there.
    """
    flat = FlatModel(model, params, torch.float64)
    ids = _filter_ids(flat, model, bias)
    n_filters = int(ids.max()) + 1 if (ids >= 0).any() else 0
    if n_filters == 0:
        raise ValueError(
            "params select no parameter with filters (2+ dims): every direction would be zero"
        )
    gen = torch.Generator().manual_seed(int(seed))
    theta = flat.theta0.cpu()
    target = _group_sum(theta * theta, ids, n_filters).sqrt()
    mask = (ids >= 0).to(torch.float64)
    out = []
    for _ in range(int(n)):
        d = torch.randn(flat.size, generator=gen, dtype=torch.float64) * mask
        for prev in out:  # per-filter Gram-Schmidt: exact orthogonality, filter norms kept
            num = _group_sum(d * prev, ids, n_filters)
            den = _group_sum(prev * prev, ids, n_filters)
            coef = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)
            d = d - coef[ids.clamp(min=0)] * prev * mask
        norm = _group_sum(d * d, ids, n_filters).sqrt()
        scale = torch.where(norm > 0, target / torch.where(norm > 0, norm, 1.0), 0.0)
        out.append(d * scale[ids.clamp(min=0)] * mask)
    return torch.stack(out)


def dual_directions(
    model: nn.Module,
    dual: torch.Tensor,
    layer: str = "fc2",
    n_components: int = 2,
    *,
    params=None,
) -> DualDirections:
    """Mean and principal directions of a layer's dual weights, as flat vectors over ``params``.

    ``dual`` (K, n_out, n_in) are dual weights of ``layer`` (``aw.dual_weights``); shape
    (K, n_out, n_in + 1) for ``[W | b]`` when the layer has a bias. ``params`` selects the
    parameters the vectors run over, as everywhere (None: all, matching ``slice_1d``'s
    default; ``layer`` for the layer alone); the layer's weight (and bias, for the augmented
    shape) must be among them, and entries of other parameters are zero.
    """
    flat = FlatModel(model, params, torch.float64)
    dual = torch.as_tensor(dual).to(torch.float64).cpu()
    weight, bias = f"{layer}.weight", f"{layer}.bias"
    if weight not in flat.names:
        raise ValueError(f"params must include {weight!r} to place dual weights of layer={layer!r}")
    shape = flat.shapes[flat.names.index(weight)]
    if dual.ndim != 3 or dual.shape[1] != shape[0] or dual.shape[2] not in (shape[1], shape[1] + 1):
        raise ValueError(
            f"dual must have shape (K, {shape[0]}, {shape[1]}) (or n_in + 1 with a bias), got {tuple(dual.shape)}"
        )
    if dual.shape[2] == shape[1] + 1 and bias not in flat.names:
        raise ValueError(f"dual has a bias column but params do not include {bias!r}")
    K = dual.shape[0]
    where = flat.slices()
    X = torch.zeros(K, flat.size, dtype=torch.float64)
    X[:, where[weight]] = dual[:, :, : shape[1]].reshape(K, -1)
    if dual.shape[2] == shape[1] + 1:
        X[:, where[bias]] = dual[:, :, shape[1]]
    mean = X.mean(0)
    centred = X - mean
    n = int(min(n_components, K, flat.size))
    _, S, Vt = torch.linalg.svd(centred, full_matrices=False)
    comps = Vt[:n].clone()
    idx = comps.abs().argmax(1)
    comps *= torch.sign(comps[torch.arange(n), idx])[:, None]
    var = S**2 / K
    total = float(var.sum())
    return DualDirections(
        mean, comps, var[:n].sqrt().numpy(), (var[:n] / total).numpy() if total > 0 else np.zeros(n)
    )


def span(lam_max: float, rise: float = 0.25) -> float:
    """Half-width t where the quadratic model 1/2 lam_max t^2 rises by ``rise`` nats."""
    return math.sqrt(2.0 * rise / lam_max) if lam_max > 0 else 1.0


def unit(d):
    """``d`` scaled to unit Euclidean norm."""
    return d / d.norm()


def fd_curvature(model, x, y, direction, params, h: float = 1e-5) -> float:
    """Second finite difference of the loss at 0 along ``direction``: (L(h) + L(-h) - 2 L(0)) / h^2."""
    L = losses_at(
        model,
        x,
        y,
        direction[None],
        torch.tensor([[-h], [0.0], [h]], dtype=torch.float64),
        params=params,
    )
    return float((L[0] + L[2] - 2 * L[1]) / h**2)


def rayleigh(model, x, y, directions: dict, params) -> pd.DataFrame:
    """dᵀHd/|d|² of each named direction (one Hessian-vector product each); ``directions`` as
    returned by :func:`landscape_directions`."""
    op = HessianOperator(model, x, y, params)
    rows = []
    for name, (kind, d, *_) in directions.items():
        d = d.to(op.flat.dtype).reshape(-1)
        rows.append({"direction": name, "kind": kind, "rayleigh": float(d @ op.apply(d) / (d @ d))})
    return pd.DataFrame(rows)


def rayleigh_ratio(table: pd.DataFrame) -> float:
    """Mean Rayleigh quotient of the dual-weight directions over that of the random ones."""
    mean = table.groupby("kind")["rayleigh"].mean()
    return float(mean.get("dual weight", np.nan) / mean.get("random", np.nan))


def landscape_directions(model, eig, dual_weights, layer: str, n_eigen: int, seed: int) -> dict:
    """Named directions over ``layer``'s weights: ``name -> (kind, vector, t range, label)``.

    Eigenvectors (unit; t in eigen-units up to where 1/2 lam_1 t^2 rises by 1/4 nat), the mean
    dual weight (t = 1 moves the layer by it), the dual weights' first two principal
    directions scaled to one standard deviation, and two filter-normalised random directions
    (Li et al.; t = 1 moves every unit by its own norm)."""
    lam1 = float(eig.values[0])
    dual = dual_directions(model, dual_weights, layer, n_components=2, params=layer)
    rand = random_directions(model, 2, seed=seed, params=layer)
    out = {}
    for i in range(n_eigen):
        lam = float(eig.values[i])
        out[f"v{i + 1}"] = ("eigenvector", eig.vectors[i], span(lam1), f"v{i + 1} (λ={lam:.3g})")
    out["dual mean"] = ("dual weight", dual.mean, 2.0, "mean dual weight")
    for i in range(len(dual.sigma)):
        label = f"dual PC{i + 1} ({100 * dual.explained[i]:.0f} % of variance)"
        out[f"dual PC{i + 1}"] = ("dual weight", dual.components[i] * dual.sigma[i], 3.0, label)
    for i in range(len(rand)):
        out[f"random {i + 1}"] = ("random", rand[i], 1.0, f"random {i + 1}")
    return out


def slices(model, x, y, directions: dict, kind: str, points: int, layer: str, eig=None) -> list:
    """1-D slices along every direction of ``kind`` (eigenvectors get their eigenvalue as the
    quadratic model's curvature; the others get d^T H d computed exactly)."""
    out = []
    for i, (k, d, half, label) in enumerate(v for v in directions.values() if v[0] == kind):
        curvature = float(eig.values[i]) if kind == "eigenvector" and eig is not None else None
        t = np.linspace(-half, half, points)
        out.append(slice_1d(model, x, y, d, t, params=layer, curvature=curvature, label=label))
    return out
