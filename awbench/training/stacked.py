"""Several seeds of one setting trained together as one stacked model.

A step of a small MLP costs mostly Python and dispatch overhead, not arithmetic, so S seeds
trained one after another pay that overhead S times. Here the S members' parameters are
tensors ``(S, *shape)`` and one step is one batched forward/backward (``bmm`` over the member
axis) for all of them, each member on its own batch.

Every member follows :func:`awbench.training.sgd` for its own Config: the same initialisation, batch
order, dropout masks, weight decay, per-epoch evaluation, stopping and divergence rules, status
and reason. Members stop independently; a finished member is copied out and dropped from the
stack, so it neither changes nor costs anything afterwards.

The steps use the same kernels and operation order as train() (torch.softmax, the same
products and in-place updates), so on the CPU the parameters have come out bitwise equal to
single runs for relu, tanh and gelu (sigmoid differs in the last bit). The per-epoch losses
are a batched logsumexp and agree with train()'s to rounding; accuracies are exact.
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
from awbench.nn.mlp import MLP, build_model
from awbench.progress import progress
from awbench.status import CONVERGED, DIVERGED, MAX_EPOCHS
from awbench.training.sgd import _ACT_GRADS, DeviceData, EpochCallback, Run, stopping_rule_met

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
            f"{base.n_learners}, algorithm={base.algorithm!r} (use awbench.training.sgd for these)"
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
        template = models[0]
        self.act = template.act
        self.act_grad = _ACT_GRADS[template.activation]
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
        self.layers = [
            (self.params[w], None if b is None else self.params[b].unsqueeze(1))
            for w, b in self.layer_pos
        ]
        self.layers_t = [(W.transpose(1, 2), b) for W, b in self.layers]
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

    # -- forward / backward ---------------------------------------------------------------
    def logits(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Eval-mode logits ``(S, N, classes)`` of the members (or only ``rows``) on shared x."""
        h = x
        last = len(self.layers_t) - 1
        for i, (Wt, b) in enumerate(self.layers_t):
            if rows is not None:
                Wt = Wt.index_select(0, rows)
                b = None if b is None else b.index_select(0, rows)
            if b is None:
                h = torch.matmul(h, Wt)  # broadcasts the shared 2-D input over members
            else:
                h = torch.baddbmm(b, h.expand(Wt.shape[0], *h.shape[-2:]), Wt)
            if i < last:
                h = self.act(h)
        return h

    def gradients(
        self, x: torch.Tensor, onehot: torch.Tensor, mask: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Mean cross-entropy gradients per member, ordered as parameters(), each ``(S, *shape)``.

        x (S, B, in), onehot (S, B, classes), mask (S, B, width of fc1) or None. The same
        arithmetic as :func:`awbench.training.sgd.mlp_gradients`, batched over members.
        """
        layers_t = self.layers_t
        last = len(layers_t) - 1
        inputs, pre = [], []
        h = x
        for i, (Wt, b) in enumerate(layers_t):
            inputs.append(h)
            z = torch.bmm(h, Wt) if b is None else torch.baddbmm(b, h, Wt)
            if i == last:
                break
            a = self.act(z)
            pre.append((z, a))
            if i == 0 and mask is not None:
                a = a * mask
            h = a
        dz = torch.softmax(z, dim=2)
        dz -= onehot
        dz /= x.shape[1]
        grads: list[torch.Tensor | None] = [None] * len(self.params)
        for i in range(last, -1, -1):
            w_pos, b_pos = self.layer_pos[i]
            grads[w_pos] = torch.bmm(dz.transpose(1, 2), inputs[i])
            if b_pos is not None:
                grads[b_pos] = dz.sum(1)
            if i == 0:
                break
            dh = torch.bmm(dz, self.layers[i][0])
            if i == 1 and mask is not None:
                dh *= mask
            z_prev, a_prev = pre[i - 1]
            dh *= self.act_grad(z_prev, a_prev)
            dz = dh
        return grads  # type: ignore[return-value]

    def step(self, grads: list[torch.Tensor], decay_on: bool) -> None:
        cfg = self.cfg
        if decay_on:
            wgrads = [grads[i] for i in self.weight_pos]
            if cfg.weight_decay_mode == "norm":
                sq = torch.stack([w.pow(2).flatten(1).sum(1) for w in self.weights]).sum(0)
                norm = sq.sqrt()
                # the norm has no gradient at 0; train() then adds nothing, so scale 0 here
                safe = torch.where(norm > 0, norm, 1.0)
                scale = torch.where(norm > 0, cfg.weight_decay / safe, 0.0)
                for g, w in zip(wgrads, self.weights):
                    g.addcmul_(scale.view(-1, *([1] * (w.dim() - 1))), w)
            else:
                torch._foreach_add_(wgrads, self.weights, alpha=cfg.weight_decay)
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

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int):
        self.x, self.y = x, y
        self.y_index = y.view(1, -1, 1)
        # not_earlier[i, j]: class j does not come before sample i's label (argmax picks the
        # first maximum, so only earlier classes can win a tie)
        self.not_earlier = torch.arange(n_classes, device=y.device) >= y.view(-1, 1)

    def rows(self, logits: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per-member mean cross-entropy and accuracy from ``(S, N, classes)`` logits.

        A batched logsumexp instead of one F.cross_entropy per member: its last-dim
        log_softmax costs ~0.2 us per row, which made evaluation a third of the stacked cost.
        The loss therefore matches evaluate()'s to rounding; the accuracy is exact.
        """
        top = logits.amax(2, keepdim=True)
        lse = (logits - top).exp_().sum(2).log_().add_(top.squeeze(2))
        top = top.squeeze(2)
        picked = logits.gather(2, self.y_index.expand(logits.shape[0], -1, 1)).squeeze(2)
        loss = (lse - picked).mean(1).tolist()
        # argmax == y exactly when the label's logit is the maximum and no earlier class ties it
        before = logits.masked_fill(self.not_earlier, -math.inf).amax(2)
        acc = ((picked == top) & (before < top)).double().mean(1).tolist()
        for r, value in enumerate(loss):
            if not math.isfinite(value):
                # NaN/inf logits: evaluate()'s own arithmetic, so the status reason agrees
                loss[r] = F.cross_entropy(logits[r], self.y).item()
                acc[r] = (logits[r].argmax(1) == self.y).double().mean().item()
        return loss, acc


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
    device, dtype = tensors.x.device, tensors.x.dtype
    stack = _Stack(cfg, [c.seed for c in cfgs], models, device)
    n, B = tensors.x.shape[0], cfg.batch_size
    n_classes = int(data.n_classes)
    onehot = F.one_hot(tensors.y, n_classes).to(dtype)
    clean = _Split(tensors.x_clean, tensors.y_clean, n_classes)
    test = _Split(tensors.x_test, tensors.y_test, n_classes)
    width = models[0].fc1.out_features if stack.dropout_p > 0 else 0
    # On the CPU generator one draw of (n, width) yields the same numbers as the per-batch
    # draws of train() in sequence, so an epoch's masks cost one call per member. Other
    # devices' generators do not promise that, so there each batch draws its own.
    epoch_masks = device.type == "cpu"
    histories: list[list[dict]] = [[] for _ in cfgs]
    outcome: list[tuple[list[dict], str, str] | None] = [None] * len(cfgs)
    budget, decay_epochs = cfg.epoch_budget(), cfg.decay_epochs()
    bar = progress(range(budget), desc=f"train x{len(cfgs)} {cfg.key()[:8]}", enabled=show_progress)
    try:
        for epoch in bar:
            decay_on = cfg.weight_decay > 0 and epoch < decay_epochs
            order = torch.stack([torch.randperm(n, generator=g) for g in stack.batch_gens])
            order = order.to(device)
            # every member's epoch in one gather each; index_select is ~3x cheaper than x[order]
            flat = order.view(-1)
            x_all = tensors.x.index_select(0, flat).view(stack.size, n, -1)
            onehot_all = onehot.index_select(0, flat).view(stack.size, n, -1)
            mask_all = None
            if stack.dropout_p > 0 and epoch_masks:
                keep = torch.stack(
                    [torch.rand((n, width), generator=g, dtype=dtype) for g in stack.dropout_gens]
                )
                mask_all = (keep >= stack.dropout_p).to(dtype) / (1.0 - stack.dropout_p)
            for lo in range(0, n, B):
                hi = min(lo + B, n)
                if mask_all is not None:
                    mask = mask_all[:, lo:hi]
                elif stack.dropout_p > 0:
                    keep = torch.stack(
                        [
                            torch.rand((hi - lo, width), generator=g, device=device, dtype=dtype)
                            for g in stack.dropout_gens
                        ]
                    )
                    mask = (keep >= stack.dropout_p).to(dtype) / (1.0 - stack.dropout_p)
                else:
                    mask = None
                grads = stack.gradients(x_all[:, lo:hi], onehot_all[:, lo:hi], mask)
                stack.step(grads, decay_on)

            train_loss, train_acc = clean.rows(stack.logits(clean.x))
            finite = stack.finite_rows()
            finished: list[tuple[int, str, str]] = []  # (row, status, reason)
            for r, member in enumerate(stack.members):
                history = histories[member]
                history.append(
                    {
                        "epoch": epoch + 1,
                        "train_loss": train_loss[r],
                        "train_acc": train_acc[r],
                        "test_loss": math.nan,
                        "test_acc": math.nan,
                    }
                )
                if not (math.isfinite(train_loss[r]) and finite[r]):
                    reason = (
                        f"non-finite training loss ({train_loss[r]}) at epoch {epoch + 1} "
                        f"with lr={cfg.lr}"
                    )
                    finished.append((r, DIVERGED, reason))
                elif stopping_rule_met(history, cfg):
                    finished.append((r, CONVERGED, f"stopping rule met at epoch {epoch + 1}"))
                elif epoch + 1 == budget:
                    finished.append(
                        (r, MAX_EPOCHS, f"stopping rule not met within max_epochs={budget}")
                    )

            if (epoch + 1) % test_every == 0:
                test_rows = list(range(stack.size))
            else:
                test_rows = [r for r, _, _ in finished]
            if test_rows:
                rows = None
                if len(test_rows) < stack.size:
                    rows = torch.tensor(test_rows, dtype=torch.long, device=device)
                test_loss, test_acc = test.rows(stack.logits(test.x, rows))
                for r, loss, acc in zip(test_rows, test_loss, test_acc):
                    row = histories[stack.members[r]][-1]
                    row["test_loss"], row["test_acc"] = loss, acc
            if on_epoch is not None:
                # after the test columns are in, before finished members leave stack.members
                for member in stack.members:
                    on_epoch(epoch + 1, budget, dict(histories[member][-1]))

            if finished:
                for r, status, reason in finished:
                    member = stack.members[r]
                    stack.load_into(r, models[member])
                    outcome[member] = (histories[member], status, reason)
                done = {r for r, _, _ in finished}
                alive = [r for r in range(stack.size) if r not in done]
                if not alive:
                    break
                stack.keep(alive)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(active=stack.size, refresh=False)
    finally:
        if hasattr(bar, "close"):
            bar.close()
    return outcome  # type: ignore[return-value]
