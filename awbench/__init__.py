"""awbench: a workbench for the activity-weight duality (Feng, Zhang & Tu 2023)."""

from awbench.config import Config, ConfigError
from awbench.data import Data, DataError, load_data
from awbench.analysis.decomposition import Analysis, analyze
from awbench.analysis.duality import dual_weights, duality_check, general_dual_weights, layer_inputs, pair_samples
from awbench.experiments.experiment import Result, run_experiment
from awbench import landscape
from awbench.viz import plots
from awbench.curvature.hessian import (
    Eigenpairs,
    GaussNewtonOperator,
    HessianOperator,
    NondeterministicModelError,
    SpectralDensity,
    TraceEstimate,
    determinism_report,
    hessian_trace,
    layer_hessian,
    spectral_density,
    top_eigenpairs,
)
from awbench.landscape import dual_directions, eigen_slices, plane_2d, random_directions, slice_1d
from awbench.nn.mlp import MLP, build_model
from awbench.experiments.records import read_records, record
from awbench.experiments.store import Store, load_store
from awbench.experiments.sweep import plan_sweep, run_notebooks, run_sweep
from awbench.training.sgd import Run, train

__version__ = "0.1.0"

__all__ = [
    "Store",
    "load_store",
    "plan_sweep",
    "read_records",
    "record",
    "run_notebooks",
    "run_sweep",
    "Eigenpairs",
    "GaussNewtonOperator",
    "HessianOperator",
    "NondeterministicModelError",
    "SpectralDensity",
    "TraceEstimate",
    "determinism_report",
    "dual_directions",
    "eigen_slices",
    "hessian_trace",
    "landscape",
    "plane_2d",
    "plots",
    "random_directions",
    "slice_1d",
    "spectral_density",
    "top_eigenpairs",
    "Analysis",
    "Config",
    "ConfigError",
    "Data",
    "DataError",
    "MLP",
    "Result",
    "Run",
    "analyze",
    "build_model",
    "dual_weights",
    "duality_check",
    "general_dual_weights",
    "layer_hessian",
    "layer_inputs",
    "load_data",
    "pair_samples",
    "run_experiment",
    "train",
]
