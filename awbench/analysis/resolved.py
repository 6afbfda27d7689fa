"""The analysed layer, resolved once at the boundary of ``analyze_model`` and trusted inside.

:func:`resolve_layer` checks the model and the layer, makes the float64 copy the analysis
runs on (in eval mode, without the user's hooks, with a ``logits=`` selector applied) and
returns a :class:`ResolvedLayer`: the copy, the layer's module in it, its names, bias flag
and shape, and the device. Everything after takes that object instead of looking the layer
up by name again.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from awbench.analysis.duality_guard import DualityError, check_structure, is_compiled
from awbench.curvature.layer import linear_layer

HALF_DTYPES = (torch.float16, torch.bfloat16)
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


@dataclass(frozen=True)
class Routes:
    """How the eigenbasis is found and what memory the analysis may take."""

    dense_max: int  # up to this many weights: the dense Hessian, fully diagonalised
    lanczos_k: int  # above it: this many top eigenpairs by Lanczos, plus the complement
    basis: torch.Tensor | None  # a given orthonormal basis (P, m) instead of either
    memory_limit: int | None  # bytes (None: the environment variable, else 75 % free)


@dataclass(frozen=True)
class ResolvedLayer:
    """The float64 eval-mode copy of the user's model and its analysed Linear layer."""

    model: nn.Module  # the copy the analysis runs on (never the user's model)
    module: nn.Linear  # the analysed layer inside ``model``
    name: str  # its name in ``model`` (prefixed "net." under a logits= selector)
    label: str  # its name in the user's model: Analysis.layer and every message
    with_bias: bool
    shape: tuple[int, int]  # (n_out, n_in [+ 1 with a bias]): the dual weights' shape
    device: torch.device
    loss: str = "ce"  # the loss of every gap and Hessian: "ce" or "mse" (awbench/nn/losses.py)

    @property
    def n_weights(self) -> int:
        return self.shape[0] * self.shape[1]

    def inner_name(self, name: str | None) -> str | None:
        """A module name of the user's model as a name in ``model``."""
        prefix = "net." if isinstance(self.model, LogitsOf) else ""
        return None if name is None else prefix + name


def select_logits(output, selector):
    """The logits in a model's ``output`` picked by ``selector``: a key or index (a dict, a
    tuple, a HuggingFace ModelOutput), an attribute name, or a callable of the output."""
    if selector is None:
        return output
    if callable(selector):
        return selector(output)
    if isinstance(output, Mapping) and selector in output:
        return output[selector]
    if isinstance(output, (tuple, list)) and isinstance(selector, int):
        if -len(output) <= selector < len(output):
            return output[selector]
    elif isinstance(selector, str) and hasattr(output, selector):
        return getattr(output, selector)
    raise ValueError(
        f"logits={selector!r} is not allowed for this model: its output is a "
        f"{type(output).__name__}"
        + (f" with keys {list(output)}" if isinstance(output, Mapping) else "")
        + (f" of {len(output)} items" if isinstance(output, (tuple, list)) else "")
        + ": expected a key or index of the output, an attribute name, or a callable "
        "output -> logits (N, n_classes)"
    )


class LogitsOf(nn.Module):
    """``net`` followed by ``select_logits``: the analysis's model when the user's returns a
    tuple, a dict or a ModelOutput. Its module names are the user's prefixed with "net."."""

    def __init__(self, net: nn.Module, selector: str | int | Callable):
        super().__init__()
        self.net = net
        self.selector = selector

    def forward(self, x):
        return select_logits(self.net(x), self.selector)


def check_logits_selector(logits) -> None:
    if logits is None or callable(logits):
        return
    if isinstance(logits, bool) or not isinstance(logits, (str, int)):
        raise ValueError(  # noqa: TRY004 - a bad argument is a bad value, as every input error
            f"logits={logits!r} is not allowed: expected None (the model returns logits), a key "
            "or index of its output (e.g. 'logits' or 0), an attribute name, or a callable"
        )


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The original module of a ``torch.compile``d model, with a warning; others as given."""
    if not isinstance(model, nn.Module):
        raise ValueError(  # noqa: TRY004 - a bad argument is a bad value, as every input error
            f"model={type(model).__name__} is not allowed: expected a torch.nn.Module"
        )
    if not is_compiled(model):
        return model
    warnings.warn(
        "the model is torch.compile'd: the analysis runs its original module (model._orig_mod) "
        "eagerly in float64, which computes the same function (compiled code would not run "
        "the hooks the analysis places on the layer)",
        stacklevel=3,
    )
    return model._orig_mod


def _check_materialized(model: nn.Module) -> None:
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in named:
            if t.is_meta:
                raise ValueError(
                    f"model: its {kind} {name!r} is on the meta device (it has a shape but no "
                    "values): materialise the model first (model.to_empty(device='cpu') and "
                    "load_state_dict(...)), then analyse it"
                )


def layer_name(model: nn.Module, layer) -> str:
    """The name of ``layer`` in ``model``: a name as given, or the name of a module object."""
    if isinstance(layer, nn.Module):
        for name, m in model.named_modules():
            if m is layer and name:
                return name
        linear_layer(model, layer)  # the error naming the Linear layers of the model
    if not isinstance(layer, str):
        raise ValueError(  # noqa: TRY004 - a bad argument is a bad value, as every input error
            f"layer={layer!r} is not allowed: expected the name of an nn.Linear module of the "
            "model (e.g. 'classifier.3') or the module itself"
        )
    linear_layer(model, layer)
    return layer


def _note_half_precision(model: nn.Module) -> None:
    dtypes = {p.dtype for p in model.parameters() if p.dtype in HALF_DTYPES}
    if dtypes:
        names = ", ".join(sorted(str(d).replace("torch.", "") for d in dtypes))
        warnings.warn(
            f"the model's parameters are {names}: it is analysed as a float64 copy, so every "
            f"number describes the float64 network, whose losses differ from the {names} "
            "model's by that format's rounding (about 1e-3 relative)",
            stacklevel=4,
        )


def _clear_hooks(copy_: nn.Module, label: str) -> None:
    """Drop every module hook of the copy (a deepcopy shares the user's hook closures, so a
    recording hook would fire on the analysis's forward passes), with a note naming them."""
    hooked = []
    for name, m in copy_.named_modules():
        if any(getattr(m, h, None) for h in _HOOK_DICTS):
            hooked.append(name or "<model>")
        for h in _HOOK_DICTS:
            d = getattr(m, h, None)
            if d:
                setattr(m, h, type(d)())
    if hooked:
        warnings.warn(
            f"hooks on {hooked[:5]}{' ...' if len(hooked) > 5 else ''} are not part of the "
            f"analysis of layer={label!r}: it runs on a copy of the model without them (a hook "
            "that changes outputs makes the analysed network differ from yours)",
            stacklevel=4,
        )


def resolve_layer(
    model: nn.Module, layer, device: torch.device, logits=None, loss: str = "ce"
) -> ResolvedLayer:
    """Check ``model`` and ``layer`` (a name or the module) and build the float64 eval-mode
    copy the analysis runs on. DualityError for a layer whose duality cannot hold by its
    structure (hooks on it, tied weights, a compiled submodule)."""
    model = unwrap_compiled(model)
    _check_materialized(model)
    check_logits_selector(logits)
    label = layer_name(model, layer)
    module = linear_layer(model, label)
    check_structure(model, module, label)
    _note_half_precision(model)
    net = copy.deepcopy(model)
    _clear_hooks(net, label)
    net = (LogitsOf(net, logits) if logits is not None else net).to(device).double().eval()
    name = ("net." if logits is not None else "") + label
    module = linear_layer(net, name)
    with_bias = module.bias is not None
    shape = (module.out_features, module.in_features + int(with_bias))
    return ResolvedLayer(net, module, name, label, with_bias, shape, device, loss)


__all__ = ["DualityError", "LogitsOf", "ResolvedLayer", "Routes", "resolve_layer"]
