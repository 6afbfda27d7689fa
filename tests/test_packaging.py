"""The install paths agree: pyproject (source of truth), environment.yml, Makefile, CI; and a
wheel carries the knob grid (built, installed into a bare folder, opened from outside the
checkout)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from awbench.experiments.planning import plan_sweep

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_RUNTIME = {
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "plotly",
    "ipywidgets",
    "anywidget",
    "jupyterlab",
    "papermill",
    "tqdm",
    "scikit-learn",
    "mnist1d",
}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].strip().lower()


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_runtime_dependencies_and_extras():
    project = pyproject()["project"]
    names = {_name(r) for r in project["dependencies"]}
    assert REQUIRED_RUNTIME <= names, REQUIRED_RUNTIME - names
    for req in project["dependencies"]:
        assert "<" not in req, f"needless upper cap: {req}"
    extras = project["optional-dependencies"]
    assert {"dev", "dask", "browser", "export"} <= set(extras)
    dev = {_name(r) for r in extras["dev"]}
    assert {"pytest", "jupytext", "nbstripout", "ruff"} <= dev
    assert project["scripts"]["awbench"] == "awbench.apps.cli:main"
    assert project["requires-python"] == ">=3.10"


def test_environment_yml_installs_the_same_thing_through_pip():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_block = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    # the Makefile's extras (tests/test_cli_startup.py checks that they agree)
    assert any(p.startswith("-e .[") and "dev" in p[5:-1].split(",") for p in pip_block)
    torch_pins = [p for p in pip_block if _name(p) == "torch"]
    makefile = (ROOT / "Makefile").read_text()
    make_pin = re.search(r"pip install[^\n]*?(torch==[\d.]+)", makefile).group(1)
    assert torch_pins == [make_pin], "environment.yml and Makefile must pin the same torch"
    py = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    version = tuple(int(x) for x in py.split("=")[-1].split("."))
    assert version >= (3, 10)
    # Nothing installed by conda that pyproject does not know about (pip is the install path).
    conda_only = [d for d in deps if isinstance(d, str) and _name(d) not in ("python", "pip")]
    assert conda_only == []


def test_makefile_targets_and_ci_entry_point():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("setup", "test", "reproduce", "lab", "bench"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    # torch goes in before the project so pip never resolves an unpinned (CUDA) torch.
    assert makefile.index("torch==") < makefile.index("-e '.[")
    assert "ipykernel install --sys-prefix --name python3" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme


# Runs in the installed copy; the editable install must not answer instead of it.
SNIPPET = """
import sys
from pathlib import Path

import awbench
from awbench.apps.knobs import grid as knob_grid
from awbench.apps.knobs import widgets  # the panel on top imports in the wheel too
from awbench.apps.knobs.slices import slice_keys
from awbench.experiments.planning import plan_sweep

target = Path(sys.argv[1]).resolve()
assert Path(awbench.__file__).resolve().is_relative_to(target), awbench.__file__
store = knob_grid.default_store()
assert store.resolve().is_relative_to(target), store
grid = knob_grid.KnobGrid()
runs = grid.runs
planned = len(plan_sweep("knobs", base="paper"))
assert len(runs) == planned, (len(runs), planned)
assert (runs["status"] == "converged").all(), runs["status"].value_counts()
slices = slice_keys(store)
assert slices == set(runs["key"]), len(slices)
assert grid.default().slice_loss.size == grid.t_grid.size > 0
print("ok", len(runs), len(slices))
"""


@pytest.mark.slow
def test_wheel_carries_the_knob_grid(tmp_path):
    wheels, target, src = tmp_path / "wheels", tmp_path / "target", tmp_path / "src"
    # setuptools builds in the source tree (build/, egg-info): a copy keeps the checkout clean
    # and no stale build/lib from an earlier build can leak into the wheel.
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "awbench", src / "awbench", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        check=True,
        cwd=tmp_path,
        timeout=300,
    )
    (wheel,) = wheels.glob("awbench-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        cwd=tmp_path,
        timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if k != "AWBENCH_KNOBS_STORE"}
    env.update(PYTHONPATH=str(target), AWBENCH_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-c", SNIPPET, str(target)],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    planned = str(len(plan_sweep("knobs", base="paper")))
    assert done.stdout.split() == ["ok", planned, planned]
