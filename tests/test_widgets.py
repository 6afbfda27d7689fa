"""KnobPanel driven in plain Python: every control, every option, panels against the store.

The ground truth is read straight from the store files (runs, directions and slices parquet
parts), independently of the lookups in awbench.widgets. The off-grid "train this setting"
path runs on a seconds-small store built here with the smoke preset.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import yaml

import awbench as aw
from awbench import widgets as kw
from awbench.store import load_store

STORE = kw.REPO_STORE


@pytest.fixture(scope="module")
def truth():
    runs, directions = load_store(STORE)
    slices = {p.stem: pd.read_parquet(p) for p in (STORE / "slices").glob("*.parquet")}
    return runs, directions, slices


@pytest.fixture
def panel(tmp_path):
    return kw.KnobPanel(STORE, mode="live", extra_store=tmp_path / "user_store")


def _row(runs: pd.DataFrame, values: dict) -> pd.Series:
    mask = np.ones(len(runs), dtype=bool)
    for k, v in values.items():
        mask &= (runs[k] == v).to_numpy()
    assert mask.sum() == 1, f"{values}: {mask.sum()} runs"
    return runs[mask].iloc[0]


def _assert_panels_match(panel: kw.KnobPanel, truth) -> None:
    """Every panel's 'this setting' traces equal the store's numbers for the values on screen."""
    runs, directions, slices = truth
    row = _row(runs, panel.values)
    d = directions[directions["key"] == row["key"]].sort_values("rank")
    f = panel.figures
    np.testing.assert_array_equal(f["sharpness"].data[1].y, d["sigma_g"].to_numpy())
    np.testing.assert_array_equal(f["sharpness"].data[3].y, np.sort(d["lam"].to_numpy())[::-1][:10])
    s = slices[row["key"]]
    np.testing.assert_array_equal(f["sharpness"].data[6].y, s["loss"].to_numpy())
    np.testing.assert_array_equal(f["sharpness"].data[5].y, s["quadratic"].to_numpy())
    np.testing.assert_array_equal(f["size"].data[1].y, d["sigma_w"].to_numpy())
    assert f["size"].data[2].y[1] == row["weight_norm"]
    assert f["size"].data[3].y[1] == row["size"]
    assert list(f["gap"].data[1].y) == [row["real_gap"], row["pair_gap"], row["estimated_gap"]]
    assert f["gap"].data[2].y[1] == row["sharp_gap"] and f["gap"].data[3].y[1] == row["flat_gap"]
    # the sweep of the knob last moved: the other knobs held, mean and sd (ddof 0) over seeds
    knob = panel.last_knob
    held = [k for k in kw.KNOBS if k not in (knob, "seed")]
    sub = runs
    for k in held:
        sub = sub[sub[k] == panel.values[k]]
    g = sub.groupby(knob)["real_gap"]
    np.testing.assert_allclose(f["sweep"].data[0].y, g.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        f["sweep"].data[0].error_y.array, g.std(ddof=0).to_numpy(), atol=1e-12
    )
    np.testing.assert_allclose(
        f["sweep"].data[1].y, sub.groupby(knob)["sharpness"].mean().to_numpy(), rtol=1e-12
    )
    here = f["sweep"].data[3]  # "you are here" on the real-gap axis
    assert list(here.y) == [row["real_gap"]]
    assert panel.options[knob][int(here.x[0])] == panel.values[knob]
    assert f["sweep"].layout.xaxis.title.text == kw.KNOB_TEXT[knob]
    assert row["key"] in panel.widgets["status"].value


def test_shipped_store_is_small_complete_and_documented(truth):
    runs, directions, slices = truth
    size = sum(p.stat().st_size for p in STORE.rglob("*") if p.is_file())
    assert size <= 5 * 2**20, f"the shipped store is {size / 2**20:.2f} MB"
    assert (runs["status"].isin(["converged", "max_epochs"])).all()
    assert set(slices) == set(runs["key"]), "every run has its loss slice"
    grid = kw.KnobGrid(STORE, extra=STORE)
    for knob in kw.KNOBS:
        assert len(grid.values[knob]) >= 2, f"{knob} has one value only"
    readme = (STORE / "README.md").read_text()
    assert "awbench sweep" in readme and "python -m awbench.widgets" in readme
    # the slice's curvature is the store's lam_max, its centre the clean training loss
    for key, s in slices.items():
        row = runs[runs["key"] == key].iloc[0]
        assert s["lam"].iloc[0] == pytest.approx(row["lam_max"], rel=1e-8)
        mid = s.iloc[len(s) // 2]
        assert mid["t"] == 0.0 and mid["loss"] == pytest.approx(row["train_loss"], rel=1e-9)


def test_every_slider_over_every_option_matches_the_store(panel, truth):
    default = {k: panel.values[k] for k in kw.KNOBS}
    reference = {
        n: [np.array(t.y, dtype=float).copy() for t in panel.figures[n].data] for n in kw.PANELS
    }
    _assert_panels_match(panel, truth)
    for knob in kw.KNOBS:
        slider = panel.widgets[knob]
        assert slider.continuous_update is False
        assert [v for _, v in slider.options] == panel.grid.values[knob]
        # visit every option, the default last (setting the current value fires no event)
        for value in [v for v in panel.options[knob] if v != default[knob]] + [default[knob]]:
            slider.value = value  # what a user's drag does: the observer redraws
            assert panel.values[knob] == value and panel.last_knob == knob
            assert panel.on_grid, f"{knob}={value} from the default is on the grid"
            _assert_panels_match(panel, truth)
            if value != default[knob]:
                changed = [
                    n
                    for n in ("sharpness", "size", "gap")
                    if not np.array_equal(
                        np.array(panel.figures[n].data[1].y, dtype=float), reference[n][1]
                    )
                ]
                assert changed == ["sharpness", "size", "gap"], (
                    f"{knob}={value}: only {changed} changed"
                )
        slider.value = default[knob]
    panel.widgets["reset"].click()
    assert panel.values == default


def test_combination_and_reset(panel, truth):
    panel.widgets["batch_size"].value = 400
    panel.widgets["weight_decay"].value = 0.02  # the batch x weight-decay block is a full grid
    assert panel.on_grid and panel.last_knob == "weight_decay"
    _assert_panels_match(panel, truth)
    panel.widgets["seed"].value = 1
    _assert_panels_match(panel, truth)
    panel.widgets["dropout"].value = 0.1  # dropout was only moved alone: off the grid
    assert not panel.on_grid
    assert panel.widgets["train"].disabled is False
    assert "Off the grid" in panel.widgets["status"].value
    assert len(panel.figures["sharpness"].data[1].y) == 0, "no stale data for an off-grid setting"
    assert len(panel.figures["sharpness"].data[0].y) > 0, "the default stays as the reference"
    panel.widgets["reset"].click()
    assert panel.values == panel.grid.defaults and panel.on_grid
    assert panel.widgets["train"].disabled is True
    _assert_panels_match(panel, truth)


def test_config_text_pastes_into_python_papermill_and_a_sweep(panel, tmp_path):
    panel.set(batch_size=100, weight_decay=0.01, seed=1)
    py, pm, sweep = panel.config_text.splitlines()
    scope = {"aw": aw}
    exec(py, scope)
    assert scope["cfg"] == panel.config
    args = shlex.split(pm)
    params = {args[i + 1]: args[i + 2] for i, a in enumerate(args) if a == "-p"}
    assert params == {"batch_size": "100", "weight_decay": "0.01", "seed": "1"}
    assert panel.grid.config(params) == panel.config  # papermill hands strings; Config coerces
    grid = yaml.safe_load(sweep.split("# grid.yaml: ", 1)[1])
    from awbench.sweep import plan_sweep

    assert [c.key() for c in plan_sweep(grid, base="paper").configs] == [panel.config.key()]


def test_start_values_and_errors(tmp_path):
    p = kw.KnobPanel(
        STORE, mode="static", extra_store=tmp_path, start={"batch_size": 50, "seed": 1}
    )
    assert 50 in p.options["batch_size"] and not p.on_grid
    assert p.values["batch_size"] == 50 and p.values["seed"] == 1
    with pytest.raises(aw.ConfigError, match="batch_size"):
        kw.KnobPanel(STORE, mode="static", extra_store=tmp_path, start={"batch_size": -3})
    with pytest.raises(aw.ConfigError, match="momentum"):
        kw.KnobPanel(STORE, mode="static", extra_store=tmp_path, start={"momentum": 0.9})
    with pytest.raises(ValueError, match="mode"):
        kw.KnobPanel(STORE, mode="fancy")
    with pytest.raises(ValueError, match="batch_size=7"):
        kw.KnobPanel(STORE, mode="static", extra_store=tmp_path).set(batch_size=7)
    with pytest.raises(FileNotFoundError, match="awbench sweep --preset knobs"):
        kw.KnobPanel(tmp_path / "nowhere", mode="static")


def test_static_mode_creates_no_widget(tmp_path):
    from ipywidgets.widgets import widget

    before = len(widget._instances)
    p = kw.KnobPanel(STORE, mode="static", extra_store=tmp_path)
    p.set(batch_size=400)
    assert p.widgets == {} and len(widget._instances) == before
    assert set(p.figures) == set(kw.PANELS)
    assert all(type(f) is go.Figure and f.layout.title.text for f in p.figures.values())
    size = sum(len(f.to_json()) for f in p.figures.values())
    assert size < 400_000, f"static figures weigh {size} bytes"
    assert "batch_size=400" in kw.takeaway(p)


def test_frontend_guess(monkeypatch):
    monkeypatch.setenv("AWBENCH_WIDGETS", "live")
    assert kw.frontend() == "live"
    monkeypatch.setenv("AWBENCH_WIDGETS", "static")
    assert kw.frontend() == "static"
    monkeypatch.delenv("AWBENCH_WIDGETS")
    monkeypatch.setenv("AWBENCH_QUIET", "1")
    assert kw.frontend() == "static"
    monkeypatch.delenv("AWBENCH_QUIET")
    assert kw.frontend() == "static"  # no kernel: plain Python


def test_grid_effects_and_sweep_figures():
    grid = kw.KnobGrid(STORE, extra=STORE)
    effects = kw.grid_effects(grid)
    assert list(effects["knob"]) == list(kw.KNOBS[:-1])
    assert effects[["real_gap_change", "sharpness_change", "size_change"]].notna().all().all()
    for knob in kw.KNOBS[:-1]:
        fig = kw.sweep_figure(grid, knob)
        assert len(fig.data[0].y) == len(grid.values[knob])


# --- off the grid: train this setting ----------------------------------------------------------


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """Three smoke runs (batch 25, batch 100, dropout 0.1) and their slices: seconds."""
    import torch

    from awbench.sweep import run_sweep

    path = tmp_path_factory.mktemp("small_knobs_store")
    base = aw.Config.preset("smoke").replace(max_epochs=12, n_train=200, n_test=100)
    run_sweep(
        [{"batch_size": [25, 100]}, {"dropout": [0.1]}],
        store=path,
        base=base,
        seeds=1,
        workers=1,
        quiet=True,
    )
    torch.set_num_threads(1)
    assert kw.add_slices(path, log=lambda *_: None) == 3
    return path


def test_train_this_setting(small_store, tmp_path, monkeypatch):
    user = tmp_path / "user_store"
    p = kw.KnobPanel(small_store, mode="live", extra_store=user)
    assert p.grid.values["batch_size"] == [25, 100] and p.grid.values["dropout"] == [0.0, 0.1]
    p.widgets["batch_size"].value = 100
    p.widgets["dropout"].value = 0.1
    assert not p.on_grid and not p.widgets["train"].disabled
    seen = []
    p.widgets["progress"].observe(lambda ch: seen.append(ch["new"]), names="value")
    p.widgets["train"].click()
    assert p.on_grid and p.setting.source == "trained"
    assert seen and seen[-1] == 1.0 and seen == sorted(seen), "the bar only moves forward"
    assert (
        p.widgets["train"].disabled is True and p.widgets["progress"].layout.visibility == "hidden"
    )
    res = aw.run_experiment(p.config)  # the cache: same numbers as the panel shows
    assert res.cached
    assert list(p.figures["gap"].data[1].y) == pytest.approx(
        [res.scalars["real_gap"], res.scalars["pair_gap"], res.scalars["estimated_gap"]], rel=1e-12
    )
    np.testing.assert_allclose(
        p.figures["sharpness"].data[1].y, res.directions["sigma_g"].to_numpy(), rtol=1e-12
    )
    assert len(p.figures["sharpness"].data[6].y) == kw.SLICE_POINTS
    assert (user / "runs" / f"{p.config.key()}.parquet").exists()
    assert (user / "slices" / f"{p.config.key()}.parquet").exists()
    # a new session finds it without training
    monkeypatch.setattr(aw.experiment, "run_experiment", lambda *a, **k: pytest.fail("retrained"))
    q = kw.KnobPanel(
        small_store, mode="live", extra_store=user, start={"batch_size": 100, "dropout": 0.1}
    )
    assert q.on_grid and q.setting.key == p.setting.key
    assert q.grid.values["dropout"] == [0.0, 0.1], "trained runs do not add slider options"


def test_loss_slice_is_functional_and_curved_like_lam():
    import torch

    cfg = aw.Config.preset("smoke").replace(max_epochs=8, n_train=150, n_test=60)
    run = aw.train(cfg)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    h = 1e-4  # ReLU kinks: a larger step crosses some and the second difference jumps
    s = kw.loss_slice(run, np.array([-h, 0.0, h]))
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} was displaced"
    curvature = (s["loss"][0] - 2 * s["loss"][1] + s["loss"][2]) / h**2
    assert curvature == pytest.approx(s["lam"][0], rel=1e-4)
    an = aw.analyze(run)
    assert s["lam"][0] == pytest.approx(an.lam_max, rel=1e-8)


def test_a_failing_setting_is_reported_not_raised(small_store, tmp_path):
    p = kw.KnobPanel(small_store, mode="live", extra_store=tmp_path / "u", start={"lr": 200.0})
    assert not p.on_grid
    p.widgets["train"].click()  # the button: the failure goes to the status line
    assert "Training failed" in p.widgets["status"].value
    assert "ended with status" in p.widgets["status"].value  # diverged, or dead ReLUs
    assert not p.on_grid and p.widgets["train"].disabled is False
    with pytest.raises(RuntimeError, match="ended with status"):
        p.train()  # from code: raised


@pytest.mark.slow
def test_papermill_cli_run_is_static_small_and_trains_an_off_grid_start(tmp_path):
    """The plain `papermill` command (no AWBENCH_QUIET): static figures, no widget state,
    <= 1 MB; an off-grid start (-p) is trained in the run (profile quick) and recorded."""
    import json
    import os
    import subprocess
    import sys

    from awbench.records import read_records

    src = Path(kw.__file__).resolve().parents[1] / "notebooks" / "08_knobs.ipynb"
    out = tmp_path / "out.ipynb"
    env = {k: v for k, v in os.environ.items() if k not in ("AWBENCH_QUIET", "AWBENCH_WIDGETS")}
    env["AWBENCH_CACHE"] = str(tmp_path / "cache")
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(src),
        str(out),
        "-p",
        "profile",
        "quick",
        "-p",
        "batch_size",
        "100",
        "-p",
        "dropout",
        "0.1",
        "--cwd",
        str(src.parent),
        "--no-progress-bar",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.stat().st_size <= 2**20, f"executed notebook is {out.stat().st_size} bytes"
    nb = json.loads(out.read_text())
    assert "widgets" not in nb["metadata"]
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 4
    records = read_records(out)
    assert records["knobs.on_grid"] is True  # trained during the run
    assert records["knobs.config"] == {"batch_size": 100, "dropout": 0.1}
    assert 0 <= records["knobs.identity_error"] <= 1e-10
