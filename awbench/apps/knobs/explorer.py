"""One knob explorer for notebook 08, present mode and the offline report.

The grid goes to the browser once, as JSON (:func:`explorer_payload`); a slider move is a
lookup in JavaScript (``explorer.js``, package data), and every panel (the sharpness-size
plane, the gap, the σg and σw spectra), the training line, the takeaway and the snap note are
updated together in one synchronous handler (``Plotly.react`` on each panel), so the screen
never mixes two settings. The kernel is not asked on a move.

The same script runs in three places (:mod:`awbench.apps.knobs.explorer_view`, which also
holds the payload's lookups in Python):

- the report embeds it with its data (``explorer_html``; plotly.js is the page's own);
- notebook 08 (:class:`~awbench.apps.knobs.widgets.KnobPanel`) and present mode
  (:class:`~awbench.apps.present.app.PresentApp`) show it as one anywidget
  (``explorer_widget``), whose ES module carries plotly.js from the plotly package:
  nothing comes from a CDN.

This module builds the payload (:func:`explorer_payload`): seconds of pandas and verdicts
over the grid, which present mode does once per grid (:mod:`awbench.apps.knobs.payload_cache`).

Every sentence is computed here in Python, per grid point, by the functions that write it
(:mod:`awbench.apps.knobs.explorer_text`: the training line, the takeaway with the verdicts along a
knob line via :func:`~awbench.experiments.verdicts.verdict_words` and the beyond-the-paper flag,
the snap note); JavaScript only looks them up. The takeaway of run ``i`` after a move of knob
``j`` is ``runs[i].head`` followed, where the run differs from the default, by the verdicts of
its line along ``j`` (``lines[runs[i].L[j]].verdicts``): exactly
:func:`~awbench.apps.knobs.explorer_text.takeaway`. A move to a combination the grid lacks snaps to
the nearest grid point that keeps the knob just moved (fewest other knobs changed, then
fewest slider steps), precomputed for every one-knob move from every grid point
(``snap``).

One choice everywhere: size Σσw² on x and sharpness Σσg² on y (the paper's plane), the star
at the grid point's mean over its converged seeds (the cross: the run of the seed on the
slider, whose gap and spectra the other panels show), sliders in
:data:`~awbench.apps.knobs.explorer_text.SLIDER_ORDER` labelled in words (the Config field is the
hint), Okabe-Ito colours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from awbench.apps.knobs.effects import effect
from awbench.apps.knobs.explorer_panels import (
    CONTEXT,
    DEFAULT,
    FONT,
    GAP_BARS,
    GAP_COLORS,
    GAP_COLUMNS,
    HEIGHT,
    HERE,
    KNOB_LINE,
    OKABE_ITO,
    PANELS,
    SHARPNESS,
    SIZE,
    WIDTH,
    frame,
    grid_ranges,
)
from awbench.apps.knobs.explorer_text import (
    GLOSSARY,
    LABELS,
    SLIDER_ORDER,
    line_verdicts,
    moved_knobs,
    snap_note,
    takeaway,
    training_line,
)
from awbench.apps.knobs.grid import KnobGrid, Setting, native_value, thin_ranks
from awbench.apps.knobs.panels import get_path
from awbench.apps.knobs.sentences import option_label
from awbench.formatting import number

VERSION = 1  # of the payload's layout
# One colour scheme (Okabe-Ito, colour-blind safe; greys for the default and the context).
COLORS = {
    "here": HERE,
    "default": DEFAULT,
    "context": CONTEXT,
    "line": KNOB_LINE,
    "gap": list(GAP_COLORS),
    "sigma_g": SHARPNESS,
    "sigma_w": SIZE,
    "focus": OKABE_ITO["blue"],
    "note": OKABE_ITO["orange"],
}


def _r4(values: Any) -> list:
    """Numbers rounded to 4 significant digits, NaN as None (JSON null)."""
    return [
        float(f"{v:.4g}") if np.isfinite(v) else None
        for v in np.asarray(values, dtype=float).ravel()
    ]


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _point_label(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    parts = [
        f"{LABELS[k]} = {_value(values[k])}"
        for k in SLIDER_ORDER
        if k != "seed" and values[k] != defaults[k]
    ]
    return ", ".join(parts) or "the default setting"


def _titles(cur: Setting, ref: Setting) -> dict[str, str]:
    """The titles that change with the setting (the gap and the spectra)."""
    gap = (
        f"<b>Gap</b> {number(get_path(cur, 'real_gap'))} nats "
        f'<span style="color:{DEFAULT}">(default {number(get_path(ref, "real_gap"))})</span>'
    )
    out = {"gap": gap}
    for name, symbol, total, color in (
        ("sigma_g", "σg", "sharpness", SHARPNESS),
        ("sigma_w", "σw", "size", SIZE),
    ):
        out[name] = (
            f'<b><span style="color:{color}">{symbol}</span></b> spectrum · {total} Σ{symbol}² '
            f"{number(get_path(cur, total))} "
            f'<span style="color:{DEFAULT}">(default {number(get_path(ref, total))})</span>'
        )
    return out


def _plane_title(knob: str) -> str:
    """The plane's title: what the star and the cross are, and the line's knob (its symbol)."""
    symbol = "seed" if knob == "seed" else LABELS[knob].rsplit(" ", 1)[-1]
    return (
        f'<b>Sharpness vs size</b> · <span style="color:{HERE}">★ mean, × seed</span>'
        f' · <span style="color:{KNOB_LINE}">— {symbol}</span>'
    )


def _layouts(grid: KnobGrid) -> tuple[dict[str, dict], dict]:
    """Each panel's fixed layout (axes over the whole grid), from the validated frames, and
    their common template (plotly_white), shipped once."""
    ranges = grid_ranges(grid)
    out, template = {}, {}
    for name in PANELS:
        layout = json.loads(frame(name, ranges).to_json())["layout"]
        template = layout.pop("template", template)
        out[name] = layout
    return out, template


def explorer_payload(
    grid: KnobGrid, options: Mapping[str, Sequence] | None = None, knob: str = "batch_size"
) -> dict:
    """Everything the explorer draws, as JSON-ready data: the sliders (``knobs`` in
    :data:`~awbench.apps.knobs.explorer_text.SLIDER_ORDER`, words, field names as hints, option
    labels with ⚠ beyond the paper), one entry per run (its slider positions, its point's
    seed mean and its own sharpness and size, gap bars, thinned spectra, titles, training line
    and takeaway head), the knob lines through each run (the plane's curve and the verdicts
    along it), the snap table and each panel's fixed layout.

    ``options``: each knob's slider values (default: the grid's); runs with a value off the
    sliders are left out. ``knob``: the knob whose line is drawn first."""
    opts = {k: list(options[k]) if options else list(grid.values[k]) for k in SLIDER_ORDER}
    pos = {k: {native_value(v): i for i, v in enumerate(opts[k])} for k in SLIDER_ORDER}
    defaults = {k: native_value(grid.defaults[k]) for k in SLIDER_ORDER}
    ref = grid.default()

    rows: list[tuple[dict, list[int]]] = []
    for tup in grid.runs[list(SLIDER_ORDER)].itertuples(index=False, name=None):
        values = {k: native_value(v) for k, v in zip(SLIDER_ORDER, tup)}
        if all(values[k] in pos[k] for k in SLIDER_ORDER):
            rows.append((values, [pos[k][values[k]] for k in SLIDER_ORDER]))
    seed_j = SLIDER_ORDER.index("seed")

    points: dict[tuple, int] = {}
    point_list: list[dict] = []
    lines: dict[tuple, int] = {}
    line_list: list[dict] = []
    runs: list[dict] = []
    for values, k in rows:
        s = grid.lookup(values)
        if s is None:
            continue
        pkey = tuple(v for j, v in enumerate(k) if j != seed_j)
        if pkey not in points:
            points[pkey] = len(point_list)
            point_list.append(_point(s, _point_label(values, defaults)))
        line_ids = []
        for j, name in enumerate(SLIDER_ORDER):
            lkey = (j, *(v for i, v in enumerate(k) if i not in (j, seed_j)))
            if lkey not in lines:
                lines[lkey] = len(line_list)
                line_list.append(_line(grid, name, values))
            line_ids.append(lines[lkey])
        entry = _run(s, ref, values, defaults)
        runs.append({"k": k, "key": s.key, "p": points[pkey], **entry, "L": line_ids})
    index = {",".join(map(str, r["k"])): i for i, r in enumerate(runs)}
    default_k = [pos[k][defaults[k]] for k in SLIDER_ORDER]
    snaps, notes = _snap_table(runs, opts, defaults, index)
    layouts, template = _layouts(grid)
    return {
        "version": VERSION,
        "knobs": list(SLIDER_ORDER),
        "labels": {k: LABELS[k] for k in SLIDER_ORDER},
        "hints": {k: f"{LABELS[k]}: Config field {k}" for k in SLIDER_ORDER},
        "options": {k: [native_value(v) for v in opts[k]] for k in SLIDER_ORDER},
        "optionLabels": {k: [option_label(k, native_value(v)) for v in opts[k]] for k in opts},
        "moved": {k: [native_value(v) != defaults[k] for v in opts[k]] for k in SLIDER_ORDER},
        "default": default_k,
        "ref": index[",".join(map(str, default_k))],
        "knob": SLIDER_ORDER.index(knob),
        "index": index,
        "runs": runs,
        "points": point_list,
        "lines": line_list,
        "snap": snaps,
        "notes": notes,
        "planeTitles": [_plane_title(k) for k in SLIDER_ORDER],
        "layouts": layouts,
        "template": template,
        "colors": COLORS,
        "gapBars": list(GAP_BARS),
        "font": FONT,
        "size": [WIDTH, HEIGHT],
        "glossary": GLOSSARY,
    }


def _point(s: Setting, label: str) -> dict:
    """A grid point on the plane: its seeds' converged-only means (all seeds' where none
    converged, flagged)."""
    p = s.point
    scalars = p.scalars if p is not None else s.scalars
    return {
        "x": _r4([scalars.get("size", np.nan)])[0],
        "y": _r4([scalars.get("sharpness", np.nan)])[0],
        "conv": bool(p.converged) if p is not None else bool(s.converged),
        "label": label,
    }


def _run(s: Setting, ref: Setting, values: Mapping[str, Any], defaults: Mapping) -> dict:
    """One run's numbers and words: its own sharpness and size, gap bars, thinned spectra,
    titles, training line and takeaway head."""
    keep = thin_ranks(len(s.rank))
    return {
        "own": _r4([get_path(s, "size"), get_path(s, "sharpness")]),
        "gap": _r4([get_path(s, c) for c in GAP_COLUMNS]),
        "gapText": [number(get_path(s, c)) for c in GAP_COLUMNS],
        "r": _r4(s.rank[keep]),
        "g": _r4(s.sigma_g[keep]),
        "w": _r4(s.sigma_w[keep]),
        "titles": _titles(s, ref),
        "training": training_line(s),
        "head": takeaway(s, ref, values, defaults),
        "moved": bool(moved_knobs(values, defaults)),
    }


def _line(grid: KnobGrid, knob: str, values: Mapping[str, Any]) -> dict:
    """The plane's curve along ``knob`` through ``values`` (its points' converged-seed means)
    and, for a knob (not the seed), the verdicts along it as the takeaway states them."""
    curve = grid.curve(knob, values)
    n = len(curve)
    verdicts = ""
    if knob != "seed" and n >= 2:
        verdicts = line_verdicts(effect(grid, knob, values)[0], knob)
    elif knob != "seed":
        # A one-point line compares nothing, so its verdicts are not worth computing (most
        # lines of the cross through a knob moved alone are such); line_verdicts' sentence for
        # it depends only on whether the point converged.
        verdicts = line_verdicts({"left_out": int(n and curve["converged"].iloc[0] == 0)}, knob)
    return {
        "x": _r4(curve["size_mean"]) if n else [],
        "y": _r4(curve["sharpness_mean"]) if n else [],
        "text": [_value(native_value(v)) for v in curve[knob]] if n else [],
        "verdicts": verdicts,
    }


def _snap_table(
    runs: list[dict], opts: Mapping[str, list], defaults: Mapping[str, Any], index: dict
) -> tuple[dict[str, list[int]], list[str]]:
    """For every one-knob move from a run to a combination the grid lacks: the run it snaps to
    and its note. Key ``"<wanted positions>|<knob index>"``, value ``[run, note index]``."""
    positions = np.array([r["k"] for r in runs], dtype=int)
    snaps: dict[str, list[int]] = {}
    notes: list[str] = []
    note_ids: dict[str, int] = {}
    default_row = index[",".join(str(list(opts[k]).index(defaults[k])) for k in SLIDER_ORDER)]
    for r in runs:
        for j, knob in enumerate(SLIDER_ORDER):
            for v in range(len(opts[knob])):
                wanted = list(r["k"])
                wanted[j] = v
                key = ",".join(map(str, wanted))
                skey = f"{key}|{j}"
                if key in index or skey in snaps:
                    continue
                target = np.array(wanted)
                rows = np.flatnonzero(positions[:, j] == v)
                if len(rows):
                    diff = np.abs(positions[rows] - target)
                    cost = 1000 * (diff > 0).sum(1) + diff.sum(1)
                    best = int(rows[int(np.argmin(cost))])
                else:
                    best = default_row
                want = {k: opts[k][i] for k, i in zip(SLIDER_ORDER, wanted)}
                got = {k: opts[k][i] for k, i in zip(SLIDER_ORDER, runs[best]["k"])}
                note = snap_note(knob, want, got, defaults)
                if note not in note_ids:
                    note_ids[note] = len(notes)
                    notes.append(note)
                snaps[skey] = [best, note_ids[note]]
    return snaps, notes
