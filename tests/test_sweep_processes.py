"""The sweep's worker processes (awbench/experiments/sweep.py): SIGTERM and SIGKILL
of a process-pool sweep leave no worker behind, a worker death costs one run, exit codes,
and two sweeps into one store never compute a run twice."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from filelock import FileLock

import awbench.experiments.experiment
import awbench.experiments.sweep as sweep_module
from awbench.apps.cli import main
from awbench.config import Config
from awbench.experiments.experiment import Result
from awbench.experiments.store import Store, load_store
from awbench.experiments.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
SMOKE = Config.preset("smoke").replace(max_epochs=3, widths=(8, 8))
KILLER_BATCH_SIZE = 50  # the run of test_a_run_that_kills_its_worker... that does
_real_execute_seeds = sweep_module.execute_seeds  # captured before any monkeypatch


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "AWBENCH_QUIET": "1"}


def _sweep_cmd(grid_file: Path, store: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "awbench.apps.cli",
        "sweep",
        "--grid",
        str(grid_file),
        "--store",
        str(store),
        "--base",
        "smoke",
        "--no-cache",
        *extra,
    ]


# --- 11: SIGTERM / SIGKILL of a process-pool sweep leave no worker behind -----------------


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie nobody reaps (pid 1 of a container) has exited


def _start_pool_sweep(tmp_path: Path) -> tuple[subprocess.Popen, set[int]]:
    """A 2-worker process-pool sweep of long runs, once both workers are busy training;
    its stderr goes to ``tmp_path / "err"`` (orphaned workers would hold a pipe open)."""
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({"batch_size": [25, 50, 100, 200]}))
    cmd = _sweep_cmd(
        grid_file,
        tmp_path / "store",
        "--set",
        "max_epochs=20000",  # never converges at this lr: a minute or more per run
        "--set",
        "lr=1e-6",
        "--workers",
        "2",
        "--quiet",
    )
    with open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 90
    workers: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        workers = set()
        for p in _children(proc.pid):
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes():
                    workers.add(p)
        if len(workers) >= 2:
            break
        time.sleep(0.2)
    if proc.poll() is not None or len(workers) < 2:
        _kill_all({proc.pid, *_children(proc.pid)})
        pytest.fail(f"no pool workers: {(tmp_path / 'err').read_text()}")
    time.sleep(5)  # the workers import torch and start their first runs
    return proc, _children(proc.pid)


def _kill_all(pids: set[int]) -> set[int]:
    """SIGKILL those of ``pids`` still running; return them."""
    left = {p for p in pids if _alive(p)}
    for p in left:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)
    return left


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_process_pool_sweep_leaves_no_worker_behind(tmp_path, sig):
    proc, descendants = _start_pool_sweep(tmp_path)
    assert descendants
    try:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the sweep did not end within 30 s of {sig.name}")
        err = (tmp_path / "err").read_text()
        if sig == signal.SIGTERM:  # like Ctrl-C: a clean exit that says how to resume
            assert proc.returncode == 128 + signal.SIGTERM, err
            assert "terminated" in err and "resume" in err and "Traceback" not in err
        else:
            assert proc.returncode == -signal.SIGKILL
        # a worker still importing torch when its parent died starts its watchdog only after
        # the import, which takes tens of seconds on a loaded machine: wait for it, not for
        # a fixed speed
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and any(map(_alive, descendants)):
            time.sleep(0.2)
        left = {p for p in descendants if _alive(p)}
        assert not left, f"processes still running 90 s after their sweep ended: {left}"
    finally:  # never leak a worker into the rest of the session
        _kill_all({proc.pid, *descendants})
        proc.wait()


# --- 12: a worker death costs one run, not the sweep ------------------------------------


def _execute_or_die(cfgs, cache=True):
    """``execute_seeds`` in a pool worker, except that one config kills its worker (as the
    out-of-memory killer or a segfault would). Module level: the spawned workers import it."""
    if any(c.batch_size == KILLER_BATCH_SIZE for c in cfgs):
        time.sleep(0.5)  # let the other runs start, so that they are in flight when it dies
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(1.0)  # still running when the killer dies
    return _real_execute_seeds(cfgs, cache)


@pytest.mark.slow
def test_a_run_that_kills_its_worker_is_failed_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "execute_seeds", _execute_or_die)
    grid = {"batch_size": [25, KILLER_BATCH_SIZE, 100]}
    report = run_sweep(grid, tmp_path, base=SMOKE, workers=2, cache=False, quiet=True)
    assert report.planned == 3 and report.pending == 0 and report.errors == 1
    runs, directions = load_store(tmp_path)
    assert len(runs) == 3 and runs["key"].is_unique
    runs = runs.set_index("batch_size")
    killer = runs.loc[KILLER_BATCH_SIZE]
    assert killer["status"] == "failed"
    assert "WorkerDied" in killer["reason"] and "SIGKILL" in killer["reason"]
    others = runs.drop(index=KILLER_BATCH_SIZE)
    # The runs in flight with it were run again, and stored once each, as results.
    assert others["status"].isin(["converged", "max_epochs"]).all()
    assert set(directions["key"]) == set(others["key"])
    assert os.getpid() not in set(others["pid"])


# --- 14: exit codes ---------------------------------------------------------------------


def _fake_run_experiments(statuses: dict[int, str]):
    """``run_experiments`` without training: status by batch size; "failed" raises."""

    def run_experiments(cfgs, cache=True, show_progress=None):
        out = []
        for cfg in cfgs:
            status = statuses.get(cfg.batch_size, "converged")
            if status == "failed":
                raise ValueError(f"bad data for batch_size={cfg.batch_size}")
            dirs = pd.DataFrame({"rank": [0], "lam": [1.0], "sigma_g": [1.0]})
            ok = status in ("converged", "max_epochs")
            out.append(
                Result(
                    cfg,
                    status,
                    "stopping rule met" if ok else "loss grew",
                    3,
                    0.1,
                    0.01,
                    {"real_gap": 0.01 if ok else float("nan")},
                    dirs if ok else None,
                )
            )
        return out

    return run_experiments


def _cli_sweep(tmp_path: Path, *extra: str) -> list[str]:
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"batch_size": [25, 50, 100]}))
    return ["sweep", "--grid", str(grid), "--store", str(tmp_path / "s"), "--base", "smoke", *extra]


def test_sweep_exits_nonzero_when_a_run_failed_and_says_how_many(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        awbench.experiments.experiment,
        "run_experiments",
        _fake_run_experiments({50: "failed", 100: "diverged"}),
    )
    assert main(_cli_sweep(tmp_path, "--workers", "1")) == 1
    captured = capsys.readouterr()
    assert "1 of 3 runs failed" in captured.err and "--retry-failed" in captured.err
    assert "converged 1, max_epochs 0, diverged 1, failed 1" in captured.out
    # Resumed, the failed run is still there: still non-zero. Retried and fixed: exit 0.
    assert main(_cli_sweep(tmp_path, "--workers", "1", "--quiet")) == 1
    monkeypatch.setattr(
        awbench.experiments.experiment,
        "run_experiments",
        _fake_run_experiments({100: "diverged"}),
    )
    assert main(_cli_sweep(tmp_path, "--workers", "1", "--retry-failed")) == 0


def test_diverged_and_unconverged_runs_are_results_exit_0(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        awbench.experiments.experiment,
        "run_experiments",
        _fake_run_experiments({50: "max_epochs", 100: "diverged"}),
    )
    assert main(_cli_sweep(tmp_path, "--workers", "1")) == 0
    captured = capsys.readouterr()
    assert "converged 1, max_epochs 1, diverged 1, failed 0" in captured.out
    assert "failed with an error" not in captured.err


def test_workers_0_fails_before_the_plan_is_written(tmp_path, capsys):
    assert main(_cli_sweep(tmp_path, "--workers", "0")) == 2
    assert "workers must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# --- 16: a lock per run key -------------------------------------------------------------


def test_a_run_locked_by_another_sweep_is_waited_for_not_computed(tmp_path, monkeypatch):
    """Another sweep holds the lock of one run, stores it, and lets go: this sweep computes
    every other run, waits for that one and takes it from the store."""
    calls: list[str] = []
    fake = _fake_run_experiments({})

    def run_experiments(cfgs, cache=True, show_progress=None):
        calls.extend(c.key() for c in cfgs)
        return fake(cfgs, cache, show_progress)

    monkeypatch.setattr(awbench.experiments.experiment, "run_experiments", run_experiments)
    grid = {"batch_size": [25, 50, 100]}
    busy = next(c for c in sweep_module.plan_sweep(grid, base=SMOKE).configs)
    (tmp_path / ".locks").mkdir(parents=True)
    other = FileLock(str(tmp_path / ".locks" / f"{busy.key()}.lock"))
    other.acquire()
    reports = []
    thread = threading.Thread(
        target=lambda: reports.append(run_sweep(grid, tmp_path, base=SMOKE, workers=1, quiet=True))
    )
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(calls) < 2:
            time.sleep(0.05)
        time.sleep(0.3)
        assert thread.is_alive() and busy.key() not in calls  # waiting for the other sweep
        # The other sweep stores the run (a different result: a row of its own) and unlocks.
        row = sweep_module.failed_row(busy, "stored by the other sweep")
        row["pid"] = -1
        Store(tmp_path).write(row)
    finally:
        other.release()
    thread.join(30)
    assert not thread.is_alive()
    (report,) = reports
    assert sorted(calls) == sorted(
        c.key() for c in sweep_module.plan_sweep(grid, base=SMOKE).configs if c.key() != busy.key()
    )
    assert report.ran == 2 and report.pending == 0 and report.skipped == 0
    runs, _ = load_store(tmp_path)
    assert len(runs) == 3 and runs.set_index("key").loc[busy.key(), "pid"] == -1
    assert not list((tmp_path / ".locks").glob("*.lock"))  # removed once the runs are stored


@pytest.mark.slow
def test_two_identical_sweeps_at_once_compute_each_run_once(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({"batch_size": [25, 40, 50, 80, 100, 200]}))
    store = tmp_path / "store"
    cmd = _sweep_cmd(
        grid_file, store, "--set", "max_epochs=400", "--set", "lr=1e-6", "--workers", "1"
    )
    procs = [
        subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    ran = [int(re.search(r"(\d+) ran in", out).group(1)) for out, _ in outs]
    assert sum(ran) == 6, outs  # each run computed by one of the two sweeps
    runs, directions = load_store(store)
    assert len(runs) == 6 and runs["key"].is_unique and (runs["status"] == "max_epochs").all()
    assert (
        directions.groupby("key").size().reindex(runs["key"]).eq(runs["n_weights"].to_numpy()).all()
    )
