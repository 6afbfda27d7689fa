"""Run one Config end to end (train, then analyze), cached on disk by ``Config.key()``.

A cache entry is one file written atomically (temporary file + rename). Entries are loaded
with ``torch.load(weights_only=True)``; an entry that is corrupt, stale (another schema) or
for another key is recomputed, never a crash.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .cache import cache_dir
from .config import SCHEMA_VERSION, Config
from .data import load_data
from .decomposition import Analysis, analyze
from .models import build_model
from .train import Run, train

RESULT_FORMAT = 1


@dataclass
class Result:
    """What a sweep and the notebooks need from one run, without the heavy arrays."""

    config: Config
    status: str  # converged | max_epochs | diverged | failed
    reason: str
    epochs: int
    train_seconds: float
    analyze_seconds: float
    scalars: dict = field(default_factory=dict)
    directions: pd.DataFrame | None = None
    history: pd.DataFrame | None = None
    model_state: dict | None = field(default=None, repr=False)
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status in ("converged", "max_epochs")

    def load_run(self) -> Run:
        """Rebuild the trained :class:`Run` (model weights and data) from this result."""
        if self.model_state is None:
            raise ValueError(f"run {self.config.key()} has no model ({self.status}: {self.reason})")
        data = load_data(self.config)
        model = build_model(self.config, data.n_features, data.n_classes)
        model.load_state_dict(self.model_state)
        model.eval()
        return Run(self.config, model, data, self.history, self.status, self.reason, self.train_seconds)

    def analysis(self, **kwargs) -> Analysis:
        """Recompute the full :class:`Analysis` (with per-pair arrays) of the cached model."""
        return analyze(self.load_run(), **kwargs)


def _path(cfg: Config) -> Path:
    return cache_dir() / "results" / f"{cfg.key()}.pt"


def _encode(res: Result) -> dict:
    return {
        "format": RESULT_FORMAT,
        "schema": SCHEMA_VERSION,
        "key": res.config.key(),
        "config": res.config.to_dict(),
        "status": res.status,
        "reason": res.reason,
        "epochs": res.epochs,
        "train_seconds": res.train_seconds,
        "analyze_seconds": res.analyze_seconds,
        "scalars": res.scalars,
        "directions": None if res.directions is None else res.directions.to_dict("list"),
        "history": None if res.history is None else res.history.to_dict("list"),
        "model_state": res.model_state,
    }


def _decode(blob: dict, cfg: Config) -> Result | None:
    if blob.get("format") != RESULT_FORMAT or blob.get("schema") != SCHEMA_VERSION:
        return None
    if blob.get("key") != cfg.key() or Config.from_dict(blob["config"]) != cfg:
        return None
    return Result(
        config=cfg,
        status=blob["status"],
        reason=blob["reason"],
        epochs=int(blob["epochs"]),
        train_seconds=float(blob["train_seconds"]),
        analyze_seconds=float(blob["analyze_seconds"]),
        scalars=dict(blob["scalars"]),
        directions=None if blob["directions"] is None else pd.DataFrame(blob["directions"]),
        history=None if blob["history"] is None else pd.DataFrame(blob["history"]),
        model_state=blob["model_state"],
        cached=True,
    )


def load_cached(cfg: Config) -> Result | None:
    """The cached result of ``cfg``, or None when absent, corrupt or stale."""
    path = _path(cfg)
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return _decode(blob, cfg)
    except Exception as exc:  # corrupt or foreign file: recompute rather than crash
        warnings.warn(f"ignoring unreadable cache entry {path}: {exc}", stacklevel=2)
        return None


def save_cached(res: Result) -> Path:
    path = _path(res.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(_encode(res), tmp)
    os.replace(tmp, path)
    return path


def _json_scalar(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return int(v)
    return float(v)


def run_experiment(cfg: Config, cache: bool = True, show_progress: bool | None = None) -> Result:
    """Train and analyze ``cfg``; return the cached result when there is one.

    Divergence is a result (status "diverged"), not an exception. Only complete results are
    cached; a run that ends in an exception leaves no entry behind.
    """
    if cache:
        hit = load_cached(cfg)
        if hit is not None:
            return hit
    run = train(cfg, show_progress=show_progress)
    scalars, directions, analyze_seconds = {}, None, 0.0
    status, reason = run.status, run.reason
    if run.ok:
        start = time.perf_counter()
        try:
            an = analyze(run)
        except ValueError as exc:  # e.g. a dead ReLU layer leaves no pair with a dual weight
            status, reason = "failed", f"analysis failed after training ({run.reason}): {exc}"
        else:
            scalars = {k: _json_scalar(v) for k, v in an.scalars().items()}
            directions = an.directions
        analyze_seconds = time.perf_counter() - start
    res = Result(
        config=cfg,
        status=status,
        reason=reason,
        epochs=run.epochs,
        train_seconds=run.train_seconds,
        analyze_seconds=analyze_seconds,
        scalars=scalars,
        directions=directions,
        history=run.history,
        model_state={k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()},
    )
    if cache:
        save_cached(res)
    return res
