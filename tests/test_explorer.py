"""The one knob explorer (awbench.apps.knobs.explorer) of notebook 08, present mode and the report.

Fast tests check the payload against the Python that writes its sentences (explorer_text's
takeaway with the verdicts along a knob line, the snap note and its rule) and that the three
views ship the same payload. The browser tests (slow; Debian's chromium via Playwright, skipped
locally and failing under CI without them, as tests/test_browser.py) move sliders by keyboard
in the report's explorer (a file) and in ``awbench present`` (a subprocess on 127.0.0.1), and
check that every panel and text changes together (no mixed state sampled right after a key),
that a combination the grid lacks snaps with its note, that no request leaves the file or
127.0.0.1, and that a rendered number is the payload's.
"""

from __future__ import annotations

import json
import math
import os
import re
import time

import pytest
from browser_support import (
    CHROMIUM_ARGS,
    playwright_and_chromium,
    start_present,
    stop_group,
)

from awbench.apps.knobs import effects as ke
from awbench.apps.knobs import explorer as ex
from awbench.apps.knobs import explorer_text as pt
from awbench.apps.knobs import explorer_view as ev
from awbench.apps.knobs.grid import KnobGrid
from awbench.experiments.grids import KNOBS_CROSSED, PAPER_VALUES
from awbench.formatting import number


@pytest.fixture(scope="module")
def grid():
    return KnobGrid()


@pytest.fixture(scope="module")
def payload(grid):
    return ex.explorer_payload(grid)


@pytest.mark.slow
def test_the_takeaway_of_every_run_and_knob_is_present_texts(grid, payload):
    ref, defaults = grid.default(), grid.defaults
    for i in range(0, len(payload["runs"]), 5):
        values = ev.run_values(payload, i)
        s = grid.lookup(values)
        assert s.key == payload["runs"][i]["key"]
        for knob in payload["knobs"]:
            line = ke.effect(grid, knob, values)[0] if knob != "seed" else None
            want = pt.takeaway(s, ref, values, defaults, line, knob)
            assert ev.takeaway_of(payload, i, knob) == want, (values, knob)
        assert payload["runs"][i]["training"] == pt.training_line(s)


def test_a_missing_combination_snaps_by_the_rule_with_present_texts_note(payload):
    opts = payload["options"]
    at = {**ev.run_values(payload, payload["ref"]), "batch_size": 100, "weight_decay": 0.01}
    run, note = ev.nearest(payload, at, "weight_decay")
    assert note == "" and ev.run_values(payload, run) == at
    wanted = {**at, "label_noise": opts["label_noise"][1]}  # only moved alone
    run, note = ev.nearest(payload, wanted, "label_noise")
    got = ev.run_values(payload, run)
    assert got["label_noise"] == wanted["label_noise"] and got["batch_size"] == 25
    assert got["weight_decay"] == 0
    defaults = ev.run_values(payload, payload["ref"])
    assert note == pt.snap_note("label_noise", wanted, got, defaults)
    assert "batch size B 100 → 25" in note and "weight decay β 0.01 → 0" in note
    # every one-knob move from every run lands on a run (a lookup or a precomputed snap)
    for r in payload["runs"]:
        for j, knob in enumerate(payload["knobs"]):
            for v in range(len(opts[knob])):
                key = list(r["k"])
                key[j] = v
                text = ",".join(map(str, key))
                assert text in payload["index"] or f"{text}|{j}" in payload["snap"]


def test_moves_within_the_cross_never_snap_and_a_snap_says_what_moved(payload):
    opts, knobs = payload["options"], payload["knobs"]
    crossed = [knobs.index(k) for k in KNOBS_CROSSED]
    alone = [j for j, k in enumerate(knobs) if k not in KNOBS_CROSSED and k != "seed"]
    default = payload["default"]
    on_cross = [r for r in payload["runs"] if all(r["k"][j] == default[j] for j in alone)]
    assert len(on_cross) == 3 * math.prod(len(v) for v in KNOBS_CROSSED.values())
    for r in on_cross:
        for j in crossed:
            for v in range(len(opts[knobs[j]])):
                key = list(r["k"])
                key[j] = v
                assert ",".join(map(str, key)) in payload["index"], (r["key"], knobs[j], v)
    # from a point with all four crossed knobs moved, a knob moved alone snaps back to the
    # default of the other four, and the note names each of them with both values
    at = {
        **ev.run_values(payload, payload["ref"]),
        "batch_size": 400,
        "lr": 0.2,
        "weight_decay": 0.02,
        "dropout": 0.1,
    }
    run, note = ev.nearest(payload, {**at, "init_scale": 4.0}, "init_scale")
    assert ev.run_values(payload, run) == {
        **ev.run_values(payload, payload["ref"]),
        "init_scale": 4.0,
    }
    assert note == (
        "⚠ init scale s = 4 with the other knobs as they were is not on the grid: snapped to "
        "the nearest grid point (batch size B 400 → 25, learning rate α 0.2 → 0.1, weight "
        "decay β 0.02 → 0, dropout d 0.1 → 0)."
    )


def test_values_beyond_the_papers_range_are_flagged_on_the_sliders(payload):
    flagged = {
        (k, v)
        for k in payload["knobs"]
        for v, label in zip(payload["options"][k], payload["optionLabels"][k])
        if label.endswith(" ⚠")
    }
    assert flagged == {("lr", 0.2), ("init_scale", 2.0)}
    for knob, values in KNOBS_CROSSED.items():
        lo, hi = min(PAPER_VALUES[knob]), max(PAPER_VALUES[knob])
        inside = [v for v in values if lo <= v <= hi]
        assert len(inside) >= 2 and set(values) - set(inside) <= {0.2}, knob
    i = payload["index"][
        ",".join(
            str(payload["options"][k].index(0.2) if k == "lr" else d)
            for k, d in zip(payload["knobs"], payload["default"])
        )
    ]
    assert "learning rate α 0.2 is beyond the paper&#x27;s range (0.005–0.1)" in ev.takeaway_of(
        payload, i, "lr"
    )


def test_one_choice_of_axes_labels_order_and_star(payload):
    assert payload["knobs"] == list(pt.SLIDER_ORDER)
    assert payload["labels"]["batch_size"] == "batch size B"
    assert "Config field batch_size" in payload["hints"]["batch_size"]
    plane = payload["layouts"]["plane"]
    assert plane["xaxis"]["title"]["text"].startswith("size")
    assert plane["yaxis"]["title"]["text"].startswith("sharpness")
    from awbench.apps.report.sliders import panel_figure

    fig = panel_figure(payload, "plane")
    star, own = fig["data"][4], fig["data"][3]
    assert star["marker"]["symbol"] == "star" and own["marker"]["symbol"] == "x-thin-open"
    ref = payload["runs"][payload["ref"]]
    point = payload["points"][ref["p"]]
    assert (star["x"], star["y"]) == ([point["x"]], [point["y"]])  # the seed mean
    assert (own["x"], own["y"]) == ([ref["own"][0]], [ref["own"][1]])  # this seed's run


@pytest.mark.slow
def test_the_three_views_ship_the_same_payload(payload, tmp_path):
    pytest.importorskip("anywidget")
    from awbench.apps.knobs.widgets import KnobPanel
    from awbench.apps.present.app import PresentApp
    from awbench.apps.report.sliders import ROOT_ID, explore_section

    page = "".join(explore_section())
    embedded = json.loads(
        re.search(rf'id="{ROOT_ID}-data">(.*?)</script>', page, re.DOTALL).group(1)
    )
    app = PresentApp()
    panel = KnobPanel(mode="live", extra_store=tmp_path / "user")
    shown = {k: v for k, v in app.payload.items() if k != "header"}
    assert embedded == json.loads(ev.data_json(payload))
    assert json.loads(ev.data_json(shown)) == embedded
    assert json.loads(ev.data_json(panel.explorer.payload)) == embedded
    # a move in each view shows the same run with the same words
    app.set(batch_size=100)
    panel.explorer.browser_move("batch_size", 100)
    assert app.explorer.state["run"] == panel.explorer.state["run"]
    assert app.takeaway() == ev.takeaway_of(payload, app.explorer.state["run"], "batch_size")


def test_present_app_snaps_and_resets(payload):
    pytest.importorskip("anywidget")
    from awbench.apps.present.app import PresentApp

    app = PresentApp()
    app.set(batch_size=100, weight_decay=0.01)
    assert app.note == "" and app.setting is not None
    app.set(label_noise=0.1)
    assert "snapped" in app.note and "batch size B 100 → 25" in app.note
    assert app.values["label_noise"] == 0.1 and app.values["batch_size"] == 25
    app.reset()
    assert app.values == app.grid.defaults and app.note == ""


# --- in a real browser ----------------------------------------------------------------------

STATE = """() => {
  const root = document.querySelector('.awbench-explorer');
  const runs = Array.from(root.querySelectorAll('[data-run]')).map(e => e.dataset.run);
  const panels = Array.from(root.querySelectorAll('.aw-panel'));
  return {seq: root.dataset.seq, run: root.dataset.run, runs: runs,
          drawn: panels.map(gd => gd.data ? JSON.stringify(gd.data.map(t => [t.x, t.y])) : null),
          note: root.querySelector('.aw-note').textContent,
          takeaway: root.querySelector('.aw-takeaway').innerHTML,
          gapTitle: root.querySelector('.awbench-present-gap .gtitle').textContent};
}"""


def _press(page, knob: str, key: str = "ArrowRight") -> tuple[dict, dict]:
    """Focus a slider and press a key; the state sampled right after the key, and before."""
    page.locator(f".awbench-knob-{knob} input[type=range]").focus()
    before = page.evaluate(STATE)
    page.keyboard.press(key)
    return before, page.evaluate(STATE)


def _check_together(before: dict, after: dict) -> None:
    assert after["seq"] != before["seq"], "the key moved nothing"
    assert len(after["runs"]) >= 7 and set(after["runs"]) == {after["run"]}, "a mixed state"
    changed = [a != b for a, b in zip(after["drawn"], before["drawn"])]
    assert all(changed), f"panels unchanged: {changed}"
    assert after["takeaway"] != before["takeaway"]


def _drive(page, payload: dict) -> None:
    page.wait_for_selector(".awbench-explorer[data-seq] .aw-panel .main-svg", timeout=180_000)
    first = page.evaluate(STATE)
    ref = payload["runs"][payload["ref"]]
    assert first["run"] == ref["key"]
    assert first["gapTitle"].startswith(f"Gap {number(ref['gap'][0])} nats")
    before, after = _press(page, "batch_size")  # 25 -> 100
    _check_together(before, after)
    assert after["note"] == ""
    i = payload["index"][",".join(map(str, [*payload["runs"][payload["ref"]]["k"]]))]
    assert i == payload["ref"]
    before, after = _press(page, "label_noise")  # only moved alone: snaps back to batch 25
    _check_together(before, after)
    assert "snapped to the nearest grid point" in after["note"]
    assert "batch size B 100 → 25" in after["note"]
    run = next(r for r in payload["runs"] if r["key"] == after["run"])
    assert after["gapTitle"].startswith(f"Gap {run['gapText'][0]} nats")


def _browse(url: str, payload: dict, tmp_path, allowed: tuple[str, ...], name: str) -> None:
    sync_playwright, chromium = playwright_and_chromium()
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith(allowed)
                    else (requests.append(route.request.url), route.abort())
                ),
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url, timeout=180_000)
            try:
                _drive(page, payload)
            finally:
                page.screenshot(path=str(tmp_path / f"{name}.png"))
        finally:
            browser.close()
    assert not requests, f"requests left {allowed}: {requests[:5]}"
    assert not errors, errors


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_reports_explorer_in_chromium(payload, tmp_path):
    from plotly.offline import get_plotlyjs

    from awbench.apps.report.sliders import explore_section

    path = tmp_path / "report.html"
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><script>"
        + get_plotlyjs()
        + "</script></head><body>"
        + "".join(explore_section())
        + "</body></html>",
        encoding="utf-8",
    )
    _browse(path.as_uri(), payload, tmp_path, (path.as_uri(), "data:", "blob:"), "report")


@pytest.fixture
def present_url(tmp_path):
    """``awbench present --no-browser`` on a free port; yields the URL it prints."""
    pytest.importorskip("voila")
    env = {k: v for k, v in os.environ.items() if k not in ("AWBENCH_QUIET", "AWBENCH_WIDGETS")}
    env.update(
        AWBENCH_CACHE=str(tmp_path / "cache"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        OMP_NUM_THREADS="1",
    )
    proc, url = start_present(env)
    try:
        yield url
    finally:
        stop_group(proc)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_present_modes_explorer_in_chromium(present_url, payload, tmp_path):
    import socket

    origin = present_url.split("/?")[0].rstrip("/")
    port = int(origin.rsplit(":", 1)[1])
    deadline = time.monotonic() + 120
    while True:  # listening (a GET of the page would start a kernel)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline, "awbench present did not listen"
        time.sleep(0.5)
    _browse(present_url, payload, tmp_path, (origin, "ws://127.0.0.1", "data:", "blob:"), "present")
