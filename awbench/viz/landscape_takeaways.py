"""Spectrum and landscape (notebook 02): the sentences on the top eigenvalues, the trace
estimate, the 1-D slices and the curvature along dual-weight directions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from awbench.curvature.spectrum import eigen_check
from awbench.formatting import number
from awbench.landscape import rayleigh_ratio


def spectrum_takeaway(eig, exact_values, trace_exact: float) -> str:
    err = eigen_check(eig.values, exact_values)
    top = float(eig.values.sum())
    return (
        f"The top {len(eig.values)} eigenvalues run from {number(float(eig.values[0]))} down to "
        f"{number(float(eig.values[-1]))}; all converged: {bool(eig.converged.all())}, largest relative error against "
        f"dense eigh **{err:.1e}**. Together they hold {number(100 * top / trace_exact, 3)} % of the trace "
        f"({number(trace_exact, 4)}): the curvature sits in a few directions."
    )


def trace_takeaway(table: pd.DataFrame, exact: float) -> str:
    last = table.iloc[-1]
    z = abs(last["estimate"] - exact) / last["stderr"] if last["stderr"] > 0 else float("nan")
    return (
        f"With {int(last['probes'])} probes the estimate is {number(last['estimate'], 5)} ± {number(last['stderr'], 2)} "
        f"(standard error) against the exact {number(exact, 5)}: {number(z, 2)} standard errors off. The error bar "
        "shrinks as 1/√probes, and it is reported, not hidden."
    )


def slices_takeaway(slices, fd: float) -> str:
    first = slices[0]
    worst = max(float(np.max(np.abs(s.loss - s.quadratic))) for s in slices)
    return (
        f"Along v1 the loss rises as the quadratic ½λt² predicts near 0: a second finite difference (h = 1e-5) gives "
        f"{number(fd, 5)} against λ1 = {number(first.curvature, 5)} (relative error "
        f"{abs(fd - first.curvature) / abs(first.curvature):.1e}). Further out the true loss departs from the "
        f"quadratic by up to {number(worst, 3)} nats over these slices."
    )


def curvature_takeaway(table: pd.DataFrame, lam_max: float) -> str:
    mean = table.groupby("kind")["rayleigh"].mean()
    dual, rand = float(mean.get("dual weight", np.nan)), float(mean.get("random", np.nan))
    ratio = rayleigh_ratio(table)
    return (
        f"Per unit length the dual-weight directions see a curvature of {number(dual)} on average "
        f"({number(100 * dual / lam_max, 3)} % of λ_max), random filter-normalised directions {number(rand)} "
        f"({number(100 * rand / lam_max, 3)} %): dual weights point {number(ratio, 3)}× "
        f"{'more' if ratio >= 1 else 'less'} into curved directions than random ones."
    )
