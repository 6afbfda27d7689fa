"""The ``awbench`` command line.

    awbench info                                   versions, threads, device, cache folder
    awbench sweep --preset batch_size --seeds 10 --workers 2 --store results/bs
    awbench sweep --grid grid.yaml --store results/x --dask-local 4
    awbench status results/bs                      done / failed / pending per sweep
    awbench notebooks run NB.ipynb --grid grid.yaml --out runs/nb [--workers N]

A subcommand is a function ``run(args) -> exit code`` registered with :func:`command`;
a space in the name nests it (``"notebooks run"``)::

    def _reproduce_arguments(p): p.add_argument("--figures", nargs="*")

    @command("reproduce", "regenerate every paper figure", _reproduce_arguments)
    def _reproduce(args) -> int: ...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from awbench.apps.environment import environment_info, shadowing_hint

# Nothing heavy at import: `awbench --help` and `--version` must not load torch, pandas or
# plotly (tests/test_cli_startup.py). A subcommand's arguments are added when it is used.

Arguments = Callable[[argparse.ArgumentParser], None]
_COMMANDS: list[tuple[str, str, Arguments | None, Callable[[argparse.Namespace], int]]] = []


def command(name: str, help: str, arguments: Arguments | None = None):
    """Register the decorated ``run(args) -> int`` as subcommand ``name``."""

    def register(run: Callable[[argparse.Namespace], int]):
        _COMMANDS.append((name, help, arguments, run))
        return run

    return register


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose ``arguments`` are added the first time it parses or prints
    its help: the top-level ``--help`` lists every subcommand without importing what their
    arguments need (presets, defaults)."""

    def __init__(self, *args, arguments: Arguments | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending = arguments

    def _add_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending(self)

    def parse_known_args(self, args=None, namespace=None):
        self._add_pending()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_pending()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_pending()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    from awbench import __version__

    parser = _Parser(
        prog="awbench", description="Workbench for the activity-weight duality (Feng, Zhang & Tu)."
    )
    parser.add_argument("--version", action="version", version=f"awbench {__version__}")
    parser.set_defaults(func=None, help_parser=parser)  # no COMMAND: print the help
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, help, arguments, run in _COMMANDS:
        *group, leaf = name.split()
        subparsers = top
        if group:
            gname = group[0]
            if gname not in groups:
                gparser = top.add_parser(gname, help=f"{gname} commands")
                gparser.set_defaults(help_parser=gparser)
                groups[gname] = gparser.add_subparsers(dest=f"{gname}_command", metavar="COMMAND")
            subparsers = groups[gname]
        p = subparsers.add_parser(leaf, help=help, description=help, arguments=arguments)
        p.set_defaults(func=run, command_name=name, help_parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``awbench`` script; returns the exit code (``awbench`` or a group
    such as ``awbench notebooks`` without a command prints its help and returns 0)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is None:
        args.help_parser.print_help()
        return 0
    from awbench.experiments.executors import Terminated, sigterm_as_interrupt
    from awbench.progress import cli_logging

    cli_logging()

    hint = shadowing_hint()
    if hint:
        print(f"awbench: warning: {hint}", file=sys.stderr)
    try:
        with sigterm_as_interrupt():  # `timeout`, batch schedulers: clean up as for Ctrl-C
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(
            f"awbench {args.command_name}: {what} (rerun the same command to resume)",
            file=sys.stderr,
        )
        return 128 + int(exc.signum) if isinstance(exc, Terminated) else 130
    except MemoryError:  # one line, never a traceback that itself needs memory
        print(f"awbench {args.command_name}: error: out of memory (MemoryError)", file=sys.stderr)
        return 1
    except Exception as exc:
        code = _error_code(exc)
        if code is None:
            raise  # a bug: keep its traceback
        print(f"awbench {args.command_name}: error: {_one_line(exc)}", file=sys.stderr)
        return code


def _error_code(exc: BaseException) -> int | None:
    """Exit code of an error the user can act on (2: a bad input; 1: the environment, such
    as a full disk or an unreachable scheduler), or None for a bug (traceback)."""
    import yaml

    from awbench.config import ConfigError

    usage = (ConfigError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
    usage += (ImportError, ValueError, RuntimeError, OverflowError, yaml.YAMLError)
    if isinstance(exc, usage):
        return 2
    if isinstance(exc, OSError) or type(exc).__module__.startswith("pyarrow"):
        return 1  # OSError family (permissions, disk full, connections); pyarrow type errors
    return None


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, naming the file of an OSError that has one."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(exc).__name__


# --- info ------------------------------------------------------------------------------


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON object")


@command("info", "print versions, torch threads, device and the cache location", _info_arguments)
def _info(args: argparse.Namespace) -> int:
    info = environment_info()
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


# --- sweep -----------------------------------------------------------------------------


def _parse_set(items: list[str] | None) -> dict:
    import yaml

    from awbench.config import ConfigError

    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            out[name.strip()] = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({problem})") from None
    return out


def _executor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, one torch thread each (default: one per core; 1 runs in this process)",
    )
    dask = p.add_mutually_exclusive_group()
    dask.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (pip install 'awbench[dask]')",
    )
    dask.add_argument(
        "--dask-local",
        type=int,
        metavar="N",
        help="start a Dask LocalCluster with N single-threaded workers",
    )


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    from awbench.config import PRESETS
    from awbench.experiments.grids import SWEEP_PRESETS

    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--preset",
        choices=SWEEP_PRESETS,
        metavar="NAME",
        help="a knob sweep of docs/science.md#4-the-demo-protocol-and-awbenchs-presets or 'knobs': "
        + ", ".join(SWEEP_PRESETS),
    )
    what.add_argument(
        "--grid", metavar="FILE", help="YAML grid: a dict of lists, or a list of them"
    )
    p.add_argument(
        "--store", required=True, metavar="DIR", help="result store folder (created if needed)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="seeds 0..N-1 per setting (default 10 for knob presets, 1 otherwise)",
    )
    p.add_argument(
        "--base", default="paper", choices=list(PRESETS), help="base Config preset (default: paper)"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        dest="overrides",
        help="change a base Config field for the whole sweep (repeatable), e.g. --set max_epochs=200",
    )
    p.add_argument("--name", help="sweep name in the store (default: the preset or grid file name)")
    _executor_arguments(p)
    p.add_argument("--no-cache", action="store_true", help="recompute runs even when cached")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="rerun runs stored as failed (exceptions; diverged runs are results and stay)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no log lines")


@command("sweep", "run a grid of configs into a result store (resumable)", _sweep_arguments)
def _sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from awbench.experiments.planning import load_grid, plan_sweep
    from awbench.experiments.store import Store
    from awbench.experiments.sweep import run_sweep

    _check_store_folder(args.store)
    _check_sweep_numbers(args)
    if args.preset:
        grid, name = args.preset, args.name
    else:
        grid, name = load_grid(args.grid), args.name or Path(args.grid).stem
    sweep = plan_sweep(
        grid, seeds=args.seeds, base=args.base, overrides=_parse_set(args.overrides), name=name
    )
    if args.dry_run:
        have = Store(args.store).statuses()
        todo = sum(k not in have for k in sweep.config_keys())
        print(
            f"sweep {sweep.name}: {len(sweep)} runs ({todo} not in {args.store}), "
            f"varying {', '.join(sweep.varying) or 'nothing'}; base {args.base}"
        )
        for cfg in sweep.configs:
            print(
                f"  {cfg.key()}  {sweep.label(cfg)}{'' if cfg.key() not in have else '  (' + have[cfg.key()] + ')'}"
            )
        return 0
    _clean_cache_tmp()
    report = run_sweep(
        sweep,
        args.store,
        workers=args.workers,
        scheduler=args.scheduler,
        dask_local=args.dask_local,
        cache=not args.no_cache,
        retry_failed=args.retry_failed,
        quiet=args.quiet,
    )
    if report.errors:  # diverged or unconverged runs are results; an exception is not
        print(
            f"awbench sweep: {report.errors} of {report.planned} runs failed with an error "
            f"(status failed); `awbench status {args.store}` lists them, "
            "--retry-failed reruns them",
            file=sys.stderr,
        )
        return 1
    return 0


def _check_store_folder(store: str, what: str = "--store") -> None:
    """``--store`` must be a folder (or not exist yet): fail before planning anything."""
    from pathlib import Path

    from awbench.config import ConfigError

    if not store.strip():
        raise ConfigError(f"{what} {store!r} is not allowed: expected a result store folder")
    if Path(store).exists() and not Path(store).is_dir():
        raise NotADirectoryError(f"result store {store} is a file: expected a folder")


def _check_sweep_numbers(args: argparse.Namespace) -> None:
    """``--seeds``, ``--dask-local`` and ``--scheduler`` within bounds, before any planning."""
    from awbench.config import ConfigError
    from awbench.experiments.planning import MAX_SEEDS

    bad = [
        (args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS, "--seeds", args.seeds,
         f"1 to {MAX_SEEDS:,} seeds per setting"),
        (args.dask_local is not None and args.dask_local < 1, "--dask-local", args.dask_local,
         "N >= 1 Dask workers"),
        (args.scheduler is not None and not args.scheduler.strip(), "--scheduler",
         repr(args.scheduler), "a Dask scheduler address such as tcp://10.0.0.5:8786"),
    ]  # fmt: skip
    for _, name, value, allowed in (b for b in bad if b[0]):
        raise ConfigError(f"{name} {value} is not allowed: expected {allowed}")


def _clean_cache_tmp() -> None:
    """Remove leftovers of interrupted cache writes (``.tmp`` files older than an hour)."""
    from awbench.cache import cache_dir
    from awbench.experiments.store import remove_stale_tmp

    remove_stale_tmp(cache_dir() / "results", patterns=("*.tmp",))
    remove_stale_tmp(cache_dir() / "data", patterns=("*.tmp", "*.tmp.npz"))


# --- status ----------------------------------------------------------------------------


def _status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE", help="result store folder")
    p.add_argument("--limit", type=int, default=20, help="failed runs to list (default 20)")


@command("status", "done / failed / pending runs of a result store", _status_arguments)
def _status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from awbench.experiments.store import Store
    from awbench.status import FAILED_STATUSES

    _check_store_folder(args.store, "STORE")
    if not Path(args.store).is_dir():
        raise FileNotFoundError(f"no result store at {args.store}")
    store = Store(args.store)
    if not any(p.is_dir() for p in (store.runs_dir, store.directions_dir, store.plans_dir)):
        raise NotADirectoryError(f"{args.store} is not a result store: no runs/, plans/ folder")
    print(store.status().to_string(index=False))
    runs, _ = store.load()
    failed = runs[runs["status"].isin(FAILED_STATUSES)] if len(runs) else runs
    if len(failed):
        print(f"\nfailed runs ({len(failed)}):")
        for _, r in failed.head(args.limit).iterrows():
            print(f"  {r['key']}  {r['status']:<8}  {r['reason']}")
        if len(failed) > args.limit:
            print(f"  ... and {len(failed) - args.limit} more")
    return 0


# --- notebooks run ---------------------------------------------------------------------


def _notebooks_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb to execute")
    p.add_argument(
        "--grid",
        required=True,
        metavar="FILE",
        help="YAML parameter sets: a dict of lists (their product) or a list of dicts",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for executed notebooks and index.parquet",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="notebooks executed at once (default: one per core)",
    )
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    p.add_argument(
        "--retry-failed", action="store_true", help="rerun parameter sets that failed before"
    )
    _cell_timeout_argument(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no log lines")


def _cell_timeout_argument(p: argparse.ArgumentParser) -> None:
    from awbench.experiments.notebook_runs import CELL_TIMEOUT

    p.add_argument(
        "--cell-timeout",
        type=float,
        default=CELL_TIMEOUT,
        metavar="SECONDS",
        help=f"stop a notebook whose cell runs longer, as failed (default {CELL_TIMEOUT}; "
        "0: no limit)",
    )


@command(
    "notebooks run",
    "execute a notebook once per parameter set with papermill",
    _notebooks_run_arguments,
)
def _notebooks_run(args: argparse.Namespace) -> int:
    from awbench.experiments.notebook_runs import run_notebooks

    index = run_notebooks(
        args.notebook,
        args.grid,
        args.out,
        workers=args.workers,
        retry_failed=args.retry_failed,
        kernel_name=args.kernel,
        quiet=args.quiet,
        cell_timeout=_cell_timeout(args.cell_timeout),
    )
    failed = index[index["status"] != "ok"]
    for _, r in failed.iterrows():
        print(f"failed: {r['path']}: {r['error']}", file=sys.stderr)
    return 1 if len(failed) else 0


def _reproduce_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    p.add_argument(
        "--profile", default="quick", choices=("smoke", "quick", "paper"), help="default: quick"
    )
    p.add_argument(
        "--only", nargs="*", metavar="NN", help="only notebooks whose name starts with these"
    )
    _cell_timeout_argument(p)


@command(
    "reproduce",
    "execute every notebook headless and build OUT/report/index.html",
    _reproduce_arguments,
)
def _reproduce(args: argparse.Namespace) -> int:
    from awbench.apps.report.build import reproduce

    try:
        reproduce(args.out, args.profile, args.only, cell_timeout=_cell_timeout(args.cell_timeout))
    except RuntimeError as exc:
        print(f"[reproduce] {exc}", file=sys.stderr)
        return 1
    return 0


def _cell_timeout(seconds: float) -> float | None:
    import math

    from awbench.config import ConfigError

    if math.isnan(seconds) or seconds < 0:
        raise ConfigError(f"--cell-timeout={seconds} is not allowed: expected seconds >= 0")
    return None if seconds == 0 or math.isinf(seconds) else seconds


def _figures_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--notebooks", default="outputs/notebooks", help="executed notebooks folder")
    p.add_argument(
        "--out",
        default="outputs/figures",
        help="where the 1920x1080/, 1280x720/ (PNG) and svg/ folders go (default: outputs/figures)",
    )
    p.add_argument(
        "--workers", type=int, default=None, metavar="N", help="browser tabs rendering at once"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


@command(
    "figures",
    "export every report figure as PNG (1920x1080, 1280x720) and SVG (needs the export extra)",
    _figures_arguments,
)
def _figures(args: argparse.Namespace) -> int:
    import time

    from awbench.apps.report.export import export_figures

    start = time.perf_counter()
    written = export_figures(
        args.notebooks,
        args.out,
        progress_bar=False if args.quiet else None,
        workers=args.workers,
    )
    print(f"[figures] {len(written)} files in {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


def _present_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--port", type=int, default=None, help="port on 127.0.0.1, 1-65535 (default: 8866 if free)"
    )
    p.add_argument("--no-browser", action="store_true", help="print the URL, open no browser")
    p.add_argument(
        "--max-kernels",
        type=int,
        default=2,
        metavar="N",
        help="pages served at once, one kernel (about 450 MB) each; one more page closes the "
        "least recently used (default: 2)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=300,
        metavar="SECONDS",
        help="shut down the kernel of a page closed this long ago (default: 300)",
    )


@command(
    "present",
    "the knob panel as a code-free Voila app on 127.0.0.1 (needs the present extra)",
    _present_arguments,
)
def _present(args: argparse.Namespace) -> int:
    from awbench.apps.present.server import serve

    return serve(
        args.port,
        open_browser=not args.no_browser,
        max_kernels=args.max_kernels,
        idle_timeout=args.idle_timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
