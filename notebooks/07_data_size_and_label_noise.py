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
# # 07 · Training-set size and label noise
#
# More training data brings each test sample closer to a training sample of its class, so the
# activity changes Δa, and with them the dual weights, shrink. Label noise (a fraction ρ of
# extra training samples with a wrong label; the clean count stays fixed) forces the network
# to memorize, which is expected to make the solution both sharper and larger.
#
# **What you will see:** for each knob, the gap with error bars and its sharp/flat split
# (figure 4 of docs/science.md#9-figure-map), which factor moved, every run in the sharpness–size plane, and estimated
# against actual gap (figure 2). Training sizes are scaled to the dataset's pool (the paper:
# 4000 … 32000 MNIST images; the bundled digits: up to 1297).
#
# **The paper's claim tested here:** training-set size and label noise act on the geometric
# factors (plausible: more data → smaller size; label noise → both grow).

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: values and seeds (paper: docs/science.md#4-the-demo-protocol-and-awbenchs-presets)
seed: int = 0  # first seed; every value runs seeds seed, seed+1, ...
n_seeds: int = 0  # seeds per value (0: profile default, smoke 2, quick 5, paper 10)
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
n_train_grid: str = ""  # clean training-set sizes, e.g. 324, 648, 1297 (empty: profile default)
label_noise_grid: str = ""  # label-noise fractions, e.g. 0, 0.1, 0.2 (empty: profile default)
workers: int = 0  # sweep processes (0: profile default, 1 in smoke, else 2)
store: str = ""  # sweep store folder (empty: the shared store in the awbench cache)
overrides: str = ""  # more Config fields, name: value pairs, e.g. weight_decay: 0.01, dropout: 0.1

# %%
from IPython.display import Markdown

from awbench import plots, sweeps

plots.setup()

# %%
base = sweeps.base_config(profile, dataset, overrides, seed=seed)
seed_list = sweeps.seeds(profile, seed, n_seeds)
workers = sweeps.workers_for(profile, workers)
n_train_values = sweeps.knob_grid("n_train", profile, base, n_train_grid)
label_noise_values = sweeps.knob_grid("label_noise", profile, base, label_noise_grid)
# n_train / (1 - max rho) must fit the pool
noise_base = base.replace(n_train=sweeps.label_noise_n_train(base, label_noise_values))
Markdown(
    f"Base: `{base.diff()}`; training sizes {n_train_values}; label noise {label_noise_values} "
    f"with {noise_base.n_train} clean samples; seeds {seed_list}."
)

# %% [markdown]
# ## 1 · Training-set size

# %%
runs_nt = plots.knob_section(base, "n_train", n_train_values, seed_list, profile, workers, store)

# %% [markdown]
# ## 2 · Label noise

# %%
runs_ln = plots.knob_section(noise_base, "label_noise", label_noise_values, seed_list, profile, workers, store)

# %% [markdown]
# ## 3 · Estimated against actual gap, every run

# %%
runs_by_knob = {"n_train": runs_nt, "label_noise": runs_ln}
plots.all_runs_section(runs_by_knob, profile)

# %% [markdown]
# ## Recorded numbers

# %%
sweeps.record_sweeps(runs_by_knob, profile)
