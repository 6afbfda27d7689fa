"""``awbench present``: the code-free Voila app (issue 15, "Present mode").

The fast tests drive :class:`~awbench.apps.present.app.PresentApp` in process: a move is the
explorer's lookup (an off-grid combination snaps with a note), the takeaway states the
verdicts, the Voila template loads nothing from a CDN. The browser test starts ``awbench
present --no-browser`` on 127.0.0.1, opens it in Debian's chromium at 1280x720 (Playwright),
asserts that the plane, the gap and the sliders fit without scrolling, one Tab per slider,
moves three sliders with the keyboard, asserts that every panel changed and the marker moved,
that no request left 127.0.0.1 and the console stayed quiet, and saves screenshots under
tmp_path (the last one also to /tmp/present_screenshot.png). It skips locally and fails under
CI (``CI=true``) without chromium or playwright, as tests/test_browser.py does. The explorer's
own browser tests (all panels and texts in one update, the three views agreeing) are in
tests/test_explorer.py.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from browser_support import CHROMIUM_ARGS, free_port, playwright_and_chromium, stop_group

from awbench.apps.cli import build_parser
from awbench.apps.present import app as present
from awbench.apps.present import server as present_server

VIEWPORT = {"width": 1280, "height": 720}
SCREENSHOT = "/tmp/present_screenshot.png"


# --- in process ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app():
    pytest.importorskip("ipywidgets")
    return present.PresentApp()


def test_every_move_is_drawn_in_the_browser_from_one_payload(app):
    """The app is the knob explorer (tests/test_explorer.py tests it, in the browser too):
    the kernel hears a move, it draws nothing."""
    app.reset()
    first = app.takeaway()
    app.set(batch_size=100, weight_decay=0.01)
    assert app.setting is not None and app.note == ""
    words = app.takeaway()
    assert words != first
    assert "weight decay β = 0.01" in words and "batch size B = 100" in words, words
    assert app.payload["header"].startswith('<span class="awbench-present-h">')


def test_an_off_grid_combination_snaps_with_a_note(app):
    app.reset()
    app.set(batch_size=100, weight_decay=0.01)
    app.set(label_noise=0.1)  # label noise was only moved alone
    assert app.setting is not None, "a combination the grid lacks is never shown"
    assert app.values["label_noise"] == 0.1 and app.values["batch_size"] == 25
    assert "snapped" in app.note and "batch size B 100 → 25" in app.note
    app.reset()
    assert app.note == ""


def test_sliders_are_words_with_the_field_as_hint(app):
    assert app.payload["labels"]["init_scale"] == "init scale s"
    assert "init_scale" in app.payload["hints"]["init_scale"]


def test_the_takeaway_states_the_verdicts_along_the_knob_moved(app):
    from awbench.apps.knobs import effects as ke
    from awbench.apps.knobs.grid import KNOBS, shipped_store
    from awbench.experiments.grids import PROFILES
    from awbench.experiments.store import load_store
    from awbench.experiments.verdicts import verdict_table, verdict_words

    runs, _ = load_store(shipped_store())  # the store's own rows, not the grid's lookups
    app.reset()
    d = app.grid.defaults
    at = np.ones(len(runs), dtype=bool)
    for k in KNOBS:
        if k not in ("batch_size", "seed"):
            at &= (runs[k] == d[k]).to_numpy()
    app.set(batch_size=400)
    words = app.takeaway()
    line = runs[at]
    direct = verdict_table({"batch_size": line}, ke.QUANTITIES, family=28)
    names = ("gap", "sharpness", "size", "curvature")
    expected = "; ".join(f"{n} {verdict_words(r)}" for n, (_, r) in zip(names, direct.iterrows()))
    assert f"<br>Along batch size B: {html.escape(expected)}." in words, words
    assert (
        f"3 seeds per point are too few for most verdicts; the report's sweeps "
        f"({PROFILES['quick'].seeds} seeds) judge them." in words
    )
    assert "mostly" not in words and "→" not in words  # no factor has an up or down verdict
    cur = line[(line["batch_size"] == 400) & (line["seed"] == d["seed"])]["real_gap"].item()
    ref = line[(line["batch_size"] == d["batch_size"]) & (line["seed"] == d["seed"])]
    change = 100 * (cur / ref["real_gap"].item() - 1)
    stated = words.split("nats (")[1].split(" % on the default")[0]
    assert abs(int(stated) - change) <= 0.5 and stated.startswith("+" if change > 0 else "-")
    assert f"the gap {'rises' if change > 0 else 'falls'} to <b>{cur:.3g}</b> nats" in words


def test_a_value_beyond_the_paper_is_flagged(app):
    app.reset()
    labels = dict(zip(app.payload["options"]["lr"], app.payload["optionLabels"]["lr"]))
    assert labels[0.2] == "0.2 ⚠" and labels[0.05] == "0.05" and labels[0.1] == "0.1"
    note = html.escape("learning rate α 0.2 is beyond the paper's range (0.005–0.1)")
    app.set(lr=0.2)
    assert note in app.takeaway()
    app.set(lr=0.05)
    assert "Beyond the paper" not in app.takeaway()
    app.reset()
    assert "Beyond the paper" not in app.takeaway()  # init scale 1: the paper's


def test_the_kernel_starts_on_the_cached_payload_without_the_grid(app):
    """What the Voila kernel runs, in a fresh process: the payload the app fixture built is
    read back from the cache, equal, and neither pandas nor torch is imported to show it."""
    code = (
        "import json, sys\n"
        "from awbench.apps.present.app import PresentApp\n"
        "app = PresentApp()\n"
        "app.explorer.build()\n"
        "print(json.dumps([sorted({'torch', 'pandas'} & set(sys.modules)), app.payload]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    heavy, payload = json.loads(done.stdout)
    assert heavy == []
    assert payload == json.loads(json.dumps(app.payload))


def test_nothing_from_a_cdn(tmp_path):
    pytest.importorskip("voila")
    path = present_server.prepare(tmp_path)
    text = (tmp_path / "share/jupyter/voila/templates/awbench-present/index.html.j2").read_text()
    assert "://cdn" not in text and "html_head_js_mermaidjs" in text
    nb = json.loads(path.read_text())
    assert "PresentApp" in nb["cells"][0]["source"]
    spec = json.loads((tmp_path / "share/jupyter/kernels/awbench-present/kernel.json").read_text())
    assert spec["argv"][0] == sys.executable


def test_cli_has_present():
    args = build_parser().parse_args(["present", "--port", "9001", "--no-browser"])
    assert args.command_name == "present" and args.port == 9001 and args.no_browser


# --- in a real browser -------------------------------------------------------------------

PLOT_DATA = """(name) => {
  const el = document.querySelector(`.awbench-present-${name}`);
  const gd = el && (el.classList.contains("js-plotly-plot") ? el : el.querySelector(".js-plotly-plot"));
  if (!gd || !gd.data) return null;
  return JSON.stringify(gd.data.map(t => [Array.from(t.x || []), Array.from(t.y || [])]));
}"""
PANELS = ("plane", "gap", "sigma_g", "sigma_w")


@pytest.fixture
def server(tmp_path):
    """``awbench present --no-browser`` on a free port; yields its URL."""
    pytest.importorskip("voila")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("AWBENCH_QUIET", "AWBENCH_WIDGETS")}
    env.update(
        AWBENCH_CACHE=str(tmp_path / "cache"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        OMP_NUM_THREADS="1",
    )
    cmd = [sys.executable, "-m", "awbench.apps.cli", "present", "--no-browser", f"--port={port}"]
    log_path = tmp_path / "present.log"
    log = open(log_path, "w")  # noqa: SIM115 - the server writes to it until teardown
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            printed = re.search(r"awbench present: (\S+)", log_path.read_text())
            try:
                if printed:
                    base = printed.group(1).split("?")[0]
                    with urllib.request.urlopen(f"{base}voila/static/voila.js", timeout=2):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("awbench present did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.5)
        url = printed.group(1)
        assert url.startswith(f"http://127.0.0.1:{port}/?token=")
        yield url
    finally:
        stop_group(proc)
        log.close()


def _plots(page) -> dict:
    return {name: page.evaluate(PLOT_DATA, name) for name in PANELS}


def _texts(page) -> dict:
    return {
        name: page.locator(f".awbench-{name}").inner_text() for name in ("takeaway", "training")
    }


def _marker(plots: dict) -> list:
    return json.loads(plots["plane"])[3]


def _move(page, knob: str, before: dict, timeout: float = 30.0) -> dict:
    """Press → on a slider's handle; wait until every panel and the marker changed."""
    readout = page.locator(f".awbench-knob-{knob} output")
    start, words = readout.inner_text().strip(), _texts(page)["takeaway"]
    handle = page.locator(f".awbench-knob-{knob} input[type=range]")
    handle.focus()
    handle.press("ArrowRight")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _plots(page)
        if (
            readout.inner_text().strip() != start
            and all(now[n] != before[n] for n in PANELS)
            and _marker(now) != _marker(before)
            and _texts(page)["takeaway"] != words
        ):
            return now
        page.wait_for_timeout(200)
    stale = [n for n in PANELS if _plots(page)[n] == before[n]]
    pytest.fail(f"moving {knob} from {start}: panels {stale} did not change")


def _within_viewport(page, selector: str) -> None:
    boxes = [
        page.locator(selector).nth(i).bounding_box() for i in range(page.locator(selector).count())
    ]
    assert boxes, f"nothing matches {selector}"
    for box in boxes:
        assert box is not None, f"{selector} is not rendered"
        right, bottom = box["x"] + box["width"], box["y"] + box["height"]
        assert box["x"] >= 0 and box["y"] >= 0, (selector, box)
        assert right <= VIEWPORT["width"] and bottom <= VIEWPORT["height"], (selector, box)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_present_in_chromium(server, tmp_path):
    sync_playwright, chromium = playwright_and_chromium()

    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("request", lambda r: requests.append(r.url))
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            try:
                _drive(page, server, tmp_path)
            except BaseException:
                page.screenshot(path=str(tmp_path / "failure.png"))
                (tmp_path / "page.html").write_text(page.content())
                raise
            finally:
                (tmp_path / "console.log").write_text("\n".join(console))
        finally:
            browser.close()
    noise = [m for m in console if m.startswith(("warning", "error"))]
    assert not noise, f"console warnings: {noise[:5]}"
    base = server.split("?")[0]
    outside = [u for u in requests if not u.startswith((base, "data:", "blob:"))]
    assert not outside, f"requests left 127.0.0.1: {outside[:5]}"
    shutil.copy(tmp_path / "present_moved.png", SCREENSHOT)


SLIDER = ".noUi-handle, input[type=range]"  # ipywidgets' slider handle, or a range input
FOCUSED_KNOB = """(slider) => {
  const el = document.activeElement;
  const knob = el && el.closest(".awbench-knob");
  const name = knob && [...knob.classList].find(c => c.startsWith("awbench-knob-"));
  return name ? [name.slice("awbench-knob-".length), el.matches(slider)] : null;
}"""
KNOB_NAMES = """() => [...document.querySelectorAll(".awbench-knob")].map(k =>
  [...k.classList].find(c => c.startsWith("awbench-knob-")).slice("awbench-knob-".length))"""


def _one_tab_per_slider(page) -> None:
    """Tab goes from one slider to the next one, and lands on what the arrow keys move (no
    editable readout in between)."""
    knobs = page.evaluate(KNOB_NAMES)
    assert len(knobs) >= 5, knobs
    page.locator(f".awbench-knob-{knobs[0]}").locator(SLIDER).first.focus()
    assert page.evaluate(FOCUSED_KNOB, SLIDER) == [knobs[0], True]
    for knob in knobs[1:]:
        page.keyboard.press("Tab")
        assert page.evaluate(FOCUSED_KNOB, SLIDER) == [knob, True], knob
    assert page.locator(".awbench-knob [contenteditable='true']").count() == 0


def _drive(page, url: str, tmp_path) -> None:
    page.goto(url, timeout=180_000)
    page.wait_for_function(
        f"() => [{', '.join(repr(n) for n in PANELS)}].every(n => ({PLOT_DATA})(n) !== null)",
        timeout=180_000,
    )
    page.wait_for_timeout(500)
    before = _plots(page)
    assert page.locator(".jp-InputArea:visible, .jp-CodeMirrorEditor:visible").count() == 0
    for selector in (".awbench-present-plane", ".awbench-present-gap", ".awbench-knob"):
        _within_viewport(page, selector)
    page.screenshot(path=str(tmp_path / "present_default.png"))
    _one_tab_per_slider(page)
    for knob in ("batch_size", "weight_decay", "init_scale"):
        before = _move(page, knob, before)
        page.screenshot(path=str(tmp_path / f"present_{knob}.png"))
    assert "snapped" in page.locator(".awbench-note").inner_text()  # init scale 2 is off-grid here
    for selector in (".awbench-present-plane", ".awbench-present-gap", ".awbench-knob"):
        _within_viewport(page, selector)
    page.screenshot(path=str(tmp_path / "present_moved.png"))
