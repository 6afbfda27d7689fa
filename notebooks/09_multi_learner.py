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
# # 09 · Several learners: synchronous against decentralized SGD
#
# n learners train one network together, each on its own shard and batch (`batch_size` is
# per learner, so one step sees n × batch samples). **SSGD** averages the n gradients every
# step: it is plain SGD at the large batch n × b. **DPSGD** lets each learner step on its own
# gradient and then mix parameters with its neighbours (ring by default); **local SGD**
# averages every `local_steps` steps. The analysed model is the learners' average.
#
# **The paper's claim tested here (docs/science.md#7-claims-and-hypotheses):** at large
# batch, decentralized parallel SGD generalizes better than synchronous SGD, because its
# extra, landscape-dependent noise finds *flatter* solutions (smaller sharpness Σσg²) of
# *unchanged size* (Σσw²). The regime is fixed in docs/science.md#10-multi-learner-regime-dpsgd-vs-ssgd
# before running: 8 learners, batch 25 per learner (SSGD = SGD at batch 200), the same lr 0.1
# for both, ring topology, the automatic budget, seeds paired by seed. Only pairs where both
# networks met the stopping rule count; the verdict comes with its interval.

# %% tags=["parameters"]
profile: str = "quick"  # smoke | quick | paper: grid and seeds (smoke: 2 learners)
seed: int = 0  # first seed; every setting runs seeds seed, seed+1, ...
n_seeds: int = 0  # seed pairs per setting (0: profile default, smoke 2, quick 8, paper 10)
dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
n_learners: int = 8  # largest learner count; the takeaway compares algorithms there (smoke: 2)
topology: str = "ring"  # DPSGD mixing graph: ring | torus | full | gossip
workers: int = 0  # sweep processes (0: profile default, 1 in smoke, else 2)
store: str = ""  # sweep store folder (empty: the shared store in the awbench cache)
overrides: str = ""  # more Config fields, name: value pairs, e.g. batch_size: 50, local_steps: 4

# %%
from IPython.display import Markdown

import awbench as aw
from awbench import plots, sweeps, takeaways
from awbench import record_names as rn

plots.setup()

# %%
ALGORITHMS = {"smoke": ["ssgd", "dpsgd"], "quick": ["ssgd", "dpsgd"], "paper": ["ssgd", "dpsgd", "local_sgd"]}
# 8 pairs: the claims are judged by paired t-tests on the per-seed log-ratios, corrected with
# Holm over every claim of the report (docs/science.md#10-multi-learner-regime-dpsgd-vs-ssgd).
SEEDS = {"smoke": 2, "quick": 8, "paper": 10}
COUNTS = {
    "smoke": [2],
    "quick": [n_learners],
    "paper": [c for c in (2, 4, 8, 16, 32) if c < n_learners] + [n_learners],
}
base = sweeps.base_config(profile, dataset, overrides, seed=seed, topology=topology)
algorithms = ALGORITHMS[profile]
counts = sorted(set(COUNTS[profile]))
seed_list = sweeps.seeds(profile, seed, n_seeds or SEEDS[profile])
grid = {"algorithm": algorithms, "n_learners": counts}
Markdown(f"Base: `{base.diff()}`; grid `{grid}`, seeds {seed_list}.")

# %% [markdown]
# ## 1 · Runs
#
# One sweep over algorithm × learner count × seed, through the cache and the sweep store
# (the same grid runs on Dask with `awbench sweep --grid ... --dask-local 2`).

# %%
all_runs = sweeps.sweep_grid(
    base, grid, seed_list, sweeps.workers_for(profile, workers), store,
    name=f"notebook-multilearner-{base.key()[:8]}",
)
runs = all_runs[all_runs["status"] == "converged"]
COLS = ["real_gap", "sharp_gap", "flat_gap", "sharpness", "size", "test_error"]
Markdown(takeaways.convergence_takeaway(all_runs, ["algorithm", "n_learners"]))

# %%
table = runs.groupby(["n_learners", "algorithm"])[COLS].agg(["mean", "std"])
table  # noqa: B018

# %% [markdown]
# ## 2 · Gap per algorithm (converged runs; error bars: standard deviation over seeds)

# %%
plots.gap_by_algorithm(table, algorithms)

# %% [markdown]
# ## 3 · The two factors side by side

# %%
plots.factors_by_algorithm(table, algorithms)

# %% [markdown]
# ## 4 · Takeaway

# %%
n_top = counts[-1]
pairs = sweeps.algorithm_pairs(all_runs, n_top, ["real_gap", "sharpness", "size", "sharp_gap"])
comparison = sweeps.compare_algorithms(pairs)
Markdown(takeaways.dpsgd_takeaway(comparison, n_top, topology))

# %% [markdown]
# ## Recorded numbers

# %%
ok = all_runs[all_runs["status"].isin(("converged", "max_epochs"))]
for alg in algorithms:  # means over converged runs only (NaN when none converged)
    at = runs[(runs["algorithm"] == alg) & (runs["n_learners"] == n_top)]
    aw.record(f"n_converged_{alg}", len(at))
    for col in ("real_gap", "sharpness", "size"):
        aw.record(f"{col}_{alg}", float(at[col].mean()))
aw.record(rn.MULTILEARNER_PAIRS, pairs.to_dict("list"))
aw.record("agrees_with_claim", bool(comparison["agrees"]))
aw.record(rn.DUALITY_ERROR, float(ok["duality_error"].max()))
aw.record(rn.IDENTITY_ERROR, float(ok["identity_error"].max()))
