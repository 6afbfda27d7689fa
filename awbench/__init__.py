"""awbench: a workbench for the activity-weight duality (Feng, Zhang & Tu 2023).

The names below are imported on first use (PEP 562), so that ``import awbench`` and the
``awbench`` command's ``--help`` and ``--version`` do not load torch, plotly or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from awbench.analysis.summary import register_figure as _register_figure

__version__ = "0.1.0"

# The public names, by topic: name -> the module that defines it (a name that is its module's
# last part is that module). ``__all__``, ``dir(awbench)`` and the lazy loader read this table;
# tests/test_public_names.py checks the TYPE_CHECKING block at the end against it.
_PUBLIC: dict[str, str] = {
    # configuration and data
    "Config": "awbench.config",
    "ConfigError": "awbench.config",
    "Data": "awbench.data",
    "DataError": "awbench.data",
    "load_data": "awbench.data",
    # models and training
    "MLP": "awbench.nn.mlp",
    "build_model": "awbench.nn.mlp",
    "float64_model": "awbench.nn.mlp",
    "Run": "awbench.training.run",
    "stopping_rule_met": "awbench.training.run",
    "train": "awbench.training.sgd",
    # the duality and the gap decomposition
    "Analysis": "awbench.analysis.decomposition",
    "analyze": "awbench.analysis.decomposition",
    "analyze_model": "awbench.analysis.decomposition",
    "AnalysisMemoryError": "awbench.analysis.memory",
    "DualityError": "awbench.analysis.duality_guard",
    "dual_weights": "awbench.analysis.duality",
    "duality_check": "awbench.analysis.duality",
    "general_dual_weights": "awbench.analysis.duality",
    "layer_inputs": "awbench.analysis.duality",
    "pair_samples": "awbench.analysis.duality",
    # SGD's noise against the curvature
    "NoiseCurvature": "awbench.analysis.noise",
    "noise_curvature": "awbench.analysis.noise",
    "power_law_fit": "awbench.analysis.noise",
    # the curvature of any model
    "HessianOperator": "awbench.curvature.operators",
    "GaussNewtonOperator": "awbench.curvature.operators",
    "layer_hessian": "awbench.curvature.layer",
    "Eigenpairs": "awbench.curvature.eigensolvers",
    "top_eigenpairs": "awbench.curvature.eigensolvers",
    "TraceEstimate": "awbench.curvature.spectrum",
    "hessian_trace": "awbench.curvature.spectrum",
    "SpectralDensity": "awbench.curvature.spectrum",
    "spectral_density": "awbench.curvature.spectrum",
    "NondeterministicModelError": "awbench.curvature.flat",
    "determinism_report": "awbench.curvature.flat",
    # the loss landscape
    "landscape": "awbench.landscape",
    "slice_1d": "awbench.landscape",
    "plane_2d": "awbench.landscape",
    "eigen_slices": "awbench.landscape",
    "dual_directions": "awbench.landscape",
    "random_directions": "awbench.landscape",
    # experiments: cached runs, sweeps, the store, notebook records
    "Result": "awbench.experiments.experiment",
    "run_experiment": "awbench.experiments.experiment",
    "plan_sweep": "awbench.experiments.planning",
    "run_sweep": "awbench.experiments.sweep",
    "Store": "awbench.experiments.store",
    "load_store": "awbench.experiments.store",
    "run_notebooks": "awbench.experiments.notebook_runs",
    "record": "awbench.experiments.records",
    "read_records": "awbench.experiments.records",
    # namespaces for notebooks: figures, sentences, runs and tables, measurements, the panel
    "plots": "awbench.plots",
    "takeaways": "awbench.takeaways",
    "sweeps": "awbench.sweeps",
    "measures": "awbench.measures",
    "knob_panel": "awbench.knob_panel",
    "record_names": "awbench.experiments.record_names",
}

__all__ = list(_PUBLIC)


def _analysis_figure(an):
    """``Analysis.plot()``'s figure. The analysis layer may not import awbench.viz (the layer
    contract), so the package root, above every layer, wires it: viz is imported on first use."""
    from awbench.viz.decomposition_plots import analysis_figure

    return analysis_figure(an)


_register_figure(_analysis_figure)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'awbench' has no attribute {name!r}")
    if module.rsplit(".", 1)[-1] == name:
        value = importlib.import_module(module)
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    # the public names and the module's dunders; not its helpers (importlib, Any, ...) nor
    # the sub-packages that importing a public name loads
    return sorted({*_PUBLIC, *(n for n in globals() if n.startswith("__"))})


if TYPE_CHECKING:  # the same table spelled out for type checkers and IDEs
    from awbench import knob_panel, landscape, measures, plots, sweeps, takeaways
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
    from awbench.experiments import record_names
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
    from awbench.nn.mlp import MLP, build_model, float64_model
    from awbench.training.run import Run, stopping_rule_met
    from awbench.training.sgd import train
