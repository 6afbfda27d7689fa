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
# # 01 · The activity–weight duality, exactly
#
# For a layer z = W a, replacing the training activity a by a test activity a′ = a + Δa
# changes z by W Δa. The **dual weight** ΔW with ΔW a = W Δa produces the same change while
# keeping the training activity, so every later layer, the logits and the loss agree exactly.
# The smallest such ΔW is ΔW* = (W Δa) aᵀ / ‖a‖², with ‖ΔW*‖ = ‖W Δa‖ / ‖a‖.
#
# **What you will see:** activity changes against dual-weight norms; exactness at every layer
# (float64 and float32); the general family ΔW* + M (I − a aᵀ/‖a‖²), all exact but larger;
# and the linearity ΔW*(sW) = s ΔW*(W) (figure 1 of docs/science.md#9-figure-map).
#
# **The paper's claim tested here:** a test sample is a training sample seen through perturbed
# weights, and the spread of those perturbations scales with the weight norm.

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: smoke trains a small net in seconds
seed: int = 0  # seed of init, batch order and dropout
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
layer: str = "fc2"  # layer whose dual weights are studied in sections 1, 3 and 4
family_scales: str = "0, 0.5, 1, 2, 4"  # sizes of M in the general family, relative to |dW*|
layer_scales: str = "0.25, 0.5, 2, 4"  # factors s multiplying the layer in the linearity check
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
family = sweeps.parse_grid("family_scales", family_scales)
scales = sweeps.parse_grid("layer_scales", layer_scales)
Markdown(sweeps.config_text(cfg))

# %%
res = aw.run_experiment(cfg)
run = res.load_run()
model64 = aw.float64_model(run.model)
data = run.data
Markdown(takeaways.run_takeaway(res))

# %% [markdown]
# ## 1 · Pairs, activity changes and dual weights
# The demo's rule: each test sample's partner is its nearest clean training sample of the same
# label, in raw input space.

# %%
pairs = aw.pair_samples(data.x_test, data.y_test, data.x_train, data.y_train, data.clean)
a_tr, a_te, keep = measures.pair_activities(model64, cfg.layer, data, pairs)
W = getattr(model64, cfg.layer).weight.detach()
dual = aw.dual_weights(W, a_tr, a_te)
predicted = ((a_te - a_tr) @ W.T).norm(dim=1) / a_tr.norm(dim=1)
plots.dual_norm_check(predicted.numpy(), dual.flatten(1).norm(dim=1).numpy())

# %%
Markdown(
    f"{len(pairs.test)} pairs, {int((~keep).sum())} with a zero training activity at `{cfg.layer}` "
    f"(no dual exists there). Relative activity change ‖Δa‖/‖a‖: median "
    f"{number(float(((a_te - a_tr).norm(dim=1) / a_tr.norm(dim=1)).median()))}; dual-weight norm relative "
    f"to ‖W‖ = {number(float(W.norm()))}: median {number(float(dual.flatten(1).norm(dim=1).median() / W.norm()))}. "
    f"Closed form and computed norm differ by at most "
    f"{float((predicted - dual.flatten(1).norm(dim=1)).abs().max()):.1e}."
)

# %% [markdown]
# ## 2 · Exact at every layer
# max |logits(x′, W) − logits(x, W + ΔW*)| per pair, in float64 for each layer, and in the
# float32 the network was trained in for comparison.

# %%
x_te, x_tr = data.x_test[pairs.test], data.x_train[pairs.train]
errors = {
    name: aw.duality_check(model64, name, x_te.double(), x_tr.double()).numpy()
    for name in run.model.layer_names
}
errors[f"{cfg.layer} (float32)"] = aw.duality_check(run.model, cfg.layer, x_te, x_tr).numpy()
plots.duality_exactness(errors)

# %%
worst = {k: float(np.nanmax(v)) for k, v in errors.items()}
Markdown(
    "Worst pair per layer: "
    + ", ".join(f"`{k}` {v:.1e}" for k, v in worst.items())
    + ". In float64 the duality is exact to rounding; float32 rounding alone explains the float32 value."
)

# %% [markdown]
# ## 3 · The general family and why the minimal one
# Any ΔW* + M (I − a aᵀ/‖a‖²) maps a to the same output, because the added term annihilates
# a. We draw a random M per pair with ‖M‖ = scale × ‖ΔW*‖.

# %%
fam = measures.family_sweep(model64, cfg.layer, data, pairs, family, seed=cfg.seed)
plots.general_family(fam)

# %%
Markdown(
    f"Every member is exact (worst logit error {fam['max_error'].max():.1e}), and no member is smaller "
    f"than ΔW*: the smallest norm ratio seen is {fam['min_norm_ratio'].min():.6f}. The minimal dual "
    "weight is the one whose size reflects the data and the layer, not an arbitrary choice of M."
)

# %% [markdown]
# ## 4 · Dual weights scale with the layer
# ΔW* = (W Δa) aᵀ/‖a‖² is linear in W at fixed activities, so a larger solution has
# proportionally larger dual weights: the size factor grows with the weight norm.

# %%
lin = measures.scaling_sweep(model64, cfg.layer, data, pairs, scales)
plots.scaling_check(lin["scale"], lin["ratio"])

# %%
deviation = float((lin["ratio"] - lin["scale"]).abs().max())
Markdown(
    f"Rescaling `{cfg.layer}` by s rescales the mean dual-weight norm by s to within {deviation:.1e}."
)

# %% [markdown]
# ## Recorded numbers

# %%
aw.record(rn.DUALITY_ERROR, max(v for k, v in worst.items() if "float32" not in k))
for name in run.model.layer_names:
    aw.record(f"duality_error.{name}", worst[name])
aw.record(rn.FLOAT32_LOGIT_ERROR, worst[f"{cfg.layer} (float32)"])
aw.record("family_max_error", float(fam["max_error"].max()))
aw.record(rn.FAMILY_MIN_NORM_RATIO, float(fam["min_norm_ratio"].min()))
aw.record(rn.LINEARITY_DEVIATION, deviation)
aw.record(rn.IDENTITY_ERROR, res.scalars["identity_error"])
aw.record("n_pairs", int(keep.sum()))
