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
# # 10 · Your own network: the decomposition at any fully connected layer
#
# The duality needs one thing of a network: a fully connected layer (`nn.Linear`) whose
# output feeds the rest of it. What comes before it (convolutions, normalisation in eval
# mode, residual blocks) and after it is free. `aw.analyze_model` takes any trained
# `nn.Module`, the name of that layer and the data, and returns the same `Analysis` as the
# awbench MLP gets: the exact pair gap ⟨Δl⟩, its split over the eigen-directions of the
# layer's training Hessian, sharpness Σσg² and size Σσw². The loss is cross-entropy.
#
# **What you will see:** a small CNN (conv, conv, flatten, fc, fc) trained with a plain torch
# loop on the bundled 8×8 digits; both of its fully connected layers decomposed; and the CNN
# set next to the awbench MLP on the same data in dimensionless terms, since raw sharpness
# and size scale with the layer.

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: data split and epochs (smoke: seconds)
seed: int = 0  # seed of the CNN's init and batch order, and of the MLP run
epochs: int = 0  # CNN training epochs (0: profile default, smoke 100, quick 300, paper 500)
lr: float = 0.1  # SGD learning rate of the CNN
batch_size: int = 25  # SGD batch size of the CNN
hidden: int = 30  # width of the CNN's hidden fully connected layer (fc1: 512 -> hidden)

# %%
from collections import OrderedDict

import torch
import torch.nn.functional as F
from IPython.display import Markdown
from torch import nn

import awbench as aw
from awbench import measures, plots, sweeps, takeaways
from awbench import record_names as rn

plots.setup()

# %%
EPOCHS = {"smoke": 100, "quick": 300, "paper": 500}
cfg = sweeps.base_config(profile, "digits", seed=seed)  # the MLP's Config; the CNN uses its data
n_epochs = epochs or EPOCHS[profile]
data = aw.load_data(cfg)
x, y = data.x_train.reshape(-1, 1, 8, 8), data.y_train  # 64 pixels -> one 8x8 channel
x_test, y_test = data.x_test.reshape(-1, 1, 8, 8), data.y_test
Markdown(
    f"{len(y)} training and {len(y_test)} test digits; the CNN trains until the MLP's "
    f"stopping rule is met, at most {n_epochs} epochs."
)

# %% [markdown]
# ## 1 · A CNN, trained the way you would
# Nothing here comes from awbench: a model and an SGD loop.

# %%
torch.manual_seed(seed)
model = nn.Sequential(
    OrderedDict(
        conv1=nn.Conv2d(1, 8, 3, padding=1),
        relu1=nn.ReLU(),
        conv2=nn.Conv2d(8, 8, 3, padding=1),
        relu2=nn.ReLU(),
        flatten=nn.Flatten(),
        fc1=nn.Linear(8 * 8 * 8, hidden),
        relu3=nn.ReLU(),
        fc2=nn.Linear(hidden, 10),
    )
)
opt = torch.optim.SGD(model.parameters(), lr=lr)
history = []  # per epoch, for the MLP's stopping rule (the same rule, so both are comparable)
for epoch in range(n_epochs):
    model.train()
    for batch in torch.randperm(len(y)).split(batch_size):
        opt.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(x)
    loss, hits = F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()
    history.append({"train_loss": float(loss), "train_acc": float(hits)})
    if aw.stopping_rule_met(history, cfg):
        break
cnn_converged = aw.stopping_rule_met(history, cfg)
with torch.no_grad():
    acc = [float((model(a).argmax(1) == b).float().mean()) for a, b in [(x, y), (x_test, y_test)]]
Markdown(
    f"The CNN **{'met' if cnn_converged else 'did not meet'}** the MLP's stopping rule "
    f"(mean train accuracy over {cfg.stop_window} epochs > {cfg.stop_acc}, train loss < "
    f"{cfg.stop_loss}) after {len(history)} epochs: train loss {history[-1]['train_loss']:.4f}, "
    f"train accuracy {acc[0]:.1%}, test accuracy {acc[1]:.1%}."
    + ("" if cnn_converged else " **Its numbers below are not a result:** raise `epochs`.")
)

# %% [markdown]
# ## 2 · Analyse both fully connected layers
# The three lines a user changes to use their own model are the model, the layer's name
# (any `nn.Linear` in `model.named_modules()`) and the data (tensors of any shape, or
# DataLoaders read in order without augmentation):
#
# ```python
# model = my_trained_net                                 # 1 · your trained nn.Module
# layer = "classifier.1"                                 # 2 · the nn.Linear to analyse
# train, test = (x, y), (x_test, y_test)                 # 3 · your data (or DataLoaders)
# an = aw.analyze_model(model, layer=layer, train=train, test=test)
# ```
#
# `fc1` has 512 × hidden + hidden weights (15,390 at hidden 30): more than the dense
# route's limit, so its Hessian is reached through its top eigenvectors plus the separately
# reported complement.

# %%
cnn = {
    name: aw.analyze_model(model, layer=name, train=(x, y), test=(x_test, y_test))
    for name in ("fc1", "fc2")
}

# %% [markdown]
# `an.summary()` reads a result out: the gap, the shares of the pair gap in the sharp, flat
# and complement parts, the curvature part (sharpness / size), exactness, the route, and a
# note when something needs changing, such as a complement too large for the top directions
# to describe the gap.

# %%
print(cnn["fc1"].summary())

# %% [markdown]
# `an.plot()` draws the gap budget over the per-direction spectra (the shaded band: the
# sharp directions).

# %%
cnn["fc1"].plot()

# %% [markdown]
# An `Analysis` as a cell's last line shows the same summary as a table; `repr(an)` is one
# line, and every number is still a field (`an.pair_gap`, `an.directions`, ...).

# %%
cnn["fc2"]

# %%
plots.gap_budget(cnn["fc2"].scalars(), title="CNN fc2 (hidden → logits): where the gap comes from")

# %%
Markdown(
    f"Exact at both layers: duality error ≤ {max(a.duality_error for a in cnn.values()):.1e}, "
    f"identity error ≤ {max(a.identity_error for a in cnn.values()):.1e} (routes: "
    + ", ".join(f"`{k}` {a.hessian_method}" for k, a in cnn.items())
    + ")."
)

# %% [markdown]
# ## 3 · Next to the awbench MLP, in dimensionless terms
# The MLP trains on the same split with the profile's Config (cached). Fractions are of the
# exact pair gap; sharpness × ‖W‖² and size / ‖W‖² do not change when the network is
# rescaled around the layer, unlike the raw values.

# %%
mlp_run = aw.run_experiment(cfg)
Markdown("MLP: " + takeaways.run_takeaway(mlp_run))

# %%
n_hidden = len(cfg.widths)
mlp = {name: mlp_run.analysis(layer=name) for name in (f"fc{n_hidden}", f"fc{n_hidden + 1}")}
analyses = {f"CNN {k}": a for k, a in cnn.items()} | {f"MLP {k}": a for k, a in mlp.items()}
table = measures.dimensionless_table(analyses)
table.round(4)

# %%
legend = "\n".join(f"- `{col}`: {text}" for col, text in measures.DIMENSIONLESS_COLUMNS.items())
best = table["sharp_fraction"].idxmax()
unconverged = [name for name, ok in [("CNN", cnn_converged), ("MLP", mlp_run.converged)] if not ok]
Markdown(
    f"In this run (one seed each: a description, not a verdict) the 10 sharpest directions "
    f"carry the largest share of the gap at **{best}** "
    f"({table.loc[best, 'sharp_fraction']:.0%}); at the CNN's hidden layer they carry "
    f"{table.loc['CNN fc1', 'sharp_fraction']:.0%}, at the MLP's "
    f"{table.loc[f'MLP fc{n_hidden}', 'sharp_fraction']:.0%}."
    + (
        f" **Not converged: {', '.join(unconverged)}**, so these rows are not results."
        if unconverged
        else ""
    )
    + f"\n\n{legend}"
)

# %% [markdown]
# ## Recorded numbers

# %%
aw.record(rn.DUALITY_ERROR, max(a.duality_error for a in cnn.values()))
aw.record(rn.IDENTITY_ERROR, max(a.identity_error for a in cnn.values()))
aw.record(rn.OWN_MODEL_TABLE, table.to_dict(orient="index"))
aw.record(rn.OWN_MODEL_TEST_ACC, acc[1])
