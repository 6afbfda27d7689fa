"""The words of ``awbench present``: slider labels, the training line, the takeaway sentence
(the verdicts along the knob last moved, the same as the knob panel's, and a knob value beyond
the paper's range flagged), the snap note and the one-line glossary (HTML; the panels are
:mod:`awbench.apps.knobs.explorer_panels`)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from awbench.apps.knobs.effects import REPORT_SEEDS
from awbench.apps.knobs.explorer_panels import HERE, OKABE_ITO
from awbench.apps.knobs.grid import Setting
from awbench.apps.knobs.panels import get_path
from awbench.apps.knobs.sentences import (
    beyond_paper_notes,
    moved_factors,
    not_converged_reason,
    verdict_parts,
)
from awbench.formatting import number, percent, percent_change

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


def training_line(s: Setting | None) -> str:
    """HTML: how this run trained (convergence, epochs, final train loss and accuracy)."""
    if s is None:
        return ""
    acc = s.final_train_acc
    acc_text = percent(acc)
    if s.converged:
        head = f'<span style="color:{OKABE_ITO["green"]}">✓ converged</span>'
    else:
        head = f'<span style="color:{HERE}">⚠ not converged: not a result</span>'
    seeds = f" · {s.point.text}" if s.point is not None and s.point.n > 1 else ""
    line = (
        f"<b>{head}</b> after {s.epochs} of {s.epoch_budget} epochs{seeds}<br>"
        f"train loss <b>{number(s.final_train_loss)}</b> · train accuracy <b>{acc_text}</b>"
    )
    if not s.converged:
        line += f'<br><span style="color:{HERE}">{html.escape(not_converged_reason(s))}</span>'
    return line


def moved_knobs(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """ "batch size B = 100" for every knob (not the seed) away from its default."""
    return [
        f"{LABELS[k]} = {_value(values[k])}"
        for k in SLIDER_ORDER
        if k != "seed" and values[k] != defaults[k]
    ]


def beyond_note(values: Mapping[str, Any]) -> str:
    """HTML: the knobs on screen whose value lies outside the paper's range
    (:func:`~awbench.apps.knobs.sentences.beyond_paper`), or ""."""
    notes = beyond_paper_notes({k: values[k] for k in SLIDER_ORDER if k in values and k != "seed"})
    if not notes:
        return ""
    return (
        f'<span style="color:{HERE}"><b>⚠ Beyond the paper:</b> '
        + html.escape("; ".join(notes))
        + ".</span> "
    )


def line_verdicts(line: Mapping[str, Any], knob: str) -> str:
    """HTML: the verdicts along ``knob``'s line (a row of
    :func:`~awbench.apps.knobs.effects.grid_effects`), in
    :func:`~awbench.experiments.verdicts.verdict_words`' phrasing, and why they are weak; ""
    where the line has one point only."""
    points = [v for v in str(line.get("values", "")).split(", ") if v]
    if len(points) < 2:
        left = int(line.get("left_out", 0) or 0)
        return f"<br>Along {LABELS[knob]}: fewer than two points converged." if left else ""
    seeds = int(line.get("seeds", 0) or 0)
    return (
        f"<br>Along {LABELS[knob]}: "
        + html.escape(verdict_parts(line))
        + moved_factors(line, bold=("<b>", "</b>"))
        + f". {seeds} seeds per point are too few for most verdicts; the report's sweeps "
        f"({REPORT_SEEDS} seeds) judge them."
    )


def takeaway(
    cur: Setting | None,
    ref: Setting,
    values: Mapping[str, Any],
    defaults: Mapping[str, Any],
    line: Mapping[str, Any] | None = None,
    knob: str | None = None,
) -> str:
    """HTML: what the setting on screen does to the gap against the default (this run and the
    default's run), and, given ``line`` (the :func:`~awbench.apps.knobs.effects.grid_effects` row
    of ``knob``'s line through it), the verdicts along that knob; a knob value beyond the
    paper's range is flagged."""
    beyond = beyond_note(values)
    if cur is None:
        return beyond + "This combination is not on the grid."
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
    moved = moved_knobs(values, defaults)
    if not moved:
        return (
            warn
            + beyond
            + (
                f"<b>The default setting</b>: gap {number(b)} nats, {number(100 * share, 2)} % of it "
                "in the sharpest directions. Move a knob: does it act through sharpness or size?"
            )
        )
    verb = "rises" if b > a else "falls" if b < a else "stays"
    text = (
        f"With <b>{', '.join(moved)}</b> the gap {verb} to <b>{number(b)}</b> nats "
        f"({percent_change(a, b)} on the default)."
    )
    if line is not None and knob is not None and knob != "seed":
        text += line_verdicts(line, knob)
    return warn + beyond + text


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
