"""``awbench present``: the knob panel as a code-free Voila app for the front of a room.

:class:`PresentApp` is one 1280x720 screen: the sliders (words with the paper's symbols; the
Config field is the tooltip), the sharpness-vs-size plane with a "you are here" star, the gap
(real, sharp, flat), the σg and σw spectra, the run's training line, a takeaway sentence and a
one-line glossary: the knob explorer (:mod:`awbench.apps.knobs.explorer`, the same as notebook 08's
and the report's), which draws a move in the browser, every panel and text in one update. A
combination the grid lacks is never shown stale: the other knobs snap to the nearest grid
point (fewest knobs moved, then the fewest slider steps) and a note says which.

:func:`serve` (:mod:`awbench.apps.present.server`) runs it with Voila on 127.0.0.1, behind a
token, one kernel per page (at most two). Every script the page loads comes from the Voila
server itself::

    awbench present                       # opens http://127.0.0.1:8866/?token=... in the browser
    awbench present --port 9000 --no-browser

Needs the ``present`` extra (``pip install 'awbench[present]'``, or ``make present``).
"""

from __future__ import annotations

import os
from typing import Any

from awbench.apps.knobs.explorer import Explorer, takeaway_of
from awbench.apps.knobs.explorer_panels import OKABE_ITO, frame
from awbench.apps.knobs.explorer_text import header
from awbench.apps.knobs.grid import KNOBS, KnobGrid, Setting
from awbench.apps.present.server import serve

# The Voila page around the explorer: no prompts, no margins, one 1280x720 screen.
CSS = f"""<style>
body, #rendered_cells, #rendered_cells > div, .jp-Cell, .jp-Cell-outputWrapper,
.jp-OutputArea-child, .jp-OutputArea-output, .jp-Notebook {{
  margin: 0 !important; padding: 0 !important; box-shadow: none !important;
}}
.jp-OutputPrompt, .jp-InputArea, .jp-Collapser {{ display: none !important; }}
.awbench-present {{ padding: 4px 6px; width: 1268px; }}
.awbench-present .awbench-explorer :focus-visible {{
  outline: 3px solid {OKABE_ITO["blue"]}; outline-offset: 2px; }}
</style>"""


class PresentApp:
    """The present-mode screen: the knob explorer (:mod:`awbench.apps.knobs.explorer`) over the
    grid, with a header, for the front of a room. Every move is drawn in the browser; the
    kernel only hears what is on screen.

    Drive it as a user would with :meth:`set` (each move may snap); ``values``, ``setting``,
    ``note`` and :meth:`takeaway` say what is on screen.
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
        self.explorer = Explorer(self.grid, self.options, knob=self.last_knob)
        points = len(self.explorer.payload["points"])
        self.explorer.header = header(len(self.explorer.payload["runs"]), points)
        self.explorer.payload["header"] = self.explorer.header
        self.explorer.on_move = self._moved
        self.view: Any = None

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

    @property
    def payload(self) -> dict:
        """What the browser draws from (:func:`~awbench.apps.knobs.explorer.explorer_payload`)."""
        return self.explorer.payload

    def takeaway(self) -> str:
        """The takeaway on screen (HTML)."""
        st = self.explorer.state
        return takeaway_of(self.payload, int(st["run"]), str(st["knob"]))

    # --- driving --------------------------------------------------------------------------
    def set(self, **values: Any) -> Setting | None:
        """Move sliders one after the other, as a user would (each move may snap)."""
        for k, v in values.items():
            self.explorer.browser_move(k, v)
        return self.setting

    def _moved(self, values: dict, knob: str, wanted: dict | None) -> None:
        self._values, self.last_knob = dict(values), knob
        self.note = str(self.explorer.state.get("note", ""))

    def reset(self) -> None:
        self._values, self.note = dict(self.grid.defaults), ""
        self.explorer.show(self._values, self.last_knob)

    # --- display --------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        import ipywidgets as W
        from IPython.display import display

        if self.view is None:
            self.view = W.VBox([W.HTML(CSS), self.explorer.build()])
            self.view.add_class("awbench-present")
        display(self.view)

    def show(self) -> None:
        self._ipython_display_()


__all__ = ["PresentApp", "frame", "serve"]
