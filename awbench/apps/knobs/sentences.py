"""Sentences of notebook 08's knob panel that are not tied to the widget: why a run did not
converge, the warnings a setting carries, a knob value beyond the paper's range, and the
verdict of each quantity along each knob of the grid (from
:func:`~awbench.apps.knobs.effects.grid_effects`, in
:func:`~awbench.experiments.verdicts.verdict_words`' phrasing, the same as the notebooks and
the report)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from awbench.apps.knobs.effects import FAMILY, REPORT_SEEDS, effect, held_values
from awbench.apps.knobs.grid import KNOB_TEXT, KNOBS, Setting
from awbench.config import Config
from awbench.experiments.grids import PAPER_VALUES
from awbench.formatting import number


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
        why = f"train loss {number(loss)} {'>' if loss > cfg.stop_loss else '='} {cfg.stop_loss:g}"
    elif math.isfinite(acc) and acc <= cfg.stop_acc:
        why = f"train accuracy {number(acc, 4)} ≤ {cfg.stop_acc:g}"
    elif math.isfinite(loss):
        why = (
            f"train loss {number(loss)} but a mean train accuracy over the last "
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


# The quantities of a knob line's sentence, in order, with their words.
LINE_WORDS = (
    ("real_gap", "gap"),
    ("sharpness", "sharpness"),
    ("size", "size"),
    ("curvature", "curvature"),
)
FACTORS = ("sharpness", "size", "curvature")
# The knobs whose grid values are the paper's own units; n_train and label noise are scaled to
# the dataset's training pool (awbench.experiments.grids.n_train_values,
# label_noise_n_train), so the paper's numbers are no range for them.
UNSCALED_KNOBS = ("lr", "batch_size", "dropout", "weight_decay", "init_scale")


def paper_range(knob: str) -> tuple[float, float] | None:
    """The smallest and largest of the paper's values of ``knob``
    (:data:`~awbench.experiments.grids.PAPER_VALUES`), or None for a knob that is scaled to
    the dataset or not one of the paper's."""
    if knob not in UNSCALED_KNOBS or knob not in PAPER_VALUES:
        return None
    values = PAPER_VALUES[knob]
    return float(min(values)), float(max(values))


@functools.cache
def paper_default(knob: str) -> Any:
    """The value the paper holds ``knob`` at while it sweeps the others (the ``paper``
    preset's; the init scale's 1 lies outside its own sweep, 4-7)."""
    return getattr(Config.preset("paper"), knob)


def beyond_paper(knob: str, value: Any) -> str | None:
    """A note when ``value`` lies outside the paper's values of ``knob``, e.g. "learning rate
    α 0.2 is beyond the paper's range (0.005–0.1)"; None inside the range or at the paper's
    default (:func:`paper_default`), and for the knobs scaled to the dataset (n_train, label
    noise) or not swept by the paper."""
    span = paper_range(knob)
    if span is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    lo, hi = span
    default = paper_default(knob)
    if lo <= value <= hi or value == default:
        return None
    side = "beyond" if value > hi else "below"
    label = KNOB_TEXT.get(knob, knob)
    unswept = "" if lo <= default <= hi else f", and {default:g} where it is not swept"
    return f"{label} {value:g} is {side} the paper's range ({lo:g}–{hi:g}{unswept})"


def beyond_paper_notes(values: Mapping[str, Any]) -> list[str]:
    """:func:`beyond_paper` of every knob in ``values`` that has a note, in their order."""
    return [n for n in (beyond_paper(k, v) for k, v in values.items()) if n is not None]


def verdict_parts(r: Mapping[str, Any]) -> str:
    """ "gap inconclusive: +19 % [-10 %, +55 %], not significant with 3 seeds; sharpness ...":
    each quantity of a :func:`~awbench.apps.knobs.effects.grid_effects` row in
    :func:`~awbench.experiments.verdicts.verdict_words`' phrasing."""
    return "; ".join(f"{name} {r[f'{q}_words']}" for q, name in LINE_WORDS)


def factor_moves(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``[(factor, "up" or "down"), ...]``: the factors of a
    :func:`~awbench.apps.knobs.effects.grid_effects` row whose verdict is up or down."""
    return [(q, r[f"{q}_verdict"]) for q in FACTORS if r[f"{q}_verdict"] in ("up", "down")]


def moved_factors(r: Mapping[str, Any], bold: tuple[str, str] = ("**", "**")) -> str:
    """ " → moves **sharpness** (down)": the factors whose verdict is up or down, or "" when
    none has one (a large change without a verdict says nothing about which factor moved).
    ``bold``: the markup around a factor (Markdown; ``("<b>", "</b>")`` for HTML)."""
    moved = [f"{bold[0]}{q}{bold[1]} ({v})" for q, v in factor_moves(r)]
    return f" → moves {' and '.join(moved)}" if moved else ""


def option_label(knob: str, value: Any) -> str:
    """A slider's label for ``value``: ``0.2 ⚠`` beyond the paper's range, else ``0.05``."""
    text = f"{value:g}" if isinstance(value, (int, float)) else str(value)
    return text + (" ⚠" if beyond_paper(knob, value) else "")


def left_out_note(r: Mapping[str, Any]) -> str:
    """ " (1 unconverged point left out: 0.001; 3 runs left out of the verdicts)" or ""."""
    notes = []
    left = int(r.get("left_out", 0) or 0)
    if left:
        notes.append(
            f"{left} unconverged point{'s' if left > 1 else ''} left out: {r['left_out_values']}"
        )
    runs = int(r.get("runs_left_out", 0) or 0)
    if runs:
        notes.append(f"{runs} unconverged run{'s' if runs > 1 else ''} left out")
    return f" ({'; '.join(notes)})" if notes else ""


def effect_line(r: Mapping[str, Any]) -> str | None:
    """A Markdown list item for one row of :func:`~awbench.apps.knobs.effects.grid_effects`
    (None: nothing to say): each quantity's verdict along the knob in
    :func:`~awbench.experiments.verdicts.verdict_words`' phrasing, and which factor moved only
    where its verdict is up or down."""
    left = int(r.get("left_out", 0) or 0)
    note = left_out_note(r)
    label = KNOB_TEXT.get(r["knob"], r["knob"])
    points = [v for v in str(r.get("values", "")).split(", ") if v]
    if len(points) < 2:
        return (
            f"- **{label}**: no comparison, fewer than two points converged{note}" if left else None
        )
    return f"- **{label}** {r['values']}: {verdict_parts(r)}{moved_factors(r)}{note}"


def seeds_sentence(seeds: int, family: int) -> str:
    """Why the panel's verdicts are mostly "inconclusive", and where they are judged."""
    return (
        f"The grid has {seeds} seed{'s' if seeds != 1 else ''} per point, too few for a verdict "
        f"on most effects (tests corrected for the {family} knob × quantity cells of the "
        'panel): a large change reads "inconclusive" here; the report\'s sweeps '
        f"({REPORT_SEEDS} seeds per value) judge them."
    )


def effects_takeaway(effects: pd.DataFrame) -> str:
    """Markdown: the verdict of the gap, sharpness, size and curvature along each knob of the
    grid (from :func:`~awbench.apps.knobs.effects.grid_effects`), saying which points were left
    out because none of their seeds converged, and that the grid's seeds are few."""
    rows = [r._asdict() for r in effects.itertuples(index=False)]
    lines = [line for line in map(effect_line, rows) if line is not None]
    left_total = effects.attrs.get(
        "left_out_points", sum(int(r.get("left_out", 0) or 0) for r in rows)
    )
    held = effects.attrs.get("held", "at the default")
    seeds = effects.attrs.get("seeds", max((int(r.get("seeds", 0) or 0) for r in rows), default=0))
    family = effects.attrs.get("family", FAMILY)
    text = (
        f"Along each knob of the grid (other knobs {held}; converged runs only; the within-seed "
        "change from the first to the last value with its 95 % interval):\n\n"
        + ("\n".join(lines) if lines else "- no knob has two points to compare")
        + "\n\n"
        + seeds_sentence(seeds, family)
    )
    if left_total:
        text += (
            f"\n\n**⚠ {left_total} point{'s' if left_total > 1 else ''} left out:** none of "
            "their seeds met the stopping rule, so their numbers are not results."
        )
    return text


def beyond_paper_text(cfg: Config) -> str:
    """Markdown: the knobs of ``cfg`` whose value lies outside the paper's range
    (:func:`~awbench.apps.knobs.sentences.beyond_paper`), or ""."""
    notes = beyond_paper_notes({k: getattr(cfg, k) for k in KNOBS if k != "seed"})
    return "**⚠ Beyond the paper:** " + "; ".join(notes) + "." if notes else ""


def sweep_takeaway(panel: Any) -> str:
    """Markdown: what the knob last moved does along the sweep panel's line (other knobs as
    on screen), as one line of :func:`effects_takeaway` and the seeds sentence; empty for the
    seed. ``panel``: a :class:`~awbench.apps.knobs.widgets.KnobPanel` (its ``grid``, ``values`` and
    ``last_knob``)."""
    knob = panel.last_knob
    if knob == "seed":
        return ""
    row, _ = effect(panel.grid, knob, {**panel.grid.defaults, **panel.values})
    line = effect_line(row) or (
        f"- **{KNOB_TEXT.get(knob, knob)}**: no comparison, one point on the grid here"
    )
    held = held_values(panel.grid, panel.values, but=knob)
    text = (
        f"Along this knob (other knobs {held}; converged runs only; the within-seed change "
        f"from the first to the last value with its 95 % interval):\n\n{line}"
    )
    if effect_line(row) is not None and row.get("seeds"):
        text += "\n\n" + seeds_sentence(int(row["seeds"]), FAMILY)
    return text
