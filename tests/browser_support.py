"""What the real-browser tests share: finding Debian's chromium, skipping or failing without
it, a free local port, and stopping a server with the processes it started."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]


def find_chromium() -> str | None:
    """The browser to drive: $AWBENCH_CHROMIUM, $BROWSER_PATH, then the usual places."""
    for candidate in (
        os.environ.get("AWBENCH_CHROMIUM"),
        os.environ.get("BROWSER_PATH"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def missing(what: str) -> None:
    """Skip locally; under CI (CI=true) the test must run, so a missing piece fails it."""
    message = f"browser test needs {what}"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message + " (CI=true: this test must run in CI; .ci/run installs chromium)")
    pytest.skip(message)


def playwright_and_chromium():
    """(sync_playwright, the chromium path) for a test that drives the browser; skips locally
    and fails under CI when either is missing (see :func:`missing`)."""
    chromium = find_chromium()
    if chromium is None:
        missing(
            "chromium at /usr/bin/chromium (apt-get install -y --no-install-recommends chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (pip install -e '.[browser]')")
    return sync_playwright, chromium


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen) -> None:
    """End a server started in its own process group, and what it started (kernels)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


PRESENT_URL = re.compile(r"awbench present: (http://127\.0\.0\.1:\d+/\S*)")


def start_present(env: dict[str, str], port: int | None = None) -> tuple[subprocess.Popen, str]:
    """``awbench present --no-browser`` in a process group of its own (end it with
    :func:`stop_group`) and the URL it printed; RuntimeError, with what it printed, when it
    exits first. Its later output is read by a thread, so a full pipe never stalls it."""
    cmd = [sys.executable, "-m", "awbench.apps.cli", "present", "--no-browser"]
    cmd.append(f"--port={port or free_port()}")
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    printed = []
    for line in proc.stdout:
        printed.append(line)
        found = PRESENT_URL.search(line)
        if found:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, found.group(1)
    stop_group(proc)
    raise RuntimeError("awbench present printed no URL:\n" + "".join(printed[-20:]))
