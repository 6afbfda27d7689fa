"""What sweeps are made of: the paper's values per knob, the profiles, the sweep presets,
the knob-panel grid, and how n_train and label-noise sweeps fit a dataset's training pool.

The sweep presets (``awbench sweep --preset``), the notebooks' profiles and the report all
read from here, so a value changed here changes everywhere.

Profiles: ``smoke`` (seconds: the smoke preset, 2 seeds, 2 values per knob; tests),
``quick`` (the paper preset, 10 seeds, 3 values per knob; ``make reproduce``) and ``paper``
(the paper's values with 10 seeds, scaled to the dataset's training pool).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from awbench.config import Config, ConfigError
from awbench.data import n_total_train

# docs/science.md#6-sweeps, one knob at a time (n_train and label_noise are scaled, see below).
PAPER_VALUES: dict[str, tuple] = {
    "batch_size": (25, 100, 200, 400),
    "lr": (0.005, 0.01, 0.02, 0.05, 0.1),
    "init_scale": (4.0, 5.0, 6.0, 7.0),
    "dropout": (0.0, 0.05, 0.1, 0.2, 0.3),
    "weight_decay": (0.0, 0.005, 0.01, 0.02),
    "label_noise": (0.0, 0.091, 0.13, 0.167, 0.2),
    "n_train": (4000, 8000, 16000, 32000),  # 1x, 2x, 4x, 8x the base training set
}

# Training samples a dataset can supply (clean + corrupted); generated datasets grow on demand.
# The bundled digits: 1797 images, 500 kept for testing.
POOL_SIZES = {"digits": 1297, "mnist": 60000, "fashion_mnist": 60000}


@dataclass(frozen=True)
class Profile:
    """Values per knob (``n_train``: multiples of the base's n_train, see
    :func:`n_train_values`), seeds per value, and sweep processes."""

    values: Mapping[str, tuple]
    seeds: int
    workers: int
    # Knobs whose values are not a subset of the paper's, and why.
    beyond_paper: Mapping[str, str] = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    # Values whose runs meet the smoke preset's (looser) stopping rule, so that the
    # converged-only statistics have numbers to work on in the tests. In-kernel sweeps: a
    # process pool costs seconds to start (each worker imports torch), more than a smoke sweep.
    "smoke": Profile(
        values={
            "batch_size": (25, 50),
            "lr": (0.05, 0.2),
            "init_scale": (1.0, 4.0),
            "dropout": (0.0, 0.2),
            "weight_decay": (0.0, 0.02),
            "label_noise": (0.0, 0.1),
            "n_train": (0.5, 1),
        },
        seeds=2,
        workers=1,
    ),
    # Three of the paper's values per knob: the others are left out for time (all converge
    # under the auto budget; lr 0.005 needs about 5150 of its 6169 epochs), and the report
    # lists them. Ten seeds per value, from the power analysis of bench/verdict_power.py
    # (docs/science.md#7-claims-and-hypotheses): with 5, a within-seed permutation test cannot
    # give a saturating effect (a big first step, then a plateau) a verdict however large it
    # is. The seeds of a value train together as one stacked model.
    "quick": Profile(
        values={
            "batch_size": (25, 100, 400),
            "lr": (0.01, 0.05, 0.1),
            "init_scale": (4.0, 5.0, 7.0),
            "dropout": (0.0, 0.1, 0.3),
            "weight_decay": (0.0, 0.01, 0.02),
            "label_noise": (0.0, 0.091, 0.2),
            "n_train": (0.5, 1, 2),
        },
        seeds=10,
        workers=2,
    ),
    "paper": Profile(
        values={**PAPER_VALUES, "n_train": (1, 2, 4, 8)},  # the paper's 4000 ... 32000 from 4000
        seeds=10,
        workers=2,
    ),
}

SWEEP_PRESETS = (*PAPER_VALUES, "knobs")
# The quantities every knob's verdict is given for (awbench.experiments.verdicts.QUANTITIES).
VERDICT_QUANTITIES = ("sharpness", "size", "curvature", "sharp_gap", "flat_gap", "real_gap")
KNOBS_SEEDS = 3  # the knob panel averages converged seeds at every grid point
# The knobs of the knob grid's cross (knobs_grid). The paper's values but learning rate 0.2,
# beyond its 0.005-0.1 (the explorer flags it): 0.02, on the paper's side, leaves batch 400
# short of the stopping rule within the automatic budget (loss ~0.003 at 12346 epochs).
KNOBS_CROSSED: dict[str, tuple] = {
    "batch_size": (25, 100, 400),
    "lr": (0.05, 0.1, 0.2),
    "weight_decay": (0.0, 0.01, 0.02),
    "dropout": (0.0, 0.1, 0.2),
}


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(
            f"profile={profile!r} is not allowed: expected one of {', '.join(map(repr, PROFILES))}"
        )
    return profile


def verdict_family(profile: str) -> int:
    """The number of (knob, quantity) cells whose verdicts one profile's report corrects for:
    every knob of the profile times every verdict quantity. A notebook that sweeps two of the
    knobs corrects for the same family, so it and the report say the same thing."""
    return len(PROFILES[check_profile(profile)].values) * len(VERDICT_QUANTITIES)


def n_train_values(base: Config, multiples: Sequence[float]) -> list[int]:
    """``multiples`` of the base's n_train when the dataset's pool supplies the largest
    (paper-mnist: 4000 ... 32000), else the same ratios with the largest at the clean pool
    (digits: 162, 324, 648, 1297)."""
    pool = POOL_SIZES.get(base.dataset)
    top = max(multiples)
    if pool is None or n_total_train(round(base.n_train * top), base.label_noise) <= pool:
        return [max(10, round(base.n_train * m)) for m in multiples]
    clean_pool = int(pool * (1.0 - base.label_noise))
    return [max(10, round(clean_pool * m / top)) for m in multiples]


def label_noise_n_train(base: Config, noise_values: Sequence[float]) -> int:
    """The clean n_train of a label-noise sweep over ``noise_values``: the base's, lowered
    for the whole sweep when the pool cannot supply n_train / (1 - max rho) samples (the
    paper keeps the clean count fixed across rho). Rounded down to a multiple of 100 (10
    below 1000): 1000 on the digits."""
    pool = POOL_SIZES.get(base.dataset)
    worst = max(noise_values, default=0.0)
    if pool is None or n_total_train(base.n_train, worst) <= pool:
        return base.n_train
    # The epsilon keeps a product such as 700 * (1 - 0.3) = 489.99999999999994 at 490.
    fits = math.floor(pool * (1.0 - worst) + 1e-9)
    step = 100 if fits >= 1000 else 10
    n = fits // step * step
    while n > step and n_total_train(n, worst) > pool:
        n -= step
    return n


def knob_values(knob: str, profile: str, base: Config) -> list:
    """``profile``'s values of ``knob`` for ``base``'s dataset (n_train scaled to its pool)."""
    values = PROFILES[check_profile(profile)].values
    if knob not in values:
        raise ValueError(f"knob={knob!r} has no grid: expected one of {', '.join(values)}")
    if knob == "n_train":
        return n_train_values(base, values[knob])
    return list(values[knob])


def knobs_grid(base: Config) -> tuple[list[dict[str, list]], dict[str, Any]]:
    """The grid behind the sliders of notebook 08 (``awbench.apps.knobs.widgets.KnobPanel``).

    Batch size, learning rate, weight decay and dropout crossed (:data:`KNOBS_CROSSED`, three
    values each, so that moving any of them from any point of the cross is a lookup, not a
    snap), then label noise, n_train and the init scale moved alone from the default. Runs
    use half the base training set so that one run takes seconds, and the base's budget
    (auto: trained to the stopping rule); on "paper" this is the shipped
    ``awbench/apps/knobs/store``.
    """
    n = base.n_train
    fixed = {"n_train": max(10, n // 2)}
    grid = [
        {k: list(v) for k, v in KNOBS_CROSSED.items()},
        {"label_noise": [0.1, 0.2]},
        {"n_train": [max(10, n // 4), n]},
        {"init_scale": [2.0, 4.0]},
    ]
    return grid, fixed


def preset_grid(name: str, base: Config) -> tuple[dict[str, list] | list, dict[str, Any]]:
    """``(grid, fixed)`` of sweep preset ``name``: the paper profile's values of the knob
    scaled to ``base``'s dataset (:func:`n_train_values`, and ``fixed`` n_train from
    :func:`label_noise_n_train` when the label-noise sweep must shrink it), or the
    :func:`knobs_grid` for ``knobs``."""
    if name not in SWEEP_PRESETS:
        raise ConfigError(
            f"sweep preset {name!r} is not known: expected one of {', '.join(SWEEP_PRESETS)}"
        )
    if name == "knobs":
        return knobs_grid(base)
    values = knob_values(name, "paper", base)
    fixed: dict[str, Any] = {}
    if name == "label_noise":
        n = label_noise_n_train(base, values)
        if n != base.n_train:
            fixed["n_train"] = n
    return {name: values}, fixed
