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
# # 03 · The gap decomposition, direction by direction
#
# Per test/training pair k the dual weight Δw_k and the secant gradient
# g_k = Δl_k Δw_k/‖Δw_k‖² satisfy Δl_k = g_k·Δw_k exactly. Projected on the eigenvectors v_n
# of the training Hessian of one layer, population statistics give the exact identity
#
# ⟨Δl⟩ = Σₙ μg,n μw,n + c_n σg,n σw,n
#
# and the paper's estimate keeps only Σ c σg σw: per direction, **sharpness σg × size σw**.
#
# **What you will see:** the per-direction spectra (figure 3 of docs/science.md#9-figure-map), the identity and its
# sharp/flat split, the second-order Taylor reading against the exact gap, the sharpness
# factor against the Hessian eigenvalue with its rank correlation (figure 6), the identity at
# every layer, estimated against actual gap over seeds (figure 2), and a control: the same
# top-k share in the dual weights' principal axes and in a random basis.
#
# **The paper's claim tested here:** the gap is concentrated in a few sharp directions, and
# each direction contributes sharpness × size with a roughly constant correlation c.

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: smoke trains a small net in seconds
seed: int = 0  # seed of the main run (the seed comparison uses seed, seed+1, ...)
n_seeds: int = 0  # runs in the seed comparison (0: profile default, smoke 2, quick 5, paper 10)
workers: int = 0  # sweep processes for the seed runs (0: profile default, 1 in smoke, else 2)
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
layer: str = "fc2"  # analysed fully connected layer
n_sharp: int = 10  # directions with the largest sigma_g counted as the sharp part
layers: str = "fc1, fc2, fc3"  # layers at which the identity is checked in section 5
overrides: str = ""  # more Config fields, name: value pairs, e.g. weight_decay: 0.01, dropout: 0.1

# %%
from IPython.display import Markdown

import awbench as aw
from awbench import measures, plots, sweeps, takeaways
from awbench import record_names as rn

plots.setup()

# %%
cfg = sweeps.base_config(profile, dataset, overrides, seed=seed, layer=layer, n_sharp=n_sharp)
seed_list = sweeps.seeds(profile, seed, n_seeds)
layer_list = [name.strip() for name in layers.split(",") if name.strip()]
checked = [cfg.replace(layer=name) for name in layer_list]  # validates every layer name
Markdown(sweeps.config_text(cfg))

# %%
res = aw.run_experiment(cfg)
an = res.analysis()
Markdown(takeaways.run_takeaway(res))

# %% [markdown]
# ## 1 · Per-direction spectra
# Directions sorted by σg. The shaded band is the sharp part.

# %%
plots.direction_spectra(an.directions, cfg.n_sharp)

# %%
Markdown(takeaways.spectra_takeaway(an, cfg.n_sharp))

# %% [markdown]
# ## 2 · The identity and the sharp/flat split

# %%
plots.gap_budget(an.scalars())

# %%
Markdown(takeaways.identity_takeaway(an))

# %%
plots.cumulative_gap(an.directions, an.pair_gap, an.real_gap, cfg.n_sharp)

# %%
top = an.directions.head(cfg.n_sharp)[["rank", "lam", "sigma_g", "sigma_w", "c", "contribution"]]
top.style.format(precision=4).hide(axis="index")

# %% [markdown]
# ## 3 · The second-order reading
# Taylor-expanding l(x_k, W + Δw_k) to second order with the training Hessian gives
# ⟨∇l·Δw⟩ + ½ Σ λ (σw² + μw²). It shows why curvature matters; it is not exact.

# %%
plots.second_order(an.scalars())

# %%
Markdown(takeaways.second_order_takeaway(an))

# %% [markdown]
# ## 4 · The sharpness factor against curvature
# Is σg large where the training loss curves (large λ)? Measured here, not assumed. σg,n is
# the spread of s_k θ_kn (secant curvature s_k = Δl_k/‖Δw_k‖² times the dual weight's
# coordinate), so it is curvature × spread; σg/σw and sharpness/size are its size-free part.

# %%
plots.sharpness_vs_lam(an.directions)

# %%
Markdown(takeaways.factors_takeaway(an))

# %% [markdown]
# ## 5 · The identity holds at every layer

# %%
run = res.load_run()
per_layer = {c.layer: aw.analyze(run, layer=c.layer) for c in checked}
layer_table = takeaways.layer_table(per_layer)
layer_table

# %%
Markdown(takeaways.layer_takeaway(layer_table))

# %% [markdown]
# ## 6 · Estimated against actual gap over seeds
# Every seed changes the initialisation and the batch order (the data stay fixed).

# %%
seed_runs = sweeps.runs_over_seeds(cfg, seed_list, sweeps.workers_for(profile, workers))
plots.estimated_vs_actual(
    seed_runs, color="seed", title=f"Estimated against actual gap, {len(seed_runs)} seeds"
)

# %%
Markdown(takeaways.estimate_takeaway(seed_runs))

# %% [markdown]
# ## 7 · Is the Hessian basis special? A control
# The identity holds in every orthonormal basis, so the sharp share of section 2 means something
# only next to other bases ranked the same way (by their own σg): the principal axes of the
# dual weights (eigenvectors of the covariance of Δw_k over the pairs, no Hessian at all) and a
# random orthonormal basis. Every complete basis ends at the whole gap.

# %%
shares, curves = measures.control_summary(an, cfg.n_sharp, seed=seed)
plots.basis_share_curves(curves, cfg.n_sharp)

# %%
Markdown(takeaways.control_basis_takeaway(shares, cfg.n_sharp))

# %% [markdown]
# ## Recorded numbers

# %%
for name in [
    rn.REAL_GAP,
    rn.PAIR_GAP,
    rn.ESTIMATED_GAP,
    "mean_term",
    "sharp_gap",
    "flat_gap",
    "second_order_gap",
    "second_order_error",
    rn.SHARPNESS,
    rn.SIZE,
    rn.IDENTITY_ERROR,
    rn.DUALITY_ERROR,
]:
    aw.record(name, an.scalars()[name])
aw.record(rn.SHARP_SHARE, an.sharp_gap / an.pair_gap)
aw.record(rn.CURVATURE, an.curvature)
aw.record(rn.TOP_SHARE_HESSIAN, shares["hessian"])
aw.record(rn.TOP_SHARE_DUAL_PCA, shares["dual_pca"])
aw.record(rn.TOP_SHARE_RANDOM, shares["random"])
aw.record(rn.SPEARMAN_SIGMA_G_LAM, measures.spearman_sigma_g(an))
aw.record(rn.SPEARMAN_RATIO_LAM, measures.spearman_ratio(an))
aw.record(rn.IDENTITY_ERROR_ALL_LAYERS, float(layer_table["identity_error"].max()))
aw.record("duality_error_all_layers", float(layer_table["duality_error"].max()))
aw.record(rn.SEEDS_ESTIMATE_REL_ERROR, sweeps.effects_estimate(seed_runs))
aw.record("seeds.max_identity_error", float(seed_runs["identity_error"].max()))
aw.record(rn.MEAN_TERM_SHARE, an.mean_term / an.pair_gap)
aw.record(rn.SEEDS_MEAN_TERM_SHARE_MAX, float((seed_runs["mean_term"] / seed_runs["pair_gap"]).abs().max()))
aw.record(rn.C_TOP_MEAN, float(an.directions["c"].head(cfg.n_sharp).mean()))
aw.record(rn.C_TOP_SD, float(an.directions["c"].head(cfg.n_sharp).std(ddof=1)))
