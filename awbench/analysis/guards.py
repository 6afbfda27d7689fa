"""Checks analyze runs before any work: its arguments, finite inputs and weights, and the
memory the analysis will need (awbench/analysis/memory.py)."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from awbench.analysis.memory import check_memory, estimate_bytes, memory_limit, parse_bytes
from awbench.analysis.resolved import ResolvedLayer, Routes
from awbench.config import PAIRINGS
from awbench.curvature.flat import model_mode
from awbench.curvature.layer_operator import LayerHessianProducts

# A given basis's columns must be orthonormal to this (float64 QR gives ~1e-15; a basis
# orthonormalised in float32 ~1e-7), checked on this many random probes.
BASIS_RTOL = 1e-6
BASIS_PROBES = 4
# Samples the downstream graph's bytes per sample are measured on (the Lanczos route keeps
# that graph for all N; its size depends on what follows the layer, unknown beforehand).
PROBE_ROWS = 16


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(name: str, value, minimum: int, meaning: str = "") -> None:
    """ValueError unless ``value`` is an integer >= minimum (bools are not integers here)."""
    if not _is_int(value) or value < minimum:
        why = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name}={value!r} is not allowed: expected an integer >= {minimum}{why}")


def check_arguments(pairing, n_sharp, pairing_k=1, seed=0, pairing_layer=None) -> None:
    """ValueError naming the parameter, its value and what is allowed, for a pairing setting
    or n_sharp analyze cannot use."""
    if pairing not in PAIRINGS:
        raise ValueError(
            f"pairing={pairing!r} is not allowed: expected one of "
            + ", ".join(repr(p) for p in PAIRINGS)
        )
    _check_int("n_sharp", n_sharp, 1, "how many directions, by sigma_g, make the sharp part")
    _check_int("pairing_k", pairing_k, 1, "partners per test sample for pairing='knn'")
    _check_int("seed", seed, 0)
    if pairing_layer is not None and not isinstance(pairing_layer, str):
        raise ValueError(
            f"pairing_layer={pairing_layer!r} is not allowed: expected None or a module name"
        )


def check_finite(model, x_train, x_test) -> None:
    """ValueError for non-finite inputs or weights (they would give NaN results that look
    like a finished analysis)."""
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
        if p.is_floating_point() and not p.is_meta and not bool(torch.isfinite(p).all()):
            raise ValueError(
                f"the model's parameter {pname!r} has non-finite values (NaN or inf): a "
                "diverged network has no gap decomposition"
            )


def check_routes(dense_max, lanczos_k, basis, limit) -> Routes:
    """The route settings as :class:`Routes`; ValueError naming a bad one. ``basis`` is
    checked against the layer later (:func:`check_basis`); ``limit`` may be "2G"-style."""
    _check_int(
        "dense_max", dense_max, 0, "weights up to which the Hessian is built and diagonalised"
    )
    _check_int("lanczos_k", lanczos_k, 1, "eigenpairs the Lanczos route computes")
    if basis is not None:
        if isinstance(basis, np.ndarray):
            basis = torch.from_numpy(basis)
        if not torch.is_tensor(basis) or basis.is_complex() or basis.ndim != 2:
            what = tuple(basis.shape) if torch.is_tensor(basis) else type(basis).__name__
            raise ValueError(
                f"basis of shape {what} is not allowed: expected a real (P, m) tensor or "
                "array with orthonormal columns (P: the layer's weights, with the bias column)"
            )
        basis = basis.double()
    return Routes(int(dense_max), int(lanczos_k), basis, parse_limit(limit))


def parse_limit(limit) -> int | None:
    """``memory_limit`` in bytes: None, a positive number, or a string as the environment
    variable takes ("2G", "500M")."""
    if limit is None:
        return None
    if isinstance(limit, str):
        return parse_bytes(limit, "memory_limit")
    if isinstance(limit, bool) or not isinstance(limit, (int, float, np.integer, np.floating)):
        raise ValueError(  # noqa: TRY004 - a bad argument is a bad value, as every input error
            f"memory_limit={limit!r} is not allowed: expected None, bytes > 0 or a string "
            "such as '2G' or '500M'"
        )
    return memory_limit(limit)


def check_basis(basis: torch.Tensor, n_weights: int, label: str) -> None:
    """ValueError unless ``basis`` is (P, m), 1 <= m <= P, finite, with orthonormal columns
    to BASIS_RTOL: for any other the identity's split is meaningless (identity_error would
    report the basis's error, not the analysis's)."""
    P, m = basis.shape
    if P != n_weights or not 1 <= m <= P:
        raise ValueError(
            f"basis of shape {tuple(basis.shape)} is not allowed at layer={label!r}: expected "
            f"({n_weights}, m) with 1 <= m <= {n_weights} (rows: the layer's weights "
            "flattened as weight.flatten(), with a bias column [W | b] when it has one)"
        )
    if not bool(torch.isfinite(basis).all()):
        raise ValueError("basis has non-finite values (NaN or inf): expected orthonormal columns")
    # Column norms exactly, the rest of B^T B - I through random probes (O(P m) each, not the
    # O(P m^2) of the Gram matrix): a Gaussian probe misses a nonzero B^T B - I with
    # probability zero.
    norms = (basis * basis).sum(0) - 1.0
    probes = torch.randn(m, BASIS_PROBES, generator=torch.Generator().manual_seed(0))
    probes = probes.double().to(basis.device)
    off = basis.T @ (basis @ probes) - probes
    worst = max(float(norms.abs().max()), float((off.norm(dim=0) / probes.norm(dim=0)).max()))
    if not worst <= BASIS_RTOL:
        raise ValueError(
            f"basis columns are not orthonormal (|B^T B - I| about {worst:.3g}, allowed "
            f"{BASIS_RTOL:g}): the identity holds only in an orthonormal basis; orthonormalise "
            "it in float64, e.g. torch.linalg.qr(basis.double()).Q"
        )


def analysis_device(device, model) -> torch.device:
    """The device to analyse on: ``device``, or the model's when None. ValueError naming the
    value for a string torch cannot parse or a CUDA device this machine does not have."""
    if device is None:
        # a model without parameters has no Linear layer: the layer check names that next
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        return first.device if first is not None else torch.device("cpu")
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


def check_analysis_memory(target: ResolvedLayer, x, y, n_pairs: int, routes: Routes) -> None:
    """Estimate the analysis's memory before the work; AnalysisMemoryError over the limit.
    ``x``, ``y`` are the Hessian's samples."""
    n_out, n_in = target.shape
    P = target.n_weights
    graph = 0.0
    if routes.basis is not None:
        method, m = "given", routes.basis.shape[1]
    elif P <= routes.dense_max:
        method, m = "dense", P
    else:
        method, m = "lanczos+complement", min(routes.lanczos_k, P - 1)
        probe = slice(0, PROBE_ROWS)
        with model_mode(target.model, "eval"):
            products = LayerHessianProducts(target.model, target.module, x[probe], y[probe])
        graph = products.graph_bytes / min(len(y), PROBE_ROWS)
    parts = estimate_bytes(len(y), n_pairs, n_out, n_in, method, m, graph)
    limit = memory_limit(routes.memory_limit)
    check_memory(parts, limit, f"layer={target.label!r} ({P} weights, {method})")
