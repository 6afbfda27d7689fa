"""What ``analyze_model`` takes from a user: samples as tensors or DataLoaders, and a model
whose analysed layer the duality can serve (docs/science.md#1-the-activity-weight-duality).

The checks run before any work and raise ValueError naming what is wrong: the layer is not
an ``nn.Linear``, it runs more than once per forward pass, its input has more than two
dimensions, its output does not feed the logits, the model is not deterministic in eval
mode, or the shapes do not fit.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from awbench.analysis.duality import Pairs, module_inputs, pair_samples
from awbench.analysis.duality_guard import check_single_path, probabilities_like
from awbench.analysis.resolved import ResolvedLayer
from awbench.curvature.flat import NondeterministicModelError, determinism_report, model_mode
from awbench.curvature.layer import output_as_leaf
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


def _array(value, name: str, what: str) -> torch.Tensor:
    """A tensor from a tensor or a numpy array; ValueError naming anything else."""
    if torch.is_tensor(value):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ValueError(f"{name}: {what} is a numpy array of objects: expected numbers")
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ValueError(
        f"{name}: {what} is a {type(value).__name__}, which is not allowed: expected a torch "
        "tensor or a numpy array (torch.as_tensor(...) converts a nested list)"
    )


def _is_array(value) -> bool:
    return torch.is_tensor(value) or isinstance(value, np.ndarray)


def _read_once(source, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(source, (tuple, list)) and len(source) == 2 and _is_array(source[0]):
        return _array(source[0], name, "x"), _array(source[1], name, "y")
    first = source[0] if isinstance(source, (tuple, list)) and len(source) == 2 else None
    if isinstance(first, list) and not (len(first) == 2 and _is_array(first[0])):
        _array(first, name, "x")  # a list of numbers, not of (x, y) batches: the error
    if not isinstance(source, Iterable) or isinstance(source, (str, bytes, torch.Tensor)):
        raise ValueError(  # noqa: TRY004 - a bad argument is a bad value, as every input error
            f"{name}={type(source).__name__} is not allowed: expected a pair (x, y) of tensors "
            "or a DataLoader (an iterable of (x, y) batches)"
        )
    xs, ys = [], []
    for batch in source:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(f"{name}: a batch is not an (x, y) pair but {type(batch).__name__}")
        xs.append(_array(batch[0], name, "a batch's x"))
        ys.append(_array(batch[1], name, "a batch's y"))
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
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or bool((y < 0).any()):
        raise ValueError(
            f"{name}: y ({y.dtype}) is not allowed: expected integer class labels >= 0 (the "
            "loss is cross-entropy)"
        )
    if x.is_complex():
        raise ValueError(f"{name}: x ({x.dtype}) is not allowed: expected real inputs")


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
    clean = _array(clean, "clean", "the mask")
    if clean.dtype != torch.bool or clean.shape != y_train.shape:
        raise ValueError(
            f"clean of dtype {clean.dtype} and shape {tuple(clean.shape)} is not allowed: "
            f"expected a bool mask of shape ({len(y_train)},) over the training samples"
        )
    if not bool(clean.any()):
        raise ValueError(
            f"clean selects none of the {len(clean)} training samples (all False): expected "
            "at least one True (the samples of the training loss, the Hessian and the pairing)"
        )
    return Samples(x_train, y_train.long(), x_test, y_test.long(), clean)


def as_float64(x: torch.Tensor) -> torch.Tensor:
    """Floating inputs in float64; integer inputs (token ids for an embedding) unchanged."""
    return x.double() if x.is_floating_point() else x


def _probe(model: nn.Module, module: nn.Module, x: torch.Tensor) -> tuple[list[tuple], object]:
    """Input shapes seen by ``module`` during one eval-mode forward pass of ``x``, and the
    model's output."""
    seen: list[tuple] = []
    handle = module.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    try:
        with torch.no_grad(), model_mode(model, "eval"):
            logits = model(x)
    except (RuntimeError, TypeError, IndexError) as err:
        raise ValueError(
            f"the model cannot run on training inputs of dtype {x.dtype} and shape "
            f"{tuple(x.shape[1:])} per sample (floating inputs are analysed in float64, "
            f"integer ones such as token ids are passed unchanged): {err}"
        ) from err
    finally:
        handle.remove()
    return seen, logits


def _check_logits(logits, n: int) -> None:
    if not torch.is_tensor(logits):
        raise ValueError(
            f"the model returns a {type(logits).__name__}, not a logits tensor: pass logits= "
            "to pick them (a key or index such as 'logits' or 0, an attribute name, or a "
            "callable output -> (N, n_classes) logits)"
        )
    if logits.ndim != 2 or len(logits) != n:
        raise ValueError(
            f"the model's output for {n} samples has shape {tuple(logits.shape)}: expected "
            f"logits ({n}, n_classes) (the loss is cross-entropy)"
        )
    if probabilities_like(logits):
        warnings.warn(
            "the model's outputs look like probabilities (every row is non-negative and sums "
            "to 1), but the loss is the cross-entropy of logits, so every gap would be that "
            "of softmax(probabilities): drop the final softmax, or pass logits=torch.log if "
            "they are probabilities",
            stacklevel=4,
        )


def _check_called_once(seen: list[tuple], name: str, what: str) -> None:
    if len(seen) != 1:
        raise ValueError(
            f"{what}={name!r} is called {len(seen)} times per forward pass: the analysis "
            "needs a layer that runs exactly once per sample (not a shared or unused layer)"
        )


def _check_feeds_output(target: ResolvedLayer, x: torch.Tensor) -> None:
    """ValueError when the logits do not depend on the layer's output (a side branch, or an
    output detached downstream): the duality would change nothing the loss sees."""
    model = target.model
    with (
        frozen_parameters(model),
        output_as_leaf(model, target.module) as captured,
        model_mode(model, "eval"),
        torch.enable_grad(),
    ):
        logits = model(x)
        grad = (
            torch.autograd.grad(logits.sum(), captured["z"], allow_unused=True)[0]
            if logits.requires_grad
            else None
        )
    if grad is None:
        raise ValueError(
            f"layer={target.label!r} does not feed the model's output: the logits do not depend "
            "on its output (a side branch, or a detach after it), so its weights do not enter "
            "the loss; analyse a Linear on the path to the logits"
        )


def _check_pairing_layer(target: ResolvedLayer, pairing_layer: str, x: torch.Tensor) -> None:
    module = dict(target.model.named_modules()).get(target.inner_name(pairing_layer))
    if module is None or not pairing_layer:
        raise ValueError(f"pairing_layer={pairing_layer!r} is not a module of this model")
    _check_called_once(_probe(target.model, module, x)[0], pairing_layer, "pairing_layer")


def check_model(target: ResolvedLayer, s: Samples, pairing_layer: str | None) -> None:
    """ValueError unless the layer is called once per forward on 2-D inputs and feeds the
    logits, the logits fit the labels and the model is deterministic in eval mode;
    DualityError when the layer's input reaches the output by another path."""
    model, label, x = target.model, target.label, s.x_train[:4]
    seen, logits = _probe(model, target.module, x)
    _check_logits(logits, len(x))
    _check_called_once(seen, label, "layer")
    if len(seen[0]) != 2:
        raise ValueError(
            f"layer={label!r} receives inputs of shape {seen[0]} (more than 2 dimensions, e.g. "
            "token sequences): the duality here is per sample, so the layer input must be "
            "(batch, features); flatten or pool before the layer"
        )
    _check_feeds_output(target, x)
    if pairing_layer is not None:
        _check_pairing_layer(target, pairing_layer, x)
    n_classes = logits.shape[1]
    top = int(max(s.y_train.max(), s.y_test.max()))
    if top >= n_classes:
        raise ValueError(f"labels go up to {top} but the model gives {n_classes} logits per sample")
    issues = determinism_report(model, "eval", s.x_train if s.x_train.is_floating_point() else None)
    if issues:
        raise NondeterministicModelError(
            "the model is not deterministic in eval mode, so the duality's losses are "
            "undefined: " + "; ".join(issues)
        )
    check_single_path(model, target.module, label, s.x_train, s.x_test)


@dataclass
class PairingRule:
    """How test samples find their training partners (docs/science.md#2-pairing)."""

    method: str = "input"  # "input", "feature", "knn" or "random"
    k: int = 1  # partners per test sample for "knn"
    seed: int = 0  # for "random"
    layer: str | None = None  # "feature": the module whose input is the space (None: analysed)


def candidate_pairs(target: ResolvedLayer, rule: PairingRule, s: Samples) -> Pairs:
    """Candidate pairs by ``rule`` (before pairs with zero training activity are dropped)."""
    # The demo's rule pairs in raw input space (flattened, any shape); "feature" pairs in the
    # input space of rule.layer (the analysed layer by default), features extracted in chunks.
    model = target.model
    if rule.method == "feature":
        name = target.inner_name(rule.layer) or target.module
        qa, ra = module_inputs(model, name, s.x_test), module_inputs(model, name, s.x_train)
        return pair_samples(qa, s.y_test, ra, s.y_train, s.clean, method="input", seed=rule.seed)
    method = rule.method if rule.method in ("knn", "random") else "input"
    return pair_samples(
        s.x_test, s.y_test, s.x_train, s.y_train, s.clean, method, rule.k, rule.seed
    )
