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


def _one_error_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_bounded_input_device_files_big_grids_seeds_and_workers(tmp_path, capsys):
    store = str(tmp_path / "s")
    sweep = ["sweep", "--store", store, "--quiet", "--base", "smoke"]
    for device in ("/dev/zero", "/dev/urandom"):
        assert main(sweep + ["--grid", device]) == 2
        _one_error_line(capsys, f"grid file {device}", "not a regular file")
    big = tmp_path / "big.yaml"
    big.write_text("lr: [0.1]\n" + "#" * 1_100_000 + "\n")
    assert main(sweep + ["--grid", str(big)]) == 2
    _one_error_line(capsys, str(big), "1,100,011 bytes", "at most 1,000,000")
    # 200 values of 5 knobs: 3.2e11 parameter sets, counted, never expanded
    huge = tmp_path / "huge.yaml"
    values = {"lr": 0.01, "batch_size": 1, "weight_decay": 1e-4, "dropout": 0.001, "init_scale": 1}
    huge.write_text(
        yaml.safe_dump({k: [v * (i + 1) for i in range(200)] for k, v in values.items()})
    )
    assert main(sweep + ["--grid", str(huge)]) == 2
    _one_error_line(capsys, "320,000,000,000", "at most 100,000")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"batch_size": [50, 100]}))
    sweep += ["--grid", str(grid)]
    assert main(sweep + ["--seeds", "100000000"]) == 2
    _one_error_line(capsys, "--seeds 100000000", "1 to 10,000")
    for n in ("-1", "0"):
        assert main(sweep + ["--dask-local", n]) == 2
        _one_error_line(capsys, f"--dask-local {n}", "N >= 1")
    assert not (tmp_path / "s").exists()


def test_empty_strings_and_a_folder_that_is_no_store_are_refused(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"batch_size": [50, 100]}))
    sweep = ["sweep", "--grid", str(grid), "--quiet", "--base", "smoke"]
    assert main(sweep + ["--store", ""]) == 2
    _one_error_line(capsys, "--store ''", "expected a result store folder")
    assert main(sweep + ["--store", str(tmp_path / "s"), "--scheduler", ""]) == 2
    _one_error_line(capsys, "--scheduler ''", "expected a Dask scheduler address")
    assert main(["status", ""]) == 2
    _one_error_line(capsys, "STORE ''", "not allowed")
    assert main(["status", "/"]) == 2
    _one_error_line(capsys, "/ is not a result store", "no runs/, plans/")
    assert not (tmp_path / "s").exists()


def test_a_memory_error_is_one_line_and_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_COMMANDS", list(cli._COMMANDS))

    @command("hungry", "asks for too much")
    def _hungry(args):
        raise MemoryError

    assert main(["hungry"]) == 1
    _one_error_line(capsys, "awbench hungry: error: out of memory")
