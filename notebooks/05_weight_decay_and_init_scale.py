# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (awbench)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Weight decay and the initial weight scale
#
# Both knobs act directly on how large the solution's weights are: weight decay β penalizes
# β‖θ‖ for the demo's first 200 epochs of 4000 samples, counted in samples seen (617 epochs
# on the 1297 digits; the paper's norm penalty), and a larger init scale s
# starts, and often ends, with larger weights. Because the dual weight ΔW* = (WΔa)aᵀ/‖a‖² is
# linear in W, the size factor Σσw² should follow the layer's weight norm.
#
# **What you will see:** for each knob, the gap with error bars and its sharp/flat split
# (figure 4 of docs/science.md#9-figure-map), which factor moved, every run in the sharpness–size plane; then the size
# factor against the weight norm over both sweeps (figure 5) and estimated against actual gap
# (figure 2).
#
# **The paper's claim tested here:** weight decay and the init scale act on the size of the
# solution (plausible: weight decay → smaller; larger init scale → larger), and smaller
# solutions generalize better.

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: values and seeds (paper: docs/science.md#4-the-demo-protocol-and-awbenchs-presets)
seed: int = 0  # first seed; every value runs seeds seed, seed+1, ...
n_seeds: int = 0  # seeds per value (0: profile default, smoke 2, quick 5, paper 10)
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
weight_decay: float = 0.0  # beta while the init scale is swept
init_scale: float = 1.0  # init scale s while weight decay is swept
weight_decay_grid: str = ""  # weight decays, e.g. 0, 0.01, 0.02 (empty: profile default)
init_scale_grid: str = ""  # init scales, e.g. 4, 5, 7 (empty: profile default)
workers: int = 0  # sweep processes (0: profile default, 1 in smoke, else 2)
store: str = ""  # sweep store folder (empty: the shared store in the awbench cache)
overrides: str = ""  # more Config fields, name: value pairs, e.g. weight_decay: 0.01, dropout: 0.1

# %%
import pandas as pd
from IPython.display import Markdown

import awbench as aw
from awbench import measures, plots, sweeps, takeaways
from awbench import record_names as rn

plots.setup()

# %%
base = sweeps.base_config(
    profile, dataset, overrides, seed=seed, weight_decay=weight_decay, init_scale=init_scale
)
seed_list = sweeps.seeds(profile, seed, n_seeds)
workers = sweeps.workers_for(profile, workers)
weight_decay_values = sweeps.knob_grid("weight_decay", profile, base, weight_decay_grid)
init_scale_values = sweeps.knob_grid("init_scale", profile, base, init_scale_grid)
Markdown(
    f"Base: `{base.diff()}`; weight decays {weight_decay_values}, init scales {init_scale_values}, "
    f"seeds {seed_list}."
)

# %% [markdown]
# ## 1 · Weight decay

# %%
runs_wd = plots.knob_section(base, "weight_decay", weight_decay_values, seed_list, profile, workers, store)

# %% [markdown]
# ## 2 · Initial weight scale

# %%
runs_init = plots.knob_section(base, "init_scale", init_scale_values, seed_list, profile, workers, store)

# %% [markdown]
# The verdicts above judge the paper's init scales (4–7) on their own. The default s = 1, the
# setting of every other sweep, is context only: it is the weight-decay sweep's β = 0 runs.

# %%
Markdown(takeaways.context_takeaway(runs_init, runs_wd[runs_wd["weight_decay"] == weight_decay], "init_scale"))

# %% [markdown]
# ## 3 · Size against the weight norm (figure 5)
# Across both sweeps: does the size factor track the layer's weight norm?

# %%
sized = pd.concat([runs_wd, runs_init], ignore_index=True)
plots.size_vs_weight_norm(sized[sized["ok"]], color="knob")

# %%
Markdown(takeaways.size_norm_takeaway(sized))

# %% [markdown]
# ## 4 · Estimated against actual gap, every run

# %%
runs_by_knob = {"weight_decay": runs_wd, "init_scale": runs_init}
plots.all_runs_section(runs_by_knob, profile)

# %% [markdown]
# ## Recorded numbers

# %%
aw.record(rn.SIZE_NORM_SLOPE, sweeps.size_norm_slope(sized))
aw.record(rn.SIZE_NORM_RHO, measures.spearman(sized["weight_norm"], sized["size"]))
sweeps.record_sweeps(runs_by_knob, profile)
