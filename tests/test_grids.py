"""Grids: the numbers the digits get, profile values Config accepts, quick within the paper's,
the knob grid is the shipped store's, and sweep presets and notebooks agree."""

import pytest
import yaml

from awbench.apps.knobs.grid import shipped_store
from awbench.config import Config
from awbench.experiments import grids, notebook_params
from awbench.experiments.planning import check_data_size

PAPER = Config.preset("paper")
KNOBS = tuple(grids.PAPER_VALUES)


def test_digits_scaling():
    assert grids.knob_values("n_train", "paper", PAPER) == [162, 324, 648, 1297]
    assert grids.knob_values("n_train", "quick", PAPER) == [324, 648, 1297]
    assert grids.label_noise_n_train(PAPER, grids.PAPER_VALUES["label_noise"]) == 1000
    assert (
        grids.label_noise_n_train(PAPER, grids.knob_values("label_noise", "quick", PAPER)) == 1000
    )
    assert grids.preset_grid("n_train", PAPER)[0] == {"n_train": [162, 324, 648, 1297]}
    assert grids.preset_grid("label_noise", PAPER)[1] == {"n_train": 1000}


def test_label_noise_shrink_survives_rounding(monkeypatch):
    # 700 * (1 - 0.3) is 489.99999999999994 in floating point; 490 / 0.7 = 700 fits.
    monkeypatch.setitem(grids.POOL_SIZES, "digits", 700)
    assert grids.label_noise_n_train(PAPER, [0.0, 0.3]) == 490


@pytest.mark.parametrize("profile", list(grids.PROFILES))
@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_profile_values_are_valid_configs(profile, dataset):
    base = notebook_params.base_config(profile, dataset)
    for knob in KNOBS:
        values = grids.knob_values(knob, profile, base)
        assert values, knob
        run_base = base
        if knob == "label_noise":
            run_base = base.replace(n_train=grids.label_noise_n_train(base, values))
        for v in values:
            check_data_size(run_base.replace(**{knob: v}))


def test_quick_is_within_the_papers_values():
    quick = grids.PROFILES["quick"]
    for knob in KNOBS:
        if knob in quick.beyond_paper:
            continue
        paper = grids.knob_values(knob, "paper", PAPER)
        assert set(grids.knob_values(knob, "quick", PAPER)) <= set(paper), knob
    assert set(quick.beyond_paper) <= set(KNOBS)


def test_knobs_grid_is_the_shipped_grid():
    shipped = shipped_store() / "grid.yaml"
    grid, fixed = grids.knobs_grid(PAPER)
    assert grid == yaml.safe_load(shipped.read_text(encoding="utf-8"))
    assert fixed == {"n_train": 648}


@pytest.mark.parametrize("preset", ["paper", "paper-mnist"])
def test_sweep_presets_and_notebooks_agree(preset):
    base = Config.preset(preset)
    for knob in KNOBS:
        grid, fixed = grids.preset_grid(knob, base)
        assert notebook_params.knob_grid(knob, "paper", base) == grid[knob], knob
        if knob == "label_noise":
            assert grids.label_noise_n_train(base, grid[knob]) == fixed.get("n_train", base.n_train)
