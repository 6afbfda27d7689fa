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
# # 04 · SGD's batch size and learning rate
#
# SGD's noise depends on the batch size B and the learning rate α: smaller batches and larger
# steps inject more noise, which is commonly thought to steer training towards flatter minima.
# Here both knobs are swept over seeds, and the gap of every run is split into its sharp and
# flat parts and into the two factors, sharpness Σσg² and size Σσw².
#
# **What you will see:** for each knob, the gap with error bars and its sharp/flat split
# (figure 4 of docs/science.md#9-figure-map), which factor moved, every run in the sharpness–size plane; then the
# estimated against the actual gap of every run (figure 2).
#
# **The paper's claim tested here:** SGD batch size and learning rate act on the sharpness
# factor (plausible direction to check: larger batch or smaller learning rate → sharper).

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: values and seeds (paper: docs/science.md#4-the-demo-protocol-and-awbenchs-presets)
seed: int = 0  # first seed; every value runs seeds seed, seed+1, ...
n_seeds: int = 0  # seeds per value (0: profile default, smoke 2, quick 5, paper 10)
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
batch_size: int = 25  # batch size B while the learning rate is swept
lr: float = 0.1  # learning rate alpha while the batch size is swept
batch_size_grid: str = ""  # batch sizes, e.g. 25, 100, 400 (empty: profile default)
lr_grid: str = ""  # learning rates, e.g. 0.05, 0.1, 0.2 (empty: profile default)
workers: int = 0  # sweep processes (0: profile default, 1 in smoke, else 2)
store: str = ""  # sweep store folder (empty: the shared store in the awbench cache)
overrides: str = ""  # more Config fields, name: value pairs, e.g. weight_decay: 0.01, dropout: 0.1

# %%
from IPython.display import Markdown

from awbench import plots, sweeps

plots.setup()

# %%
base = sweeps.base_config(profile, dataset, overrides, seed=seed, batch_size=batch_size, lr=lr)
seed_list = sweeps.seeds(profile, seed, n_seeds)
workers = sweeps.workers_for(profile, workers)
bs_values = sweeps.knob_grid("batch_size", profile, base, batch_size_grid)
lr_values = sweeps.knob_grid("lr", profile, base, lr_grid)
Markdown(
    f"Base: `{base.diff()}`; batch sizes {bs_values}, learning rates {lr_values}, seeds {seed_list}."
)

# %% [markdown]
# ## 1 · Batch size

# %%
runs_bs = plots.knob_section(base, "batch_size", bs_values, seed_list, profile, workers, store)

# %% [markdown]
# ## 2 · Learning rate

# %%
runs_lr = plots.knob_section(base, "lr", lr_values, seed_list, profile, workers, store)

# %% [markdown]
# ## 3 · Estimated against actual gap, every run

# %%
runs_by_knob = {"batch_size": runs_bs, "lr": runs_lr}
plots.all_runs_section(runs_by_knob, profile)

# %% [markdown]
# ## Recorded numbers

# %%
sweeps.record_sweeps(runs_by_knob, profile)
