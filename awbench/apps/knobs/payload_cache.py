"""The explorer's payload, built once per grid: a JSON file under the cache folder.

Building a payload takes seconds (every sentence and verdict for every run and knob line,
over pandas); reading one takes milliseconds. The file is found by the bytes of the stores
(the grid's, then the user's, in their roles) and the knob drawn first, and it is used only
while what built it is unchanged: the source of every awbench module loaded when it was
built (a changed sentence is a new payload, an edit elsewhere is not) and the versions of the
libraries that compute or shape it. Nothing here imports the grid's code, so a hit costs
neither pandas nor torch. Two processes that miss at once build it once: the second waits on
a lock, then reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import awbench
from awbench.cache import cache_dir

LAYOUT = 1  # of the cache file; bump to drop every entry
KEEP = 8  # entries kept (least recently used dropped): one per grid in use
LIBRARIES = ("numpy", "pandas", "scipy", "pyarrow", "plotly")


def folder() -> Path:
    return cache_dir() / "explorer"


def _tree(h: Any, root: Path) -> None:
    """Every file under ``root`` into ``h``: relative path, size, bytes (nothing: a marker)."""
    if not root.is_dir():
        h.update(b"\0absent\0")
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        h.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        h.update(data)


def payload_key(stores: Sequence[Path], knob: str) -> str:
    """Where the payload over ``stores`` (grid store, user store), drawn first along
    ``knob``, is cached."""
    h = hashlib.sha256(f"{LAYOUT}\0{knob}\0{sys.version}\0".encode())
    for store in stores:
        h.update(b"\0store\0")
        _tree(h, Path(store))
    return h.hexdigest()[:32]


def _root() -> Path:
    return Path(awbench.__file__).resolve().parent


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "-"


def _libraries() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def _loaded_sources() -> dict[str, str]:
    """The awbench modules loaded now (what built the payload, and maybe more), by digest."""
    root, out = _root(), {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not getattr(module, "__name__", "").startswith("awbench"):
            continue
        path = Path(file).resolve()
        if path.is_relative_to(root):
            out[path.relative_to(root).as_posix()] = _digest(path)
    return dict(sorted(out.items()))


def _read(path: Path) -> dict | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, or cut short: build it again
        return None
    if not isinstance(entry, dict) or entry.get("libraries") != _libraries():
        return None
    root = _root()
    sources = entry.get("sources") or {}
    if not sources or any(_digest(root / rel) != d for rel, d in sources.items()):
        return None
    os.utime(path)  # recently used: kept by _prune
    return entry.get("payload")


def _write(path: Path, payload: dict) -> None:
    entry = {"sources": _loaded_sources(), "libraries": _libraries(), "payload": payload}
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entry, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def _prune(where: Path) -> None:
    entries = sorted(where.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        for path in (old, old.with_suffix(".lock")):
            path.unlink(missing_ok=True)


def cached_payload(stores: Sequence[Path], knob: str, build: Callable[[], dict]) -> dict:
    """The payload over ``stores`` from the cache, else ``build()``'s, then cached."""
    where = folder()
    path = where / f"{payload_key(stores, knob)}.json"
    hit = _read(path)
    if hit is not None:
        return hit
    from filelock import FileLock

    where.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        hit = _read(path)
        if hit is None:
            hit = build()
            _write(path, hit)
            _prune(where)
    return hit
