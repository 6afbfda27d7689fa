"""Sweeps: presets, validation, failures recorded, resume after SIGKILL, process pool, Dask."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import awbench.experiments.experiment
from awbench.apps.knobs.grid import shipped_store
from awbench.config import Config, ConfigError
from awbench.experiments.executors import DASK_MISSING
from awbench.experiments.experiment import Result
from awbench.experiments.grids import SWEEP_PRESETS, preset_grid
from awbench.experiments.planning import check_data_size, expand_grid, plan_sweep
from awbench.experiments.store import Store, load_store
from awbench.experiments.sweep import run_sweep

SMOKE = Config.preset("smoke").replace(max_epochs=5)


# --- presets and validation ------------------------------------------------------------


def test_presets_fit_the_default_dataset():
    base = Config.preset("paper")
    for name in SWEEP_PRESETS:
        sweep = plan_sweep(name, base=base, seeds=1)
        assert len(sweep) >= 4, name
        for cfg in sweep.configs:
            check_data_size(cfg)
    assert preset_grid("n_train", base)[0] == {"n_train": [162, 324, 648, 1297]}
    grid, fixed = preset_grid("label_noise", base)
    assert grid["label_noise"][-1] == 0.2 and fixed == {"n_train": 1000}
    assert preset_grid("batch_size", base)[0] == {"batch_size": [25, 100, 200, 400]}
    # The authors' MNIST protocol keeps the paper's own values.
    assert preset_grid("n_train", Config.preset("paper-mnist"))[0]["n_train"] == [
        4000,
        8000,
        16000,
        32000,
    ]
    assert preset_grid("label_noise", Config.preset("paper-mnist"))[1] == {}


def test_plan_seeds_dedupe_and_labels():
    sweep = plan_sweep("batch_size", base="smoke")
    assert len(sweep) == 4 * 10 and len(set(sweep.config_keys())) == 40  # 10 seeds by default
    assert sweep.varying == ("batch_size", "seed")
    assert sweep.label(sweep.configs[-1]) == "bs=400_seed=9"
    knobs = plan_sweep("knobs", base="smoke")
    assert len(knobs) == (3**4 + 3 * 2) * 3  # 3 seeds by default
    assert {c.n_train for c in knobs.configs} == {100, 200, 400}
    assert knobs.configs[0].max_epochs == Config.preset("smoke").max_epochs  # the base's budget
    # Overlapping blocks and an explicit seed: every config once.
    twice = plan_sweep([{"lr": [0.1, 0.05]}, {"lr": 0.1, "seed": [0, 3]}], base="smoke", seeds=[0])
    assert [(c.lr, c.seed) for c in twice.configs] == [(0.1, 0), (0.05, 0), (0.1, 3)]


def test_knobs_preset_is_the_shipped_knobs_store():
    shipped = shipped_store()
    if not (shipped / "runs").is_dir():
        pytest.skip("awbench/apps/knobs/store is not there")
    assert set(plan_sweep("knobs", base="paper").config_keys()) == Store(shipped).keys()


def test_expand_grid_forms():
    assert expand_grid({"a": [1, 2], "b": 3}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    assert expand_grid({"widths": [30, 30]}) == [{"widths": [30, 30]}]
    assert expand_grid({"widths": [[8], [8, 8]]}) == [{"widths": [8]}, {"widths": [8, 8]}]
    assert expand_grid([{"a": 1}, {"a": [2, 3]}]) == [{"a": 1}, {"a": 2}, {"a": 3}]


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"batch_size": [25, 0]}, "batch_size"),
        ({"batch_sise": [25]}, "batch_sise"),
        ({"n_train": [5000]}, "n_train=5000.*1297"),
        ({"label_noise": [0.5]}, "label_noise=0.5"),
        ({"lr": []}, "empty"),
    ],
)
def test_bad_grids_fail_before_anything_runs(tmp_path, grid, message):
    with pytest.raises(ConfigError, match=message):
        run_sweep(grid, tmp_path / "s", base="paper", workers=1, quiet=True)
    assert not (tmp_path / "s").exists()


# --- failures and resume (fast: a fake run_experiment) ----------------------------------


def _patch_experiments(monkeypatch, fake):
    """Sweeps run the seeds of a setting together (run_experiments); fake them one by one."""
    monkeypatch.setattr(
        awbench.experiments.experiment,
        "run_experiments",
        lambda cfgs, cache=True, show_progress=None: [fake(c, cache, show_progress) for c in cfgs],
    )


def _fake_experiment(calls, fail_batch_sizes=()):
    def run_experiment(cfg, cache=True, show_progress=None):
        calls.append(cfg.key())
        if cfg.batch_size in fail_batch_sizes:
            raise ValueError(f"bad data for batch_size={cfg.batch_size}")
        dirs = pd.DataFrame({"rank": [0, 1], "lam": [2.0, 1.0], "sigma_g": [1.0, 0.5]})
        return Result(
            cfg,
            "converged",
            "stopping rule met",
            3,
            0.1,
            0.01,
            {"real_gap": cfg.batch_size / 1000, "layer": cfg.layer},
            dirs,
        )

    return run_experiment


def test_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    calls = []
    _patch_experiments(monkeypatch, _fake_experiment(calls, {100}))
    grid = {"batch_size": [25, 100, 200]}
    report = run_sweep(grid, tmp_path, base=SMOKE, seeds=2, workers=1, quiet=True)
    assert (report.planned, report.ran, report.done, report.failed) == (6, 6, 4, 2)
    runs, directions = load_store(tmp_path)
    failed = runs[runs["status"] == "failed"]
    assert set(failed["batch_size"]) == {100}
    assert failed["reason"].str.contains("ValueError: bad data for batch_size=100").all()
    assert len(directions) == 4 * 2 and "layer" in runs and "analysis_layer" not in runs
    assert runs["python_version"].notna().all() and runs["torch_version"].str.len().gt(0).all()

    # Rerun: nothing to do. With retry_failed the failed ones (and only they) run again.
    calls.clear()
    again = run_sweep(grid, tmp_path, base=SMOKE, seeds=2, workers=1, quiet=True)
    assert again.ran == 0 and calls == []
    _patch_experiments(monkeypatch, _fake_experiment(calls))
    retried = run_sweep(
        grid, tmp_path, base=SMOKE, seeds=2, workers=1, quiet=True, retry_failed=True
    )
    assert retried.ran == 2 and (retried.done, retried.failed) == (6, 0)
    runs, _ = load_store(tmp_path)
    assert len(runs) == 6 and runs["key"].is_unique
    assert Store(tmp_path).status().set_index("sweep").loc["total", "converged"] == 6


def test_missing_dask_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'awbench\[dask\]'"):
        run_sweep({"seed": [0]}, tmp_path / "s", base=SMOKE, dask_local=2, quiet=True)
    assert not (tmp_path / "s").exists()
    assert "awbench[dask]" in DASK_MISSING


# --- real runs -------------------------------------------------------------------------


@pytest.mark.slow
def test_diverging_run_recorded_with_reason_in_a_process_pool(tmp_path):
    grid = [
        {"lr": 0.1},
        {"weight_decay_mode": "squared", "weight_decay": 100.0, "lr": 10.0},  # blows up at once
    ]
    report = run_sweep(grid, tmp_path, base=SMOKE, workers=2, cache=False, quiet=True)
    assert "process pool (2 workers)" in report.executor
    assert (report.ran, report.done, report.failed) == (2, 1, 1)
    runs, directions = load_store(tmp_path)
    bad = runs[runs["weight_decay"] == 100.0].iloc[0]
    good = runs[runs["weight_decay"] == 0.0].iloc[0]
    assert bad["status"] == "diverged" and "non-finite" in bad["reason"]
    assert np.isnan(bad["real_gap"]) and bad["key"] not in set(directions["key"])
    assert good["status"] in ("converged", "max_epochs") and np.isfinite(good["real_gap"])
    assert (directions["key"] == good["key"]).sum() == good["n_weights"]
    assert set(runs["pid"]) != {os.getpid()}  # ran in the workers


@pytest.mark.slow
def test_dask_local_cluster_gives_the_serial_numbers(tmp_path):
    pytest.importorskip("distributed")
    grid = {"batch_size": [25, 100], "seed": [0, 1]}
    serial = run_sweep(grid, tmp_path / "serial", base=SMOKE, workers=1, cache=False, quiet=True)
    dask = run_sweep(grid, tmp_path / "dask", base=SMOKE, dask_local=2, cache=False, quiet=True)
    assert "LocalCluster (2 workers)" in dask.executor and dask.ran == serial.ran == 4
    a, da = load_store(tmp_path / "serial")
    b, db = load_store(tmp_path / "dask")
    a, b = a.set_index("key").sort_index(), b.set_index("key").sort_index()
    assert list(a.index) == list(b.index) and (a["status"] == b["status"]).all()
    numbers = [
        "real_gap",
        "estimated_gap",
        "sharp_gap",
        "flat_gap",
        "weight_norm",
        "test_error",
        "train_loss",
        "sharpness",
        "size",
        "epochs",
    ]
    np.testing.assert_allclose(a[numbers].to_numpy(float), b[numbers].to_numpy(float), rtol=1e-10)
    cols = ["lam", "sigma_w", "sigma_g", "c", "contribution"]
    da, db = da.sort_values(["key", "rank"]), db.sort_values(["key", "rank"])
    np.testing.assert_allclose(da[cols].to_numpy(), db[cols].to_numpy(), rtol=1e-9, atol=1e-14)
    assert set(b["pid"]).isdisjoint({os.getpid()})


@pytest.mark.slow
def test_resume_after_sigkill_runs_every_config_exactly_once(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({"batch_size": [25, 50, 100], "seed": [0, 1]}))
    store = tmp_path / "store"
    cmd = [
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
        "--set",
        "max_epochs=10",
        "--workers",
        "1",
        "--no-cache",
        "--quiet",
    ]
    planned = set(
        plan_sweep(
            yaml.safe_load(grid_file.read_text()), base="smoke", overrides={"max_epochs": 10}
        ).config_keys()
    )
    assert len(planned) == 6
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs_dir = store / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if runs_dir.is_dir() and len(list(runs_dir.glob("*.parquet"))) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first, _ = load_store(store)
    assert 2 <= len(first) < 6 and first["key"].is_unique
    before = first.set_index("key")[["pid", "finished_at"]]

    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs, directions = load_store(store)
    assert len(runs) == 6 and runs["key"].is_unique and set(runs["key"]) == planned
    after = runs.set_index("key")
    # Completed runs were kept as they were, not recomputed; the rest ran once, in the rerun.
    pd.testing.assert_frame_equal(after.loc[before.index, ["pid", "finished_at"]], before)
    rerun = after.drop(index=before.index)
    assert len(rerun) == 6 - len(first) and rerun["pid"].nunique() == 1
    assert rerun["pid"].iloc[0] not in set(before["pid"])
    assert (
        directions.groupby("key").size().reindex(runs["key"]).eq(runs["n_weights"].to_numpy()).all()
    )
