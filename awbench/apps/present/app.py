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

The kernel starts on the explorer's payload from the cache
(:mod:`awbench.apps.knobs.payload_cache`): seconds to build once per grid and code version,
milliseconds to read. The grid itself (pandas, and torch through the Config) is loaded only
when asked for (:attr:`PresentApp.grid`, ``setting``, ``reference``), never for the view.

Needs the ``present`` extra (``pip install 'awbench[present]'``, or ``make present``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from awbench.apps.knobs.explorer_view import Explorer, takeaway_of
from awbench.apps.knobs.payload_cache import cached_payload
from awbench.apps.knobs.stores import default_store, user_store
from awbench.apps.present.server import serve

if TYPE_CHECKING:
    from awbench.apps.knobs.grid import KnobGrid, Setting

FIRST_KNOB = "batch_size"  # the knob whose line the plane shows first


def css(focus: str) -> str:
    """The Voila page around the explorer: no prompts, no margins, one 1280x720 screen;
    ``focus``: the outline colour of the slider in focus."""
    return f"""<style>
body, #rendered_cells, #rendered_cells > div, .jp-Cell, .jp-Cell-outputWrapper,
.jp-OutputArea-child, .jp-OutputArea-output, .jp-Notebook {{
  margin: 0 !important; padding: 0 !important; box-shadow: none !important;
}}
.jp-OutputPrompt, .jp-InputArea, .jp-Collapser {{ display: none !important; }}
.awbench-present {{ padding: 4px 6px; width: 1268px; }}
.awbench-present .awbench-explorer :focus-visible {{
  outline: 3px solid {focus}; outline-offset: 2px; }}
</style>"""


def header(payload: dict) -> str:
    """The line above the explorer: the question and the size of the grid."""
    n_runs, n_points = len(payload["runs"]), len(payload["points"])
    return (
        '<span class="awbench-present-h">Activity–weight duality: what do the knobs do to '
        "the generalization gap?</span> "
        f'<span style="color:{payload["colors"]["default"]}">{n_points} grid points, '
        f"{n_runs} trained networks · Tab to a slider, ← → to move it</span>"
    )


class PresentApp:
    """The present-mode screen: the knob explorer (:mod:`awbench.apps.knobs.explorer_view`)
    over the grid, with a header, for the front of a room. Every move is drawn in the
    browser; the kernel only hears what is on screen.

    Drive it as a user would with :meth:`set` (each move may snap); ``values``, ``setting``,
    ``note`` and :meth:`takeaway` say what is on screen.
    """

    def __init__(
        self,
        store: str | os.PathLike | None = None,
        *,
        extra_store: str | os.PathLike | None = None,
    ):
        self.store = Path(store) if store is not None else default_store()
        self.extra_store = Path(extra_store) if extra_store is not None else user_store()
        self.last_knob = FIRST_KNOB
        payload = cached_payload((self.store, self.extra_store), FIRST_KNOB, self._build)
        knobs = payload["knobs"]
        self.options = {k: list(payload["options"][k]) for k in knobs}
        self.defaults = {k: self.options[k][i] for k, i in zip(knobs, payload["default"])}
        self._values: dict[str, Any] = dict(self.defaults)
        self.note = ""
        # no grid: present mode trains nothing, so the payload is never rebuilt
        self.explorer = Explorer(None, self.options, knob=self.last_knob, payload=payload)
        self.explorer.header = header(payload)
        self.explorer.payload["header"] = self.explorer.header
        self.explorer.on_move = self._moved
        self.view: Any = None

    @functools.cached_property
    def grid(self) -> KnobGrid:
        """The runs behind the payload, loaded on first use."""
        from awbench.apps.knobs.grid import KnobGrid

        return KnobGrid(self.store, self.extra_store)

    def _build(self) -> dict:
        from awbench.apps.knobs.explorer import explorer_payload

        return explorer_payload(self.grid, knob=FIRST_KNOB)

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
        self._values, self.note = dict(self.defaults), ""
        self.explorer.show(self._values, self.last_knob)

    # --- display --------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        import ipywidgets as W
        from IPython.display import display

        if self.view is None:
            style = W.HTML(css(self.payload["colors"]["focus"]))
            self.view = W.VBox([style, self.explorer.build()])
            self.view.add_class("awbench-present")
        display(self.view)

    def show(self) -> None:
        self._ipython_display_()


__all__ = ["PresentApp", "serve"]
