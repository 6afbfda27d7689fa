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
# # 06 · Dropout
#
# Dropout (probability d after the first hidden layer, as in the authors' demo) trains a
# network that must work with random units missing. The analysis runs in eval mode, so dropout
# only changes *which* solution is found, and the decomposition shows through which factor.
#
# **What you will see:** the gap against d with error bars and its sharp/flat split (docs/science.md
# figure 4), which factor moved, every run in the sharpness–size plane, and estimated against
# actual gap (figure 2).
#
# **The paper's claim tested here:** dropout acts on one or both geometric factors; which one
# is measured here, not assumed.

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: values and seeds (paper: docs/science.md#4-the-demo-protocol-and-awbenchs-presets)
seed: int = 0  # first seed; every value runs seeds seed, seed+1, ...
n_seeds: int = 0  # seeds per value (0: profile default, smoke 2, quick 5, paper 10)
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
dropout_grid: str = ""  # dropout probabilities, e.g. 0, 0.1, 0.3 (empty: profile default)
workers: int = 0  # sweep processes (0: profile default, 1 in smoke, else 2)
store: str = ""  # sweep store folder (empty: the shared store in the awbench cache)
overrides: str = ""  # more Config fields, name: value pairs, e.g. weight_decay: 0.01, dropout: 0.1

# %%
from IPython.display import Markdown

from awbench import plots, sweeps, takeaways

plots.setup()

# %%
base = sweeps.base_config(profile, dataset, overrides, seed=seed)
seed_list = sweeps.seeds(profile, seed, n_seeds)
workers = sweeps.workers_for(profile, workers)
dropout_values = sweeps.knob_grid("dropout", profile, base, dropout_grid)
Markdown(f"Base: `{base.diff()}`; dropout {dropout_values}, seeds {seed_list}.")

# %% [markdown]
# ## 1 · Dropout

# %%
runs_do = plots.knob_section(base, "dropout", dropout_values, seed_list, profile, workers, store)

# %% [markdown]
# ## 2 · Test error

# %%
plots.metric_vs_knob(runs_do, "dropout", "test_error")

# %%
Markdown(takeaways.metric_takeaway(runs_do, "dropout", "test_error"))

# %% [markdown]
# ## 3 · Estimated against actual gap, every run

# %%
runs_by_knob = {"dropout": runs_do}
plots.all_runs_section(runs_by_knob, profile)

# %% [markdown]
# ## Recorded numbers

# %%
sweeps.record_sweeps(runs_by_knob, profile)
