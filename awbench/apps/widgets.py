"""Interactive knobs: slide a regularizer, watch sharpness and size move (notebook 08).

``KnobPanel`` shows a precomputed grid of runs: a result store written by ``awbench sweep``
(runs and directions tables) plus, per run, the training loss along the top eigenvector of
the analysed layer's Hessian (``slices/<key>.parquet``, added by
:func:`~awbench.apps.knob_grid.add_slices`). Every slider is a selection slider over the grid's
values of one Config field, so a move is a dictionary lookup, never a training run::

    panel = KnobPanel()                 # the shipped grid, awbench/apps/knobs_store
    panel                               # sliders, four linked panels, reset, train button
    panel.set(batch_size=400)           # the same as moving the slider
    panel.config                        # the Config on screen (paste-able: panel.config_text)

The four panels (sharpness, size, gap, sweep along the knob last moved) are drawn by the
pure builders of :mod:`awbench.apps.knob_panels`, also used for the static figures of a
headless run; the grid's lookups are :mod:`awbench.apps.knob_grid`, its comparisons along
each knob :mod:`awbench.apps.knob_effects`, the sentences :mod:`awbench.apps.knob_sentences`,
and whether the panel is live or static :mod:`awbench.apps.knob_frontend`.

Only a converged network is a result. The status line gives the run's final clean-train loss
and accuracy, its epochs and budget, and how many seeds of its grid point converged; a run
that stopped at its budget is flagged in red there, in the panel titles and in the takeaway
(shown under the sliders, redrawn on every move). The grid's per-point means (sweep panel,
:func:`~awbench.apps.knob_effects.grid_effects`, ``Setting.point``) average the converged seeds
only; a point where none converged is shown flagged and left out of the grid's comparisons.

A combination that is not in the grid is trained on request ("train this setting": a
progress bar, then train to the stopping rule under the grid's budget + analyze + slice
through ``run_experiment``'s cache); the result goes to a user store under the cache folder
(``$AWBENCH_CACHE/knobs_store``), so the same setting is instant next time, in this session
or the next.

Live widgets (plotly ``FigureWidget``) only where a Jupyter front end renders them; headless
(papermill, nbconvert, ``AWBENCH_QUIET=1``) the panel displays static figures and creates no
widget at all, so an executed notebook carries no widget state.

The shipped store is package data (``awbench/apps/knobs_store``, in a wheel too; see its
README.md). Build it again with::

    awbench sweep --preset knobs --store awbench/apps/knobs_store
    python -m awbench.apps.widgets awbench/apps/knobs_store        # adds slices/
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from awbench.apps.knob_frontend import frontend, warm_up
from awbench.apps.knob_grid import (
    KNOB_TEXT,
    KNOBS,
    KnobGrid,
    Setting,
    add_slices,
    describe,
    fmt,
    native_value,
)
from awbench.apps.knob_panels import (
    CURRENT,
    WARNING,
    build_figure,
    gap_traces,
    get_path,
    sharpness_traces,
    size_traces,
    sweep_traces,
)
from awbench.apps.knob_sentences import (
    beyond_paper_text,
    not_converged_reason,
    option_label,
    pct,
    sweep_takeaway,
    warnings_of,
)
from awbench.config import Config, ConfigError

PANELS = ("sharpness", "size", "gap", "sweep")
FIGURE_WIDTH = 980  # px, live panels (fits beside the file browser)


TAKEAWAY_SCALARS = (
    ("real_gap", "real gap"),
    ("sharpness", "sharpness Σσg²"),
    ("size", "size Σσw²"),
    ("weight_norm", "‖W‖F"),
)


def takeaway(panel: KnobPanel) -> str:
    """Markdown: the setting on screen against the default, from the numbers of the store.

    Computed from the panel's current and reference settings on every call (the live panel
    shows it under the sliders, redrawn on every move); a number of a run that did not
    converge is quoted with a warning, never bare.
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
        change = "" if same else f" ({pct((b - a) / abs(a) if a else float('nan'))})"
        parts.append(f"{label} {fmt(b)}{change}")
    share = cur["sharp_gap"] / cur["pair_gap"] if cur["pair_gap"] else float("nan")
    text = (
        f"{head}: " + "; ".join(parts) + f". The {cur.config.n_sharp} sharpest directions carry "
        f"{fmt(100 * share, 2)} % of the exact gap, and "
        f"Σ cσgσw = {fmt(cur['estimated_gap'])} estimates "
        f"the real gap {fmt(cur['real_gap'])} nats."
    )
    tail = []
    p = cur.point
    if p is not None and p.n > 1:
        means = ", ".join(
            f"{label} {fmt(p.scalars.get(col, float('nan')))}"
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
    """Sliders over the knobs grid and four linked panels (see the module docstring).

    ``mode``: "auto" (:func:`~awbench.apps.knob_frontend.frontend`), "live" (ipywidgets + FigureWidgets) or "static"
    (plain figures, no widget is created). ``start``: initial knob values (papermill
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
        self._suspend = False
        self.widgets: dict[str, Any] = {}
        self.figures: dict[str, Any] = {}
        self._sent: dict[str, tuple[list[dict], dict]] = {}
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
        if self.widgets:
            self._suspend = True
            try:
                for k, v in values.items():
                    self.widgets[k].value = native_value(v)
            finally:
                self._suspend = False
        self._values.update({k: native_value(v) for k, v in values.items()})
        if values:
            self.last_knob = list(values)[-1]
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
        data = self.panel_data()
        if self.mode == "live":
            for name, (traces, layout) in data.items():
                self._send(name, traces, layout)
            self._update_controls()
        else:
            self.figures = {name: build_figure(name, *d) for name, d in data.items()}
        self.history.append(
            {
                "knob": self.last_knob,
                "values": self.values,
                "on_grid": self.on_grid,
                "seconds": time.perf_counter() - start,
            }
        )

    def _send(self, name: str, traces: list[dict], layout: dict) -> None:
        """Update one FigureWidget in place, sending only what changed since the last redraw."""
        fw = self.figures[name]
        old_traces, old_layout = self._sent.get(name, ([{}] * len(traces), {}))
        changes = []
        for i, (old, new) in enumerate(zip(old_traces, traces)):
            diff = {k: v for k, v in new.items() if k in DYNAMIC and not same_value(old.get(k), v)}
            if diff:
                changes.append((i, diff))
        lay = {k: v for k, v in layout.items() if not same_value(old_layout.get(k), v)}
        if changes or lay:
            with fw.batch_update():
                for i, diff in changes:
                    trace = fw.data[i]
                    for k, v in diff.items():
                        trace[k] = v
                for key, value in lay.items():
                    if isinstance(value, dict):
                        fw.layout[key].update(value)
                    else:
                        fw.layout[key] = value
        self._sent[name] = (traces, layout)

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
            f"{s.epoch_budget}) · final train loss {fmt(s.final_train_loss)}, train accuracy "
            + (f"{100 * acc:.2f} %" if math.isfinite(acc) else "– (not in this store)")
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
        w["takeaway"].value = _markdown_html(
            "\n\n".join(filter(None, (takeaway(self), sweep_takeaway(self))))
        )
        w["train"].disabled = self.on_grid
        w["config"].value = self.config_text
        for k in KNOBS:
            w[k].style.handle_color = None if self._values[k] == self.grid.defaults[k] else CURRENT

    def _build_widgets(self) -> None:
        import ipywidgets as W

        for k in KNOBS:
            slider = W.SelectionSlider(
                options=[(option_label(k, v), v) for v in self.options[k]],
                value=self._values[k],
                description=k,
                continuous_update=False,
                layout=W.Layout(width="330px"),
                style={"description_width": "95px"},
                tooltip=KNOB_TEXT.get(k, k),
            )
            slider.add_class("awbench-knob")
            slider.add_class(f"awbench-knob-{k}")
            slider.observe(self._on_slider(k), names="value")
            self.widgets[k] = slider
        reset = W.Button(
            description="reset", icon="undo", tooltip="every knob back to the default setting"
        )
        reset.on_click(lambda _: self.reset())
        reset.add_class("awbench-reset")
        train = W.Button(
            description="train this setting",
            icon="play",
            button_style="warning",
            tooltip="train + analyze this off-grid combination (cached)",
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
        summary = W.HTML(layout=W.Layout(width="100%"))
        summary.add_class("awbench-takeaway")
        config = W.Textarea(value="", rows=4, layout=W.Layout(width="100%"), disabled=False)
        config.add_class("awbench-config")
        self.widgets.update(
            reset=reset,
            train=train,
            progress=progress,
            status=status,
            takeaway=summary,
            config=config,
        )
        data = self.panel_data()
        for name in PANELS:
            fw = go.FigureWidget(build_figure(name, *data[name]))
            fw.layout.width = FIGURE_WIDTH  # a FigureWidget does not follow the output's width
            fw.add_class(f"awbench-panel-{name}")
            self._sent[name] = data[name]
            self.figures[name] = fw
        sliders = [self.widgets[k] for k in KNOBS]
        controls = W.VBox(
            [
                W.HBox([W.VBox(sliders[:4]), W.VBox(sliders[4:])]),
                W.HBox([reset, train, progress]),
                status,
                summary,
            ]
        )
        self.view = W.VBox(
            [
                controls,
                W.HTML("<b>Current Config</b> (paste into Python, papermill or a sweep):"),
                config,
                *[self.figures[n] for n in PANELS],
            ]
        )
        self.view.add_class("awbench-knob-panel")

    def _on_slider(self, knob: str):
        def handler(change):
            if self._suspend:
                return
            self._values[knob] = native_value(change["new"])
            self.last_knob = knob
            self._redraw()

        return handler

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


def _markdown_html(text: str) -> str:
    """The little Markdown the takeaways write (paragraphs, "- " items, bold, code) as HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    paragraphs = []
    for para in out.split("\n\n"):
        items = para.split("\n")
        if all(item.startswith("- ") for item in items):
            para = "<ul>" + "".join(f"<li>{item[2:]}</li>" for item in items) + "</ul>"
            paragraphs.append(para)
        else:
            paragraphs.append(f"<p>{para}</p>")
    return "".join(paragraphs)


DYNAMIC = ("x", "y", "text", "error_y", "customdata", "base", "marker")


def same_value(a: Any, b: Any) -> bool:
    """Equal trace properties (arrays by value, the same array object at once)."""
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, (np.ndarray, list)) and isinstance(b, (np.ndarray, list))):
            return False
        a, b = np.asarray(a), np.asarray(b)
        # spectra of two runs are different arrays (a setting's arrays are reused as they are)
        return (
            a.shape == b.shape
            and a.size <= 64
            and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that cannot be compared are not the same
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m awbench.apps.widgets STORE [--t-max T] [--force]``: add loss slices to a store."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m awbench.apps.widgets", description=main.__doc__)
    p.add_argument("store", help="a result store written by `awbench sweep --preset knobs`")
    p.add_argument(
        "--t-max", type=float, default=None, help="slice half-width (default from the default run)"
    )
    p.add_argument("--force", action="store_true", help="recompute slices that exist")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    n = add_slices(args.store, t_max=args.t_max, force=args.force)
    print(f"{n} slice(s) written to {Path(args.store) / 'slices'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
