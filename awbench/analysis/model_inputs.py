"""What ``analyze_model`` takes from a user: samples as tensors or DataLoaders, and a model
whose analysed layer the duality can serve (docs/science.md#1-the-activity-weight-duality).

The checks run before any work and raise ValueError naming what is wrong: the layer is not
an ``nn.Linear``, it runs more than once per forward pass, its input has more than two
dimensions, its output does not feed the logits, the model is not deterministic in eval
mode, or the shapes do not fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from awbench.analysis.duality import Pairs, eval_mode, module_inputs, pair_samples
from awbench.curvature.flat import NondeterministicModelError, determinism_report
from awbench.curvature.layer import linear_layer, output_as_leaf
from awbench.curvature.layer_operator import frozen_parameters


@dataclass
class Samples:
    """Training and test tensors of one analysis; ``clean`` (bool, per training sample) marks
    the samples the training loss, the Hessian and the pairing use."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    clean: torch.Tensor


def _read_once(source, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(source, (tuple, list)) and len(source) == 2 and torch.is_tensor(source[0]):
        return torch.as_tensor(source[0]), torch.as_tensor(source[1])
    if not isinstance(source, Iterable) or isinstance(source, (str, bytes, torch.Tensor)):
        raise ValueError(  # noqa: TRY004 - a bad argument is a bad value, as every input error
            f"{name}={type(source).__name__} is not allowed: expected a pair (x, y) of tensors "
            "or a DataLoader (an iterable of (x, y) batches)"
        )
    xs, ys = [], []
    for batch in source:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(f"{name}: a batch is not an (x, y) pair but {type(batch).__name__}")
        xs.append(torch.as_tensor(batch[0]))
        ys.append(torch.as_tensor(batch[1]))
    if not xs:
        raise ValueError(f"{name}: the DataLoader gave no batches")
    return torch.cat(xs), torch.cat(ys)


def read_split(source, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) from a pair of tensors or a DataLoader, read in order as given.

    A DataLoader is read twice and both passes must agree: shuffling or random augmentation
    (the user's to switch off) would make the analysed samples undefined."""
    x, y = _read_once(source, name)
    if not isinstance(source, (tuple, list)):
        x2, y2 = _read_once(source, name)
        if x.shape != x2.shape or not (torch.equal(x, x2) and torch.equal(y, y2)):
            raise ValueError(
                f"{name}: two passes over the DataLoader gave different samples: switch off "
                "shuffling (shuffle=False) and random augmentation, so that it is read in a "
                "fixed order"
            )
    return x, y


def _check_split(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise ValueError(
            f"{name}: x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)} do not fit: "
            "expected x (N, ...) and integer class labels y (N,) with N > 0"
        )
    if y.is_floating_point() or y.dtype == torch.bool or bool((y < 0).any()):
        raise ValueError(
            f"{name}: y ({y.dtype}) must hold integer class labels >= 0 (the loss is cross-entropy)"
        )


def read_samples(train, test, clean=None) -> Samples:
    """The samples of ``analyze_model``: (x, y) pairs or DataLoaders, shapes checked."""
    x_train, y_train = read_split(train, "train")
    x_test, y_test = read_split(test, "test")
    _check_split(x_train, y_train, "train")
    _check_split(x_test, y_test, "test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"train samples have shape {tuple(x_train.shape[1:])} and test samples "
            f"{tuple(x_test.shape[1:])}: both sets must share the input shape"
        )
    if clean is None:
        clean = torch.ones(len(y_train), dtype=torch.bool)
    clean = torch.as_tensor(clean)
    if clean.dtype != torch.bool or clean.shape != y_train.shape:
        raise ValueError(
            f"clean of dtype {clean.dtype} and shape {tuple(clean.shape)} is not allowed: "
            f"expected a bool mask of shape ({len(y_train)},) over the training samples"
        )
    return Samples(x_train, y_train.long(), x_test, y_test.long(), clean)


def as_float64(x: torch.Tensor) -> torch.Tensor:
    """Floating inputs in float64; integer inputs (token ids for an embedding) unchanged."""
    return x.double() if x.is_floating_point() else x


def _probe(model: nn.Module, name: str, x: torch.Tensor) -> list[tuple]:
    """Input shapes seen by module ``name`` during one eval-mode forward pass of ``x``."""
    module = dict(model.named_modules())[name]
    seen: list[tuple] = []
    handle = module.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    try:
        with torch.no_grad(), eval_mode(model):
            logits = model(x)
    except (RuntimeError, TypeError, IndexError) as err:
        raise ValueError(
            f"the model cannot run on training inputs of dtype {x.dtype} and shape "
            f"{tuple(x.shape[1:])} per sample (floating inputs are analysed in float64, "
            f"integer ones such as token ids are passed unchanged): {err}"
        ) from err
    finally:
        handle.remove()
    if not torch.is_tensor(logits) or logits.ndim != 2 or len(logits) != len(x):
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(
            f"the model's output for {len(x)} samples has shape {shape}: expected logits "
            f"({len(x)}, n_classes) (the loss is cross-entropy)"
        )
    return seen


def _check_called_once(seen: list[tuple], name: str, what: str) -> None:
    if len(seen) != 1:
        raise ValueError(
            f"{what}={name!r} is called {len(seen)} times per forward pass: the analysis "
            "needs a layer that runs exactly once per sample (not a shared or unused layer)"
        )


def _check_feeds_output(model: nn.Module, layer: str, x: torch.Tensor) -> None:
    """ValueError when the logits do not depend on ``layer``'s output (a side branch, or an
    output detached downstream): the duality would change nothing the loss sees."""
    with (
        frozen_parameters(model),
        output_as_leaf(model, layer) as captured,
        eval_mode(model),
        torch.enable_grad(),
    ):
        logits = model(x)
        grad = (
            torch.autograd.grad(logits.sum(), captured["z"], allow_unused=True)[0]
            if logits.requires_grad
            else None
        )
    used = grad is not None
    if not used:
        raise ValueError(
            f"layer={layer!r} does not feed the model's output: the logits do not depend on "
            "its output (a side branch, or a detach after it), so its weights do not enter "
            "the loss; analyse a Linear on the path to the logits"
        )


def check_model(model: nn.Module, layer: str, s: Samples, pairing_layer: str | None) -> None:
    """ValueError unless ``layer`` is a Linear called once per forward on 2-D inputs, the
    logits fit the labels and the model is deterministic in eval mode."""
    linear_layer(model, layer)
    x = s.x_train[:4]
    seen = _probe(model, layer, x)
    _check_called_once(seen, layer, "layer")
    if len(seen[0]) != 2:
        raise ValueError(
            f"layer={layer!r} receives inputs of shape {seen[0]} (more than 2 dimensions, e.g. "
            "token sequences): the duality here is per sample, so the layer input must be "
            "(batch, features); flatten or pool before the layer"
        )
    _check_feeds_output(model, layer, x)
    if pairing_layer is not None:
        if pairing_layer not in dict(model.named_modules()):
            raise ValueError(f"pairing_layer={pairing_layer!r} is not a module of this model")
        _check_called_once(_probe(model, pairing_layer, x), pairing_layer, "pairing_layer")
    with torch.no_grad(), eval_mode(model):
        n_classes = model(x).shape[1]
    top = int(max(s.y_train.max(), s.y_test.max()))
    if top >= n_classes:
        raise ValueError(f"labels go up to {top} but the model gives {n_classes} logits per sample")
    issues = determinism_report(model, "eval", s.x_train if s.x_train.is_floating_point() else None)
    if issues:
        raise NondeterministicModelError(
            "the model is not deterministic in eval mode, so the duality's losses are "
            "undefined: " + "; ".join(issues)
        )


@dataclass
class PairingRule:
    """How test samples find their training partners (docs/science.md#2-pairing)."""

    method: str = "input"  # "input", "feature", "knn" or "random"
    k: int = 1  # partners per test sample for "knn"
    seed: int = 0  # for "random"
    layer: str | None = None  # "feature": the module whose input is the space (None: analysed)


def candidate_pairs(model, layer, rule: PairingRule, s: Samples) -> Pairs:
    """Candidate pairs by ``rule`` (before pairs with zero training activity are dropped)."""
    # The demo's rule pairs in raw input space (flattened, any shape); "feature" pairs in the
    # input space of rule.layer (the analysed layer by default), features extracted in chunks.
    if rule.method == "feature":
        name = rule.layer or layer
        qa, ra = module_inputs(model, name, s.x_test), module_inputs(model, name, s.x_train)
        return pair_samples(qa, s.y_test, ra, s.y_train, s.clean, method="input", seed=rule.seed)
    method = rule.method if rule.method in ("knn", "random") else "input"
    return pair_samples(
        s.x_test, s.y_test, s.x_train, s.y_train, s.clean, method, rule.k, rule.seed
    )
