"""What a notebook does with one knob's sweep: run it through the sweep store, tabulate it
(mean ± sd per value, effects and verdicts per knob) and record its numbers for the report.

Every run is stored once under its config key in a store shared by all notebooks, so a
notebook rerun, the report and ``awbench sweep`` read the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from awbench.config import Config
from awbench.experiments import record_names as rn
from awbench.experiments.effects import SUMMARY_COLUMNS, converged_runs, effects
from awbench.experiments.records import record
from awbench.experiments.verdicts import profile_verdict_table, which_factor
from awbench.status import CONVERGED, DONE_STATUSES

RUN_COLUMNS = ["value", "seed", *SUMMARY_COLUMNS]
# Per-run columns a knob notebook records, so that the report can pool every knob into one
# verdict table and draw every run, converged or not.
RUN_RECORD_COLUMNS = [
    *RUN_COLUMNS,
    "status",
    "converged",
    "epochs",
    "final_train_loss",
    "final_train_acc",
]


def store_path(store: str = "") -> str:
    """The sweep store folder: ``store`` or, when empty, ``<awbench cache>/store`` (shared by
    all notebooks; a run is stored once under its config key)."""
    from awbench.cache import cache_dir

    return store or str(cache_dir() / "store")


def with_run_columns(runs: pd.DataFrame, knob: str | None) -> pd.DataFrame:
    """Store rows with ``ok`` (has analysis numbers: drawn, hollow when unconverged) and
    ``converged`` (counts as a result), and, for a knob, ``knob`` and ``value`` first; sorted
    by knob value and seed."""
    runs = runs.copy()
    runs["ok"] = (
        runs["status"].isin(DONE_STATUSES)
        & runs.get("pair_gap", pd.Series(np.nan, index=runs.index)).notna()
    )
    runs["converged"] = runs["ok"] & (runs["status"] == CONVERGED)
    if knob is not None:
        runs.insert(0, "knob", knob)
        runs.insert(1, "value", runs[knob])
    return runs.sort_values(list(dict.fromkeys(c for c in (knob, "seed") if c))).reset_index(
        drop=True
    )


def sweep_grid(
    base: Config,
    grid: Mapping[str, Sequence],
    seed_list: Sequence[int],
    workers: int = 1,
    store: str = "",
    name: str = "",
) -> pd.DataFrame:
    """Run every combination of ``grid`` ({field: values}) x ``seed_list`` on ``base`` and
    return its rows of the sweep store (:func:`store_path`).

    One row per run: every Config field, status, timings and every Analysis scalar, plus
    ``ok`` and ``converged`` (:func:`with_run_columns`). Runs already in the store are read
    back; the rest go through ``run_experiment``'s cache on a process pool of ``workers``.
    ``name`` names the sweep's plan in the store (default: the fields and the base's key).
    """
    from awbench.experiments.sweep import run_sweep
    from awbench.progress import interactive

    report = run_sweep(
        {field: list(values) for field, values in grid.items()},
        store_path(store),
        seeds=list(seed_list),
        base=base,
        name=name or f"notebook-{'-'.join(grid)}-{base.key()[:8]}",
        workers=workers,
        quiet=not interactive(),
    )
    return with_run_columns(report.load().runs, None)


def sweep(
    base: Config,
    knob: str,
    values: Sequence,
    seed_list: Sequence[int],
    workers: int = 1,
    store: str = "",
) -> pd.DataFrame:
    """One knob's :func:`sweep_grid`, with ``knob`` and ``value`` as its first columns and
    sorted by value and seed. Diverged runs are kept with ``ok`` False."""
    runs = sweep_grid(base, {knob: values}, seed_list, workers, store)
    return with_run_columns(runs, knob)


def runs_over_seeds(
    cfg: Config, seed_list: Sequence[int], workers: int = 1, store: str = ""
) -> pd.DataFrame:
    """One row per seed of ``cfg`` (nothing else varied), from the sweep store."""
    return sweep(cfg, "seed", list(seed_list), [cfg.seed], workers, store).drop(
        columns=["knob", "value"]
    )


def summary_table(runs: pd.DataFrame, knob: str) -> pd.DataFrame:
    """Mean ± sd per knob value of the main columns over converged runs, formatted for
    display; a value without a converged run says so."""
    all_runs = runs.groupby(knob).size()
    ok = converged_runs(runs)
    g = ok.groupby(knob)
    mean, sd = g[SUMMARY_COLUMNS].mean(), g[SUMMARY_COLUMNS].std(ddof=1).fillna(0.0)
    cells = {
        c: [
            f"{mean.loc[v, c]:.4g} ± {sd.loc[v, c]:.2g}" if v in mean.index else "no converged run"
            for v in all_runs.index
        ]
        for c in SUMMARY_COLUMNS
    }
    table = pd.DataFrame(cells, index=all_runs.index)
    table.insert(0, "converged runs", g.size().reindex(all_runs.index, fill_value=0))
    table.insert(1, "runs", all_runs)
    return table


def knob_records(runs: pd.DataFrame, knob: str, profile: str) -> dict[str, Any]:
    """The numbers a knob notebook records, named ``<knob>.<quantity>``."""
    e = effects(runs, knob)
    keys = [
        "n_runs",
        "n_failed",
        "n_left_out",
        "max_duality_error",
        "max_identity_error",
        "sharp_share",
        "estimate_rel_error",
        "real_gap_low",
        "real_gap_high",
        "real_gap_change",
        "real_gap_rho",
        "sharpness_change",
        "sharpness_rho",
        "size_change",
        "size_rho",
        "curvature_change",
        "weight_norm_change",
        "test_error_change",
    ]
    out: dict[str, Any] = {rn.knob_record(knob, k): e[k] for k in keys if k in e}
    # effects() leaves these out when no run converged; the report reads them, so record
    # NaN (shown as n/a) rather than leave a gap it would flag as a missing record.
    for q in (
        rn.SHARPNESS_CHANGE,
        rn.SIZE_CHANGE,
        rn.CURVATURE_CHANGE,
        rn.WEIGHT_NORM_CHANGE,
        rn.REAL_GAP_CHANGE,
        rn.REAL_GAP_LOW,
        rn.REAL_GAP_HIGH,
    ):
        out.setdefault(rn.knob_record(knob, q), math.nan)
    out[rn.knob_record(knob, rn.VALUES)] = [float(v) for v in sorted(runs[knob].unique())]
    out[rn.knob_record(knob, rn.N_SEEDS)] = int(runs.groupby(knob).size().max())
    out[f"{knob}.n_converged"] = len(converged_runs(runs))
    table = profile_verdict_table({knob: runs}, profile)
    for row in table.itertuples():
        out[f"{knob}.verdict.{row.quantity}"] = row.verdict
    out[rn.knob_record(knob, rn.VERDICT)] = which_factor(table)
    with_numbers = runs[runs["ok"]] if "ok" in runs else runs
    out[rn.knob_record(knob, rn.RUNS)] = {
        c: [v if isinstance(v, str) else float(v) for v in with_numbers[c]]
        for c in RUN_RECORD_COLUMNS
        if c in with_numbers
    }
    return out


def effects_table(runs_by_knob: dict[str, pd.DataFrame], profile: str) -> pd.DataFrame:
    """One row per knob: relative change of sharpness, size, the curvature part and the real
    gap (converged runs), the verdict per quantity and how many runs were left out."""
    table = profile_verdict_table(runs_by_knob, profile)
    rows = []
    for knob, runs in runs_by_knob.items():
        e = effects(runs, knob)
        vals = sorted(runs[knob].unique())
        v = table[table["knob"] == knob]
        verdict = dict(zip(v["quantity"], v["verdict"]))
        rows.append(
            {
                "knob": knob,
                "values": f"{vals[0]:g} → {vals[-1]:g}",
                "sharpness_change": e.get("sharpness_change", float("nan")),
                "size_change": e.get("size_change", float("nan")),
                "curvature_change": e.get("curvature_change", float("nan")),
                "gap_change": e.get("real_gap_change", float("nan")),
                "sharpness_verdict": verdict.get("sharpness", "n/a"),
                "size_verdict": verdict.get("size", "n/a"),
                "curvature_verdict": verdict.get("curvature", "n/a"),
                "gap_verdict": verdict.get("real_gap", "n/a"),
                "left_out": int(e.get("n_left_out", 0)),
                "verdict": which_factor(v) if len(v) else "no runs",
            }
        )
    return pd.DataFrame(rows)


def record_sweeps(runs_by_knob: dict[str, pd.DataFrame], profile: str) -> None:
    """Record every knob's numbers (:func:`knob_records`) and the worst duality and identity
    errors over all runs, as each knob notebook's last cell does."""
    for knob, runs in runs_by_knob.items():
        for name, value in knob_records(runs, knob, profile).items():
            record(name, value)
    all_runs = pd.concat(runs_by_knob.values(), ignore_index=True)
    record(rn.DUALITY_ERROR, float(all_runs["duality_error"].max()))
    record(rn.IDENTITY_ERROR, float(all_runs["identity_error"].max()))
