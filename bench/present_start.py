"""Present mode, start to usable (issue 22): from ``awbench present --no-browser`` to the
page showing every panel and slider in headless Chromium (Playwright), as a user would see
it; plus the kernels the server keeps and their memory.

    .venv/bin/python bench/present_start.py [--runs 3]

The load average is printed next to each figure: on 2 shared cores it moves the result by
several seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import (
    CHROMIUM_ARGS,
    find_chromium,
    free_port,
    stop_group,
)

RENDERED = """() => ["plane", "gap", "sigma_g", "sigma_w"].every(n => {
  const el = document.querySelector(`.awbench-present-${n}`);
  const gd = el && (el.classList.contains("js-plotly-plot") ? el : el.querySelector(".js-plotly-plot"));
  return gd && gd.data;
}) && document.querySelectorAll(".awbench-knob .noUi-handle, .awbench-knob input[type=range]").length > 0"""
URL = re.compile(r"awbench present: (http://127\.0\.0\.1:\d+/\S*)")


def _url(log: Path, proc: subprocess.Popen, deadline: float) -> str:
    while time.monotonic() < deadline:
        found = URL.search(log.read_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise RuntimeError("awbench present exited:\n" + log.read_text()[-2000:])
        time.sleep(0.05)
    raise TimeoutError("no URL printed")


def kernels(pid: int) -> list:
    """The kernel processes under ``pid`` (ipykernel), as psutil processes."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "ipykernel" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def one_run(page_factory, tmp: Path) -> dict:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "AWBENCH_QUIET"}
    env["OMP_NUM_THREADS"] = "1"
    log = tmp / f"present-{port}.log"
    load = os.getloadavg()[0]
    with open(log, "w") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "awbench.apps.cli", "present", "--no-browser", f"--port={port}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = _url(log, proc, t0 + 120)
            page = page_factory()
            while True:
                try:
                    page.goto(url, timeout=120_000)
                    break
                except Exception:
                    if time.monotonic() > t0 + 120:
                        raise
                    time.sleep(0.1)
            page.wait_for_function(RENDERED, timeout=120_000, polling=50)
            usable = time.monotonic() - t0
            ks = kernels(proc.pid)
            rss = sum(k.memory_info().rss for k in ks) / 2**20
            page.close()
        finally:
            stop_group(proc)
    return {"seconds": usable, "load": load, "kernels": len(ks), "kernel_mb": rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        print("needs chromium (apt-get install chromium)")
        return 1
    import tempfile

    from playwright.sync_api import sync_playwright

    results = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for i in range(args.runs):
                r = one_run(
                    lambda: browser.new_page(viewport={"width": 1280, "height": 720}), Path(tmp)
                )
                results.append(r)
                print(
                    f"run {i + 1}: usable after {r['seconds']:.1f} s (load {r['load']:.1f}); "
                    f"{r['kernels']} kernel(s), {r['kernel_mb']:.0f} MB",
                    flush=True,
                )
        finally:
            browser.close()
    times = [r["seconds"] for r in results]
    print(
        f"start to usable: median {statistics.median(times):.1f} s over {len(times)} runs "
        f"(min {min(times):.1f}, max {max(times):.1f}; load {results[0]['load']:.1f}"
        f"-{results[-1]['load']:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
