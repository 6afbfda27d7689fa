"""Knob explorer latency in a real browser (issue 22): keypress -> every panel and text agree.

Drives headless Chromium (Playwright, the system chromium) over the explorer of
:mod:`awbench.apps.knobs.explorer` in two views:

- present mode: ``awbench present --no-browser`` on a free port in a subprocess (the URL,
  token included, read from what it prints);
- the report's explorer: the report's own section (``report_sliders.explore_section``) in a
  page with plotly.js, opened as a file.

A move is a key press (ArrowRight / ArrowLeft) on a focused slider. The latency is measured
in the page, from the keydown event's time stamp to the first animation frame after the
explorer's synchronous update (every panel's and text's ``data-run`` set to the run on
screen, which the bench checks after each move, together with each panel's drawn data).
The wall time seen by the driver (press -> consistent state read back) is printed too.
Median of 20 moves per view, with the machine load (``os.getloadavg``) next to each figure.
Target: <= 300 ms median on an idle 2-core machine.

    .venv/bin/python bench/explorer_latency.py [--moves 20] [--view present|report|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser_support import (
    CHROMIUM_ARGS,
    find_chromium,
    start_present,
    stop_group,
)

CHROMIUM = find_chromium() or "/usr/bin/chromium"
# The knobs moved in turn, each one step up (down at its last value): batch size, learning
# rate, weight decay and dropout are crossed (lookups), the init scale snaps where they are off
# the default.
CYCLE = ["batch_size", "weight_decay", "init_scale", "lr", "batch_size", "dropout", "seed"]

INSTRUMENT = """() => {
  const root = document.querySelector('.awbench-explorer');
  window.__aw = {down: null, frames: []};
  document.addEventListener('keydown', e => { window.__aw.down = e.timeStamp; }, true);
  new MutationObserver(() => {
    const t = performance.now();
    requestAnimationFrame(() => window.__aw.frames.push(
      {seq: root.dataset.seq, done: t, frame: performance.now(), down: window.__aw.down}));
  }).observe(root, {attributes: true, attributeFilter: ['data-seq']});
}"""

STATE = """() => {
  const root = document.querySelector('.awbench-explorer');
  const runs = Array.from(root.querySelectorAll('[data-run]')).map(e => e.dataset.run);
  const drawn = Array.from(root.querySelectorAll('.aw-panel')).every(
    gd => gd.data && gd._fullLayout && gd.dataset.run === root.dataset.run);
  return {seq: root.dataset.seq, run: root.dataset.run,
          agree: runs.length >= 7 && runs.every(r => r === root.dataset.run) && drawn,
          note: root.querySelector('.aw-note').textContent};
}"""


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def drive(page, moves: int, label: str) -> None:
    """Press keys on focused sliders; print the medians with the load."""
    page.evaluate(INSTRUMENT)
    in_page, wall, mixed = [], [], 0
    for n in range(moves):
        knob = CYCLE[n % len(CYCLE)]
        slider = page.locator(f".awbench-knob-{knob} input[type=range]")
        slider.focus()
        at_end = slider.evaluate("e => e.value === e.max")
        key = "ArrowLeft" if at_end else "ArrowRight"
        before = page.evaluate(STATE)
        t0 = time.perf_counter()
        page.keyboard.press(key)
        first = page.evaluate(STATE)  # sampled right after the key: never a mix
        if not first["agree"]:
            mixed += 1
        while True:
            now = page.evaluate(STATE)
            if now["seq"] != before["seq"] and now["agree"]:
                break
            if time.perf_counter() - t0 > 30:
                raise RuntimeError(f"{label}: {knob} {key} did not settle: {now}")
        wall.append(time.perf_counter() - t0)
        page.wait_for_function(
            "seq => window.__aw.frames.some(f => f.seq === seq)", arg=now["seq"], timeout=10_000
        )
        f = page.evaluate("seq => window.__aw.frames.find(f => f.seq === seq)", now["seq"])
        in_page.append((f["frame"] - f["down"]) / 1000)
    med = statistics.median(in_page)
    print(
        f"{label}: keydown -> painted, median of {moves}: {1000 * med:.0f} ms "
        f"(max {1000 * max(in_page):.0f} ms); driver's press -> consistent read: "
        f"{1000 * statistics.median(wall):.0f} ms; mixed states sampled right after a key: "
        f"{mixed}  [{load()}]",
        flush=True,
    )


def present(pw, moves: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AWBENCH_QUIET", "AWBENCH_WIDGETS")}
    env.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    proc, url = start_present(env)
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        deadline = time.monotonic() + 120
        while True:
            try:
                page.goto(url, timeout=60_000)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        page.wait_for_selector(".awbench-explorer[data-seq] .aw-panel .main-svg", timeout=180_000)
        print(f"present: start to usable {time.perf_counter() - t0:.1f} s  [{load()}]", flush=True)
        drive(page, moves, "present")
        page.screenshot(path="/tmp/explorer_present.png")
        browser.close()
    finally:
        stop_group(proc)


def report(pw, moves: int) -> None:
    from plotly.offline import get_plotlyjs

    from awbench.apps.report.sliders import explore_section

    page_html = (
        "<!doctype html><html><head><meta charset='utf-8'><script>"
        + get_plotlyjs()
        + "</script></head><body>"
        + "".join(explore_section())
        + "</body></html>"
    )
    path = Path(tempfile.mkdtemp(prefix="awbench-explorer-")) / "report.html"
    path.write_text(page_html, encoding="utf-8")
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(path.as_uri())
    page.wait_for_selector(".awbench-explorer[data-seq] .aw-panel .main-svg")
    drive(page, moves, "report")
    page.screenshot(path="/tmp/explorer_report.png")
    browser.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--moves", type=int, default=20)
    p.add_argument("--view", choices=("present", "report", "both"), default="both")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        if args.view in ("report", "both"):
            report(pw, args.moves)
        if args.view in ("present", "both"):
            present(pw, args.moves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
