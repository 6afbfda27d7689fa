"""Where the knob grids live: the store shipped as package data, ``$AWBENCH_KNOBS_STORE``
instead of it, and the user's store of settings trained on request.

Apart from :mod:`awbench.apps.knobs.grid` because present mode's kernel needs the paths (to
find its cached explorer payload) without the grid's imports (pandas, and torch through the
Config)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
from importlib import resources
from pathlib import Path

from awbench.cache import cache_dir

# as_file may extract to a temporary folder (a zipped install); it lives until exit.
_RESOURCES = contextlib.ExitStack()
atexit.register(_RESOURCES.close)


@functools.cache
def shipped_store() -> Path:
    """The knob grid shipped as package data (``awbench/apps/knobs/store``)."""
    grid = resources.files("awbench.apps.knobs") / "store"
    return _RESOURCES.enter_context(resources.as_file(grid))


def default_store() -> Path:
    """``$AWBENCH_KNOBS_STORE`` if set, else the store shipped in the package."""
    explicit = os.environ.get("AWBENCH_KNOBS_STORE")
    return Path(explicit).expanduser() if explicit else shipped_store()


def user_store() -> Path:
    """Where "train this setting" keeps its runs: ``<cache folder>/knobs_store``."""
    return cache_dir() / "knobs_store"
