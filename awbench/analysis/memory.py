"""How much memory one analysis needs, and the limit it is held to.

Nothing grows as pairs x layer weights: dual weights and secant gradients stay rank-one
factors (pairs x (n_out + n_in) numbers), and the projections on the basis build blocks of
dual weights of at most ``PAIR_BLOCK_BYTES``. What is left:

* the projections of the pairs on the basis (pairs x basis size; P columns on the dense route);
* dense route: the Hessian (P^2) and its eigendecomposition, built from chunks of samples
  whose per-sample output Hessians G_k and factors stay under ``HESSIAN_CHUNK_BYTES``;
* Lanczos route: the layer's inputs and outputs over the N clean training samples, the graph
  of dL/dz through the layers downstream of the analysed one (bytes per sample measured on a
  few samples before the work), and the Lanczos vectors (about 3k + 2 of P numbers:
  ARPACK's basis and the eigenvectors it returns).

:func:`estimate_bytes` adds these up before any of it is allocated, and :func:`check_memory`
refuses an analysis whose estimate exceeds the limit with a :class:`AnalysisMemoryError`
naming the estimate and what to change. The limit is ``analyze(memory_limit=...)``, else the
environment variable ``AWBENCH_ANALYSIS_MEMORY`` (bytes, or a number with K, M, G or T),
else ``MEMORY_FRACTION`` of the memory available when the analysis starts.
"""

from __future__ import annotations

import os
import re

from awbench.curvature.layer import hessian_chunk_rows

PAIR_BLOCK_BYTES = 2**26  # 64 MiB: one block of the pairs' projections
MEMORY_FRACTION = 0.75  # default limit: this fraction of the available memory
MEMORY_ENV = "AWBENCH_ANALYSIS_MEMORY"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class AnalysisMemoryError(ValueError):
    """The analysis would need more memory than its limit (a bad input size, not a crash)."""


def pair_block(n_weights: int, block_bytes: int = PAIR_BLOCK_BYTES) -> int:
    """Pairs per block so that one block of float64 dual weights stays under block_bytes."""
    return max(1, int(block_bytes) // (8 * max(1, n_weights)))


def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable of /proc/meminfo), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def parse_bytes(text: str, name: str = MEMORY_ENV) -> int:
    """``"12G"``, ``"500M"``, ``"1.5e9"`` -> bytes (K, M, G, T are powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]?)i?B?\s*", str(text), flags=re.IGNORECASE)
    try:
        value = float(m.group(1)) * _UNITS[m.group(2).upper()] if m else float("nan")
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(
            f"{name}={text!r} is not allowed: expected a positive number of bytes, "
            "optionally with K, M, G or T (e.g. 32G)"
        )
    return int(value)


def memory_limit(limit: float | None = None) -> int | None:
    """The limit in bytes: the argument, else $AWBENCH_ANALYSIS_MEMORY, else
    MEMORY_FRACTION x the available memory (None when that is unknown: no limit)."""
    if limit is not None:
        if not limit > 0:
            raise ValueError(f"memory_limit={limit!r} is not allowed: expected bytes > 0")
        return int(limit)
    if os.environ.get(MEMORY_ENV, "").strip():
        return parse_bytes(os.environ[MEMORY_ENV])
    available = available_memory()
    return None if available is None else int(MEMORY_FRACTION * available)


def estimate_bytes(
    n_train: int,
    n_pairs: int,
    n_out: int,
    n_in: int,
    method: str,
    n_basis: int,
    graph_bytes_per_sample: float = 0.0,
) -> dict[str, int]:
    """The big float64 arrays of one analysis, by part (bytes). ``n_in`` counts the bias
    column; ``method`` is "dense", "lanczos+complement" or "given" (n_basis columns);
    ``graph_bytes_per_sample`` is what the Lanczos route's downstream graph keeps per sample."""
    P = n_out * n_in
    parts = {
        "pair projections": 2 * n_pairs * n_basis * 8,
        "pair factors": 4 * n_pairs * (n_out + n_in) * 8,
        "projection blocks": min(n_pairs * P * 8, PAIR_BLOCK_BYTES),
    }
    if method == "dense":
        rows = min(n_train, hessian_chunk_rows(n_out, n_in))
        tri_out, tri_in = n_out * (n_out + 1) // 2, n_in * (n_in + 1) // 2
        parts["per-sample output Hessians"] = 2 * rows * n_out * n_out * 8
        parts["Hessian factors"] = rows * (tri_out + tri_in) * 8
        parts["Hessian and eigenvectors"] = (tri_out * tri_in + 3 * P * P) * 8
    elif method != "given":
        parts["layer inputs and outputs"] = n_train * (n_in + 3 * n_out) * 8
        parts["downstream graph"] = int(n_train * graph_bytes_per_sample)
        parts["Lanczos vectors"] = (3 * n_basis + 2) * P * 8  # ARPACK basis + the eigenvectors
    return parts


# What shrinks each part, for the advice of AnalysisMemoryError (its largest part first).
ADVICE = {
    "pair projections": "fewer test samples (each is a pair)",
    "pair factors": "fewer test samples (each is a pair)",
    "projection blocks": "fewer test samples (each is a pair)",
    "per-sample output Hessians": "fewer training samples, or dense_max below the layer's "
    "weights to take the Lanczos route",
    "Hessian factors": "fewer training samples, or dense_max below the layer's weights to take "
    "the Lanczos route",
    "Hessian and eigenvectors": "dense_max below the layer's weights, to take the Lanczos "
    "route (top lanczos_k directions plus the complement)",
    "layer inputs and outputs": "fewer training samples (the Hessian's samples)",
    "downstream graph": "fewer training samples (the Hessian's samples), or a layer nearer the "
    "output (the graph spans the layers after it)",
    "Lanczos vectors": "a smaller lanczos_k",
}


def check_memory(parts: dict[str, int], limit: int | None, what: str) -> int:
    """Total of ``parts``; raise AnalysisMemoryError when it exceeds ``limit``."""
    total = sum(parts.values())
    if limit is not None and total > limit:
        detail = ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in parts.items() if v)
        largest = max(parts, key=parts.get)
        raise AnalysisMemoryError(
            f"the analysis of {what} would need about {total / 2**30:.2f} GiB ({detail}), over "
            f"its limit of {limit / 2**30:.2f} GiB. The largest part is the {largest}: try "
            f"{ADVICE.get(largest, 'a smaller problem')}; or raise the limit: "
            f"memory_limit=<bytes> or the environment variable {MEMORY_ENV} (e.g. 32G; the "
            f"default is {MEMORY_FRACTION:.0%} of the available memory)"
        )
    return total
