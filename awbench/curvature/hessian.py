"""Hessians of the training loss: the analysed layer's dense fp64 Hessian.

The layer Hessian uses that a Linear layer's output ``z = W a`` is linear in ``W``: the
Hessian of the mean loss w.r.t. ``W`` is exactly ``mean_k G_k (x) a_k a_k^T``, where ``G_k`` is
the Hessian of sample k's loss w.r.t. its layer output. The loss is a sum over samples, so the
Hessian w.r.t. the whole output matrix ``Z`` is block diagonal and ``n_out`` batched
Hessian-vector products (one per output unit, over all samples at once) recover every ``G_k``.

Whole-network curvature (any parameter subset) lives below ``layer_hessian``:
:class:`HessianOperator` and :class:`GaussNewtonOperator` (scipy LinearOperators with torch
products, exact full-batch mean, explicit train/eval mode, determinism check),
:func:`top_eigenpairs` (dense eigh, thick-restart Lanczos or ARPACK), :func:`hessian_trace`
(Hutchinson / Hutch++ with standard errors) and :func:`spectral_density` (stochastic Lanczos
quadrature). For awbench's MLP the products use an explicit R-operator over a cached forward
pass and the dense matrices exact Kronecker-factored layer blocks; any other module goes
through autograd (double backward over a gradient graph built once).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse.linalg as sla
import threadpoolctl
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from awbench.activations import ACTIVATIONS
from awbench.nn import engine


def _layer(model: nn.Module, layer: str) -> nn.Linear:
    module = dict(model.named_modules()).get(layer)
    if not isinstance(module, nn.Linear):
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(  # noqa: TRY004 - a bad layer name is a bad value, as every input error
            f"layer={layer!r} is not a Linear layer of this model: expected one of {linear}"
        )
    return module


@contextlib.contextmanager
def output_as_leaf(model: nn.Module, layer: str):
    """Within the block, ``layer``'s output is a fresh leaf tensor that requires grad.

    Yields a dict that each forward pass fills with ``"z"`` (that leaf, so derivatives of the
    loss w.r.t. the layer output are one autograd call away) and ``"a"`` (the layer's input).
    """
    module = _layer(model, layer)
    captured: dict[str, torch.Tensor] = {}

    def swap_output(mod, inputs, output):
        captured["a"] = inputs[0].detach()
        captured["z"] = output.detach().requires_grad_(True)
        return captured["z"]

    handle = module.register_forward_hook(swap_output)
    try:
        yield captured
    finally:
        handle.remove()


def output_hessians(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """Per-sample Hessians ``G_k`` of the cross-entropy w.r.t. ``layer``'s output.

    Returns ``(G, a)``: G of shape (N, n_out, n_out) and the layer's inputs a of shape
    (N, n_in), both float64, from the model evaluated as it is (callers choose the mode).
    """
    if mlp_backend_reason(model, "cross_entropy", "train" if model.training else "eval") is None:
        return _mlp_output_hessians(model, layer, x, y)
    with output_as_leaf(model, layer) as captured, torch.enable_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, y, reduction="sum")
        z = captured["z"]
        (grad_z,) = torch.autograd.grad(loss, z, create_graph=True)
        n_out = z.shape[1]
        if not grad_z.requires_grad:  # downstream is piecewise linear and loss-free: G = 0
            return torch.zeros(z.shape[0], n_out, n_out, dtype=torch.float64), captured[
                "a"
            ].double()
        unit = torch.eye(n_out, dtype=z.dtype, device=z.device)
        tangents = unit[:, None, :].expand(n_out, z.shape[0], n_out)
        (cols,) = torch.autograd.grad(grad_z, z, grad_outputs=tangents, is_grads_batched=True)
    # cols[i, k, :] = G_k[:, i]
    G = cols.permute(1, 2, 0).double()
    return 0.5 * (G + G.transpose(1, 2)), captured["a"].double()


def _mlp_output_hessians(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """``output_hessians`` for an awbench MLP by the engine's second-order backpropagation."""
    target = _layer(model, layer)
    depth = next(i for i, name in enumerate(model.layer_names) if getattr(model, name) is target)
    G, a = engine.output_hessians(
        engine.mlp_layers(model), x, y, engine.activation_of(model), depth
    )
    G = G.double()
    return (G + G.transpose(1, 2)).mul_(0.5), a.double()


def layer_hessian(
    model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, with_bias: bool = False
) -> torch.Tensor:
    """Dense float64 Hessian of the mean cross-entropy over (x, y) w.r.t. ``layer``'s weight.

    Rows and columns follow ``weight.flatten()`` (PyTorch layout (n_out, n_in), row-major).
    With ``with_bias`` the parameter is ``[W | b]`` flattened the same way, so its size is
    n_out * (n_in + 1). The model is evaluated in eval mode (dropout off) and left in the
    mode it was in; no regularizer enters.
    """
    module = _layer(model, layer)
    if with_bias and module.bias is None:
        raise ValueError(f"with_bias=True but layer={layer!r} has no bias")
    was_training = model.training
    model.eval()
    try:
        G, a = output_hessians(model, layer, x, y)
    finally:
        model.train(was_training)
    if with_bias:
        a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype, device=a.device)], dim=1)
    n, n_out, n_in = len(a), G.shape[1], a.shape[1]
    # S[(i,o),(j,p)] = sum_k G_k[i,o] a_kj a_kp is one GEMM. G_k and a_k a_k^T are symmetric,
    # so only their upper triangles enter it (a quarter of the flops), and a gather rebuilds
    # H[(i,j),(o,p)] = S[(i,o),(j,p)] from the triangular S.
    tri_out, idx_out = _triangle(n_out, G.device)
    tri_in, idx_in = _triangle(n_in, a.device)
    # Both factors are built sample-last, (triangle, N): row gathers of contiguous rows, and a
    # GEMM with this operand layout runs ~1.5x faster here than the sample-first one.
    G_tri = G.reshape(n, n_out * n_out).T[tri_out[0] * n_out + tri_out[1]]
    a_t = a.T.contiguous()
    outer_tri = a_t[tri_in[0]] * a_t[tri_in[1]]
    S = (G_tri @ outer_tri.T) / n
    H = S[idx_out[:, None, :, None], idx_in[None, :, None, :]]  # (i, j, o, p)
    # Exactly symmetric by construction: H[(o,p),(i,j)] reads the same entry of S.
    return H.reshape(n_out * n_in, n_out * n_in)


@functools.cache
def _blas_controller() -> threadpoolctl.ThreadpoolController:
    # Scanning the loaded libraries costs milliseconds; once is enough (scipy's are loaded).
    return threadpoolctl.ThreadpoolController()


def symmetric_eigh(H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All eigenpairs of a dense symmetric float64 matrix, eigenvalues ascending.

    A coordinate whose row and column are exactly zero (a unit that is dead on every sample
    makes many) is an exact eigenvector with eigenvalue 0, so only the rest goes to LAPACK's
    divide-and-conquer ``syevd``: eigh is cubic, and 10% fewer coordinates saves 27%. With
    one torch thread (a sweep worker) that is scipy's LAPACK held to one thread, the faster
    one single-threaded here; with more, torch's own, so the work stays in torch's thread
    pool (a second pool's idling threads slow every following torch op by up to 2x on a
    two-core machine: bench/analysis_speed.py).
    Returns CPU tensors ``(lam, V)`` with ``H = V diag(lam) V^T``.
    """
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H of shape {tuple(H.shape)} is not allowed: expected a square matrix")
    H = H.detach().cpu().double().numpy()
    P = H.shape[0]
    live = (H != 0).any(axis=0)
    live_idx, dead_idx = np.flatnonzero(live), np.flatnonzero(~live)
    sub = H[np.ix_(live_idx, live_idx)]
    if torch.get_num_threads() == 1:
        with _blas_controller().limit(limits=1, user_api="blas"):
            lam_live, V_live = scipy.linalg.eigh(
                sub, driver="evd", overwrite_a=True, check_finite=False
            )
    else:
        lam_t, V_t = torch.linalg.eigh(torch.from_numpy(sub))
        lam_live, V_live = lam_t.numpy(), V_t.numpy()
    if not len(dead_idx):
        return torch.from_numpy(lam_live), torch.from_numpy(V_live)
    # Place the exact zero eigenpairs among the ascending live ones, writing V once.
    lam = np.concatenate([lam_live, np.zeros(len(dead_idx))])
    order = np.argsort(lam, kind="stable")
    column = np.empty(P, dtype=np.int64)
    column[order] = np.arange(P)
    rows = np.zeros((len(live_idx), P))
    rows[:, column[: len(live_idx)]] = (
        V_live  # a column scatter then a row copy: 2x faster than np.ix_
    )
    V = np.zeros((P, P))
    V[live_idx] = rows
    V[dead_idx, column[len(live_idx) :]] = 1.0
    return torch.from_numpy(lam[order]), torch.from_numpy(V)


def _triangle(m: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper-triangle indices of an m x m matrix and, per (r, c), the position of (min, max)."""
    tri = torch.triu_indices(m, m, device=device)
    pos = torch.empty(m, m, dtype=torch.long, device=device)
    pos[tri[0], tri[1]] = torch.arange(tri.shape[1], device=device)
    pos[tri[1], tri[0]] = pos[tri[0], tri[1]]
    return tri, pos


# =========================================================================================
# Whole-network curvature: Hessian / Gauss-Newton operators, Lanczos top-k, trace, density.
# =========================================================================================
#
# Everything below works on a *flat* parameter vector theta over a chosen subset of the
# model's parameters (named as in ``model.named_parameters()``, in that order). The model is
# evaluated functionally (``torch.func.functional_call``) at a float64 copy of its parameters,
# so no operator, product or estimator ever writes to the model's own tensors.

# Up to this many parameters top_eigenpairs(method="auto") builds the dense Hessian (exact to
# rounding: Kronecker-factored layer blocks for a ReLU MLP, else P products in batched blocks)
# and calls eigh, which returns every pair exactly, ties included; above it, thick-restart
# Lanczos over the operator. At P = 2048 the matrix takes 32 MiB and eigh about a second;
# Lanczos for a top-10 to 1e-12 typically takes 40-150 products.
DENSE_MAX_PARAMS = 2048

MODES = ("eval", "train")


class NondeterministicModelError(ValueError):
    """The loss is not a deterministic, per-sample function of the parameters in this mode."""


@contextlib.contextmanager
def model_mode(model: nn.Module, mode: str):
    """Put every submodule in ``mode`` ("eval" or "train") and restore each one's flag after."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed: expected 'eval' or 'train'")
    flags = [(m, m.training) for m in model.modules()]
    model.train(mode == "train")
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def resolve_params(model: nn.Module, params: str | Iterable[str] | None = None) -> list[str]:
    """Parameter names selected by ``params``, in ``model.named_parameters()`` order.

    ``None`` selects every parameter; a string or each item of a list is either a parameter
    name ("fc2.weight") or a module name ("fc2", all of its parameters).
    """
    all_names = [n for n, _ in model.named_parameters()]
    if params is None:
        return all_names
    if isinstance(params, str):
        params = [params]
    modules = dict(model.named_modules())
    chosen: set[str] = set()
    for item in params:
        if item in all_names:
            chosen.add(item)
        elif item in modules and item != "":
            names = [f"{item}.{n}" for n, _ in modules[item].named_parameters()]
            if not names:
                raise ValueError(f"params: module {item!r} has no parameters")
            chosen.update(names)
        else:
            raise ValueError(
                f"params: {item!r} is neither a parameter nor a module of this model: expected "
                f"names from {all_names} or their module prefixes"
            )
    return [n for n in all_names if n in chosen]


def _per_sample_loss(loss: str | Callable) -> Callable:
    if loss == "cross_entropy":
        return lambda logits, y: F.cross_entropy(logits, y, reduction="none")
    if callable(loss):
        return loss
    raise ValueError(
        f"loss={loss!r} is not allowed: expected 'cross_entropy' or a callable "
        "(logits, y) -> per-sample losses of shape (n,)"
    )


class FlatModel:
    """A model evaluated functionally at a flat vector over a subset of its parameters.

    ``theta0`` is a detached copy (in ``dtype``) of the selected parameters, flattened in
    ``names`` order; every other parameter and buffer is held fixed (also copied, so that
    even BatchNorm's running statistics are never written). ``logits(theta, x)`` never touches
    the model's own tensors. The caller sets the mode (see :func:`model_mode`).
    """

    def __init__(self, model: nn.Module, params=None, dtype: torch.dtype | None = torch.float64):
        self.model = model
        self.names = resolve_params(model, params)
        named = dict(model.named_parameters())
        if not self.names:
            raise ValueError("params selects no parameters")
        first = named[self.names[0]]
        self.dtype = dtype if dtype is not None else first.dtype
        self.device = first.device

        def cast(t: torch.Tensor) -> torch.Tensor:
            t = t.detach()
            return t.to(self.dtype).clone() if t.is_floating_point() else t.clone()

        self.shapes = [tuple(named[n].shape) for n in self.names]
        self.numels = [named[n].numel() for n in self.names]
        self.offsets = np.concatenate([[0], np.cumsum(self.numels)]).astype(int)
        self.size = int(self.offsets[-1])
        self.theta0 = torch.cat([cast(named[n]).reshape(-1) for n in self.names])
        chosen = set(self.names)
        self.fixed = {n: cast(p) for n, p in named.items() if n not in chosen}
        self.fixed.update({n: cast(b) for n, b in model.named_buffers()})

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of a flat vector (P,) as a {name: tensor} dict in the parameters' shapes."""
        parts = torch.split(theta, self.numels, dim=-1)
        lead = theta.shape[:-1]
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes)}

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`unflatten` for one {name: tensor} dict (float64 copy)."""
        return torch.cat([tensors[n].detach().to(self.dtype).reshape(-1) for n in self.names])

    def slices(self) -> dict[str, slice]:
        """Where each parameter sits in the flat vector."""
        return {
            n: slice(int(a), int(b))
            for n, a, b in zip(self.names, self.offsets[:-1], self.offsets[1:])
        }

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, {**self.fixed, **self.unflatten(theta)}, (x,))

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        if x.shape[0] == 0:
            raise ValueError("x holds no samples")
        x = x.to(self.device, self.dtype if x.is_floating_point() else x.dtype)
        return x, y.to(self.device)


def determinism_report(
    model: nn.Module, mode: str = "eval", x: torch.Tensor | None = None
) -> list[str]:
    """What makes the loss in ``mode`` random or couple samples; empty when there is nothing.

    Structural checks: dropout with p > 0 active in train mode; BatchNorm using batch
    statistics (train mode, or ``track_running_stats=False``). With ``x`` also two empirical
    checks on up to 32 samples: two forward passes agree, and the first two samples' outputs
    do not depend on the rest of the batch. The model's mode is restored and nothing is written.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed: expected 'eval' or 'train'")
    issues = []
    train = mode == "train"
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 and train:
            issues.append(
                f"{name or 'model'} ({type(m).__name__}, p={m.p}) is active in train mode: every "
                "evaluation draws a new mask, so the loss is random"
            )
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (train or not m.track_running_stats):
            why = "in train mode" if train else "with track_running_stats=False"
            issues.append(
                f"{name or 'model'} ({type(m).__name__}) uses batch statistics {why}: samples are "
                "coupled, so the loss is not a mean of per-sample losses and chunking changes it"
            )
    if x is not None and len(x) > 0:
        fm = FlatModel(model, None, dtype=None)
        xs = torch.as_tensor(x)[:32].to(fm.device, fm.dtype)
        with torch.no_grad(), model_mode(model, mode):
            out1 = fm.logits(fm.theta0, xs)
            out2 = fm.logits(fm.theta0, xs)
            try:
                alone = fm.logits(fm.theta0, xs[:2])
            except (RuntimeError, ValueError) as err:  # e.g. BatchNorm refusing a tiny batch
                alone = None
                issues.append(f"a forward pass on 2 samples fails in {mode} mode ({err})")
        scale = 1.0 + float(out1.abs().max())
        diff = float((out1 - out2).abs().max())
        if diff > 1e-6 * scale:
            issues.append(f"two forward passes in {mode} mode differ (max |difference| {diff:.3g})")
        coupled = 0.0 if alone is None else float((alone - out1[: len(alone)]).abs().max())
        if len(xs) > 2 and coupled > 1e-6 * scale:
            issues.append(
                f"a sample's output in {mode} mode depends on the rest of the batch "
                f"(max |difference| {coupled:.3g})"
            )
    return issues


def _check_determinism(model, mode, x, check, chunked):
    if check == "off":
        return
    if check not in ("raise", "warn"):
        raise ValueError(f"check={check!r} is not allowed: expected 'raise', 'warn' or 'off'")
    issues = determinism_report(model, mode, x)
    if not issues:
        return
    message = (
        f"the loss in mode={mode!r} is not a deterministic mean of per-sample losses: "
        + "; ".join(issues)
        + ". Use mode='eval', or pass check='warn'/'off' to accept it"
        + (" (and do not chunk)" if chunked else "")
    )
    if check == "raise":
        raise NondeterministicModelError(message)
    warnings.warn(message, stacklevel=3)


def _chunks(n: int, chunk_size: int | None) -> list[slice]:
    if chunk_size is None:
        return [slice(0, n)]
    if int(chunk_size) < 1:
        raise ValueError(
            f"chunk_size={chunk_size!r} is not allowed: expected None or an integer >= 1"
        )
    c = int(chunk_size)
    return [slice(i, min(i + c, n)) for i in range(0, n, c)]


# ----------------------------------------------------------------------------------------
# Fast exact path for awbench's MLP: cached forward/backward, explicit R-operator passes
# ----------------------------------------------------------------------------------------


def mlp_backend_reason(model: nn.Module, loss, mode: str) -> str | None:
    """Why the explicit MLP backend cannot serve this case, or None when it can."""
    from awbench.nn.mlp import MLP

    if type(model) is not MLP:
        return "the model is not an awbench MLP"
    if not (isinstance(loss, str) and loss == "cross_entropy"):
        return "the loss is not 'cross_entropy'"
    if model.activation not in ACTIVATIONS:
        return f"activation {model.activation!r} has no explicit derivatives"
    if model.activation == "gelu" and getattr(model.act, "approximate", "none") != "none":
        return "GELU with the tanh approximation"
    if mode == "train" and model.dropout_p > 0:
        return "dropout is active in train mode"
    expected = {f"fc{i}.{k}" for i in range(1, model.n_layers + 1) for k in ("weight", "bias")}
    if not {n for n, _ in model.named_parameters()} <= expected or any(
        True for _ in model.buffers()
    ):
        return "the model has parameters or buffers beyond fc1..fcL"
    for m in model.modules():
        if m._forward_hooks or m._forward_pre_hooks or getattr(m, "_backward_hooks", None):
            return "a module has hooks"
    return None


class _MLPCurvature:
    """Exact Hessian / Gauss-Newton products and dense matrices for an awbench MLP.

    The forward pass, the softmax, the backpropagated errors delta_l = dL/dz_l and the
    activation derivatives are computed once per chunk and cached; a product is then the
    explicit R-operator (Pearlmutter 1994): an R-forward pass for Rz_l and an R-backward pass,
    every step one GEMM over all columns at once. The Gauss-Newton product drops the terms
    that carry first-order errors (delta, act''). Verified against autograd in the tests.

    The forward pass and the errors are the engine's (:mod:`awbench.nn.engine`); the R-passes
    stay here because they are what makes the operator fast: bench/spectrum_speed.py measured
    one product at 1.37x a gradient, against 2.31x for autograd's double backward.
    """

    def __init__(self, flat: FlatModel, x, y, n_total: int, chunks):
        model = flat.model
        self.L = model.n_layers
        self.act = engine.activation_of(model)
        self.n_total = n_total
        values = {**flat.fixed, **flat.unflatten(flat.theta0)}
        self.W = [values[f"fc{i + 1}.weight"] for i in range(self.L)]
        self.b = [values.get(f"fc{i + 1}.bias") for i in range(self.L)]
        where = flat.slices()
        self.wslice = [where.get(f"fc{i + 1}.weight") for i in range(self.L)]
        self.bslice = [where.get(f"fc{i + 1}.bias") for i in range(self.L)]
        self.lowest = min(i for i in range(self.L) if self.wslice[i] or self.bslice[i])
        self.P = flat.size
        self.caches = [self._forward(x[sl], y[sl]) for sl in chunks]
        self.loss0 = sum(c["loss"] for c in self.caches)
        grad = torch.zeros_like(flat.theta0)
        for c in self.caches:
            for i in range(self.L):
                if self.wslice[i]:
                    grad[self.wslice[i]] += (c["delta"][i].T @ c["a"][i]).reshape(-1)
                if self.bslice[i]:
                    grad[self.bslice[i]] += c["delta"][i].sum(0)
        self.gradient = grad

    def _forward(self, x, y):
        layers = list(zip(self.W, self.b))
        fp = engine.forward(layers, x, self.act)
        logp = torch.log_softmax(fp.logits, dim=1)
        p = logp.exp()
        onehot = F.one_hot(y, p.shape[1]).to(p.dtype)
        loss = float(-logp.gather(1, y[:, None]).sum()) / self.n_total
        delta, back = engine.errors(layers, fp, (p - onehot) / self.n_total, self.act)
        s1 = [self.act.first(z, h) for z, h in zip(fp.pre, fp.post)]
        c = [
            None if self.act.second is None else g * self.act.second(z, h)
            for g, z, h in zip(back, fp.pre, fp.post)
        ]
        return {"a": fp.inputs, "s1": s1, "c": c, "delta": delta, "p": p, "loss": loss}

    def _split(self, V):
        m = V.shape[1]
        Vw, Vb = [], []
        for i in range(self.L):
            out_i, in_i = self.W[i].shape
            Vw.append(V[self.wslice[i]].T.reshape(m, out_i, in_i) if self.wslice[i] else None)
            Vb.append(V[self.bslice[i]].T if self.bslice[i] else None)
        return Vw, Vb

    def product(self, V: torch.Tensor, gauss_newton: bool = False) -> torch.Tensor:
        m = V.shape[1]
        Vw, Vb = self._split(V)
        # V_l stacked for GEMMs: (in, m*out) for a @ V^T and (out, m*in) for delta @ V
        Vin = [None if v is None else v.permute(2, 0, 1).reshape(v.shape[2], -1) for v in Vw]
        Vout = [None if v is None else v.transpose(0, 1).reshape(v.shape[1], -1) for v in Vw]
        out = torch.zeros_like(V)
        lo, L = self.lowest, self.L
        for c in self.caches:
            a, s1, delta, p = c["a"], c["s1"], c["delta"], c["p"]
            N = a[0].shape[0]
            Rz, Ra = [None] * L, [None] * (L + 1)  # Ra[i]: R of the input a[i] of layer i
            for i in range(lo, L):  # R-forward: Rz_i = a_i V_i^T + Ra_i W_i^T (+ V_b)
                out_i, in_i = self.W[i].shape
                if Ra[i] is not None:
                    r = (Ra[i].reshape(N * m, in_i) @ self.W[i].T).view(N, m * out_i)
                    if Vin[i] is not None:
                        r.addmm_(a[i], Vin[i])
                elif Vin[i] is not None:
                    r = a[i] @ Vin[i]
                else:
                    r = torch.zeros(N, m * out_i, dtype=V.dtype, device=V.device)
                r = r.view(N, m, out_i)
                if Vb[i] is not None:
                    r += Vb[i]
                Rz[i] = r
                if i < L - 1:
                    Ra[i + 1] = s1[i][:, None, :] * r
            rz = Rz[L - 1]
            pz = p[:, None, :]
            rd = pz * (rz - (pz * rz).sum(-1, keepdim=True))
            rd /= self.n_total  # R delta_L = Hz Rz / N
            for i in range(L - 1, lo - 1, -1):  # R-backward
                out_i, in_i = self.W[i].shape
                if self.wslice[i]:
                    target = out[self.wslice[i]].view(out_i, in_i, m)
                    target += (
                        (rd.reshape(N, m * out_i).T @ a[i]).view(m, out_i, in_i).permute(1, 2, 0)
                    )
                    if not gauss_newton and Ra[i] is not None:
                        target += (
                            (delta[i].T @ Ra[i].reshape(N, m * in_i))
                            .view(out_i, m, in_i)
                            .transpose(1, 2)
                        )
                if self.bslice[i]:
                    out[self.bslice[i]] += rd.sum(0).T
                if i > lo:
                    rg = (rd.reshape(N * m, out_i) @ self.W[i]).view(N, m * in_i)
                    if not gauss_newton and Vout[i] is not None:
                        rg.addmm_(delta[i], Vout[i])
                    rd = rg.view(N, m, in_i).mul_(s1[i - 1][:, None, :])
                    if not gauss_newton and c["c"][i - 1] is not None:
                        rd.addcmul_(c["c"][i - 1][:, None, :], Rz[i - 1])
        return out

    # -- dense matrices by Kronecker-factored blocks (piecewise-linear activations) -------------
    def dense(self, gauss_newton: bool = False, max_elements: int = 2**24) -> torch.Tensor:
        """Exact dense matrix by blocks: per layer pair one GEMM over samples (no P products).

        Block (m, l) of the Gauss-Newton part is sum_n (B_m^T Hz B_l)_n (x) a_m a_l^T with
        B_l = dz_L/dz_l; the rest of the Hessian (m > l) is sum_n delta_m (x) (da_m/dz_l) (x) a_l.
        Needs act'' = 0 (ReLU); callers fall back to products otherwise.
        """
        if self.act.second is not None and not gauss_newton:
            raise ValueError("dense blocks need a piecewise-linear activation")
        L, lo = self.L, self.lowest
        dtype, device = self.W[0].dtype, self.W[0].device
        layers = [i for i in range(lo, L) if self.wslice[i] or self.bslice[i]]
        # flat indices of each layer's augmented matrix [W | b] (row-major), -1 where not selected
        index = {}
        for i in layers:
            out_i, in_i = self.W[i].shape
            has_b = self.b[i] is not None
            idx = torch.full((out_i, in_i + has_b), -1, dtype=torch.long)
            if self.wslice[i]:
                idx[:, :in_i] = torch.arange(self.wslice[i].start, self.wslice[i].stop).view(
                    out_i, in_i
                )
            if has_b and self.bslice[i]:
                idx[:, in_i] = torch.arange(self.bslice[i].start, self.bslice[i].stop)
            index[i] = idx.reshape(-1)
        blocks = {}
        for c in self.caches:
            a, s1, delta, p = c["a"], c["s1"], c["delta"], c["p"]
            N, C = p.shape
            aug = [
                torch.cat([a[i], torch.ones(N, 1, dtype=dtype, device=device)], 1)
                if self.b[i] is not None
                else a[i]
                for i in range(L)
            ]
            B = [None] * L
            B[L - 1] = torch.eye(C, dtype=dtype, device=device).expand(N, C, C)
            for i in range(L - 1, lo, -1):
                B[i - 1] = (B[i] @ self.W[i]) * s1[i - 1][:, None, :]
            Bp = {i: torch.einsum("nco,nc->no", B[i], p) for i in layers}
            for mi, m_ in enumerate(layers):
                for l_ in layers[: mi + 1]:
                    K = (B[m_] * p[:, :, None]).transpose(1, 2) @ B[l_] - Bp[m_][:, :, None] * Bp[
                        l_
                    ][:, None, :]
                    om, ol = K.shape[1], K.shape[2]
                    im, il = aug[m_].shape[1], aug[l_].shape[1]
                    blk = torch.zeros(om, im, ol, il, dtype=dtype, device=device)
                    step = max(1, max_elements // max(1, max(om * ol, im * il)))
                    for s in range(0, N, step):
                        e = slice(s, s + step)
                        kk = K[e].reshape(-1, om * ol)
                        aa = (aug[m_][e][:, :, None] * aug[l_][e][:, None, :]).reshape(-1, im * il)
                        blk += (kk.T @ aa).view(om, ol, im, il).permute(0, 2, 1, 3)
                    blk /= self.n_total
                    if not gauss_newton and l_ < m_:
                        in_m = self.W[m_].shape[1]
                        if m_ == l_ + 1:  # da_m/dz_l = diag(act'(z_l)): one GEMM over samples
                            S = (delta[m_][:, :, None] * s1[l_][:, None, :]).reshape(N, -1).T @ aug[
                                l_
                            ]
                            S = S.view(om, in_m, il)
                            j = torch.arange(in_m)
                            blk[:, j, j, :] += S
                        else:
                            M = self.W[l_ + 1] * s1[l_][:, None, :]  # (N, out_{l+1}, out_l)
                            for k in range(l_ + 1, m_):
                                M = s1[k][:, :, None] * M
                                if k + 1 < m_:
                                    M = self.W[k + 1] @ M
                            step = max(1, max_elements // (om * in_m * ol))
                            for s in range(0, N, step):
                                e = slice(s, s + step)
                                T = delta[m_][e][:, :, None, None] * M[e][:, None, :, :]
                                blk[:, :in_m, :, :] += (
                                    T.reshape(T.shape[0], -1).T @ aug[l_][e]
                                ).view(om, in_m, ol, il)
                    key = (m_, l_)
                    blk = blk.reshape(om * im, ol * il)
                    blocks[key] = blocks[key] + blk if key in blocks else blk
        H = torch.zeros(self.P, self.P, dtype=dtype, device=device)
        for (m_, l_), blk in blocks.items():
            rm, rl = index[m_], index[l_]
            km, kl = rm >= 0, rl >= 0
            sub = blk[km][:, kl]
            H[rm[km][:, None], rl[kl][None, :]] = sub
            if m_ != l_:
                H[rl[kl][:, None], rm[km][None, :]] = sub.T
        return 0.5 * (H + H.T)


class CurvatureOperator(sla.LinearOperator):
    """Base of the Hessian and Gauss-Newton operators: a symmetric P x P LinearOperator.

    ``matvec``/``matmat`` accept numpy arrays (scipy's interface, as used by eigsh) or torch
    tensors (returned as float64 torch tensors on the model's device). ``n_products`` counts
    matrix-vector products (a matmat with m columns counts m).
    """

    def __init__(self, model, x, y, params, loss, mode, dtype, chunk_size, check, backend):
        if backend not in ("auto", "mlp", "autograd"):
            raise ValueError(
                f"backend={backend!r} is not allowed: expected 'auto', 'mlp' or 'autograd'"
            )
        reason = (
            mlp_backend_reason(model, loss, mode) if backend != "autograd" else "asked for autograd"
        )
        if backend == "mlp" and reason is not None:
            raise ValueError(f"backend='mlp' cannot serve this case: {reason}")
        self.backend = "mlp" if reason is None else "autograd"
        self.flat = FlatModel(model, params, dtype)
        self.x, self.y = self.flat.prepare(x, y)
        self.n_samples = int(self.x.shape[0])
        self.mode = mode
        self.chunk_size = chunk_size
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "callable")
        self._loss = _per_sample_loss(loss)
        P = self.flat.size
        super().__init__(dtype=np.float64, shape=(P, P))
        chunks = _chunks(self.n_samples, chunk_size)
        _check_determinism(model, mode, self.x, check, chunked=len(chunks) > 1)
        self.n_products = 0
        self._batched = True
        with model_mode(model, mode), torch.enable_grad():
            if self.backend == "mlp":
                with torch.no_grad():
                    self._mlp = _MLPCurvature(self.flat, self.x, self.y, self.n_samples, chunks)
                self.loss0, self.gradient = self._mlp.loss0, self._mlp.gradient
            else:
                self._build(chunks)

    _gauss_newton = False

    # -- helpers ----------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self.flat.names

    @property
    def size(self) -> int:
        return self.flat.size

    def _chunk_loss(self, theta, sl):
        logits = self.flat.logits(theta, self.x[sl])
        losses = self._loss(logits, self.y[sl])
        if losses.shape != (logits.shape[0],):
            raise ValueError(
                f"loss must return per-sample losses of shape ({logits.shape[0]},), got {tuple(losses.shape)}"
            )
        return logits, losses.sum() / self.n_samples  # exact full-batch mean, any chunking

    def _apply(self, V: torch.Tensor) -> torch.Tensor:  # (P, m) -> (P, m)
        raise NotImplementedError

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        """Product with a torch vector (P,) or matrix (P, m), float64 on the model's device."""
        V = torch.as_tensor(V)
        vec = V.ndim == 1
        V2 = (V[:, None] if vec else V).to(self.flat.device, self.flat.dtype)
        if V2.ndim != 2 or V2.shape[0] != self.size:
            raise ValueError(
                f"expected a vector ({self.size},) or a matrix ({self.size}, m), got {tuple(V.shape)}"
            )
        if V2.shape[1] == 0:
            return V2.clone()
        self.n_products += V2.shape[1]
        if self.backend == "mlp":
            with torch.no_grad():
                out = self._mlp.product(V2.contiguous(), gauss_newton=self._gauss_newton)
        else:
            out = self._apply(V2.contiguous())
        return out[:, 0] if vec else out

    def _vjp_batched(self, outputs, inputs, cotangents):
        """sum over a batch of cotangents (m, *outputs.shape) of J^T c, one backward when possible."""
        if self._batched:
            try:
                (g,) = torch.autograd.grad(
                    outputs,
                    inputs,
                    grad_outputs=cotangents,
                    retain_graph=True,
                    is_grads_batched=True,
                    allow_unused=True,
                )
                return g
            except RuntimeError:
                self._batched = False  # an op without a batching rule: fall back to a loop
        rows = []
        for c in cotangents:
            (g,) = torch.autograd.grad(
                outputs, inputs, grad_outputs=c, retain_graph=True, allow_unused=True
            )
            rows.append(g)
        if any(r is None for r in rows):
            return None
        return torch.stack(rows)

    # -- scipy / torch interface --------------------------------------------------------------
    def _matvec(self, v):
        return (
            self.apply(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).reshape(-1))
            .cpu()
            .numpy()
        )

    def _matmat(self, V):
        return self.apply(torch.from_numpy(np.ascontiguousarray(V, dtype=np.float64))).cpu().numpy()

    def _adjoint(self):
        return self

    def matvec(self, v):
        if isinstance(v, torch.Tensor):
            return self.apply(v.reshape(-1))
        return super().matvec(v)

    def matmat(self, V):
        if isinstance(V, torch.Tensor):
            return self.apply(V)
        return super().matmat(V)

    def dense(self, block: int = 256) -> torch.Tensor:
        """The full P x P matrix (float64), symmetrised.

        For an awbench MLP (backend "mlp") with ReLU, or for the Gauss-Newton matrix of any
        activation, it is assembled exactly from Kronecker-factored layer blocks, one GEMM over
        samples per layer pair (about N * P^2 multiply-adds, no products counted); otherwise
        from products with identity blocks of ``block`` columns (counted in n_products).
        """
        if self.backend == "mlp" and (self._gauss_newton or self._mlp.act.second is None):
            with torch.no_grad():
                return self._mlp.dense(gauss_newton=self._gauss_newton)
        P = self.size
        out = torch.empty(P, P, dtype=self.flat.dtype, device=self.flat.device)
        for start in range(0, P, block):
            stop = min(start + block, P)
            E = torch.zeros(P, stop - start, dtype=self.flat.dtype, device=self.flat.device)
            E[torch.arange(start, stop), torch.arange(stop - start)] = 1.0
            out[:, start:stop] = self.apply(E)
        return 0.5 * (out + out.T)


class HessianOperator(CurvatureOperator):
    """Hessian of the mean loss over (x, y) w.r.t. a parameter subset, as a LinearOperator.

    Parameters
    ----------
    model : nn.Module, evaluated functionally; its parameters and buffers are never written.
    x, y : the full batch. The loss is ``sum_i loss_i / N`` over all N samples whatever
        ``chunk_size`` (chunks only bound memory).
    params : None (all), a parameter or module name, or a list of them (see resolve_params).
    loss : "cross_entropy" (default) or a callable ``(logits, y) -> per-sample losses``.
    mode : "eval" (default) or "train": the mode the model is evaluated in, set for the
        build and restored after; never inferred from the model.
    dtype : computation dtype (float64 by default; None keeps the model's).
    chunk_size : samples per chunk (None: one chunk).
    check : "raise" (default), "warn" or "off": what to do when :func:`determinism_report`
        finds that the loss is random (dropout in train mode) or couples samples (BatchNorm).
        Accepted randomness is frozen: every product sees the dropout masks drawn at build.
    backend : "auto" (default), "mlp" or "autograd". "mlp" (chosen automatically for an
        awbench MLP with cross-entropy and no active dropout; see mlp_backend_reason) caches
        the forward pass and runs the explicit R-operator; "autograd" builds the gradient graph
        of every chunk once (``create_graph=True``) and reuses it: a product is one backward
        pass through it, batched over columns with ``is_grads_batched``.

    ``loss0`` and ``gradient`` hold the loss and its gradient at theta0; ``n_products`` counts
    products; ``dense()`` gives the matrix.
    """

    def __init__(
        self,
        model,
        x,
        y,
        params=None,
        *,
        loss="cross_entropy",
        mode="eval",
        dtype=torch.float64,
        chunk_size=None,
        check="raise",
        backend="auto",
    ):
        super().__init__(model, x, y, params, loss, mode, dtype, chunk_size, check, backend)

    def _build(self, chunks):
        self._theta = self.flat.theta0.clone().requires_grad_(True)
        self._grads = []
        total, grad = 0.0, torch.zeros_like(self.flat.theta0)
        for sl in chunks:
            _, loss = self._chunk_loss(self._theta, sl)
            (g,) = torch.autograd.grad(loss, self._theta, create_graph=True, allow_unused=True)
            if g is None:
                continue
            total += float(loss.detach())
            grad += g.detach()
            if g.requires_grad:  # else the loss is linear in theta on this chunk: H = 0 there
                self._grads.append(g)
        self.loss0 = total
        self.gradient = grad

    def _apply(self, V):
        out = torch.zeros_like(V)
        for g in self._grads:
            hv = self._vjp_batched(g, self._theta, V.T)
            if hv is not None:
                out += hv.T
        return out


class GaussNewtonOperator(CurvatureOperator):
    _gauss_newton = True

    """Generalised Gauss-Newton matrix ``(1/N) sum_i J_i^T (d^2 loss_i / dz^2) J_i`` (PSD for CE).

    Same arguments and guarantees as :class:`HessianOperator`; ``z`` are the model's outputs.
    Graphs are built once per chunk: the outputs z(theta), the vector-Jacobian product J^T u
    (differentiable in u, giving J v by the double-vjp trick) and the loss gradient in z.
    """

    def __init__(
        self,
        model,
        x,
        y,
        params=None,
        *,
        loss="cross_entropy",
        mode="eval",
        dtype=torch.float64,
        chunk_size=None,
        check="raise",
        backend="auto",
    ):
        super().__init__(model, x, y, params, loss, mode, dtype, chunk_size, check, backend)

    def _build(self, chunks):
        self._theta = self.flat.theta0.clone().requires_grad_(True)
        self._parts = []
        total, grad = 0.0, torch.zeros_like(self.flat.theta0)
        for sl in chunks:
            z = self.flat.logits(self._theta, self.x[sl])
            u = torch.zeros_like(z, requires_grad=True)
            (jtu,) = torch.autograd.grad(
                z, self._theta, grad_outputs=u, create_graph=True, allow_unused=True
            )
            z_leaf = z.detach().requires_grad_(True)
            losses = self._loss(z_leaf, self.y[sl])
            loss = losses.sum() / self.n_samples
            (gz,) = torch.autograd.grad(loss, z_leaf, create_graph=True)
            total += float(loss.detach())
            (g,) = torch.autograd.grad(
                z, self._theta, grad_outputs=gz.detach(), retain_graph=True, allow_unused=True
            )
            if g is not None:
                grad += g
            if jtu is None or not jtu.requires_grad or not gz.requires_grad:
                continue
            self._parts.append((z, u, jtu, z_leaf, gz))
        self.loss0 = total
        self.gradient = grad

    def _apply(self, V):
        out = torch.zeros_like(V)
        for z, u, jtu, z_leaf, gz in self._parts:
            jv = self._vjp_batched(jtu, u, V.T)  # (m, n, C) = J v
            if jv is None:
                continue
            hjv = self._vjp_batched(gz, z_leaf, jv)  # loss Hessian in z times J v
            gv = self._vjp_batched(z, self._theta, hjv)
            if gv is not None:
                out += gv.T
        return out


# ----------------------------------------------------------------------------------------
# Eigenpairs
# ----------------------------------------------------------------------------------------

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


def _small_eigh(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        theta, S = _small_eigh(T[:m, :m])
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
        products. If ARPACK stops early the missing pairs are NaN.
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
        H = op.dense().cpu().double()
        vals, vecs = symmetric_eigh(H)
        idx = _order(vals.numpy(), which)[:k]
        values, vectors = vals.numpy()[idx], _fix_signs(vecs.numpy().T[idx])
        Y = torch.from_numpy(np.ascontiguousarray(vectors.T))
        residuals = (H @ Y - Y * torch.from_numpy(values)).norm(dim=0).numpy()
        converged = np.ones(k, dtype=bool)
    elif method == "lanczos":
        ncv = min(P, max(3 * k + 10, 50)) if ncv is None else int(ncv)
        if not k < ncv <= P:
            raise ValueError(f"ncv={ncv} is not allowed: expected k < ncv <= P ({k} < ncv <= {P})")
        values, vectors, residuals, gaps, scale = _krylov_schur(
            op, k, which, tol, ncv, 100 if maxiter is None else int(maxiter), seed
        )
        vectors = _fix_signs(vectors)
        converged = _converged(values, residuals, gaps, tol, scale)
    else:
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
        R = op.matmat(vectors.T) - vectors.T * values if len(values) else np.zeros((P, 0))
        residuals = np.linalg.norm(R, axis=0)
        scale = float(np.abs(values).max()) if len(values) else 0.0
        converged = _converged(values, residuals, _gaps(values, values), max(tol, 1e-12), scale)
        if len(values) < k:  # pad what ARPACK did not deliver
            pad = k - len(values)
            values = np.concatenate([values, np.full(pad, np.nan)])
            vectors = np.concatenate([vectors, np.zeros((pad, P))])
            residuals = np.concatenate([residuals, np.full(pad, np.nan)])
            converged = np.concatenate([converged, np.zeros(pad, dtype=bool)])
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    return Eigenpairs(t(values), t(vectors), t(residuals), t(np.asarray(converged, dtype=bool)))


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
        theta, U = _small_eigh(T)
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
