# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (awbench)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Several learners: synchronous against decentralized SGD
#
# n learners train one network together, each on its own shard and batch (`batch_size` is
# per learner, so one step sees n × batch samples). **SSGD** averages the n gradients every
# step: it is plain SGD at the large batch n × b. **DPSGD** lets each learner step on its own
# gradient and then mix parameters with its neighbours (ring by default); **local SGD**
# averages every `local_steps` steps. The analysed model is the learners' average.
#
# **The paper's claim tested here (PAPER.md section 5):** at large batch, decentralized
# parallel SGD generalizes better than synchronous SGD, because its extra,
# landscape-dependent noise finds *flatter* solutions (smaller sharpness Σσg²) of *unchanged
# size* (Σσw²). Our models, data and learner counts are not the paper's, so the takeaway
# below says plainly whether this run agrees.

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: grid, seeds, epoch cap (smoke: 2 learners)
seed: int = 0  # first seed; every setting runs seeds seed, seed+1, ...
n_seeds: int = 0  # seeds per setting (0: profile default, smoke 1, quick 2, paper 5)
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
n_learners: int = 8  # largest learner count; the takeaway compares algorithms there (smoke: 2)
topology: str = "ring"  # DPSGD mixing graph: ring | torus | full | gossip
workers: int = 0  # sweep processes (0: profile default, 1 in smoke, else 2)
store: str = ""  # sweep store folder (empty: the shared store in the awbench cache)
overrides: str = ""  # more Config fields, name: value pairs, e.g. batch_size: 50, local_steps: 4

# %%
import numpy as np
import plotly.graph_objects as go
from IPython.display import Markdown
from plotly.subplots import make_subplots

import awbench as aw
from awbench import notebook_support as nb
from awbench.progress import interactive

nb.setup()


def lines(fig, table, column, **where):
    """One trace per algorithm: mean of ``column`` over seeds against n, std as error bar."""
    for alg in ALGORITHMS:
        t = table.xs(alg, level="algorithm")[column]
        err = {"type": "data", "array": t["std"].fillna(0).to_numpy()}
        fig.add_trace(
            go.Scatter(
                x=t.index,
                y=t["mean"],
                error_y=err,
                name=alg,
                legendgroup=alg,
                showlegend=not where or where["col"] == 1,
            ),
            **where,
        )


# %%
ALGORITHMS = ["ssgd", "dpsgd", "local_sgd"]
SEEDS = {"smoke": 1, "quick": 2, "paper": 5}
MAX_EPOCHS = {"smoke": None, "quick": 150, "paper": None}  # None: the preset's
COUNTS = {
    "smoke": [2],
    "quick": [max(2, n_learners // 2), n_learners],
    "paper": [c for c in (2, 4, 8, 16, 32) if c < n_learners] + [n_learners],
}
base = nb.base_config(profile, dataset, overrides, seed=seed, topology=topology)
if MAX_EPOCHS[profile]:
    base = base.replace(max_epochs=min(base.max_epochs, MAX_EPOCHS[profile]))
counts = sorted(set(COUNTS[profile]))
seed_list = nb.seeds(profile, seed, n_seeds or SEEDS[profile])
grid = {"algorithm": ALGORITHMS, "n_learners": counts}
Markdown(f"Base: `{base.diff()}`; grid `{grid}`, seeds {seed_list}.")

# %% [markdown]
# ## 1 · Runs
#
# One sweep over algorithm × learner count × seed, through the cache and the sweep store
# (the same grid runs on Dask with `awbench sweep --grid ... --dask-local 2`).

# %%
report = aw.run_sweep(
    grid,
    nb.store_path(store),
    seeds=seed_list,
    base=base,
    name=f"notebook-multilearner-{base.key()[:8]}",
    workers=nb.workers_for(profile, workers),
    quiet=not interactive(),
)
runs = report.load().runs
runs = runs[runs["status"].isin(("converged", "max_epochs"))]
COLS = ["real_gap", "sharp_gap", "flat_gap", "sharpness", "size", "test_error"]
table = runs.groupby(["n_learners", "algorithm"])[COLS].agg(["mean", "std"])
table  # noqa: B018

# %% [markdown]
# ## 2 · Gap per algorithm (error bars: standard deviation over seeds)

# %%
fig = go.Figure()
lines(fig, table, "real_gap")
fig.update_layout(
    title="Generalization gap by algorithm", xaxis_title="learners n", yaxis_title="real gap (nats)"
)

# %% [markdown]
# ## 3 · The two factors side by side

# %%
fig = make_subplots(rows=1, cols=2, subplot_titles=["sharpness Σσg²", "size Σσw²"])
lines(fig, table, "sharpness", row=1, col=1)
lines(fig, table, "size", row=1, col=2)
fig.update_xaxes(title_text="learners n")
fig.update_yaxes(title_text="Σσg²", row=1, col=1)
fig.update_yaxes(title_text="Σσw²", row=1, col=2)
fig.update_layout(title="Sharpness and size by algorithm")

# %% [markdown]
# ## 4 · Takeaway

# %%
n_top = counts[-1]
at = table.xs(n_top, level="n_learners")
m, sd = at.xs("mean", axis=1, level=1), at.xs("std", axis=1, level=1).fillna(0)
d = m.loc["dpsgd"] - m.loc["ssgd"]
spread = np.sqrt(sd.loc["dpsgd"] ** 2 + sd.loc["ssgd"] ** 2)
size_change = d["size"] / m.loc["ssgd", "size"]
flatter, smaller_gap = d["sharpness"] < 0, d["real_gap"] < 0
same_size = abs(size_change) < 0.1 or abs(d["size"]) <= spread["size"]
agrees = bool(flatter and same_size and smaller_gap)
clear = all(abs(d[c]) > spread[c] for c in ("real_gap", "sharpness"))
Markdown(
    f"At n = {n_top} learners ({len(seed_list)} seed(s), {topology} topology), DPSGD against SSGD: "
    f"gap {nb.fmt(m.loc['dpsgd', 'real_gap'])} vs {nb.fmt(m.loc['ssgd', 'real_gap'])} nats, "
    f"sharpness {nb.fmt(m.loc['dpsgd', 'sharpness'])} vs {nb.fmt(m.loc['ssgd', 'sharpness'])}, "
    f"size {nb.fmt(m.loc['dpsgd', 'size'])} vs {nb.fmt(m.loc['ssgd', 'size'])} ({nb.pct(size_change)}). "
    f"DPSGD is {'flatter' if flatter else 'not flatter'}, its size is "
    f"{'about the same' if same_size else 'different'}, and its gap is {'smaller' if smaller_gap else 'not smaller'}. "
    f"**This run {'agrees' if agrees else 'does not agree'} with the paper's claim**"
    + (
        ", from one seed: there is no seed-to-seed spread to judge it against."
        if len(seed_list) < 2
        else (
            "."
            if clear
            else ", but only in direction: a gap or sharpness difference is within the seed spread."
        )
    )
)

# %% [markdown]
# ## Recorded numbers

# %%
for alg in ALGORITHMS:
    for col in ("real_gap", "sharpness", "size"):
        aw.record(f"{col}_{alg}", float(m.loc[alg, col]))
aw.record("agrees_with_claim", agrees)
aw.record("duality_error", float(runs["duality_error"].max()))
aw.record("identity_error", float(runs["identity_error"].max()))
