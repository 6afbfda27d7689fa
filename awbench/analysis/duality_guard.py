"""No analysis without a duality (docs/science.md#1-the-activity-weight-duality).

The decomposition assumes that a weight change of the analysed layer can stand in for a
change of its input: ``l(x_k, W + dW_k) == l(x'_k, W)``. That holds when the layer's output
is the only way its input reaches the logits. It fails, and the sharp/flat split becomes
exact algebra on dual weights that reproduce nothing, when

* the layer's input also reaches the output by another path (a residual block around the
  layer, a skip Linear reading the same input);
* its weight is shared with another module (tied weights): the dual weight would change the
  other use too, and the layer's curvature is not the shared parameter's;
* a hook changes what the layer computes;
* the model is compiled (torch.compile traces hooks away).

The structural causes are detected before any work, the path test runs on a few probe
samples (:func:`check_single_path`), and every pair's duality error is checked after the
dual losses are computed (:func:`check_pair_duality`). Above ``DUALITY_RTOL`` a
:class:`DualityError` names the likely cause and what to change.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from awbench.curvature.flat import model_mode

# Relative tolerance of the duality, on the scale 1 + |value| (logits or nats). The analysis
# runs in float64, where an exact duality misses by rounding only (1e-16 to 1e-14 on the
# model zoo: W a + u (b . a) against W a', then the network downstream); 1e-6 leaves eight
# orders of magnitude for ill-conditioned dual weights and deep networks, and every failure
# seen (a residual block, a skip Linear, tied weights, a hook, a compiled model) misses by
# 0.1 to 0.8 nats.
DUALITY_RTOL = 1e-6
# Probe samples of the path test: the logits of a few test samples against training samples
# whose layer output is replaced by the test samples' (two forward passes of this many rows).
PROBE_SAMPLES = 8
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


class DualityError(ValueError):
    """The activity-weight duality does not hold at the analysed layer, so the gap
    decomposition would be numbers without meaning; the message names the likely cause."""


def _duality_error(label: str, cause: str, remedy: str) -> DualityError:
    return DualityError(
        f"layer={label!r}: the activity-weight duality cannot hold here: {cause}. No dual "
        f"weight of this layer reproduces a test sample, so the gap decomposition would be "
        f"meaningless (identity_error stays ~1e-17 because it is algebra). {remedy}"
    )


def is_compiled(model: nn.Module) -> bool:
    """True for a ``torch.compile``d module (an OptimizedModule keeps the original as
    ``_orig_mod``)."""
    return isinstance(getattr(model, "_orig_mod", None), nn.Module)


def check_structure(model: nn.Module, module: nn.Linear, label: str) -> None:
    """DualityError for what breaks the duality and is visible without running the model:
    a compiled submodule, a hook on the layer (or a global one), a weight shared with another
    module. ``model`` is the user's (uncompiled) model."""
    compiled = [n for n, m in model.named_modules() if n and is_compiled(m)]
    if compiled:
        raise _duality_error(
            label,
            f"the submodule {compiled[0]!r} is torch.compile'd (compiled code does not run the "
            "hooks the analysis places on the layer)",
            f"Pass a model whose submodules are not compiled ({compiled[0]}._orig_mod holds "
            "the original module).",
        )
    hooks = [h for h in _HOOK_DICTS if getattr(module, h, None)]
    if hooks:
        raise _duality_error(
            label,
            f"the layer carries user hooks ({', '.join(hooks)}): a hook can change what it "
            "computes, and the dual weight acts on the plain Linear",
            "Remove the hooks (handle.remove()) before the analysis, or build what the hook "
            "does into a module after the layer.",
        )
    global_hooks = [
        name
        for name in ("_global_forward_hooks", "_global_forward_pre_hooks")
        if getattr(torch_module, name, None)
    ]
    if global_hooks:
        raise _duality_error(
            label,
            f"global module hooks are registered ({', '.join(global_hooks)}, from "
            "torch.nn.modules.module.register_module_forward_hook): they run on every layer",
            "Remove them (handle.remove()) for the analysis.",
        )
    _check_untied(model, module, label)


def _check_untied(model: nn.Module, module: nn.Linear, label: str) -> None:
    own = {id(p): f"{label}.{n}" for n, p in module.named_parameters(recurse=False)}
    for name, other in model.named_modules(remove_duplicate=False):
        if other is module:
            continue
        for pname, p in other.named_parameters(recurse=False):
            if id(p) in own:
                where = f"{name}.{pname}" if name else pname
                raise _duality_error(
                    label,
                    f"its parameter {own[id(p)]} is the same Parameter as {where} (tied "
                    "weights): a change of it also changes the other use, and its curvature "
                    "is the shared parameter's, not this layer's",
                    "Untie it for the analysis (a copy with its own nn.Parameter(W.clone())), "
                    "accepting that the copy is a different network, or analyse another layer.",
                )


def check_single_path(model: nn.Module, module: nn.Linear, label: str, x_train, x_test) -> None:
    """DualityError when the logits of training samples whose layer output is replaced by
    test samples' differ from the test samples' logits: the layer's input then reaches the
    output by another path (a residual block around the layer, a skip branch).

    This is the duality with the minimal dual weight, which gives (W + dW_k) a_k = W a'_k
    exactly, tested on ``PROBE_SAMPLES`` samples without building a dual weight."""
    n = min(PROBE_SAMPLES, len(x_train), len(x_test))
    xa, xb = x_train[:n], x_test[:n]
    seen: dict[str, torch.Tensor] = {}
    record = module.register_forward_hook(lambda m, i, out: seen.__setitem__("z", out.clone()))
    try:
        with torch.no_grad(), model_mode(model, "eval"):
            direct = model(xb)
    finally:
        record.remove()
    swap = module.register_forward_hook(lambda m, i, out: seen["z"].clone())
    try:
        with torch.no_grad(), model_mode(model, "eval"):
            swapped = model(xa)
    finally:
        swap.remove()
    miss = float((swapped - direct).abs().max())
    if not miss <= DUALITY_RTOL * (1.0 + float(direct.abs().max())):
        raise _duality_error(
            label,
            f"its input reaches the output by another path than its output (with the layer's "
            f"output of a test sample, a training sample's logits still differ by {miss:.3g}): "
            "a residual or skip connection around the layer, or a branch reading its input",
            "Analyse a Linear whose output is the only way its input reaches the logits: a "
            "layer after the residual blocks (a classifier head), or the last Linear inside "
            "a branch whose input nothing else reads.",
        )


def check_pair_duality(label: str, dual: torch.Tensor, direct: torch.Tensor) -> None:
    """DualityError when some pair's |l(x_k, W + dW_k) - l(x'_k, W)| exceeds
    DUALITY_RTOL (1 + |l(x'_k, W)|) (nats): the dual weights do not reproduce the test samples."""
    miss = (dual - direct).abs()
    bad = ~(miss <= DUALITY_RTOL * (1.0 + direct.abs()))
    if bool(bad.any()):
        raise _duality_error(
            label,
            f"for {int(bad.sum())} of {len(miss)} pairs the dual loss l(x_k, W + dW_k) misses "
            f"the test loss l(x'_k, W) by more than {DUALITY_RTOL:g} x (1 + |loss|) (worst "
            f"{float(miss.max()):.3g} nats; float64 rounding gives ~1e-15): something the "
            "up-front checks did not see makes the logits depend on more than this layer's "
            "output (an in-place change of its input, a custom autograd function, state "
            "kept between calls)",
            "Analyse a layer whose output is the only way its input reaches the logits.",
        )


def probabilities_like(outputs: torch.Tensor) -> bool:
    """True when every row is non-negative and sums to 1 (to 1e-6): softmax outputs, not
    logits; cross-entropy of them is not the model's loss."""
    if outputs.ndim != 2 or not outputs.is_floating_point() or len(outputs) == 0:
        return False
    rows = outputs.double()
    return bool((rows >= 0).all()) and bool(((rows.sum(1) - 1).abs() <= 1e-6).all())
