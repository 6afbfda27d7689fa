"""Sweeps: grids of Configs run through ``run_experiment`` into a result store, resumably.

    report = aw.run_sweep("batch_size", store="results/bs", seeds=10, workers=2)
    report = aw.run_sweep({"lr": [0.01, 0.1], "dropout": [0, 0.1]}, "results/x", seeds=3)
    runs, directions = aw.load_store("results/bs")      # or report.load()

A grid is a dict of lists (their product), a list of such dicts (concatenated), or the name
of a sweep preset (``awbench.experiments.grids``): one per knob of docs/science.md#6-sweeps
(``batch_size``, ``lr``, ``init_scale``, ``dropout``, ``weight_decay``, ``label_noise``,
``n_train``) with the paper's values scaled to the base preset's dataset, plus ``knobs``, the
multi-knob grid behind the sliders of notebook 08 (``awbench/apps/knobs_store``). Every
Config is validated before anything runs.

Executors share one concurrent.futures code path: in-process (``workers=1``), a process pool
(default: one worker per core, one torch thread each), or Dask distributed (``scheduler=``
address of a running cluster, or ``dask_local=N`` for a LocalCluster). Workers only compute
and return rows; this process writes the store, so a remote cluster needs no shared disk.

The store makes sweeps resumable: runs already in it are skipped, a run interrupted before
its row was written is simply run again. Divergence and exceptions are recorded (status
"diverged" / "failed" with the reason) and the sweep goes on.

``run_notebooks`` reruns a notebook under papermill once per parameter set, with the same
validation up front, executors and resume; the numbers a notebook ``record``-ed come back
through ``awbench.experiments.records.read_records`` and the output folder's ``index.parquet``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
import platform
import socket
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from awbench.config import FIELD_NAMES, PRESETS, Config, ConfigError
from awbench.data import n_total_train
from awbench.experiments import experiment
from awbench.experiments.grids import KNOBS_SEEDS, POOL_SIZES, PROFILES, preset_grid
from awbench.experiments.store import Store, config_columns
from awbench.progress import interactive, progress
from awbench.status import DONE_STATUSES, FAILED, FAILED_STATUSES

# --- grids -----------------------------------------------------------------------------


@dataclass
class Sweep:
    """A named, validated, de-duplicated list of Configs to run."""

    name: str
    configs: list[Config]
    base: Config
    varying: tuple[str, ...] = ()  # fields that differ between configs (for readable labels)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.configs)

    def config_keys(self) -> list[str]:
        return [c.key() for c in self.configs]

    def label(self, cfg: Config) -> str:
        return describe(cfg, self.varying)


_ABBREV = {
    "batch_size": "bs",
    "weight_decay": "wd",
    "dropout": "do",
    "init_scale": "s",
    "label_noise": "rho",
    "n_train": "n",
}


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_short(v) for v in value)
    return str(value)


def describe(values: Config | Mapping[str, Any], names: Iterable[str]) -> str:
    """Readable label such as ``bs=100_wd=0.01`` of the given fields."""
    d = values.to_dict() if isinstance(values, Config) else values
    parts = [f"{_ABBREV.get(n, n)}={_short(d[n])}" for n in names if n in d]
    text = "_".join(parts)
    return "".join(ch if ch.isalnum() or ch in "=._-" else "-" for ch in text)


def expand_grid(grid: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Parameter sets of a grid: the product of a dict of lists, or of each dict in a list."""
    if isinstance(grid, Mapping):
        grid = [grid]
    if not isinstance(grid, Sequence) or isinstance(grid, (str, bytes)):
        raise ConfigError(
            f"a grid is a dict of lists or a list of such dicts, got {type(grid).__name__}"
        )
    sets: list[dict[str, Any]] = []
    for i, block in enumerate(grid):
        if not isinstance(block, Mapping):
            raise ConfigError(
                f"grid entry {i} is a {type(block).__name__}, expected a dict of lists"
            )
        names = list(block)
        lists = []
        for name in names:
            v = block[name]
            # widths=[30, 30] is one value; widths=[[30, 30], [64, 64]] are two.
            if isinstance(v, (list, tuple)) and not (
                name == "widths" and v and not isinstance(v[0], (list, tuple))
            ):
                if len(v) == 0:
                    raise ConfigError(f"grid field {name!r} has an empty list of values")
                lists.append(list(v))
            else:
                lists.append([v])
        sets.extend(dict(zip(names, combo)) for combo in itertools.product(*lists))
    return sets


def load_grid(path: str | os.PathLike) -> Any:
    """Read a YAML (or JSON) grid file: a dict of lists, or a list of dicts of lists."""
    import yaml

    path = Path(path)
    try:
        grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"grid file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"grid file {path} is not valid YAML: {exc}") from None
    if not grid:
        raise ConfigError(f"grid file {path} is empty: expected a dict of lists")
    return grid


def check_data_size(cfg: Config) -> None:
    """Fail fast (before any run) when the dataset cannot supply the training samples."""
    pool = POOL_SIZES.get(cfg.dataset)
    if pool is None:
        return
    need = n_total_train(cfg.n_train, cfg.label_noise)
    if need > pool:
        extra = (
            "" if cfg.label_noise == 0 else f" (with label_noise={cfg.label_noise}: {need} in all)"
        )
        raise ConfigError(
            f"Config.n_train={cfg.n_train} is not allowed for dataset={cfg.dataset!r}: it has "
            f"{pool} training samples, the run needs {need}{extra}"
        )


def _as_config(base: Config | str | None) -> Config:
    if base is None:
        return Config.preset("paper")
    if isinstance(base, str):
        return Config.preset(base)
    if isinstance(base, Config):
        return base
    raise ConfigError(
        f"base must be a Config or a preset name ({', '.join(PRESETS)}), got {base!r}"
    )


def plan_sweep(
    grid: str | Mapping | Sequence | Sweep,
    *,
    seeds: int | Sequence[int] | None = None,
    base: Config | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Sweep:
    """Validate and expand a grid into a :class:`Sweep` (nothing runs).

    ``seeds``: a count N (seeds 0..N-1) or a list, applied to every parameter set that does
    not set ``seed`` itself; default: 10 for the paper's knob presets, 1 otherwise.
    ``overrides`` change the base Config for the whole sweep (e.g. ``max_epochs=50``).
    """
    if isinstance(grid, Sweep):
        return grid
    base_cfg = _as_config(base)
    if overrides:
        base_cfg = base_cfg.replace(**dict(overrides))
    fixed: dict[str, Any] = {}
    if isinstance(grid, str):
        preset = grid
        grid, fixed = preset_grid(preset, base_cfg)
        name = name or preset
        default_seeds = KNOBS_SEEDS if preset == "knobs" else PROFILES["paper"].seeds
    else:
        default_seeds = 1
    if seeds is None:
        seeds = default_seeds
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("seeds must be at least 1 (or a non-empty list)")
    sets = expand_grid(grid)
    configs: dict[str, Config] = {}
    for i, params in enumerate(sets):
        unknown = [k for k in params if k not in FIELD_NAMES]
        if unknown:
            raise ConfigError(
                f"grid parameter set {i} {dict(params)}: unknown Config field(s) "
                f"{', '.join(unknown)}; expected any of {', '.join(FIELD_NAMES)}"
            )
        try:
            cfg = base_cfg.replace(**{**fixed, **params})
            for s in [cfg.seed] if "seed" in params else seed_list:
                c = cfg.replace(seed=s)
                check_data_size(c)
                configs.setdefault(c.key(), c)
        except ConfigError as exc:
            raise ConfigError(f"grid parameter set {i} {dict(params)}: {exc}") from None
    cfgs = list(configs.values())
    dicts = [c.to_dict() for c in cfgs]
    varying = tuple(
        n for n in FIELD_NAMES if n != "seed" and len({json.dumps(d[n]) for d in dicts}) > 1
    ) + (("seed",) if len({d["seed"] for d in dicts}) > 1 else ())
    if name is None:
        name = "grid-" + _digest([c.key() for c in cfgs])[:8]
    meta = {
        "grid": grid if isinstance(grid, (dict, list)) else None,
        "fixed": fixed,
        "base": base_cfg.to_dict(),
        "seeds": seed_list,
    }
    return Sweep(name=name, configs=cfgs, base=base_cfg, varying=varying, meta=meta)


def _digest(items: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(items).encode()).hexdigest()


# --- one run (executed in a worker) ----------------------------------------------------


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions recorded with every run (python, awbench, torch, numpy)."""
    from importlib import metadata

    out = {"python_version": platform.python_version()}
    for dist in ("awbench", "torch", "numpy"):
        try:
            out[f"{dist}_version"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[f"{dist}_version"] = ""
    return out


@contextlib.contextmanager
def _one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _worker_init() -> None:
    """Process-pool initializer: one torch thread per worker, no per-run progress bars."""
    os.environ["AWBENCH_QUIET"] = "1"
    import torch

    torch.set_num_threads(1)


def _meta(start: tuple[float, float] | None) -> dict[str, Any]:
    """Timing and provenance columns; ``start`` = (perf_counter, process_time) at the start."""
    wall0, cpu0 = start if start is not None else (time.perf_counter(), time.process_time())
    return {
        "wall_seconds": time.perf_counter() - wall0,
        "cpu_seconds": time.process_time() - cpu0,  # < wall_seconds: the worker had to wait
        **versions(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
    }


def failed_row(
    cfg: Config, reason: str, start: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The runs-table row of a run that raised instead of returning a Result."""
    return {
        "key": cfg.key(),
        "status": FAILED,
        "reason": reason,
        **config_columns(cfg),
        "epochs": 0,
        "train_seconds": math.nan,
        "analyze_seconds": math.nan,
        "cached": False,
        **_meta(start),
    }


def _failure_reason(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _row(
    res: experiment.Result, meta: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    cfg = res.config
    row: dict[str, Any] = {
        "key": cfg.key(),
        "status": res.status,
        "reason": res.reason,
        **config_columns(cfg),
        "epochs": int(res.epochs),
        "train_seconds": float(res.train_seconds),
        "analyze_seconds": float(res.analyze_seconds),
        "cached": bool(getattr(res, "cached", False)),
    }
    for name, value in (res.scalars or {}).items():
        if name in row:  # e.g. the analysed layer, already a Config column
            if row[name] == value:
                continue
            name = f"analysis_{name}"
        row[name] = value
    row.update(meta)
    directions = None
    if res.directions is not None:
        directions = pd.DataFrame(res.directions).reset_index(drop=True)
    return row, directions


def execute(cfg: Config, cache: bool = True) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Run one config (single torch thread) and return its runs row and directions table.

    Never raises for a bad run: an exception becomes a row with status "failed" and the
    exception as its reason.
    """
    return execute_seeds([cfg], cache)[0]


def execute_seeds(
    cfgs: list[Config], cache: bool = True
) -> list[tuple[dict[str, Any], pd.DataFrame | None]]:
    """Run configs that differ only in seed as one stacked model (single torch thread);
    one (runs row, directions) per config. An exception fails every config of the group
    that has no result (seeds already cached keep theirs)."""
    start = (time.perf_counter(), time.process_time())
    try:
        with _one_torch_thread():
            results = experiment.run_experiments(cfgs, cache=cache, show_progress=False)
    except Exception as exc:  # noqa: BLE001 - bad data, analysis failure: record, go on
        reason = _failure_reason(exc)
        return [(failed_row(c, reason, start), None) for c in cfgs]
    # The group trained as one model: each run is charged an equal share of its time, so
    # that summing a store's cpu_seconds gives the CPU the sweep used.
    meta = _meta(start)
    meta["wall_seconds"] /= len(cfgs)
    meta["cpu_seconds"] /= len(cfgs)
    meta["stacked_runs"] = len(cfgs)
    return [_row(res, meta) for res in results]


# --- executors -------------------------------------------------------------------------


class InlineExecutor(Executor):
    """Runs each task at submit time in this process (``workers=1``)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        return fut


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


DASK_MISSING = (
    "Dask executors need dask.distributed, which is not installed. "
    "Install it with: pip install 'awbench[dask]'"
)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(DASK_MISSING) from None
    return distributed


@contextlib.contextmanager
def open_executor(
    workers: int | None = None,
    scheduler: str | None = None,
    dask_local: int | None = None,
    n_tasks: int | None = None,
    initializer=_worker_init,
) -> Iterator[tuple[Executor, int, str]]:
    """Yield ``(executor, window, description)``; window = tasks kept in flight.

    ``workers=1`` (or a single task) runs inline in this process; more start a process pool
    of spawned workers (safe with torch's thread pools and in Jupyter), each calling
    ``initializer`` first (default: one torch thread, no progress bars).
    """
    if scheduler and dask_local:
        raise ValueError("give either scheduler (an existing Dask cluster) or dask_local, not both")
    if scheduler or dask_local:
        distributed = _import_distributed()
        cluster = None
        if dask_local:
            cluster = distributed.LocalCluster(
                n_workers=int(dask_local),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
            client = distributed.Client(cluster)
            what = f"Dask LocalCluster ({dask_local} workers)"
        else:
            client = distributed.Client(scheduler, timeout=30)
            what = f"Dask scheduler {scheduler}"
        try:
            threads = sum(client.nthreads().values()) or 1
            yield client.get_executor(pure=False), 2 * threads, f"{what}, {threads} threads"
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if n_tasks is not None:
        workers = max(1, min(workers, n_tasks))
    if workers == 1:
        yield InlineExecutor(), 1, "in-process (1 worker)"
        return
    import multiprocessing

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=initializer,
    )
    try:
        yield pool, 2 * workers, f"process pool ({workers} workers)"
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)


def run_tasks(
    executor: Executor, calls: Iterable[tuple[Any, Any, tuple]], window: int
) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Submit ``fn(*args)`` for each ``(tag, fn, args)``, keeping ``window`` in flight.

    Yields ``(tag, result, None)`` or ``(tag, None, exception)`` in completion order. The one
    code path for every executor: inline, process pool, Dask (``Client.get_executor``).
    A broken process pool is raised, not reported per task.
    """
    todo = iter(calls)
    in_flight: dict[Future, Any] = {}

    def fill() -> None:
        while len(in_flight) < window:
            call = next(todo, _END)
            if call is _END:
                return
            tag, fn, args = call
            in_flight[executor.submit(fn, *args)] = tag

    try:
        fill()
        while in_flight:
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for fut in done:
                tag = in_flight.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise
                except Exception as exc:  # noqa: BLE001 - the task raised, or the executor lost it
                    yield tag, None, exc
                else:
                    yield tag, result, None
            fill()
    finally:
        for fut in in_flight:
            fut.cancel()


_END = object()


# --- the sweep -------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What one ``run_sweep`` call did."""

    name: str
    store: Path
    planned: int
    skipped: int  # already in the store
    ran: int
    done: int  # converged or max_epochs, in the store now (planned runs only)
    failed: int  # diverged or failed, in the store now (planned runs only)
    seconds: float
    executor: str
    keys: list[str] = field(default_factory=list, repr=False)

    @property
    def pending(self) -> int:
        return self.planned - self.done - self.failed

    @property
    def runs_per_minute(self) -> float:
        return 60.0 * self.ran / self.seconds if self.seconds > 0 else float("nan")

    def load(self):
        """``(runs, directions)`` of this sweep's runs from the store."""
        return Store(self.store).load(self.keys)

    def summary(self) -> str:
        return (
            f"sweep {self.name}: {self.planned} runs planned, {self.skipped} already in the store, "
            f"{self.ran} ran in {self.seconds:.1f}s ({self.runs_per_minute:.1f} runs/min) on "
            f"{self.executor}; done {self.done}, failed {self.failed}, pending {self.pending} "
            f"-> {self.store}"
        )


def run_sweep(
    grid: str | Mapping | Sequence | Sweep,
    store: str | os.PathLike | Store,
    *,
    seeds: int | Sequence[int] | None = None,
    base: Config | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    dask_local: int | None = None,
    cache: bool = True,
    retry_failed: bool = False,
    show_progress: bool | None = None,
    quiet: bool = False,
    stack_seeds: bool = True,
) -> SweepReport:
    """Run every Config of ``grid`` not yet in ``store``; return a :class:`SweepReport`.

    ``grid``: a sweep preset name (see :data:`awbench.experiments.grids.SWEEP_PRESETS`), a dict of lists, a list of
    dicts, or a planned :class:`Sweep`. ``workers``: processes (default one per core; 1 runs
    in this process). ``scheduler`` / ``dask_local``: run on Dask instead. ``retry_failed``
    reruns runs stored with status "failed" (exceptions; divergence is a result and is kept).
    ``quiet`` silences the progress bar and log lines. ``stack_seeds`` trains the seeds of
    one setting together as one stacked model (the default; False trains every run alone, for
    benchmarks).
    """
    sweep = plan_sweep(grid, seeds=seeds, base=base, overrides=overrides, name=name)
    if scheduler or dask_local:
        _import_distributed()  # say how to install Dask before touching the store
    st = store if isinstance(store, Store) else Store(store)
    st.write_plan(
        sweep.name, sweep.configs, {"varying": list(sweep.varying), **_jsonable(sweep.meta)}
    )
    statuses = st.statuses()
    todo = [
        c
        for c in sweep.configs
        if c.key() not in statuses or (retry_failed and statuses[c.key()] == FAILED)
    ]
    skipped = len(sweep) - len(todo)
    log = (lambda *a: None) if quiet else (lambda msg: print(msg, flush=True))
    bar_on = False if quiet else (interactive() if show_progress is None else show_progress)
    start = time.perf_counter()
    ran = 0
    what = "nothing to run"
    if todo:
        groups = experiment.seed_groups(todo) if stack_seeds else [[c] for c in todo]
        n_groups = len(groups)
        with open_executor(workers, scheduler, dask_local, n_tasks=n_groups) as (ex, window, what):
            log(
                f"sweep {sweep.name}: {len(todo)} of {len(sweep)} runs to do on {what} -> {st.path}"
            )
            completed = _complete(st, ex, window, groups, cache)
            bar = progress(completed, total=len(todo), desc=f"sweep {sweep.name}", enabled=bar_on)
            n_failed = 0
            try:
                for i, (cfg, row) in enumerate(bar, 1):
                    ran += 1
                    n_failed += row["status"] in FAILED_STATUSES
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(failed=n_failed, refresh=False)
                    elif not bar_on:
                        extra = "" if row["status"] in DONE_STATUSES else f": {row['reason']}"
                        log(
                            f"[{i}/{len(todo)}] {row['status']:<10} {sweep.label(cfg) or cfg.key()} "
                            f"{row['wall_seconds']:.1f}s{extra}"
                        )
            finally:
                if hasattr(bar, "close"):
                    bar.close()
    seconds = time.perf_counter() - start
    statuses = st.statuses()
    keys = sweep.config_keys()
    report = SweepReport(
        name=sweep.name,
        store=st.path,
        planned=len(sweep),
        skipped=skipped,
        ran=ran,
        done=sum(statuses.get(k) in DONE_STATUSES for k in keys),
        failed=sum(statuses.get(k) in FAILED_STATUSES for k in keys),
        seconds=seconds,
        executor=what,
        keys=keys,
    )
    log(report.summary())
    return report


def _complete(st: Store, ex: Executor, window: int, groups: list[list[Config]], cache: bool):
    """Yield ``(cfg, row)`` as runs finish, each written to the store first. Each group (the
    seeds of one setting) is one task: one stacked model."""
    try:
        calls = [(group, execute_seeds, (group, cache)) for group in groups]
        for group, result, error in run_tasks(ex, calls, window):
            if error is not None:  # the worker or the scheduler lost this task
                reason = f"{type(error).__name__}: {error}"
                result = [(failed_row(c, reason), None) for c in group]
            for cfg, (row, directions) in zip(group, result):
                st.write(row, directions)
                yield cfg, row
    except BrokenProcessPool as exc:
        raise RuntimeError(
            f"a worker process died ({exc}); the runs already finished are in {st.path}: "
            "rerun the same sweep to resume"
        ) from exc


def _jsonable(obj: Any) -> Any:
    return json.loads(
        json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
    )


# --- papermill reruns ------------------------------------------------------------------

KERNEL_NAME = "python3"
_RESERVED = (
    "key",
    "name",
    "path",
    "notebook",
    "status",
    "duration",
    "error",
    "finished_at",
    "parameters",
)


@dataclass
class ParameterSet:
    params: dict[str, Any]  # what is injected (Config fields in canonical form)
    key: str
    label: str

    @property
    def filename(self) -> str:
        return f"{self.key}_{self.label}.ipynb" if self.label else f"{self.key}.ipynb"

    def temporary(self, out: Path) -> Path:
        """Where papermill writes while executing (hidden; renamed to ``filename`` after)."""
        return out / f".{Path(self.filename).stem}.{os.getpid()}.tmp.ipynb"


def _notebook_defaults(notebook: Path) -> dict[str, Any]:
    """Literal defaults of the notebook's ``parameters`` cell ({} when it has none)."""
    import ast

    import papermill as pm

    out: dict[str, Any] = {}
    for name, info in pm.inspect_notebook(str(notebook)).items():
        try:
            out[name] = ast.literal_eval(info.get("default", ""))
        except (ValueError, SyntaxError):
            out[name] = None
    return out


def plan_notebook_runs(notebook: str | os.PathLike, grid: Any) -> list[ParameterSet]:
    """Validate every parameter set of ``grid`` for ``notebook`` (no kernel starts).

    Config fields go through Config (a bad value raises ConfigError naming the field);
    other names (``profile``, ...) pass through but must be parameters of the notebook when
    it declares a ``parameters`` cell.
    """
    notebook = Path(notebook)
    if not notebook.exists():
        raise FileNotFoundError(f"notebook {notebook} does not exist")
    if isinstance(grid, (str, os.PathLike)):
        grid = load_grid(grid)
    sets = expand_grid(grid)
    if not sets:
        raise ConfigError("the grid has no parameter sets")
    defaults = _notebook_defaults(notebook)
    planned: list[ParameterSet] = []
    canonical_sets = []
    for i, params in enumerate(sets):
        unknown = [k for k in params if defaults and k not in defaults]
        if unknown:
            raise ConfigError(
                f"parameter set {i} {dict(params)}: {', '.join(unknown)} "
                f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
                f"{notebook.name}; its parameters are {', '.join(defaults)}"
            )
        profile = params.get("profile", defaults.get("profile"))
        base = (
            Config.preset(profile) if isinstance(profile, str) and profile in PRESETS else Config()
        )
        notebook_cfg = {k: v for k, v in defaults.items() if k in FIELD_NAMES and v is not None}
        try:
            try:
                base = base.replace(**notebook_cfg)
            except ConfigError:
                pass  # the notebook's own defaults are its business
            cfg = base.replace(**{k: v for k, v in params.items() if k in FIELD_NAMES})
        except ConfigError as exc:
            raise ConfigError(f"parameter set {i} {dict(params)}: {exc}") from None
        canonical = {k: (cfg.to_dict()[k] if k in FIELD_NAMES else v) for k, v in params.items()}
        extras = {k: v for k, v in canonical.items() if k not in FIELD_NAMES}
        key = (
            cfg.key()
            if not extras
            else _digest([cfg.key(), json.dumps(extras, sort_keys=True, default=str)])[:16]
        )
        canonical_sets.append((canonical, key))
    names = list(dict.fromkeys(k for s, _ in canonical_sets for k in s))
    varying = [
        n
        for n in names
        if len({json.dumps(s.get(n), sort_keys=True, default=str) for s, _ in canonical_sets}) > 1
    ]
    seen: set[str] = set()
    for canonical, key in canonical_sets:
        if key in seen:
            continue
        seen.add(key)
        planned.append(
            ParameterSet(canonical, key, describe(canonical, varying or list(canonical)))
        )
    return planned


@contextlib.contextmanager
def _environ(**values: str):
    """Set environment variables (inherited by kernels and worker processes), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _papermill_call(notebook: Path, tmp: Path, params: dict[str, Any], kernel_name: str):
    """The picklable call that executes one notebook (the worker imports only papermill)."""
    import papermill as pm

    return functools.partial(
        pm.execute_notebook,
        str(notebook),
        str(tmp),
        parameters=params,
        kernel_name=kernel_name,
        progress_bar=False,
        log_output=False,
        cwd=str(notebook.parent),
    )


def _first_error(nb: dict) -> str:
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return (
                    f"{out.get('ename')}: {out.get('evalue')} (cell {cell.get('execution_count')})"
                )
    return ""


def _finish_notebook(tmp: Path, output: Path, error: BaseException | None) -> dict[str, Any]:
    """Move the executed notebook into place and read its status, duration and records."""
    from awbench.experiments.records import read_records

    status, message, duration, records = "ok", "", math.nan, {}
    if error is not None:
        status, message = "failed", f"{type(error).__name__}: {error}"
    if tmp.exists():
        os.replace(tmp, output)
        with open(output, encoding="utf-8") as f:
            nb = json.load(f)
        duration = float(nb.get("metadata", {}).get("papermill", {}).get("duration") or math.nan)
        records = read_records(nb)
        if error is not None:
            message = _first_error(nb) or message
    elif error is None:
        status, message = "failed", "papermill wrote no output notebook"
    return {"status": status, "duration": duration, "error": message, "records": records}


def _read_index(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pd.read_parquet(path)


def _write_index(rows: list[dict[str, Any]], path: Path) -> pd.DataFrame:
    import pyarrow as pa

    from awbench.experiments.store import _atomic_write_table

    frame = pd.DataFrame(rows)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        for col in frame.columns:  # columns mixing types: fall back to text
            if frame[col].dtype == object:
                frame[col] = frame[col].map(
                    lambda v: v if v is None or isinstance(v, str) else json.dumps(v, default=str)
                )
        table = pa.Table.from_pandas(frame, preserve_index=False)
    _atomic_write_table(table, path)
    return frame


def _index_row(ps: ParameterSet, notebook: Path, result: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": ps.key,
        "name": ps.label,
        "path": ps.filename,
        "notebook": str(notebook),
        "status": result["status"],
        "duration": result["duration"],
        "error": result["error"],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": json.dumps(ps.params, sort_keys=True, default=str),
    }
    for k, v in ps.params.items():
        col = f"param.{k}" if k in _RESERVED else k
        row[col] = json.dumps(v) if isinstance(v, (list, dict)) else v
    for k, v in result["records"].items():
        if v is None or isinstance(v, (bool, int, float, str)):
            row[f"record.{k}"] = v
    return row


def run_notebooks(
    notebook: str | os.PathLike,
    grid: Any,
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    retry_failed: bool = False,
    kernel_name: str = KERNEL_NAME,
    show_progress: bool | None = None,
    quiet: bool = False,
) -> pd.DataFrame:
    """Execute ``notebook`` once per parameter set of ``grid`` into folder ``out``.

    Every parameter set is validated first (no kernel starts if one is bad). Each executed
    notebook is ``out/<key>_<label>.ipynb`` (e.g. ``3f2a..._bs=100_wd=0.01.ipynb``);
    ``out/index.parquet`` (key, name, path, notebook, status, duration, error, finished_at,
    parameters, one column per parameter, ``record.NAME`` per scalar record) is rewritten
    atomically after each notebook. Rerunning skips parameter sets already in the index
    (failed ones too, unless ``retry_failed``). Kernels get ``AWBENCH_QUIET=1``.
    Returns the index of this grid's parameter sets.
    """
    notebook = Path(notebook).resolve()
    planned = plan_notebook_runs(notebook, grid)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.parquet"
    previous = _read_index(index_path)
    rows: dict[str, dict] = {}
    if previous is not None and len(previous):
        others = set(previous["notebook"]) - {str(notebook)}
        if others:
            raise ValueError(
                f"{out} already holds runs of another notebook ({', '.join(sorted(others))}): "
                "use one output folder per notebook"
            )
        rows = {r["key"]: r for r in previous.to_dict("records")}

    def finished(ps: ParameterSet) -> bool:
        r = rows.get(ps.key)
        if r is None or not (out / r["path"]).exists():
            return False
        return r["status"] == "ok" or not retry_failed

    todo = [ps for ps in planned if not finished(ps)]
    log = (lambda *a: None) if quiet else (lambda msg: print(msg, flush=True))
    bar_on = False if quiet else (interactive() if show_progress is None else show_progress)
    if todo:
        n_workers = default_workers() if workers is None else workers
        parallel = min(n_workers, len(todo)) > 1
        env = {"AWBENCH_QUIET": "1"}
        if parallel:  # one BLAS/torch thread per kernel when several run at once
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with (
            _environ(**env),
            open_executor(workers, n_tasks=len(todo), initializer=None) as (ex, window, what),
        ):
            window = max(1, window // 2)  # one notebook per worker: no queue to wait in
            log(
                f"{notebook.name}: {len(todo)} of {len(planned)} parameter sets to run on {what} -> {out}"
            )
            calls = []
            for ps in todo:
                call = _papermill_call(notebook, ps.temporary(out), ps.params, kernel_name)
                calls.append((ps, call, ()))
            bar = progress(
                run_tasks(ex, calls, window), total=len(todo), desc=notebook.stem, enabled=bar_on
            )
            try:
                for i, (ps, _, error) in enumerate(bar, 1):
                    result = _finish_notebook(ps.temporary(out), out / ps.filename, error)
                    rows[ps.key] = _index_row(ps, notebook, result)
                    _write_index(list(rows.values()), index_path)
                    if not bar_on:
                        extra = f": {result['error']}" if result["error"] else ""
                        log(
                            f"[{i}/{len(todo)}] {result['status']:<6} {ps.filename} "
                            f"{result['duration']:.1f}s{extra}"
                        )
            finally:
                if hasattr(bar, "close"):
                    bar.close()
    index = _read_index(index_path)
    wanted = [ps.key for ps in planned]
    index = index.set_index("key").loc[wanted].reset_index()
    n_failed = int((index["status"] != "ok").sum())
    log(
        f"{notebook.name}: {len(planned)} parameter sets, {len(todo)} ran, "
        f"{len(planned) - n_failed} ok, {n_failed} failed -> {index_path}"
    )
    return index
