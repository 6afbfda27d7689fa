"""`make reproduce`: run every notebook headless, then build one offline HTML report.

    from awbench.apps.report.build import reproduce
    reproduce(out="outputs", profile="quick")   # -> outputs/report/index.html

``reproduce`` executes ``notebooks/NN_*.ipynb`` in order with papermill (``AWBENCH_QUIET=1``,
the given profile) into ``OUT/notebooks/`` and calls :func:`build_report`, which collects
every figure, every computed takeaway, every table and every recorded number of the
executed notebooks into ``OUT/report/index.html``: plotly.js embedded once (no CDN, works
offline), a table of contents, the paper's claims next to what this run measured, a table of
what each knob did, and each notebook's time. A notebook that fails is shown with its error
and makes ``reproduce`` raise after the report is written.

``export_figures`` (:mod:`~awbench.apps.report.export`) writes every report figure as
slide-ready PNG and SVG (needs the ``export`` extra: kaleido and a Chrome or Chromium).

The report's parts: :mod:`~awbench.apps.report.pages` reads an executed notebook,
:mod:`~awbench.apps.report.claims` holds the paper's claims, :mod:`~awbench.apps.report.knobs`
the numbers across notebooks (knob sweeps, verdicts, convergence),
:mod:`~awbench.apps.report.render` the page's sections and :mod:`~awbench.apps.report.html`
its HTML building blocks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from awbench.apps.report.export import export_figures
from awbench.apps.report.pages import notebook_paths, read_notebook
from awbench.apps.report.render import render
from awbench.experiments.notebook_runs import CELL_TIMEOUT
from awbench.experiments.store import pid_alive
from awbench.progress import cli_logging

# named, not __name__: run as `python -m` this module is __main__, outside the awbench logger
LOG = logging.getLogger("awbench.apps.report.build")

__all__ = ["build_report", "export_figures", "reproduce"]


def build_report(
    notebook_dir: str | os.PathLike,
    dest: str | os.PathLike,
    profile: str = "",
    timings: dict | None = None,
    failures: dict | None = None,
    total_seconds: float | None = None,
) -> Path:
    """Write the HTML report of the executed notebooks in ``notebook_dir`` to ``dest``."""
    pages = [read_notebook(p) for p in notebook_paths(notebook_dir)]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_text(render(pages, profile, timings, failures, total_seconds), encoding="utf-8")
    os.replace(tmp, dest)
    return dest


# --- running the notebooks -----------------------------------------------------------------


def default_notebook_dir() -> Path:
    """The repository's ``notebooks/`` (next to the package), else ``./notebooks``."""
    here = Path(__file__).resolve().parents[3] / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def execute(
    src: Path,
    dst: Path,
    parameters: dict,
    kernel: str = "python3",
    cell_timeout: float | None = CELL_TIMEOUT,
) -> tuple[float, str]:
    """Run one notebook with papermill; return (seconds, error or ""). A cell running longer
    than ``cell_timeout`` seconds (None or 0: no limit) fails the notebook."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(src),
            str(dst),
            parameters=parameters,
            kernel_name=kernel,
            progress_bar=False,
            log_output=False,
            cwd=str(src.parent),
            execution_timeout=cell_timeout or None,
        )
        error = ""
    except pm.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    except CellTimeoutError:
        error = f"CellTimeoutError: a cell ran longer than {cell_timeout:g} s (--cell-timeout)"
    except DeadKernelError as exc:
        error = f"DeadKernelError: {exc}"
    return time.perf_counter() - start, error


def reproduce(
    out: str | os.PathLike = "outputs",
    profile: str = "quick",
    notebooks: Iterable[str] | None = None,
    notebook_dir: str | os.PathLike | None = None,
    kernel: str = "python3",
    cell_timeout: float | None = CELL_TIMEOUT,
) -> Path:
    """Execute every notebook (or those whose stem starts with one of ``notebooks``) with
    ``profile`` into ``OUT/notebooks/``, build ``OUT/report/index.html`` and print its path.

    The notebooks run into a hidden folder next to ``OUT/notebooks`` that replaces it (or,
    with ``notebooks``, the executed notebooks of those names) only once every notebook has
    run: an interrupted run leaves the earlier outputs as they were. A cell running longer
    than ``cell_timeout`` seconds fails its notebook.

    Raises RuntimeError (after writing the report) if a notebook failed.
    """
    from awbench.experiments.grids import check_profile

    check_profile(profile)
    src_dir = Path(notebook_dir) if notebook_dir else default_notebook_dir()
    sources = notebook_paths(src_dir)
    if notebooks:
        wanted = tuple(notebooks)
        sources = [p for p in sources if p.stem.startswith(wanted)]
    if not sources:
        raise FileNotFoundError(f"no notebooks NN_*.ipynb in {src_dir}")
    out = Path(out)
    run_dir, report = out / "notebooks", out / "report" / "index.html"
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    staging = out / f".notebooks.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        timings, failures, total = _execute_all(sources, staging, profile, kernel, cell_timeout)
        _swap_in(staging, run_dir, full=notebooks is None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (out / "report").mkdir(parents=True, exist_ok=True)
    (out / "report" / "timings.json").write_text(
        json.dumps(
            {
                "profile": profile,
                "total_seconds": total,
                "notebooks": timings,
                "failures": failures,
            },
            indent=1,
        )
    )
    path = build_report(run_dir, report, profile, timings, failures, total)
    LOG.info(
        f"[reproduce] {len(sources)} notebooks in {total / 60:.1f} min; report: {path.resolve()}"
    )
    if failures:
        raise RuntimeError(
            f"{len(failures)} notebook(s) failed: "
            + "; ".join(f"{k}: {v}" for k, v in failures.items())
            + f" (see {path})"
        )
    return path


def _execute_all(
    sources: list[Path], dest: Path, profile: str, kernel: str, cell_timeout: float | None
) -> tuple[dict[str, float], dict[str, str], float]:
    """Execute ``sources`` in order into ``dest``: (timings, failures, total seconds)."""
    old = os.environ.get("AWBENCH_QUIET")
    os.environ["AWBENCH_QUIET"] = "1"
    timings: dict[str, float] = {}
    failures: dict[str, str] = {}
    start = time.perf_counter()
    try:
        for src in sources:
            LOG.info(f"[reproduce] {src.name} (profile {profile}) ...")
            secs, error = execute(src, dest / src.name, {"profile": profile}, kernel, cell_timeout)
            timings[src.stem] = secs
            if error:
                failures[src.stem] = error
            LOG.info(
                f"[reproduce] {src.name}: {'FAILED ' + error if error else 'ok'} in {secs:.0f} s"
            )
    finally:
        if old is None:
            os.environ.pop("AWBENCH_QUIET", None)
        else:
            os.environ["AWBENCH_QUIET"] = old
    return timings, failures, time.perf_counter() - start


def _swap_in(staging: Path, run_dir: Path, full: bool) -> None:
    """Move the notebooks executed into ``staging`` into ``run_dir``: all of it for a full
    run (``run_dir`` replaced by two renames), else notebook by notebook."""
    if not full and run_dir.is_dir():
        for path in sorted(staging.glob("*.ipynb")):
            os.replace(path, run_dir / path.name)
        return
    retired = None
    if run_dir.exists():
        retired = run_dir.with_name(f".{run_dir.name}.{os.getpid()}.old.tmp")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(run_dir, retired)
    os.replace(staging, run_dir)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _remove_stale_staging(out: Path) -> None:
    """Remove the hidden folders that killed runs left in ``out`` (their process is gone)."""
    for path in out.glob(".notebooks.*.tmp"):
        pid = path.name.split(".")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m awbench.apps.report.build", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    parser.add_argument("--profile", default="quick", help="smoke | quick | paper (default: quick)")
    parser.add_argument(
        "--only", nargs="*", help="run only notebooks whose name starts with these, e.g. 00 03"
    )
    parser.add_argument(
        "--build-only", action="store_true", help="rebuild the report from OUT/notebooks"
    )
    args = parser.parse_args(argv)
    cli_logging()
    if args.build_only:
        print(
            build_report(
                Path(args.out) / "notebooks", Path(args.out) / "report" / "index.html", args.profile
            )
        )
        return 0
    try:
        reproduce(args.out, args.profile, args.only)
    except RuntimeError as exc:
        print(f"[reproduce] {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
