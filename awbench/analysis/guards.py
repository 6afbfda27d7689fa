"""Checks analyze runs before any work: its arguments, finite inputs and weights, and the
memory the analysis will need (awbench/analysis/memory.py)."""

from __future__ import annotations

import numpy as np
import torch

from awbench.analysis.duality import eval_mode
from awbench.analysis.memory import check_memory, estimate_bytes, memory_limit
from awbench.config import PAIRINGS
from awbench.curvature.layer import linear_layer
from awbench.curvature.layer_operator import LayerHessianProducts

# Samples the downstream graph's bytes per sample are measured on (the Lanczos route keeps
# that graph for all N; its size depends on what follows the layer, unknown beforehand).
PROBE_ROWS = 16


def check_arguments(pairing, n_sharp, model, x_train, x_test) -> None:
    """ValueError for a pairing or n_sharp analyze cannot use, and for non-finite inputs or
    weights (they would give NaN results that look like a finished analysis)."""
    if pairing not in PAIRINGS:
        raise ValueError(
            f"pairing={pairing!r} is not allowed: expected one of "
            + ", ".join(repr(p) for p in PAIRINGS)
        )
    integer = isinstance(n_sharp, (int, np.integer)) and not isinstance(n_sharp, (bool, np.bool_))
    if not integer or n_sharp < 1:
        raise ValueError(
            f"n_sharp={n_sharp!r} is not allowed: expected an integer >= 1 (how many "
            "directions, by sigma_g, make the sharp part)"
        )
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if not x.is_floating_point():
            continue
        bad = ~torch.isfinite(x.reshape(len(x), -1)).all(1)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten().tolist()
            raise ValueError(
                f"{name} has non-finite values (NaN or inf) in {len(rows)} rows "
                f"{rows[:10]}{' ...' if len(rows) > 10 else ''}: the analysis needs finite inputs"
            )
    for pname, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise ValueError(
                f"the model's parameter {pname!r} has non-finite values (NaN or inf): a "
                "diverged network has no gap decomposition"
            )


def analysis_device(device, model) -> torch.device:
    """The device to analyse on: ``device``, or the model's when None. ValueError naming the
    value for a string torch cannot parse or a CUDA device this machine does not have."""
    if device is None:
        return next(model.parameters()).device
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device={device!r} is not allowed: expected 'cpu', 'cuda' or 'cuda:<index>' ({err})"
        ) from err
    if target.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (target.index or 0) >= count:
            raise ValueError(
                f"device={device!r} is not allowed here: torch sees {count} CUDA device(s) "
                f"(CUDA build: {torch.version.cuda or 'none'}); use 'cpu'"
            )
    elif target.type != "cpu":
        raise ValueError(f"device={device!r} is not allowed: expected 'cpu' or 'cuda[:index]'")
    return target


def check_analysis_memory(model, layer, x, y, with_bias, n_pairs, routes) -> None:
    """Estimate the analysis's memory before the work; AnalysisMemoryError over the limit.

    ``x``, ``y`` are the Hessian's samples; ``routes`` is (dense_max, lanczos_k, basis, limit).
    """
    dense_max, lanczos_k, basis, limit = routes
    module = linear_layer(model, layer)
    n_out, n_in = module.out_features, module.in_features + int(with_bias)
    P = n_out * n_in
    graph = 0.0
    if basis is not None:
        method, m = "given", basis.shape[1]
    elif P <= dense_max:
        method, m = "dense", P
    else:
        method, m = "lanczos+complement", min(lanczos_k, P - 1)
        probe = slice(0, PROBE_ROWS)
        with eval_mode(model):
            graph = LayerHessianProducts(model, layer, x[probe], y[probe]).graph_bytes
        graph /= min(len(y), PROBE_ROWS)
    parts = estimate_bytes(len(y), n_pairs, n_out, n_in, method, m, graph)
    check_memory(parts, memory_limit(limit), f"layer={layer!r} ({P} weights, {method})")
