"""Every sentence a notebook shows after a figure, in one namespace:
``from awbench import takeaways``.

Markdown strings written from the numbers of this run or sweep, so that the text a reader
sees is never stale. They live in ``awbench.viz``, one module per subject; this module only
gathers them for notebooks.
"""

from awbench.viz.knob_takeaways import (
    context_takeaway,
    convergence_takeaway,
    estimate_takeaway,
    factor_takeaway,
    gap_takeaway,
    knob_takeaway,
    metric_takeaway,
    plane_takeaway,
    size_norm_takeaway,
)
from awbench.viz.landscape_takeaways import (
    curvature_takeaway,
    slices_takeaway,
    spectrum_takeaway,
    trace_takeaway,
)
from awbench.viz.learner_comparison import dpsgd_takeaway
from awbench.viz.noise_takeaways import (
    batch_sentence,
    claims_sentence,
    commutator_sentence,
    eh2_sentence,
    gamma_sentence,
    status_sentence,
)
from awbench.viz.run_takeaways import (
    control_basis_takeaway,
    factors_takeaway,
    identity_takeaway,
    layer_table,
    layer_takeaway,
    run_takeaway,
    second_order_takeaway,
    spectra_takeaway,
)

__all__ = [
    "batch_sentence",
    "claims_sentence",
    "commutator_sentence",
    "context_takeaway",
    "control_basis_takeaway",
    "convergence_takeaway",
    "curvature_takeaway",
    # several learners (09)
    "dpsgd_takeaway",
    "eh2_sentence",
    "estimate_takeaway",
    "factor_takeaway",
    "factors_takeaway",
    "gamma_sentence",
    # knob sweeps (03-07, 09)
    "gap_takeaway",
    "identity_takeaway",
    "knob_takeaway",
    "layer_table",
    "layer_takeaway",
    "metric_takeaway",
    "plane_takeaway",
    # one run and its decomposition (notebooks 00-03, 10)
    "run_takeaway",
    "second_order_takeaway",
    "size_norm_takeaway",
    "slices_takeaway",
    "spectra_takeaway",
    # curvature and the loss landscape (02)
    "spectrum_takeaway",
    # SGD noise against curvature (11)
    "status_sentence",
    "trace_takeaway",
]
