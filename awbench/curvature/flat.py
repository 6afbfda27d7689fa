"""A model as a function of a flat parameter vector, and the checks that make that function
a deterministic mean of per-sample losses.

All whole-network curvature works on a *flat* parameter vector theta over a chosen subset of
the model's parameters (named as in ``model.named_parameters()``, in that order). The model is
evaluated functionally (``torch.func.functional_call``) at a float64 copy of its parameters,
so no operator, product or estimator ever writes to the model's own tensors.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from awbench.nn import losses
from awbench.nn.losses import LOSSES

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


def per_sample_loss(loss: str | Callable) -> Callable:
    """(logits, y) -> (n,) per-sample losses: "cross_entropy" (the same as "ce"), "mse" (the
    training losses of awbench/nn/losses.py, so a run trained with either is measured in its
    own loss) or a callable."""
    if loss == "cross_entropy":
        return lambda logits, y: F.cross_entropy(logits, y, reduction="none")
    if isinstance(loss, str) and loss in LOSSES:
        return lambda logits, y: losses.per_sample_loss(loss, logits, y)
    if callable(loss):
        return loss
    raise ValueError(
        f"loss={loss!r} is not allowed: expected 'cross_entropy' (or 'ce'), 'mse' or a "
        "callable (logits, y) -> per-sample losses of shape (n,)"
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


def check_determinism(model, mode, x, check, chunked):
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


def chunk_slices(n: int, chunk_size: int | None) -> list[slice]:
    if chunk_size is None:
        return [slice(0, n)]
    if int(chunk_size) < 1:
        raise ValueError(
            f"chunk_size={chunk_size!r} is not allowed: expected None or an integer >= 1"
        )
    c = int(chunk_size)
    return [slice(i, min(i + c, n)) for i in range(0, n, c)]
