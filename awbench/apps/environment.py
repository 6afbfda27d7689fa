"""What a bug report needs: versions, threads, device and cache folder (``awbench info``); and
why Python started in some folder would import the wrong ``awbench``."""

from __future__ import annotations

import os
import platform
import sys


def environment_info() -> dict[str, str]:
    """Versions, threads, device and cache folder (what a bug report needs)."""
    from importlib import metadata

    from awbench.cache import cache_dir

    info = {
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
    }
    for dist in (
        "awbench",
        "torch",
        "numpy",
        "scipy",
        "pandas",
        "pyarrow",
        "scikit-learn",
        "mnist1d",
        "plotly",
        "ipywidgets",
        "papermill",
        "tqdm",
        "dask",
        "distributed",
    ):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = "not installed" + (
                " (pip install 'awbench[dask]')" if dist in ("dask", "distributed") else ""
            )
    import torch

    info["torch threads"] = (
        f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op"
    )
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count() or 1
    info["cpu cores"] = str(cores)
    if torch.cuda.is_available():
        info["device"] = (
            f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible)"
        )
    else:
        info["device"] = "cpu (no CUDA device)"
    import awbench

    info["awbench package"] = os.path.dirname(awbench.__file__)
    info["cache"] = str(cache_dir())
    info["AWBENCH_QUIET"] = os.environ.get("AWBENCH_QUIET", "")
    return info


def shadowing_hint(cwd: str | os.PathLike | None = None) -> str:
    """Why ``python``/Jupyter started in ``cwd`` would import the wrong ``awbench`` ("" if
    they would not).

    A folder ``cwd/awbench`` without ``__init__.py`` (typically the checkout, seen from the
    folder above it) is imported as an empty namespace package: Python's path finder, which
    tries the current folder first, claims the name before the editable install's finder is
    asked. ``import awbench`` then "works" with ``awbench.__file__ is None`` and everything
    after fails ("cannot import name ... (unknown location)"). Nothing inside the package can
    say so (it is never imported); the ``awbench`` script can, as it does not put the current
    folder on ``sys.path``.
    """
    from pathlib import Path

    import awbench

    here = Path(cwd if cwd is not None else os.getcwd()) / "awbench"
    if not here.is_dir() or (here / "__init__.py").exists():
        return ""
    package = Path(awbench.__file__).parent if awbench.__file__ else None
    if package is not None and any(
        Path(entry).resolve() == package.parent.resolve() for entry in sys.path if entry
    ):
        return ""  # a path entry for the checkout (`make setup`) beats the namespace folder
    return (
        f"{here} is a folder without __init__.py: Python or Jupyter started in "
        f"{here.parent} imports it as an empty namespace package instead of awbench "
        f"({package or 'not found'}), and `import awbench` fails with '(unknown location)'. "
        "Start them from another folder, rename that folder, or run `make setup` in the "
        "checkout (it puts the checkout on sys.path, which wins over the namespace folder)."
    )
