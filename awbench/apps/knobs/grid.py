"""The knobs grid behind notebook 08: a result store plus loss slices, looked up by knob values.

A store written by ``awbench sweep`` (runs and directions tables) plus, per run, the training
loss along the top eigenvector of the analysed layer's Hessian (``slices/<key>.parquet``, added
by :func:`add_slices`). :class:`KnobGrid` turns a dictionary of knob values into a
:class:`Setting` (one run) and its :class:`Point` (the seeds of that grid point), trains a
setting missing from the grid on request, and gives the curves along one knob that
:func:`~awbench.apps.knobs.effects.grid_effects` compares. The slices themselves are
:mod:`awbench.apps.knobs.slices`. The widget on top is :mod:`awbench.apps.knobs.widgets`.

Only a converged network is a result: the grid's per-point means average the converged seeds
only, and a point where none converged is left out of
:func:`~awbench.apps.knobs.effects.grid_effects`' comparisons.

The shipped store is package data (``awbench/apps/knobs/store``, in a wheel too; see its
README.md).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from awbench.apps.knobs.slices import (
    SLICE_POINTS,
    loss_slice,
    pack_slices,
    read_slices,
    slice_keys,
    write_slice,
)
from awbench.apps.knobs.stores import (  # noqa: F401 - shipped_store: the grid's API too
    default_store,
    shipped_store,
    user_store,
)
from awbench.config import Config
from awbench.experiments.store import Store, config_from_row, load_store
from awbench.formatting import number
from awbench.status import CONVERGED, DONE_STATUSES
from awbench.viz.gap_plots import KNOB_LABELS

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
TOP_EIGENVALUES = 10
SPECTRUM_POINTS = 160  # thinned log-spaced ranks per spectrum (the axes are log)
# The directions columns the panels read; the shipped grid keeps only these (pack_store).
SHIPPED_DIRECTIONS = ("key", "rank", "lam", "sigma_w", "sigma_g")


def thin_ranks(n: int) -> np.ndarray:
    """Positions of about :data:`SPECTRUM_POINTS` log-spaced ranks among ``n`` (all of them
    when there are no more): what a spectrum on log axes shows."""
    if n <= SPECTRUM_POINTS:
        return np.arange(n)
    return np.unique(np.round(np.geomspace(1, n, SPECTRUM_POINTS)).astype(int)) - 1


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


def native_value(value: Any) -> Any:
    """A plain Python number (store columns come back as NumPy scalars)."""
    return value.item() if hasattr(value, "item") else value


def _mode_value(values: pd.Series) -> Any:
    counts = values.value_counts()
    best = counts[counts == counts.max()].index
    return native_value(min(best))


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
                f"--store {self.store}` then `python -m awbench.apps.knobs.widgets {self.store}`"
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
        self._slices.update(read_slices(store, runs["key"]))
        merged = pd.concat([self._runs, runs], ignore_index=True) if len(self._runs) else runs
        self._runs = merged.drop_duplicates("key", keep="last").reset_index(drop=True)
        self._reindex()

    def _reindex(self) -> None:
        self._index = {}
        for i, row in enumerate(self._runs[list(KNOBS)].itertuples(index=False, name=None)):
            self._index[tuple(native_value(v) for v in row)] = i
        for k in KNOBS:
            grid = self._runs.loc[self._runs["source"] == "grid", k]
            self.values[k] = sorted({native_value(v) for v in grid})
        self._matrix = self._runs[list(KNOBS)].to_numpy(dtype=float)
        self._curve_values = self._runs[list(CURVE_COLUMNS)].to_numpy(dtype=float)
        self._converged = self._runs["converged"].to_numpy(dtype=bool)
        self._natives = {k: {float(v): native_value(v) for v in self._runs[k]} for k in KNOBS}
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
        return tuple(native_value(merged[k]) for k in KNOBS)

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
                text += f", train loss {number(loss)} (the stopping rule needs < {cfg.stop_loss:g})"
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
                write_slice(self.extra, cfg.key(), part)
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


def describe(cfg: Config, base: Config | None = None) -> str:
    """The fields of ``cfg`` that differ from ``base`` (default: the paper preset), as k=v."""
    diff = cfg.diff(base or Config.preset("paper"))
    return ", ".join(f"{k}={v!r}" for k, v in diff.items()) or "the defaults"


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
    have = slice_keys(store)
    written = 0
    for _, row in grid.runs.iterrows():
        key = row["key"]
        if key in have and not force:
            continue
        res = run_experiment(config_from_row(row), show_progress=False)
        if not res.ok:
            continue
        write_slice(store, key, loss_slice(res.load_run(), t))
        written += 1
        log(f"slice {written}: {key} ({describe(config_from_row(row), grid.base)})")
    return written


def shipped_directions(directions: pd.DataFrame) -> pd.DataFrame:
    """What the panels read of each run's directions (:data:`SHIPPED_DIRECTIONS`), at the
    ranks a spectrum shows (:func:`thin_ranks`) and the rows of the
    :data:`TOP_EIGENVALUES` largest eigenvalues."""
    parts = []
    for _, d in directions.groupby("key", sort=False):
        d = d.sort_values("rank")
        lam = d["lam"].to_numpy(dtype=float)
        top = np.argsort(-lam, kind="stable")[:TOP_EIGENVALUES]
        rows = np.union1d(thin_ranks(len(d)), top)
        parts.append(d.iloc[rows][list(SHIPPED_DIRECTIONS)])
    if not parts:
        return directions[[c for c in SHIPPED_DIRECTIONS if c in directions]]
    return pd.concat(parts, ignore_index=True)


def pack_store(store: str | os.PathLike) -> int:
    """Make a knobs store fit to ship as package data: runs, directions (thinned to
    :func:`shipped_directions`, float32) and slices packed into one zstd part each. A run
    trained into it later is stored as in any store. Returns the bytes saved."""
    store = Path(store)
    return Store(store).pack(thin=shipped_directions) + pack_slices(store)
