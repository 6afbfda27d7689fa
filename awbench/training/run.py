"""What every trainer shares: the Run it returns, the demo's stopping rule, the divergence
rule, evaluation, the norm-type weight decay and the training tensors on the device."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from awbench.config import Config
from awbench.data import Data
from awbench.status import DIVERGED

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


def add_weight_decay(
    grads: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], cfg: Config
) -> None:
    """Add the gradient of :func:`weight_penalty` to ``grads``, per member.

    ``weights`` and ``grads`` are the weight tensors of S stacked members, ``(S, *shape)``
    each; the "norm" penalty's norm is taken over all of a member's weights. Where that norm is
    0 it has no gradient; the subgradient 0 is the natural pick, so nothing is added there.
    """
    if cfg.weight_decay_mode != "norm":
        torch._foreach_add_(list(grads), list(weights), alpha=cfg.weight_decay)
        return
    norm = torch.stack([w.pow(2).flatten(1).sum(1) for w in weights]).sum(0).sqrt()
    scale = torch.where(norm > 0, cfg.weight_decay / torch.where(norm > 0, norm, 1.0), 0.0)
    for g, w in zip(grads, weights):
        g.addcmul_(scale.view(-1, *([1] * (w.dim() - 1))), w)


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


# A run has diverged once a training loss exceeds this many times ln(n_classes), the loss of
# a uniform guess and about the loss at initialisation (docs/science.md#5). A network that
# learns never comes near it; a blow-up (tanh at lr=1000: 7000) passes it at once.
DIVERGENCE_LOSS_FACTOR = 10.0


def divergence_bound(n_classes: int) -> float:
    """The training loss above which a run counts as diverged: 10 x ln(n_classes).

    At least 10 x ln 2, so that a degenerate one-class problem (ln 1 = 0) is not flagged."""
    return DIVERGENCE_LOSS_FACTOR * math.log(max(int(n_classes), 2))


def divergence_reason(
    train_loss: float,
    step_loss: float,
    params_finite: bool,
    n_classes: int,
    epoch: int,
    lr: float,
) -> str | None:
    """Why a run diverged at ``epoch``, or None when it did not (docs/science.md#5).

    ``train_loss``: the clean-train loss at the epoch's end; ``step_loss``: the mean loss of
    the epoch's training steps (each a batch, before its update), which catches a blow-up
    that the epoch's end no longer shows (ReLU units that all died on the way keep the
    clean-train loss at ln(n_classes)); ``params_finite``: every parameter is finite.
    """
    where = f"at epoch {epoch} with lr={lr}"
    if not (math.isfinite(train_loss) and params_finite):
        return f"non-finite training loss ({train_loss}) {where}"
    bound = divergence_bound(n_classes)
    classes = max(int(n_classes), 2)
    what = f"above the divergence bound {bound:.4g} (= {DIVERGENCE_LOSS_FACTOR:g} x ln {classes})"
    if train_loss > bound:
        return f"training loss {train_loss:.4g} {what} {where}"
    if not step_loss <= bound:  # NaN included: a step's loss overflowed
        return f"mean loss of the training steps {step_loss:.4g} {what} {where}"
    return None


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
