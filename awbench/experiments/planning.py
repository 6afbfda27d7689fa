"""Sweep planning: grids of Config fields expanded, validated and de-duplicated into a Sweep.

A grid is a dict of lists (their product), a list of such dicts (concatenated), or the name
of a sweep preset (``awbench.experiments.grids``): one per knob of docs/science.md#6-sweeps
(``batch_size``, ``lr``, ``init_scale``, ``dropout``, ``weight_decay``, ``label_noise``,
``n_train``) with the paper's values scaled to the base preset's dataset, plus ``knobs``, the
multi-knob grid behind the sliders of notebook 08 (``awbench/apps/knobs/store``). Every
Config is validated before anything runs.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awbench.config import FIELD_NAMES, PRESETS, Config, ConfigError
from awbench.data import check_inputs, n_total_train
from awbench.experiments.grids import KNOBS_SEEDS, POOL_SIZES, PROFILES, preset_grid

# Bounds on what a plan reads and builds, so that a device file, a huge file or a grid whose
# product explodes is one error naming it rather than exhausted memory.
MAX_GRID_BYTES = 1_000_000  # a grid file (YAML or JSON)
MAX_PARAMETER_SETS = 100_000  # parameter sets of one grid's expansion
MAX_SEEDS = 10_000  # seeds per setting (--seeds)
MAX_RUNS = 100_000  # runs of one sweep: parameter sets x seeds


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


def _blocks(grid: Any) -> list[Mapping[str, Any]]:
    if isinstance(grid, Mapping):
        grid = [grid]
    if not isinstance(grid, Sequence) or isinstance(grid, (str, bytes)):
        raise ConfigError(
            f"a grid is a dict of lists or a list of such dicts, got {type(grid).__name__}"
        )
    for i, block in enumerate(grid):
        if not isinstance(block, Mapping):
            raise ConfigError(
                f"grid entry {i} is a {type(block).__name__}, expected a dict of lists"
            )
    return list(grid)


def _value_lists(block: Mapping[str, Any]) -> list[list[Any]]:
    lists = []
    for name, v in block.items():
        # widths=[30, 30] is one value; widths=[[30, 30], [64, 64]] are two.
        if isinstance(v, (list, tuple)) and not (
            name == "widths" and v and not isinstance(v[0], (list, tuple))
        ):
            if len(v) == 0:
                raise ConfigError(f"grid field {name!r} has an empty list of values")
            lists.append(v)
        else:
            lists.append([v])
    return lists


def grid_size(grid: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
    """How many parameter sets :func:`expand_grid` would make, computed without making them."""
    return sum(math.prod(len(v) for v in _value_lists(block)) for block in _blocks(grid))


def expand_grid(
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]], max_sets: int = MAX_PARAMETER_SETS
) -> list[dict[str, Any]]:
    """Parameter sets of a grid: the product of a dict of lists, or of each dict in a list.

    A grid of more than ``max_sets`` parameter sets is refused (ConfigError with the count)
    before anything is expanded."""
    n = grid_size(grid)
    if n > max_sets:
        raise ConfigError(
            f"the grid expands to {n:,} parameter sets ({n:.2g}); at most {max_sets:,} are "
            "allowed: split it into smaller grids"
        )
    sets: list[dict[str, Any]] = []
    for block in _blocks(grid):
        names = list(block)
        lists = [list(v) for v in _value_lists(block)]
        sets.extend(dict(zip(names, combo)) for combo in itertools.product(*lists))
    return sets


def check_regular_file(path: str | os.PathLike, what: str, max_bytes: int) -> Path:
    """``path`` as a Path when it is a regular file of at most ``max_bytes``; else a
    ConfigError (FileNotFoundError when missing) naming it: a device (/dev/zero), a pipe or a
    folder would be read without end or fail late."""
    path = Path(path)
    if str(path).strip() in ("", "."):
        raise ConfigError(f"{what} {str(path)!r} is not allowed: expected a file path")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise OSError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path} is a folder: expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            f"{what} {path} is not a regular file (a device, pipe or socket): expected a file"
        )
    if st.st_size > max_bytes:
        raise ConfigError(
            f"{what} {path} is {st.st_size:,} bytes: at most {max_bytes:,} are allowed"
        )
    return path


def load_grid(path: str | os.PathLike) -> Any:
    """Read a YAML (or JSON) grid file: a dict of lists, or a list of dicts of lists.

    Only a regular file of at most :data:`MAX_GRID_BYTES` is read (ConfigError otherwise)."""
    import yaml

    path = check_regular_file(path, "grid file", MAX_GRID_BYTES)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_GRID_BYTES + 1)  # bounded even if the file grew since its stat
        if len(raw) > MAX_GRID_BYTES:
            raise ConfigError(f"grid file {path}: at most {MAX_GRID_BYTES:,} bytes are allowed")
        grid = yaml.safe_load(raw.decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"grid file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"grid file {path} is not a text file: {exc}") from None
    except OSError as exc:
        raise OSError(f"cannot read grid file {path}: {exc.strerror or exc}") from None
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


def _check_overrides(
    overrides: Mapping[str, Any] | None,
    sets: list[dict[str, Any]],
    fixed: Mapping[str, Any],
    preset: str | None,
) -> None:
    """Refuse an override of a field the grid sets (it would be silently replaced)."""
    what = f"preset {preset!r}" if preset else "the grid"
    for knob in overrides or {}:
        values = [p[knob] for p in sets if knob in p]
        if values:
            shown = ", ".join(dict.fromkeys(_short(v) for v in values))
            raise ConfigError(
                f"--set {knob}={_short(overrides[knob])}: {what} sets {knob} itself "
                f"({shown}), so the override would be ignored; drop it, or "
                + ("give your own values in a --grid file" if preset else "change the grid")
            )
        if knob == "seed":
            raise ConfigError(
                f"--set seed={_short(overrides[knob])}: a sweep's seeds come from --seeds "
                "(N: seeds 0..N-1), so the override would be ignored"
            )
        if knob in fixed and fixed[knob] != overrides[knob]:
            raise ConfigError(
                f"--set {knob}={_short(overrides[knob])}: {what} fixes {knob}="
                f"{_short(fixed[knob])} for these values, so the override would be ignored"
            )


def _seed_list(seeds: int | Sequence[int], grid: Any) -> list[int]:
    """The seeds, within :data:`MAX_SEEDS`, and the sweep within :data:`MAX_RUNS` runs
    (counted before anything is expanded)."""
    n_seeds = seeds if isinstance(seeds, int) else len(seeds)
    if n_seeds > MAX_SEEDS:
        raise ConfigError(
            f"seeds={n_seeds:,} is not allowed: at most {MAX_SEEDS:,} seeds per setting"
        )
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("seeds must be at least 1 (or a non-empty list)")
    n_sets = grid_size(grid)
    if n_sets * n_seeds > MAX_RUNS:
        raise ConfigError(
            f"the sweep would plan {n_sets:,} parameter sets x {n_seeds:,} seeds = "
            f"{n_sets * n_seeds:,} runs ({n_sets * n_seeds:.2g}); at most {MAX_RUNS:,} are "
            "allowed: split it into smaller sweeps"
        )
    return seed_list


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
    ``overrides`` change the base Config for the whole sweep (e.g. ``max_epochs=50``); one
    of a field the grid sets (a preset's swept knob) is refused with a ConfigError.
    """
    if isinstance(grid, Sweep):
        return grid
    base_cfg = _as_config(base)
    if overrides:
        base_cfg = base_cfg.replace(**dict(overrides))
    fixed: dict[str, Any] = {}
    preset = None
    if isinstance(grid, str):
        preset = grid
        grid, fixed = preset_grid(preset, base_cfg)
        name = name or preset
        default_seeds = KNOBS_SEEDS if preset == "knobs" else PROFILES["paper"].seeds
    else:
        default_seeds = 1
    if seeds is None:
        seeds = default_seeds
    seed_list = _seed_list(seeds, grid)
    sets = expand_grid(grid)
    _check_overrides(overrides, sets, fixed, preset if isinstance(preset, str) else None)
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
                check_inputs(c)  # device, data_dir, IDX files, n_test: before any training
                configs.setdefault(c.key(), c)
        except ConfigError as exc:
            raise ConfigError(f"grid parameter set {i} {dict(params)}: {exc}") from None
    cfgs = list(configs.values())
    dicts = [c.to_dict() for c in cfgs]
    varying = tuple(
        n for n in FIELD_NAMES if n != "seed" and len({json.dumps(d[n]) for d in dicts}) > 1
    ) + (("seed",) if len({d["seed"] for d in dicts}) > 1 else ())
    if name is None:
        name = "grid-" + digest([c.key() for c in cfgs])[:8]
    meta = {
        "grid": grid if isinstance(grid, (dict, list)) else None,
        "fixed": fixed,
        "base": base_cfg.to_dict(),
        "seeds": seed_list,
    }
    return Sweep(name=name, configs=cfgs, base=base_cfg, varying=varying, meta=meta)


def digest(items: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(items).encode()).hexdigest()
