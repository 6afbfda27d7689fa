"""The activity-weight duality: activities at a layer, dual weights, pairing, exactness check.

Every function here is batched over pairs (einsum, no Python loop over samples) and works on
any ``nn.Module`` through forward hooks on the named Linear layer.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from awbench.curvature.flat import model_mode
from awbench.curvature.layer import linear_layer, row_chunks


class ZeroActivityError(ValueError):
    """A training activity vector is zero, so no weight change can reproduce the pair."""


def module_inputs(model: nn.Module, name: str | nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Inputs of module ``name`` (or the module itself; flattened per sample) for inputs
    ``x``, a chunk of rows per forward pass, in eval mode (every submodule's mode is restored)."""
    module = name if isinstance(name, nn.Module) else dict(model.named_modules())[name]
    parts: list[torch.Tensor] = []
    handle = module.register_forward_hook(
        lambda m, inp, out: parts.append(inp[0].detach().reshape(len(inp[0]), -1))
    )
    try:
        with torch.no_grad(), model_mode(model, "eval"):
            for rows in row_chunks(len(x)):
                model(x[rows])
    finally:
        handle.remove()
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def layer_inputs(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """Activities entering ``layer`` (a Linear module name such as "fc2") for inputs ``x``.

    Runs the model in eval mode (the duality is stated for the deterministic network) and
    restores its mode.
    """
    return module_inputs(model, linear_layer(model, layer), x)


def augment(a: torch.Tensor) -> torch.Tensor:
    """Append a constant 1 to each activity so that ``[W | b]`` acts like a bias-free weight."""
    return torch.cat([a, torch.ones(*a.shape[:-1], 1, dtype=a.dtype, device=a.device)], dim=-1)


def layer_matrix(module: nn.Linear) -> torch.Tensor:
    """``W``, or ``[W | b]`` when the layer has a bias (use with :func:`augment`)."""
    W = module.weight.detach()
    if module.bias is None:
        return W
    return torch.cat([W, module.bias.detach()[:, None]], dim=1)


def _check_nonzero(a_train: torch.Tensor) -> torch.Tensor:
    sq = (a_train * a_train).sum(-1)
    zero = torch.nonzero(sq == 0).flatten()
    if len(zero):
        raise ZeroActivityError(
            f"a_train rows {zero.tolist()[:10]}{' ...' if len(zero) > 10 else ''} are zero vectors: "
            "no weight change acting on a zero activity can reproduce the pair (exclude them)"
        )
    return sq


def dual_weights(W: torch.Tensor, a_train: torch.Tensor, a_test: torch.Tensor) -> torch.Tensor:
    """Minimal dual weights ``dW_k = (W da_k) a_k^T / |a_k|^2``, shape (K, n_out, n_in).

    ``a_train[k]`` is the training activity a_k, ``a_test[k]`` its paired test activity; then
    ``(W + dW_k) a_k == W a_test[k]``. For a layer with bias pass ``layer_matrix`` and
    :func:`augment`-ed activities. Raises :class:`ZeroActivityError` for a zero a_k.
    """
    w_da, a_scaled = dual_weight_factors(W, a_train, a_test)
    return torch.einsum("ko,ki->koi", w_da, a_scaled)


def dual_weight_factors(
    W: torch.Tensor, a_train: torch.Tensor, a_test: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W da_k, a_k / |a_k|^2)``: the rank-one factors of :func:`dual_weights` (K x n_out
    and K x n_in numbers instead of K x n_out x n_in). Raises ZeroActivityError for a zero a_k."""
    if a_train.shape != a_test.shape or a_train.ndim != 2 or W.shape[1] != a_train.shape[1]:
        raise ValueError(
            f"shapes do not fit: W {tuple(W.shape)}, a_train {tuple(a_train.shape)}, "
            f"a_test {tuple(a_test.shape)} (expected W (n_out, n_in) and both activities (K, n_in))"
        )
    sq = _check_nonzero(a_train)
    return (a_test - a_train) @ W.T, a_train / sq[:, None]


def general_dual_weights(
    W: torch.Tensor, a_train: torch.Tensor, a_test: torch.Tensor, M: torch.Tensor
) -> torch.Tensor:
    """The whole family ``dW* + M (I - a a^T/|a|^2)``: every member is exact, dW* is smallest.

    ``M`` has shape (n_out, n_in) or (K, n_out, n_in). The added term annihilates a_k, so it
    changes nothing for this pair but adds Frobenius norm orthogonal to dW*.
    """
    minimal = dual_weights(W, a_train, a_test)
    sq = (a_train * a_train).sum(-1)
    Ma = (
        torch.einsum("...oi,ki->ko", M, a_train)
        if M.ndim == 2
        else torch.einsum("koi,ki->ko", M, a_train)
    )
    projected = M - torch.einsum("ko,ki->koi", Ma, a_train / sq[:, None])
    return minimal + projected


@contextlib.contextmanager
def per_sample_weights(model: nn.Module, layer: str, delta: torch.Tensor):
    """Within the block, sample k of a batch sees ``layer``'s weights plus ``delta[k]``.

    ``delta`` is (K, n_out, n_in) or, for a layer with bias, (K, n_out, n_in + 1) acting on
    the augmented activity. One batched forward pass evaluates K different networks.
    """
    module = linear_layer(model, layer)

    def add_delta(mod, inputs, output):
        a = inputs[0]
        if delta.shape[-1] == a.shape[-1] + 1:
            a = augment(a)
        return output + torch.einsum("koi,ki->ko", delta, a)

    handle = module.register_forward_hook(add_delta)
    try:
        yield model
    finally:
        handle.remove()


@contextlib.contextmanager
def rank_one_offsets(model: nn.Module, layer: str, u: torch.Tensor, b: torch.Tensor):
    """Within the block, sample k of a batch sees ``layer``'s weights plus ``u_k b_k^T``.

    The same networks as :func:`per_sample_weights` with ``delta[k] = u_k b_k^T``, evaluated
    as ``W a_k + u_k (b_k . a_k)``: K x (n_out + n_in) numbers instead of K x n_out x n_in.
    ``b`` has n_in + 1 columns for a layer with bias (acting on the augmented activity).
    """
    module = linear_layer(model, layer)

    def add_offset(mod, inputs, output):
        a = inputs[0]
        if b.shape[-1] == a.shape[-1] + 1:
            a = augment(a)
        return output + u * (a * b).sum(-1, keepdim=True)

    handle = module.register_forward_hook(add_offset)
    try:
        yield model
    finally:
        handle.remove()


# --- pairing -------------------------------------------------------------------------------


class Pairs(NamedTuple):
    """Pair k: test sample ``test[k]`` with training sample ``train[k]`` (same label).

    ``unpaired`` lists test samples with no eligible partner (their class has no clean
    training sample).
    """

    test: np.ndarray
    train: np.ndarray
    unpaired: np.ndarray


def _nearest(q: torch.Tensor, ref: torch.Tensor, k: int, chunk_elems: int) -> np.ndarray:
    """Indices of the k nearest rows of ``ref`` for each row of ``q`` (Euclidean), chunked.

    Ties go to the lower reference index (stable ordering).
    """
    q, ref = q.double(), ref.double()
    ref_sq = (ref * ref).sum(1)
    rows = max(1, chunk_elems // max(1, len(ref)))
    out = []
    for start in range(0, len(q), rows):
        block = q[start : start + rows]
        d2 = (block * block).sum(1, keepdim=True) - 2.0 * block @ ref.T + ref_sq[None, :]
        d2 = d2.numpy()
        if k == 1:
            out.append(np.argmin(d2, axis=1)[:, None])  # argmin returns the first minimum
        else:
            cand = (
                np.argpartition(d2, k - 1, axis=1)[:, :k]
                if k < d2.shape[1]
                else np.tile(np.arange(d2.shape[1]), (len(d2), 1))
            )
            vals = np.take_along_axis(d2, cand, 1)
            order = np.lexsort((cand, vals), axis=1)  # by distance, then by index
            out.append(np.take_along_axis(cand, order, 1))
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def pair_samples(
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    clean: torch.Tensor | None = None,
    method: str = "input",
    k: int = 1,
    seed: int = 0,
    chunk_elems: int = 2**24,
) -> Pairs:
    """Pair each test sample with same-label clean training samples.

    method: "input" (nearest in the given space: pass raw inputs for the demo's rule, or layer
    activities for feature-space pairing), "knn" (k nearest, K = k pairs per test sample) or
    "random" (a random same-class partner drawn with ``seed``). Distances are computed per class
    in chunks of about ``chunk_elems`` entries, so 10k x 60k fits in memory.
    """
    if method not in ("input", "feature", "knn", "random"):
        raise ValueError(
            f"method={method!r} is not allowed: expected 'input', 'feature', 'knn' or 'random'"
        )
    if k < 1:
        raise ValueError(f"k={k} is not allowed: expected an integer >= 1")
    per_test = k if method == "knn" else 1
    clean_idx = np.arange(len(y_train)) if clean is None else np.flatnonzero(clean.cpu().numpy())
    y_tr = y_train.cpu().numpy()[clean_idx]
    y_te = y_test.cpu().numpy()
    x_te, x_tr = x_test.reshape(len(x_test), -1).cpu(), x_train.reshape(len(x_train), -1).cpu()
    rng = np.random.default_rng(seed)
    test_parts, train_parts, unpaired = [], [], []
    for label in np.unique(y_te):
        te = np.flatnonzero(y_te == label)
        pool = clean_idx[y_tr == label]
        if len(pool) == 0:
            unpaired.append(te)
            continue
        if method == "random":
            chosen = pool[rng.integers(0, len(pool), size=len(te))][:, None]
        else:
            kk = min(per_test, len(pool))
            chosen = pool[_nearest(x_te[te], x_tr[pool], kk, chunk_elems)]
        test_parts.append(np.repeat(te, chosen.shape[1]))
        train_parts.append(chosen.reshape(-1))
    test = np.concatenate(test_parts) if test_parts else np.zeros(0, dtype=np.int64)
    train = np.concatenate(train_parts) if train_parts else np.zeros(0, dtype=np.int64)
    order = np.argsort(test, kind="stable")  # pairs in test-sample order
    missing = np.sort(np.concatenate(unpaired)) if unpaired else np.zeros(0, dtype=np.int64)
    return Pairs(test[order], train[order], missing)


# --- exactness -----------------------------------------------------------------------------


def duality_check(
    model: nn.Module, layer: str, x_test: torch.Tensor, x_train: torch.Tensor
) -> torch.Tensor:
    """Per pair, max |logits(x'_k, W) - logits(x_k, W + dW*_k)| (eval mode, model's dtype).

    ``x_train[k]`` is the partner of ``x_test[k]``. A pair whose training activity is zero
    has no dual weight: its entry is NaN (count them with ``torch.isnan``).
    """
    module = linear_layer(model, layer)
    if len(x_test) != len(x_train):
        raise ValueError(
            f"x_test has {len(x_test)} rows and x_train {len(x_train)}: duality_check compares "
            "pair k = (x_test[k], x_train[k]), so both need one row per pair (index the training "
            "set with the pairs' partners, e.g. x_train[pairs.train] and x_test[pairs.test])"
        )
    a_tr, a_te = layer_inputs(model, module, x_train), layer_inputs(model, module, x_test)
    W = layer_matrix(module)
    if module.bias is not None:
        a_tr, a_te = augment(a_tr), augment(a_te)
    ok = (a_tr * a_tr).sum(1) > 0
    delta = dual_weights(W, a_tr[ok], a_te[ok])
    with torch.no_grad(), model_mode(model, "eval"):
        direct = model(x_test[ok])
        with per_sample_weights(model, module, delta):
            dual = model(x_train[ok])
    err = torch.full((len(x_test),), float("nan"), dtype=direct.dtype)
    err[ok] = (direct - dual).abs().amax(dim=1)
    return err
