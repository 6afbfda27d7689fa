"""What a notebook runs and tabulates, in one namespace: ``from awbench import sweeps``.

A notebook's parameters into Configs, seeds and knob values; sweeps through the shared result
store; their tables, verdicts, claims and records. The functions live in
``awbench.experiments``, one module per job; this module only gathers them for notebooks.
"""

from awbench.experiments.claims import (
    GAMMA_MARGIN,
    algorithm_pairs,
    claim_verdicts,
    compare_algorithms,
)
from awbench.experiments.effects import effects_estimate, size_norm_slope
from awbench.experiments.grids import check_profile, label_noise_n_train
from awbench.experiments.knob_sweeps import (
    effects_table,
    knob_records,
    record_sweeps,
    runs_over_seeds,
    summary_table,
    sweep,
    sweep_grid,
)
from awbench.experiments.noise_runs import (
    batch_sizes,
    first_converged,
    mse_lr,
    noise_evidence,
    noise_over_seeds,
    noise_seeds,
    train_seeds,
)
from awbench.experiments.notebook_params import (
    base_config,
    config_text,
    knob_grid,
    landscape_settings,
    parse_grid,
    seeds,
    workers_for,
)
from awbench.experiments.verdicts import profile_verdict_table, verdict_table, which_factor

__all__ = [
    "GAMMA_MARGIN",
    "algorithm_pairs",
    "base_config",
    "batch_sizes",
    # a notebook's parameters
    "check_profile",
    "claim_verdicts",
    "compare_algorithms",
    "config_text",
    "effects_estimate",
    "effects_table",
    "first_converged",
    "knob_grid",
    "knob_records",
    "label_noise_n_train",
    "landscape_settings",
    "mse_lr",
    "noise_evidence",
    "noise_over_seeds",
    # SGD noise against curvature (notebook 11)
    "noise_seeds",
    "parse_grid",
    "profile_verdict_table",
    "record_sweeps",
    "runs_over_seeds",
    "seeds",
    "size_norm_slope",
    # tables and records of knob sweeps
    "summary_table",
    # runs through the shared store
    "sweep",
    "sweep_grid",
    "train_seeds",
    # verdicts and claims
    "verdict_table",
    "which_factor",
    "workers_for",
]
