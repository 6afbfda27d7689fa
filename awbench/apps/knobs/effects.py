"""What each knob of the grid does, the other knobs held (:func:`grid_effects`): the verdict of
:func:`awbench.experiments.verdicts.verdict_table` per quantity (the same function the
notebooks and the report read), over the per-seed runs of the knob's line, and the relative
change of the converged seeds' means from its first to its last point (for figures and
records).

The grid has :data:`~awbench.experiments.grids.KNOBS_SEEDS` seeds per point, so the verdicts
are corrected for the panel's whole family (:data:`FAMILY`: every knob of the grid x
:data:`QUANTITIES`), as the report corrects for its profile's; a line's verdict depends on its
own runs only and is cached by them (:func:`line_verdicts`), so a slider move recomputes it
only where the runs differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from awbench.apps.knobs.grid import CURVE_COLUMNS, KNOBS, KnobGrid
from awbench.experiments.effects import converged_mask, with_curvature
from awbench.experiments.grids import PROFILES
from awbench.experiments.verdicts import verdict_table, verdict_words

# What the panel gives a verdict for, in the order its sentences state them.
QUANTITIES = ("real_gap", "sharpness", "size", "curvature")
# Every knob of the grid (the seed is not a knob) x the quantities: the family the panel's
# verdicts are corrected for, whichever line is on screen.
LINE_KNOBS = tuple(k for k in KNOBS if k != "seed")
FAMILY = len(LINE_KNOBS) * len(QUANTITIES)
# The seeds per value of the report's sweeps (make reproduce runs the quick profile).
REPORT_SEEDS = PROFILES["quick"].seeds
LINE_COLUMNS = ("seed", "status", "converged", *QUANTITIES)

EFFECT_COLUMNS = (
    "knob",
    "values",
    *(f"{c}_change" for c in CURVE_COLUMNS),
    "left_out",
    "left_out_values",
    *(f"{q}_verdict" for q in QUANTITIES),
    *(f"{q}_words" for q in QUANTITIES),
    "seeds",
    "runs_left_out",
)


def line_runs(grid: KnobGrid, knob: str, values: Mapping[str, Any]) -> pd.DataFrame:
    """The per-seed runs of ``knob``'s line: every run of the grid (and of the user store)
    that matches ``values`` on every other knob but the seed, one row per run with ``knob``,
    ``seed``, ``status``, ``converged`` and :data:`QUANTITIES` (curvature = sharpness / size
    where the store lacks it), sorted by the knob's value, then the seed. The runs table
    :func:`~awbench.experiments.verdicts.verdict_table` reads."""
    runs = with_curvature(grid.runs)
    target = np.array(grid._tuple(values), dtype=float)
    others = [i for i, k in enumerate(KNOBS) if k not in (knob, "seed")]
    matrix = runs[list(KNOBS)].to_numpy(dtype=float)
    rows = np.flatnonzero(np.all(matrix[:, others] == target[others], axis=1))
    order = rows[np.lexsort((matrix[rows, KNOBS.index("seed")], matrix[rows, KNOBS.index(knob)]))]
    cols = [knob, *(c for c in LINE_COLUMNS if c in runs.columns)]
    return runs.iloc[order, [runs.columns.get_loc(c) for c in cols]].reset_index(drop=True)


# Verdicts and rows by the runs they depend on (oldest dropped first beyond _CACHE_SIZE).
_VERDICTS: dict[tuple, pd.DataFrame] = {}
_ROWS: dict[tuple, tuple[dict, list]] = {}
_CACHE_SIZE = 256


def _runs_key(knob: str, runs: pd.DataFrame, family: int) -> tuple:
    """What a line's verdicts depend on: the knob, the family and the runs themselves."""
    cols = [c for c in (knob, *LINE_COLUMNS) if c in runs.columns]
    return (knob, family, tuple(cols), *(tuple(runs[c].tolist()) for c in cols))


def _remember(cache: dict, key: tuple, value: Any) -> Any:
    if len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value
    return value


def _verdicts(knob: str, runs: pd.DataFrame, key: tuple) -> pd.DataFrame:
    hit = _VERDICTS.get(key)
    if hit is None:
        table = verdict_table({knob: runs}, QUANTITIES, family=key[1])
        hit = _remember(_VERDICTS, key, table)
    return hit


def line_verdicts(
    grid: KnobGrid, knob: str, values: Mapping[str, Any], family: int = FAMILY
) -> pd.DataFrame:
    """``verdict_table({knob: line_runs(grid, knob, values)}, QUANTITIES, family=family)``:
    one row per quantity, cached by the line's runs (the verdicts of a line depend on its
    runs only; a run trained into the line changes them). Do not modify the table returned."""
    runs = line_runs(grid, knob, values)
    return _verdicts(knob, runs, _runs_key(knob, runs, family))


def _effect_row(knob: str, line: pd.DataFrame, key: tuple) -> tuple[dict, list]:
    """The row of :func:`effect` from the line's runs, and its unconverged points."""
    ok = converged_mask(line).to_numpy()
    xs = sorted(set(line[knob].tolist()))
    good = sorted(set(line.loc[ok, knob].tolist()))
    bad = [x for x in xs if x not in good]
    seeds = line.groupby(knob)["seed"].nunique()
    row: dict[str, Any] = {
        "knob": knob,
        "values": ", ".join(f"{v:g}" for v in good),
        "left_out": len(bad),
        "left_out_values": ", ".join(f"{v:g}" for v in bad),
        "seeds": int(seeds.max()) if len(seeds) else 0,
    }
    # the means of the converged seeds at each point, as the sweep panel draws them
    means = line[ok].groupby(knob)[list(CURVE_COLUMNS)].mean()
    for col in CURVE_COLUMNS:
        if len(good) >= 2:
            lo, hi = float(means[col].iloc[0]), float(means[col].iloc[-1])
            row[f"{col}_change"] = (hi - lo) / abs(lo) if lo else float("nan")
        else:
            row[f"{col}_change"] = float("nan")
    table = _verdicts(knob, line, key).set_index("quantity")
    for q in QUANTITIES:
        row[f"{q}_verdict"] = str(table.at[q, "verdict"])
        row[f"{q}_words"] = verdict_words(table.loc[q])
    # the unconverged seeds of the points that count (a left-out point is named whole)
    row["runs_left_out"] = int((~ok & line[knob].isin(good).to_numpy()).sum())
    return row, bad


def effect(grid: KnobGrid, knob: str, values: Mapping[str, Any]) -> tuple[dict, set]:
    """One row of :func:`grid_effects` and the points it left out (as grid tuples)."""
    line = line_runs(grid, knob, values)
    key = _runs_key(knob, line, FAMILY)
    hit = _ROWS.get(key)
    if hit is None:
        hit = _remember(_ROWS, key, _effect_row(knob, line, key))
    row, bad = hit
    return dict(row), {grid._tuple({**values, knob: v, "seed": 0}) for v in bad}


def held_values(grid: KnobGrid, values: Mapping[str, Any], but: str | None = None) -> str:
    moved = {k: v for k, v in values.items() if k not in ("seed", but) and v != grid.defaults[k]}
    return "at " + ", ".join(f"{k}={v!r}" for k, v in moved.items()) if moved else "at the default"


def grid_effects(grid: KnobGrid, values: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per knob, other knobs at ``values`` (default: the default setting): the
    verdict of each of :data:`QUANTITIES` along the knob (``<q>_verdict``, and
    ``<q>_words`` in :func:`~awbench.experiments.verdicts.verdict_words`' phrasing: the
    within-seed change from the first to the last value with its 95 % interval), corrected for
    :data:`FAMILY` cells; and the relative change of the real gap, sharpness and size from the
    smallest to the largest converged value (means over the converged seeds, ``<q>_change``).

    Only converged runs count. A point none of whose seeds converged is left out of the
    comparison (``left_out`` counts them, ``left_out_values`` names them; ``runs_left_out``
    counts the unconverged seeds of the points that count); ``values`` lists the points compared, ``seeds``
    the most seeds at one point. Fewer than two converged points: no comparison (NaN). For
    :func:`~awbench.apps.knobs.sentences.effects_takeaway`, ``attrs["held"]`` says where the
    other knobs were, ``attrs["left_out_points"]`` how many distinct points were left out,
    ``attrs["family"]`` the cells the verdicts are corrected for and ``attrs["seeds"]`` the
    most seeds at one point.
    """
    values = {**grid.defaults, **dict(values or {})}
    rows = []
    dropped = set()  # the held point lies on every knob's line: count it once
    for knob in LINE_KNOBS:
        row, bad = effect(grid, knob, values)
        rows.append(row)
        dropped |= bad
    out = pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))
    out.attrs["left_out_points"] = len(dropped)
    out.attrs["held"] = held_values(grid, values)
    out.attrs["family"] = FAMILY
    out.attrs["seeds"] = int(out["seeds"].max()) if len(out) else 0
    return out


def grid_verdicts(grid: KnobGrid, values: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The verdict rows behind :func:`grid_effects`: one row per (knob, quantity), other knobs
    at ``values``, as :func:`~awbench.experiments.verdicts.verdict_table` gives them."""
    values = {**grid.defaults, **dict(values or {})}
    return pd.concat([line_verdicts(grid, knob, values) for knob in LINE_KNOBS], ignore_index=True)
