"""awbench: a workbench for the activity-weight duality (Feng, Zhang & Tu 2023)."""

from awbench import landscape
from awbench.analysis.decomposition import Analysis, analyze
from awbench.analysis.duality import (
    dual_weights,
    duality_check,
    general_dual_weights,
    layer_inputs,
    pair_samples,
)
from awbench.config import Config, ConfigError
from awbench.curvature.eigensolvers import Eigenpairs, top_eigenpairs
from awbench.curvature.flat import NondeterministicModelError, determinism_report
from awbench.curvature.layer import layer_hessian
from awbench.curvature.operators import GaussNewtonOperator, HessianOperator
from awbench.curvature.spectrum import (
    SpectralDensity,
    TraceEstimate,
    hessian_trace,
    spectral_density,
)
from awbench.data import Data, DataError, load_data
from awbench.experiments.experiment import Result, run_experiment
from awbench.experiments.notebook_runs import run_notebooks
from awbench.experiments.planning import plan_sweep
from awbench.experiments.records import read_records, record
from awbench.experiments.store import Store, load_store
from awbench.experiments.sweep import run_sweep
from awbench.landscape import dual_directions, eigen_slices, plane_2d, random_directions, slice_1d
from awbench.nn.mlp import MLP, build_model
from awbench.training.run import Run
from awbench.training.sgd import train
from awbench.viz import plots

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Analysis",
    "Config",
    "ConfigError",
    "Data",
    "DataError",
    "Eigenpairs",
    "GaussNewtonOperator",
    "HessianOperator",
    "NondeterministicModelError",
    "Result",
    "Run",
    "SpectralDensity",
    "Store",
    "TraceEstimate",
    "analyze",
    "build_model",
    "determinism_report",
    "dual_directions",
    "dual_weights",
    "duality_check",
    "eigen_slices",
    "general_dual_weights",
    "hessian_trace",
    "landscape",
    "layer_hessian",
    "layer_inputs",
    "load_data",
    "load_store",
    "pair_samples",
    "plan_sweep",
    "plane_2d",
    "plots",
    "random_directions",
    "read_records",
    "record",
    "run_experiment",
    "run_notebooks",
    "run_sweep",
    "slice_1d",
    "spectral_density",
    "top_eigenpairs",
    "train",
]
