"""Present-mode latency (issue 15): median of 20 slider moves in ``awbench present``'s app.

In process: the time from setting a slider's value (what the front end does) to every panel
of :class:`~awbench.apps.present.PresentApp` updated (lookup, snap, four FigureWidget updates,
the text widgets). Comm messages are JSON-encoded as a kernel would (bench/knobs_latency.py).

    .venv/bin/python bench/present_latency.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time


def main() -> int:
    os.environ.pop("AWBENCH_QUIET", None)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from knobs_latency import recording_comms

    recording_comms()
    import plotly.graph_objects as go

    from awbench.apps.present import PresentApp

    _ = go.FigureWidget
    t0 = time.perf_counter()
    app = PresentApp()
    print(f"present app built in {time.perf_counter() - t0:.1f} s (store load + widgets)")
    d = app.grid.defaults
    cycle = [
        ("batch_size", 100),
        ("weight_decay", 0.01),
        ("init_scale", 2.0),  # off the grid with the two above: snaps
        ("lr", app.options["lr"][-1]),
        ("lr", d["lr"]),
        ("init_scale", d["init_scale"]),
    ]
    times = []
    for i in range(20):
        knob, value = cycle[i % len(cycle)]
        if app.widgets[knob].value == value:
            value = app.options[knob][0] if value != app.options[knob][0] else app.options[knob][-1]
        start = time.perf_counter()
        app.widgets[knob].value = value
        times.append(1000 * (time.perf_counter() - start))
        assert app.setting is not None
    print(
        f"present mode, slider move -> every panel updated: median {statistics.median(times):.1f} ms, "
        f"max {max(times):.1f} ms over {len(times)} moves"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
