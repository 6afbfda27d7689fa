"""The names of the records the report reads, in one place.

The report (awbench.apps.report) finds a notebook's numbers by name only, so a record renamed
in a notebook used to turn a claim into a silent "n/a". Notebooks write
``aw.record(rn.DUALITY_ERROR, ...)`` and the report reads ``rn.DUALITY_ERROR``; :data:`EXPECTED`
says which of these names each notebook owes the report, and tests/test_records.py checks
both sides against it.

Records nobody reads (diagnostics a notebook keeps for its reader) may keep plain strings.
"""

from __future__ import annotations

# --- 00_tour: one run, its decomposition -------------------------------------------------
REAL_GAP = "real_gap"
PAIR_GAP = "pair_gap"
ESTIMATED_GAP = "estimated_gap"
SHARPNESS = "sharpness"
SIZE = "size"
IDENTITY_ERROR = "identity_error"
DUALITY_ERROR = "duality_error"
LAM_MAX = "lam_max"

# --- 01_duality ----------------------------------------------------------------------------
FLOAT32_LOGIT_ERROR = "float32_logit_error"
FAMILY_MIN_NORM_RATIO = "family_min_norm_ratio"
LINEARITY_DEVIATION = "linearity_deviation"

# --- 02_hessian_and_landscape --------------------------------------------------------------
TRACE = "trace"
TRACE_SE = "trace_se"
SLICE_CURVATURE_REL_ERROR = "slice_curvature_rel_error"

# --- 03_gap_decomposition ------------------------------------------------------------------
SHARP_SHARE = "sharp_share"
SPEARMAN_SIGMA_G_LAM = "spearman_sigma_g_lam"
SPEARMAN_RATIO_LAM = "spearman_ratio_lam"
IDENTITY_ERROR_ALL_LAYERS = "identity_error_all_layers"
SEEDS_ESTIMATE_REL_ERROR = "seeds.estimate_rel_error"
MEAN_TERM_SHARE = "mean_term_share"  # sum mu_g mu_w / pair gap, this run
SEEDS_MEAN_TERM_SHARE_MAX = "seeds.max_abs_mean_term_share"  # its largest |.| over seeds
C_TOP_MEAN = "c_top.mean"  # the correlation c_n over the sharp directions: mean and sd
C_TOP_SD = "c_top.sd"
CURVATURE = "curvature"  # sharpness / size, the size-free curvature part
# Top-k share of the gap in the Hessian basis and two controls (awbench.analysis.control_basis)
TOP_SHARE_HESSIAN = "top_share.hessian"
TOP_SHARE_DUAL_PCA = "top_share.dual_pca"
TOP_SHARE_RANDOM = "top_share.random"

# --- 05_weight_decay_and_init_scale --------------------------------------------------------
SIZE_NORM_SLOPE = "size_norm_slope"
SIZE_NORM_RHO = "size_norm_rho"

# --- 09_multi_learner ----------------------------------------------------------------------
MULTILEARNER_PAIRS = "multilearner.pairs"

# --- 10_your_own_network: a CNN's fully connected layers next to the MLP's ------------------
OWN_MODEL_TABLE = "own_model.table"  # label -> awbench.analysis.dimensionless columns
OWN_MODEL_TEST_ACC = "own_model.test_acc"

# --- 11_sgd_noise_and_curvature: the follow-up's claims, per converged seed (lists) -------
NOISE_GAMMA_CE = "noise.gamma_ce"  # gamma of C_ii ~ H_ii^gamma, cross-entropy runs
NOISE_GAMMA_MSE = "noise.gamma_mse"  # the same, MSE runs
NOISE_COMMUTATOR = "noise.commutator"  # ||[C, H]|| / (||C|| ||H||), cross-entropy runs
NOISE_COMMUTATOR_BASELINE = "noise.commutator_baseline"  # its random-eigenvector baseline

# --- knob notebooks (04-07): one record per knob and quantity, "<knob>.<quantity>" ---------
SHARPNESS_CHANGE = "sharpness_change"
SIZE_CHANGE = "size_change"
CURVATURE_CHANGE = "curvature_change"
WEIGHT_NORM_CHANGE = "weight_norm_change"
REAL_GAP_CHANGE = "real_gap_change"
REAL_GAP_LOW = "real_gap_low"
REAL_GAP_HIGH = "real_gap_high"
VALUES = "values"
N_SEEDS = "n_seeds"
VERDICT = "verdict"
RUNS = "runs"

# The per-knob quantities the report reads (knob table, claims, pooled verdicts).
KNOB_QUANTITIES = (
    SHARPNESS_CHANGE,
    SIZE_CHANGE,
    CURVATURE_CHANGE,
    WEIGHT_NORM_CHANGE,
    REAL_GAP_CHANGE,
    REAL_GAP_LOW,
    REAL_GAP_HIGH,
    VALUES,
    N_SEEDS,
    VERDICT,
    RUNS,
)

# Which notebook sweeps which knob; the report's knob order is this order.
NOTEBOOK_KNOBS: dict[str, tuple[str, ...]] = {
    "04_sgd_batch_and_lr": ("batch_size", "lr"),
    "05_weight_decay_and_init_scale": ("weight_decay", "init_scale"),
    "06_dropout": ("dropout",),
    "07_data_size_and_label_noise": ("n_train", "label_noise"),
}
KNOBS: tuple[str, ...] = tuple(k for knobs in NOTEBOOK_KNOBS.values() for k in knobs)


def knob_record(knob: str, quantity: str) -> str:
    """The name of one knob's record, e.g. ``knob_record("lr", SIZE_CHANGE)``."""
    return f"{knob}.{quantity}"


def knob_of(name: str, quantity: str) -> str | None:
    """The knob of a record named ``knob_record(knob, quantity)``, else None."""
    suffix = "." + quantity
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else None


def _knob_names(stem: str) -> set[str]:
    return {knob_record(k, q) for k in NOTEBOOK_KNOBS[stem] for q in KNOB_QUANTITIES}


# What the report expects each executed notebook to have recorded.
EXPECTED: dict[str, set[str]] = {
    "00_tour": {IDENTITY_ERROR, ESTIMATED_GAP, PAIR_GAP, REAL_GAP, SHARPNESS, SIZE},
    "01_duality": {
        DUALITY_ERROR,
        FLOAT32_LOGIT_ERROR,
        FAMILY_MIN_NORM_RATIO,
        LINEARITY_DEVIATION,
    },
    "02_hessian_and_landscape": {LAM_MAX, TRACE, TRACE_SE, SLICE_CURVATURE_REL_ERROR},
    "03_gap_decomposition": {
        MEAN_TERM_SHARE,
        SEEDS_MEAN_TERM_SHARE_MAX,
        C_TOP_MEAN,
        C_TOP_SD,
        SHARP_SHARE,
        SPEARMAN_SIGMA_G_LAM,
        SPEARMAN_RATIO_LAM,
        IDENTITY_ERROR_ALL_LAYERS,
        SEEDS_ESTIMATE_REL_ERROR,
        CURVATURE,
        TOP_SHARE_HESSIAN,
        TOP_SHARE_DUAL_PCA,
        TOP_SHARE_RANDOM,
    },
    "04_sgd_batch_and_lr": _knob_names("04_sgd_batch_and_lr"),
    "05_weight_decay_and_init_scale": _knob_names("05_weight_decay_and_init_scale")
    | {SIZE_NORM_SLOPE, SIZE_NORM_RHO},
    "06_dropout": _knob_names("06_dropout"),
    "07_data_size_and_label_noise": _knob_names("07_data_size_and_label_noise"),
    "09_multi_learner": {MULTILEARNER_PAIRS},
    "10_your_own_network": {DUALITY_ERROR, IDENTITY_ERROR, OWN_MODEL_TABLE, OWN_MODEL_TEST_ACC},
    "11_sgd_noise_and_curvature": {
        NOISE_GAMMA_CE,
        NOISE_GAMMA_MSE,
        NOISE_COMMUTATOR,
        NOISE_COMMUTATOR_BASELINE,
    },
}


def missing(stem: str, records: dict) -> list[str]:
    """The records ``EXPECTED[stem]`` names that ``records`` lacks, sorted."""
    return sorted(EXPECTED.get(stem, set()) - set(records))
