"""What a bug report needs: versions, threads, device and cache folder (``awbench info``)."""

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
