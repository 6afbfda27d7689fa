"""Progress bars: shown in interactive use, quiet in headless runs (papermill, CI, logs); and
the one place where awbench's log lines get a handler (the command line's)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

# Library modules log to children of this logger and never configure it; the command line
# (and `python -m` entry points) call cli_logging() so their lines reach the terminal.
LOGGER_NAME = "awbench"


def cli_logging(level: int = logging.INFO) -> logging.Handler:
    """Send awbench's log lines to the current stdout as plain lines, for a command-line run.

    Called once per command; a handler installed by an earlier call is replaced, so a second
    command in one process (tests, a notebook calling ``main``) writes to *its* stdout."""
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if getattr(h, "awbench_cli", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.awbench_cli = True
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


def interactive() -> bool:
    """True in a terminal or a live Jupyter kernel, False when AWBENCH_QUIET is set."""
    if os.environ.get("AWBENCH_QUIET", "").strip() not in ("", "0"):
        return False
    try:
        shell = get_ipython().__class__.__name__  # type: ignore[name-defined]
        if shell == "ZMQInteractiveShell":
            return True
    except NameError:
        pass
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(
    iterable: Iterable, total: int | None = None, desc: str = "", enabled: bool | None = None
):
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` (default: :func:`interactive`)."""
    if enabled is None:
        enabled = interactive()
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)
