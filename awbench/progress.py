"""Progress bars: shown in interactive use, quiet in headless runs (papermill, CI, logs)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable


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
