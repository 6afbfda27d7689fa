"""``awbench present``: the knob panel as a code-free Voila app for the front of a room.

:class:`PresentApp` is one 1280x720 screen: the sliders (words with the paper's symbols; the
Config field is the tooltip), the sharpness-vs-size plane with a "you are here" star, the gap
(real, sharp, flat), the σg and σw spectra, the run's training line, a takeaway sentence and a
one-line glossary. Every panel is redrawn on every move. A combination the grid lacks is never
shown stale: the other knobs snap to the nearest grid point (fewest knobs moved, then the
fewest slider steps) and a note says which.

:func:`serve` writes a one-cell notebook, a kernel spec for this Python and a Voila template
(Voila's lab template without its CDN stylesheets) into a temporary folder, then runs Voila on
127.0.0.1. Every script the page loads comes from the Voila server itself::

    awbench present                       # opens http://127.0.0.1:8866/ in the browser
    awbench present --port 9000 --no-browser

Needs the ``present`` extra (``pip install 'awbench[present]'``, or ``make present``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from awbench.apps.knob_effects import effect
from awbench.apps.knob_grid import KNOBS, KnobGrid, Setting, native_value
from awbench.apps.knob_panels import nested
from awbench.apps.knob_sentences import option_label
from awbench.apps.present_panels import (
    HERE,
    OKABE_ITO,
    PANELS,
    WIDTH,
    frame,
    gap_traces,
    grid_ranges,
    plane_traces,
    spectrum_traces,
)
from awbench.apps.present_text import (
    GLOSSARY,
    LABELS,
    SLIDER_ORDER,
    header,
    snap_note,
    takeaway,
    training_line,
)

DEFAULT_PORT = 8866
CONTROLS_WIDTH = 380  # px
DYNAMIC = ("x", "y", "text", "hovertext", "marker")

CSS = f"""<style>
body, #rendered_cells, #rendered_cells > div, .jp-Cell, .jp-Cell-outputWrapper,
.jp-OutputArea-child, .jp-OutputArea-output, .jp-Notebook {{
  margin: 0 !important; padding: 0 !important; box-shadow: none !important;
}}
.jp-OutputPrompt, .jp-InputArea, .jp-Collapser {{ display: none !important; }}
.awbench-present {{ font-size: 16px; line-height: 1.3; padding: 4px 6px; width: 1268px;
  color: #111; }}
.awbench-present .widget-label, .awbench-present .widget-readout,
.awbench-present .widget-html-content, .awbench-present .widget-button {{
  font-size: 16px !important; }}
.awbench-present .widget-html-content {{ line-height: 1.3; }}
.awbench-present .widget-readout {{ min-width: 3.5em; }}
.awbench-present .noUi-handle:focus, .awbench-present button:focus {{
  outline: 3px solid {OKABE_ITO["blue"]}; outline-offset: 2px; }}
.awbench-present-h {{ font-size: 20px; font-weight: bold; }}
.awbench-note .widget-html-content {{ background: #fff4d6; border-left: 5px solid
  {OKABE_ITO["orange"]}; padding: 2px 6px; }}
.awbench-note-empty {{ display: none !important; }}
.awbench-takeaway .widget-html-content {{ border-left: 5px solid {OKABE_ITO["blue"]};
  padding: 2px 6px; }}
</style>"""


class PresentApp:
    """The present-mode screen over the knob grid (see the module docstring).

    Drive it like a user with ``app.widgets[knob].value = v`` (or :meth:`set`); ``values``,
    ``setting`` and ``note`` say what is on screen, ``history`` how long each redraw took.
    """

    def __init__(
        self,
        store: str | os.PathLike | None = None,
        *,
        extra_store: str | os.PathLike | None = None,
    ):
        self.grid = KnobGrid(store, extra_store)
        self.options = {k: list(self.grid.values[k]) for k in KNOBS}
        self._values: dict[str, Any] = dict(self.grid.defaults)
        self.last_knob = "batch_size"
        self.note = ""
        self.ranges = grid_ranges(self.grid)
        self._index_runs()
        self.history: list[dict] = []
        self.widgets: dict[str, Any] = {}
        self.figures: dict[str, Any] = {}
        self.plots: Any = None  # the GridBox that shows self.figures
        self._frames: dict[str, dict] = {}
        self._sent: dict[str, tuple[list[dict], dict]] = {}
        self._suspend = False
        self._build()
        self._redraw()

    # --- state --------------------------------------------------------------------------
    @property
    def values(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def setting(self) -> Setting | None:
        return self.grid.lookup(self._values)

    @property
    def reference(self) -> Setting:
        return self.grid.default()

    def _index_runs(self) -> None:
        """Slider positions of every run whose knobs are all on the sliders."""
        pos = {k: {v: i for i, v in enumerate(self.options[k])} for k in KNOBS}
        rows, keep = [], []
        for row in self.grid.runs[list(KNOBS)].itertuples(index=False, name=None):
            vals = [native_value(v) for v in row]
            ok = all(v in pos[k] for k, v in zip(KNOBS, vals))
            rows.append([pos[k].get(v, -1) for k, v in zip(KNOBS, vals)])
            keep.append(ok)
        self._positions = np.array(rows, dtype=int)[np.array(keep, dtype=bool)]
        self._pos = pos

    def nearest(self, values: dict[str, Any], keep: str) -> dict[str, Any]:
        """The grid combination nearest ``values`` with ``keep`` as it is: fewest other knobs
        changed, then fewest slider steps (``values`` itself when it is on the grid)."""
        if self.grid.lookup(values) is not None:
            return dict(values)
        target = np.array([self._pos[k][values[k]] for k in KNOBS])
        j = KNOBS.index(keep)
        rows = self._positions[self._positions[:, j] == target[j]]
        if not len(rows):
            return dict(self.grid.defaults)
        diff = np.abs(rows - target)
        cost = 1000 * (diff > 0).sum(1) + diff.sum(1)
        best = rows[int(np.argmin(cost))]
        return {k: self.options[k][i] for k, i in zip(KNOBS, best)}

    # --- driving --------------------------------------------------------------------------
    def set(self, **values: Any) -> Setting | None:
        """Move sliders one after the other, as a user would (each move may snap)."""
        for k, v in values.items():
            self.widgets[k].value = native_value(v)
        return self.setting

    def _moved(self, knob: str, value: Any) -> None:
        wanted = {**self._values, knob: native_value(value)}
        snapped = self.nearest(wanted, knob)
        self.note = snap_note(knob, wanted, snapped, self.grid.defaults)
        self._values = snapped
        self.last_knob = knob
        if snapped != wanted:
            self._suspend = True
            try:
                for k in KNOBS:
                    self.widgets[k].value = snapped[k]
            finally:
                self._suspend = False
        self._redraw()

    def _on_slider(self, knob: str):
        def handler(change):
            if not self._suspend:
                self._moved(knob, change["new"])

        return handler

    def reset(self) -> None:
        self._suspend = True
        try:
            for k in KNOBS:
                self.widgets[k].value = self.grid.defaults[k]
        finally:
            self._suspend = False
        self._values, self.note = dict(self.grid.defaults), ""
        self._redraw()

    # --- drawing --------------------------------------------------------------------------
    def panel_data(self) -> dict[str, tuple[list[dict], dict]]:
        cur, ref = self.setting, self.reference
        curve = self.grid.curve(self.last_knob, self._values)
        return {
            "plane": plane_traces(self.grid, curve, self.last_knob, cur, ref),
            "gap": gap_traces(cur, ref),
            "sigma_g": spectrum_traces("sigma_g", cur, ref),
            "sigma_w": spectrum_traces("sigma_w", cur, ref),
        }

    def _redraw(self) -> None:
        start = time.perf_counter()
        for name, (traces, layout) in self.panel_data().items():
            self._send(name, traces, layout)
        cur = self.setting
        w = self.widgets
        w["training"].value = training_line(cur)
        knob = self.last_knob
        line = effect(self.grid, knob, self._values)[0] if knob != "seed" else None
        w["takeaway"].value = takeaway(
            cur, self.reference, self._values, self.grid.defaults, line, knob
        )
        w["note"].value = self.note
        if self.note:
            w["note"].remove_class("awbench-note-empty")
        else:
            w["note"].add_class("awbench-note-empty")
        for k in KNOBS:
            moved = self._values[k] != self.grid.defaults[k]
            w[k].style.handle_color = HERE if moved else None
        self.history.append(
            {"knob": self.last_knob, "values": self.values, "seconds": time.perf_counter() - start}
        )

    def _send(self, name: str, traces: list[dict], layout: dict) -> None:
        """Show one panel's new figure as a new FigureWidget.

        Under Voila 0.5 a FigureWidget's in-place updates never reach the page (JupyterLab
        draws them); a new widget is drawn from its full state everywhere. It costs a few
        more kilobytes per move than an in-place diff.
        """
        from awbench.apps.widgets import same_value

        old_traces, old_layout = self._sent.get(name, ([{}] * len(traces), {}))
        unchanged = all(
            same_value(old.get(k), new.get(k))
            for old, new in zip(old_traces, traces)
            for k in DYNAMIC
        ) and all(same_value(old_layout.get(k), v) for k, v in layout.items())
        if name in self.figures and unchanged:
            return
        self.figures[name] = self._figure_widget(name, traces, layout)
        self._sent[name] = (traces, layout)
        if self.plots is not None:
            self.plots.children = tuple(self.figures[n] for n in PANELS)

    def _figure_widget(self, name: str, traces: list[dict], layout: dict):
        """A FigureWidget of one panel: its frame (validated once, then reused as a dict) with
        this move's traces and layout changes, unvalidated. plotly's validation was 95 % of a
        move (about 170 ms per panel); the builders' output is checked in the tests against
        :func:`present_figure`, which validates."""
        import plotly.graph_objects as go

        if name not in self._frames:
            self._frames[name] = frame(name, self.ranges).to_dict()["layout"]
        merged = _merge(json.loads(json.dumps(self._frames[name])), nested(layout))
        fw = go.FigureWidget(data=[dict(t) for t in traces], layout=merged, _validate=False)
        fw.add_class("awbench-present-panel")
        fw.add_class(f"awbench-present-{name}")
        return fw

    def _build(self) -> None:
        import ipywidgets as W

        sliders = [self._slider(W, k) for k in SLIDER_ORDER]
        reset = W.Button(description="reset", tooltip="every knob back to the default")
        reset.on_click(lambda _: self.reset())
        reset.add_class("awbench-reset")
        html = {n: W.HTML(layout=W.Layout(width=f"{CONTROLS_WIDTH}px")) for n in ("note",)}
        html["training"] = W.HTML(layout=W.Layout(width=f"{CONTROLS_WIDTH}px"))
        html["takeaway"] = W.HTML(layout=W.Layout(width=f"{CONTROLS_WIDTH}px"))
        for name, widget in html.items():
            widget.add_class(f"awbench-{name}")
        self.widgets.update(reset=reset, **html)
        data = self.panel_data()
        for name in PANELS:
            self.figures[name] = self._figure_widget(name, *data[name])
            self._sent[name] = data[name]
        controls = W.VBox(
            [*sliders, reset, html["note"], html["training"], html["takeaway"]],
            layout=W.Layout(width=f"{CONTROLS_WIDTH}px", grid_gap="2px"),
        )
        controls.add_class("awbench-present-controls")
        plots = self.plots = W.GridBox(
            [self.figures[n] for n in PANELS],
            layout=W.Layout(grid_template_columns=f"repeat(2, {WIDTH}px)", grid_gap="4px 6px"),
        )
        points = len({tuple(r[:-1]) for r in self._positions.tolist()})
        self.view = W.VBox(
            [
                W.HTML(CSS),
                W.HTML(header(len(self.grid.runs), points)),
                W.HBox([controls, plots], layout=W.Layout(grid_gap="6px")),
                W.HTML(GLOSSARY),
            ]
        )
        self.view.add_class("awbench-present")

    def _slider(self, W: Any, k: str):
        slider = W.SelectionSlider(
            options=[(option_label(k, v), v) for v in self.options[k]],
            value=self._values[k],
            description=LABELS[k],
            tooltip=f"{LABELS[k]}: Config field {k}",
            continuous_update=False,
            layout=W.Layout(width=f"{CONTROLS_WIDTH}px", height="32px"),
            style={"description_width": "170px"},
        )
        slider.add_class("awbench-knob")
        slider.add_class(f"awbench-knob-{k}")
        slider.observe(self._on_slider(k), names="value")
        self.widgets[k] = slider
        return slider

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view)

    def show(self) -> None:
        self._ipython_display_()


# --- serving it with Voila --------------------------------------------------------------------

CELL = """from awbench.apps.present import PresentApp

PresentApp().show()"""
TEMPLATE = "awbench-present"
KERNEL = "awbench-present"


def notebook() -> dict:
    """The one-cell notebook Voila runs (its kernel is this Python, see :func:`prepare`)."""
    return {
        "cells": [
            {
                "cell_type": "code",
                "id": "awbench-present",
                "metadata": {},
                "source": CELL,
                "outputs": [],
                "execution_count": None,
            }
        ],
        "metadata": {
            "kernelspec": {"name": KERNEL, "display_name": "awbench present", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _template_text() -> str:
    """Voila's lab template without the stylesheets it takes from a CDN (Font Awesome) and
    with no Mermaid loader: nothing on the page comes from outside 127.0.0.1."""
    import jupyter_core.paths

    for folder in jupyter_core.paths.jupyter_path("voila", "templates", "lab"):
        path = Path(folder) / "index.html.j2"
        if path.exists():
            break
    else:
        raise FileNotFoundError("Voila's lab template (voila/templates/lab/index.html.j2)")
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if "://cdn" not in line]
    head, rest = kept[0], kept[1:]
    blank = "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}"
    return "\n".join([head, blank, *rest]) + "\n"


def prepare(folder: Path) -> Path:
    """Write the notebook, the kernel spec and the template under ``folder``; returns the
    notebook path (``folder/share/jupyter`` goes first on ``JUPYTER_PATH``)."""
    share = folder / "share" / "jupyter"
    kernel = share / "kernels" / KERNEL
    kernel.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "awbench present",
        "language": "python",
    }
    (kernel / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    template = share / "voila" / "templates" / TEMPLATE
    template.mkdir(parents=True, exist_ok=True)
    (template / "conf.json").write_text(json.dumps({"base_template": "lab"}), encoding="utf-8")
    (template / "index.html.j2").write_text(_template_text(), encoding="utf-8")
    path = folder / "awbench-present.ipynb"
    path.write_text(json.dumps(notebook(), indent=1), encoding="utf-8")
    return path


def free_port(preferred: int = DEFAULT_PORT) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def voila_command(path: Path, port: int, open_browser: bool) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(path),
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        f"--template={TEMPLATE}",
        "--theme=light",
        "--strip_sources=True",
        "--show_tracebacks=False",
    ]
    if not open_browser:
        cmd.append("--no-browser")
    return cmd


def serve(port: int | None = None, open_browser: bool = True) -> int:
    """Run the present-mode app with Voila on 127.0.0.1 until Ctrl-C; returns Voila's code."""
    try:
        import voila  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "awbench present needs Voila: pip install 'awbench[present]' (or: make present)"
        ) from exc
    port = free_port() if port is None else port
    with tempfile.TemporaryDirectory(prefix="awbench-present-") as tmp:
        path = prepare(Path(tmp))
        env = dict(os.environ)
        share = str(Path(tmp) / "share" / "jupyter")
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [share, env.get("JUPYTER_PATH")]))
        env.pop("AWBENCH_QUIET", None)
        print(f"awbench present: http://127.0.0.1:{port}/  (Ctrl-C to stop)", flush=True)
        proc = subprocess.Popen(voila_command(path, port, open_browser), env=env, cwd=tmp)
        try:
            return proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


__all__ = ["PresentApp", "frame", "serve"]


def _merge(base: dict, changes: dict) -> dict:
    """``base`` updated in place by the nested dict ``changes`` (dicts merge, the rest
    replaces)."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base
