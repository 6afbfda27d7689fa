"""Sweep statistics over the runs of one knob: the converged runs, the effect of the knob on
each summary column, and how size follows the weight norm."""

from __future__ import annotations

import numpy as np
import pandas as pd

from awbench.analysis.decomposition import spearman
from awbench.status import CONVERGED, DONE_STATUSES

SUMMARY_COLUMNS = [
    "real_gap",
    "pair_gap",
    "estimated_gap",
    "sharp_gap",
    "flat_gap",
    "sharpness",
    "size",
    "curvature",
    "weight_norm",
    "test_error",
]


def converged_mask(runs: pd.DataFrame) -> pd.Series:
    """True for the runs that count as results, the one rule every statistic and figure uses.

    The ``converged`` column where it holds a value, else status == "converged": a row of a
    store written before the column existed falls back to its status, never to "counts". A
    table with neither column has nothing to mark and counts whole.
    """
    if "status" in runs:
        from_status = runs["status"].astype(str).eq(CONVERGED)
    else:
        from_status = pd.Series(True, index=runs.index)
    if "converged" not in runs:
        return from_status
    flag = runs["converged"]
    known = flag.notna()
    return from_status.where(~known, flag.where(known, False).astype(bool)).astype(bool)


def converged_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that count as results (:func:`converged_mask`), with a ``curvature`` column."""
    return with_curvature(runs[converged_mask(runs)])


def with_curvature(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a ``curvature`` column (sharpness / size, the size-free part of
    sharpness) where a table written before the Analysis had one lacks it."""
    if "curvature" in runs or not {"sharpness", "size"} <= set(runs.columns):
        return runs
    size = pd.to_numeric(runs["size"], errors="coerce")
    sharpness = pd.to_numeric(runs["sharpness"], errors="coerce")
    return runs.assign(curvature=sharpness / size.where(size != 0))


def effects(runs: pd.DataFrame, knob: str) -> dict[str, float]:
    """For each summary column, over converged runs only: mean at the smallest and largest
    knob value, the relative change between them, Spearman's rank correlation with the knob
    over all runs, and the largest seed standard deviation (the noise floor). ``n_left_out``
    counts the runs that did not converge (or failed)."""
    ok = converged_runs(runs)
    out: dict[str, float] = {
        "n_runs": float(len(runs)),
        "n_failed": float((~runs["status"].isin(DONE_STATUSES)).sum()),
        "n_left_out": float(len(runs) - len(ok)),
    }
    if ok.empty:
        return out
    g = ok.groupby(knob)
    means, stds = g[SUMMARY_COLUMNS].mean(), g[SUMMARY_COLUMNS].std(ddof=1).fillna(0.0)
    lo, hi = means.index.min(), means.index.max()
    for c in SUMMARY_COLUMNS:
        a, b = float(means.loc[lo, c]), float(means.loc[hi, c])
        out[f"{c}_low"], out[f"{c}_high"] = a, b
        out[f"{c}_change"] = (b - a) / abs(a) if a != 0 else float("nan")
        out[f"{c}_rho"] = spearman(ok[knob], ok[c])
        out[f"{c}_seed_sd"] = float(stds[c].max())
    out["max_duality_error"] = float(ok["duality_error"].max())
    out["max_identity_error"] = float(ok["identity_error"].max())
    out["sharp_share"] = (
        float(ok["sharp_gap"].sum() / ok["pair_gap"].sum())
        if ok["pair_gap"].sum()
        else float("nan")
    )
    out["estimate_rel_error"] = float(
        ((ok["estimated_gap"] - ok["real_gap"]).abs() / ok["real_gap"].abs()).median()
    )
    return out


def effects_estimate(runs: pd.DataFrame) -> float:
    """Median relative error of the Σcσσ estimate against the real gap over ``runs``."""
    ok = runs[runs["ok"]] if "ok" in runs else runs
    return float(((ok["estimated_gap"] - ok["real_gap"]).abs() / ok["real_gap"].abs()).median())


def size_norm_slope(runs: pd.DataFrame) -> float:
    """Least-squares slope of log(size) against log(weight norm) over the ok runs."""
    ok = converged_runs(runs)
    ok = ok[(ok["size"] > 0) & (ok["weight_norm"] > 0)]
    if len(ok) < 2 or ok["weight_norm"].nunique() < 2:
        return float("nan")
    return float(np.polyfit(np.log(ok["weight_norm"]), np.log(ok["size"]), 1)[0])
