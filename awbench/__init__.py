"""awbench: a workbench for the activity-weight duality (Feng, Zhang & Tu 2023)."""

from .config import Config, ConfigError
from .data import Data, DataError, load_data
from .decomposition import Analysis, analyze
from .duality import dual_weights, duality_check, general_dual_weights, layer_inputs, pair_samples
from .experiment import Result, run_experiment
from .hessian import layer_hessian
from .models import MLP, build_model
from .train import Run, train

__version__ = "0.1.0"

__all__ = [
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
