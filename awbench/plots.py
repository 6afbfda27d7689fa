"""Every figure the notebooks draw, in one namespace: ``from awbench import plots``.

Plotly figures in the house style (:mod:`awbench.viz.gap_plots`), pure builders: data in,
``go.Figure`` out. :func:`setup` is every notebook's first call; :func:`knob_section` and
:func:`all_runs_section` show the sections the knob notebooks (04-07) are made of, one knob's
sweep with its figures and sentences and the closing figures over every run. They live in
``awbench.viz``, one module per subject; this module only gathers them for notebooks.
"""

from awbench.viz.curvature_plots import direction_curvatures, trace_convergence
from awbench.viz.decomposition_plots import (
    analysis_figure,
    basis_share_curves,
    cumulative_gap,
    direction_spectra,
    gap_budget,
    second_order,
    sharpness_vs_lam,
    training_curves,
)
from awbench.viz.duality_plots import (
    dual_norm_check,
    duality_exactness,
    general_family,
    scaling_check,
)
from awbench.viz.gap_plots import estimated_vs_actual, knob_effects, size_vs_weight_norm
from awbench.viz.knob_plots import factor_plane, factors_vs_knob, gap_vs_knob, metric_vs_knob
from awbench.viz.knob_section import all_runs_section, knob_section
from awbench.viz.landscape_plots import (
    contour_figure,
    slice_figure,
    spectrum_figure,
    surface_figure,
)
from awbench.viz.learner_comparison import factors_by_algorithm, gap_by_algorithm
from awbench.viz.noise_plots import (
    LOSS_NAMES,
    commutator_against_baseline,
    gamma_over_seeds,
    noise_against_batch_size,
    noise_against_curvature,
    noise_against_eh2,
)
from awbench.viz.notebook_setup import setup

__all__ = [
    # SGD noise against curvature (11)
    "LOSS_NAMES",
    "all_runs_section",
    "analysis_figure",
    "basis_share_curves",
    "commutator_against_baseline",
    "contour_figure",
    "cumulative_gap",
    "direction_curvatures",
    "direction_spectra",
    "dual_norm_check",
    # the duality (notebooks 00, 01)
    "duality_exactness",
    "estimated_vs_actual",
    "factor_plane",
    "factors_by_algorithm",
    "factors_vs_knob",
    "gamma_over_seeds",
    "gap_budget",
    # several learners (09)
    "gap_by_algorithm",
    # knob sweeps (03-07)
    "gap_vs_knob",
    "general_family",
    "knob_effects",
    "knob_section",
    "metric_vs_knob",
    "noise_against_batch_size",
    "noise_against_curvature",
    "noise_against_eh2",
    "scaling_check",
    "second_order",
    # the kernel
    "setup",
    "sharpness_vs_lam",
    "size_vs_weight_norm",
    "slice_figure",
    # curvature and the loss landscape (02)
    "spectrum_figure",
    "surface_figure",
    "trace_convergence",
    # one run's decomposition (00, 03, 10)
    "training_curves",
]
