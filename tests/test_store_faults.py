"""The result store and notebook runs under faults (awbench/experiments/store.py,
notebook_runs.py, the CLI's errors): no lost outputs, no lost index rows, a damaged part
recomputed, one clear line for every bad input, timeouts and stale temporary files, and a
hint when the wrong ``awbench`` would be imported. Each test injects the fault."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import awbench.experiments.store as store_module
from awbench.apps import cli, environment
from awbench.apps.cli import main
from awbench.apps.report import build as report
from awbench.config import Config
from awbench.experiments import notebook_runs, planning
from awbench.experiments.store import Store, config_columns, remove_stale_tmp

FIXTURE = Path(__file__).parent / "fixtures" / "record_params.ipynb"
PYTHON = Path(sys.executable)


def _row(cfg: Config, status: str = "converged") -> dict:
    return {
        "key": cfg.key(),
        "status": status,
        "reason": "",
        **config_columns(cfg),
        "real_gap": 0.5,
        "finished_at": "2026-01-01T00:00:00+00:00",
    }


def _dirs(n: int) -> pd.DataFrame:
    return pd.DataFrame({"rank": np.arange(n), "lam": np.linspace(1, 0, n)})


def _notebook(path: Path, source: str = "x = 1") -> Path:
    import nbformat  # a second to import (jsonschema's grammars): not at every collection

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _old(path: Path, seconds: float = 2 * 3600) -> Path:
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


# --- 6: reproduce keeps the earlier outputs until the new ones are complete ----------------


def _fake_execute(interrupt_at: str | None = None):
    def execute(src, dst, parameters, kernel="python3", cell_timeout=None):
        if src.stem == interrupt_at:
            dst.write_text('{"half": "written"}')  # papermill writes as it goes
            raise KeyboardInterrupt
        _notebook(dst, f"print('new {src.stem}')")
        return 0.1, ""

    return execute


@pytest.mark.slow
def test_interrupted_reproduce_keeps_earlier_notebooks(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    for name in ("00_a", "01_b"):
        _notebook(src / f"{name}.ipynb")
    out = tmp_path / "out"
    old = _notebook(out / "notebooks" / "00_a.ipynb", "print('old run')")
    old_text = old.read_text()
    monkeypatch.setattr(report, "execute", _fake_execute(interrupt_at="01_b"))
    with pytest.raises(KeyboardInterrupt):
        report.reproduce(out, "smoke", notebook_dir=src)
    assert sorted(p.name for p in (out / "notebooks").iterdir()) == ["00_a.ipynb"]
    assert old.read_text() == old_text  # neither deleted nor replaced by the half run
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left

    # Completed: the new notebooks replace the old folder as a whole.
    (out / "notebooks" / "07_gone.ipynb").write_text(old_text)  # no longer a source
    monkeypatch.setattr(report, "execute", _fake_execute())
    report.reproduce(out, "smoke", notebook_dir=src)
    assert sorted(p.name for p in (out / "notebooks").iterdir()) == ["00_a.ipynb", "01_b.ipynb"]
    assert "new 00_a" in (out / "notebooks" / "00_a.ipynb").read_text()
    assert (out / "report" / "index.html").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []

    # --only replaces the notebooks it ran and keeps the others.
    monkeypatch.setattr(report, "execute", _fake_execute())
    (out / "notebooks" / "00_a.ipynb").write_text(old_text)
    (out / "notebooks" / "01_b.ipynb").write_text(old_text)
    report.reproduce(out, "smoke", notebooks=["00"], notebook_dir=src)
    assert (out / "notebooks" / "01_b.ipynb").read_text() == old_text
    assert "new 00_a" in (out / "notebooks" / "00_a.ipynb").read_text()


# --- 7: two `notebooks run` into one folder keep both writers' rows -------------------------


def _fake_papermill(notebook, tmp, params, kernel_name, cell_timeout=None):
    def run():
        time.sleep(0.05)  # let the two writers interleave
        _notebook(Path(tmp), f"params = {params!r}")

    return run


def test_concurrent_notebook_runs_keep_every_index_row(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook_runs, "_papermill_call", _fake_papermill)
    out = tmp_path / "out"
    grids = [{"batch_size": [20, 25, 40, 50]}, {"batch_size": [80, 100, 200, 400]}]
    errors: list[BaseException] = []

    def writer(grid):
        try:
            notebook_runs.run_notebooks(FIXTURE, grid, out, workers=1, quiet=True)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(g,)) for g in grids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    index = pd.read_parquet(out / "index.parquet")
    assert sorted(index["batch_size"]) == [20, 25, 40, 50, 80, 100, 200, 400]
    assert index["key"].is_unique and (index["status"] == "ok").all()
    assert len(list(out.glob("*.ipynb"))) == 8


# --- 9: a damaged directions part makes its run pending --------------------------------------


def test_damaged_directions_part_is_pending_and_recomputed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWBENCH_CACHE", str(tmp_path / "cache"))
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"batch_size": [50, 100]}))
    store = tmp_path / "store"
    args = ["sweep", "--grid", str(grid), "--store", str(store), "--base", "smoke"]
    args += ["--set", "max_epochs=3", "--set", "widths=[8, 8]", "--workers", "1", "-q"]
    assert main(args) == 0, capsys.readouterr().err
    st = Store(store)
    keys = sorted(st.statuses())
    damaged = store / "directions" / f"{keys[0]}.parquet"
    good = pq.read_table(damaged)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # truncated

    with pytest.warns(UserWarning, match=str(damaged.name)):
        assert sorted(st.statuses()) == keys[1:]  # pending, not done
    with pytest.warns(UserWarning, match=str(damaged.name)):
        runs, directions = st.load()
    assert runs["key"].tolist() == keys[1:] and set(directions["key"]) == {keys[1]}

    with pytest.warns(UserWarning, match=str(damaged.name)):
        assert main(args) == 0, capsys.readouterr().err  # resume recomputes it
    assert pq.read_table(damaged).num_rows == good.num_rows
    runs, directions = st.load()
    assert sorted(runs["key"]) == keys and set(directions["key"]) == set(keys)


# --- 13: one line and an exit code for every bad input --------------------------------------


def _sweep_args(tmp_path, *extra) -> list[str]:
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"batch_size": [50]}))
    return ["sweep", "--grid", str(grid), "--store", str(tmp_path / "store"), "--base", "smoke"]


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bad_cli_inputs_give_one_line_and_an_exit_code(tmp_path, capsys, monkeypatch):
    base = _sweep_args(tmp_path)
    assert main([*base, "--set", "widths=[8", "--dry-run"]) == 2
    assert "--set 'widths=[8'" in _error(capsys)

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    bad_store = [*base[:3], "--store", str(a_file), "--base", "smoke"]
    assert main([*bad_store, "--dry-run"]) == 2
    assert str(a_file) in _error(capsys)
    assert main(["status", str(a_file)]) == 2
    assert str(a_file) in _error(capsys)

    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(["sweep", "--grid", str(folder), "--store", str(tmp_path / "s"), "--dry-run"]) == 2
    assert str(folder) in _error(capsys)

    # The OSError family (a full disk here), named with its file.
    def full_disk(text, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_module, "_atomic_write_text", full_disk)
    assert main([*base, "--set", "max_epochs=1", "-q"]) == 1
    line = _error(capsys)
    assert "No space left on device" in line and "plans" in line
    monkeypatch.undo()

    # OverflowError and pyarrow type errors: a line, not a traceback.
    for exc, code in [
        (OverflowError("int too large to convert"), 2),
        (pa.ArrowTypeError("Unable to merge: Field x"), 1),
    ]:

        def boom(*a, exc=exc, **k):
            raise exc

        monkeypatch.setattr(planning, "plan_sweep", boom)
        assert main([*base, "--dry-run"]) == code
        assert str(exc) in _error(capsys)
    monkeypatch.undo()


def test_unreachable_dask_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    distributed = pytest.importorskip("distributed")

    class QuickClient(distributed.Client):
        def __init__(self, *args, **kwargs):
            kwargs["timeout"] = 1  # the real 30 s, shortened for the test
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(distributed, "Client", QuickClient)
    args = [*_sweep_args(tmp_path), "--set", "max_epochs=1", "-q"]
    assert main([*args, "--scheduler", "tcp://127.0.0.1:9"]) == 1
    assert "tcp://127.0.0.1:9" in _error(capsys)


def test_bad_store_parts_and_plans_are_skipped_by_name(tmp_path, capsys):
    st = Store(tmp_path / "store")
    a, b, c = (Config.preset("smoke").replace(seed=s) for s in range(3))
    for cfg in (a, b, c):
        st.write(_row(cfg), _dirs(3))
    st.write_plan("sweep", [a, b, c])
    # A part written by incompatible code: real_gap as text.
    odd = st.runs_dir / f"{c.key()}.parquet"
    pq.write_table(pa.Table.from_pylist([{**_row(c), "real_gap": "n/a"}]), odd)
    (st.plans_dir / "list.json").write_text("[1, 2]")
    (st.plans_dir / "keys.json").write_text('{"name": "x", "keys": 5}')
    with pytest.warns(UserWarning) as caught:
        runs, _ = st.load()
    assert sorted(runs["key"]) == sorted([a.key(), b.key()])
    assert any(odd.name in str(w.message) for w in caught)
    with pytest.warns(UserWarning) as caught:
        assert main(["status", str(st.path)]) == 0
    out = capsys.readouterr().out
    assert "sweep" in out
    messages = " ".join(str(w.message) for w in caught)
    assert "list.json" in messages and "keys.json" in messages


# --- 16: a cell timeout, and stale temporary files removed -----------------------------------


@pytest.mark.slow
def test_cell_timeout_fails_the_notebook(tmp_path, capsys):
    nb = _notebook(tmp_path / "sleepy.ipynb", "import time\ntime.sleep(120)")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"seed": [0]}))
    out = tmp_path / "out"
    start = time.perf_counter()
    args = ["notebooks", "run", str(nb), "--grid", str(grid), "--out", str(out)]
    assert main([*args, "--workers", "1", "--cell-timeout", "3", "-q"]) == 1
    assert time.perf_counter() - start < 60
    assert "timed out" in capsys.readouterr().err.lower()
    index = pd.read_parquet(out / "index.parquet")
    assert index["status"].tolist() == ["failed"]

    secs, error = report.execute(nb, tmp_path / "r.ipynb", {}, cell_timeout=3)
    assert "CellTimeoutError" in error and secs < 60


def test_stale_tmp_files_are_removed_live_ones_kept(tmp_path, monkeypatch):
    # Store parts: removed when a writer opens the store, unless recent.
    st = Store(tmp_path / "store")
    st.runs_dir.mkdir(parents=True)
    stale = st.runs_dir / ".abc.parquet.4242.deadbeef.tmp"
    stale.write_bytes(b"half")
    _old(stale)
    fresh = st.runs_dir / ".def.parquet.4242.cafecafe.tmp"
    fresh.write_bytes(b"in flight")
    st.write(_row(Config.preset("smoke")), _dirs(2))
    assert not stale.exists() and fresh.exists()

    # Cache entries: removed when a sweep starts.
    monkeypatch.setenv("AWBENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "cache" / "results"
    results.mkdir(parents=True)
    old_entry, new_entry = results / ".k.pt.77.tmp", results / ".j.pt.78.tmp"
    old_entry.write_bytes(b"x")
    new_entry.write_bytes(b"x")
    _old(old_entry)
    keep = results / "k.pt"
    keep.write_bytes(b"a finished entry")
    _old(keep)
    cli._clean_cache_tmp()
    assert not old_entry.exists() and new_entry.exists() and keep.exists()
    assert remove_stale_tmp(tmp_path / "missing") == []

    # Notebook outputs: a dead writer's old .tmp.ipynb goes, a live writer's stays.
    monkeypatch.setattr(notebook_runs, "_papermill_call", _fake_papermill)
    out = tmp_path / "nb"
    out.mkdir()
    dead = out / ".x_bs=5.999999999.tmp.ipynb"
    live = out / f".y_bs=6.{os.getpid()}.tmp.ipynb"
    for f in (dead, live):
        f.write_text("{}")
        _old(f, 10 * 24 * 3600)
    notebook_runs.run_notebooks(FIXTURE, {"batch_size": 20}, out, workers=1, quiet=True)
    assert not dead.exists() and live.exists()


# --- 17: the wrong awbench from the folder above a checkout ---------------------------------


def test_namespace_folder_shadowing_awbench_gets_a_hint(tmp_path, monkeypatch, capsys):
    (tmp_path / "awbench").mkdir()  # a checkout named awbench, seen from the folder above
    checkout = Path(__file__).resolve().parents[1]
    probe = "import awbench; print(awbench.__file__)"
    imported = subprocess.run(
        [str(PYTHON), "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # `make setup` puts the checkout on sys.path: a regular package there wins
    assert imported.stdout.strip() == str(checkout / "awbench" / "__init__.py")
    monkeypatch.chdir(tmp_path)
    assert environment.shadowing_hint() == ""
    # a strict editable install has no such path entry: then the folder would shadow it
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p and Path(p).resolve() != checkout])
    assert main(["info", "--json"]) == 0
    captured = capsys.readouterr()
    assert "without __init__.py" in captured.err and "make setup" in captured.err
    assert json.loads(captured.out)["awbench package"].endswith("awbench")
    assert environment.shadowing_hint(Path(__file__).parents[1]) == ""  # the checkout itself: fine
