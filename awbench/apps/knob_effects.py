"""What each knob of the grid does: the relative change of the real gap, sharpness and size
along one knob, the other knobs held (:func:`grid_effects`), over converged seeds only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from awbench.apps.knob_grid import CURVE_COLUMNS, KNOBS, KnobGrid

EFFECT_COLUMNS = (
    "knob",
    "values",
    *(f"{c}_change" for c in CURVE_COLUMNS),
    "left_out",
    "left_out_values",
)


def effect(grid: KnobGrid, knob: str, values: Mapping[str, Any]) -> tuple[dict, set]:
    """One row of :func:`grid_effects` and the points it left out (as grid tuples)."""
    c = grid.curve(knob, values)
    ok, bad = c[c["converged"] > 0], c[c["converged"] == 0]
    row = {
        "knob": knob,
        "values": ", ".join(f"{v:g}" for v in ok[knob]),
        "left_out": len(bad),
        "left_out_values": ", ".join(f"{v:g}" for v in bad[knob]),
    }
    for col in CURVE_COLUMNS:
        if len(ok) >= 2:
            lo, hi = float(ok[f"{col}_mean"].iloc[0]), float(ok[f"{col}_mean"].iloc[-1])
            row[f"{col}_change"] = (hi - lo) / abs(lo) if lo else float("nan")
        else:
            row[f"{col}_change"] = float("nan")
    return row, {grid._tuple({**values, knob: v, "seed": 0}) for v in bad[knob]}


def held_values(grid: KnobGrid, values: Mapping[str, Any], but: str | None = None) -> str:
    moved = {k: v for k, v in values.items() if k not in ("seed", but) and v != grid.defaults[k]}
    return "at " + ", ".join(f"{k}={v!r}" for k, v in moved.items()) if moved else "at the default"


def grid_effects(grid: KnobGrid, values: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per knob: the relative change of the real gap, sharpness and size from its
    smallest to its largest converged value (means over the converged seeds, other knobs at
    ``values``, default: the default setting).

    A point none of whose seeds converged is left out of the comparison (``left_out`` counts
    them, ``left_out_values`` names them); ``values`` lists the points compared. Fewer than
    two converged points: no comparison (NaN). For
    :func:`~awbench.apps.knob_sentences.effects_takeaway`, ``attrs["held"]`` says where the
    other knobs were and ``attrs["left_out_points"]`` how many distinct points were left out.
    """
    values = {**grid.defaults, **dict(values or {})}
    rows = []
    dropped = set()  # the held point lies on every knob's line: count it once
    for knob in KNOBS:
        if knob != "seed":
            row, bad = effect(grid, knob, values)
            rows.append(row)
            dropped |= bad
    out = pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))
    out.attrs["left_out_points"] = len(dropped)
    out.attrs["held"] = held_values(grid, values)
    return out
