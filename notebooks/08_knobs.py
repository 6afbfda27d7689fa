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
# # 08 · Knobs: slide a regularizer, watch sharpness and size move
#
# Every knob of the paper — weight decay, dropout, batch size, learning rate, label noise,
# training-set size, init scale — changes the generalization gap. The activity–weight duality
# says *why*: the gap is a sum over the loss landscape's eigen-directions of **sharpness × size**
# (σg × σw). Here you slide the knobs and watch both factors move.
#
# **What you will see:** the knob explorer — the same as `awbench present` and the report's:
# eight sliders (batch size B, learning rate α, …) over a precomputed grid, so a move is a
# lookup in the browser, not a training run; the *sharpness–size plane* (a star at the grid
# point's seed mean, a cross at this seed's run, the line of the knob you moved last), the
# *gap* (real, sharp part, flat part) and the *σg* and *σw spectra*, with the run's training
# line and a takeaway. Grey is always the default setting. A combination the grid lacks snaps
# to the nearest grid point with a note; "train this setting" trains the one you asked for (a
# few seconds, then cached, and added to the explorer).
#
# Headless (papermill) the notebook shows static figures of the requested setting (σg with the
# top Hessian eigenvalues and the loss along the top eigenvector, σw, the gap, the sweep).

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: smoke never trains, quick trains an off-grid start, paper adds every knob's sweep
seed: int = 0  # seed of the setting shown first (the grid has seeds 0 and 1)
weight_decay: float = 0.0  # starting value of the weight decay slider (beta)
dropout: float = 0.0  # starting dropout probability d
batch_size: int = 25  # starting SGD batch size B
lr: float = 0.1  # starting learning rate alpha
label_noise: float = 0.0  # starting label-noise fraction rho
n_train: int = 648  # starting number of clean training samples
init_scale: float = 1.0  # starting init scale s
store: str = ""  # knobs store folder (empty: the grid shipped in awbench/apps/knobs/store)
mode: str = "auto"  # auto | live | static: widgets, or static figures (auto: static when headless)

# %%
from IPython.display import Markdown, display

import awbench as aw
from awbench import knob_panel, plots, sweeps

sweeps.check_profile(profile)
plots.setup()

# %% [markdown]
# ## 1 · The panel
# Each slider offers the grid's values of one Config field (its name is the slider's hint).
# Grid: batch size × learning rate × weight decay × dropout, fully crossed, plus label noise,
# training set size and init scale moved alone from the default; three seeds each, every run
# trained to the stopping rule (see `awbench/apps/knobs/store/README.md`). A value beyond the
# paper's range carries ⚠ on its slider. The status line under the explorer shows the run's
# final train loss and accuracy and warns when a run did not converge. Combine knobs freely: a
# combination the grid lacks snaps to the nearest grid point with a note naming every knob that
# moved, and the train button trains the one you asked for (to the stopping rule too: a few
# seconds, up to about half a minute at batch 400). The text box holds the Config asked for, ready
# to paste into Python, a papermill call or a sweep.

# %%
start = dict(weight_decay=weight_decay, dropout=dropout, batch_size=batch_size, lr=lr,
             label_noise=label_noise, n_train=n_train, init_scale=init_scale, seed=seed)
panel = knob_panel.KnobPanel(store or None, mode=mode, start=start)
if not panel.on_grid and profile != "smoke":
    panel.train()
panel

# %% [markdown]
# **Reading the panels.** *Sharpness:* σg,n is how much the secant gradient of the test/train
# pairs spreads along eigen-direction n; the middle plot shows the steepest curvatures λ of the
# analysed layer's loss, the right one the training loss along the steepest direction next to
# its quadratic model ½λt². *Size:* σw,n is how far the dual weights spread along the same
# directions; it scales with the weight norm. *Gap:* the exact identity ⟨Δl⟩ = Σ(μgμw + cσgσw)
# against the real gap, and how much of it the ten sharpest directions carry.

# %%
# The panel's own takeaway box follows the sliders; this one is the starting setting's.
Markdown(knob_panel.takeaway(panel))

# %% [markdown]
# ## 2 · What each knob does on this grid
# Relative change from the smallest to the largest value of each knob, other knobs at the
# default, mean over the converged seeds (three per point; unconverged points are left out and
# counted). Which factor moves is measured here, not assumed.

# %%
effects = knob_panel.grid_effects(panel.grid)
Markdown(knob_panel.effects_takeaway(effects))

# %%
if profile == "paper":
    for knob in knob_panel.KNOBS[:-1]:
        display(knob_panel.sweep_figure(panel.grid, knob))

# %% [markdown]
# ## 3 · Recorded numbers
# For batch runs: the setting shown, its decomposition and each knob's effect.

# %%
shown = panel.setting
aw.record("knobs.grid_runs", len(panel.grid.grid_keys))
aw.record("knobs.on_grid", shown is not None)
aw.record("knobs.config", panel.config.diff(panel.grid.base))
if shown is not None:
    for name in ("real_gap", "estimated_gap", "sharp_gap", "flat_gap", "sharpness", "size", "weight_norm",
                 "lam_max", "test_error", "duality_error", "identity_error"):
        aw.record(f"knobs.{name}", shown[name])
for row in effects.dropna().itertuples(index=False):
    aw.record(f"knobs.{row.knob}.sharpness_change", row.sharpness_change)
    aw.record(f"knobs.{row.knob}.size_change", row.size_change)
    aw.record(f"knobs.{row.knob}.real_gap_change", row.real_gap_change)
