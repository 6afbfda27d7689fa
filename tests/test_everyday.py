"""Everyday use (issue 15, item 5): help without arguments, no heavy imports for --help and
--version, --set on a preset's swept knob refused, install extras that agree, tracked
notebooks without outputs or widget state, and JupyterLab saving them that way."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from awbench.apps import cli
from awbench.apps.jupyter_hooks import (
    HOOK,
    install,
    is_tracked_notebook,
    notebooks_dir,
    strip_notebook,
    strip_tracked_notebook,
)
from awbench.config import ConfigError
from awbench.experiments.planning import plan_sweep

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "pandas", "plotly", "scipy", "pyarrow", "papermill")


# --- the command line --------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["notebooks"]])
def test_no_command_prints_help(argv, capsys):
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: awbench") and "COMMAND" in out
    if not argv:
        for name in ("sweep", "reproduce", "figures"):
            assert name in out


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(flag):
    code = (
        "import sys\n"
        "from awbench.apps import cli\n"
        "try:\n"
        f"    cli.main([{flag!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_lazy_package_names_resolve():
    import awbench

    for name in awbench.__all__:
        assert getattr(awbench, name) is not None, name
    assert "train" in dir(awbench)
    with pytest.raises(AttributeError):
        awbench.no_such_name  # noqa: B018


def test_set_on_a_presets_swept_knob_is_refused():
    with pytest.raises(ConfigError, match=r"--set batch_size=32: preset 'batch_size' sets"):
        plan_sweep("batch_size", seeds=1, base="smoke", overrides={"batch_size": 32})
    with pytest.raises(ConfigError, match=r"--set seed=3: a sweep's seeds come from --seeds"):
        plan_sweep("batch_size", seeds=1, base="smoke", overrides={"seed": 3})
    # another field is applied to every run
    sweep = plan_sweep("batch_size", seeds=1, base="smoke", overrides={"lr": 0.05})
    assert {c.lr for c in sweep.configs} == {0.05} and len(sweep.varying) == 1


def test_set_on_a_grid_field_is_refused(capsys, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [0.05, 0.1]\n")
    argv = ["sweep", "--grid", str(grid), "--store", str(tmp_path / "s"), "--base", "smoke"]
    assert cli.main([*argv, "--set", "lr=0.2", "--dry-run"]) == 2
    assert "lr itself (0.05, 0.1)" in capsys.readouterr().err
    assert cli.main([*argv, "--set", "max_epochs=3", "--dry-run"]) == 0


# --- install extras ----------------------------------------------------------------------


def _extras(text: str, pattern: str) -> list[set[str]]:
    return [set(m.split(",")) for m in re.findall(pattern, text)]


def test_install_extras_agree():
    defined = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    makefile = (ROOT / "Makefile").read_text()
    (setup,) = _extras(makefile, r"(?m)^EXTRAS\s*:?=\s*([\w,]+)\s*$")
    assert "$(EXTRAS)" in makefile
    assert {"dev", "dask", "browser", "export"} <= setup <= defined
    (conda,) = _extras((ROOT / "environment.yml").read_text(), r"-e \.\[([\w,]+)\]")
    assert conda == setup
    readme = _extras((ROOT / "README.md").read_text(), r"pip install -e '\.\[([\w,]+)\]'")
    assert readme and all(r == setup for r in readme)
    # targets that install more name extras that exist
    for extra in _extras(makefile, r"pip install[^\n]*'\.\[([\w,]+)\]'"):
        assert extra <= defined


# --- notebooks ---------------------------------------------------------------------------


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
