"""The words of ``awbench present``: slider labels, the training line, the takeaway sentence,
the snap note and the one-line glossary (HTML; the panels are
:mod:`awbench.apps.present_panels`)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from awbench.apps.knob_grid import Setting, fmt
from awbench.apps.knob_panels import get_path
from awbench.apps.knob_sentences import not_converged_reason
from awbench.apps.present_panels import DEFAULT, HERE, OKABE_ITO

# Words with the paper's symbols (docs/science.md, section 6); the Config field is the hint.
LABELS = {
    "batch_size": "batch size B",
    "lr": "learning rate α",
    "weight_decay": "weight decay β",
    "dropout": "dropout d",
    "init_scale": "init scale s",
    "label_noise": "label noise ρ",
    "n_train": "training set size n",
    "seed": "random seed",
}
SLIDER_ORDER = tuple(LABELS)

GLOSSARY = (
    "<b>sharpness</b> Σσg²: how steeply the loss changes · <b>size</b> Σσw²: how far the "
    "dual weights spread · <b>gap</b>: test − train loss (nats) · <b>sharp part</b>: its "
    "10 sharpest directions, <b>flat</b>: the rest"
)


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _pct(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return "n/a"
    return f"{100 * (b - a) / abs(a):+.0f} %"


def training_line(s: Setting | None) -> str:
    """HTML: how this run trained (convergence, epochs, final train loss and accuracy)."""
    if s is None:
        return ""
    acc = s.final_train_acc
    acc_text = f"{100 * acc:.1f} %" if math.isfinite(acc) else "–"
    if s.converged:
        head = f'<span style="color:{OKABE_ITO["green"]}">✓ converged</span>'
    else:
        head = f'<span style="color:{HERE}">⚠ not converged: not a result</span>'
    seeds = f" · {s.point.text}" if s.point is not None and s.point.n > 1 else ""
    line = (
        f"<b>{head}</b> after {s.epochs} of {s.epoch_budget} epochs{seeds}<br>"
        f"train loss <b>{fmt(s.final_train_loss)}</b> · train accuracy <b>{acc_text}</b>"
    )
    if not s.converged:
        line += f'<br><span style="color:{HERE}">{html.escape(not_converged_reason(s))}</span>'
    return line


def _moved(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    return [
        f"{LABELS[k]} = {_value(values[k])}"
        for k in SLIDER_ORDER
        if k != "seed" and values[k] != defaults[k]
    ]


def takeaway(
    cur: Setting | None, ref: Setting, values: Mapping[str, Any], defaults: Mapping[str, Any]
) -> str:
    """HTML, one or two sentences: what the setting on screen does to the gap, and whether
    sharpness or size carries the change (the larger change on a log scale)."""
    if cur is None:
        return "This combination is not on the grid."
    a, b = get_path(ref, "real_gap"), get_path(cur, "real_gap")
    share = (
        get_path(cur, "sharp_gap") / get_path(cur, "pair_gap")
        if get_path(cur, "pair_gap")
        else math.nan
    )
    warn = (
        f'<span style="color:{HERE}"><b>⚠ Not converged</b>: read with care.</span> '
        if not cur.converged
        else ""
    )
    moved = _moved(values, defaults)
    if not moved:
        return warn + (
            f"<b>The default setting</b>: gap {fmt(b)} nats, {fmt(100 * share, 2)} % of it in "
            "the sharpest directions. Move a knob: does it act through sharpness or size?"
        )
    ratios = {
        "sharpness": _log_ratio(get_path(ref, "sharpness"), get_path(cur, "sharpness")),
        "size": _log_ratio(get_path(ref, "size"), get_path(cur, "size")),
    }
    lead = max(ratios, key=lambda k: abs(ratios[k]) if math.isfinite(ratios[k]) else -1.0)
    verb = "rises" if b > a else "falls" if b < a else "stays"
    return warn + (
        f"With <b>{', '.join(moved)}</b> the gap {verb} to <b>{fmt(b)}</b> nats "
        f"({_pct(a, b)}): sharpness {_pct(get_path(ref, 'sharpness'), get_path(cur, 'sharpness'))}, "
        f"size {_pct(get_path(ref, 'size'), get_path(cur, 'size'))}, so mostly through "
        f"<b>{lead}</b>."
    )


def _log_ratio(a: float, b: float) -> float:
    return math.log(b / a) if a > 0 and b > 0 else math.nan


def snap_note(
    knob: str, wanted: Mapping[str, Any], snapped: Mapping[str, Any], defaults: Mapping[str, Any]
) -> str:
    """HTML: which knobs were moved to reach the nearest grid point, or "" when none."""
    changed = [k for k in SLIDER_ORDER if wanted[k] != snapped[k]]
    if not changed:
        return ""
    moves = ", ".join(f"{LABELS[k]} {_value(wanted[k])} → {_value(snapped[k])}" for k in changed)
    return (
        f"⚠ {LABELS[knob]} = {_value(wanted[knob])} with the other knobs as they were is not "
        f"on the grid: snapped to the nearest grid point ({moves})."
    )


def header(n_runs: int, n_points: int) -> str:
    return (
        '<span class="awbench-present-h">Activity–weight duality: what do the knobs do to '
        "the generalization gap?</span> "
        f'<span style="color:{DEFAULT}">{n_points} grid points, {n_runs} trained networks · '
        "Tab to a slider, ← → to move it</span>"
    )
