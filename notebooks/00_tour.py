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
# # 00 · A tour: one network, the duality, and the two factors of its generalization gap
#
# Feng, Zhang & Tu show that for any fully connected layer a change of *activity* (a test
# sample instead of a training sample) is reproduced **exactly** by a change of *weights*
# (the dual weight). That turns the generalization gap into a sum over the loss landscape's
# eigen-directions of **sharpness × size**: σg, the spread of the secant gradients along each
# direction, times σw, how far the dual weights spread along it. σg is itself curvature times
# spread (the secant curvatures s_k = Δl_k/‖Δw_k‖² times the dual weights' coordinates), so
# σg/σw is the part of it that is pure curvature.
#
# **What you will see:** one network trained with the paper's protocol; the duality checked
# pair by pair; the gap decomposed exactly; the two factors per direction.
#
# **The paper's claim tested here:** flatter *and* smaller solutions generalize better —
# sharpness and size act together.

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: smoke trains a small net in seconds
seed: int = 0  # seed of init, batch order and dropout
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
layer: str = "fc2"  # analysed fully connected layer (fc1 .. fc3)
batch_size: int = 25  # SGD batch size B
lr: float = 0.1  # SGD learning rate alpha
weight_decay: float = 0.0  # beta of the penalty beta*||theta|| (first 200 epochs)
overrides: str = ""  # more Config fields, name: value pairs, e.g. weight_decay: 0.01, dropout: 0.1

# %%
from IPython.display import Markdown

import awbench as aw
from awbench import plots, sweeps, takeaways
from awbench import record_names as rn

plots.setup()

# %%
cfg = sweeps.base_config(
    profile,
    dataset,
    overrides,
    seed=seed,
    layer=layer,
    batch_size=batch_size,
    lr=lr,
    weight_decay=weight_decay,
)
Markdown(sweeps.config_text(cfg))

# %% [markdown]
# ## 1 · Train with the paper's protocol
# Plain SGD, stopped once the clean-train accuracy over the last epochs exceeds 99 % and the
# loss is below 1e-3 (or at the epoch limit). The run is cached: rerunning is instant.

# %%
res = aw.run_experiment(cfg)
run = res.load_run()
plots.training_curves(res.history, title=f"Training curves ({cfg.dataset}, seed {cfg.seed})")

# %%
Markdown(takeaways.run_takeaway(res))

# %% [markdown]
# ## 2 · The duality holds exactly
# Each test sample x′ is paired with its nearest clean training sample x of the same label.
# The minimal dual weight ΔW* = (W Δa) aᵀ/‖a‖² makes the training sample, seen through
# W + ΔW*, produce the test sample's logits. We check it in float64 for every pair.

# %%
an = res.analysis()
model64 = aw.float64_model(run.model)
x_test, x_train = run.data.x_test.double(), run.data.x_train.double()
errors = aw.duality_check(model64, cfg.layer, x_test[an.pairs_test], x_train[an.pairs_train])
plots.duality_exactness({cfg.layer: errors.numpy()})

# %%
Markdown(
    f"Largest logit difference over {len(errors)} pairs: **{float(errors.max()):.1e}**; "
    f"the loss difference l(x, W+ΔW*) − l(x′, W) is at most {an.duality_error:.1e}."
)

# %% [markdown]
# ## 3 · The gap, decomposed
# Projecting dual weights Δw and secant gradients g on the eigenvectors of the training
# Hessian of layer `fc2`, ⟨Δl⟩ = Σₙ μg μw + c σg σw holds exactly. Dropping the small mean
# term gives the paper's estimate Σ c σg σw.

# %%
plots.gap_budget(an.scalars(), title=f"Where the gap of this run comes from (layer {cfg.layer})")

# %%
Markdown(takeaways.identity_takeaway(an))

# %%
plots.direction_spectra(an.directions, cfg.n_sharp)

# %%
Markdown(takeaways.spectra_takeaway(an, cfg.n_sharp))

# %% [markdown]
# ## 4 · The two factors
# σg,n is the spread of s_k θ_kn over the pairs: the secant curvature s_k = Δl_k/‖Δw_k‖² of each
# pair times the dual weight's coordinate θ_kn along direction n, so it is **curvature × spread**,
# not curvature alone. σw is the size factor: it scales with the layer's weights. The ratio
# σg/σw (right panel) is the size-free curvature part; summed, sharpness/size = Σσg²/Σσw².

# %%
plots.sharpness_vs_lam(an.directions)

# %%
Markdown(takeaways.factors_takeaway(an))

# %% [markdown]
# ## Recorded numbers
# Headless runs (papermill, `make reproduce`) read these back with `aw.read_records`.

# %%
for name in [
    rn.REAL_GAP,
    rn.PAIR_GAP,
    rn.ESTIMATED_GAP,
    "sharp_gap",
    "flat_gap",
    rn.SHARPNESS,
    rn.SIZE,
    "weight_norm",
    "test_error",
    rn.IDENTITY_ERROR,
    rn.DUALITY_ERROR,
    rn.LAM_MAX,
]:
    aw.record(name, an.scalars()[name])
aw.record("logit_duality_error", float(errors.max()))
aw.record("epochs", res.epochs)
