"""Notebook reruns: a notebook executed under papermill once per parameter set, resumably.

Every parameter set is validated up front (Config fields through Config), the notebooks run
on the executors of ``awbench.experiments.executors``, and parameter sets already in the
output folder's ``index.parquet`` are skipped. The numbers a notebook ``record``-ed come back
through ``awbench.experiments.records.read_records`` and that index.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from awbench.config import FIELD_NAMES, PRESETS, Config, ConfigError
from awbench.experiments.executors import default_workers, open_executor, run_tasks
from awbench.experiments.planning import (
    check_regular_file,
    describe,
    digest,
    expand_grid,
    load_grid,
)
from awbench.progress import interactive, progress

LOG = logging.getLogger(__name__)

KERNEL_NAME = "python3"
# Seconds one cell may run before papermill stops the notebook (it is then recorded as
# failed): a hung kernel must not block a run forever. None or 0: no limit.
CELL_TIMEOUT = 4 * 3600
# How long a writer may wait for the lock of ``index.parquet`` (others hold it for a read
# and a rewrite of the index, well under a second).
INDEX_LOCK_TIMEOUT = 600.0
# A notebook larger than this is refused before papermill reads it (outputs included).
MAX_NOTEBOOK_BYTES = 200_000_000
# A label longer than this is shortened in file names to a readable prefix and a hash.
MAX_LABEL_CHARS = 80
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
        label = self.label
        if len(label) > MAX_LABEL_CHARS:  # a readable prefix and a hash of the whole label
            label = f"{label[: MAX_LABEL_CHARS - 13]}~{digest([label])[:12]}"
        return f"{self.key}_{label}.ipynb" if label else f"{self.key}.ipynb"

    def temporary(self, out: Path, pid: int | None = None) -> Path:
        """Where papermill writes while executing (hidden; renamed to ``filename`` after),
        named after this host and process (``pid``, default this one) so that the
        temporaries of a dead process are known at once."""
        owner = f"{_HOST}-{os.getpid() if pid is None else pid}"
        return out / f".{Path(self.filename).stem}.{owner}.tmp.ipynb"


_HOST = digest([socket.gethostname()])[:8]  # temporaries of this host carry it


def _notebook_parameters(notebook: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Literal defaults of the notebook's ``parameters`` cell ({} when it has none) and the
    type each declares: its annotation (``name: int = 0  # help``), else its literal's."""
    import ast

    import papermill as pm

    defaults: dict[str, Any] = {}
    types: dict[str, str] = {}
    for name, info in pm.inspect_notebook(str(notebook)).items():
        try:
            defaults[name] = ast.literal_eval(info.get("default", ""))
        except (ValueError, SyntaxError):
            defaults[name] = None
        declared = str(info.get("inferred_type_name") or "None")
        if declared == "None" and defaults[name] is not None:
            declared = type(defaults[name]).__name__
        types[name] = declared
    return defaults, types


def _typed(name: str, value: Any, declared: str) -> Any:
    """``value`` for the parameter ``name`` declared ``declared`` (``int``, ``float | None``,
    ``Optional[str]``, ``list[int]``, ...): as is, a numeric text as its number, or a
    ConfigError naming the parameter, the value and the type. Other types pass."""
    text = declared.replace(" ", "")
    optional = text.startswith("Optional[") or "|None" in text or "None|" in text
    base = text.removeprefix("Optional[").replace("|None", "").replace("None|", "")
    base = base.split("[")[0].rstrip("]").lower()
    if value is None and optional:
        return value
    if base == "int" and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = int(value.strip())
    if base == "float" and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value.strip())
    fits = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "dict": lambda v: isinstance(v, dict),
    }.get(base)
    if fits is None or fits(value):
        return float(value) if base == "float" else value
    raise ConfigError(f"{name}={value!r} is not allowed: the notebook declares {name}: {declared}")


def plan_notebook_runs(notebook: str | os.PathLike, grid: Any) -> list[ParameterSet]:
    """Validate every parameter set of ``grid`` for ``notebook`` (no kernel starts).

    Config fields go through Config (a bad value raises ConfigError naming the field);
    other names (``profile``, ...) must be parameters of the notebook when it declares a
    ``parameters`` cell, and fit the type it declares there (``name: int = 0  # help``, or
    its default's literal type): ``"abc"`` for an ``int`` is a ConfigError naming it.
    """
    notebook = check_regular_file(notebook, "notebook", MAX_NOTEBOOK_BYTES)
    if isinstance(grid, (str, os.PathLike)):
        grid = load_grid(grid)
    sets = expand_grid(grid)
    if not sets:
        raise ConfigError("the grid has no parameter sets")
    defaults, types = _notebook_parameters(notebook)
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
            params = {
                k: v if k in FIELD_NAMES or k not in types else _typed(k, v, types[k])
                for k, v in params.items()
            }
        except ConfigError as exc:
            raise ConfigError(f"parameter set {i} {dict(params)}: {exc}") from None
        canonical = {k: (cfg.to_dict()[k] if k in FIELD_NAMES else v) for k, v in params.items()}
        extras = {k: v for k, v in canonical.items() if k not in FIELD_NAMES}
        key = (
            cfg.key()
            if not extras
            else digest([cfg.key(), json.dumps(extras, sort_keys=True, default=str)])[:16]
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


def _papermill_call(
    notebook: Path,
    tmp: Path,
    params: dict[str, Any],
    kernel_name: str,
    cell_timeout: float | None = CELL_TIMEOUT,
):
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
        execution_timeout=cell_timeout or None,
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
        first_line = next(iter(str(error).strip().splitlines()), "")
        status, message = "failed", f"{type(error).__name__}: {first_line}"
    if tmp.exists():
        os.replace(tmp, output)
        with open(output, encoding="utf-8") as f:
            nb = json.load(f)
        duration = float(nb.get("metadata", {}).get("papermill", {}).get("duration") or math.nan)
        records = read_records(nb)
        if error is not None and not isinstance(error, TimeoutError):
            message = _first_error(nb) or message  # (a timeout shows as KeyboardInterrupt)
    elif error is None:
        status, message = "failed", "papermill wrote no output notebook"
    return {"status": status, "duration": duration, "error": message, "records": records}


def _read_index(path: Path) -> pd.DataFrame | None:
    from awbench.experiments.store import read_part

    if not path.exists():
        return None
    return read_part(path).to_pandas()  # its pages' CRCs checked


@contextlib.contextmanager
def _index_lock(index_path: Path, timeout: float = INDEX_LOCK_TIMEOUT):
    """Held by every writer of ``index_path`` to read, merge and rewrite it: an exclusive
    ``flock`` of its folder (no lock file left behind), else a ``filelock`` lock file."""
    try:
        import fcntl

        fd = os.open(index_path.parent, os.O_RDONLY)
    except (ImportError, OSError):
        fd = None
    if fd is None:
        from filelock import FileLock, Timeout

        lock_file = index_path.with_name(f".{index_path.name}.lock")
        try:
            with FileLock(str(lock_file)).acquire(timeout=timeout):
                yield
        except Timeout:
            raise RuntimeError(f"could not lock {index_path} in {timeout:.0f} s") from None
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"could not lock {index_path} in {timeout:.0f} s: another "
                        "`notebooks run` into this folder holds it"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


def _merge_into_index(row: dict[str, Any], index_path: Path) -> None:
    """Add (or replace) one row of ``index_path``: read, merge and rewrite under the lock, so
    that concurrent ``run_notebooks`` into one folder keep each other's rows."""
    with _index_lock(index_path):
        current = _read_index(index_path)
        rows = {} if current is None else {r["key"]: r for r in current.to_dict("records")}
        rows[row["key"]] = row
        _write_index(list(rows.values()), index_path)


def _write_index(rows: list[dict[str, Any]], path: Path) -> pd.DataFrame:
    import pyarrow as pa

    from awbench.experiments.store import atomic_write_table

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
    atomic_write_table(table, path)
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
    cell_timeout: float | None = CELL_TIMEOUT,
) -> pd.DataFrame:
    """Execute ``notebook`` once per parameter set of ``grid`` into folder ``out``.

    Every parameter set is validated first (no kernel starts if one is bad). Each executed
    notebook is ``out/<key>_<label>.ipynb`` (e.g. ``3f2a..._bs=100_wd=0.01.ipynb``);
    ``out/index.parquet`` (key, name, path, notebook, status, duration, error, finished_at,
    parameters, one column per parameter, ``record.NAME`` per scalar record) is rewritten
    atomically after each notebook, under a lock, merging the rows of other commands
    running into the same folder. Rerunning skips parameter sets already in the index
    (failed ones too, unless ``retry_failed``). Kernels get ``AWBENCH_QUIET=1``. A cell
    running longer than ``cell_timeout`` seconds (default :data:`CELL_TIMEOUT`; None or 0:
    no limit) stops its notebook, recorded as failed, as is a parameter set whose notebook
    cannot be finished (moved into place, read back): the batch goes on. Hidden
    ``.tmp.ipynb`` files that interrupted runs left in ``out`` are removed
    (:func:`remove_dead_temporaries`).
    Returns the index of this grid's parameter sets.
    """
    notebook = Path(notebook).resolve()
    planned = plan_notebook_runs(notebook, grid)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(out, cell_timeout)
    index_path = out / "index.parquet"
    rows = _previous_rows(index_path, notebook)
    todo = _unfinished(planned, rows, out, retry_failed)
    log = (lambda *a: None) if quiet else LOG.info
    bar_on = False if quiet else (interactive() if show_progress is None else show_progress)
    if todo:
        n_workers = default_workers() if workers is None else workers
        with (
            _environ(**_kernel_env(parallel=min(n_workers, len(todo)) > 1)),
            open_executor(workers, n_tasks=len(todo), initializer=None) as (ex, window, what),
        ):
            window = max(1, window // 2)  # one notebook per worker: no queue to wait in
            log(
                f"{notebook.name}: {len(todo)} of {len(planned)} parameter sets to run on {what} -> {out}"
            )
            calls = []
            for ps in todo:
                call = _papermill_call(
                    notebook, ps.temporary(out), ps.params, kernel_name, cell_timeout
                )
                calls.append((ps, call, ()))
            finished = run_tasks(ex, calls, window)
            _index_as_they_finish(finished, len(todo), notebook, out, rows, log, bar_on)
    index = _read_index(index_path)
    wanted = [ps.key for ps in planned]
    index = index.set_index("key").loc[wanted].reset_index()
    n_failed = int((index["status"] != "ok").sum())
    log(
        f"{notebook.name}: {len(planned)} parameter sets, {len(todo)} ran, "
        f"{len(planned) - n_failed} ok, {n_failed} failed -> {index_path}"
    )
    return index


def _previous_rows(index_path: Path, notebook: Path) -> dict[str, dict]:
    """Index rows by key of an earlier run into the same folder (which must be this notebook's)."""
    previous = _read_index(index_path)
    if previous is None or not len(previous):
        return {}
    others = set(previous["notebook"]) - {str(notebook)}
    if others:
        raise ValueError(
            f"{index_path.parent} already holds runs of another notebook "
            f"({', '.join(sorted(others))}): use one output folder per notebook"
        )
    return {r["key"]: r for r in previous.to_dict("records")}


def _unfinished(
    planned: list[ParameterSet], rows: dict[str, dict], out: Path, retry_failed: bool
) -> list[ParameterSet]:
    """Parameter sets without an executed notebook in ``out`` (or failed, to retry them)."""

    def finished(ps: ParameterSet) -> bool:
        r = rows.get(ps.key)
        if r is None or not (out / r["path"]).exists():
            return False
        return r["status"] == "ok" or not retry_failed

    return [ps for ps in planned if not finished(ps)]


def remove_dead_temporaries(out: Path, cell_timeout: float | None = CELL_TIMEOUT) -> list[Path]:
    """Remove the hidden ``.<name>.<host>-<pid>.tmp.ipynb`` of interrupted runs from ``out``
    and return them: at once when their process (of this host) is gone; those of another
    host sharing the folder (or of the older ``.<name>.<pid>.tmp.ipynb`` form) once
    papermill has not saved them for longer than a cell may run (a live writer saves at
    least that often)."""
    from awbench.experiments.store import STALE_TMP_SECONDS, pid_alive, remove_stale_tmp

    max_age = max(STALE_TMP_SECONDS, 2.0 * (cell_timeout or 0))
    removed = []
    for f in out.glob(".*.tmp.ipynb"):
        host, _, pid = f.name.rsplit(".", 3)[-3].rpartition("-")
        if not pid.isdigit() or (host in (_HOST, "") and pid_alive(int(pid))):
            continue
        if host == _HOST:
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(f)
        else:
            removed += remove_stale_tmp(f.parent, max_age, patterns=(f.name,))
    return removed


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _kernel_env(parallel: bool) -> dict[str, str]:
    """Environment of the kernels: quiet, and one BLAS/torch thread each when several run."""
    env = {"AWBENCH_QUIET": "1"}
    if parallel:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _index_as_they_finish(
    finished, n_todo: int, notebook: Path, out: Path, rows: dict[str, dict], log, bar_on: bool
) -> None:
    """Move each finished notebook into place and rewrite ``out/index.parquet`` after each."""
    bar = progress(finished, total=n_todo, desc=notebook.stem, enabled=bar_on)
    try:
        for i, (ps, _, error) in enumerate(bar, 1):
            try:
                result = _finish_notebook(ps.temporary(out), out / ps.filename, error)
            except Exception as exc:  # noqa: BLE001 - this set failed; the batch goes on
                message = f"{type(exc).__name__}: {_one_line(exc)}"
                result = {"status": "failed", "duration": math.nan, "error": message}
                result["records"] = {}
                with contextlib.suppress(OSError):
                    ps.temporary(out).unlink()
            rows[ps.key] = _index_row(ps, notebook, result)
            _merge_into_index(rows[ps.key], out / "index.parquet")
            if not bar_on:
                extra = f": {result['error']}" if result["error"] else ""
                log(
                    f"[{i}/{n_todo}] {result['status']:<6} {ps.filename} "
                    f"{result['duration']:.1f}s{extra}"
                )
    finally:
        if hasattr(bar, "close"):
            bar.close()
