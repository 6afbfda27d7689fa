"""Interactive knobs: slide a regularizer, watch sharpness and size move (notebook 08).

``KnobPanel`` shows a precomputed grid of runs: a result store written by ``awbench sweep``
(runs and directions tables) plus, per run, the training loss along the top eigenvector of
the analysed layer's Hessian (``slices/<key>.parquet``, added by :func:`add_slices`). Every
slider is a selection slider over the grid's values of one Config field, so a move is a
dictionary lookup, never a training run::

    panel = KnobPanel()                 # the shipped grid, awbench/apps/knobs_store
    panel                               # sliders, four linked panels, reset, train button
    panel.set(batch_size=400)           # the same as moving the slider
    panel.config                        # the Config on screen (paste-able: panel.config_text)

Panels (pure builders below, also used for the static figures of a headless run):

- sharpness: the sigma_g spectrum, the top eigenvalues of the layer Hessian, and the loss
  along its top eigenvector with the quadratic model 1/2 lam t^2;
- size: the sigma_w spectrum (in sigma_g order) and the layer's weight norm;
- gap: real gap vs the exact pair gap and the sum c sigma_g sigma_w estimate; sharp vs flat;
- sweep: real gap, sharpness and size along the knob last moved (other knobs as on screen,
  mean and spread over seeds), with a "you are here" marker.

Only a converged network is a result. The status line gives the run's final clean-train loss
and accuracy, its epochs and budget, and how many seeds of its grid point converged; a run
that stopped at its budget is flagged in red there, in the panel titles and in the takeaway
(shown under the sliders, redrawn on every move). The grid's per-point means (sweep panel,
:func:`grid_effects`, ``Setting.point``) average the converged seeds only; a point where none
converged is shown flagged and left out of :func:`grid_effects`' comparisons.

A combination that is not in the grid is trained on request ("train this setting": a
progress bar, then train to the stopping rule under the grid's budget + analyze + slice
through ``run_experiment``'s cache); the result goes to a user store under the cache folder
(``$AWBENCH_CACHE/knobs_store``), so the same setting is instant next time, in this session
or the next.

Live widgets (plotly ``FigureWidget``) only where a Jupyter front end renders them; headless
(papermill, nbconvert, ``AWBENCH_QUIET=1``) the panel displays static figures and creates no
widget at all, so an executed notebook carries no widget state.

The shipped store is package data (``awbench/apps/knobs_store``, in a wheel too; see its
README.md). Build it again with::

    awbench sweep --preset knobs --store awbench/apps/knobs_store
    python -m awbench.apps.widgets awbench/apps/knobs_store        # adds slices/
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import html
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from awbench.cache import cache_dir
from awbench.config import Config, ConfigError
from awbench.experiments.store import Store, _atomic_write_table, config_from_row, load_store
from awbench.status import CONVERGED, DONE_STATUSES
from awbench.viz.gap_plots import COLORS, KNOB_LABELS, TEMPLATE

# The sliders, in display order (Config field names, as everywhere).
KNOBS = (
    "weight_decay",
    "dropout",
    "batch_size",
    "lr",
    "label_noise",
    "n_train",
    "init_scale",
    "seed",
)
KNOB_TEXT = {**KNOB_LABELS, "seed": "seed"}
PANELS = ("sharpness", "size", "gap", "sweep")
SLICE_POINTS = 41
FIGURE_WIDTH = 980  # px, live panels (fits beside the file browser)
TOP_EIGENVALUES = 10
CURRENT = "#d62728"  # this setting
WARNING = "#b00020"  # not converged: not a result
REFERENCE = "#9e9e9e"  # the default setting
SIZE_COLOR = COLORS["size"]


# as_file may extract to a temporary folder (a zipped install); it lives until exit.
_RESOURCES = contextlib.ExitStack()
atexit.register(_RESOURCES.close)


@functools.cache
def shipped_store() -> Path:
    """The knob grid shipped as package data (``awbench/apps/knobs_store``)."""
    grid = resources.files("awbench.apps") / "knobs_store"
    return _RESOURCES.enter_context(resources.as_file(grid))


def default_store() -> Path:
    """``$AWBENCH_KNOBS_STORE`` if set, else the store shipped in the package."""
    explicit = os.environ.get("AWBENCH_KNOBS_STORE")
    return Path(explicit).expanduser() if explicit else shipped_store()


def user_store() -> Path:
    """Where "train this setting" keeps its runs: ``<cache folder>/knobs_store``."""
    return cache_dir() / "knobs_store"


# --- the grid: lookups, curves, slices ----------------------------------------------------


@dataclass
class Point:
    """The seeds of one grid point (every knob but the seed fixed) and their means.

    ``scalars`` average the converged seeds only; when none converged they average all seeds
    and ``converged`` is False: shown, but not a result.
    """

    seeds: tuple
    converged_seeds: tuple
    scalars: dict[str, float]

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def n_converged(self) -> int:
        return len(self.converged_seeds)

    @property
    def converged(self) -> bool:
        return self.n_converged > 0

    @property
    def averaged(self) -> int:
        """How many seeds ``scalars`` average."""
        return self.n_converged or self.n

    @property
    def text(self) -> str:
        noun = "seed" if self.n == 1 else "seeds"
        return f"{self.n_converged}/{self.n} {noun} converged"


@dataclass
class Setting:
    """Everything the panels show for one run (arrays in rank order: sigma_g descending).

    One run, not a mean: the spectra and the slice belong to one network, the one of the
    seed on the slider. ``point`` holds its grid point's seeds and their converged-only means.
    """

    config: Config
    key: str
    status: str
    source: str  # "grid" (the shipped store) or "trained" (the user store)
    scalars: dict[str, float]
    rank: np.ndarray
    sigma_g: np.ndarray
    sigma_w: np.ndarray
    top_lam: np.ndarray  # largest eigenvalues of the layer Hessian, descending
    slice_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slice_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slice_quadratic: np.ndarray = field(default_factory=lambda: np.zeros(0))
    converged: bool = False  # met the stopping rule
    epochs: int = 0
    epoch_budget: int = 0
    final_train_loss: float = float("nan")  # clean training set, last epoch
    final_train_acc: float = float("nan")
    point: Point | None = None

    def __getitem__(self, name: str) -> float:
        return self.scalars[name]


def _native(value: Any) -> Any:
    """A plain Python number (store columns come back as NumPy scalars)."""
    return value.item() if hasattr(value, "item") else value


def _mode_value(values: pd.Series) -> Any:
    counts = values.value_counts()
    best = counts[counts == counts.max()].index
    return _native(min(best))


TRAINING_COLUMNS = ("converged", "final_train_loss", "final_train_acc", "epoch_budget")


def _with_training_columns(runs: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """``runs`` with how training ended filled in for every row, also for rows of a store
    written before those columns existed: ``converged`` from ``status``, the final train loss
    from the analysis's clean ``train_loss`` (the same model), the budget from each Config
    (``budgets``); the final train accuracy was not recorded then and stays NaN."""
    runs = runs.copy()
    by_status = (runs["status"] == CONVERGED).to_numpy()
    if "converged" in runs:
        runs["converged"] = [
            bool(v) if pd.notna(v) else bool(b) for v, b in zip(runs["converged"], by_status)
        ]
    else:
        runs["converged"] = by_status
    runs["converged"] = runs["converged"].astype(bool)
    nan = pd.Series(np.nan, index=runs.index)
    loss = pd.to_numeric(runs.get("final_train_loss", nan), errors="coerce")
    runs["final_train_loss"] = loss.fillna(pd.to_numeric(runs.get("train_loss", nan)))
    runs["final_train_acc"] = pd.to_numeric(runs.get("final_train_acc", nan), errors="coerce")
    budget = pd.to_numeric(runs.get("epoch_budget", nan), errors="coerce")
    runs["epoch_budget"] = budget.fillna(pd.Series(budgets, index=runs.index)).astype(int)
    return runs


def _slice_path(store: Path, key: str) -> Path:
    return store / "slices" / f"{key}.parquet"


def _read_slices(store: Path, keys: Iterable[str]) -> dict[str, pd.DataFrame]:
    out = {}
    for key in keys:
        path = _slice_path(store, key)
        if path.exists():
            try:
                out[key] = pd.read_parquet(path)
            except Exception as exc:  # noqa: BLE001 - a damaged part: show the run without its slice
                warnings.warn(f"skipping unreadable slice {path}: {exc}", stacklevel=3)
    return out


class KnobGrid:
    """The runs behind the sliders: one or more result stores sharing one base Config.

    ``values[knob]`` are the grid's values of each knob; :meth:`lookup` finds the run of a
    combination (None when it is off the grid); :meth:`curve` is the sweep of one knob with
    the others held; :meth:`train` computes an off-grid combination and adds it.
    """

    def __init__(
        self, store: str | os.PathLike | None = None, extra: str | os.PathLike | None = None
    ):
        self.store = Path(store) if store is not None else default_store()
        if not (self.store / "runs").is_dir():
            raise FileNotFoundError(
                f"no knobs store at {self.store}: build it with `awbench sweep --preset knobs "
                f"--store {self.store}` then `python -m awbench.apps.widgets {self.store}`"
            )
        self.extra = Path(extra) if extra is not None else user_store()
        runs, directions = load_store(self.store)
        runs["source"] = "grid"
        ok = runs[runs["status"].isin(DONE_STATUSES)].reset_index(drop=True)
        if ok.empty:
            raise ValueError(f"the knobs store {self.store} has no completed run")
        self.defaults = {k: _mode_value(ok[k]) for k in KNOBS}
        at_default = np.ones(len(ok), dtype=bool)
        for k, v in self.defaults.items():
            at_default &= (ok[k] == v).to_numpy()
        first = ok[at_default].iloc[0] if at_default.any() else ok.iloc[0]
        self.base = config_from_row(first).replace(**self.defaults)
        self.values: dict[str, list] = {}
        self._runs = pd.DataFrame()
        self._index: dict[tuple, int] = {}
        self._settings: dict[str, Setting] = {}
        self._directions: dict[str, pd.DataFrame] = {}
        self._slices: dict[str, pd.DataFrame] = {}
        self.t_grid = self._read_t_grid()
        self._add(ok, directions, self.store)
        if (self.extra / "runs").is_dir() and self.extra.resolve() != self.store.resolve():
            try:
                xruns, xdirs = load_store(self.extra)
            except Exception as exc:  # noqa: BLE001 - a damaged user store must not hide the grid
                warnings.warn(f"ignoring the user knobs store {self.extra}: {exc}", stacklevel=2)
            else:
                xruns["source"] = "trained"
                self._add(xruns[xruns["status"].isin(DONE_STATUSES)], xdirs, self.extra)
        self.grid_keys = frozenset(ok["key"])

    # --- building -------------------------------------------------------------------------
    def _read_t_grid(self) -> np.ndarray:
        meta = self.store / "slices" / "meta.json"
        if meta.exists():
            d = json.loads(meta.read_text(encoding="utf-8"))
            return np.linspace(-d["t_max"], d["t_max"], int(d.get("points", SLICE_POINTS)))
        return np.zeros(0)

    def _belongs(self, cfg: Config) -> bool:
        return set(cfg.diff(self.base)) <= set(KNOBS)

    def _add(self, runs: pd.DataFrame, directions: pd.DataFrame, store: Path) -> None:
        keep, budgets = [], []
        for i, row in runs.iterrows():
            cfg = config_from_row(row)
            if self._belongs(cfg):
                keep.append(i)
                budgets.append(cfg.epoch_budget())
        dropped = len(runs) - len(keep)
        if dropped:
            warnings.warn(
                f"{store}: {dropped} run(s) differ from the grid's base in more than the "
                "knobs and are left out",
                stacklevel=3,
            )
        runs = runs.loc[keep]
        if runs.empty:
            return
        runs = _with_training_columns(runs, budgets)
        for key, d in directions[directions["key"].isin(set(runs["key"]))].groupby(
            "key", sort=False
        ):
            self._directions[key] = d.sort_values("rank")
        self._slices.update(_read_slices(store, runs["key"]))
        merged = pd.concat([self._runs, runs], ignore_index=True) if len(self._runs) else runs
        self._runs = merged.drop_duplicates("key", keep="last").reset_index(drop=True)
        self._reindex()

    def _reindex(self) -> None:
        self._index = {}
        for i, row in enumerate(self._runs[list(KNOBS)].itertuples(index=False, name=None)):
            self._index[tuple(_native(v) for v in row)] = i
        for k in KNOBS:
            grid = self._runs.loc[self._runs["source"] == "grid", k]
            self.values[k] = sorted({_native(v) for v in grid})
        self._matrix = self._runs[list(KNOBS)].to_numpy(dtype=float)
        self._curve_values = self._runs[list(CURVE_COLUMNS)].to_numpy(dtype=float)
        self._converged = self._runs["converged"].to_numpy(dtype=bool)
        self._natives = {k: {float(v): _native(v) for v in self._runs[k]} for k in KNOBS}
        self._point_columns = [c for c in (*SCALARS, *TRAINING_COLUMNS[1:]) if c in self._runs]
        self._settings = {}  # a new run may join the point of a cached setting

    # --- reading --------------------------------------------------------------------------
    @property
    def runs(self) -> pd.DataFrame:
        """One row per run (grid and trained), the store's columns plus ``source``."""
        return self._runs

    def config(self, values: Mapping[str, Any] | None = None, **changes: Any) -> Config:
        """The base Config with these knob values."""
        return self.base.replace(**{**dict(values or {}), **changes})

    def _tuple(self, values: Mapping[str, Any]) -> tuple:
        merged = {**self.defaults, **values}
        return tuple(_native(merged[k]) for k in KNOBS)

    def _point_mask(self, target: np.ndarray) -> np.ndarray:
        others = [i for i, k in enumerate(KNOBS) if k != "seed"]
        return np.all(self._matrix[:, others] == target[others], axis=1)

    def point(self, values: Mapping[str, Any]) -> Point | None:
        """The seeds at this combination (its seed ignored) and their converged-only means,
        or None when no run is there."""
        return self._point(self._point_mask(np.array(self._tuple(values), dtype=float)))

    def _point(self, mask: np.ndarray) -> Point | None:
        rows = np.flatnonzero(mask)
        if not len(rows):
            return None
        seed_of = self._natives["seed"]
        j = KNOBS.index("seed")
        order = rows[np.argsort(self._matrix[rows, j], kind="stable")]
        conv = self._converged[order]
        used = order[conv] if conv.any() else order
        means = self._runs.iloc[used][self._point_columns].astype(float).mean()
        return Point(
            seeds=tuple(seed_of[float(v)] for v in self._matrix[order, j]),
            converged_seeds=tuple(seed_of[float(v)] for v in self._matrix[order[conv], j]),
            scalars={k: float(v) for k, v in means.items() if pd.notna(v)},
        )

    def lookup(self, values: Mapping[str, Any]) -> Setting | None:
        """The run of this knob combination, or None when it is off the grid."""
        i = self._index.get(self._tuple(values))
        if i is None:
            return None
        key = self._runs.at[i, "key"]
        hit = self._settings.get(key)
        if hit is None:
            hit = self._settings[key] = self._setting(i)
        return hit

    def default(self) -> Setting:
        hit = self.lookup(self.defaults)
        assert hit is not None, "the default setting is a run of the grid by construction"
        return hit

    def _setting(self, i: int) -> Setting:
        row = self._runs.iloc[i]
        key = row["key"]
        d = self._directions.get(key)
        if d is None:
            d = pd.DataFrame({c: [] for c in ("rank", "lam", "sigma_w", "sigma_g")})
        lam = np.sort(d["lam"].to_numpy(dtype=float))[::-1][:TOP_EIGENVALUES]
        s = self._slices.get(key)
        scalars = {c: float(row[c]) for c in SCALARS if c in row and pd.notna(row[c])}
        return Setting(
            config=config_from_row(row),
            key=key,
            status=str(row["status"]),
            source=str(row["source"]),
            scalars=scalars,
            rank=d["rank"].to_numpy(dtype=float) + 1,
            sigma_g=d["sigma_g"].to_numpy(dtype=float),
            sigma_w=d["sigma_w"].to_numpy(dtype=float),
            top_lam=lam,
            slice_t=np.zeros(0) if s is None else s["t"].to_numpy(dtype=float),
            slice_loss=np.zeros(0) if s is None else s["loss"].to_numpy(dtype=float),
            slice_quadratic=np.zeros(0) if s is None else s["quadratic"].to_numpy(dtype=float),
            converged=bool(row["converged"]),
            epochs=int(row["epochs"]),
            epoch_budget=int(row["epoch_budget"]),
            final_train_loss=float(row["final_train_loss"]),
            final_train_acc=float(row["final_train_acc"]),
            point=self._point(self._point_mask(self._matrix[i])),
        )

    def curve(self, knob: str, values: Mapping[str, Any]) -> pd.DataFrame:
        """The sweep of ``knob`` through the runs that match ``values`` on every other knob:
        one row per value of ``knob`` with the mean and sd (ddof 0) of the real gap,
        sharpness and size over its converged seeds (over all its seeds when none converged),
        ``n`` the seeds averaged, ``seeds`` all seeds there and ``converged`` how many
        converged (0: the point is shown but is not a result)."""
        target = np.array(self._tuple(values), dtype=float)
        j = KNOBS.index(knob)
        others = [i for i, k in enumerate(KNOBS) if k not in (knob, "seed")]
        mask = np.all(self._matrix[:, others] == target[others], axis=1)
        x, ys, conv = self._matrix[mask, j], self._curve_values[mask], self._converged[mask]
        rows = []
        for v in np.unique(x):
            at = x == v
            sel = ys[at & conv] if conv[at].any() else ys[at]
            rows.append(
                [v, len(sel), int(at.sum()), int(conv[at].sum()), *sel.mean(0), *sel.std(0)]
            )
        cols = [
            knob,
            "n",
            "seeds",
            "converged",
            *(f"{c}_mean" for c in CURVE_COLUMNS),
            *(f"{c}_sd" for c in CURVE_COLUMNS),
        ]
        out = pd.DataFrame(rows, columns=cols)
        native = self._natives[knob]
        out[knob] = pd.Series(
            [native[float(v)] for v in out[knob]], dtype=object if len(out) else float
        )
        return out

    # --- training an off-grid combination ---------------------------------------------------
    def train(
        self, values: Mapping[str, Any], on_progress: Callable[[float, str], None] | None = None
    ) -> Setting:
        """Train, analyze and slice this combination (cached), add it, return its Setting."""
        hit = self.lookup(values)
        if hit is not None:
            return hit
        report = on_progress or (lambda fraction, text: None)
        cfg = self.config(values)
        from awbench.experiments import experiment
        from awbench.experiments.sweep import execute

        report(0.0, "training")
        first_loss, done, shown = [math.nan], [0.0], [0.0]

        def on_epoch(epoch: int, budget: int, row: dict) -> None:
            loss = float(row["train_loss"])
            # A run that meets the stopping rule ends far inside its budget, so the epoch
            # count alone would leave the bar near zero: the loss's way down to stop_loss
            # (on a log scale) measures progress too, and the bar takes the further of both.
            fraction = epoch / max(budget, 1)
            if math.isfinite(loss) and loss > 0:
                if not math.isfinite(first_loss[0]):
                    first_loss[0] = loss
                span = math.log(first_loss[0] / cfg.stop_loss)
                if span > 0:
                    fraction = max(fraction, math.log(first_loss[0] / loss) / span)
            done[0] = max(done[0], min(fraction, 1.0))  # never backwards
            now = time.perf_counter()
            if now - shown[0] <= 0.1:  # a widget update costs more than a small epoch
                return
            shown[0] = now
            text = f"training: epoch {epoch} of at most {budget}"
            if math.isfinite(loss):
                text += f", train loss {_fmt(loss)} (the stopping rule needs < {cfg.stop_loss:g})"
            report(0.85 * done[0], text)

        res = experiment.run_experiment(cfg, show_progress=False, on_epoch=on_epoch)
        report(0.85, "analysing")
        row, directions = execute(cfg)  # the cached result, as a store row and directions table
        row["status"] = res.status  # execute reads the same cache entry
        store = Store(self.extra)
        if res.ok and res.scalars:
            report(0.92, "loss slice along the top eigenvector")
            if len(self.t_grid):
                part = loss_slice(res.load_run(), self.t_grid)
                _write_slice(self.extra, cfg.key(), part)
        store.write(row, directions)
        runs, dirs = store.load([cfg.key()])
        runs["source"] = "trained"
        self._settings.pop(cfg.key(), None)
        self._add(runs[runs["status"].isin(DONE_STATUSES)], dirs, self.extra)
        report(1.0, f"done ({res.status}, {res.epochs} epochs)")
        hit = self.lookup(values)
        if hit is None:
            raise RuntimeError(f"training {cfg.key()} ended with status {res.status}: {res.reason}")
        return hit


SCALARS = (
    "real_gap",
    "pair_gap",
    "estimated_gap",
    "sharp_gap",
    "flat_gap",
    "mean_term",
    "sharpness",
    "size",
    "weight_norm",
    "lam_max",
    "test_error",
    "train_loss",
    "test_loss",
    "epochs",
    "identity_error",
    "duality_error",
)
CURVE_COLUMNS = ("real_gap", "sharpness", "size")


EFFECT_COLUMNS = (
    "knob",
    "values",
    *(f"{c}_change" for c in CURVE_COLUMNS),
    "left_out",
    "left_out_values",
)


def _effect(grid: KnobGrid, knob: str, values: Mapping[str, Any]) -> tuple[dict, set]:
    """One row of :func:`grid_effects` and the points it left out (as grid tuples)."""
    c = grid.curve(knob, values)
    ok, bad = c[c["converged"] > 0], c[c["converged"] == 0]
    row = {
        "knob": knob,
        "values": ", ".join(f"{v:g}" for v in ok[knob]),
        "left_out": len(bad),
        "left_out_values": ", ".join(f"{v:g}" for v in bad[knob]),
    }
    for col in CURVE_COLUMNS:
        if len(ok) >= 2:
            lo, hi = float(ok[f"{col}_mean"].iloc[0]), float(ok[f"{col}_mean"].iloc[-1])
            row[f"{col}_change"] = (hi - lo) / abs(lo) if lo else float("nan")
        else:
            row[f"{col}_change"] = float("nan")
    return row, {grid._tuple({**values, knob: v, "seed": 0}) for v in bad[knob]}


def _held(grid: KnobGrid, values: Mapping[str, Any], but: str | None = None) -> str:
    moved = {k: v for k, v in values.items() if k not in ("seed", but) and v != grid.defaults[k]}
    return "at " + ", ".join(f"{k}={v!r}" for k, v in moved.items()) if moved else "at the default"


def grid_effects(grid: KnobGrid, values: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per knob: the relative change of the real gap, sharpness and size from its
    smallest to its largest converged value (means over the converged seeds, other knobs at
    ``values``, default: the default setting).

    A point none of whose seeds converged is left out of the comparison (``left_out`` counts
    them, ``left_out_values`` names them); ``values`` lists the points compared. Fewer than
    two converged points: no comparison (NaN). For :func:`effects_takeaway`,
    ``attrs["held"]`` says where the other knobs were and ``attrs["left_out_points"]`` how
    many distinct points were left out.
    """
    values = {**grid.defaults, **dict(values or {})}
    rows = []
    dropped = set()  # the held point lies on every knob's line: count it once
    for knob in KNOBS:
        if knob != "seed":
            row, bad = _effect(grid, knob, values)
            rows.append(row)
            dropped |= bad
    out = pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))
    out.attrs["left_out_points"] = len(dropped)
    out.attrs["held"] = _held(grid, values)
    return out


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.0f} %"


def not_converged_reason(s: Setting) -> str:
    """Why a run is not a result, e.g. "stopped at the budget of 150 epochs with train loss
    0.0037 > 0.001"."""
    cfg = s.config
    if s.epoch_budget and s.epochs >= s.epoch_budget:
        where = f"stopped at the budget of {s.epoch_budget} epochs"
    else:
        where = f"stopped after {s.epochs} of {s.epoch_budget} epochs"
    loss, acc = s.final_train_loss, s.final_train_acc
    if math.isfinite(loss) and loss >= cfg.stop_loss:
        why = f"train loss {_fmt(loss)} {'>' if loss > cfg.stop_loss else '='} {cfg.stop_loss:g}"
    elif math.isfinite(acc) and acc <= cfg.stop_acc:
        why = f"train accuracy {_fmt(acc, 4)} ≤ {cfg.stop_acc:g}"
    elif math.isfinite(loss):
        why = (
            f"train loss {_fmt(loss)} but a mean train accuracy over the last "
            f"{cfg.stop_window} epochs ≤ {cfg.stop_acc:g}"
        )
    else:
        why = "the stopping rule not met"
    return f"{where} with {why}"


def warnings_of(s: Setting) -> list[str]:
    """The warnings the panel shows for a setting: the run on screen not converged, seeds
    of its grid point not converged. Empty for a converged run at a converged point."""
    out = []
    if not s.converged:
        out.append(f"⚠ not converged: {not_converged_reason(s)} — its numbers are not a result")
    p = s.point
    if p is not None and p.n > 1 and p.n_converged < p.n:
        if p.converged:
            missed = ", ".join(str(x) for x in p.seeds if x not in p.converged_seeds)
            out.append(
                f"⚠ {p.n - p.n_converged}/{p.n} seeds at this point did not converge (seed "
                f"{missed}): the grid's means here average the {p.n_converged} that did"
            )
        else:
            out.append(
                f"⚠ none of the {p.n} seeds at this point converged: the grid's numbers "
                "here are not a result"
            )
    return out


TAKEAWAY_SCALARS = (
    ("real_gap", "real gap"),
    ("sharpness", "sharpness Σσg²"),
    ("size", "size Σσw²"),
    ("weight_norm", "‖W‖F"),
)


def takeaway(panel: KnobPanel) -> str:
    """Markdown: the setting on screen against the default, from the numbers of the store.

    Computed from the panel's current and reference settings on every call (the live panel
    shows it under the sliders, redrawn on every move); a number of a run that did not
    converge is quoted with a warning, never bare.
    """
    cur, ref = panel.setting, panel.reference
    if cur is None:
        return (
            f"**Off the grid:** `{panel.describe(panel.config, panel.grid.base)}` was not "
            "precomputed "
            "and not trained here; the panels show the default setting only."
        )
    same = cur.key == ref.key
    if same:
        head = "**The default setting** of the grid"
    else:
        head = f"**{panel.describe(cur.config, panel.grid.base)}** against the default"
    notes = []
    if not cur.converged:
        notes.append(
            f"**⚠ Not converged:** this run {not_converged_reason(cur)}; the numbers below "
            "are not a result."
        )
    if not same and not ref.converged:
        notes.append(
            f"**⚠ The default did not converge** ({not_converged_reason(ref)}): the changes "
            "below are measured against numbers that are not a result."
        )
    parts = []
    for col, label in TAKEAWAY_SCALARS:
        a, b = _get(ref, col), _get(cur, col)
        change = "" if same else f" ({_pct((b - a) / abs(a) if a else float('nan'))})"
        parts.append(f"{label} {_fmt(b)}{change}")
    share = cur["sharp_gap"] / cur["pair_gap"] if cur["pair_gap"] else float("nan")
    text = (
        f"{head}: " + "; ".join(parts) + f". The {cur.config.n_sharp} sharpest directions carry "
        f"{_fmt(100 * share, 2)} % of the exact gap, and "
        f"Σ cσgσw = {_fmt(cur['estimated_gap'])} estimates "
        f"the real gap {_fmt(cur['real_gap'])} nats."
    )
    tail = []
    p = cur.point
    if p is not None and p.n > 1:
        means = ", ".join(
            f"{label} {_fmt(p.scalars.get(col, float('nan')))}"
            for col, label in TAKEAWAY_SCALARS[:3]
        )
        if p.n_converged == p.n:
            tail.append(f"{p.text} at this point; their means: {means}.")
        elif p.converged:
            tail.append(
                f"{p.text} at this point; the means of the {p.n_converged} that did: {means}."
            )
        else:
            tail.append(
                f"**⚠ None of the {p.n} seeds at this point converged:** their means "
                f"({means}) are not a result either."
            )
    return "\n\n".join([*notes, text, *tail])


def _effect_line(r: Mapping[str, Any]) -> str | None:
    """A Markdown list item for one row of :func:`grid_effects` (None: nothing to say)."""
    left = int(r.get("left_out", 0) or 0)
    note = (
        f" ({left} unconverged point{'s' if left > 1 else ''} left out: {r['left_out_values']})"
        if left
        else ""
    )
    label = KNOB_TEXT.get(r["knob"], r["knob"])
    if not math.isfinite(r["sharpness_change"]) or not math.isfinite(r["size_change"]):
        return (
            f"- **{label}**: no comparison, fewer than two points converged{note}" if left else None
        )
    lead = "sharpness" if abs(r["sharpness_change"]) > abs(r["size_change"]) else "size"
    return (
        f"- **{label}** {r['values']}: gap {_pct(r['real_gap_change'])}, "
        f"sharpness {_pct(r['sharpness_change'])}, size {_pct(r['size_change'])} → mostly "
        f"**{lead}**{note}"
    )


def effects_takeaway(effects: pd.DataFrame) -> str:
    """Markdown: which factor each knob of the grid moves most (from :func:`grid_effects`),
    saying which points were left out because none of their seeds converged."""
    rows = [r._asdict() for r in effects.itertuples(index=False)]
    lines = [line for line in map(_effect_line, rows) if line is not None]
    left_total = effects.attrs.get(
        "left_out_points", sum(int(r.get("left_out", 0) or 0) for r in rows)
    )
    held = effects.attrs.get("held", "at the default")
    text = (
        f"Along each knob of the grid (other knobs {held}, mean over the converged seeds):\n\n"
        + ("\n".join(lines) if lines else "- no knob has two points to compare")
    )
    if left_total:
        text += (
            f"\n\n**⚠ {left_total} point{'s' if left_total > 1 else ''} left out:** none of "
            "their seeds met the stopping rule, so their numbers are not results."
        )
    return text


def sweep_takeaway(panel: KnobPanel) -> str:
    """Markdown: what the knob last moved does along the sweep panel's line (other knobs as
    on screen), as one line of :func:`effects_takeaway`; empty for the seed."""
    knob = panel.last_knob
    if knob == "seed":
        return ""
    row, _ = _effect(panel.grid, knob, {**panel.grid.defaults, **panel.values})
    line = _effect_line(row) or (
        f"- **{KNOB_TEXT.get(knob, knob)}**: no comparison, one point on the grid here"
    )
    held = _held(panel.grid, panel.values, but=knob)
    return f"Along this knob (other knobs {held}, mean over the converged seeds):\n\n{line}"


# --- 1-D loss slices along the top Hessian eigenvector ---------------------------------------


def loss_slice(run, t: np.ndarray, layer: str | None = None) -> pd.DataFrame:
    """Mean clean-training cross-entropy along the top eigenvector v of ``layer``'s Hessian.

    ``W + t v`` for each t (v unit norm, its largest component positive), evaluated by
    :func:`awbench.landscape.slice_1d` (functional, float64, eval mode: the model is never
    displaced), next to the quadratic model ``L(0) + 1/2 lam t^2``. The Hessian is the
    analysis's own (dense, :func:`awbench.layer_hessian`), so ``lam`` is the run's
    ``lam_max``. Columns: t, loss, quadratic, lam.
    """
    import torch

    from awbench.curvature.hessian import layer_hessian, symmetric_eigh
    from awbench.landscape import slice_1d

    layer = layer or run.config.layer
    model = copy.deepcopy(run.model).double().eval()
    clean = run.data.clean
    x, y = run.data.x_train[clean].double(), run.data.y_train[clean]
    lam, vecs = symmetric_eigh(layer_hessian(model, layer, x, y))
    v = vecs[:, -1]
    v = v * torch.sign(v[v.abs().argmax()])
    lam_max = float(lam[-1])
    ts = np.asarray(t, dtype=float)
    s = slice_1d(model, x, y, v, ts, params=f"{layer}.weight", curvature=lam_max, mode="eval")
    return pd.DataFrame(
        {
            "t": ts,
            "loss": np.asarray(s.loss, dtype=float),
            "quadratic": np.asarray(s.quadratic, dtype=float),
            "lam": lam_max,
        }
    )


def _write_slice(store: Path, key: str, frame: pd.DataFrame) -> None:
    import pyarrow as pa

    path = _slice_path(store, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_table(pa.Table.from_pandas(frame.assign(key=key), preserve_index=False), path)


def add_slices(
    store: str | os.PathLike,
    t_max: float | None = None,
    points: int = SLICE_POINTS,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> int:
    """Add ``slices/<key>.parquet`` for every completed run of ``store`` that lacks one.

    Models come from ``run_experiment``'s cache (a run missing there is retrained, same
    numbers). One t grid serves the whole store so that slices compare at a glance:
    ``t_max`` defaults to 1 / sqrt(lam_max) of the default setting, where the quadratic
    model of the default rises by half a nat. Returns the number of slices written.
    """
    from awbench.experiments.experiment import run_experiment

    store = Path(store)
    grid = KnobGrid(store, extra=store)
    meta = store / "slices" / "meta.json"
    if t_max is None:
        if meta.exists() and not force:
            t_max = float(json.loads(meta.read_text(encoding="utf-8"))["t_max"])
        else:
            lam = grid.default()["lam_max"]
            t_max = float(f"{1.0 / math.sqrt(max(lam, 1e-12)):.3g}")
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(
        json.dumps(
            {
                "t_max": t_max,
                "points": points,
                "layer": grid.base.layer,
                "what": "mean clean-training CE along the top eigenvector of the "
                "layer Hessian; quadratic = L(0) + lam t^2 / 2",
            },
            indent=1,
        )
    )
    t = np.linspace(-t_max, t_max, points)
    written = 0
    for _, row in grid.runs.iterrows():
        key = row["key"]
        if _slice_path(store, key).exists() and not force:
            continue
        res = run_experiment(config_from_row(row), show_progress=False)
        if not res.ok:
            continue
        _write_slice(store, key, loss_slice(res.load_run(), t))
        written += 1
        log(f"slice {written}: {key} ({KnobPanel.describe(config_from_row(row), grid.base)})")
    return written


# --- panel builders (pure: settings in, traces and figures out) ----------------------------

_E = np.zeros(0)


def _subplots(cols: int, titles: tuple[str, ...], widths=None) -> go.Figure:
    fig = make_subplots(
        rows=1, cols=cols, subplot_titles=titles, column_widths=widths, horizontal_spacing=0.09
    )
    fig.update_layout(
        template=TEMPLATE,
        height=370,
        margin={"t": 70, "l": 60, "r": 20, "b": 95},
        legend={"orientation": "h", "yanchor": "top", "y": -0.25, "xanchor": "left", "x": 0},
        title={"x": 0.01, "xanchor": "left", "font": {"size": 14}},
        barmode="group",
    )
    return fig


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _get(s: Setting | None, name: str) -> float:
    return float("nan") if s is None else s.scalars.get(name, float("nan"))


def _log_range(*arrays: np.ndarray, decades: float = 5.0) -> list[float] | None:
    """A log-axis range over ``decades`` below the largest value (spectra end in exact zeros)."""
    vals = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays if len(a)] or [np.zeros(0)])
    if not len(vals):
        return None
    top = math.log10(vals.max())
    return [max(top - decades, math.log10(vals.min())) - 0.1, top + 0.2]


def _line(
    x: np.ndarray,
    y: np.ndarray,
    axis: str,
    hover: str,
    label: str,
    color: str,
    *,
    name: str | None = None,
    group: str | None = None,
    dash: str | None = None,
    width: float | None = None,
    marker_size: int | None = None,
) -> dict:
    """One scatter trace of a panel; ``axis`` is "" for the first subplot, then "2", "3"."""
    line = {
        "color": color,
        **({"dash": dash} if dash else {}),
        **({"width": width} if width else {}),
    }
    trace = {
        "type": "scatter",
        "mode": "lines+markers" if marker_size else "lines",
        "line": line,
        "x": x,
        "y": y,
        "xaxis": f"x{axis}",
        "yaxis": f"y{axis}",
        "hovertemplate": f"{hover}<extra>{label}</extra>",
    }
    if name is None:
        trace["showlegend"] = False
    else:
        trace["name"] = name
    if group is not None:
        trace["legendgroup"] = group
    if marker_size:
        trace["marker"] = {"size": marker_size}
    return trace


def _field(s: Setting | None, name: str) -> np.ndarray:
    return _E if s is None else getattr(s, name)


def _unconverged_flag(cur: Setting | None, ref: Setting | None) -> str:
    """A red title prefix when this setting or the default did not converge."""
    bad_cur = cur is not None and not cur.converged
    bad_ref = ref is not None and not ref.converged
    if not (bad_cur or bad_ref):
        return ""
    if bad_cur and bad_ref and cur.key != ref.key:
        text = "⚠ neither converged"
    elif bad_cur:
        text = "⚠ NOT CONVERGED"
    else:
        text = "⚠ default not converged"
    return f'<span style="color:{WARNING}"><b>{text}</b></span> · '


def sharpness_traces(cur: Setting | None, ref: Setting | None) -> tuple[list[dict], dict]:
    """Sharpness panel: sigma_g spectrum, top layer-Hessian eigenvalues, loss slice."""
    r, c = ref, cur

    def n_lam(s: Setting | None) -> np.ndarray:
        return np.arange(1, len(s.top_lam) + 1) if s is not None else _E

    rank_hover, slice_hover = "rank %{x}<br>σg %{y:.3g}", "t %{x:.3g}<br>loss %{y:.4g}"
    default = {"color": REFERENCE, "dash": "dot", "group": "ref"}
    traces = [
        _line(
            _field(r, "rank"),
            _field(r, "sigma_g"),
            "",
            rank_hover,
            "default",
            name="default setting",
            **default,
        ),
        _line(
            _field(c, "rank"),
            _field(c, "sigma_g"),
            "",
            rank_hover,
            "this setting",
            CURRENT,
            name="this setting",
            group="cur",
        ),
        _line(
            n_lam(r),
            _field(r, "top_lam"),
            "2",
            "λ%{x} = %{y:.3g}",
            "default",
            marker_size=6,
            **default,
        ),
        _line(
            n_lam(c),
            _field(c, "top_lam"),
            "2",
            "λ%{x} = %{y:.3g}",
            "this setting",
            CURRENT,
            group="cur",
            marker_size=7,
        ),
        _line(
            _field(r, "slice_t"), _field(r, "slice_loss"), "3", slice_hover, "default", **default
        ),
        _line(
            _field(c, "slice_t"),
            _field(c, "slice_quadratic"),
            "3",
            "t %{x:.3g}<br>L(0)+½λt² %{y:.4g}",
            "quadratic",
            CURRENT,
            name="½λt² model",
            dash="dash",
            width=1,
        ),
        _line(
            _field(c, "slice_t"),
            _field(c, "slice_loss"),
            "3",
            slice_hover,
            "this setting",
            CURRENT,
            group="cur",
            width=2.5,
        ),
    ]
    layer = (c or r).config.layer if (c or r) is not None else "layer"
    title = _unconverged_flag(c, r) + (
        f"<b>Sharpness</b>  Σσg² = {_fmt(_get(c, 'sharpness'))} "
        f"(default {_fmt(_get(r, 'sharpness'))}) · λmax of the {layer} Hessian = "
        f"{_fmt(_get(c, 'lam_max'))} (default {_fmt(_get(r, 'lam_max'))})"
    )
    ymax = [np.max(s.slice_loss) for s in (c, r) if s is not None and len(s.slice_loss)]
    ymin = [np.min(s.slice_loss) for s in (c, r) if s is not None and len(s.slice_loss)]
    layout = {
        "title.text": title,
        "yaxis.range": _log_range(*(x.sigma_g for x in (c, r) if x is not None)),
    }
    if ymax:  # the quadratic may shoot far above the slice: frame the slices
        span = max(ymax) - min(ymin)
        layout["yaxis3.range"] = [min(ymin) - 0.05 * span, max(ymax) + 0.1 * span]
    return traces, layout


def _sharpness_frame() -> go.Figure:
    fig = _subplots(
        3,
        (
            "σg per direction (sharpness)",
            "top eigenvalues of the layer Hessian",
            "loss along the top eigenvector",
        ),
    )
    fig.update_xaxes(title_text="rank n (by σg)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="σg,n", type="log", exponentformat="power", row=1, col=1)
    fig.update_xaxes(title_text="n", dtick=1, row=1, col=2)
    fig.update_yaxes(title_text="λn", row=1, col=2)
    fig.update_xaxes(title_text="t (step along v1)", row=1, col=3)
    fig.update_yaxes(title_text="loss (nats)", row=1, col=3)
    return fig


def size_traces(cur: Setting | None, ref: Setting | None) -> tuple[list[dict], dict]:
    """Size panel: sigma_w per direction (sigma_g order) and the layer's weight norm."""
    r, c = ref, cur
    rank_hover = "rank %{x}<br>σw %{y:.3g}"
    traces = [
        _line(
            _field(r, "rank"),
            _field(r, "sigma_w"),
            "",
            rank_hover,
            "default",
            REFERENCE,
            name="default setting",
            dash="dot",
        ),
        _line(
            _field(c, "rank"),
            _field(c, "sigma_w"),
            "",
            rank_hover,
            "this setting",
            SIZE_COLOR,
            name="this setting",
        ),
        {
            "type": "bar",
            "showlegend": False,
            "marker": {"color": [REFERENCE, SIZE_COLOR]},
            "x": ["default", "this setting"],
            "y": [_get(r, "weight_norm"), _get(c, "weight_norm")],
            "text": [_fmt(_get(r, "weight_norm")), _fmt(_get(c, "weight_norm"))],
            "textposition": "auto",
            "xaxis": "x2",
            "yaxis": "y2",
            "hovertemplate": "%{x}: ‖W‖F = %{y:.4g}<extra></extra>",
        },
        {
            "type": "bar",
            "showlegend": False,
            "marker": {"color": [REFERENCE, SIZE_COLOR], "opacity": 0.6},
            "x": ["default", "this setting"],
            "y": [_get(r, "size"), _get(c, "size")],
            "text": [_fmt(_get(r, "size")), _fmt(_get(c, "size"))],
            "textposition": "auto",
            "xaxis": "x3",
            "yaxis": "y3",
            "hovertemplate": "%{x}: Σσw² = %{y:.4g}<extra></extra>",
        },
    ]
    title = _unconverged_flag(c, r) + (
        f"<b>Size</b>  Σσw² = {_fmt(_get(c, 'size'))} (default {_fmt(_get(r, 'size'))})"
        f" · ‖W‖F = {_fmt(_get(c, 'weight_norm'))} (default {_fmt(_get(r, 'weight_norm'))})"
    )
    return traces, {
        "title.text": title,
        "yaxis.range": _log_range(*(x.sigma_w for x in (c, r) if x is not None)),
    }


def _size_frame() -> go.Figure:
    fig = _subplots(
        3,
        ("σw per direction (size), σg order", "layer weight norm ‖W‖F", "size Σσw²"),
        widths=[0.6, 0.2, 0.2],
    )
    fig.update_xaxes(title_text="rank n (by σg)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="σw,n", type="log", exponentformat="power", row=1, col=1)
    return fig


GAP_BARS = ("real gap", "exact ⟨Δl⟩", "Σ cσgσw")


def gap_traces(cur: Setting | None, ref: Setting | None) -> tuple[list[dict], dict]:
    """Gap panel: real gap, exact pair gap and estimate; sharp vs flat directions."""
    r, c = ref, cur

    def vals(s: Setting | None) -> list[float]:
        return [_get(s, "real_gap"), _get(s, "pair_gap"), _get(s, "estimated_gap")]

    sharp = [_get(r, "sharp_gap"), _get(c, "sharp_gap")]
    flat = [_get(r, "flat_gap"), _get(c, "flat_gap")]
    traces = [
        {
            "type": "bar",
            "name": "default setting",
            "marker": {"color": REFERENCE},
            "x": list(GAP_BARS),
            "y": vals(r),
            "text": [_fmt(v) for v in vals(r)],
            "textposition": "auto",
            "xaxis": "x",
            "yaxis": "y",
            "hovertemplate": "%{x}: %{y:.4g} nats<extra>default</extra>",
            "offsetgroup": "ref",
        },
        {
            "type": "bar",
            "name": "this setting",
            "marker": {"color": COLORS["estimated_gap"]},
            "x": list(GAP_BARS),
            "y": vals(c),
            "text": [_fmt(v) for v in vals(c)],
            "textposition": "auto",
            "xaxis": "x",
            "yaxis": "y",
            "hovertemplate": "%{x}: %{y:.4g} nats<extra>this setting</extra>",
            "offsetgroup": "cur",
        },
        {
            "type": "bar",
            "name": "sharp directions",
            "marker": {"color": COLORS["sharp_gap"]},
            "x": ["default", "this setting"],
            "y": sharp,
            "xaxis": "x2",
            "yaxis": "y2",
            "offsetgroup": "split",
            "text": [_fmt(v) for v in sharp],
            "textposition": "inside",
            "hovertemplate": "%{x}: sharp part %{y:.4g} nats<extra></extra>",
        },
        {
            "type": "bar",
            "name": "flat directions",
            "marker": {"color": COLORS["flat_gap"]},
            "x": ["default", "this setting"],
            "y": flat,
            "base": [0.0 if math.isnan(v) else v for v in sharp],
            "xaxis": "x2",
            "yaxis": "y2",
            "offsetgroup": "split",
            "text": [_fmt(v) for v in flat],
            "textposition": "inside",
            "hovertemplate": "%{x}: flat part %{y:.4g} nats<extra></extra>",
        },
    ]
    share = _get(c, "sharp_gap") / _get(c, "pair_gap") if _get(c, "pair_gap") else float("nan")
    title = _unconverged_flag(c, r) + (
        f"<b>Gap</b>  real {_fmt(_get(c, 'real_gap'))} nats "
        f"(default {_fmt(_get(r, 'real_gap'))}) · estimate {_fmt(_get(c, 'estimated_gap'))} · "
        f"sharp directions carry {_fmt(100 * share, 2)} % · "
        f"test error {_fmt(100 * _get(c, 'test_error'), 3)} %"
    )
    return traces, {"title.text": title}


def _gap_frame() -> go.Figure:
    fig = _subplots(
        2,
        ("real gap and its decomposition (nats)", "sharp vs flat directions (nats)"),
        widths=[0.55, 0.45],
    )
    return fig


def sweep_traces(
    curve: pd.DataFrame, knob: str, options: list, cur: Setting | None
) -> tuple[list[dict], dict]:
    """Sweep panel: gap, sharpness, size along ``knob`` (mean ± sd over seeds), "you are here"."""
    pos = {v: i for i, v in enumerate(options)}
    xs = (
        np.array([pos.get(_native(v), np.nan) for v in curve[knob]], dtype=float)
        if len(curve)
        else _E
    )
    has_counts = len(curve) and "converged" in curve
    converged = curve["converged"].to_numpy() if has_counts else np.ones(len(curve), dtype=int)
    seeds = curve["seeds"].to_numpy() if has_counts else curve["n"].to_numpy()
    seeds_text = [
        f"mean of {n} converged seed(s) ({k}/{m} converged)"
        if k
        else f"⚠ not converged (0/{m} seeds): not a result"
        for n, k, m in zip(curve["n"] if len(curve) else [], converged, seeds)
    ]
    marker = {
        "symbol": ["circle" if k else "x" for k in converged],
        "size": [7 if k else 11 for k in converged],
    }
    unconverged = int((converged == 0).sum())
    traces = []
    for j, col in enumerate(CURVE_COLUMNS, start=1):
        axis = "" if j == 1 else str(j)
        mean = curve[f"{col}_mean"].to_numpy(dtype=float) if len(curve) else _E
        sd = curve[f"{col}_sd"].to_numpy(dtype=float) if len(curve) else _E
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "grid (mean ± sd over seeds)",
                "showlegend": j == 1,
                "legendgroup": "curve",
                "line": {"color": COLORS.get(col, "#444")},
                "marker": marker,
                "x": xs,
                "y": mean,
                "error_y": {"type": "data", "array": sd, "visible": True},
                "customdata": seeds_text,
                "xaxis": f"x{axis}",
                "yaxis": f"y{axis}",
                "hovertemplate": f"{knob} %{{text}}<br>{col} %{{y:.4g}} ± %{{error_y.array:.2g}}"
                "<br>%{customdata}<extra></extra>",
                "text": [f"{_native(v)}" for v in curve[knob]] if len(curve) else [],
            }
        )
    here_x = [pos.get(_native(getattr(cur.config, knob)), np.nan)] if cur is not None else []
    for j, col in enumerate(CURVE_COLUMNS, start=1):
        axis = "" if j == 1 else str(j)
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "you are here",
                "showlegend": j == 1,
                "legendgroup": "here",
                "marker": {
                    "symbol": "star",
                    "size": 16,
                    "color": CURRENT,
                    "line": {"color": "black", "width": 1},
                },
                "x": here_x,
                "y": [_get(cur, col)] if cur is not None else [],
                "xaxis": f"x{axis}",
                "yaxis": f"y{axis}",
                "hovertemplate": f"you are here<br>{col} %{{y:.4g}}<extra></extra>",
            }
        )
    label = KNOB_TEXT.get(knob, knob)
    ticks = {
        "tickmode": "array",
        "tickvals": list(range(len(options))),
        "ticktext": [f"{v:g}" for v in options],
        "range": [-0.4, max(len(options) - 0.6, 0.4)],
        "title": {"text": label},
    }
    layout = {
        "title.text": f"<b>Sweep of {label}</b>, the other knobs as set above "
        f"({len(curve)} of {len(options)} values on the grid"
        + (
            f'; <span style="color:{WARNING}">{unconverged} not converged (×): not results</span>'
            if unconverged
            else ""
        )
        + ")"
    }
    for j in range(1, 4):
        layout[f"xaxis{'' if j == 1 else j}"] = ticks
    return traces, layout


def _sweep_frame() -> go.Figure:
    fig = _subplots(3, ("real gap (nats)", "sharpness Σσg²", "size Σσw²"))
    return fig


def sweep_figure(grid: KnobGrid, knob: str, values: Mapping[str, Any] | None = None) -> go.Figure:
    """Static sweep panel of ``knob`` with the other knobs at ``values`` (default setting)."""
    values = {**grid.defaults, **dict(values or {})}
    traces, layout = sweep_traces(
        grid.curve(knob, values), knob, grid.values[knob], grid.lookup(values)
    )
    layout["title.text"] = layout["title.text"].replace("as set above", "held")
    return build_figure("sweep", traces, layout)


FRAMES = {
    "sharpness": _sharpness_frame,
    "size": _size_frame,
    "gap": _gap_frame,
    "sweep": _sweep_frame,
}


def build_figure(panel: str, traces: list[dict], layout: dict) -> go.Figure:
    """A static figure of one panel from its traces and layout updates."""
    fig = FRAMES[panel]()
    kinds = {"scatter": go.Scatter, "bar": go.Bar}
    fig.add_traces(
        [kinds[t["type"]](**{k: v for k, v in t.items() if k != "type"}) for t in traces]
    )
    fig.update_layout(_nested(layout))
    return fig


def _nested(flat: Mapping[str, Any]) -> dict:
    """{"title.text": t, "xaxis2": {...}} -> {"title": {"text": t}, "xaxis2": {...}}."""
    out: dict = {}
    for key, value in flat.items():
        parts = key.split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    return out


# --- the widget ----------------------------------------------------------------------------

HEADLESS_PARENTS = (
    "papermill",
    "nbconvert",
    "nbclient",
    "jupyter-execute",
    "jupyter_execute",
    "pytest",
)


def _parent_commands(levels: int = 4) -> list[str]:
    out, pid = [], os.getpid()
    for _ in range(levels):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                out.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError, IndexError):
            break
        if pid <= 1:
            break
    return out


def frontend() -> str:
    """ "live" where a Jupyter front end renders widgets, else "static".

    Static: ``AWBENCH_QUIET`` set (headless runs), no IPython kernel, or a kernel started by
    papermill / nbconvert / nbclient. Live: a kernel started by a Jupyter server (JupyterLab,
    Notebook) or any other kernel front end (VS Code, ...). ``AWBENCH_WIDGETS=live|static``
    overrides the guess.
    """
    forced = os.environ.get("AWBENCH_WIDGETS", "").strip().lower()
    if forced in ("live", "static"):
        return forced
    if os.environ.get("AWBENCH_QUIET", "").strip() not in ("", "0"):
        return "static"
    try:
        shell = get_ipython().__class__.__name__  # type: ignore[name-defined]
    except NameError:
        return "static"
    if shell != "ZMQInteractiveShell":
        return "static"
    if os.environ.get("JPY_SESSION_NAME"):
        return "live"
    parents = " ".join(_parent_commands())
    return "static" if any(name in parents for name in HEADLESS_PARENTS) else "live"


def _warm_up(cfg: Config) -> None:
    """Pay the first-use costs of "train this setting" (dataset loader imports, torch's
    batched autograd) in a background thread while the user looks at the panel."""
    import threading

    def work() -> None:
        try:
            import torch

            from awbench.curvature.hessian import output_hessians
            from awbench.data import load_data
            from awbench.nn.mlp import build_model

            small = cfg.replace(n_train=20, n_test=10, label_noise=0.0)
            data = load_data(small)
            model = build_model(small, data.n_features, data.n_classes).double().eval()
            output_hessians(model, small.layer, data.x_train[:4].double(), data.y_train[:4])
            del torch
        except Exception:  # noqa: BLE001, S110 - only a head start: training works without it
            pass

    global _WARM_THREAD
    if _WARM_THREAD is not None:
        return
    # not a daemon: an interpreter exiting mid-warm-up waits for it (torch aborts otherwise)
    _WARM_THREAD = threading.Thread(target=work, name="awbench-warm-up")
    _WARM_THREAD.start()


_WARM_THREAD = None


def wait_for_warm_up(timeout: float | None = None) -> None:
    """Block until the background warm-up (started by the first live panel) is over."""
    if _WARM_THREAD is not None:
        _WARM_THREAD.join(timeout)


class KnobPanel:
    """Sliders over the knobs grid and four linked panels (see the module docstring).

    ``mode``: "auto" (:func:`frontend`), "live" (ipywidgets + FigureWidgets) or "static"
    (plain figures, no widget is created). ``start``: initial knob values (papermill
    parameters); a value outside the grid is added to its slider and makes an off-grid
    setting. Drive it from code with :meth:`set`, :meth:`reset`, :meth:`train`.
    """

    def __init__(
        self,
        store: str | os.PathLike | None = None,
        *,
        mode: str = "auto",
        start: Mapping[str, Any] | None = None,
        extra_store: str | os.PathLike | None = None,
        knob: str = "batch_size",
    ):
        if mode not in ("auto", "live", "static"):
            raise ValueError(f"mode={mode!r} is not allowed: expected 'auto', 'live' or 'static'")
        self.grid = KnobGrid(store, extra_store)
        self.mode = frontend() if mode == "auto" else mode
        start = {k: v for k, v in dict(start or {}).items() if v is not None}
        unknown = sorted(set(start) - set(KNOBS))
        if unknown:
            raise ConfigError(
                f"start: {', '.join(unknown)} not a knob; the knobs are {', '.join(KNOBS)}"
            )
        self._values = dict(self.grid.defaults)
        if start:
            self.grid.config(start)  # validate (the error names the field)
            self._values.update({k: _native(self.grid.config(start).to_dict()[k]) for k in start})
        self.options = {k: sorted(set(self.grid.values[k]) | {self._values[k]}) for k in KNOBS}
        if knob not in KNOBS:
            raise ValueError(f"knob={knob!r} is not a knob: expected one of {', '.join(KNOBS)}")
        self.last_knob = knob
        self.history: list[dict] = []  # one entry per redraw: knob, values, seconds
        self._suspend = False
        self.widgets: dict[str, Any] = {}
        self.figures: dict[str, Any] = {}
        self._sent: dict[str, tuple[list[dict], dict]] = {}
        if self.mode == "live":
            self._build_widgets()
            _warm_up(self.grid.base)
        self._redraw()

    # --- state --------------------------------------------------------------------------
    @property
    def values(self) -> dict[str, Any]:
        """The knob values on screen."""
        return dict(self._values)

    @property
    def config(self) -> Config:
        return self.grid.config(self._values)

    @property
    def setting(self) -> Setting | None:
        """The run on screen, or None when the combination is off the grid (not trained yet)."""
        return self.grid.lookup(self._values)

    @property
    def reference(self) -> Setting:
        """The default setting, what every panel compares against."""
        # looked up, not kept: a run trained here may join the default's grid point
        return self.grid.default()

    @property
    def on_grid(self) -> bool:
        return self.setting is not None

    @staticmethod
    def describe(cfg: Config, base: Config | None = None) -> str:
        diff = cfg.diff(base or Config.preset("paper"))
        return ", ".join(f"{k}={v!r}" for k, v in diff.items()) or "the defaults"

    @property
    def config_text(self) -> str:
        """The Config on screen as a Python line, a papermill call and a sweep grid."""
        cfg, paper = self.config, Config.preset("paper")
        diff = cfg.diff(paper)
        py = 'aw.Config.preset("paper")' + (
            ".replace(" + ", ".join(f"{k}={v!r}" for k, v in diff.items()) + ")" if diff else ""
        )
        knobs = {k: getattr(cfg, k) for k in KNOBS if getattr(cfg, k) != getattr(self.grid.base, k)}
        pm = "papermill notebooks/08_knobs.ipynb out.ipynb" + "".join(
            f" -p {k} {v}" for k, v in knobs.items()
        )
        grid = "{" + ", ".join(f"{k}: [{json.dumps(v)}]" for k, v in diff.items()) + "}"
        sweep = f"awbench sweep --grid grid.yaml --store my_store   # grid.yaml: {grid}"
        return f"cfg = {py}\n{pm}\n{sweep}"

    # --- driving --------------------------------------------------------------------------
    def set(self, **values: Any) -> Setting | None:
        """Move sliders (one redraw); the last named knob becomes the sweep panel's knob."""
        unknown = sorted(set(values) - set(KNOBS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not a knob: expected any of {', '.join(KNOBS)}")
        for k, v in values.items():
            v = _native(v)
            if v not in self.options[k]:
                raise ValueError(
                    f"{k}={v!r} is not on its slider: expected one of {self.options[k]}"
                )
        if self.widgets:
            self._suspend = True
            try:
                for k, v in values.items():
                    self.widgets[k].value = _native(v)
            finally:
                self._suspend = False
        self._values.update({k: _native(v) for k, v in values.items()})
        if values:
            self.last_knob = list(values)[-1]
        self._redraw()
        return self.setting

    def reset(self) -> None:
        """Every knob back to the grid's default setting."""
        self.set(**self.grid.defaults)

    def train(self) -> Setting:
        """Compute the combination on screen (off the grid) with a progress bar; cached."""
        bar = self.widgets.get("progress")
        button = self.widgets.get("train")

        def report(fraction: float, text: str) -> None:
            if bar is not None:
                bar.value = fraction
                bar.description = f"{100 * fraction:.0f} %"
                self.widgets["status"].value = f"<i>{html.escape(text)}</i>"

        if button is not None:
            button.disabled = True
        if bar is not None:
            bar.value = 0.0
            bar.layout.visibility = "visible"
        try:
            setting = self.grid.train(self._values, on_progress=report)
        finally:
            if bar is not None:
                bar.layout.visibility = "hidden"
        self._redraw()
        return setting

    def _train_clicked(self) -> None:
        try:
            self.train()
        except Exception as exc:  # noqa: BLE001 - a button has no caller to raise to: say it on screen
            self.widgets[
                "status"
            ].value = f"<b>Training failed:</b> {html.escape(f'{type(exc).__name__}: {exc}')}"
            self.widgets["train"].disabled = False

    # --- drawing --------------------------------------------------------------------------
    def panel_data(self) -> dict[str, tuple[list[dict], dict]]:
        """Traces and layout updates of every panel for the setting on screen."""
        cur, ref = self.setting, self.reference
        curve = self.grid.curve(self.last_knob, self._values)
        return {
            "sharpness": sharpness_traces(cur, ref),
            "size": size_traces(cur, ref),
            "gap": gap_traces(cur, ref),
            "sweep": sweep_traces(curve, self.last_knob, self.options[self.last_knob], cur),
        }

    def static_figures(self) -> dict[str, go.Figure]:
        """The four panels of the setting on screen as plain figures."""
        return {name: build_figure(name, *data) for name, data in self.panel_data().items()}

    def _redraw(self) -> None:
        start = time.perf_counter()
        data = self.panel_data()
        if self.mode == "live":
            for name, (traces, layout) in data.items():
                self._send(name, traces, layout)
            self._update_controls()
        else:
            self.figures = {name: build_figure(name, *d) for name, d in data.items()}
        self.history.append(
            {
                "knob": self.last_knob,
                "values": self.values,
                "on_grid": self.on_grid,
                "seconds": time.perf_counter() - start,
            }
        )

    def _send(self, name: str, traces: list[dict], layout: dict) -> None:
        """Update one FigureWidget in place, sending only what changed since the last redraw."""
        fw = self.figures[name]
        old_traces, old_layout = self._sent.get(name, ([{}] * len(traces), {}))
        changes = []
        for i, (old, new) in enumerate(zip(old_traces, traces)):
            diff = {k: v for k, v in new.items() if k in DYNAMIC and not _same(old.get(k), v)}
            if diff:
                changes.append((i, diff))
        lay = {k: v for k, v in layout.items() if not _same(old_layout.get(k), v)}
        if changes or lay:
            with fw.batch_update():
                for i, diff in changes:
                    trace = fw.data[i]
                    for k, v in diff.items():
                        trace[k] = v
                for key, value in lay.items():
                    if isinstance(value, dict):
                        fw.layout[key].update(value)
                    else:
                        fw.layout[key] = value
        self._sent[name] = (traces, layout)

    def _status_html(self) -> str:
        s = self.setting
        if s is None:
            return (
                "<b>Off the grid:</b> this combination was not precomputed. "
                "Press <i>train this setting</i> (to the stopping rule: from a few seconds "
                "to about half a minute; cached afterwards)."
            )
        where = "precomputed grid" if s.source == "grid" else "trained here (cached)"
        acc = s.final_train_acc
        line = (
            f"<b>{html.escape(s.status)}</b> after {s.epochs} epochs (budget "
            f"{s.epoch_budget}) · final train loss {_fmt(s.final_train_loss)}, train accuracy "
            + (f"{100 * acc:.2f} %" if math.isfinite(acc) else "– (not in this store)")
        )
        if s.point is not None and s.point.n > 1:
            line += f" · {s.point.text} at this point"
        line += f" · {where} · run <code>{s.key}</code>"
        return line + "".join(
            f'<div class="awbench-warning" style="color:{WARNING};font-weight:bold">'
            f"{html.escape(w)}</div>"
            for w in warnings_of(s)
        )

    def _update_controls(self) -> None:
        w = self.widgets
        w["status"].value = self._status_html()
        w["takeaway"].value = _markdown_html(
            "\n\n".join(filter(None, (takeaway(self), sweep_takeaway(self))))
        )
        w["train"].disabled = self.on_grid
        w["config"].value = self.config_text
        for k in KNOBS:
            w[k].style.handle_color = None if self._values[k] == self.grid.defaults[k] else CURRENT

    def _build_widgets(self) -> None:
        import ipywidgets as W

        for k in KNOBS:
            slider = W.SelectionSlider(
                options=[(f"{v:g}", v) for v in self.options[k]],
                value=self._values[k],
                description=k,
                continuous_update=False,
                layout=W.Layout(width="330px"),
                style={"description_width": "95px"},
                tooltip=KNOB_TEXT.get(k, k),
            )
            slider.add_class("awbench-knob")
            slider.add_class(f"awbench-knob-{k}")
            slider.observe(self._on_slider(k), names="value")
            self.widgets[k] = slider
        reset = W.Button(
            description="reset", icon="undo", tooltip="every knob back to the default setting"
        )
        reset.on_click(lambda _: self.reset())
        reset.add_class("awbench-reset")
        train = W.Button(
            description="train this setting",
            icon="play",
            button_style="warning",
            tooltip="train + analyze this off-grid combination (cached)",
        )
        train.on_click(lambda _: self._train_clicked())
        train.add_class("awbench-train")
        progress = W.FloatProgress(
            value=0.0,
            min=0.0,
            max=1.0,
            description="",
            layout=W.Layout(visibility="hidden", width="330px"),
        )
        status = W.HTML()
        status.add_class("awbench-status")
        summary = W.HTML(layout=W.Layout(width="100%"))
        summary.add_class("awbench-takeaway")
        config = W.Textarea(value="", rows=4, layout=W.Layout(width="100%"), disabled=False)
        config.add_class("awbench-config")
        self.widgets.update(
            reset=reset,
            train=train,
            progress=progress,
            status=status,
            takeaway=summary,
            config=config,
        )
        data = self.panel_data()
        for name in PANELS:
            fw = go.FigureWidget(build_figure(name, *data[name]))
            fw.layout.width = FIGURE_WIDTH  # a FigureWidget does not follow the output's width
            fw.add_class(f"awbench-panel-{name}")
            self._sent[name] = data[name]
            self.figures[name] = fw
        sliders = [self.widgets[k] for k in KNOBS]
        controls = W.VBox(
            [
                W.HBox([W.VBox(sliders[:4]), W.VBox(sliders[4:])]),
                W.HBox([reset, train, progress]),
                status,
                summary,
            ]
        )
        self.view = W.VBox(
            [
                controls,
                W.HTML("<b>Current Config</b> (paste into Python, papermill or a sweep):"),
                config,
                *[self.figures[n] for n in PANELS],
            ]
        )
        self.view.add_class("awbench-knob-panel")

    def _on_slider(self, knob: str):
        def handler(change):
            if self._suspend:
                return
            self._values[knob] = _native(change["new"])
            self.last_knob = knob
            self._redraw()

        return handler

    # --- display --------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        if self.mode == "live":
            display(self.view)
            return
        display(HTML(f"<p>{self._status_html()}</p><pre>{html.escape(self.config_text)}</pre>"))
        for name in PANELS:
            display(self.figures[name])

    def show(self) -> None:
        self._ipython_display_()


def _markdown_html(text: str) -> str:
    """The little Markdown the takeaways write (paragraphs, "- " items, bold, code) as HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    paragraphs = []
    for para in out.split("\n\n"):
        items = para.split("\n")
        if all(item.startswith("- ") for item in items):
            para = "<ul>" + "".join(f"<li>{item[2:]}</li>" for item in items) + "</ul>"
            paragraphs.append(para)
        else:
            paragraphs.append(f"<p>{para}</p>")
    return "".join(paragraphs)


DYNAMIC = ("x", "y", "text", "error_y", "customdata", "base", "marker")


def _same(a: Any, b: Any) -> bool:
    """Equal trace properties (arrays by value, the same array object at once)."""
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, (np.ndarray, list)) and isinstance(b, (np.ndarray, list))):
            return False
        a, b = np.asarray(a), np.asarray(b)
        # spectra of two runs are different arrays (a setting's arrays are reused as they are)
        return (
            a.shape == b.shape
            and a.size <= 64
            and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that cannot be compared are not the same
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m awbench.apps.widgets STORE [--t-max T] [--force]``: add loss slices to a store."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m awbench.apps.widgets", description=main.__doc__)
    p.add_argument("store", help="a result store written by `awbench sweep --preset knobs`")
    p.add_argument(
        "--t-max", type=float, default=None, help="slice half-width (default from the default run)"
    )
    p.add_argument("--force", action="store_true", help="recompute slices that exist")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    n = add_slices(args.store, t_max=args.t_max, force=args.force)
    print(f"{n} slice(s) written to {Path(args.store) / 'slices'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
