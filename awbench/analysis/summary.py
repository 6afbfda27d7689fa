"""An Analysis in words: the rows of ``Analysis.summary()`` and its notebook HTML table, the
notes on what to change, and the hook through which ``Analysis.plot()`` finds its figure.

Standard library only (``import awbench`` loads this module), and no plotting: the analysis
layer may not import awbench.viz (the import contract in pyproject.toml), so the figure builder
is registered from outside, by the package root (awbench/__init__.py), and imported on the
first ``plot()``.
"""

from __future__ import annotations

import html
import itertools
import math
import textwrap
from collections.abc import Callable
from typing import Any

from awbench.formatting import formatted, number, percent

# Above this share of the pair gap, the complement (outside the computed directions) is named.
COMPLEMENT_WARN = 0.25
# A duality error above this (nats, per pair) means the dual weights do not reproduce the test
# samples' losses: the split is then not a decomposition of this network's gap. An exact
# analysis lands near float64 rounding (1e-16 to 1e-13).
DUALITY_TOL = 1e-8
IDENTITY_TOL = 1e-8
# Up to this many weights the dense route (P x P Hessian, P^3 eigh) is suggested as a remedy.
DENSE_SUGGEST_MAX = 12_000
WIDTH = 96  # the text's route line and notes are wrapped to this many characters
DIGITS = 4  # significant digits of every number (the same in the text, the HTML and the tests)
ERROR_FORMAT = ".1e"  # the exactness errors: their size is what matters


def share(part: float, whole: float) -> float:
    """``part / whole`` (NaN when ``whole`` is 0 or not finite)."""
    if not math.isfinite(whole) or whole == 0:
        return float("nan")
    return part / whole


def sharp_count(an) -> int | None:
    """How many directions ``sharp_gap`` sums (Analysis keeps the sum, not ``n_sharp``):
    the first n whose compensated prefix sum of contributions equals it exactly; None when
    no prefix does (then the text says "top directions")."""
    contrib = [float(v) for v in an.directions["contribution"]]
    for n, approx in enumerate(itertools.accumulate(contrib, initial=0.0)):
        close = abs(approx - an.sharp_gap) <= 1e-9 * (abs(an.sharp_gap) + abs(approx)) + 1e-300
        if close and math.fsum(contrib[:n]) == an.sharp_gap:
            return n
    return None


def _route(an) -> str:
    m, p = len(an.directions), an.n_weights
    if an.hessian_method == "dense":
        return f"dense: the layer Hessian built and fully diagonalised, {m} of {p} directions"
    if an.hessian_method == "lanczos+complement":
        return (
            f"lanczos+complement: the top {m} of {p} eigen-directions by Lanczos "
            "(lanczos_k), the rest as one number, the complement"
        )
    return f"given basis: {m} of {p} directions"


# (short name, unit) of each loss's numbers
LOSS_WORDS = {"ce": ("CE", "nats"), "mse": ("MSE", "squared error of the softmax")}


def rows(an) -> list[tuple[str, str, str, str]]:
    """(section, quantity, value, note) rows, shared by the text and the HTML table."""
    n_sharp = sharp_count(an)
    m = len(an.directions)
    sharp = f"top {n_sharp} directions by σg" if n_sharp is not None else "top directions by σg"
    flat = f"the other {m - n_sharp} directions" if n_sharp is not None else "the other ones"
    pg = an.pair_gap
    name, unit = LOSS_WORDS[an.loss]
    gap, curv, exact = f"gap ({unit})", "curvature part", "exactness"
    return [
        (
            gap,
            f"real gap (test {name} − train {name})",
            number(an.real_gap, DIGITS),
            f"test error {number(an.test_error, DIGITS)}",
        ),
        (gap, "pair gap ⟨Δl⟩", number(pg, DIGITS), "= sharp + flat + complement"),
        (
            gap,
            "  sharp part",
            number(an.sharp_gap, DIGITS),
            f"{percent(share(an.sharp_gap, pg))}  {sharp}",
        ),
        (
            gap,
            "  flat part",
            number(an.flat_gap, DIGITS),
            f"{percent(share(an.flat_gap, pg))}  {flat}",
        ),
        (
            gap,
            "  complement",
            number(an.complement_gap, DIGITS),
            f"{percent(share(an.complement_gap, pg))}  outside the {m} computed directions",
        ),
        (gap, "estimate Σ c σg σw", number(an.estimated_gap, DIGITS), "the paper's approximation"),
        (curv, "sharpness Σ σg²", number(an.sharpness, DIGITS), "trace of the covariance of g_k"),
        (curv, "size Σ σw²", number(an.size, DIGITS), "trace of the covariance of Δw_k"),
        (
            curv,
            "curvature",
            number(an.curvature, DIGITS),
            "sharpness / size: what size does not explain",
        ),
        (curv, "λ_max", number(an.lam_max, DIGITS), "the layer Hessian's largest eigenvalue"),
        (
            exact,
            "identity error",
            formatted(an.identity_error, ERROR_FORMAT),
            "|⟨Δl⟩ − Σ terms − complement|",
        ),
        (
            exact,
            "duality error",
            formatted(an.duality_error, ERROR_FORMAT),
            "max_k |l(x_k, W + Δw_k) − l(x'_k, W)|",
        ),
    ]


def _header(an) -> str:
    return (
        f"layer {an.layer!r}, {an.n_weights} weights; {an.n_pairs} test samples paired "
        f"({an.pairing} pairing, {an.n_excluded} excluded)"
    )


def notes(an) -> list[str]:
    """What to change, when something in the result needs it (empty when all is well)."""
    out = []
    if not an.duality_error <= DUALITY_TOL:
        out.append(
            f"The duality error ({formatted(an.duality_error, ERROR_FORMAT)} {LOSS_WORDS[an.loss][1]}) is not small: the dual weights "
            "do not reproduce the test samples' losses, so the split does not decompose this "
            "network's gap. Usual causes: the layer's input also reaches the output by another "
            "path (a residual or skip connection), its weight is shared (tied), a hook changes "
            "its output, or the model is compiled (analyse the uncompiled module)."
        )
    if not an.identity_error <= IDENTITY_TOL:
        out.append(
            f"The identity error ({formatted(an.identity_error, ERROR_FORMAT)}) is not at rounding level: a "
            "given basis that is not orthonormal, or non-finite numbers in the model or data."
        )
    s = share(an.complement_gap, an.pair_gap)
    if math.isfinite(s) and abs(s) > COMPLEMENT_WARN:
        out.append(_complement_note(an, s))
    return out


def _complement_note(an, s: float) -> str:
    m, p = len(an.directions), an.n_weights
    text = (
        f"The complement holds {100 * s:.0f} % of the pair gap: the top {m} directions do not "
        "capture the gap, so the sharp/flat split describes only part of it. "
    )
    if an.hessian_method == "given":
        return text + f"Pass a basis with more columns (all {p} make it complete)."
    text += f"Raise lanczos_k (now {m}, e.g. lanczos_k={min(4 * m, p - 1)})"
    if p <= DENSE_SUGGEST_MAX:
        text += f", or take the dense route, complete and exact (dense_max={p})"
    return text + "."


def summary_text(an) -> str:
    """``Analysis.summary()``: a header, the rows by section, the route, then the notes."""
    table = rows(an)
    w0 = max(len(r[1]) for r in table)
    w1 = max(len(r[2]) for r in table)
    lines, section = [f"Analysis of {_header(an)}"], None
    for sec, q, v, n in table:
        if sec != section:
            lines.append(sec.capitalize())
            section = sec
        lines.append(f"  {q:<{w0}}  {v:>{w1}}  {n}".rstrip())
    lines.append(textwrap.fill(f"Route: {_route(an)}", WIDTH, subsequent_indent="  "))
    lines += [textwrap.fill(f"Note: {n}", WIDTH, subsequent_indent="  ") for n in notes(an)]
    return "\n".join(lines)


def summary_html(an) -> str:
    """``Analysis._repr_html_()``: the same rows as a compact table, every string escaped."""
    e, cells, section = html.escape, [], None
    for sec, q, v, n in rows(an):
        if sec != section:
            cells.append(f"<tr><th colspan='3' style='text-align:left'>{e(sec)}</th></tr>")
            section = sec
        cells.append(
            f"<tr><td style='text-align:left'>{e(q)}</td><td style='text-align:right'>"
            f"<code>{e(v)}</code></td><td style='text-align:left'>{e(n)}</td></tr>"
        )
    cells.append(
        f"<tr><th style='text-align:left'>route</th><td colspan='2' "
        f"style='text-align:left'>{e(_route(an))}</td></tr>"
    )
    warn = "".join(f"<p style='color:#a33;margin:4px 0'><b>Note:</b> {e(n)}</p>" for n in notes(an))
    return f"<div><b>Analysis</b> of {e(_header(an))}<table>{''.join(cells)}</table>{warn}</div>"


def short_repr(an) -> str:
    """``repr(Analysis)``: the few numbers that identify the result, not its 27 fields."""
    return (
        f"Analysis(layer={an.layer!r}, route={an.hessian_method!r}, "
        f"directions={len(an.directions)}/{an.n_weights}, pair_gap={number(an.pair_gap, DIGITS)}, "
        f"real_gap={number(an.real_gap, DIGITS)}, sharp={percent(share(an.sharp_gap, an.pair_gap))}, "
        f"complement={percent(share(an.complement_gap, an.pair_gap))}, "
        f"identity_error={formatted(an.identity_error, ERROR_FORMAT)}, duality_error={formatted(an.duality_error, ERROR_FORMAT)})"
    )


_figure_builder: Callable[[Any], Any] | None = None


def register_figure(builder: Callable[[Any], Any]) -> None:
    """Set the function ``Analysis.plot()`` calls (the package root sets it to
    awbench.viz.decomposition_plots.analysis_figure, imported on first use)."""
    global _figure_builder
    _figure_builder = builder


def registered_figure(an):
    """The registered figure of ``an`` (RuntimeError when none is registered)."""
    if _figure_builder is None:
        raise RuntimeError(
            "Analysis.plot() has no figure builder: import awbench (the package root "
            "registers awbench.viz.decomposition_plots.analysis_figure), or call that "
            "function directly"
        )
    return _figure_builder(an)
