"""Interactive knobs: slide a regularizer, watch sharpness and size move (notebook 08).

``KnobPanel`` shows a precomputed grid of runs: a result store written by ``awbench sweep``
(runs and directions tables) plus, per run, the training loss along the top eigenvector of
the analysed layer's Hessian (``slices/<key>.parquet``, added by
:func:`~awbench.apps.knobs.grid.add_slices`)::

    panel = KnobPanel()                 # the shipped grid, awbench/apps/knobs/store
    panel                               # the knob explorer, train button, Config text
    panel.set(batch_size=400)           # move from code
    panel.config                        # the Config asked for (paste-able: panel.config_text)

Live, the panel is the knob explorer of :mod:`awbench.apps.knobs.explorer` (the same as
``awbench present`` and the report: sliders in words, the sharpness-size plane, the gap, the
σg and σw spectra, the training line, the takeaway and the snap note, drawn in the browser
from the grid sent once; a move never waits for the kernel). Under it, the kernel's part:
the run's status line, "train this setting" and the Config text. Headless, the panel shows
the static figures of :mod:`awbench.apps.knobs.panels` (sharpness with the top eigenvalues and
the loss slice, size, gap, the sweep along the knob last moved); the grid's lookups are
:mod:`awbench.apps.knobs.grid`, its comparisons along each knob
:mod:`awbench.apps.knobs.effects`, the sentences :mod:`awbench.apps.knobs.sentences`, and
whether the panel is live or static :mod:`awbench.apps.knobs.frontend`.

Only a converged network is a result. The status line gives the run's final clean-train loss
and accuracy, its epochs and budget, and how many seeds of its grid point converged; a run
that stopped at its budget is flagged in red there, in the panel titles and in the takeaway
(shown under the sliders, redrawn on every move). The grid's per-point means (sweep panel,
:func:`~awbench.apps.knobs.effects.grid_effects`, ``Setting.point``) average the converged seeds
only; a point where none converged is shown flagged and left out of the grid's comparisons.

A combination that is not in the grid (a slider move the explorer snapped, or a start value
off the grid) is trained on request ("train this setting": a progress bar, then train to the
stopping rule under the grid's budget + analyze + slice through ``run_experiment``'s cache);
the result goes to a user store under the cache folder (``$AWBENCH_CACHE/knobs_store``) and
into the explorer's grid, so the same setting is instant next time, in this session or the
next.

Live widgets only where a Jupyter front end renders them; headless
(papermill, nbconvert, ``AWBENCH_QUIET=1``) the panel displays static figures and creates no
widget at all, so an executed notebook carries no widget state.

The shipped store is package data (``awbench/apps/knobs/store``, in a wheel too; see its
README.md). Build it again with::

    awbench sweep --preset knobs --store awbench/apps/knobs/store
    python -m awbench.apps.knobs.widgets awbench/apps/knobs/store --pack  # slices/, packed
"""

from __future__ import annotations

import html
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from awbench.apps.knobs.explorer_view import Explorer
from awbench.apps.knobs.frontend import frontend, warm_up
from awbench.apps.knobs.grid import (
    KNOBS,
    KnobGrid,
    Setting,
    add_slices,
    describe,
    native_value,
    pack_store,
)
from awbench.apps.knobs.panels import (
    WARNING,
    build_figure,
    gap_traces,
    get_path,
    sharpness_traces,
    size_traces,
    sweep_traces,
)
from awbench.apps.knobs.sentences import (
    beyond_paper_text,
    not_converged_reason,
    warnings_of,
)
from awbench.config import Config, ConfigError
from awbench.formatting import BLANK, number, percent, percent_change

PANELS = ("sharpness", "size", "gap", "sweep")  # the static figures


TAKEAWAY_SCALARS = (
    ("real_gap", "real gap"),
    ("sharpness", "sharpness Σσg²"),
    ("size", "size Σσw²"),
    ("weight_norm", "‖W‖F"),
)


def takeaway(panel: KnobPanel) -> str:
    """Markdown: the setting on screen against the default, from the numbers of the store.

    Computed from the panel's current and reference settings on every call (notebook 08
    shows it for the starting setting; the live explorer shows present mode's takeaway); a
    number of a run that did not converge is quoted with a warning, never bare.
    """
    cur, ref = panel.setting, panel.reference
    beyond = beyond_paper_text(panel.config)
    if cur is None:
        return (
            f"**Off the grid:** `{describe(panel.config, panel.grid.base)}` was not "
            "precomputed "
            "and not trained here; the panels show the default setting only."
        ) + (f"\n\n{beyond}" if beyond else "")
    same = cur.key == ref.key
    if same:
        head = "**The default setting** of the grid"
    else:
        head = f"**{describe(cur.config, panel.grid.base)}** against the default"
    notes = []
    if not cur.converged:
        notes.append(
            f"**⚠ Not converged:** this run {not_converged_reason(cur)}; the numbers below "
            "are not a result."
        )
    if beyond:
        notes.append(beyond)
    if not same and not ref.converged:
        notes.append(
            f"**⚠ The default did not converge** ({not_converged_reason(ref)}): the changes "
            "below are measured against numbers that are not a result."
        )
    parts = []
    for col, label in TAKEAWAY_SCALARS:
        a, b = get_path(ref, col), get_path(cur, col)
        change = "" if same else f" ({percent_change(a, b)})"
        parts.append(f"{label} {number(b)}{change}")
    share = cur["sharp_gap"] / cur["pair_gap"] if cur["pair_gap"] else float("nan")
    text = (
        f"{head}: " + "; ".join(parts) + f". The {cur.config.n_sharp} sharpest directions carry "
        f"{number(100 * share, 2)} % of the exact gap, and "
        f"Σ cσgσw = {number(cur['estimated_gap'])} estimates "
        f"the real gap {number(cur['real_gap'])} nats."
    )
    tail = []
    p = cur.point
    if p is not None and p.n > 1:
        means = ", ".join(
            f"{label} {number(p.scalars.get(col, float('nan')))}"
            for col, label in TAKEAWAY_SCALARS[:3]
        )
        if p.n_converged == p.n:
            tail.append(f"{p.text} at this point; their means: {means}.")
        elif p.converged:
            tail.append(
                f"{p.text} at this point; the means of the {p.n_converged} that did: {means}."
            )
        else:
            tail.append(
                f"**⚠ None of the {p.n} seeds at this point converged:** their means "
                f"({means}) are not a result either."
            )
    return "\n\n".join([*notes, text, *tail])


# --- the widget ----------------------------------------------------------------------------


class KnobPanel:
    """The knob explorer over the knobs grid, with training off the grid (see the module
    docstring).

    ``mode``: "auto" (:func:`~awbench.apps.knobs.frontend.frontend`), "live" (the explorer
    widget and the kernel's controls) or "static" (plain figures, no widget is created). ``start``: initial knob values (papermill
    parameters); a value outside the grid is added to its slider and makes an off-grid
    setting. Drive it from code with :meth:`set`, :meth:`reset`, :meth:`train`.
    """

    def __init__(
        self,
        store: str | os.PathLike | None = None,
        *,
        mode: str = "auto",
        start: Mapping[str, Any] | None = None,
        extra_store: str | os.PathLike | None = None,
        knob: str = "batch_size",
    ):
        if mode not in ("auto", "live", "static"):
            raise ValueError(f"mode={mode!r} is not allowed: expected 'auto', 'live' or 'static'")
        self.grid = KnobGrid(store, extra_store)
        self.mode = frontend() if mode == "auto" else mode
        start = {k: v for k, v in dict(start or {}).items() if v is not None}
        unknown = sorted(set(start) - set(KNOBS))
        if unknown:
            raise ConfigError(
                f"start: {', '.join(unknown)} not a knob; the knobs are {', '.join(KNOBS)}"
            )
        self._values = dict(self.grid.defaults)
        if start:
            self.grid.config(start)  # validate (the error names the field)
            self._values.update(
                {k: native_value(self.grid.config(start).to_dict()[k]) for k in start}
            )
        self.options = {k: sorted(set(self.grid.values[k]) | {self._values[k]}) for k in KNOBS}
        if knob not in KNOBS:
            raise ValueError(f"knob={knob!r} is not a knob: expected one of {', '.join(KNOBS)}")
        self.last_knob = knob
        self.history: list[dict] = []  # one entry per redraw: knob, values, seconds
        self.widgets: dict[str, Any] = {}
        self.explorer: Explorer | None = None
        self._figures: dict[str, go.Figure] = {}
        self._figures_of: tuple | None = None
        if self.mode == "live":
            self._build_widgets()
            warm_up(self.grid.base)
        self._redraw()

    # --- state --------------------------------------------------------------------------
    @property
    def values(self) -> dict[str, Any]:
        """The knob values on screen."""
        return dict(self._values)

    @property
    def config(self) -> Config:
        return self.grid.config(self._values)

    @property
    def setting(self) -> Setting | None:
        """The run on screen, or None when the combination is off the grid (not trained yet)."""
        return self.grid.lookup(self._values)

    @property
    def reference(self) -> Setting:
        """The default setting, what every panel compares against."""
        # looked up, not kept: a run trained here may join the default's grid point
        return self.grid.default()

    @property
    def on_grid(self) -> bool:
        return self.setting is not None

    @property
    def figures(self) -> dict[str, go.Figure]:
        """The static figures of the setting on screen (what a headless run displays),
        built when first asked for after a move."""
        of = (tuple(self._values.items()), self.last_knob, len(self.grid.runs))
        if of != self._figures_of:
            self._figures, self._figures_of = self.static_figures(), of
        return self._figures

    @property
    def config_text(self) -> str:
        """The Config on screen as a Python line, a papermill call and a sweep grid."""
        cfg, paper = self.config, Config.preset("paper")
        diff = cfg.diff(paper)
        py = 'aw.Config.preset("paper")' + (
            ".replace(" + ", ".join(f"{k}={v!r}" for k, v in diff.items()) + ")" if diff else ""
        )
        knobs = {k: getattr(cfg, k) for k in KNOBS if getattr(cfg, k) != getattr(self.grid.base, k)}
        pm = "papermill notebooks/08_knobs.ipynb out.ipynb" + "".join(
            f" -p {k} {v}" for k, v in knobs.items()
        )
        grid = "{" + ", ".join(f"{k}: [{json.dumps(v)}]" for k, v in diff.items()) + "}"
        sweep = f"awbench sweep --grid grid.yaml --store my_store   # grid.yaml: {grid}"
        return f"cfg = {py}\n{pm}\n{sweep}"

    # --- driving --------------------------------------------------------------------------
    def set(self, **values: Any) -> Setting | None:
        """Move sliders (one redraw); the last named knob becomes the sweep panel's knob."""
        unknown = sorted(set(values) - set(KNOBS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not a knob: expected any of {', '.join(KNOBS)}")
        for k, v in values.items():
            v = native_value(v)
            if v not in self.options[k]:
                raise ValueError(
                    f"{k}={v!r} is not on its slider: expected one of {self.options[k]}"
                )
        self._values.update({k: native_value(v) for k, v in values.items()})
        if values:
            self.last_knob = list(values)[-1]
        if self.explorer is not None:
            self.explorer.show(self._values, self.last_knob)
        self._redraw()
        return self.setting

    def reset(self) -> None:
        """Every knob back to the grid's default setting."""
        self.set(**self.grid.defaults)

    def train(self) -> Setting:
        """Compute the combination on screen (off the grid) with a progress bar; cached."""
        bar = self.widgets.get("progress")
        button = self.widgets.get("train")

        def report(fraction: float, text: str) -> None:
            if bar is not None:
                bar.value = fraction
                bar.description = f"{100 * fraction:.0f} %"
                self.widgets["status"].value = f"<i>{html.escape(text)}</i>"

        if button is not None:
            button.disabled = True
        if bar is not None:
            bar.value = 0.0
            bar.layout.visibility = "visible"
        try:
            setting = self.grid.train(self._values, on_progress=report)
        finally:
            if bar is not None:
                bar.layout.visibility = "hidden"
        if self.explorer is not None:  # the new run joins the explorer's grid
            self.explorer.refresh(self._values, self.last_knob, self.options)
        self._redraw()
        return setting

    def _train_clicked(self) -> None:
        try:
            self.train()
        except Exception as exc:  # noqa: BLE001 - a button has no caller to raise to: say it on screen
            self.widgets[
                "status"
            ].value = f"<b>Training failed:</b> {html.escape(f'{type(exc).__name__}: {exc}')}"
            self.widgets["train"].disabled = False

    # --- drawing --------------------------------------------------------------------------
    def panel_data(self) -> dict[str, tuple[list[dict], dict]]:
        """Traces and layout updates of every panel for the setting on screen."""
        cur, ref = self.setting, self.reference
        curve = self.grid.curve(self.last_knob, self._values)
        return {
            "sharpness": sharpness_traces(cur, ref),
            "size": size_traces(cur, ref),
            "gap": gap_traces(cur, ref),
            "sweep": sweep_traces(curve, self.last_knob, self.options[self.last_knob], cur),
        }

    def static_figures(self) -> dict[str, go.Figure]:
        """The four panels of the setting on screen as plain figures."""
        return {name: build_figure(name, *data) for name, data in self.panel_data().items()}

    def _redraw(self) -> None:
        start = time.perf_counter()
        if self.mode == "live":
            self._update_controls()
        else:
            _ = self.figures
        self.history.append(
            {
                "knob": self.last_knob,
                "values": self.values,
                "on_grid": self.on_grid,
                "seconds": time.perf_counter() - start,
            }
        )

    def _browser_moved(self, values: dict, knob: str, wanted: dict | None) -> None:
        """A move in the explorer: the values asked for (``wanted`` when it snapped, then
        off the grid, for "train this setting") become the panel's."""
        self._values = dict(wanted if wanted is not None else values)
        self.last_knob = knob
        self._redraw()

    def _status_html(self) -> str:
        s = self.setting
        if s is None:
            return (
                "<b>Off the grid:</b> this combination was not precomputed. "
                "Press <i>train this setting</i> (to the stopping rule: from a few seconds "
                "to about half a minute; cached afterwards)."
            )
        where = "precomputed grid" if s.source == "grid" else "trained here (cached)"
        acc = s.final_train_acc
        line = (
            f"<b>{html.escape(s.status)}</b> after {s.epochs} epochs (budget "
            f"{s.epoch_budget}) · final train loss {number(s.final_train_loss)}, train accuracy "
            + (percent(acc, 2) if math.isfinite(acc) else f"{BLANK} (not in this store)")
        )
        if s.point is not None and s.point.n > 1:
            line += f" · {s.point.text} at this point"
        line += f" · {where} · run <code>{s.key}</code>"
        return line + "".join(
            f'<div class="awbench-warning" style="color:{WARNING};font-weight:bold">'
            f"{html.escape(w)}</div>"
            for w in warnings_of(s)
        )

    def _update_controls(self) -> None:
        w = self.widgets
        w["status"].value = self._status_html()
        w["train"].disabled = self.on_grid
        w["config"].value = self.config_text

    def _build_widgets(self) -> None:
        import ipywidgets as W

        self.explorer = Explorer(self.grid, self.options, knob=self.last_knob)
        self.explorer.on_move = self._browser_moved
        explorer = self.explorer.build()
        self.explorer.show(self._values, self.last_knob)
        train = W.Button(
            description="train this setting",
            icon="play",
            button_style="warning",
            tooltip="train + analyze the combination asked for, off the grid (cached)",
        )
        train.on_click(lambda _: self._train_clicked())
        train.add_class("awbench-train")
        progress = W.FloatProgress(
            value=0.0,
            min=0.0,
            max=1.0,
            description="",
            layout=W.Layout(visibility="hidden", width="330px"),
        )
        status = W.HTML()
        status.add_class("awbench-status")
        config = W.Textarea(value="", rows=4, layout=W.Layout(width="100%"), disabled=False)
        config.add_class("awbench-config")
        self.widgets.update(
            explorer=explorer, train=train, progress=progress, status=status, config=config
        )
        self.view = W.VBox(
            [
                explorer,
                status,
                W.HBox([train, progress]),
                W.HTML("<b>Current Config</b> (paste into Python, papermill or a sweep):"),
                config,
            ]
        )
        self.view.add_class("awbench-knob-panel")

    # --- display --------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        if self.mode == "live":
            display(self.view)
            return
        display(HTML(f"<p>{self._status_html()}</p><pre>{html.escape(self.config_text)}</pre>"))
        for name in PANELS:
            display(self.figures[name])

    def show(self) -> None:
        self._ipython_display_()


def main(argv: list[str] | None = None) -> int:
    """``python -m awbench.apps.knobs.widgets STORE [--t-max T] [--force] [--pack]``: add loss
    slices to a store (and pack it to ship as package data)."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m awbench.apps.knobs.widgets", description=main.__doc__
    )
    p.add_argument("store", help="a result store written by `awbench sweep --preset knobs`")
    p.add_argument(
        "--t-max", type=float, default=None, help="slice half-width (default from the default run)"
    )
    p.add_argument("--force", action="store_true", help="recompute slices that exist")
    p.add_argument(
        "--pack",
        action="store_true",
        help="then keep only what the explorer and the panels read, one zstd part per table "
        "(the shipped grid: awbench/apps/knobs/store)",
    )
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    n = add_slices(args.store, t_max=args.t_max, force=args.force)
    print(f"{n} slice(s) written to {Path(args.store) / 'slices'}")
    if args.pack:
        saved = pack_store(args.store)
        size = sum(f.stat().st_size for f in Path(args.store).rglob("*") if f.is_file())
        print(f"packed: {saved / 2**20:.2f} MB saved, the store is {size / 2**20:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
