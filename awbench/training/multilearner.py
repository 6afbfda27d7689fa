"""Several learners in one process: synchronous SGD, decentralized parallel SGD, local SGD.

The learners' parameters live in one ``(n, P)`` buffer (rows ordered like
``model.parameters()``); every layer is a view ``(n, out, in)`` of it, the forward and backward
passes are batched matmuls over the learner axis, and mixing is one ``(n, n) @ (n, P)`` product.
No learner is a Python object of its own.

Algorithms (``cfg.algorithm``), one step = every learner takes one batch of its shard:

- ``ssgd``: all-reduce SGD. The learners' gradients are combined into the gradient of the union
  of their batches (each learner's mean weighted by its batch size, which is the plain average
  whenever the batches are equal) and every learner takes that same step.
- ``dpsgd``: each learner steps on its own gradient, then mixes its parameters with its
  neighbours: ``X <- M (X - lr G)`` with a doubly stochastic ``M`` (:func:`mixing_matrix`,
  ``cfg.topology``). Because ``1ᵀM = 1ᵀ`` the average moves exactly like the average gradient
  step, ``mean(X') = mean(X) - lr mean(G)``; the learners' spread around it is the extra,
  landscape-dependent noise of the paper's claim.
- ``local_sgd``: each learner steps on its own gradient; every ``cfg.local_steps`` steps
  (counted across epochs) all learners are replaced by their average.

Scaling with the number of learners n (the choice made here, no extra Config field):

- ``cfg.batch_size`` is the batch of one learner (b). One step consumes n*b samples, so SSGD
  with n learners is SGD at batch n*b: the "large batch" of the paper's comparison.
- ``cfg.lr`` is every learner's step size as given; nothing is rescaled with n. For the
  linear-scaling rule set ``lr`` to n times the single-learner value yourself.
- An epoch is one pass of all learners together over the training set:
  ``ceil(N / (n*b))`` steps. Weight decay, its epoch limit and momentum act per learner.

Shards: each epoch draws ``order = randperm(N)`` from the same generator as single-learner SGD
(seed ``cfg.seed``) and learner r takes positions r, r+n, r+2n, ... of it (the interleaving of
torch's DistributedSampler). So the shards partition the training set, are redrawn every
epoch, and the batches of step k of all learners together are exactly positions
``[k*n*b, (k+1)*n*b)`` of the order: the batch single-learner SGD with batch n*b takes at step
k. When N is not a multiple of n*b the last step's batches are short (some may be empty: that
learner takes no gradient step and only mixes).

All learners start from the single-learner initialisation (``build_model(cfg)``). The
analysed model ``Run.model`` is the average of the learners at the end; per epoch the history
records the average's clean-train and test loss/accuracy (the stopping rule reads these), the
consensus distance ``sqrt(mean_i ||theta_i - mean(theta)||^2)`` and the learners' own mean
clean-train loss. ``Run.extras`` holds the final values and every learner's parameters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F

from awbench.config import TOPOLOGIES, Config, ConfigError
from awbench.data import Data, load_data
from awbench.nn import engine
from awbench.nn.mlp import MLP, build_model
from awbench.progress import progress
from awbench.status import CONVERGED, DIVERGED, MAX_EPOCHS
from awbench.training.run import (
    DeviceData,
    EpochCallback,
    Run,
    add_weight_decay,
    divergence_reason,
    evaluate,
    stopping_rule_met,
)

__all__ = ["Learners", "mixing_matrix", "shard_positions", "train_multilearner"]


# --- mixing matrices -----------------------------------------------------------------------


def mixing_matrix(topology: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Doubly stochastic, symmetric ``(n, n)`` float64 mixing matrix of a DPSGD topology.

    ring: self and the two ring neighbours, 1/3 each. torus: a sqrt(n) x sqrt(n) wrap-around
    grid, self and four neighbours, 1/5 each. full: 1/n everywhere (one step reaches
    consensus). gossip: a random perfect matching drawn from ``generator`` (a fresh one every
    step); each matched pair averages, an unmatched learner (odd n) keeps its parameters.
    On small graphs coinciding neighbours add up (ring of 2, torus of 2 x 2), which keeps the
    matrix doubly stochastic.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"Config.n_learners={n!r} is not allowed: expected an integer >= 1")
    if topology not in TOPOLOGIES:
        raise ConfigError(
            f"Config.topology={topology!r} is not allowed: expected one of "
            + ", ".join(repr(t) for t in TOPOLOGIES)
        )
    M = torch.zeros(n, n, dtype=torch.float64)
    i = torch.arange(n)
    if topology == "full":
        M.fill_(1.0 / n)
    elif topology == "ring":
        for shift in (0, 1, -1):
            M.index_put_(
                (i, (i + shift) % n), torch.full((n,), 1.0 / 3.0, dtype=M.dtype), accumulate=True
            )
    elif topology == "torus":
        side = math.isqrt(n)
        if side * side != n:
            raise ConfigError(
                f"Config.topology='torus' is not allowed: expected 'ring', 'full' or 'gossip' for "
                f"n_learners={n}: a torus needs a square number of learners (1, 4, 9, 16, ...)"
            )
        row, col = i // side, i % side
        for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            j = ((row + dr) % side) * side + (col + dc) % side
            M.index_put_((i, j), torch.full((n,), 0.2, dtype=M.dtype), accumulate=True)
    else:  # gossip
        perm = torch.randperm(n, generator=generator)
        M[i, i] = 1.0
        a, b = perm[0 : n - 1 : 2], perm[1:n:2]
        M[a, a] = M[b, b] = M[a, b] = M[b, a] = 0.5
    return M


# --- data shards ---------------------------------------------------------------------------


def shard_positions(
    n_samples: int, n_learners: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions into an epoch's order for every step, learner and batch slot.

    Returns ``(pos, valid)``, both ``(steps, n_learners, batch_size)``: learner r's j-th sample
    at step k is at position ``r + n*(k*b + j)`` (clamped to the last sample where ``valid`` is
    False, past the end of the epoch).
    """
    n, b = n_learners, batch_size
    steps = -(-n_samples // (n * b))
    pos = torch.arange(steps * n * b).view(steps, b, n).transpose(1, 2)
    valid = pos < n_samples
    return pos.clamp(max=n_samples - 1).contiguous(), valid.contiguous()


# --- the stacked learners ------------------------------------------------------------------


class Learners:
    """``cfg.n_learners`` copies of an MLP in one ``(n, P)`` buffer, stepped together.

    ``params[k]`` is a view ``(n, *shape)`` of ``flat`` for the k-th entry of
    ``model.parameters()``. :meth:`step` is one step of ``cfg.algorithm`` for all learners.
    """

    def __init__(self, cfg: Config, model: MLP, n_learners: int | None = None):
        self.cfg = cfg
        self.n = n = cfg.n_learners if n_learners is None else n_learners
        self.activation = model.activation
        self.act = engine.activation_of(model)
        self.dropout_p = model.dropout_p
        named = list(model.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.flat = torch.cat([p.detach().reshape(1, -1) for _, p in named], dim=1).repeat(n, 1)
        self.params = self._views(self.flat)
        self.weight_index = [i for i, name in enumerate(self.names) if name.endswith("weight")]
        # (W, b or None) per layer, in order fc1..fcL
        by_name = dict(zip(self.names, self.params))
        self.layers = engine.layers_of(
            (by_name[f"{layer}.weight"], by_name.get(f"{layer}.bias"))
            for layer in model.layer_names
        )
        self.velocity: torch.Tensor | None = None
        self.mixing: torch.Tensor | None = None
        if cfg.algorithm == "dpsgd" and cfg.topology != "gossip" and n > 1:
            self.mixing = mixing_matrix(cfg.topology, n).to(self.flat.device, self.flat.dtype)
        self.gossip_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self.steps_taken = 0
        # the summed loss of every learner's batches since reset_step_loss() (divergence rule)
        self.step_loss_sum = self.flat.new_zeros(())
        self.step_loss_count = 0

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        views, offset = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            views.append(flat[:, offset : offset + size].view(flat.shape[0], *shape))
            offset += size
        return views

    # -- forward / backward -----------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode logits of every learner, ``(n, B, classes)``; x is (B, in) or (n, B, in)."""
        return engine.logits(self.layers, x, self.act)

    def gradients(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        valid: torch.Tensor | None = None,
        divisor: torch.Tensor | float | None = None,
        dropout_gen: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-learner gradients of the cross-entropy, ``(n, P)``, by the engine's backprop.

        x (n, B, in), y (n, B). Learner i's gradient is the sum over its samples where ``valid``
        is True, divided by ``divisor`` (one number, or ``divisor[i]`` per learner; default: its
        number of valid samples, i.e. the mean loss; a learner without a sample gets a zero
        gradient). Dropout (training mode, after the first hidden layer) draws masks
        ``(n, B, width)`` from ``dropout_gen``.
        """
        n, B = y.shape
        mask = None
        if self.dropout_p > 0:
            shape = (n, B, self.layers[0][0].shape[1])
            mask = engine.dropout_mask(shape, self.dropout_p, dropout_gen, x.dtype, x.device)
        fp = engine.forward(self.layers, x, self.act, mask)
        if divisor is None:
            divisor = float(B) if valid is None else valid.sum(1).clamp(min=1)
        if not isinstance(divisor, float):
            divisor = divisor.to(x.dtype).view(n, 1, 1)
        onehot = F.one_hot(y, fp.logits.shape[2]).to(x.dtype)
        dz = engine.cross_entropy_error(
            fp.logits, onehot, divisor, valid, loss_sum=self.step_loss_sum
        )
        self.step_loss_count += y.numel() if valid is None else int(valid.sum())
        grad = self.flat.new_empty(n, self.flat.shape[1])
        by_name = dict(zip(self.names, self._views(grad)))
        for i, (gW, gb) in enumerate(engine.gradients(self.layers, fp, dz, self.act)):
            by_name[f"fc{i + 1}.weight"].copy_(gW)
            if gb is not None:
                by_name[f"fc{i + 1}.bias"].copy_(gb)
        return grad

    def reset_step_loss(self) -> None:
        self.step_loss_sum.zero_()
        self.step_loss_count = 0

    def step_loss(self) -> float:
        """Mean loss of the learners' batches (before each step) since reset_step_loss()."""
        return float(self.step_loss_sum) / max(self.step_loss_count, 1)

    def add_weight_decay(self, grad: torch.Tensor, params: torch.Tensor) -> None:
        """Add the gradient of cfg's weight penalty, per learner, to ``grad`` (rows of params)."""
        grads, weights = self._views(grad), self._views(params)
        add_weight_decay(
            [grads[i] for i in self.weight_index], [weights[i] for i in self.weight_index], self.cfg
        )

    # -- one step -----------------------------------------------------------------------------
    def step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        valid: torch.Tensor | None = None,
        decay: bool = False,
        dropout_gen: torch.Generator | None = None,
    ) -> None:
        """One step of ``cfg.algorithm``: learner i trains on batch ``x[i], y[i]`` (its valid part)."""
        cfg, n = self.cfg, self.n
        if cfg.algorithm == "ssgd" or n == 1:
            # gradient of the union batch: sum over every learner's samples / total count
            divisor = float(y.numel()) if valid is None else valid.sum().clamp(min=1).expand(n)
            grad = self.gradients(x, y, valid, divisor, dropout_gen).sum(0, keepdim=True)
            if decay:
                self.add_weight_decay(grad, self.flat[:1])
        else:
            grad = self.gradients(x, y, valid, None, dropout_gen)
            if decay:
                self.add_weight_decay(grad, self.flat)
        if cfg.momentum > 0:
            if self.velocity is None:
                self.velocity = torch.zeros_like(grad)
            self.velocity.mul_(cfg.momentum).add_(grad)
            grad = self.velocity
        self.flat.add_(grad, alpha=-cfg.lr)  # grad is (1, P) for ssgd: the same step for all
        self.steps_taken += 1
        if n > 1:
            if cfg.algorithm == "dpsgd":
                self.mix()
            elif cfg.algorithm == "local_sgd" and self.steps_taken % cfg.local_steps == 0:
                self.flat.copy_(self.average().expand_as(self.flat))

    def mix(self) -> None:
        """``X <- M X`` with the topology's mixing matrix (a fresh matching for gossip)."""
        M = self.mixing
        if M is None:
            M = mixing_matrix("gossip", self.n, self.gossip_gen).to(
                self.flat.device, self.flat.dtype
            )
        self.flat.copy_(M @ self.flat)

    # -- summaries ----------------------------------------------------------------------------
    def average(self) -> torch.Tensor:
        """Mean of the learners, ``(P,)``: taken around learner 0, so identical learners
        (SSGD, local SGD after averaging) give exactly their common value."""
        first = self.flat[0]
        return first + (self.flat - first).mean(0)

    def consensus_distance(self) -> float:
        """``sqrt(mean_i ||theta_i - mean(theta)||^2)`` over all parameters."""
        dev = self.flat - self.average()
        return float(dev.pow(2).sum(1).mean().sqrt())

    def load_average(self, model: MLP) -> MLP:
        """Copy the learners' average into ``model`` (its parameters in the same order)."""
        avg = self.average()
        offset = 0
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(avg[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        return model

    def learner_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Mean over learners of each learner's own mean cross-entropy on ``(x, y)``."""
        logits = self.logits(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[2]), y.repeat(self.n))
        return float(loss)

    def state(self) -> dict[str, torch.Tensor]:
        """Every learner's parameters: name -> ``(n, *shape)`` tensor (a CPU copy)."""
        return {name: v.detach().cpu().clone() for name, v in zip(self.names, self.params)}


# --- training loop -------------------------------------------------------------------------


def train_multilearner(
    cfg: Config,
    data: Data | None = None,
    show_progress: bool | None = None,
    on_epoch: EpochCallback | None = None,
) -> Run:
    """Train ``cfg.n_learners`` learners with ``cfg.algorithm``; ``Run.model`` is their average.

    Same protocol as :func:`awbench.training.sgd` (stopping rule on the average, weight decay epochs,
    divergence as a status, ``on_epoch`` after each epoch with its history row, consensus
    columns included). With one learner every algorithm is plain SGD.
    """
    data = data if data is not None else load_data(cfg)
    n_samples = int(data.x_train.shape[0])
    if cfg.n_learners > n_samples:
        raise ConfigError(
            f"Config.n_learners={cfg.n_learners} is not allowed: expected at most the "
            f"{n_samples} training samples (every learner needs its own data shard)"
        )
    model = build_model(cfg, data.n_features, data.n_classes)
    start = time.perf_counter()
    with torch.no_grad():
        learners = Learners(cfg, model)
        history, status, reason = _epochs(cfg, learners, model, data, show_progress, on_epoch)
        learners.load_average(model)
    model.eval()
    last = history[-1] if history else {}
    extras = {
        "n_learners": cfg.n_learners,
        "algorithm": cfg.algorithm,
        "topology": cfg.topology,
        "local_steps": cfg.local_steps,
        "effective_batch": cfg.n_learners * cfg.batch_size,
        "steps_per_epoch": -(-n_samples // (cfg.n_learners * cfg.batch_size)),
        "consensus_distance": last.get("consensus", learners.consensus_distance()),
        "consensus_relative": learners.consensus_distance()
        / max(float(learners.average().norm()), 1e-300),
        "learner_train_loss": last.get("learner_train_loss", float("nan")),
        "learner_params": learners.state(),
    }
    return Run(
        config=cfg,
        model=model,
        data=data,
        history=pd.DataFrame(history),
        status=status,
        reason=reason,
        train_seconds=time.perf_counter() - start,
        extras=extras,
    )


def _epochs(
    cfg: Config,
    learners: Learners,
    model: MLP,
    data: Data,
    show_progress: bool | None,
    on_epoch: EpochCallback | None,
):
    tensors = DeviceData.of(cfg, data)
    device = tensors.x.device
    pos, valid = shard_positions(tensors.x.shape[0], learners.n, cfg.batch_size)
    pos, valid = pos.to(device), valid.to(device)
    # per step: slots up to the fullest learner's batch (only the last step can be short);
    # full steps skip the mask so that they cost what an unpadded step costs
    width = valid.sum(2).max(1).values.tolist()
    full = valid.all(2).all(1).tolist()
    dropout_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    def train_epoch(order: torch.Tensor, decay_on: bool) -> None:
        learners.reset_step_loss()
        idx_all = order[pos]
        for k in range(pos.shape[0]):
            idx = idx_all[k, :, : width[k]]
            mask = None if full[k] else valid[k, :, : width[k]]
            learners.step(tensors.x[idx], tensors.y[idx], mask, decay_on, dropout_gen)
        learners.load_average(model)

    def extra_metrics() -> dict:
        return {
            "consensus": learners.consensus_distance(),
            "learner_train_loss": learners.learner_loss(tensors.x_clean, tensors.y_clean),
        }

    return _epoch_loop(
        cfg,
        model,
        tensors,
        train_epoch,
        lambda: bool(torch.isfinite(learners.flat).all()),
        extra_metrics,
        show_progress,
        on_epoch,
        learners.step_loss,
    )


def _epoch_loop(
    cfg: Config,
    model: MLP,
    tensors: DeviceData,
    train_epoch: Callable[[torch.Tensor, bool], None],
    all_finite: Callable[[], bool],
    extra_metrics: Callable[[], dict] | None = None,
    show_progress: bool | None = None,
    on_epoch: EpochCallback | None = None,
    step_loss: Callable[[], float] | None = None,
) -> tuple[list[dict], str, str]:
    """The protocol around the steps, shared by every training algorithm.

    Per epoch: a fresh sample order from ``cfg.seed``'s generator, ``train_epoch(order,
    decay_on)`` takes the steps, then ``model`` is evaluated on the clean training set and the
    test set, ``on_epoch`` is told, divergence is checked
    (:func:`awbench.training.run.divergence_reason`; ``step_loss()`` is the mean loss of the
    epoch's steps) and the demo's stopping rule applied. Returns the history rows, the status
    and its reason.
    """
    n_classes = getattr(model, model.layer_names[-1]).out_features
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
            diverged = divergence_reason(
                train_loss,
                step_loss() if step_loss is not None else train_loss,
                all_finite(),
                n_classes,
                epoch + 1,
                cfg.lr,
            )
            if diverged is not None:
                status, reason = DIVERGED, diverged
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
