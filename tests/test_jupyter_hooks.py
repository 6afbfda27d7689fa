"""JupyterLab keeps git clean, checked against a running Jupyter server (issue 22, item 4).

A git repository in tmp_path holds a copy of a tracked notebook and its jupytext pair; the
hook is installed as ``make setup`` installs it (:func:`install` into a prefix on
``JUPYTER_CONFIG_PATH``); ``jupyter server`` runs on a free port with a token; the test saves
the notebook with outputs, execution counts and widget state through the contents API (PUT
/api/contents/...), as JupyterLab does after Run All, and then finds the file without them
and ``git status`` clean (the ``.py`` pair rewritten identically: jupytext is pinned, and
the copy's header names the pinned version). Before it, the hook's parts alone: tracked
notebooks carry no outputs or widget state, a tracked notebook is saved stripped and any
other one untouched, and the hook is written where jupyter_server reads it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser_support import free_port, stop_group

from awbench.apps.jupyter_hooks import (
    CONFIG,
    HOOK,
    TRACKED_ENV,
    install,
    is_tracked_notebook,
    notebooks_dir,
    strip_notebook,
    strip_tracked_notebook,
)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "08_knobs"


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
    }
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_install_writes_the_config_file_jupyter_server_loads(tmp_path):
    folder = tmp_path / "etc" / "jupyter"
    (folder / "jupyter_server_config.d").mkdir(parents=True)
    (folder / "jupyter_server_config.d" / "awbench.json").write_text("{}")  # the old place
    (folder / CONFIG).write_text(json.dumps({"ServerApp": {"port": 9999}}))
    target = install(tmp_path)
    assert target == folder / CONFIG
    config = json.loads(target.read_text())
    assert config == {
        "ServerApp": {"port": 9999},
        "FileContentsManager": {"pre_save_hook": HOOK},
    }
    assert not (folder / "jupyter_server_config.d" / "awbench.json").exists()
    assert install(tmp_path) == target and json.loads(target.read_text()) == config


def _jupytext_version() -> str:
    pytest.importorskip("jupytext")
    import jupytext

    return jupytext.__version__


def test_jupytext_is_pinned_to_the_installed_version():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = [d for d in dev["dev"] if re.match(r"jupytext\b", d)]
    assert pins == [f"jupytext=={_jupytext_version()}"]


HEADER = re.compile(r"(?m)^#\s+jupytext_version: (\S+)$")


@pytest.mark.parametrize(
    "path", sorted(notebooks_dir().glob("[0-9][0-9]_*.py")), ids=lambda p: p.stem
)
def test_the_pairs_headers_name_the_pinned_jupytext(path):
    assert HEADER.findall(path.read_text(encoding="utf-8")) == [_jupytext_version()]


@pytest.fixture
def jupyter_server(tmp_path):
    """``jupyter server`` over a git repository holding a copy of notebooks/NN_x.*; yields
    (base URL, token, repository)."""
    pytest.importorskip("jupyter_server")
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(notebooks_dir() / f"{NOTEBOOK}.ipynb", repo / "notebooks")
    pair = (notebooks_dir() / f"{NOTEBOOK}.py").read_text(encoding="utf-8")
    # as the pinned jupytext writes it (see test_the_pairs_headers_name_the_pinned_jupytext)
    pair = HEADER.sub(f"#       jupytext_version: {_jupytext_version()}", pair, count=1)
    (repo / "notebooks" / f"{NOTEBOOK}.py").write_text(pair, encoding="utf-8")
    shutil.copy(ROOT / ".gitignore", repo)  # .ipynb_checkpoints/, as in the repository
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "tracked")
    prefix = tmp_path / "prefix"
    install(prefix)
    token, port = "t" + os.urandom(12).hex(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "user-config"),
        JUPYTER_CONFIG_PATH=str(prefix / "etc" / "jupyter"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        **{TRACKED_ENV: str(repo / "notebooks")},
    )
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}"]
    cmd += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={repo}"]
    cmd += ["--ServerApp.port_retries=0", "--allow-root"]
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    _api(base, token, "GET", "/api/status")
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail("jupyter server did not start:\n" + log_path.read_text())
                    time.sleep(0.3)
            yield base, token, repo
        finally:
            stop_group(proc)


def _api(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"token {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"{}")


def _run_all(nb: dict) -> dict:
    """What Run All leaves in a notebook: outputs, counts, widget state, language info."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            cell["execution_count"] = i
            cell["outputs"] = [
                {"output_type": "stream", "name": "stdout", "text": f"cell {i}\n"},
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {
                        "text/plain": "FigureWidget",
                        "application/vnd.jupyter.widget-view+json": {
                            "model_id": f"m{i}",
                            "version_major": 2,
                            "version_minor": 0,
                        },
                    },
                },
            ]
            cell["metadata"]["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    state = {"state": {}, "version_major": 2, "version_minor": 0}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": state}
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
    return nb


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_save_from_jupyterlab_leaves_git_clean(jupyter_server):
    base, token, repo = jupyter_server
    path = f"/api/contents/notebooks/{NOTEBOOK}.ipynb"
    with pytest.raises(urllib.error.HTTPError):  # the token is needed
        urllib.request.urlopen(base + path, timeout=30)
    model = _api(base, token, "GET", path)
    nb = _run_all(model["content"])
    assert any(c.get("outputs") for c in nb["cells"])
    _api(base, token, "PUT", path, {"type": "notebook", "format": "json", "content": nb})

    saved = json.loads((repo / "notebooks" / f"{NOTEBOOK}.ipynb").read_text())
    assert "widgets" not in saved["metadata"] and "language_info" not in saved["metadata"]
    for cell in saved["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    status = _git(repo, "status", "--porcelain")
    assert status == "", status + _git(repo, "diff")


def test_make_lab_passes_flags():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\nlab:") :].split("\n\n")[0]
    assert "jupyter lab notebooks $(LAB_ARGS)" in recipe  # make lab LAB_ARGS="--allow-root"
    assert "awbench.apps.jupyter_hooks" in makefile


def _tracked_notebooks() -> list[Path]:
    paths = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    assert len(paths) >= 10
    return paths


@pytest.mark.parametrize("path", _tracked_notebooks(), ids=lambda p: p.stem)
def test_tracked_notebooks_have_no_outputs_or_widget_state(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert "widgets" not in nb["metadata"]  # saved widget state: "model not found" on reopen
    assert "language_info" not in nb["metadata"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


class _Files:
    """The part of a Jupyter contents manager the hook uses."""

    def __init__(self, root: Path):
        self.root = root

    def _get_os_path(self, path: str) -> str:
        return str(self.root / path)


def _run_notebook_model() -> dict:
    nb = json.loads(_tracked_notebooks()[0].read_text(encoding="utf-8"))
    tracked = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            view = {"model_id": "4f2a", "version_major": 2, "version_minor": 0}
            cell["outputs"] = [
                {
                    "output_type": "display_data",
                    "metadata": {},
                    "data": {"application/vnd.jupyter.widget-view+json": view},
                }
            ]
            cell["execution_count"] = 7
            cell["metadata"]["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    widget_state = {"state": {"4f2a": {}}, "version_major": 2, "version_minor": 0}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": widget_state}
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.2"}
    return {"type": "notebook", "content": nb, "tracked": tracked}


def test_jupyterlab_saves_a_tracked_notebook_as_tracked():
    model = _run_notebook_model()
    tracked = model.pop("tracked")
    name = _tracked_notebooks()[0].name
    strip_tracked_notebook(model, f"notebooks/{name}", _Files(ROOT))
    assert model["content"] == tracked


def test_other_notebooks_are_saved_untouched(tmp_path):
    model = _run_notebook_model()
    model.pop("tracked")
    before = json.loads(json.dumps(model["content"]))
    strip_tracked_notebook(model, "08_knobs.ipynb", _Files(tmp_path))
    assert model["content"] == before
    assert not is_tracked_notebook(tmp_path / "08_knobs.ipynb")
    assert is_tracked_notebook(notebooks_dir() / "08_knobs.ipynb")
    assert strip_notebook({"cells": [], "metadata": {"widgets": {}}}) == {
        "cells": [],
        "metadata": {},
    }


def test_hook_is_installed_as_jupyter_server_config(tmp_path):
    # a file jupyter_server loads (jupyter_server_config.d/ is read only for extensions);
    # tests/test_jupyter_hooks.py saves through a running server
    target = install(tmp_path)
    config = json.loads(target.read_text())
    assert config == {"FileContentsManager": {"pre_save_hook": HOOK}}
    assert target.relative_to(tmp_path).parts == ("etc", "jupyter", "jupyter_server_config.json")
    module, _, name = HOOK.rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is strip_tracked_notebook
    assert "awbench.apps.jupyter_hooks" in (ROOT / "Makefile").read_text()
