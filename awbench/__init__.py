"""awbench: a workbench for the activity-weight duality (Feng, Zhang & Tu 2023).

The names below are imported on first use (PEP 562), so that ``import awbench`` and the
``awbench`` command's ``--help`` and ``--version`` do not load torch, plotly or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from awbench.analysis.summary import register_figure as _register_figure

__version__ = "0.1.0"

# name -> the module that defines it (a module itself when the name is the module's last part)
_LAZY = {
    "landscape": "awbench.landscape",
    "Analysis": "awbench.analysis.decomposition",
    "analyze": "awbench.analysis.decomposition",
    "analyze_model": "awbench.analysis.decomposition",
    "DualityError": "awbench.analysis.duality_guard",
    "AnalysisMemoryError": "awbench.analysis.memory",
    "dual_weights": "awbench.analysis.duality",
    "duality_check": "awbench.analysis.duality",
    "general_dual_weights": "awbench.analysis.duality",
    "layer_inputs": "awbench.analysis.duality",
    "NoiseCurvature": "awbench.analysis.noise",
    "noise_curvature": "awbench.analysis.noise",
    "power_law_fit": "awbench.analysis.noise",
    "pair_samples": "awbench.analysis.duality",
    "Config": "awbench.config",
    "ConfigError": "awbench.config",
    "Eigenpairs": "awbench.curvature.eigensolvers",
    "top_eigenpairs": "awbench.curvature.eigensolvers",
    "NondeterministicModelError": "awbench.curvature.flat",
    "determinism_report": "awbench.curvature.flat",
    "layer_hessian": "awbench.curvature.layer",
    "GaussNewtonOperator": "awbench.curvature.operators",
    "HessianOperator": "awbench.curvature.operators",
    "SpectralDensity": "awbench.curvature.spectrum",
    "TraceEstimate": "awbench.curvature.spectrum",
    "hessian_trace": "awbench.curvature.spectrum",
    "spectral_density": "awbench.curvature.spectrum",
    "Data": "awbench.data",
    "DataError": "awbench.data",
    "load_data": "awbench.data",
    "Result": "awbench.experiments.experiment",
    "run_experiment": "awbench.experiments.experiment",
    "run_notebooks": "awbench.experiments.notebook_runs",
    "plan_sweep": "awbench.experiments.planning",
    "read_records": "awbench.experiments.records",
    "record": "awbench.experiments.records",
    "Store": "awbench.experiments.store",
    "load_store": "awbench.experiments.store",
    "run_sweep": "awbench.experiments.sweep",
    "dual_directions": "awbench.landscape",
    "eigen_slices": "awbench.landscape",
    "plane_2d": "awbench.landscape",
    "random_directions": "awbench.landscape",
    "slice_1d": "awbench.landscape",
    "MLP": "awbench.nn.mlp",
    "build_model": "awbench.nn.mlp",
    "Run": "awbench.training.run",
    "train": "awbench.training.sgd",
    "plots": "awbench.viz.plots",
}

__all__ = [
    "MLP",
    "Analysis",
    "AnalysisMemoryError",
    "Config",
    "ConfigError",
    "Data",
    "DataError",
    "DualityError",
    "Eigenpairs",
    "GaussNewtonOperator",
    "HessianOperator",
    "NoiseCurvature",
    "NondeterministicModelError",
    "Result",
    "Run",
    "SpectralDensity",
    "Store",
    "TraceEstimate",
    "analyze",
    "analyze_model",
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
    "noise_curvature",
    "pair_samples",
    "plan_sweep",
    "plane_2d",
    "plots",
    "power_law_fit",
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


def _analysis_figure(an):
    """``Analysis.plot()``'s figure. The analysis layer may not import awbench.viz (the layer
    contract), so the package root, above every layer, wires it: viz is imported on first use."""
    from awbench.viz.decomposition_plots import analysis_figure

    return analysis_figure(an)


_register_figure(_analysis_figure)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'awbench' has no attribute {name!r}")
    if module.rsplit(".", 1)[-1] == name:
        value = importlib.import_module(module)
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from awbench import landscape
    from awbench.analysis.decomposition import Analysis, analyze, analyze_model
    from awbench.analysis.duality import (
        dual_weights,
        duality_check,
        general_dual_weights,
        layer_inputs,
        pair_samples,
    )
    from awbench.analysis.duality_guard import DualityError
    from awbench.analysis.memory import AnalysisMemoryError
    from awbench.analysis.noise import NoiseCurvature, noise_curvature, power_law_fit
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
    from awbench.landscape import (
        dual_directions,
        eigen_slices,
        plane_2d,
        random_directions,
        slice_1d,
    )
    from awbench.nn.mlp import MLP, build_model
    from awbench.training.run import Run
    from awbench.training.sgd import train
    from awbench.viz import plots
