"""Where awbench keeps generated data and cached results."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$AWBENCH_CACHE`` if set, else ``$XDG_CACHE_HOME/awbench`` (``~/.cache/awbench``)."""
    explicit = os.environ.get("AWBENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "awbench"
