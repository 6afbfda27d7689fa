"""Sweeps: grids of Configs run through ``run_experiment`` into a result store, resumably.

    report = aw.run_sweep("batch_size", store="results/bs", seeds=10, workers=2)
    report = aw.run_sweep({"lr": [0.01, 0.1], "dropout": [0, 0.1]}, "results/x", seeds=3)
    runs, directions = aw.load_store("results/bs")      # or report.load()

The grid is planned by :func:`awbench.experiments.planning.plan_sweep` (every Config
validated before anything runs) and run on an executor of ``awbench.experiments.executors``:
in-process, a process pool or Dask. Workers only compute and return rows; this process
writes the store, so a remote cluster needs no shared disk.

The store makes sweeps resumable: runs already in it are skipped, a run interrupted before
its row was written is simply run again. Divergence and exceptions are recorded (status
"diverged" / "failed" with the reason) and the sweep goes on; so is a run whose worker
process dies (out of memory, a crash) when it runs alone, and the runs that shared the pool
with it are run again. Two sweeps into one store never compute the same run at once: each
run is locked (``<store>/.locks/<key>.lock``) while it is computed, and the other sweep
waits for it and then takes its row from the store.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import platform
import socket
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from awbench.config import NUMERICS_VERSION, Config
from awbench.experiments import experiment
from awbench.experiments.executors import import_distributed, open_executor, run_tasks
from awbench.experiments.planning import Sweep, plan_sweep
from awbench.experiments.store import Store, config_columns
from awbench.progress import interactive, progress
from awbench.status import DONE_STATUSES, FAILED, FAILED_STATUSES, STATUSES

LOG = logging.getLogger(__name__)

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


def _meta(start: tuple[float, float] | None) -> dict[str, Any]:
    """Timing and provenance columns; ``start`` = (perf_counter, process_time) at the start."""
    wall0, cpu0 = start if start is not None else (time.perf_counter(), time.process_time())
    return {
        "wall_seconds": time.perf_counter() - wall0,
        "cpu_seconds": time.process_time() - cpu0,  # < wall_seconds: the worker had to wait
        "numerics_version": NUMERICS_VERSION,  # the code's numbers (a cache hit: the same)
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
    by_status: dict[str, int] = field(default_factory=dict)  # planned runs in the store now

    @property
    def errors(self) -> int:
        """Planned runs stored with status "failed" (an exception or a dead worker, not a
        diverged run, which is a result)."""
        return self.by_status.get(FAILED, 0)

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
            f"({', '.join(f'{s} {n}' for s, n in self.by_status.items())}) -> {self.store}"
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
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if scheduler or dask_local:
        import_distributed()  # say how to install Dask before touching the store
    st = store if isinstance(store, Store) else Store(store)
    st.write_plan(
        sweep.name, sweep.configs, {"varying": list(sweep.varying), **_jsonable(sweep.meta)}
    )
    locks = _RunLocks(st, sweep.config_keys())  # before _todo: see who writes after it
    todo = _todo(sweep, st, retry_failed)
    log = (lambda *a: None) if quiet else LOG.info
    bar_on = False if quiet else (interactive() if show_progress is None else show_progress)
    start = time.perf_counter()
    ran, what = 0, "nothing to run"
    if todo:
        groups = experiment.seed_groups(todo) if stack_seeds else [[c] for c in todo]
        n_groups = len(groups)
        with open_executor(workers, scheduler, dask_local, n_tasks=n_groups) as (ex, window, what):
            log(
                f"sweep {sweep.name}: {len(todo)} of {len(sweep)} runs to do on {what} -> {st.path}"
            )
            completed = _complete(st, ex, window, groups, cache, locks, log)
            ran = _follow(sweep, completed, len(todo), log, bar_on)
    report = _report(sweep, st, len(sweep) - len(todo), ran, time.perf_counter() - start, what)
    log(report.summary())
    return report


def _todo(sweep: Sweep, st: Store, retry_failed: bool) -> list[Config]:
    """The configs of ``sweep`` not yet in the store (and the failed ones, to retry them)."""
    statuses = st.statuses()
    return [
        c
        for c in sweep.configs
        if c.key() not in statuses or (retry_failed and statuses[c.key()] == FAILED)
    ]


def _follow(sweep: Sweep, completed, n_todo: int, log, bar_on: bool) -> int:
    """Drain ``completed`` behind a progress bar (or a log line per run); return runs done."""
    bar = progress(completed, total=n_todo, desc=f"sweep {sweep.name}", enabled=bar_on)
    ran = n_failed = 0
    try:
        for i, (cfg, row) in enumerate(bar, 1):
            ran += 1
            n_failed += row["status"] in FAILED_STATUSES
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(failed=n_failed, refresh=False)
            elif not bar_on:
                extra = "" if row["status"] in DONE_STATUSES else f": {row['reason']}"
                log(
                    f"[{i}/{n_todo}] {row['status']:<10} {sweep.label(cfg) or cfg.key()} "
                    f"{row['wall_seconds']:.1f}s{extra}"
                )
    finally:
        if hasattr(bar, "close"):
            bar.close()
    return ran


def _report(
    sweep: Sweep, st: Store, skipped: int, ran: int, seconds: float, what: str
) -> SweepReport:
    """The :class:`SweepReport` of a sweep, counting the store's statuses of its runs now."""
    statuses = st.statuses()
    keys = sweep.config_keys()
    return SweepReport(
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
        by_status={s: sum(statuses.get(k) == s for k in keys) for s in STATUSES},
    )


class _RunLocks:
    """A lock per run key (``<store>/.locks/<key>.lock``), held by the sweep that computes the
    run until its row is in the store. ``stamps``: each run's stored part as it was before
    the sweep looked at the store; a part that changed since was written by another sweep."""

    def __init__(self, st: Store, keys: list[str]) -> None:
        self.st = st
        self.folder = st.path / ".locks"
        self.stamps = {k: self._stamp(k) for k in keys}
        self.held: dict[str, Any] = {}
        self.taken = 0  # runs another sweep stored meanwhile

    def _stamp(self, key: str) -> tuple[int, int, int] | None:
        try:
            s = (self.st.runs_dir / f"{key}.parquet").stat()
        except FileNotFoundError:
            return None
        return (s.st_mtime_ns, s.st_size, s.st_ino)

    def claim(self, group: list[Config]) -> tuple[list[Config], list[Config]]:
        """``(mine, busy)``: the runs of ``group`` now locked for this sweep, and those
        another sweep is computing. Runs another sweep stored meanwhile are in neither."""
        from filelock import FileLock, Timeout

        self.folder.mkdir(parents=True, exist_ok=True)
        mine, busy = [], []
        for cfg in group:
            key = cfg.key()
            lock = FileLock(str(self.folder / f"{key}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                busy.append(cfg)
                continue
            self.held[key] = lock
            if self._stamp(key) != self.stamps.get(key):
                self.release(key, stored=True)
                self.taken += 1
            else:
                mine.append(cfg)
        return mine, busy

    def release(self, key: str, stored: bool = True) -> None:
        """Unlock ``key``; once its row is stored, the lock file is removed first (a sweep
        that locks it later finds the row, whichever file it locked)."""
        lock = self.held.pop(key, None)
        if lock is None:
            return
        if stored:
            with contextlib.suppress(OSError):
                (self.folder / f"{key}.lock").unlink()
        lock.release()

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key, stored=False)


def _claimed(locks: _RunLocks, groups: list[list[Config]], busy: list[list[Config]]):
    """The part of each group this sweep could lock; the rest is appended to ``busy``."""
    for group in groups:
        mine, theirs = locks.claim(group)
        if theirs:
            busy.append(theirs)
        if mine:
            yield mine


def _complete(
    st: Store,
    ex: Executor,
    window: int,
    groups: list[list[Config]],
    cache: bool,
    locks: _RunLocks,
    log=lambda msg: None,
):
    """Yield ``(cfg, row)`` as runs finish, each written to the store first. Each group (the
    seeds of one setting) is one task: one stacked model. Runs another sweep is computing
    are left to it and waited for; if it stops without storing them, they run here."""
    waiting, said = groups, False
    try:
        while waiting:
            busy: list[list[Config]] = []
            calls = ((g, execute_seeds, (g, cache)) for g in _claimed(locks, waiting, busy))
            ran = False
            for group, result, error in run_tasks(ex, calls, window):
                ran = True
                if error is not None:  # the worker or the scheduler lost this task
                    reason = f"{type(error).__name__}: {error}"
                    result = [(failed_row(c, reason), None) for c in group]
                for cfg, (row, directions) in zip(group, result):
                    st.write(row, directions)
                    locks.release(cfg.key())
                    yield cfg, row
            waiting = busy
            if waiting and not ran:
                if not said:
                    n = sum(map(len, waiting))
                    log(f"waiting for {n} runs that another sweep is computing")
                    said = True
                time.sleep(0.5)
    except BrokenProcessPool as exc:
        raise RuntimeError(
            f"a worker process died ({exc}); the runs already finished are in {st.path}: "
            "rerun the same sweep to resume"
        ) from exc
    finally:
        locks.release_all()
        if locks.taken:
            log(f"{locks.taken} runs were stored by another sweep meanwhile")


def _jsonable(obj: Any) -> Any:
    return json.loads(
        json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
    )
