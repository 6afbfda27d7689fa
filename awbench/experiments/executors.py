"""Executors behind sweeps and notebook reruns, sharing one concurrent.futures code path.

In-process (``workers=1``), a process pool (default: one worker per core, one torch thread
each), or Dask distributed (``scheduler=`` address of a running cluster, or ``dask_local=N``
for a LocalCluster). :func:`run_tasks` keeps a window of tasks in flight on any of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any


def _worker_init() -> None:
    """Process-pool initializer: one torch thread per worker, no per-run progress bars."""
    os.environ["AWBENCH_QUIET"] = "1"
    import torch

    torch.set_num_threads(1)


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


def import_distributed():
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
        distributed = import_distributed()
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
