"""JupyterLab saves the repository's notebooks without outputs: running one leaves git clean.

The tracked notebooks (``notebooks/NN_*.ipynb``, paired with ``.py`` files by jupytext) hold
no outputs; the executed ones live in ``outputs/`` (``make reproduce``). Saved from
JupyterLab, a run notebook would carry its outputs, execution counts, language info and
widget outputs into the tracked file, and on reopening, each widget output whose model is
gone (the kernel is) would read "Error displaying widget: model not found" (notebook 08).

:func:`strip_tracked_notebook` is a Jupyter server ``pre_save_hook`` that saves those
notebooks as tracked: code, markdown, tags and kernelspec, nothing a run adds. Other
notebooks are saved untouched. ``make setup`` installs it for every Jupyter server of the
venv with ``python -m awbench.apps.jupyter_hooks`` (a file in
``.venv/etc/jupyter/jupyter_server_config.d/``)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HOOK = "awbench.apps.jupyter_hooks.strip_tracked_notebook"
NOTEBOOK_NAME = re.compile(r"^\d\d_.+\.ipynb$")
#: notebook metadata a run adds (and JupyterLab saves): not part of a tracked notebook
RUN_METADATA = ("widgets", "language_info", "papermill", "toc", "vscode")
RUN_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled", "papermill")


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (next to the package)."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def is_tracked_notebook(path: str | Path) -> bool:
    path = Path(path).resolve()
    return bool(NOTEBOOK_NAME.match(path.name)) and path.parent == notebooks_dir().resolve()


def strip_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """``nb`` (a notebook as JSON) without outputs, execution counts and run metadata, in
    place."""
    for cell in nb.get("cells", []):
        meta = cell.get("metadata") or {}
        for key in RUN_CELL_METADATA:
            meta.pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    for key in RUN_METADATA:
        (nb.get("metadata") or {}).pop(key, None)
    return nb


def strip_tracked_notebook(model: dict, path: str, contents_manager: Any, **kwargs: Any) -> None:
    """Jupyter server ``pre_save_hook``: strip a tracked notebook before it is written."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    try:
        os_path = contents_manager._get_os_path(path)
    except Exception:  # noqa: BLE001 - a contents manager without files: leave it alone
        return
    if is_tracked_notebook(os_path):
        strip_notebook(model["content"])


def install(prefix: str | Path = sys.prefix) -> Path:
    """Register the hook for every Jupyter server started from ``prefix`` (a venv)."""
    target = Path(prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "awbench.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    config = {"FileContentsManager": {"pre_save_hook": HOOK}}
    target.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return target


if __name__ == "__main__":  # pragma: no cover
    print(f"awbench: JupyterLab saves notebooks/NN_*.ipynb without outputs ({install()})")
