"""JupyterLab saves the repository's notebooks without outputs: running one leaves git clean.

The tracked notebooks (``notebooks/NN_*.ipynb``, paired with ``.py`` files by jupytext) hold
no outputs; the executed ones live in ``outputs/`` (``make reproduce``). Saved from
JupyterLab, a run notebook would carry its outputs, execution counts, language info and
widget outputs into the tracked file, and on reopening, each widget output whose model is
gone (the kernel is) would read "Error displaying widget: model not found" (notebook 08).

:func:`strip_tracked_notebook` is a Jupyter server ``pre_save_hook`` that saves those
notebooks as tracked: code, markdown, tags and kernelspec, nothing a run adds. Other
notebooks are saved untouched. ``make setup`` installs it for every Jupyter server of the
venv with ``python -m awbench.apps.jupyter_hooks``: ``FileContentsManager.pre_save_hook`` in
``.venv/etc/jupyter/jupyter_server_config.json``, a file jupyter_server loads at start (its
``jupyter_server_config.d/`` folder is read only for enabling extensions).

``$AWBENCH_TRACKED_NOTEBOOKS`` (folders, separated by ``os.pathsep``) names other folders
whose ``NN_*.ipynb`` count as tracked, e.g. a copy of ``notebooks/``."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

HOOK = "awbench.apps.jupyter_hooks.strip_tracked_notebook"
TRACKED_ENV = "AWBENCH_TRACKED_NOTEBOOKS"
CONFIG = "jupyter_server_config.json"
NOTEBOOK_NAME = re.compile(r"^\d\d_.+\.ipynb$")
#: notebook metadata a run adds (and JupyterLab saves): not part of a tracked notebook
RUN_METADATA = ("widgets", "language_info", "papermill", "toc", "vscode")
RUN_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled", "papermill")


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (next to the package)."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def tracked_dirs() -> list[Path]:
    """The folders of tracked notebooks: the repository's ``notebooks/`` and those in
    ``$AWBENCH_TRACKED_NOTEBOOKS``."""
    extra = [Path(p) for p in os.environ.get(TRACKED_ENV, "").split(os.pathsep) if p]
    return [p.resolve() for p in (notebooks_dir(), *extra)]


def is_tracked_notebook(path: str | Path) -> bool:
    path = Path(path).resolve()
    return bool(NOTEBOOK_NAME.match(path.name)) and path.parent in tracked_dirs()


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
    """Register the hook for every Jupyter server started from ``prefix`` (a venv): set it in
    ``prefix/etc/jupyter/jupyter_server_config.json``, keeping the rest of that file."""
    folder = Path(prefix) / "etc" / "jupyter"
    target = folder / CONFIG
    config = json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
    config.setdefault("FileContentsManager", {})["pre_save_hook"] = HOOK
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    # where earlier versions put it, which jupyter_server reads only for extensions
    (folder / "jupyter_server_config.d" / "awbench.json").unlink(missing_ok=True)
    return target


if __name__ == "__main__":  # pragma: no cover
    print(f"awbench: JupyterLab saves notebooks/NN_*.ipynb without outputs ({install()})")
