"""Several seeds of one setting trained together as one stacked model.

A step of a small MLP costs mostly Python and dispatch overhead, not arithmetic, so S seeds
trained one after another pay that overhead S times. Here the S members' parameters are
tensors ``(S, *shape)`` and one step is one batched forward/backward (``bmm`` over the member
axis) for all of them, each member on its own batch.

This is the training loop of every single-learner run: :func:`awbench.train` of one Config is
a stack of one member. Each member has its own initialisation, batch order, dropout masks,
weight decay, per-epoch evaluation, stopping and divergence rules, status and reason, so a
member's run does not depend on which others share its stack (up to the rounding of batched
products). Members stop independently; a finished member is copied out and dropped from the
stack, so it neither changes nor costs anything afterwards. The forward and backward passes
are :mod:`awbench.nn.engine`'s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from awbench.config import Config
from awbench.data import Data, load_data
from awbench.nn import engine
from awbench.nn.losses import per_sample_loss
from awbench.nn.mlp import MLP, build_model
from awbench.progress import progress
from awbench.status import CONVERGED, DIVERGED, MAX_EPOCHS
from awbench.training.run import (
    DeviceData,
    EpochCallback,
    Run,
    add_weight_decay,
    divergence_reason,
    stopping_rule_met,
)

__all__ = ["train_stacked"]


def _check_configs(cfgs: list[Config], test_every: int) -> None:
    if not cfgs:
        raise ValueError("train_stacked needs at least one Config")
    if isinstance(test_every, bool) or not isinstance(test_every, int) or test_every < 1:
        raise ValueError(f"test_every={test_every!r} is not allowed: expected an integer >= 1")
    base = cfgs[0]
    if base.n_learners != 1 or base.algorithm != "sgd":
        raise ValueError(
            "train_stacked trains single-learner SGD only: got n_learners="
            f"{base.n_learners}, algorithm={base.algorithm!r} (use awbench.train for these)"
        )
    ref = base.to_dict()
    differences = []
    for k, cfg in enumerate(cfgs[1:], start=1):
        d = cfg.to_dict()
        for name, value in d.items():
            if name != "seed" and value != ref[name]:
                differences.append(f"{name} (cfgs[0]: {ref[name]!r}, cfgs[{k}]: {value!r})")
    if differences:
        raise ValueError(
            "train_stacked needs configs that differ only in seed; they also differ in "
            + "; ".join(differences)
        )
    seeds = [c.seed for c in cfgs]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"train_stacked got duplicate seeds {repeated}: each member needs its own")


class _Stack:
    """The active members' parameters, optimiser state and generators, stepped together.

    Row r of every tensor belongs to member ``members[r]`` (an index into the caller's
    configs); :meth:`keep` drops rows, so all work scales with the members still training.
    """

    def __init__(self, cfg: Config, seeds: list[int], models: list[MLP], device: torch.device):
        self.cfg = cfg
        self.loss_error = engine.loss_error(cfg.loss)
        template = models[0]
        self.act = engine.activation_of(template)
        self.dropout_p = template.dropout_p
        names = [name for name, _ in template.named_parameters()]
        self.is_weight = [name.endswith("weight") for name in names]
        # positions in parameters() order of each layer's weight and bias (None without bias)
        self.layer_pos = _layer_positions(template, names)
        self.members = list(range(len(models)))
        self.params = [
            torch.stack([p.detach() for p in ps]).contiguous()
            for ps in zip(*(m.parameters() for m in models))
        ]
        self.velocity = [torch.zeros_like(p) for p in self.params] if cfg.momentum > 0 else None
        # the generators of train(): batch order on the CPU from seed, dropout from seed + 1
        self.batch_gens = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.dropout_gens = [torch.Generator(device=device).manual_seed(seed + 1) for seed in seeds]
        self._refresh()

    def _refresh(self) -> None:
        # layer views are rebuilt only when rows are dropped; the update is in place
        self.layers = engine.layers_of(
            (self.params[w], None if b is None else self.params[b]) for w, b in self.layer_pos
        )
        self.weights = [p for p, w in zip(self.params, self.is_weight) if w]
        self.weight_pos = [i for i, w in enumerate(self.is_weight) if w]

    @property
    def size(self) -> int:
        return len(self.members)

    def keep(self, rows: list[int]) -> None:
        """Keep only rows ``rows`` (positions in the current stack), in that order."""
        index = torch.tensor(rows, dtype=torch.long, device=self.params[0].device)
        self.params = [p.index_select(0, index) for p in self.params]
        if self.velocity is not None:
            self.velocity = [v.index_select(0, index) for v in self.velocity]
        self.members = [self.members[r] for r in rows]
        self.batch_gens = [self.batch_gens[r] for r in rows]
        self.dropout_gens = [self.dropout_gens[r] for r in rows]
        self._refresh()

    # -- forward / backward (the engine's) and the SGD step ------------------------------------
    def logits(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Eval-mode logits ``(S, N, classes)`` of the members (or only ``rows``) on shared x."""
        layers = self.layers
        if rows is not None:
            layers = engine.layers_of(
                (W.index_select(0, rows), None if b is None else b.index_select(0, rows))
                for W, b, _ in layers
            )
        return engine.logits(layers, x, self.act)

    def gradients(
        self,
        x: torch.Tensor,
        onehot: torch.Tensor,
        mask: torch.Tensor | None,
        loss_sum: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Mean-loss gradients per member, ordered as parameters(), each ``(S, *shape)``.

        x (S, B, in), onehot (S, B, classes), mask (S, B, width of fc1) or None. With
        ``loss_sum`` (S,), each member's summed batch loss (in training mode, before the step)
        is added to it for the divergence rule.
        """
        fp = engine.forward(self.layers, x, self.act, mask)
        dz = self.loss_error(fp.logits, onehot, float(x.shape[1]), loss_sum=loss_sum)
        grads: list[torch.Tensor | None] = [None] * len(self.params)
        for (w_pos, b_pos), (gW, gb) in zip(
            self.layer_pos, engine.gradients(self.layers, fp, dz, self.act)
        ):
            grads[w_pos] = gW
            if b_pos is not None:
                grads[b_pos] = gb
        return grads  # type: ignore[return-value]

    def step(self, grads: list[torch.Tensor], decay_on: bool) -> None:
        cfg = self.cfg
        if decay_on:
            add_weight_decay([grads[i] for i in self.weight_pos], self.weights, cfg)
        if self.velocity is not None:
            torch._foreach_mul_(self.velocity, cfg.momentum)
            torch._foreach_add_(self.velocity, grads)
            grads = self.velocity
        torch._foreach_add_(self.params, grads, alpha=-cfg.lr)

    def finite_rows(self) -> list[bool]:
        # the largest |p| is finite iff every entry is (amax propagates NaN); 3x cheaper
        # than isfinite().all()
        largest = torch.stack([p.flatten(1).abs().amax(1) for p in self.params]).amax(0)
        return largest.isfinite().tolist()

    def load_into(self, row: int, model: MLP) -> None:
        for p, stacked in zip(model.parameters(), self.params):
            p.copy_(stacked[row])


def _layer_positions(model: MLP, names: list[str]) -> list[tuple[int, int | None]]:
    out = []
    for layer in model.layer_names:
        bias = f"{layer}.bias"
        out.append((names.index(f"{layer}.weight"), names.index(bias) if bias in names else None))
    return out


class _Split:
    """One evaluation set and what :meth:`rows` needs of its labels, prepared once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int, loss: str = "ce"):
        self.x, self.y, self.loss = x, y, loss
        self.y_index = y.view(1, -1, 1)
        # not_earlier[i, j]: class j does not come before sample i's label (argmax picks the
        # first maximum, so only earlier classes can win a tie)
        self.not_earlier = torch.arange(n_classes, device=y.device) >= y.view(-1, 1)

    def rows(self, logits: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per-member mean loss (the run's: cross-entropy or MSE) and accuracy from
        ``(S, N, classes)`` logits.

        A batched logsumexp instead of one F.cross_entropy per member: its last-dim
        log_softmax costs ~0.2 us per row, which made evaluation a third of the stacked cost.
        The loss therefore matches evaluate()'s to rounding; the accuracy is exact.
        """
        top = logits.amax(2, keepdim=True)
        picked = logits.gather(2, self.y_index.expand(logits.shape[0], -1, 1)).squeeze(2)
        if self.loss == "ce":
            lse = (logits - top).exp_().sum(2).log_().add_(top.squeeze(2))
            loss = (lse - picked).mean(1).tolist()
        else:
            loss = self._mse(logits).tolist()
        top = top.squeeze(2)
        # argmax == y exactly when the label's logit is the maximum and no earlier class ties it
        before = logits.masked_fill(self.not_earlier, -math.inf).amax(2)
        acc = ((picked == top) & (before < top)).double().mean(1).tolist()
        for r, value in enumerate(loss):
            if not math.isfinite(value):
                # NaN/inf logits: evaluate()'s own arithmetic, so the status reason agrees
                loss[r] = per_sample_loss(self.loss, logits[r], self.y).mean().item()
                acc[r] = (logits[r].argmax(1) == self.y).double().mean().item()
        return loss, acc

    def _mse(self, logits: torch.Tensor) -> torch.Tensor:
        """(S,) mean over samples of mean_c (softmax_c - onehot_c)^2."""
        sq = torch.softmax(logits, dim=2)
        sq.scatter_add_(
            2, self.y_index.expand(logits.shape[0], -1, 1), -torch.ones_like(sq[..., :1])
        )
        return sq.pow_(2).mean((1, 2))


def train_stacked(
    cfgs: Sequence[Config],
    data: Data | None = None,
    show_progress: bool | None = None,
    test_every: int = 1,
    on_epoch: EpochCallback | None = None,
) -> list[Run]:
    """Train configs that differ only in ``seed`` together; one :class:`Run` per config.

    Member s follows ``awbench.train(cfgs[s])`` step for step (same init, batch order, dropout
    masks, weight decay, evaluation, stopping and divergence rules, status and reason), so the
    results agree with single runs up to floating-point rounding of the batched products.
    Members stop on their own rule and are frozen from then on.

    ``test_every``: the test set is evaluated every ``test_every``-th epoch and at each
    member's last epoch; other epochs have NaN test columns (1: every epoch, as train()).
    ``on_epoch`` is called per member, as train() calls it for that member's run: after each
    epoch, once for every member that trained in it, in the order of ``cfgs``, with the
    member's own (complete) history row. Per member, not per stack, so that each member's
    calls are the ones train() of its config would make (interleaved); the call order is
    how a caller tells the members apart.
    ``train_seconds`` of each Run is the wall time of the whole stacked training divided by
    the number of members. Raises ValueError unless the configs are single-learner SGD, differ
    in nothing but ``seed`` and have distinct seeds.
    """
    cfgs = list(cfgs)
    _check_configs(cfgs, test_every)
    base = cfgs[0]
    data = data if data is not None else load_data(base)
    models = [build_model(cfg, data.n_features, data.n_classes) for cfg in cfgs]
    start = time.perf_counter()
    with torch.no_grad():
        outcome = _train(base, cfgs, models, data, show_progress, test_every, on_epoch)
    seconds = (time.perf_counter() - start) / len(cfgs)
    runs = []
    for cfg, model, (history, status, reason) in zip(cfgs, models, outcome):
        model.eval()
        runs.append(
            Run(
                config=cfg,
                model=model,
                data=data,
                history=pd.DataFrame(history),
                status=status,
                reason=reason,
                train_seconds=seconds,
            )
        )
    return runs


def _train(
    cfg: Config,
    cfgs: list[Config],
    models: list[MLP],
    data: Data,
    show_progress: bool | None,
    test_every: int,
    on_epoch: EpochCallback | None,
) -> list[tuple[list[dict], str, str]]:
    tensors = DeviceData.of(cfg, data)
    stack = _Stack(cfg, [c.seed for c in cfgs], models, tensors.x.device)
    n_classes = int(data.n_classes)
    onehot = F.one_hot(tensors.y, n_classes).to(tensors.x.dtype)
    clean = _Split(tensors.x_clean, tensors.y_clean, n_classes, cfg.loss)
    test = _Split(tensors.x_test, tensors.y_test, n_classes, cfg.loss)
    histories: list[list[dict]] = [[] for _ in cfgs]
    outcome: list[tuple[list[dict], str, str] | None] = [None] * len(cfgs)
    budget, decay_epochs = cfg.epoch_budget(), cfg.decay_epochs()
    bar = progress(range(budget), desc=f"train x{len(cfgs)} {cfg.key()[:8]}", enabled=show_progress)
    try:
        for epoch in bar:
            decay_on = cfg.weight_decay > 0 and epoch < decay_epochs
            step_loss = _train_epoch(stack, tensors.x, onehot, decay_on)
            finished = _record_train(stack, clean, histories, epoch + 1, budget, step_loss)
            due = (epoch + 1) % test_every == 0
            _record_test(stack, test, histories, [r for r, _, _ in finished], due)
            if on_epoch is not None:
                # after the test columns are in, before finished members leave stack.members
                for member in stack.members:
                    on_epoch(epoch + 1, budget, dict(histories[member][-1]))
            if finished:
                _retire(stack, finished, models, histories, outcome)
                if not stack.size:
                    break
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(active=stack.size, refresh=False)
    finally:
        if hasattr(bar, "close"):
            bar.close()
    return outcome  # type: ignore[return-value]


def _train_epoch(
    stack: _Stack, x: torch.Tensor, onehot: torch.Tensor, decay_on: bool
) -> list[float]:
    """One epoch of every member: its own sample order and dropout masks, all steps.

    Returns each member's mean loss over the epoch's steps (every training sample once)."""
    n, B, device, dtype = x.shape[0], stack.cfg.batch_size, x.device, x.dtype
    order = torch.stack([torch.randperm(n, generator=g) for g in stack.batch_gens]).to(device)
    # every member's epoch in one gather each; index_select is ~3x cheaper than x[order]
    flat = order.view(-1)
    x_all = x.index_select(0, flat).view(stack.size, n, -1)
    onehot_all = onehot.index_select(0, flat).view(stack.size, n, -1)
    loss_sum = torch.zeros(stack.size, dtype=dtype, device=device)
    p, width = stack.dropout_p, stack.layers[0][0].shape[1]

    def masks(rows: int) -> torch.Tensor:
        return torch.stack(
            [engine.dropout_mask((rows, width), p, g, dtype, device) for g in stack.dropout_gens]
        )

    # On the CPU generator one draw of (n, width) yields the same numbers as per-batch draws
    # in sequence, so an epoch's masks cost one call per member. Other devices' generators do
    # not promise that, so there each batch draws its own.
    mask_all = masks(n) if p > 0 and device.type == "cpu" else None
    for lo in range(0, n, B):
        hi = min(lo + B, n)
        if mask_all is not None:
            mask = mask_all[:, lo:hi]
        else:
            mask = masks(hi - lo) if p > 0 else None
        grads = stack.gradients(x_all[:, lo:hi], onehot_all[:, lo:hi], mask, loss_sum)
        stack.step(grads, decay_on)
    return (loss_sum / n).tolist()


def _record_train(
    stack: _Stack,
    clean: _Split,
    histories: list[list[dict]],
    epoch: int,
    budget: int,
    step_loss: list[float],
) -> list[tuple[int, str, str]]:
    """Append every member's history row; return the rows that finish: (row, status, reason).

    A member diverges when its loss is non-finite or above the bound of
    :func:`awbench.training.run.divergence_reason` (clean-train loss at the epoch's end, or
    ``step_loss``, the mean loss of its steps in the epoch)."""
    cfg = stack.cfg
    n_classes = clean.not_earlier.shape[1]
    train_loss, train_acc = clean.rows(stack.logits(clean.x))
    finite = stack.finite_rows()
    finished = []
    for r, member in enumerate(stack.members):
        history = histories[member]
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss[r],
                "train_acc": train_acc[r],
                "test_loss": math.nan,
                "test_acc": math.nan,
            }
        )
        reason = divergence_reason(train_loss[r], step_loss[r], finite[r], n_classes, epoch, cfg.lr)
        if reason is not None:
            finished.append((r, DIVERGED, reason))
        elif stopping_rule_met(history, cfg):
            finished.append((r, CONVERGED, f"stopping rule met at epoch {epoch}"))
        elif epoch == budget:
            finished.append((r, MAX_EPOCHS, f"stopping rule not met within max_epochs={budget}"))
    return finished


def _record_test(
    stack: _Stack, test: _Split, histories: list[list[dict]], finishing: list[int], due: bool
) -> None:
    """Fill the test columns of every member when ``due``, else of the finishing rows only."""
    rows = list(range(stack.size)) if due else finishing
    if not rows:
        return
    index = None
    if len(rows) < stack.size:
        index = torch.tensor(rows, dtype=torch.long, device=test.x.device)
    test_loss, test_acc = test.rows(stack.logits(test.x, index))
    for r, loss, acc in zip(rows, test_loss, test_acc):
        row = histories[stack.members[r]][-1]
        row["test_loss"], row["test_acc"] = loss, acc


def _retire(
    stack: _Stack,
    finished: list[tuple[int, str, str]],
    models: list[MLP],
    histories: list[list[dict]],
    outcome: list,
) -> None:
    """Copy the finished members out into their models and drop them from the stack."""
    for r, status, reason in finished:
        member = stack.members[r]
        stack.load_into(r, models[member])
        outcome[member] = (histories[member], status, reason)
    done = {r for r, _, _ in finished}
    alive = [r for r in range(stack.size) if r not in done]
    if alive:
        stack.keep(alive)
    else:
        stack.members = []
