"""Run one Config end to end (train, then analyze), cached on disk by ``Config.key()``.

A cache entry is one file written atomically (temporary file + rename). Entries are loaded
with ``torch.load(weights_only=True)`` (no pickle code runs) and carry a SHA-256 of their
payload (every field, scalar and tensor byte; ``torch.load`` itself checks no CRC), verified
before use: a mismatch is a corrupt entry, warned about (naming the file) and recomputed,
never served. An entry that is corrupt, stale (another schema or another
``NUMERICS_VERSION``: numbers computed by other code; no digest: written by code before
digests) or for another key is recomputed, never a crash. A cache that cannot be written (read-only, disk full) is a
warning: the result is returned all the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from awbench.analysis.decomposition import Analysis, analyze
from awbench.cache import cache_dir
from awbench.config import NUMERICS_VERSION, SCHEMA_VERSION, Config
from awbench.data import load_data
from awbench.nn.mlp import build_model
from awbench.status import CONVERGED, DONE_STATUSES
from awbench.training.run import EpochCallback, Run
from awbench.training.sgd import train

RESULT_FORMAT = 1  # entries since the digest also carry DIGEST_FIELD


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
        """Trained and analysed (converged or not); see ``converged`` for results."""
        return self.status in DONE_STATUSES

    @property
    def converged(self) -> bool:
        """Met the stopping rule: the only runs that count as results."""
        return self.status == CONVERGED

    def load_run(self) -> Run:
        """Rebuild the trained :class:`Run` (model weights and data) from this result."""
        if self.model_state is None:
            raise ValueError(f"run {self.config.key()} has no model ({self.status}: {self.reason})")
        data = load_data(self.config)
        model = build_model(self.config, data.n_features, data.n_classes)
        model.load_state_dict(self.model_state)
        model.eval()
        return Run(
            self.config, model, data, self.history, self.status, self.reason, self.train_seconds
        )

    def analysis(self, **kwargs) -> Analysis:
        """Recompute the full :class:`Analysis` (with per-pair arrays) of the cached model."""
        return analyze(self.load_run(), **kwargs)


def _path(cfg: Config) -> Path:
    return cache_dir() / "results" / f"{cfg.key()}.pt"


def _encode(res: Result) -> dict:
    return {
        "format": RESULT_FORMAT,
        "schema": SCHEMA_VERSION,
        "numerics": NUMERICS_VERSION,
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


DIGEST_FIELD = "sha256"
_legacy_warned = False


def payload_digest(blob: dict) -> str:
    """SHA-256 of a cache entry's payload (every field but the digest): keys, strings and
    numbers by value, tensors by dtype, shape and raw bytes, so that one flipped byte in a
    stored scalar or weight changes it."""
    h = hashlib.sha256()

    def feed(obj) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            keys = [k for k in obj if not (obj is blob and k == DIGEST_FIELD)]
            h.update(f"D{len(keys)}:".encode())
            for k in sorted(keys, key=repr):
                feed(k)
                feed(obj[k])
        elif isinstance(obj, (list, tuple)):
            h.update(f"L{len(obj)}:".encode())
            for v in obj:
                feed(v)
        elif isinstance(obj, str):
            b = obj.encode("utf-8", "surrogatepass")
            h.update(f"S{len(b)}:".encode() + b)
        else:  # None, bool, int, float (repr round-trips floats exactly)
            h.update(f"{type(obj).__name__}:{obj!r};".encode())

    feed(blob)
    return h.hexdigest()


def _verified(blob, path: Path) -> bool:
    """Whether ``blob`` (read from ``path``) carries its payload's digest; warns when not."""
    global _legacy_warned
    if not isinstance(blob, dict):
        warnings.warn(f"ignoring corrupt cache entry {path}: not a dict", stacklevel=3)
        return False
    if blob.get("format") != RESULT_FORMAT or blob.get("schema") != SCHEMA_VERSION:
        return False  # another format or schema: stale, recomputed silently
    stored = blob.get(DIGEST_FIELD)
    if stored is None:
        if not _legacy_warned:
            _legacy_warned = True
            warnings.warn(
                f"cache entries without a payload digest (written before awbench checked its "
                f"cache, e.g. {path}) are stale and recomputed; said once per process",
                stacklevel=3,
            )
        return False
    if stored != payload_digest(blob):
        warnings.warn(
            f"ignoring corrupt cache entry {path}: its payload does not match its SHA-256 "
            "(damaged on disk or in transit); recomputing it",
            stacklevel=3,
        )
        return False
    return True


def _decode(blob: dict, cfg: Config) -> Result | None:
    if blob.get("format") != RESULT_FORMAT or blob.get("schema") != SCHEMA_VERSION:
        return None
    if blob.get("numerics") != NUMERICS_VERSION:  # computed by code with other numbers
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
        return _decode(blob, cfg) if _verified(blob, path) else None
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file: recompute, never crash
        warnings.warn(f"ignoring unreadable cache entry {path}: {exc}", stacklevel=2)
        return None


def save_cached(res: Result) -> Path:
    """Write ``res``'s cache entry atomically; raises OSError when the cache is unwritable."""
    path = _path(res.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        blob = _encode(res)
        blob[DIGEST_FIELD] = payload_digest(blob)
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            with contextlib.suppress(OSError):
                tmp.unlink()
    return path


def _try_save_cached(res: Result) -> None:
    """:func:`save_cached`, with a failure (read-only or full cache) turned into a warning:
    the run is finished and its result stands, only the cache misses it."""
    try:
        save_cached(res)
    except (OSError, RuntimeError) as exc:  # torch.save reports a short write as RuntimeError
        warnings.warn(
            f"could not cache run {res.config.key()} in {cache_dir()}: {exc}; the result is "
            "kept, only a later call will compute it again",
            stacklevel=3,
        )


def _json_scalar(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return int(v)
    return float(v)


def _training_scalars(run: Run, status: str) -> dict:
    """How training ended: the stopping rule's numbers at the last epoch and the budget, so
    that every stored run says whether it is a converged network (docs/science.md#5)."""
    last = run.history.iloc[-1] if len(run.history) else None
    return {
        "converged": status == CONVERGED,
        "final_train_loss": float("nan") if last is None else float(last["train_loss"]),
        "final_train_acc": float("nan") if last is None else float(last["train_acc"]),
        "epoch_budget": int(run.config.epoch_budget()),
    }


def result_of(run: Run) -> Result:
    """Analyze a trained run (when it did not diverge) into its :class:`Result`.

    An analysis that raises ValueError (e.g. a dead ReLU layer leaves no pair with a dual
    weight) makes the result "failed", keeping the training numbers.
    """
    scalars, directions, analyze_seconds = {}, None, 0.0
    status, reason = run.status, run.reason
    if run.ok:
        start = time.perf_counter()
        try:
            an = analyze(run)
        except ValueError as exc:
            status, reason = "failed", f"analysis failed after training ({run.reason}): {exc}"
        else:
            scalars = {k: _json_scalar(v) for k, v in an.scalars().items()}
            directions = an.directions
        analyze_seconds = time.perf_counter() - start
    scalars.update(_training_scalars(run, status))
    return Result(
        config=run.config,
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


def run_experiment(
    cfg: Config,
    cache: bool = True,
    show_progress: bool | None = None,
    on_epoch: EpochCallback | None = None,
) -> Result:
    """Train and analyze ``cfg``; return the cached result when there is one.

    Divergence is a result (status "diverged"), not an exception. Only complete results are
    cached; a run that ends in an exception (one raised by ``on_epoch`` included) leaves no
    entry behind. ``on_epoch`` follows the training (see
    :data:`awbench.training.run.EpochCallback`); a cache hit trains nothing and never calls it.
    """
    if cache:
        hit = load_cached(cfg)
        if hit is not None:
            return hit
    res = result_of(train(cfg, show_progress=show_progress, on_epoch=on_epoch))
    if cache:
        _try_save_cached(res)
    return res


def seed_groups(cfgs: list[Config]) -> list[list[Config]]:
    """``cfgs`` grouped by everything but the seed (first-seen order), so that each group
    can train as one stacked model."""
    groups: dict[str, list[Config]] = {}
    for cfg in cfgs:
        groups.setdefault(cfg.replace(seed=0).key(), []).append(cfg)
    return list(groups.values())


def run_experiments(
    cfgs: list[Config], cache: bool = True, show_progress: bool | None = None
) -> list[Result]:
    """:func:`run_experiment` for configs that differ only in ``seed``, trained together.

    Cached seeds are read back; the rest train as one stacked model
    (:func:`awbench.training.stacked.train_stacked`), each member stopping on its own rule, then each
    is analyzed and cached on its own, so a later single run finds it.
    Multi-learner configs train one by one.
    """
    if len({c.replace(seed=0) for c in cfgs}) > 1:
        raise ValueError("run_experiments needs configs that differ only in seed")
    results: dict[int, Result] = {}
    todo = []
    for i, cfg in enumerate(cfgs):
        hit = load_cached(cfg) if cache else None
        if hit is not None:
            results[i] = hit
        else:
            todo.append(i)
    # The cache was read above: train what is missing, without a second lookup per config.
    if todo and (cfgs[0].n_learners > 1 or cfgs[0].algorithm != "sgd" or len(todo) == 1):
        runs = [train(cfgs[i], show_progress=show_progress) for i in todo]
    elif todo:
        from awbench.training.stacked import train_stacked

        runs = train_stacked([cfgs[i] for i in todo], show_progress=show_progress)
    for i, run in zip(todo, runs if todo else []):
        results[i] = result_of(run)
        if cache:
            _try_save_cached(results[i])
    return [results[i] for i in range(len(cfgs))]
