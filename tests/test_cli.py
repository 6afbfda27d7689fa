"""The awbench command line: info, sweep, status, errors, adding a subcommand."""

import json
from importlib import metadata

import pytest
import yaml

from awbench.apps import cli
from awbench.apps.cli import build_parser, command, main
from awbench.experiments.store import load_store


def test_info_prints_versions_threads_device_cache(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AWBENCH_CACHE", str(tmp_path / "c"))
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    for word in ("python", "torch", "numpy", "torch threads", "device", "cache"):
        assert word in text
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cache"] == str(tmp_path / "c") and info["torch"].startswith("2.")


def test_sweep_then_status(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"batch_size": [50, 100]}))
    store = tmp_path / "store"
    args = [
        "sweep",
        "--grid",
        str(grid),
        "--store",
        str(store),
        "--base",
        "smoke",
        "--set",
        "max_epochs=3",
        "--set",
        "widths=[8, 8]",
        "--workers",
        "1",
        "--no-cache",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[1/2]" in out and "[2/2]" in out and "bs=100" in out and "done 2, failed 0" in out
    runs, directions = load_store(store)
    assert sorted(runs["batch_size"]) == [50, 100] and set(runs["widths"]) == {"[8, 8]"}
    assert (runs["max_epochs"] == 3).all() and len(directions) == 2 * 64

    assert main(["status", str(store)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "sweep",
        "planned",
        "converged",
        "max_epochs",
        "diverged",
        "failed",
        "pending",
    ]
    assert table[1].split() == ["grid", "2", "0", "2", "0", "0", "0"]  # 3 epochs: max_epochs

    assert main(args + ["--quiet"]) == 0  # resumed: nothing to do, nothing printed
    assert capsys.readouterr().out == ""
    assert main(args[:-1] + ["--seeds", "2", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "4 runs (2 not in" in plan and "bs=50_seed=1" in plan


def test_errors_name_the_problem(tmp_path, capsys):
    base = ["sweep", "--preset", "batch_size", "--store", str(tmp_path / "s"), "--quiet"]
    assert main(base + ["--set", "batch_size=0"]) == 2
    assert "Config.batch_size=0" in capsys.readouterr().err
    assert main(base + ["--set", "max_epoch=3"]) == 2
    assert "max_epoch" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "missing")]) == 2
    assert "no result store" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--grid", "g.yaml"])  # --preset and --grid exclude each other
    with pytest.raises(SystemExit):
        main(base + ["--scheduler", "tcp://x:8786", "--dask-local", "2"])
    with pytest.raises(SystemExit):
        main(["sweep", "--preset", "nope", "--store", "s"])
    assert not (tmp_path / "s").exists()


def test_subcommands_are_registered_in_one_place(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_COMMANDS", list(cli._COMMANDS))

    def _args(p):
        p.add_argument("--figures", nargs="*", default=[])

    @command("demo", "a subcommand added in one place", _args)
    def _demo(args):
        print("figures:", *args.figures)
        return 0

    @command("notebooks list", "list notebooks")
    def _list(args):
        return 3

    assert main(["demo", "--figures", "2", "4"]) == 0
    assert capsys.readouterr().out.strip() == "figures: 2 4"
    assert main(["notebooks", "list"]) == 3
    help_text = build_parser().format_help()
    for name in ("info", "sweep", "status", "notebooks", "reproduce", "figures", "demo"):
        assert name in help_text


def test_console_script_entry_point():
    (ep,) = [e for e in metadata.entry_points(group="console_scripts") if e.name == "awbench"]
    assert ep.value == "awbench.apps.cli:main"
