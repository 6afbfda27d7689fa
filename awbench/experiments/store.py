"""Result store: one folder, one parquet part file per run, each written atomically.

Layout::

    STORE/
      runs/<key>.parquet         one row per run: key, status, reason, every Config field,
                                 timings, the Analysis scalars, numerics_version (awbench's
                                 NUMERICS_VERSION), package versions, host, pid, finished_at
      directions/<key>.parquet   one row per eigen-direction of that run: key, rank, lam,
                                 mu_w, sigma_w, mu_g, sigma_g, c, contribution, ...
      plans/<sweep>.json         the config keys a sweep set out to run (for pending counts)

A part is written to a temporary file in the same folder, fsynced, then renamed over its
final name (``os.replace``), so a reader sees a run completely or not at all, even while a
sweep is writing. The directions part is written before the runs part: the runs part is the
commit record, and directions without a runs row are ignored. The file name is the config key,
so a run can never be in the store twice; rerunning a key replaces its part atomically.

A store shipped as package data may be packed (:meth:`Store.pack`): ``runs/_packed.parquet``
and ``directions/_packed.parquet`` hold many runs each (a one-row part costs ~20 KB of
parquet metadata). A run written after packing gets a part of its own, which supersedes its
packed rows (its directions too) once its runs part is there.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from awbench.config import FIELD_NAMES, KEY_OPTIONAL_DEFAULTS, Config
from awbench.status import STATUSES


class StoreFrames(NamedTuple):
    """``runs`` (one row per run) and ``directions`` (one row per run x direction)."""

    runs: pd.DataFrame
    directions: pd.DataFrame


def atomic_write_table(table: pa.Table, path: Path, compression: str = "snappy") -> None:
    """Write ``table`` to ``path`` atomically, each page with a CRC32 that
    :func:`read_part` checks (a flipped byte of a value is an unreadable part, not a number)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression=compression, write_page_checksum=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def config_columns(cfg: Config) -> dict[str, Any]:
    """Config fields as store columns (``widths`` as a string such as "[30, 30]")."""
    d = cfg.to_dict()
    d["widths"] = json.dumps(list(cfg.widths))
    return d


def config_from_row(row: pd.Series | dict) -> Config:
    """Rebuild the Config of a ``runs`` row (NaN from missing values reads as None; a field
    added after the row was written takes its default, whether the row has no column for it
    or a store mixing old and new rows holds NaN there)."""
    d = {}
    for name in FIELD_NAMES:
        if name not in row:
            continue
        value = row[name]
        missing = value is None or value is pd.NA
        missing = missing or (isinstance(value, float) and math.isnan(value))
        if missing and name in KEY_OPTIONAL_DEFAULTS:
            continue
        if missing:
            value = None
        elif hasattr(value, "item"):
            value = value.item()
        d[name] = value
    return Config.from_dict(d)


def read_part(path: str | os.PathLike, columns=None) -> pa.Table:
    """One parquet part, its pages' CRC32 verified (parts written before the checksums have
    none to check); a mismatch raises OSError."""
    return pq.ParquetFile(path, page_checksum_verification=True).read(columns=columns)


PACK = "_packed.parquet"  # a part holding many runs (run keys are hex: never "_packed")


def is_pack(path: Path) -> bool:
    """Whether ``path`` is a packed part (many runs) rather than the part of one run."""
    return path.name.startswith("_")


def _read_parts(
    folder: Path,
    keys: Iterable[str] | None = None,
    columns=None,
    skipped: list[str] | None = None,
    singles: Iterable[str] | None = None,
    superseded: Iterable[str] | None = None,
) -> pa.Table | None:
    """The parts of ``folder`` (the rows of ``keys``; None: all) as one table; damaged ones
    are skipped with a warning naming the file (their stems are appended to ``skipped``).

    Parts of their own are read for ``singles`` (default: ``keys``); a pack contributes its
    rows of ``keys`` except those in ``superseded`` (default: the keys with a part of their
    own in ``folder``, which is newer)."""
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    packs = [f for f in files if is_pack(f)]
    files = [f for f in files if not is_pack(f)]
    if superseded is None:
        superseded = {f.stem for f in files}
    if singles is None:
        singles = keys
    if singles is not None:
        wanted = set(singles)
        files = [f for f in files if f.stem in wanted]
    tables = []
    for f in files:
        t = _read_one(f, columns, skipped)
        if t is not None:
            tables.append((f, t))
    for f in packs:
        read = None if columns is None else list(dict.fromkeys(["key", *columns]))
        t = _read_one(f, read, skipped)
        if t is None:
            continue
        keep = pc.invert(pc.is_in(t["key"], value_set=pa.array(sorted(superseded), pa.string())))
        if keys is not None:
            wanted_rows = pc.is_in(t["key"], value_set=pa.array(sorted(set(keys)), pa.string()))
            keep = pc.and_(keep, wanted_rows)
        t = t.filter(keep)
        if columns is not None:
            t = t.select(list(columns))
        tables.append((f, t))
    if not tables:
        return None
    try:
        return pa.concat_tables([t for _, t in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return _concat_compatible(tables)


def _read_one(f: Path, columns, skipped: list[str] | None) -> pa.Table | None:
    try:
        return read_part(f, columns)  # much faster than pq.read_table per file
    except FileNotFoundError:  # replaced between listing and reading: read the new one
        try:
            return read_part(f, columns)
        except Exception:  # noqa: BLE001 - gone again: the next load sees it
            return None
    except Exception as exc:  # noqa: BLE001 - a foreign or damaged file: skip it, say so
        warnings.warn(f"skipping unreadable store part {f}: {exc}", stacklevel=4)
        if skipped is not None:
            skipped.append(f.stem)
        return None


def read_parts(folder: str | os.PathLike, keys: Iterable[str] | None = None) -> pa.Table | None:
    """Every row of the parts of ``folder`` (packed or one per key; those of ``keys``), a
    run's own part superseding its packed rows; None when there is none."""
    return _read_parts(Path(folder), keys)


def pack_parts(
    folder: str | os.PathLike, table: pa.Table | None = None, compression: str = "zstd"
) -> int:
    """Replace the parts of ``folder`` by one packed part holding ``table`` (default: the
    rows they hold now); returns the bytes saved. The pack is written before the parts it
    replaces are removed, so a reader sees every row throughout."""
    folder = Path(folder)
    before = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    replaced = _write_pack(folder, table, compression)
    for p in replaced:
        p.unlink(missing_ok=True)
    return before - sum(p.stat().st_size for p in folder.glob("*.parquet"))


def _write_pack(folder: Path, table: pa.Table | None, compression: str = "zstd") -> list[Path]:
    """Write ``folder``'s pack (default: every row there now); the parts of one run it
    replaces, still on disk (they supersede their packed rows until removed)."""
    singles = [p for p in sorted(folder.glob("*.parquet")) if not is_pack(p)]
    if table is None:
        table = _read_parts(folder)
    if table is None:
        return []
    key = table.column_names.index("key")
    table = table.set_column(key, "key", table.column(key).cast(pa.string()))
    atomic_write_table(table, folder / PACK, compression)
    return singles


def _concat_compatible(tables: list[tuple[Path, pa.Table]]) -> pa.Table:
    """Concatenate the parts whose schema merges with the ones before; skip (and name) the
    others, so that one part written by incompatible code cannot hide the whole store. The
    parts of the most common schema go first: the odd one out is the one skipped."""
    counts = Counter(t.schema for _, t in tables)
    ordered = sorted(tables, key=lambda ft: -counts[ft[1].schema])  # stable: sorted names
    schema, kept = None, []
    for f, t in ordered:
        try:
            if schema is not None:
                pa.concat_tables([schema.empty_table(), t], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            warnings.warn(
                f"skipping store part {f}: its columns do not match the other parts ({exc})",
                stacklevel=4,
            )
            continue
        kept.append(t)
        schema = pa.concat_tables(
            [schema.empty_table(), t.slice(0, 0)] if schema is not None else [t.slice(0, 0)],
            promote_options="permissive",
        ).schema
    return pa.concat_tables(kept, promote_options="permissive")


# Temporary files of interrupted atomic writes (``.NAME.PID.HEX.tmp``) older than this are
# removed when a store is opened for writing; a live writer's lasts well under a second.
STALE_TMP_SECONDS = 3600.0


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (True when that cannot be told)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process, or cannot tell
    return True


def remove_stale_tmp(
    folder: str | os.PathLike, max_age: float = STALE_TMP_SECONDS, patterns=("*.tmp",)
) -> list[Path]:
    """Delete files of ``folder`` matching ``patterns`` not modified for ``max_age`` seconds
    (leftovers of interrupted atomic writes); return what was deleted. Files younger than
    that may belong to a writer in progress (here, or on another host sharing the folder)
    and are kept."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    removed = []
    for pattern in patterns:
        for f in folder.glob(pattern):
            try:
                if f.is_file() and now - f.stat().st_mtime > max_age:
                    f.unlink()
                    removed.append(f)
            except OSError:  # gone already, or a read-only folder: leave it
                continue
    return removed


class Store:
    """A result store folder (created on first write)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._opened = False

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def directions_dir(self) -> Path:
        return self.path / "directions"

    @property
    def plans_dir(self) -> Path:
        return self.path / "plans"

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # --- writing ---------------------------------------------------------------------------
    def _open_for_writing(self) -> None:
        """Create the folders (once) and remove leftovers of interrupted writes (stale
        ``.tmp`` files; see :func:`remove_stale_tmp`)."""
        if self._opened:
            return
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"result store {self.path} is a file, not a folder")
        for folder in (self.runs_dir, self.directions_dir, self.plans_dir):
            folder.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(folder)
        self._opened = True

    def write(self, row: dict[str, Any], directions: pd.DataFrame | None = None) -> None:
        """Add (or replace) one run: its directions part first, then its runs row."""
        key = row["key"]
        self._open_for_writing()
        dir_path = self.directions_dir / f"{key}.parquet"
        if directions is not None and len(directions):
            frame = directions.reset_index(drop=True).copy()
            frame.insert(0, "key", key)
            atomic_write_table(pa.Table.from_pandas(frame, preserve_index=False), dir_path)
        elif dir_path.exists():
            dir_path.unlink()  # a rerun that has no directions replaces one that had
        atomic_write_table(pa.Table.from_pylist([row]), self.runs_dir / f"{key}.parquet")

    def write_plan(self, name: str, configs: list[Config], meta: dict | None = None) -> Path:
        """Record what a sweep set out to run (the latest plan of a name wins)."""
        self._open_for_writing()
        plan = {
            "name": name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(meta or {}),
            "keys": [c.key() for c in configs],
        }
        path = self.plans_dir / f"{_safe_name(name)}.json"
        _atomic_write_text(json.dumps(plan, indent=1), path)
        return path

    # --- reading ---------------------------------------------------------------------------
    def keys(self) -> set[str]:
        """Config keys of every run in the store."""
        if not self.runs_dir.is_dir():
            return set()
        files = list(self.runs_dir.glob("*.parquet"))
        keys = {f.stem for f in files if not is_pack(f)}
        for f in files:
            if is_pack(f):
                table = _read_one(f, ["key"], None)
                keys.update(table.column("key").to_pylist() if table is not None else [])
        return keys

    def statuses(self) -> dict[str, str]:
        """key -> status of every run in the store."""
        table = _read_parts(self.runs_dir, columns=["key", "status"])
        if table is None:
            return {}
        out = dict(zip(table.column("key").to_pylist(), table.column("status").to_pylist()))
        for key in self.damaged_directions():
            out.pop(key, None)  # pending: a resumed sweep recomputes it
        return out

    def damaged_directions(self) -> list[str]:
        """Keys whose ``directions/<key>.parquet`` exists but cannot be read (a footer check,
        cheap). Such a run counts as pending, not done: a resumed sweep recomputes it."""
        if not self.directions_dir.is_dir():
            return []
        damaged = []
        for f in sorted(self.directions_dir.glob("*.parquet")):
            try:
                pq.read_metadata(f)
            except FileNotFoundError:  # removed by a rerun without directions
                continue
            except Exception as exc:  # noqa: BLE001 - damaged or foreign: recompute it
                warnings.warn(
                    f"damaged store part {f} ({exc}): run {f.stem} counts as pending and is "
                    "recomputed when the sweep is resumed",
                    stacklevel=3,
                )
                damaged.append(f.stem)
        return damaged

    def plans(self) -> list[dict]:
        if not self.plans_dir.is_dir():
            return []
        out = []
        for f in sorted(self.plans_dir.glob("*.json")):
            try:
                plan = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                warnings.warn(f"skipping unreadable plan {f}: {exc}", stacklevel=2)
                continue
            keys = plan.get("keys", []) if isinstance(plan, dict) else None
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                warnings.warn(
                    f"skipping plan {f}: expected a JSON object with a list of string keys",
                    stacklevel=2,
                )
                continue
            out.append(plan)
        return out

    def load(self, keys: Iterable[str] | None = None) -> StoreFrames:
        """Both tables as DataFrames (optionally only the runs with these keys)."""
        keys = None if keys is None else list(keys)
        runs_table = _read_parts(self.runs_dir, keys)
        if runs_table is None:
            return StoreFrames(
                pd.DataFrame(columns=["key", "status", "reason", *FIELD_NAMES]),
                pd.DataFrame(columns=["key", "rank"]),
            )
        runs = runs_table.to_pandas()
        if "weight_decay_epochs" in runs:
            runs["weight_decay_epochs"] = runs["weight_decay_epochs"].astype("Int64")
        if "finished_at" in runs:
            runs = runs.sort_values(["finished_at", "key"], kind="stable")
        runs = runs.reset_index(drop=True)
        damaged: list[str] = []
        # A run's own directions part counts once its runs part is there (written last):
        # until then, the packed rows are its directions.
        own = {f.stem for f in self.runs_dir.glob("*.parquet") if not is_pack(f)}
        run_keys = runs["key"].tolist()
        dir_table = _read_parts(
            self.directions_dir,
            run_keys,
            skipped=damaged,
            singles=[k for k in run_keys if k in own],
            superseded=own,
        )
        if damaged:  # a run without its directions is not done: leave it out (pending)
            runs = runs[~runs["key"].isin(damaged)].reset_index(drop=True)
        if dir_table is None:
            directions = pd.DataFrame(columns=["key", "rank"])
        else:
            directions = dir_table.to_pandas()
            order = {k: i for i, k in enumerate(runs["key"])}
            directions["_order"] = directions["key"].map(order)
            sort = ["_order", "rank"] if "rank" in directions else ["_order"]
            directions = directions.sort_values(sort, kind="stable").drop(columns="_order")
            directions = directions.reset_index(drop=True)
        return StoreFrames(runs, directions)

    def compact_directions(self) -> int:
        """Rewrite every directions part with float32 numbers and zstd compression (about 2x
        smaller, 1e-7 relative rounding): for stores shipped with the package, such as the
        knob grid. Returns the bytes saved. Runs rows keep float64."""
        saved = 0
        for path in sorted(self.directions_dir.glob("*.parquet")):
            table = read_part(path)
            columns = [
                c.cast(pa.float32()) if pa.types.is_float64(c.type) else c for c in table.columns
            ]
            before = path.stat().st_size
            atomic_write_table(pa.table(columns, names=table.column_names), path, "zstd")
            saved += before - path.stat().st_size
        return saved

    def pack(self, thin: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> int:
        """Pack the runs and the directions into one part each (:data:`PACK`, zstd), the
        directions' numbers as float32, after ``thin`` (a function of the directions frame
        that may drop rows and columns): for stores shipped as package data, where a part
        per run costs more than its numbers. Runs rows keep float64. Returns the bytes
        saved. Runs written later get parts of their own, as in any store."""
        runs = _read_parts(self.runs_dir)
        if runs is None:
            return 0
        before = sum(p.stat().st_size for p in self.path.glob("*/*.parquet"))
        directions = self.load().directions
        if thin is not None:
            directions = thin(directions)
        table = pa.Table.from_pandas(directions.reset_index(drop=True), preserve_index=False)
        table = pa.table(
            [c.cast(pa.float32()) if pa.types.is_float64(c.type) else c for c in table.columns],
            names=table.column_names,
        )
        self.directions_dir.mkdir(parents=True, exist_ok=True)
        # Both packs first (directions before runs, the commit record), then the old parts,
        # runs first: a reader finds every run with its directions at every moment.
        old_directions = _write_pack(self.directions_dir, table)
        old_runs = _write_pack(self.runs_dir, runs)
        for p in old_runs + old_directions:
            p.unlink(missing_ok=True)
        return before - sum(p.stat().st_size for p in self.path.glob("*/*.parquet"))

    def plan_keys(self, sweep: str) -> list[str]:
        """Config keys of the latest plan named ``sweep``."""
        for plan in self.plans():
            if plan.get("name") == sweep:
                return list(plan.get("keys", []))
        names = ", ".join(p.get("name", "?") for p in self.plans()) or "none"
        raise KeyError(f"no sweep named {sweep!r} in {self.path} (sweeps: {names})")

    def status(self) -> pd.DataFrame:
        """Per sweep plan (and in total): planned, done, failed, pending run counts."""
        statuses = self.statuses()
        rows = []
        all_keys: dict[str, None] = {}
        for plan in self.plans():
            keys = list(dict.fromkeys(plan.get("keys", [])))
            all_keys.update(dict.fromkeys(keys))
            rows.append({"sweep": plan.get("name", "?"), **_counts(keys, statuses)})
        unplanned = [k for k in statuses if k not in all_keys]
        if unplanned:
            rows.append({"sweep": "(not in a plan)", **_counts(unplanned, statuses)})
        every = list(all_keys) + unplanned
        rows.append({"sweep": "total", **_counts(every, statuses)})
        return pd.DataFrame(rows, columns=["sweep", "planned", *STATUSES, "pending"])


def _counts(keys: list[str], statuses: dict[str, str]) -> dict[str, int]:
    """Planned and pending runs, and runs per status of the one vocabulary (STATUSES)."""
    recorded = [statuses[k] for k in keys if k in statuses]
    per_status = {s: recorded.count(s) for s in STATUSES}
    return {"planned": len(keys), **per_status, "pending": len(keys) - len(recorded)}


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in name) or "sweep"


def load_store(path: str | os.PathLike, sweep: str | None = None) -> StoreFrames:
    """``runs, directions = load_store(path)``: a store's two tables as DataFrames.

    ``sweep`` keeps only the runs a named sweep planned (a run shared by several sweeps,
    such as the default config, is stored once and belongs to each). Safe while a sweep is
    writing into the store: every run returned is complete. Join the tables on ``key``;
    :func:`config_from_row` rebuilds a run's Config.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no result store at {path}")
    store = Store(path)
    return store.load(None if sweep is None else store.plan_keys(sweep))
