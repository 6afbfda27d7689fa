"""The sections every knob notebook (04-07) is made of, so that a notebook is one call per
knob under its own heading.

A knob's section: its sweep through the shared store, the mean ± sd per value, and three
figures each followed by the sentence that reads it (the gap against the knob, which factor
moved, every run in the sharpness-size plane). The closing section over every run of the
notebook: the estimated against the actual gap, and each knob's effects as a figure and a
table. Outputs are shown in the order a reader meets them, as separate outputs of the
cell, so that the report reads them as it reads any other figure, table or takeaway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from IPython.display import Markdown, display

from awbench.config import Config
from awbench.experiments.knob_sweeps import effects_table, summary_table, sweep
from awbench.viz.gap_plots import estimated_vs_actual, knob_effects
from awbench.viz.knob_plots import factor_plane, factors_vs_knob, gap_vs_knob
from awbench.viz.knob_takeaways import (
    estimate_takeaway,
    factor_takeaway,
    gap_takeaway,
    plane_takeaway,
)


def knob_outputs(runs: pd.DataFrame, knob: str, profile: str) -> list[Any]:
    """One knob's section: its summary table, then each figure and its takeaway."""
    return [
        summary_table(runs, knob),
        gap_vs_knob(runs, knob),
        Markdown(gap_takeaway(runs, knob)),
        factors_vs_knob(runs, knob),
        Markdown(factor_takeaway(runs, knob, profile)),
        factor_plane(runs, knob),
        Markdown(plane_takeaway(runs)),
    ]


def knob_section(
    base: Config,
    knob: str,
    values: Sequence,
    seed_list: Sequence[int],
    profile: str,
    workers: int = 1,
    store: str = "",
) -> pd.DataFrame:
    """Sweep ``knob`` over ``values`` x ``seed_list`` on ``base`` (through the shared store,
    :func:`awbench.experiments.knob_sweeps.sweep`), show its section (:func:`knob_outputs`,
    verdicts corrected for ``profile``'s table) and return its runs."""
    runs = sweep(base, knob, values, seed_list, workers, store)
    display(*knob_outputs(runs, knob, profile))
    return runs


def all_runs_outputs(runs_by_knob: Mapping[str, pd.DataFrame], profile: str) -> list[Any]:
    """The closing section: every run's estimated against actual gap (coloured by knob) with
    its takeaway, then each knob's effects as a figure and as a table."""
    runs = pd.concat(runs_by_knob.values(), ignore_index=True)
    effects = effects_table(dict(runs_by_knob), profile)
    return [
        estimated_vs_actual(runs[runs["ok"]], color="knob"),
        Markdown(estimate_takeaway(runs)),
        knob_effects(effects),
        effects,
    ]


def all_runs_section(runs_by_knob: Mapping[str, pd.DataFrame], profile: str) -> None:
    """Show :func:`all_runs_outputs` of the notebook's sweeps ({knob: runs})."""
    display(*all_runs_outputs(runs_by_knob, profile))
