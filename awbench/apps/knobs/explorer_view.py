"""The knob explorer where it is shown: the anywidget of notebook 08 and present mode
(:class:`Explorer`, kept in step with the kernel), the same script embedded in a page with its
data (:func:`explorer_html`, the report), and the payload's lookups (:func:`nearest`,
:func:`takeaway_of`, :func:`run_values`), which are the script's, in Python.

The payload itself (every number and sentence, per run) is built by
:func:`~awbench.apps.knobs.explorer.explorer_payload`. This module imports none of that work:
present mode's kernel shows a payload read from the cache with nothing heavier than anywidget
(no pandas, no torch), and builds one only when it must.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from awbench.apps.knobs.grid import KnobGrid

ASSET = "explorer.js"


def nearest(payload: Mapping, values: Mapping[str, Any], knob: str) -> tuple[int, str]:
    """The run the explorer shows for ``values`` after a move of ``knob`` and its snap note
    ("" on the grid): the payload's own lookup, as the script does it. A combination more
    than one move away from the grid snaps by the same rule (fewest other knobs changed,
    then fewest slider steps; the default where no run has ``knob``'s value)."""
    opts = payload["options"]
    # list.index compares with ==, so a NumPy scalar finds its plain Python value
    wanted = [opts[k].index(values[k]) for k in payload["knobs"]]
    key = ",".join(map(str, wanted))
    if key in payload["index"]:
        return payload["index"][key], ""
    j = payload["knobs"].index(knob)
    hit = payload["snap"].get(f"{key}|{j}")
    if hit is not None:
        return hit[0], payload["notes"][hit[1]]
    positions = np.array([r["k"] for r in payload["runs"]], dtype=int)
    rows = np.flatnonzero(positions[:, j] == wanted[j])
    if len(rows):
        diff = np.abs(positions[rows] - np.array(wanted))
        best = int(rows[int(np.argmin(1000 * (diff > 0).sum(1) + diff.sum(1)))])
    else:
        best = payload["ref"]
    knobs = payload["knobs"]
    want = {k: opts[k][i] for k, i in zip(knobs, wanted)}
    got = {k: opts[k][i] for k, i in zip(knobs, payload["runs"][best]["k"])}
    defaults = {k: opts[k][i] for k, i in zip(knobs, payload["default"])}
    from awbench.apps.knobs.explorer_text import snap_note  # rare: more than one move away

    return best, snap_note(knob, want, got, defaults)


def takeaway_of(payload: Mapping, run: int, knob: str) -> str:
    """The takeaway the script shows for ``run`` after a move of ``knob``."""
    r = payload["runs"][run]
    j = payload["knobs"].index(knob)
    tail = payload["lines"][r["L"][j]]["verdicts"] if r["moved"] and knob != "seed" else ""
    return r["head"] + tail


def run_values(payload: Mapping, run: int) -> dict[str, Any]:
    """The knob values of a payload run."""
    r = payload["runs"][run]
    return {k: payload["options"][k][i] for k, i in zip(payload["knobs"], r["k"])}


# --- the script, for the report and for the widget -----------------------------------------


@functools.cache
def script() -> str:
    """The explorer's JavaScript (``awbench/apps/knobs/explorer.js``): defines ``awbenchExplorer``."""
    return (resources.files("awbench.apps.knobs") / ASSET).read_text(encoding="utf-8")


@functools.cache
def plotly_js() -> str:
    """plotly.js as the plotly package ships it (offline)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def data_json(payload: Mapping) -> str:
    """The payload as JSON that is safe inside a ``<script>`` element."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def explorer_html(payload: Mapping, element_id: str = "explore") -> str:
    """The explorer as HTML for a page that already loads plotly.js (the report): a root
    element, the data as JSON and the script that mounts it."""
    eid = html.escape(element_id, quote=True)
    return (
        f'<div class="awbench-explorer" id="{eid}"></div>'
        f'<script type="application/json" id="{eid}-data">{data_json(payload)}</script>'
        f"<script>{script()}\nawbenchExplorer.mount(document.getElementById({json.dumps(element_id)}),"
        f"JSON.parse(document.getElementById({json.dumps(element_id + '-data')}).textContent),"
        "window.Plotly);</script>"
    )


def widget_esm() -> str:
    """The anywidget ES module: plotly.js (it sets ``window.Plotly``), the explorer script
    and a ``render`` that syncs the state with the kernel."""
    return (
        plotly_js()
        + "\n"
        + script()
        + """
export default {
  render({ model, el }) {
    const ex = awbenchExplorer.mount(el, model.get("data"), window.Plotly, (state) => {
      model.set("state", state);
      model.save_changes();
    }, model.get("state"));
    const onState = () => ex.show(model.get("state"));
    const onData = () => ex.reload(model.get("data"), model.get("state"));
    model.on("change:state", onState);
    model.on("change:data", onData);
    return () => {
      model.off("change:state", onState);
      model.off("change:data", onData);
      ex.destroy();
    };
  },
};
"""
    )


@functools.cache
def _widget_class() -> type:
    import anywidget
    import traitlets

    class ExplorerWidget(anywidget.AnyWidget):
        """The knob explorer as one widget: ``data`` is :func:`explorer_payload`, ``state``
        what is on screen (``run``, ``knob``, ``note``, ``seq``; after a snap the browser adds
        ``wanted``, the slider positions asked for)."""

        _esm = traitlets.Unicode(widget_esm()).tag(sync=True)
        data = traitlets.Dict().tag(sync=True)
        state = traitlets.Dict().tag(sync=True)

    return ExplorerWidget


def explorer_widget(payload: Mapping, state: Mapping | None = None) -> Any:
    """The explorer as an anywidget over ``payload``, at ``state`` (default: the default
    setting, the payload's first knob)."""
    cls = _widget_class()
    first = {"run": payload["ref"], "knob": payload["knobs"][payload["knob"]], "note": "", "seq": 0}
    return cls(data=dict(payload), state=dict(state or first))


class Explorer:
    """The explorer of one grid, kept in step with the kernel: :attr:`payload` (sent once),
    :attr:`widget` (built on first use), :meth:`show` (move it from Python) and
    ``on_move(values, knob, wanted)``, called after a move in the browser (``wanted``: the
    knob values asked for when the move snapped, else None).

    ``payload``: one built before (a cached one); ``grid`` is then needed only to rebuild it
    (:meth:`refresh`), and may be None where nothing is trained."""

    def __init__(
        self,
        grid: KnobGrid | None,
        options: Mapping[str, Sequence] | None = None,
        knob: str = "batch_size",
        header: str = "",
        payload: Mapping | None = None,
    ):
        self.grid, self.options, self.header = grid, options, header
        self.payload = self._payload(knob) if payload is None else dict(payload)
        self.state: dict = {"run": self.payload["ref"], "knob": knob, "note": "", "seq": 0}
        self.widget: Any = None
        self.on_move: Any = None

    def _payload(self, knob: str) -> dict:
        from awbench.apps.knobs.explorer import explorer_payload

        payload = explorer_payload(self.grid, self.options, knob)
        if self.header:
            payload["header"] = self.header
        return payload

    def build(self) -> Any:
        if self.widget is None:
            self.widget = explorer_widget(self.payload, self.state)
            self.widget.observe(self._from_browser, names="state")
        return self.widget

    def show(self, values: Mapping[str, Any], knob: str) -> tuple[int, str]:
        """Show ``values`` (snapped to the grid as a move of ``knob`` would be); returns the
        run shown and its snap note."""
        run, note = nearest(self.payload, values, knob)
        seq = int(self.state.get("seq", 0)) + 1
        self.state = {"run": run, "knob": knob, "note": note, "seq": seq, "origin": "kernel"}
        if self.widget is not None:
            self.widget.state = dict(self.state)
        return run, note

    def refresh(self, values: Mapping[str, Any], knob: str, options=None) -> None:
        """Rebuild the payload (a run was added to the grid) and show ``values``."""
        if options is not None:
            self.options = options
        self.payload = self._payload(knob)
        run, note = nearest(self.payload, values, knob)
        seq = int(self.state.get("seq", 0)) + 1
        self.state = {"run": run, "knob": knob, "note": note, "seq": seq, "origin": "kernel"}
        if self.widget is not None:
            with self.widget.hold_sync():
                self.widget.data = dict(self.payload)
                self.widget.state = dict(self.state)

    def _from_browser(self, change: Mapping) -> None:
        st = dict(change["new"])
        if st.get("origin") != "browser":
            return
        self.state = st
        values = run_values(self.payload, int(st["run"]))
        wanted = None
        if st.get("wanted") is not None:
            wanted = {
                k: self.payload["options"][k][int(i)]
                for k, i in zip(self.payload["knobs"], st["wanted"])
            }
        if self.on_move is not None:
            self.on_move(values, str(st["knob"]), wanted)

    def browser_move(self, knob: str, value: Any) -> None:
        """What a slider move in the browser sends (for tests and demos): the move from the
        run on screen, with its lookup or snap, as the script does it."""
        values = run_values(self.payload, int(self.state["run"]))
        values[knob] = value
        run, note = nearest(self.payload, values, knob)
        st = {"run": run, "knob": knob, "note": note, "seq": int(self.state["seq"]) + 1}
        st["origin"] = "browser"
        if note:
            st["wanted"] = [
                self.payload["options"][k].index(values[k]) for k in self.payload["knobs"]
            ]
        self._from_browser({"new": st})
