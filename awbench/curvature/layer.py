"""The analysed layer's dense fp64 Hessian and the per-sample Hessians it is built from.

The layer Hessian uses that a Linear layer's output ``z = W a`` is linear in ``W``: the
Hessian of the mean loss w.r.t. ``W`` is exactly ``mean_k G_k (x) a_k a_k^T``, where ``G_k`` is
the Hessian of sample k's loss w.r.t. its layer output. The loss is a sum over samples, so the
Hessian w.r.t. the whole output matrix ``Z`` is block diagonal and ``n_out`` batched
Hessian-vector products (one per output unit, over all samples at once) recover every ``G_k``.

Whole-network curvature (any parameter subset) lives in the sibling modules: the flat
parameter vector (:mod:`.flat`), the curvature operators (:mod:`.operators`, with the
explicit MLP backend in :mod:`.mlp_backend`), their eigenpairs (:mod:`.eigensolvers`) and
their trace and spectral density (:mod:`.spectrum`).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import scipy.linalg
import threadpoolctl
import torch
from torch import nn

from awbench.curvature.flat import model_mode
from awbench.curvature.mlp_backend import mlp_backend_reason
from awbench.nn import engine
from awbench.nn.losses import check_loss, summed_loss

# Rows per forward pass of an analysis (bounded activations at 60,000 samples).
FORWARD_CHUNK_ROWS = 1024
# One chunk of samples of the dense layer Hessian's build (G_k and the triangular factors):
# a 513-input layer over 10k samples would otherwise hold 10 GB of factors at once.
HESSIAN_CHUNK_BYTES = 2**28


def row_chunks(n: int, rows: int | None = None):
    """Slices of at most ``rows`` rows (default FORWARD_CHUNK_ROWS) over n samples, one empty
    slice when n is 0: forward passes one chunk at a time keep activations bounded (a CNN's
    feature maps on 60k samples would not fit at once)."""
    rows = FORWARD_CHUNK_ROWS if rows is None else rows
    for start in range(0, max(n, 1), rows):
        yield slice(start, start + rows)


def linear_layer(model: nn.Module, layer: str | nn.Module) -> nn.Linear:
    """The ``nn.Linear`` of ``model`` named ``layer``, or ``layer`` itself when it is a Linear
    module of ``model`` (resolved callers pass the module and skip the name lookup)."""
    if isinstance(layer, nn.Linear) and any(m is layer for m in model.modules()):
        return layer
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if isinstance(layer, nn.Module):
        what = "is not a module of this model" if isinstance(layer, nn.Linear) else "is not Linear"
        raise ValueError(  # noqa: TRY004 - a bad layer is a bad value, as every input error
            f"layer={type(layer).__name__}(...) {what}: expected a Linear module of this model "
            f"or the name of one: {linear}"
        )
    module = dict(model.named_modules()).get(layer)
    if not linear:
        raise ValueError(
            f"layer={layer!r}: this model ({type(model).__name__}) has no nn.Linear layer; the "
            "duality is stated for a fully connected layer"
        )
    if not isinstance(module, nn.Linear):
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
    module = linear_layer(model, layer)
    captured: dict[str, torch.Tensor] = {}

    def swap_output(mod, inputs, output):
        captured["a"] = inputs[0].detach()
        captured["z"] = output.detach().requires_grad_(True)
        # A copy goes downstream, so an in-place op there (ReLU(inplace=True)) leaves the leaf be.
        # It is kept so that a caller can tell whether the model returned it untouched.
        captured["downstream"] = captured["z"].clone()
        return captured["downstream"]

    handle = module.register_forward_hook(swap_output)
    try:
        yield captured
    finally:
        handle.remove()


def output_gradient_graph(model, layer, x, y, loss="ce"):
    """(a, z, dL/dz, is_head) for one chunk, dL/dz with its graph (its graph None when it has
    none: G = 0); ``is_head`` when the model returned the layer's output itself (the hook's
    copy, untouched), so that the logits are z."""
    with output_as_leaf(model, layer) as captured, torch.enable_grad():
        out = model(x)
        total = summed_loss(loss, out, y)
        z = captured["z"]
        (grad_z,) = torch.autograd.grad(total, z, create_graph=True)
    # the hook's copy, returned as it was made (an in-place op on it bumps its version)
    is_head = out is captured["downstream"] and out._version == 0
    return captured["a"], z, grad_z, is_head


def output_hessians(
    model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, loss: str = "ce"
) -> tuple:
    """Per-sample Hessians ``G_k`` of the loss ("ce" or "mse") w.r.t. ``layer``'s output.

    Returns ``(G, a)``: G of shape (N, n_out, n_out) and the layer's inputs a of shape
    (N, n_in), both float64, from the model evaluated as it is (callers choose the mode).
    """
    check_loss(loss)
    # the backend's check is of the model; its engine serves both losses
    if mlp_backend_reason(model, "cross_entropy", "train" if model.training else "eval") is None:
        return _mlp_output_hessians(model, layer, x, y, loss)
    a, z, grad_z, _ = output_gradient_graph(model, layer, x, y, loss)
    n_out = z.shape[1]
    if not grad_z.requires_grad:  # downstream is piecewise linear and loss-free: G = 0
        return torch.zeros(z.shape[0], n_out, n_out, dtype=torch.float64), a.double()
    unit = torch.eye(n_out, dtype=z.dtype, device=z.device)
    tangents = unit[:, None, :].expand(n_out, z.shape[0], n_out)
    (cols,) = torch.autograd.grad(grad_z, z, grad_outputs=tangents, is_grads_batched=True)
    # cols[i, k, :] = G_k[:, i]
    G = cols.permute(1, 2, 0).double().contiguous()
    return _symmetrize_(G), a.double()


def _symmetrize_(G: torch.Tensor, block: int = 256) -> torch.Tensor:
    """G_k <- (G_k + G_k^T) / 2 in place, a block of samples at a time: the (N, n, n) stack
    is the analysis's largest array (samples x width^2), so no second copy of it is made."""
    for start in range(0, len(G), block):
        blk = G[start : start + block]
        blk.copy_((blk + blk.transpose(1, 2)).mul_(0.5))
    return G


def _mlp_output_hessians(model: nn.Module, layer: str, x, y, loss: str = "ce") -> tuple:
    """``output_hessians`` for an awbench MLP by the engine's second-order backpropagation."""
    target = linear_layer(model, layer)
    depth = next(i for i, name in enumerate(model.layer_names) if getattr(model, name) is target)
    G, a = engine.output_hessians(
        engine.mlp_layers(model), x, y, engine.activation_of(model), depth, loss
    )
    G = G.double().contiguous()
    return _symmetrize_(G), a.double()


def layer_hessian(
    model: nn.Module,
    layer: str,
    x: torch.Tensor,
    y: torch.Tensor,
    with_bias: bool = False,
    loss: str = "ce",
) -> torch.Tensor:
    """Dense float64 Hessian of the mean loss over (x, y) w.r.t. ``layer``'s weight; the
    loss is cross-entropy ("ce", default) or the softmax's squared error ("mse").

    Rows and columns follow ``weight.flatten()`` (PyTorch layout (n_out, n_in), row-major).
    With ``with_bias`` the parameter is ``[W | b]`` flattened the same way, so its size is
    n_out * (n_in + 1). The model is evaluated in eval mode (dropout off) and left in the
    mode it was in; no regularizer enters.
    """
    module = linear_layer(model, layer)
    if with_bias and module.bias is None:
        raise ValueError(f"with_bias=True but layer={layer!r} has no bias")
    n_out, n_in = module.out_features, module.in_features + int(with_bias)
    tri_out, idx_out = _triangle(n_out, x.device)
    _, idx_in = _triangle(n_in, x.device)
    with model_mode(model, "eval"):
        S = None
        for rows in row_chunks(len(x), hessian_chunk_rows(n_out, n_in)):
            G, a = output_hessians(model, module, x[rows], y[rows], loss)
            if with_bias:
                a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype, device=a.device)], dim=1)
            # S[(i,o),(j,p)] = sum_k G_k[i,o] a_kj a_kp is one GEMM per chunk of samples. G_k
            # and a_k a_k^T are symmetric, so only their upper triangles enter it (a quarter
            # of the flops), and a gather rebuilds H[(i,j),(o,p)] = S[(i,o),(j,p)] from it.
            # Both factors are built sample-last, (triangle, N), from contiguous rows: a GEMM
            # with this operand layout runs ~1.5x faster here than the sample-first one.
            G_tri = G.reshape(len(a), n_out * n_out).T[tri_out[0] * n_out + tri_out[1]]
            product = G_tri @ _upper_products(a.T.contiguous()).T
            S = product if S is None else S.add_(product)
    S /= len(x)
    H = S[idx_out[:, None, :, None], idx_in[None, :, None, :]]  # (i, j, o, p)
    # Exactly symmetric by construction: H[(o,p),(i,j)] reads the same entry of S.
    return H.reshape(n_out * n_in, n_out * n_in)


def hessian_chunk_rows(n_out: int, n_in: int, chunk_bytes: int | None = None) -> int:
    """Samples per chunk of the dense layer Hessian's build, so that one chunk's G_k (and
    its symmetrized copy) and triangular factors stay under ``chunk_bytes`` (default
    HESSIAN_CHUNK_BYTES)."""
    chunk_bytes = HESSIAN_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    per_sample = 8 * (2 * n_out * n_out + n_out * (n_out + 1) // 2 + n_in * (n_in + 1) // 2)
    return max(1, chunk_bytes // per_sample)


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


def _upper_products(a_t: torch.Tensor) -> torch.Tensor:
    """Rows a_t[i] * a_t[j] for i <= j in ``triu_indices`` order, one slice product per i
    (4x faster here than gathering both index rows, and the same numbers)."""
    n = len(a_t)
    out = torch.empty(n * (n + 1) // 2, a_t.shape[1], dtype=a_t.dtype, device=a_t.device)
    start = 0
    for i in range(n):
        torch.mul(a_t[i:], a_t[i], out=out[start : start + n - i])
        start += n - i
    return out


def _triangle(m: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper-triangle indices of an m x m matrix and, per (r, c), the position of (min, max)."""
    tri = torch.triu_indices(m, m, device=device)
    pos = torch.empty(m, m, dtype=torch.long, device=device)
    pos[tri[0], tri[1]] = torch.arange(tri.shape[1], device=device)
    pos[tri[1], tri[0]] = pos[tri[0], tri[1]]
    return tri, pos
