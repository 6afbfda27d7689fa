"""What the notebooks measure beside :func:`awbench.analyze`, in one namespace:
``from awbench import measures``.

Exactness checks of the duality, rank correlations, the control bases, size-free tables of
a layer, trace and eigenvalue checks, and SGD's minibatch noise against the batch size. They
live in ``awbench.analysis`` and ``awbench.curvature``; this module only gathers them.
"""

from awbench.analysis.checks import family_sweep, pair_activities, scaling_sweep
from awbench.analysis.control_basis import control_summary
from awbench.analysis.decomposition import spearman, spearman_ratio, spearman_sigma_g
from awbench.analysis.dimensionless import COLUMNS as DIMENSIONLESS_COLUMNS
from awbench.analysis.dimensionless import dimensionless_table
from awbench.analysis.noise import minibatch_trace, per_sample_gradients
from awbench.curvature.spectrum import eigen_check, trace_table

__all__ = [
    "DIMENSIONLESS_COLUMNS",
    "control_summary",
    # layers and networks compared without units (10)
    "dimensionless_table",
    # curvature checks (02)
    "eigen_check",
    "family_sweep",
    "minibatch_trace",
    # the duality is exact (notebook 01)
    "pair_activities",
    # SGD's minibatch noise against the batch size (11)
    "per_sample_gradients",
    "scaling_sweep",
    # which factor follows the curvature, and is the Hessian basis special (03, 05)
    "spearman",
    "spearman_ratio",
    "spearman_sigma_g",
    "trace_table",
]
