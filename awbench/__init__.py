"""awbench: a workbench for the activity-weight duality (Feng, Zhang & Tu 2023)."""

from .config import Config, ConfigError
from .data import Data, DataError, load_data
from .models import MLP, build_model
from .train import Run, train

__version__ = "0.1.0"

__all__ = ["Config", "ConfigError", "Data", "DataError", "load_data", "MLP", "build_model", "Run", "train"]
