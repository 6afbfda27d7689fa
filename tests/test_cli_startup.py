"""The command line as a newcomer meets it (awbench/apps/cli.py): help without arguments, no
heavy imports for --help and --version, the lazy package names, --set on a preset's swept
knob refused, and install extras that agree between pyproject.toml and the Makefile."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from awbench.apps import cli
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


def test_log_lines_reach_the_stdout_of_the_command_that_runs(capsys):
    import logging

    from awbench.progress import LOGGER_NAME, cli_logging

    logger = logging.getLogger(LOGGER_NAME)
    before = list(logger.handlers)
    try:
        cli_logging()
        cli_logging()  # a second command in the same process replaces the handler
        ours = [h for h in logger.handlers if getattr(h, "awbench_cli", False)]
        assert len(ours) == 1
        logging.getLogger("awbench.experiments.sweep").info("ran 3 runs")
        assert capsys.readouterr().out == "ran 3 runs\n"
    finally:
        for h in list(logger.handlers):
            if h not in before:
                logger.removeHandler(h)


def test_every_library_logger_is_under_the_one_the_command_line_configures():
    import importlib

    from awbench.progress import LOGGER_NAME

    # build runs as `python -m` too, where __name__ would be "__main__" and its lines lost
    for name in (
        "awbench.apps.report.build",
        "awbench.apps.report.export",
        "awbench.experiments.sweep",
        "awbench.experiments.notebook_runs",
    ):
        assert importlib.import_module(name).LOG.name.startswith(LOGGER_NAME + "."), name
