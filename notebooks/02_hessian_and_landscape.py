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
# # 02 · The Hessian spectrum and the loss landscape
#
# Sharpness in the activity–weight picture is a property of the training loss landscape at
# the solution: how strongly the loss curves along each direction of weight space. This
# notebook measures that landscape for the analysed layer `fc2` with numbers you can check:
# top eigenpairs by Lanczos (checked against dense eigh), the trace with its standard error
# (checked against the exact trace), the spectral density, and the loss itself along chosen
# directions.
#
# **What you will see:** the spectrum; the trace estimate converging; 1-D slices along the top
# Hessian eigenvectors with the quadratic model ½λt², next to the dual-weight directions and
# filter-normalised random directions; 2-D planes (figure 7 of docs/science.md#9-figure-map).
#
# **The paper's claim tested here:** the sharpness factor comes from the landscape — a few
# strongly curved directions — and dual weights reach into them.

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: grid sizes, probes and training
seed: int = 0  # seed of the run, of the Lanczos start and of the random probes
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
layer: str = "fc2"  # layer whose weights span the landscape
top_k: int = 10  # Hessian eigenpairs computed
n_slices: int = 3  # top eigenvectors drawn as 1-D slices
overrides: str = ""  # more Config fields, name: value pairs, e.g. weight_decay: 0.01, dropout: 0.1

# %%
import numpy as np
from IPython.display import Markdown

import awbench as aw
from awbench import measures, plots, sweeps, takeaways
from awbench import record_names as rn
from awbench.formatting import number

plots.setup()

# %%
cfg = sweeps.base_config(profile, dataset, overrides, seed=seed, layer=layer)
settings = sweeps.landscape_settings(profile)
res = aw.run_experiment(cfg)
run = res.load_run()
model = aw.float64_model(run.model)
x, y = run.data.x_clean.double(), run.data.y_clean
Markdown(takeaways.run_takeaway(res))

# %% [markdown]
# ## 1 · The spectrum
# Lanczos on exact Hessian-vector products of the mean clean-training cross-entropy with
# respect to the layer's weights (eval mode, float64), and stochastic Lanczos quadrature for
# the density.

# %%
eig = aw.top_eigenpairs(model, x, y, top_k, params=cfg.layer, seed=cfg.seed)
density = aw.spectral_density(
    model,
    x,
    y,
    n_probes=settings["density_probes"],
    steps=settings["steps"],
    seed=cfg.seed,
    params=cfg.layer,
)
plots.spectrum_figure(
    eig.values,
    density,
    title=f"Hessian spectrum of layer {cfg.layer} ({eig.vectors.shape[1]} weights)",
)

# %%
H = aw.layer_hessian(model, cfg.layer, x, y)
exact_values, exact_trace = np.linalg.eigvalsh(H.numpy()), float(H.trace())
Markdown(takeaways.spectrum_takeaway(eig, exact_values, exact_trace))

# %% [markdown]
# ## 2 · The trace, with its error bar

# %%
traces = measures.trace_table(model, x, y, settings["probes"], cfg.seed, cfg.layer)
plots.trace_convergence(traces, exact_trace)

# %%
Markdown(takeaways.trace_takeaway(traces, exact_trace))

# %% [markdown]
# ## 3 · The loss along the top eigenvectors
# t is in eigen-units (the eigenvectors have unit length); dashed: the quadratic model.

# %%
an = res.analysis()
directions = aw.landscape.landscape_directions(model, eig, an.dual, cfg.layer, n_slices, cfg.seed)
eigen_slices = aw.landscape.slices(model, x, y, directions, "eigenvector", settings["points"], cfg.layer, eig)
plots.slice_figure(eigen_slices, title="Loss along the top Hessian eigenvectors, with ½λt²", xlabel="t (eigen-units)")

# %%
fd = aw.landscape.fd_curvature(model, x, y, eig.vectors[0], cfg.layer)
Markdown(takeaways.slices_takeaway(eigen_slices, fd))

# %% [markdown]
# ## 4 · Dual-weight and random directions
# The dual weights ΔW*_k of the test/training pairs form a cloud around the solution: its mean
# (t = 1 moves the layer by it) and its principal directions (t = 1 is one standard
# deviation) are where the test samples "move" the layer. Filter-normalised Gaussian
# directions (Li et al. 2018) are the usual random baseline (t = 1 moves each unit by its own
# norm). Dashed: the quadratic model with the exact curvature dᵀHd.

# %%
dual_slices = aw.landscape.slices(model, x, y, directions, "dual weight", settings["points"], cfg.layer)
plots.slice_figure(dual_slices, title="Loss along dual-weight directions")

# %%
random_slices = aw.landscape.slices(model, x, y, directions, "random", settings["points"], cfg.layer)
plots.slice_figure(random_slices, title="Loss along filter-normalised random directions (Li et al.)")

# %%
curv = aw.landscape.rayleigh(model, x, y, directions, cfg.layer)
plots.direction_curvatures(curv, float(eig.values[0]))

# %%
Markdown(takeaways.curvature_takeaway(curv, float(eig.values[0])))

# %% [markdown]
# ## 5 · Planes
# First the plane of the two sharpest eigenvectors, then the plane of the first dual-weight
# principal direction and a random direction, both scaled to unit length, on the same grid.

# %%
g = np.linspace(-1, 1, settings["grid"]) * aw.landscape.span(float(eig.values[0]))
v1, v2 = eig.vectors[0], eig.vectors[1]
plane_eig = aw.plane_2d(model, x, y, v1, v2, g, g, params=cfg.layer, labels=("v1", "v2"))
plots.contour_figure(plane_eig, title="Loss on the plane of v1 and v2 (eigen-units)")

# %%
pc1, r1 = aw.landscape.unit(directions["dual PC1"][1]), aw.landscape.unit(directions["random 1"][1])
plane_mix = aw.plane_2d(model, x, y, pc1, r1, g, g, params=cfg.layer, labels=("dual PC1", "random 1"))
plots.contour_figure(plane_mix, title="Loss on the plane of dual PC1 and a random direction (unit length)")

# %%
Markdown(
    f"Across the same grid the loss rises by up to {number(plane_eig.loss.max() - plane_eig.loss0)} nats on "
    f"the eigenvector plane and {number(plane_mix.loss.max() - plane_mix.loss0)} nats on the dual/random plane."
)

# %% [markdown]
# ## Recorded numbers

# %%
aw.record(rn.LAM_MAX, float(eig.values[0]))
aw.record("eigen_rel_error", measures.eigen_check(eig.values, exact_values))
aw.record("eigen_converged", bool(eig.converged.all()))
aw.record(rn.TRACE, float(traces["estimate"].iloc[-1]))
aw.record(rn.TRACE_SE, float(traces["stderr"].iloc[-1]))
aw.record("trace_exact", exact_trace)
aw.record(rn.SLICE_CURVATURE_REL_ERROR, abs(fd - float(eig.values[0])) / float(eig.values[0]))
aw.record("rayleigh_dual_over_random", aw.landscape.rayleigh_ratio(curv))
aw.record(rn.DUALITY_ERROR, an.duality_error)
aw.record(rn.IDENTITY_ERROR, an.identity_error)
