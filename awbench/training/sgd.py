"""The paper's training protocol: plain SGD over pre-built tensors, the demo's stopping rule.

No DataLoader: a batch is one index into tensors already in memory, which is what makes small
MLPs fast. The parameter update is a foreach SGD step written out here so that momentum, the
norm-type weight decay and divergence checks stay visible in one place.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from awbench.config import Config
from awbench.data import Data, load_data
from awbench.nn.mlp import MLP, build_model
from awbench.progress import progress
from awbench.status import CONVERGED, DIVERGED, MAX_EPOCHS

# on_epoch(epoch, budget, row): called after every epoch with the number of epochs done so far
# (1-based, row["epoch"]), the epoch budget and a copy of that epoch's history row. It is how
# a caller (an app's progress bar) observes training; an exception from it ends the training.
EpochCallback = Callable[[int, int, dict], None]


@dataclass
class Run:
    """A trained model and how it got there."""

    config: Config
    model: nn.Module
    data: Data
    history: pd.DataFrame
    status: str  # converged | max_epochs | diverged
    reason: str = ""
    train_seconds: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def ok(self) -> bool:
        return self.status != DIVERGED


def weight_penalty(model: nn.Module, cfg: Config) -> torch.Tensor:
    """beta*||theta||_2 over all weights ("norm", the paper's) or beta/2*||theta||^2."""
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    sq = torch.stack([w.pow(2).sum() for w in weights]).sum()
    if cfg.weight_decay_mode == "norm":
        return cfg.weight_decay * sq.sqrt()
    return 0.5 * cfg.weight_decay * sq


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode; restores the caller's mode."""
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
        loss = F.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).double().mean().item()
    finally:
        model.train(was_training)
    return loss, acc


def stopping_rule_met(history: list[dict], cfg: Config) -> bool:
    """Demo rule: mean clean-train accuracy over the last window > stop_acc, loss < stop_loss."""
    if len(history) < cfg.stop_window:
        return False
    recent = history[-cfg.stop_window :]
    mean_acc = sum(h["train_acc"] for h in recent) / len(recent)
    return mean_acc > cfg.stop_acc and history[-1]["train_loss"] < cfg.stop_loss


_ACT_GRADS = {
    # d act / d z written in terms of (z, h=act(z)); whichever is cheaper.
    "relu": lambda z, h: torch.sign(h),  # h = relu(z) >= 0, so sign(h) is the 0/1 mask
    "tanh": lambda z, h: 1.0 - h * h,
    "sigmoid": lambda z, h: h * (1.0 - h),
    "gelu": lambda z, h: (
        0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
        + z * torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    ),
}


def mlp_gradients(
    model: MLP, x: torch.Tensor, y: torch.Tensor, dropout_gen: torch.Generator | None = None
) -> list[torch.Tensor]:
    """Gradients of the mean cross-entropy w.r.t. ``model.parameters()`` by explicit backprop.

    Writing the MLP's backward pass out avoids autograd's per-op bookkeeping, which dominates
    the cost of a step for nets this small. Dropout masks are drawn from ``dropout_gen``
    (inverted dropout, as nn.Dropout). Checked against autograd in the tests.
    """
    act = model.act
    act_grad = _ACT_GRADS[model.activation]
    layers = [getattr(model, name) for name in model.layer_names]
    p_drop = model.dropout_p if model.training else 0.0
    inputs, pre, mask = [], [], None  # pre[i] = (z, act(z)) of hidden layer i, before dropout
    h = x
    for i, layer in enumerate(layers):
        inputs.append(h)
        z = F.linear(h, layer.weight, layer.bias)
        if i == len(layers) - 1:
            break
        h = act(z)
        pre.append((z, h))
        if i == 0 and p_drop > 0:
            keep = torch.rand(h.shape, generator=dropout_gen, device=h.device, dtype=h.dtype)
            mask = (keep >= p_drop).to(h.dtype) / (1.0 - p_drop)
            h = h * mask
    dz = torch.softmax(z, dim=1)
    # scatter_add_ is several times cheaper than advanced-index assignment at this size.
    dz.scatter_add_(1, y[:, None], torch.full((len(y), 1), -1.0, dtype=dz.dtype, device=dz.device))
    dz /= len(y)
    grads: list[torch.Tensor] = []
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        layer_grads = [dz.T @ inputs[i]]
        if layer.bias is not None:
            layer_grads.append(dz.sum(0))
        grads[:0] = layer_grads
        if i == 0:
            break
        dh = dz @ layer.weight
        if i == 1 and mask is not None:
            dh = dh * mask
        z_prev, h_prev = pre[i - 1]
        dz = dh * act_grad(z_prev, h_prev)
    return grads


def weight_decay_gradient(model: nn.Module, cfg: Config) -> Callable[[list[torch.Tensor]], None]:
    """``add(grads)`` adding the gradient of :func:`weight_penalty` to ``grads`` (ordered as
    parameters()). The weights are looked up once: walking the module tree every step cost
    more than the step's own arithmetic for these small nets."""
    slots = [
        (i, p) for i, (name, p) in enumerate(model.named_parameters()) if name.endswith("weight")
    ]
    weights = [p for _, p in slots]

    def add(grads: list[torch.Tensor]) -> None:
        if cfg.weight_decay_mode == "norm":
            norm = torch.sqrt(sum(w.detach().pow(2).sum() for w in weights))
            if norm == 0:
                return  # the norm is not differentiable at 0; its subgradient 0 is the natural pick
            scale = cfg.weight_decay / norm
        else:
            scale = cfg.weight_decay
        for i, p in slots:
            grads[i].add_(p, alpha=float(scale))

    return add


def train(
    cfg: Config,
    data: Data | None = None,
    show_progress: bool | None = None,
    on_epoch: EpochCallback | None = None,
) -> Run:
    """Train ``cfg``'s MLP with the paper's protocol and return a :class:`Run`.

    A non-finite loss ends the run with status "diverged" and its reason instead of raising,
    so that a sweep records it and goes on. ``on_epoch``: see :data:`EpochCallback`; it sees
    every row of the returned history, the diverged epoch's included.
    """
    if cfg.n_learners > 1 or cfg.algorithm != "sgd":
        from awbench.training.multilearner import train_multilearner

        return train_multilearner(cfg, data=data, show_progress=show_progress, on_epoch=on_epoch)
    data = data if data is not None else load_data(cfg)
    model = build_model(cfg, data.n_features, data.n_classes)
    start = time.perf_counter()
    with torch.no_grad():
        history, status, reason = _sgd_epochs(cfg, model, data, show_progress, on_epoch)
    model.eval()
    return Run(
        config=cfg,
        model=model,
        data=data,
        history=pd.DataFrame(history),
        status=status,
        reason=reason,
        train_seconds=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class DeviceData:
    """A run's tensors on the training device and dtype, clean subset split out."""

    x: torch.Tensor
    y: torch.Tensor
    x_clean: torch.Tensor
    y_clean: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def of(cls, cfg: Config, data: Data) -> DeviceData:
        device, dtype = cfg.resolved_device(), getattr(torch, cfg.dtype)
        x, y = data.x_train.to(device, dtype), data.y_train.to(device)
        clean = data.clean.to(device)
        return cls(x, y, x[clean], y[clean], data.x_test.to(device, dtype), data.y_test.to(device))


def epoch_loop(
    cfg: Config,
    model: MLP,
    tensors: DeviceData,
    train_epoch: Callable[[torch.Tensor, bool], None],
    all_finite: Callable[[], bool],
    extra_metrics: Callable[[], dict] | None = None,
    show_progress: bool | None = None,
    on_epoch: EpochCallback | None = None,
) -> tuple[list[dict], str, str]:
    """The protocol around the steps, shared by every training algorithm.

    Per epoch: a fresh sample order from ``cfg.seed``'s generator, ``train_epoch(order,
    decay_on)`` takes the steps, then ``model`` is evaluated on the clean training set and the
    test set, ``on_epoch`` is told, divergence is checked and the demo's stopping rule
    applied. Returns the history rows, the status and its reason.
    """
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    n = tensors.x.shape[0]
    history: list[dict] = []
    budget, decay_epochs = cfg.epoch_budget(), cfg.decay_epochs()
    status, reason = MAX_EPOCHS, f"stopping rule not met within max_epochs={budget}"
    bar = progress(range(budget), desc=f"train {cfg.key()[:8]}", enabled=show_progress)
    try:
        for epoch in bar:
            decay_on = cfg.weight_decay > 0 and epoch < decay_epochs
            model.train()
            order = torch.randperm(n, generator=batch_gen).to(tensors.x.device)
            train_epoch(order, decay_on)
            train_loss, train_acc = evaluate(model, tensors.x_clean, tensors.y_clean)
            test_loss, test_acc = evaluate(model, tensors.x_test, tensors.y_test)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
            }
            if extra_metrics is not None:
                row.update(extra_metrics())
            history.append(row)
            if on_epoch is not None:
                # a copy: a callback that edits its row must not change the stopping rule's input
                on_epoch(epoch + 1, budget, dict(row))
            if not (math.isfinite(train_loss) and all_finite()):
                status = DIVERGED
                reason = (
                    f"non-finite training loss ({train_loss}) at epoch {epoch + 1} with lr={cfg.lr}"
                )
                break
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{train_loss:.2e}", acc=f"{train_acc:.3f}", refresh=False)
            if stopping_rule_met(history, cfg):
                status, reason = CONVERGED, f"stopping rule met at epoch {epoch + 1}"
                break
    finally:
        if hasattr(bar, "close"):
            bar.close()
    return history, status, reason


def _sgd_epochs(
    cfg: Config,
    model: MLP,
    data: Data,
    show_progress: bool | None,
    on_epoch: EpochCallback | None,
):
    tensors = DeviceData.of(cfg, data)
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params] if cfg.momentum > 0 else None
    dropout_gen = torch.Generator(device=tensors.x.device).manual_seed(cfg.seed + 1)
    add_decay = weight_decay_gradient(model, cfg)

    def train_epoch(order: torch.Tensor, decay_on: bool) -> None:
        # One gather per epoch; each batch is then a view.
        x, y = tensors.x[order], tensors.y[order]
        for start in range(0, len(order), cfg.batch_size):
            end = start + cfg.batch_size
            grads = mlp_gradients(model, x[start:end], y[start:end], dropout_gen)
            if decay_on:
                add_decay(grads)
            if velocity is not None:
                torch._foreach_mul_(velocity, cfg.momentum)
                torch._foreach_add_(velocity, grads)
                grads = velocity
            torch._foreach_add_(params, grads, alpha=-cfg.lr)

    def all_finite() -> bool:
        return all(bool(torch.isfinite(p).all()) for p in params)

    return epoch_loop(
        cfg, model, tensors, train_epoch, all_finite, show_progress=show_progress, on_epoch=on_epoch
    )
