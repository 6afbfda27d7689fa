"""Sentences of notebook 08's knob panel that are not tied to the widget: why a run did not
converge, the warnings a setting carries, and which factor each knob of the grid moves most
(from :func:`~awbench.apps.knob_effects.grid_effects`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from awbench.apps.knob_grid import KNOB_TEXT, Setting, fmt


def pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.0f} %"


def not_converged_reason(s: Setting) -> str:
    """Why a run is not a result, e.g. "stopped at the budget of 150 epochs with train loss
    0.0037 > 0.001"."""
    cfg = s.config
    if s.epoch_budget and s.epochs >= s.epoch_budget:
        where = f"stopped at the budget of {s.epoch_budget} epochs"
    else:
        where = f"stopped after {s.epochs} of {s.epoch_budget} epochs"
    loss, acc = s.final_train_loss, s.final_train_acc
    if math.isfinite(loss) and loss >= cfg.stop_loss:
        why = f"train loss {fmt(loss)} {'>' if loss > cfg.stop_loss else '='} {cfg.stop_loss:g}"
    elif math.isfinite(acc) and acc <= cfg.stop_acc:
        why = f"train accuracy {fmt(acc, 4)} ≤ {cfg.stop_acc:g}"
    elif math.isfinite(loss):
        why = (
            f"train loss {fmt(loss)} but a mean train accuracy over the last "
            f"{cfg.stop_window} epochs ≤ {cfg.stop_acc:g}"
        )
    else:
        why = "the stopping rule not met"
    return f"{where} with {why}"


def warnings_of(s: Setting) -> list[str]:
    """The warnings the panel shows for a setting: the run on screen not converged, seeds
    of its grid point not converged. Empty for a converged run at a converged point."""
    out = []
    if not s.converged:
        out.append(f"⚠ not converged: {not_converged_reason(s)} — its numbers are not a result")
    p = s.point
    if p is not None and p.n > 1 and p.n_converged < p.n:
        if p.converged:
            missed = ", ".join(str(x) for x in p.seeds if x not in p.converged_seeds)
            out.append(
                f"⚠ {p.n - p.n_converged}/{p.n} seeds at this point did not converge (seed "
                f"{missed}): the grid's means here average the {p.n_converged} that did"
            )
        else:
            out.append(
                f"⚠ none of the {p.n} seeds at this point converged: the grid's numbers "
                "here are not a result"
            )
    return out


def effect_line(r: Mapping[str, Any]) -> str | None:
    """A Markdown list item for one row of :func:`~awbench.apps.knob_effects.grid_effects`
    (None: nothing to say)."""
    left = int(r.get("left_out", 0) or 0)
    note = (
        f" ({left} unconverged point{'s' if left > 1 else ''} left out: {r['left_out_values']})"
        if left
        else ""
    )
    label = KNOB_TEXT.get(r["knob"], r["knob"])
    if not math.isfinite(r["sharpness_change"]) or not math.isfinite(r["size_change"]):
        return (
            f"- **{label}**: no comparison, fewer than two points converged{note}" if left else None
        )
    lead = "sharpness" if abs(r["sharpness_change"]) > abs(r["size_change"]) else "size"
    return (
        f"- **{label}** {r['values']}: gap {pct(r['real_gap_change'])}, "
        f"sharpness {pct(r['sharpness_change'])}, size {pct(r['size_change'])} → mostly "
        f"**{lead}**{note}"
    )


def effects_takeaway(effects: pd.DataFrame) -> str:
    """Markdown: which factor each knob of the grid moves most (from
    :func:`~awbench.apps.knob_effects.grid_effects`), saying which points were left out because
    none of their seeds converged."""
    rows = [r._asdict() for r in effects.itertuples(index=False)]
    lines = [line for line in map(effect_line, rows) if line is not None]
    left_total = effects.attrs.get(
        "left_out_points", sum(int(r.get("left_out", 0) or 0) for r in rows)
    )
    held = effects.attrs.get("held", "at the default")
    text = (
        f"Along each knob of the grid (other knobs {held}, mean over the converged seeds):\n\n"
        + ("\n".join(lines) if lines else "- no knob has two points to compare")
    )
    if left_total:
        text += (
            f"\n\n**⚠ {left_total} point{'s' if left_total > 1 else ''} left out:** none of "
            "their seeds met the stopping rule, so their numbers are not results."
        )
    return text
