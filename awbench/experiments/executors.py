"""Executors behind sweeps and notebook reruns, sharing one concurrent.futures code path.

In-process (``workers=1``), a process pool (default: one worker per core, one torch thread
each), or Dask distributed (``scheduler=`` address of a running cluster, or ``dask_local=N``
for a LocalCluster). :func:`run_tasks` keeps a window of tasks in flight on any of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from typing import Any

PARENT_POLL_SECONDS = 0.5
"""How often a pool worker checks that the process that started it is still there."""


def _worker_init() -> None:
    """Process-pool initializer: one torch thread per worker, no per-run progress bars."""
    os.environ["AWBENCH_QUIET"] = "1"
    import torch

    torch.set_num_threads(1)


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker as soon as its parent is gone (killed, or exited without cleaning
    up): an orphaned worker would otherwise finish its task and wait for work forever."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(PARENT_POLL_SECONDS)


def _worker_start(parent_pid: int, initializer=None, *initargs) -> None:
    """Every pool worker runs this first: a parent watchdog, then ``initializer``."""
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="awbench-parent-watch", daemon=True
    ).start()
    if initializer is not None:
        initializer(*initargs)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, batch schedulers), raised like Ctrl-C so that the same
    cleanup runs: pool workers are stopped, finished runs stay in the store."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``).

    Only in the main thread, and only where SIGTERM still has its default action (a handler
    someone else installed is left alone).
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def terminate(signum, frame):
        raise Terminated(f"terminated by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class WorkerDied(RuntimeError):
    """A task whose worker process died while it ran alone: the task killed it."""


def _death(exitcodes: list[int | None]) -> str:
    """How pool workers ended, in words (``-9`` = killed by SIGKILL, often out of memory)."""
    words = []
    for code in exitcodes:
        if code is None:
            continue
        if code < 0:
            try:
                words.append(f"killed by {signal.Signals(-code).name}")
            except ValueError:
                words.append(f"killed by signal {-code}")
        else:
            words.append(f"exit code {code}")
    return ", ".join(dict.fromkeys(words)) or "cause unknown"


class RestartingProcessPool(Executor):
    """A spawn process pool that :func:`run_tasks` restarts when a worker dies, and whose
    workers exit when this process dies (SIGKILL) and are killed when it is interrupted."""

    def __init__(self, workers: int, initializer=_worker_init) -> None:
        self.workers = workers
        self._initializer = initializer
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        import multiprocessing

        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(os.getpid(), self._initializer),
        )

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._pool.submit(fn, *args, **kwargs)

    def _processes(self) -> list:
        return list((getattr(self._pool, "_processes", None) or {}).values())

    def restart(self) -> str:
        """Replace a broken pool by a fresh one; return how its workers ended."""
        procs = self._processes()
        self.kill_workers()
        self._pool.shutdown(wait=True, cancel_futures=True)
        codes = [p.exitcode for p in procs]
        # terminate_broken ends the survivors with SIGTERM: name the others when there are.
        dead = [c for c in codes if c != -signal.SIGTERM] or codes
        self._pool = self._start()
        return _death(dead)

    def kill_workers(self) -> None:
        for proc in self._processes():
            with contextlib.suppress(Exception):
                if proc.is_alive():
                    proc.kill()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


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
    pool = RestartingProcessPool(workers, initializer)
    try:
        yield pool, 2 * workers, f"process pool ({workers} workers)"
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM through sigterm_as_interrupt) or failed: stop the
        # workers now rather than let them finish runs nobody will store.
        # No cancelling: the killed workers fail every pending future (BrokenProcessPool),
        # and Python 3.11's pool thread raises InvalidStateError when one of them was
        # cancelled first. wait=True returns once that thread has seen the workers die.
        pool.kill_workers()
        pool.shutdown(wait=True)
        raise
    else:
        pool.shutdown(wait=True)


def run_tasks(
    executor: Executor, calls: Iterable[tuple[Any, Any, tuple]], window: int
) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Submit ``fn(*args)`` for each ``(tag, fn, args)``, keeping ``window`` in flight.

    Yields ``(tag, result, None)`` or ``(tag, None, exception)`` in completion order. The one
    code path for every executor: inline, process pool, Dask (``Client.get_executor``).

    A worker that dies (out of memory, a crash) breaks a process pool and every task in it.
    With a :class:`RestartingProcessPool` the pool is restarted and the tasks that were in it
    are run again, each alone first: one that kills its worker on its own is reported with a
    :class:`WorkerDied` exception, the rest go on. Any other broken process pool is raised.
    """
    todo = iter(calls)
    in_flight: dict[Future, tuple[Any, Any, tuple]] = {}
    suspects: deque[tuple[Any, Any, tuple]] = deque()
    alone: list[Future] = []  # the one future of a suspect running on its own
    restart = getattr(executor, "restart", None)

    def submit(call) -> Future:
        _, fn, args = call
        fut = executor.submit(fn, *args)
        in_flight[fut] = call
        return fut

    def fill() -> None:
        if alone:  # a suspect runs alone, so that a death can be pinned on it
            return
        if suspects:
            if not in_flight:
                alone.append(submit(suspects.popleft()))
            return
        while len(in_flight) < window:
            call = next(todo, _END)
            if call is _END:
                return
            submit(call)

    try:
        fill()
        while in_flight:
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            broken: list[tuple[Future, tuple[Any, Any, tuple]]] = []
            for fut in done:
                exc = _exception(fut)
                if isinstance(exc, BrokenProcessPool):
                    if restart is None:
                        raise exc
                    wait(list(in_flight))  # the pool fails every task it still held
                    done = set(in_flight)
                    break
            for fut in done:
                call = in_flight.pop(fut)
                exc = _exception(fut)
                if isinstance(exc, BrokenProcessPool):
                    broken.append((fut, call))
                elif exc is not None:  # the task raised, or the executor lost it
                    yield call[0], None, exc
                else:
                    yield call[0], fut.result(), None
            if broken:
                how = restart()
                if len(broken) == 1 and broken[0][0] in alone:
                    yield (
                        broken[0][1][0],
                        None,
                        WorkerDied(
                            f"the worker process died ({how}) running this task alone: "
                            "out of memory or a crash"
                        ),
                    )
                else:
                    suspects.extend(call for _, call in broken)
            if alone and alone[0] not in in_flight:
                alone.clear()
            fill()
    finally:
        if not isinstance(executor, RestartingProcessPool):  # see open_executor: it kills them
            for fut in in_flight:
                fut.cancel()


def _exception(fut: Future) -> BaseException | None:
    try:
        return fut.exception()
    except CancelledError as exc:  # reported like any task that raised
        return exc


_END = object()
