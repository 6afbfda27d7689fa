"""Knobs panel latency (issue 7): slider redraws and "train this setting".

1. Median of 50 slider moves over the shipped grid (every knob, on-grid combinations), in
   process, live mode: the observer's lookup, the four FigureWidget updates, and the JSON
   encoding of every comm message a kernel would send (a recording comm stands in for the
   kernel's). Target: <= 150 ms.
2. "Train this setting" for an off-grid combination at the grid's size (the base of the
   shipped store, whatever its budget: 150 epochs in the store trained before budgets were
   counted in samples), fresh cache, one torch thread: train + analyze + loss slice + store
   write. Target: <= 10 s. Then the same setting in a new panel (the cached result: a lookup).
3. Training to the stopping rule under the automatic budget, as "train this setting" does on
   a grid built by ``awbench sweep --preset knobs`` (paper preset, n_train=648): batch 25 and
   batch 400, fresh cache, one torch thread, train + analyze + loss slice. No target: the
   stopping rule, not an epoch count, sets the time (batch 400 takes ~15x the epochs).

    .venv/bin/python bench/knobs_latency.py                 # all three
    .venv/bin/python bench/knobs_latency.py --auto-budget   # the third only
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

import torch

TARGET_MOVE_MS = 150.0
TARGET_TRAIN_S = 10.0


def recording_comms() -> list[int]:
    """Make every widget comm JSON-encode what it publishes (as a kernel would); returns the
    list of encoded message sizes."""
    import comm
    from comm.base_comm import BaseComm

    sizes: list[int] = []

    class JsonComm(BaseComm):
        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            text = json.dumps(
                {"msg_type": msg_type, "data": data, "metadata": metadata}, default=str
            )
            sizes.append(len(text) + sum(len(memoryview(b).cast("B")) for b in buffers or []))

    comm.create_comm = lambda *a, **k: JsonComm(*a, **k)
    return sizes


def moves(panel, n: int) -> list[tuple[str, object]]:
    """n slider moves that stay on the grid: batch size x weight decay, then each knob alone."""
    d = panel.grid.defaults
    cycle = [
        ("batch_size", 100),
        ("weight_decay", 0.01),
        ("batch_size", 400),
        ("weight_decay", 0.02),
        ("batch_size", 25),
        ("weight_decay", 0.0),
    ]
    for knob in ("lr", "dropout", "label_noise", "n_train", "init_scale", "seed"):
        cycle += [(knob, panel.grid.values[knob][-1]), (knob, d[knob])]
    return [cycle[i % len(cycle)] for i in range(n)]


def train_to_the_stopping_rule(batch_sizes=(25, 400), n_train: int = 648) -> list[dict]:
    """Train + analyze + loss slice of the paper preset at ``n_train`` under the automatic
    budget, one run per batch size, in a fresh cache; prints and returns the timings."""
    import numpy as np

    import awbench as aw
    from awbench.apps.knobs.slices import SLICE_POINTS, loss_slice
    from awbench.experiments.experiment import run_experiment

    out = []
    for batch in batch_sizes:
        cfg = aw.Config.preset("paper").replace(n_train=n_train, batch_size=batch)
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["AWBENCH_CACHE"] = tmp
            start, cpu = time.perf_counter(), time.process_time()
            res = run_experiment(cfg, show_progress=False)
            t_max = 1.0 / max(res.scalars.get("lam_max", 1.0), 1e-12) ** 0.5
            loss_slice(res.load_run(), np.linspace(-t_max, t_max, SLICE_POINTS))
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        row = {
            "batch_size": batch,
            "status": res.status,
            "epochs": res.epochs,
            "budget": cfg.epoch_budget(),
            "train_s": res.train_seconds,
            "analyze_s": res.analyze_seconds,
            "wall_s": wall,
            "cpu_s": cpu,
        }
        out.append(row)
        print(
            f"to the stopping rule, n_train={n_train}, batch {batch}: {res.status} after "
            f"{res.epochs} of at most {row['budget']} epochs; train {res.train_seconds:.1f} s, "
            f"analyze {res.analyze_seconds:.1f} s, with the slice {wall:.1f} s wall, {cpu:.1f} s CPU",
            flush=True,
        )
    return out


def main() -> int:
    torch.set_num_threads(1)
    if "--auto-budget" in sys.argv[1:]:
        train_to_the_stopping_rule()
        return 0
    os.environ.pop("AWBENCH_QUIET", None)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["AWBENCH_CACHE"] = tmp  # a fresh cache: "train this setting" really trains
        sizes = recording_comms()
        import plotly.graph_objects as go

        from awbench.apps.knobs.frontend import wait_for_warm_up
        from awbench.apps.knobs.grid import describe
        from awbench.apps.knobs.widgets import KnobPanel

        _ = go.FigureWidget  # resolve plotly's lazy widget import before the panel is timed
        t0 = time.perf_counter()
        panel = KnobPanel(mode="live", extra_store=os.path.join(tmp, "user_store"))
        build = time.perf_counter() - t0
        wait_for_warm_up()  # steady state: the first panel's background warm-up is over
        times = []
        n_msgs = len(sizes)
        for knob, value in moves(panel, 50):
            assert panel.widgets[knob].value != value, (knob, value)
            start = time.perf_counter()
            panel.widgets[knob].value = value  # what the front end's slider does
            times.append(1000 * (time.perf_counter() - start))
            assert panel.on_grid, panel.values
        sent = sizes[n_msgs:]
        med = statistics.median(times)
        p90 = sorted(times)[int(0.9 * len(times)) - 1]
        print(f"panel built in {build * 1000:.0f} ms (store load + widgets, imports done)")
        print(
            f"slider move -> redraw: median {med:.1f} ms, p90 {p90:.1f} ms, max {max(times):.1f} ms "
            f"over {len(times)} moves; {len(sent)} comm messages, {sum(sent) / len(times) / 1e3:.1f} kB "
            f"per move  [target <= {TARGET_MOVE_MS:.0f} ms: {'ok' if med <= TARGET_MOVE_MS else 'MISSED'}]"
        )

        panel.reset()
        panel.set(dropout=0.1, weight_decay=0.01)  # off the grid: dropout was only moved alone
        assert not panel.on_grid
        start, cpu = time.perf_counter(), time.process_time()
        panel.widgets["train"].click()
        train_s, cpu = time.perf_counter() - start, time.process_time() - cpu
        s = panel.setting
        print(
            f"train this setting ({describe(panel.config, panel.grid.base)}): {train_s:.1f} s, {cpu:.1f} s CPU "
            f"({s.status}, {int(s['epochs'])} epochs, train {panel.grid.runs.iloc[-1]['train_seconds']:.1f} s)  "
            f"[target <= {TARGET_TRAIN_S:.0f} s: {'ok' if train_s <= TARGET_TRAIN_S else 'MISSED'}]"
        )
        start = time.perf_counter()
        again = KnobPanel(
            mode="live",
            extra_store=os.path.join(tmp, "user_store"),
            start={"dropout": 0.1, "weight_decay": 0.01},
        )
        assert again.on_grid and again.setting.source == "trained"
        print(
            f"the same setting in a new panel: {1000 * (time.perf_counter() - start):.0f} ms (cached, no training)"
        )
    train_to_the_stopping_rule()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} (other users share them)")
    return 0  # a missed target is printed above, never hidden; other benches still run


if __name__ == "__main__":
    sys.exit(main())
