"""KnobPanel driven in plain Python: every control, every option, panels against the store.

The ground truth is read straight from the store files (runs, directions and slices parquet
parts), independently of the lookups in awbench.apps.knobs.grid. The off-grid "train this setting"
path runs on a seconds-small store built here with the smoke preset.
"""

from __future__ import annotations

import html
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import yaml

import awbench as aw
from awbench.apps.knobs import effects as ke
from awbench.apps.knobs import explorer_view as ev
from awbench.apps.knobs import frontend as kf
from awbench.apps.knobs import grid as kg
from awbench.apps.knobs import panels as kp
from awbench.apps.knobs import sentences as kt
from awbench.apps.knobs import slices as ks
from awbench.apps.knobs import widgets as kw
from awbench.experiments.store import load_store
from awbench.experiments.verdicts import verdict_table, verdict_words
from awbench.formatting import number

STORE = kg.shipped_store()
NAMES = ("gap", "sharpness", "size", "curvature")  # the words of ke.QUANTITIES in a knob line


@pytest.fixture(scope="module")
def truth():
    runs, directions = load_store(STORE)
    parts = pd.concat(pd.read_parquet(p) for p in (STORE / "slices").glob("*.parquet"))
    slices = {key: s.reset_index(drop=True) for key, s in parts.groupby("key")}
    return runs, directions, slices


@pytest.fixture
def panel(tmp_path):
    return kw.KnobPanel(STORE, mode="live", extra_store=tmp_path / "user_store")


def _converged(runs: pd.DataFrame) -> pd.Series:
    """The store's ``converged`` column; ``status`` for rows of a store written before it."""
    by_status = runs["status"].eq("converged")
    if "converged" not in runs:
        return by_status
    return runs["converged"].where(runs["converged"].notna(), by_status).astype(bool)


def _point_stats(runs: pd.DataFrame, knob: str, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd (ddof 0) of ``col`` per value of ``knob`` over the converged seeds, over
    all seeds where none converged."""
    means, sds = [], []
    for _, g in runs.groupby(knob):
        ok = _converged(g)
        use = g[ok] if ok.any() else g
        means.append(use[col].mean())
        sds.append(use[col].std(ddof=0))
    return np.array(means), np.array(sds)


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
    # the sweep of the knob last moved: the other knobs held, mean and sd (ddof 0) over the
    # converged seeds
    knob = panel.last_knob
    held = [k for k in kg.KNOBS if k not in (knob, "seed")]
    sub = runs
    for k in held:
        sub = sub[sub[k] == panel.values[k]]
    mean, sd = _point_stats(sub, knob, "real_gap")
    np.testing.assert_allclose(f["sweep"].data[0].y, mean, rtol=1e-12)
    np.testing.assert_allclose(f["sweep"].data[0].error_y.array, sd, atol=1e-12)
    np.testing.assert_allclose(
        f["sweep"].data[1].y, _point_stats(sub, knob, "sharpness")[0], rtol=1e-12
    )
    here = f["sweep"].data[3]  # "you are here" on the real-gap axis
    assert list(here.y) == [row["real_gap"]]
    assert panel.options[knob][int(here.x[0])] == panel.values[knob]
    assert f["sweep"].layout.xaxis.title.text == kg.KNOB_TEXT[knob]
    assert row["key"] in panel.widgets["status"].value
    # the explorer on screen shows the same run, with no snap note
    shown = panel.explorer.state
    assert panel.explorer.payload["runs"][shown["run"]]["key"] == row["key"] and not shown["note"]


def _shown_takeaway(panel: kw.KnobPanel) -> str:
    """The takeaway the explorer shows (present mode's, looked up in its payload)."""
    st = panel.explorer.state
    return ev.takeaway_of(panel.explorer.payload, st["run"], st["knob"])


def test_shipped_store_is_small_complete_and_documented(truth):
    runs, _directions, slices = truth
    size = sum(p.stat().st_size for p in STORE.rglob("*") if p.is_file())
    assert size <= 5 * 2**20, f"the shipped store is {size / 2**20:.2f} MB"
    assert (runs["status"].isin(["converged", "max_epochs"])).all()
    assert set(slices) == set(runs["key"]), "every run has its loss slice"
    grid = kg.KnobGrid(STORE, extra=STORE)
    for knob in kg.KNOBS:
        assert len(grid.values[knob]) >= 2, f"{knob} has one value only"
    readme = (STORE / "README.md").read_text()
    assert "awbench sweep" in readme and "python -m awbench.apps.knobs.widgets" in readme
    # the slice's curvature is the store's lam_max, its centre the clean training loss
    for key, s in slices.items():
        row = runs[runs["key"] == key].iloc[0]
        assert s["lam"].iloc[0] == pytest.approx(row["lam_max"], rel=1e-8)
        mid = s.iloc[len(s) // 2]
        assert mid["t"] == 0.0 and mid["loss"] == pytest.approx(row["train_loss"], rel=1e-9)


@pytest.mark.slow
def test_every_slider_over_every_option_matches_the_store(panel, truth):
    default = {k: panel.values[k] for k in kg.KNOBS}
    reference = {
        n: [np.array(t.y, dtype=float).copy() for t in panel.figures[n].data] for n in kw.PANELS
    }
    _assert_panels_match(panel, truth)
    payload = panel.explorer.payload
    for knob in kg.KNOBS:
        assert payload["options"][knob] == panel.grid.values[knob]
        # visit every option, the default last
        for value in [v for v in panel.options[knob] if v != default[knob]] + [default[knob]]:
            panel.explorer.browser_move(knob, value)  # what a move in the browser sends
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
        panel.set(**{knob: default[knob]})
    panel.reset()
    assert panel.values == default


def test_combination_and_reset(panel, truth):
    panel.explorer.browser_move("batch_size", 400)
    panel.explorer.browser_move("weight_decay", 0.02)  # crossed with batch size: on the grid
    assert panel.on_grid and panel.last_knob == "weight_decay"
    _assert_panels_match(panel, truth)
    panel.explorer.browser_move("seed", 1)
    _assert_panels_match(panel, truth)
    panel.explorer.browser_move("label_noise", 0.1)  # only moved alone: off the grid
    # the explorer snapped to the nearest grid point and says so; the panel keeps what was
    # asked for, to train it
    assert panel.values["label_noise"] == 0.1 and panel.values["batch_size"] == 400
    assert not panel.on_grid
    note = panel.explorer.state["note"]
    assert "label noise ρ = 0.1" in note and "snapped to the nearest grid point" in note
    shown = ev.run_values(panel.explorer.payload, panel.explorer.state["run"])
    assert shown["label_noise"] == 0.1
    assert panel.widgets["train"].disabled is False
    assert "Off the grid" in panel.widgets["status"].value
    assert len(panel.figures["sharpness"].data[1].y) == 0, "no stale data for an off-grid setting"
    assert len(panel.figures["sharpness"].data[0].y) > 0, "the default stays as the reference"
    panel.reset()
    assert panel.values == panel.grid.defaults and panel.on_grid
    assert panel.widgets["train"].disabled is True
    _assert_panels_match(panel, truth)


def test_config_text_pastes_into_python_papermill_and_a_sweep(panel, tmp_path):
    panel.set(batch_size=100, weight_decay=0.01, seed=1)
    py, pm, sweep = panel.config_text.splitlines()
    scope = {"aw": aw}
    exec(py, scope)  # noqa: S102 - the point: the text box pastes into Python
    assert scope["cfg"] == panel.config
    args = shlex.split(pm)
    params = {args[i + 1]: args[i + 2] for i, a in enumerate(args) if a == "-p"}
    assert params == {"batch_size": "100", "weight_decay": "0.01", "seed": "1"}
    assert panel.grid.config(params) == panel.config  # papermill hands strings; Config coerces
    grid = yaml.safe_load(sweep.split("# grid.yaml: ", 1)[1])
    from awbench.experiments.planning import plan_sweep

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
    assert kf.frontend() == "live"
    monkeypatch.setenv("AWBENCH_WIDGETS", "static")
    assert kf.frontend() == "static"
    monkeypatch.delenv("AWBENCH_WIDGETS")
    monkeypatch.setenv("AWBENCH_QUIET", "1")
    assert kf.frontend() == "static"
    monkeypatch.delenv("AWBENCH_QUIET")
    assert kf.frontend() == "static"  # no kernel: plain Python


def test_grid_effects_and_sweep_figures():
    grid = kg.KnobGrid(STORE, extra=STORE)
    effects = ke.grid_effects(grid)
    assert list(effects["knob"]) == list(kg.KNOBS[:-1])
    assert effects[["real_gap_change", "sharpness_change", "size_change"]].notna().all().all()
    for knob in kg.KNOBS[:-1]:
        fig = kp.sweep_figure(grid, knob)
        assert len(fig.data[0].y) == len(grid.values[knob])


def _line(runs: pd.DataFrame, knob: str, held: dict) -> pd.DataFrame:
    """The runs of ``knob``'s line with every other knob but the seed at ``held``, read from
    the store's own rows."""
    at = np.ones(len(runs), dtype=bool)
    for k in kg.KNOBS:
        if k not in (knob, "seed"):
            at &= (runs[k] == held[k]).to_numpy()
    return runs[at]


@pytest.mark.parametrize("held", [{}, {"batch_size": 400}, {"weight_decay": 0.02}])
def test_the_panels_verdicts_are_verdict_table_on_the_same_runs(truth, held):
    runs = truth[0]
    grid = kg.KnobGrid(STORE, extra=STORE)
    values = {**grid.defaults, **held}
    family = len(kg.KNOBS[:-1]) * len(ke.QUANTITIES)
    assert family == ke.FAMILY == 28
    effects = ke.grid_effects(grid, values).set_index("knob")
    md = kt.effects_takeaway(ke.grid_effects(grid, values))
    for knob in kg.KNOBS[:-1]:
        line = _line(runs, knob, values)
        direct = verdict_table({knob: line}, ke.QUANTITIES, family=family)
        panel = ke.line_verdicts(grid, knob, values)
        cols = [c for c in direct.columns if c not in ("left_out", "values_without_converged")]
        pd.testing.assert_frame_equal(panel[cols], direct[cols])
        if line[knob].nunique() < 2:
            assert effects.loc[knob, "values"].count(",") == 0
            continue
        for q, (_, r) in zip(ke.QUANTITIES, direct.iterrows()):
            assert effects.loc[knob, f"{q}_verdict"] == r["verdict"]
            assert effects.loc[knob, f"{q}_words"] == verdict_words(r)
        words = "; ".join(f"{n} {verdict_words(r)}" for n, (_, r) in zip(NAMES, direct.iterrows()))
        label = kg.KNOB_TEXT[knob]
        values_text = ", ".join(f"{v:g}" for v in sorted(line[knob].unique()))
        assert f"- **{label}** {values_text}: {words}" in md
        # 3 seeds per point: whatever the change, no up or down after the 28-cell correction
        assert set(direct["verdict"]) <= {"inconclusive", "no clear change"}
        assert (direct["n_seeds"] == 3).all()
    assert "The grid has 3 seeds per point" in md and "mostly" not in md


def test_grid_effects_is_cached_by_the_runs_of_each_line():
    grid = kg.KnobGrid(STORE, extra=STORE)
    first = ke.grid_effects(grid)
    tables = [ke.line_verdicts(grid, k, grid.defaults) for k in kg.KNOBS[:-1]]
    again = [ke.line_verdicts(grid, k, grid.defaults) for k in kg.KNOBS[:-1]]
    assert all(a is b for a, b in zip(tables, again)), "a second call recomputes nothing"
    pd.testing.assert_frame_equal(ke.grid_effects(grid), first)


@pytest.mark.slow
def test_values_beyond_the_paper_are_flagged_on_the_slider_and_in_the_takeaway(tmp_path):
    pytest.importorskip("ipywidgets")
    p = kw.KnobPanel(STORE, mode="live", extra_store=tmp_path / "u")
    payload = p.explorer.payload
    labels = dict(zip(payload["options"]["lr"], payload["optionLabels"]["lr"]))
    assert labels[0.2] == "0.2 ⚠" and labels[0.05] == "0.05" and labels[0.1] == "0.1"
    note = "learning rate α 0.2 is beyond the paper's range (0.005–0.1)"
    p.explorer.browser_move("lr", 0.2)
    assert note in kw.takeaway(p) and html.escape(note) in _shown_takeaway(p)
    p.explorer.browser_move("lr", 0.05)
    assert "Beyond the paper" not in kw.takeaway(p)
    assert "Beyond the paper" not in _shown_takeaway(p)


# --- off the grid: train this setting ----------------------------------------------------------


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """Three smoke runs (batch 25, batch 100, dropout 0.1) and their slices: seconds. The
    paper's stopping rule within 12 epochs: every run ends at its budget, not converged."""
    import torch

    from awbench.experiments.sweep import run_sweep

    path = tmp_path_factory.mktemp("small_knobs_store")
    base = aw.Config.preset("smoke").replace(
        max_epochs=12, n_train=200, n_test=100, stop_loss=1e-3, stop_acc=0.99, stop_window=9
    )
    run_sweep(
        [{"batch_size": [25, 100]}, {"dropout": [0.1]}],
        store=path,
        base=base,
        seeds=1,
        workers=1,
        quiet=True,
    )
    torch.set_num_threads(1)
    assert kg.add_slices(path, log=lambda *_: None) == 3
    return path


def test_a_packed_store_keeps_what_the_panels_read(small_store, tmp_path):
    """pack_store (the shipped grid's layout): one part per table, the directions thinned to
    the ranks a spectrum shows and the top eigenvalues' rows; the panels read the same."""
    packed = tmp_path / "packed"
    shutil.copytree(small_store, packed)
    assert kg.pack_store(packed) > 0
    assert sorted(p.name for p in packed.glob("*/*.parquet")) == ["_packed.parquet"] * 3
    assert kg.add_slices(packed, log=lambda *_: None) == 0, "packed slices count as there"
    full = kg.KnobGrid(small_store, extra=tmp_path / "none")
    thin = kg.KnobGrid(packed, extra=tmp_path / "none")
    assert len(thin.runs) == len(full.runs) == 3
    for values in ({"batch_size": 25}, {"batch_size": 100}, {"dropout": 0.1}):
        a, b = full.lookup(values), thin.lookup(values)
        assert a.scalars == b.scalars and a.key == b.key
        np.testing.assert_array_equal(a.slice_loss, b.slice_loss)
        np.testing.assert_allclose(b.top_lam, a.top_lam, rtol=1e-6)
        shown = kg.thin_ranks(len(a.rank))
        assert len(b.rank) <= len(shown) + kg.TOP_EIGENVALUES < len(a.rank)
        at = np.searchsorted(b.rank, a.rank[shown])
        np.testing.assert_array_equal(b.rank[at], a.rank[shown])
        np.testing.assert_allclose(b.sigma_g[at], a.sigma_g[shown], rtol=1e-6)
        np.testing.assert_allclose(b.sigma_w[at], a.sigma_w[shown], rtol=1e-6)


def test_train_this_setting(small_store, tmp_path, monkeypatch):
    user = tmp_path / "user_store"
    p = kw.KnobPanel(small_store, mode="live", extra_store=user)
    assert p.grid.values["batch_size"] == [25, 100] and p.grid.values["dropout"] == [0.0, 0.1]
    p.explorer.browser_move("batch_size", 100)
    p.explorer.browser_move("dropout", 0.1)  # snaps back to batch 25 in the explorer
    assert p.explorer.state["note"] and p.values == {
        **p.grid.defaults,
        "batch_size": 100,
        "dropout": 0.1,
    }
    assert not p.on_grid and not p.widgets["train"].disabled
    seen, said = [], []
    p.widgets["progress"].observe(lambda ch: seen.append(ch["new"]), names="value")
    p.widgets["status"].observe(lambda ch: said.append(ch["new"]), names="value")
    p.widgets["train"].click()
    assert p.on_grid and p.setting.source == "trained"
    # the trained run joined the explorer's grid and is on screen, with no snap note
    shown = p.explorer.state
    assert p.explorer.payload["runs"][shown["run"]]["key"] == p.setting.key
    assert not shown["note"] and p.explorer.widget.data == p.explorer.payload
    assert seen and seen[-1] == 1.0 and seen == sorted(seen), "the bar only moves forward"
    assert any("epoch 1 of at most 12, train loss" in text for text in said), said
    # the smoke grid stops at 12 epochs, far from the stopping rule: so does the trained run
    assert p.setting.status == "max_epochs" and not p.setting.converged
    assert "not converged: stopped at the budget of 12 epochs" in p.widgets["status"].value
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
    assert len(p.figures["sharpness"].data[6].y) == ks.SLICE_POINTS
    assert (user / "runs" / f"{p.config.key()}.parquet").exists()
    assert (user / "slices" / f"{p.config.key()}.parquet").exists()
    # a new session finds it without training
    monkeypatch.setattr(
        aw.experiments.experiment, "run_experiment", lambda *a, **k: pytest.fail("retrained")
    )
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
    s = ks.loss_slice(run, np.array([-h, 0.0, h]))
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

    from awbench.experiments.records import read_records

    src = Path(kw.__file__).resolve().parents[3] / "notebooks" / "08_knobs.ipynb"
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
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
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


def test_panel_training_leaves_the_training_modules_alone(small_store, tmp_path, monkeypatch):
    """The panel follows training through on_epoch: the progress reports that come from inside
    the epoch loop see the training modules' own ``progress``, so nothing was swapped."""
    import importlib

    from awbench import progress as progress_module

    # a fresh cache, so that this combination trains even after test_train_this_setting
    monkeypatch.setenv("AWBENCH_CACHE", str(tmp_path / "cache"))
    modules = [
        importlib.import_module(f"awbench.training.{m}") for m in ("stacked", "multilearner")
    ]
    assert all(m.progress is progress_module.progress for m in modules)
    grid = kg.KnobGrid(small_store, extra=tmp_path / "u")
    reports = []

    def report(fraction: float, text: str) -> None:
        reports.append((fraction, text, [m.progress for m in modules]))

    grid.train({**grid.defaults, "batch_size": 100, "dropout": 0.1}, on_progress=report)
    during = [r for r in reports if r[1].startswith("training: epoch")]
    assert during, "no report from inside the epoch loop"
    assert during[0][1].startswith("training: epoch 1 of at most 12, train loss")
    for _, _, seen in reports:
        assert all(f is progress_module.progress for f in seen)
    assert all(m.progress is progress_module.progress for m in modules)
    fractions = [f for f, _, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


# --- convergence: only a converged network is a result ------------------------------------


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory):
    """Smoke runs, three seeds a point: the default (lr 0.3) and dropout 0.1 meet the stopping
    rule at epoch 9 (stop_window), lr 0.001 runs into max_epochs=12. The smoke net learns
    slowly (loss about 1.1 after 9 epochs at lr 0.3, 2.3 at lr 0.001), hence stop_loss 1.5
    and no accuracy part. Seed 2 of dropout 0.1 is then rewritten as a run that hit the
    budget with absurd numbers, which a mean of the converged seeds must not see."""
    from awbench.experiments.sweep import run_sweep

    path = tmp_path_factory.mktemp("mixed_knobs_store")
    base = aw.Config.preset("smoke").replace(
        max_epochs=12,
        n_train=200,
        n_test=100,
        lr=0.3,
        stop_loss=1.5,
        stop_acc=0.0,
        stop_window=9,
        widths=(20, 20),
        weight_decay_epochs=20,
    )
    run_sweep(
        [{"lr": [0.3, 0.001]}, {"dropout": [0.1]}],
        store=path,
        base=base,
        seeds=3,
        workers=1,
        quiet=True,
    )
    runs, _ = load_store(path)
    assert runs.groupby("lr")["converged"].agg(list).to_dict() == {
        0.001: [False] * 3,
        0.3: [True] * 6,
    }, "the smoke runs no longer split as this fixture needs"
    fake = _row(runs, {"dropout": 0.1, "seed": 2})
    part = path / "runs" / f"{fake['key']}.parquet"
    row = pd.read_parquet(part)
    row["status"], row["converged"], row["epochs"] = "max_epochs", False, 12
    row["final_train_loss"] = 2.0
    row[["real_gap", "sharpness", "size"]] = 100.0
    row.to_parquet(part, index=False)
    return path


def _warnings(status_html: str) -> list[str]:
    """The texts of the status line's warning lines."""
    parts = status_html.split('<div class="awbench-warning"')[1:]
    return [part.split(">", 1)[1].split("</div>", 1)[0] for part in parts]


def test_warning_for_a_setting_that_hit_the_budget(small_store, tmp_path):
    runs, _ = load_store(small_store)
    p = kw.KnobPanel(small_store, mode="live", extra_store=tmp_path / "u")
    row = _row(runs, p.values)
    assert row["status"] == "max_epochs" and not row["converged"]
    s = p.setting
    assert not s.converged and s.epochs == s.epoch_budget == 12
    assert s.final_train_loss == row["final_train_loss"] > 1e-3
    status = p.widgets["status"].value
    warning = _warnings(status)
    assert len(warning) == 1 and warning[0] == (
        "⚠ not converged: stopped at the budget of 12 epochs with train loss "
        f"{number(row['final_train_loss'])} &gt; {s.config.stop_loss:g} — its numbers are not "
        "a result"
    )
    assert "color:#b00020" in status, "the warning is coloured"
    assert f"final train loss {number(row['final_train_loss'])}" in status
    assert f"train accuracy {100 * row['final_train_acc']:.2f} %" in status
    assert "after 12 epochs (budget 12)" in status
    for name in ("sharpness", "size", "gap"):
        assert "⚠ NOT CONVERGED" in p.figures[name].layout.title.text, name
    text = kw.takeaway(p)
    assert text.startswith("**⚠ Not converged:** this run stopped at the budget of 12 epochs")
    assert "⚠ Not converged" in _shown_takeaway(p)


def test_no_warning_for_converged_runs_and_seeds_counted(mixed_store, tmp_path):
    runs, _ = load_store(mixed_store)
    p = kw.KnobPanel(mixed_store, mode="live", extra_store=tmp_path / "u")
    row = _row(runs, p.values)
    assert row["converged"] and row["epochs"] == 9
    status = p.widgets["status"].value
    assert _warnings(status) == [] and "⚠" not in status
    assert "converged</b> after 9 epochs (budget 12)" in status
    assert f"final train loss {number(row['final_train_loss'])}" in status
    assert "3/3 seeds converged at this point" in status
    for name in kw.PANELS:
        assert "⚠" not in p.figures[name].layout.title.text, name
    text = kw.takeaway(p)
    # the smoke base's lr 0.3 lies beyond the paper's 0.005-0.1: that note is the only warning
    assert text.count("⚠") == 1 and "3/3 seeds converged" in text
    assert text.startswith("**⚠ Beyond the paper:** learning rate α 0.3 is beyond the paper's")

    p.set(lr=0.001)  # every seed hit max_epochs
    status = p.widgets["status"].value
    loss = _row(runs, p.values)["final_train_loss"]
    assert _warnings(status) == [
        (
            f"⚠ not converged: stopped at the budget of 12 epochs with train loss "
            f"{number(loss)} &gt; 1.5 — its numbers are not a result"
        ),
        (
            "⚠ none of the 3 seeds at this point converged: the grid&#x27;s numbers here "
            "are not a result"
        ),
    ]
    assert "0/3 seeds converged at this point" in status
    assert "⚠ NOT CONVERGED" in p.figures["gap"].layout.title.text
    text = kw.takeaway(p)
    assert text.startswith("**⚠ Not converged:**") and "None of the 3 seeds" in text


def test_grid_means_leave_unconverged_seeds_out(mixed_store, tmp_path):
    runs, _ = load_store(mixed_store)
    grid = kg.KnobGrid(mixed_store, extra=tmp_path / "u")
    at = runs[(runs["dropout"] == 0.1) & (runs["lr"] == 0.3)].sort_values("seed")
    good = at[at["converged"]]
    assert list(good["seed"]) == [0, 1]

    c = grid.curve("dropout", grid.defaults).set_index("dropout")
    assert (c.loc[0.1, "n"], c.loc[0.1, "seeds"], c.loc[0.1, "converged"]) == (2, 3, 2)
    for col in ("real_gap", "sharpness", "size"):
        assert c.loc[0.1, f"{col}_mean"] == pytest.approx(good[col].mean(), rel=1e-12)
        assert c.loc[0.1, f"{col}_sd"] == pytest.approx(good[col].std(ddof=0), abs=1e-12)
    # no seed converged: still on the curve, the mean of all seeds, flagged by converged == 0
    c = grid.curve("lr", grid.defaults).set_index("lr")
    slow = runs[runs["lr"] == 0.001]
    assert (c.loc[0.001, "n"], c.loc[0.001, "converged"]) == (3, 0)
    assert c.loc[0.001, "real_gap_mean"] == pytest.approx(slow["real_gap"].mean(), rel=1e-12)

    point = grid.lookup({"dropout": 0.1}).point
    assert (
        point.seeds == (0, 1, 2)
        and point.converged_seeds == (0, 1)
        and point.text == ("2/3 seeds converged")
    )
    assert point.scalars["real_gap"] == pytest.approx(good["real_gap"].mean(), rel=1e-12)
    assert grid.point({"dropout": 0.1, "seed": 2}) == point
    assert grid.lookup({"dropout": 0.1, "seed": 2}).point == point

    p = kw.KnobPanel(mixed_store, mode="live", extra_store=tmp_path / "u")
    p.set(dropout=0.1)
    sweep = p.figures["sweep"].data[0]
    assert sweep.y[1] == pytest.approx(good["real_gap"].mean(), rel=1e-12)
    assert "2/3 converged" in sweep.customdata[1]
    status = p.widgets["status"].value
    assert "2/3 seeds converged at this point" in status
    assert _warnings(status) == [
        (
            "⚠ 1/3 seeds at this point did not converge (seed 2): the grid&#x27;s means here "
            "average the 2 that did"
        )
    ]
    p.set(seed=2)  # the unconverged seed itself
    assert _warnings(p.widgets["status"].value)[0].startswith("⚠ not converged")
    text = kw.takeaway(p)
    assert text.startswith("**⚠ Not converged:**") and "the means of the 2 that did" in text
    assert "real gap 100 " in text, "its own numbers are quoted, after the warning"

    effects = ke.grid_effects(grid).set_index("knob")
    lo = runs[(runs["dropout"] == 0.0) & (runs["lr"] == 0.3)]["real_gap"].mean()
    assert effects.loc["dropout", "real_gap_change"] == pytest.approx(
        (good["real_gap"].mean() - lo) / abs(lo), rel=1e-10
    )
    assert effects.loc["dropout", "left_out"] == 0
    assert np.isnan(effects.loc["lr", "real_gap_change"]), "one converged point: no comparison"
    assert (effects.loc["lr", "left_out"], effects.loc["lr", "left_out_values"]) == (1, "0.001")
    md = kt.effects_takeaway(ke.grid_effects(grid))
    assert "(1 unconverged point left out: 0.001)" in md and "**⚠ 1 point left out:**" in md
    line = md.split("- **dropout d** ")[1].split("\n")[0]
    assert line.startswith("0, 0.1: gap ") and line.endswith("(1 unconverged run left out)")
    # the verdicts are verdict_table's over the same runs (lr 0.3): seed 2 at 0.1 left out
    table = verdict_table({"dropout": runs[runs["lr"] == 0.3]}, ke.QUANTITIES, family=28)
    assert (table["n_left_out"] == 1).all() and (table["n_runs"] == 5).all()
    words = [f"{name} {verdict_words(r)}" for name, (_, r) in zip(NAMES, table.iterrows())]
    assert "; ".join(words) in line and "mostly" not in md


def test_a_store_without_the_convergence_columns_falls_back_to_status(mixed_store, tmp_path):
    import shutil

    old = tmp_path / "old_store"
    shutil.copytree(mixed_store, old)
    for part in (old / "runs").glob("*.parquet"):
        row = pd.read_parquet(part)
        row.drop(
            columns=["converged", "final_train_loss", "final_train_acc", "epoch_budget"]
        ).to_parquet(part, index=False)
    runs, _ = load_store(old)
    assert "converged" not in runs
    grid = kg.KnobGrid(old, extra=tmp_path / "u")
    got = grid.runs.set_index("key")
    want = runs.set_index("key").loc[got.index]
    assert (got["converged"] == want["status"].eq("converged")).all()
    np.testing.assert_array_equal(got["final_train_loss"], want["train_loss"])
    assert (got["epoch_budget"] == 12).all() and got["final_train_acc"].isna().all()
    p = kw.KnobPanel(old, mode="static", extra_store=tmp_path / "u", start={"lr": 0.001})
    status = p._status_html()
    assert "train accuracy n/a (not in this store)" in status
    assert _warnings(status)[0].startswith("⚠ not converged: stopped at the budget of 12 epochs")


def test_takeaway_follows_the_sliders(mixed_store, tmp_path):
    from awbench.apps.knobs import explorer_text as pt

    p = kw.KnobPanel(mixed_store, mode="live", extra_store=tmp_path / "u")
    first = _shown_takeaway(p)
    assert first == pt.takeaway(p.setting, p.reference, p.values, p.grid.defaults)
    assert "The default setting" in first
    p.explorer.browser_move("dropout", 0.1)
    moved = _shown_takeaway(p)
    line = ke.effect(p.grid, "dropout", p.values)[0]
    assert moved == pt.takeaway(p.setting, p.reference, p.values, p.grid.defaults, line, "dropout")
    assert "<b>dropout d = 0.1</b>" in moved and "Along dropout d: gap " in moved
    assert "3 seeds per point are too few for most verdicts" in moved
    p.set(dropout=0.0, lr=0.001)  # from code: the explorer follows
    assert "⚠ Not converged" in _shown_takeaway(p)
    p.reset()
    assert _shown_takeaway(p) == first
    # the effects of every knob, held where the panel is
    effects = ke.grid_effects(p.grid, {"lr": 0.001})
    assert effects.attrs["held"] == "at lr=0.001"
    assert kt.effects_takeaway(effects).startswith("Along each knob of the grid (other knobs at lr")
