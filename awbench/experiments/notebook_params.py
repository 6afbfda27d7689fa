"""A notebook's parameters into Configs, seeds, knob values and worker counts.

A notebook's ``parameters`` cell holds literals only, so that papermill can set them; this
module turns them into validated objects, with errors naming the parameter. The profiles
(``smoke``, ``quick``, ``paper``: values per knob, seeds, workers) live in
:mod:`awbench.experiments.grids`, shared with the sweep presets; notebook 02's landscape
settings per profile are here.
"""

from __future__ import annotations

import re
from typing import Any

from awbench.config import Config
from awbench.experiments.grids import PROFILES, check_profile, knob_values


def parse_overrides(overrides: str) -> dict[str, str]:
    """``"weight_decay: 0.01, dropout: 0.1"`` (or ``=`` instead of ``:``) -> a dict of strings
    for ``Config.replace``, which validates and converts each value."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in overrides.split(",")):
        if not part:
            continue
        m = re.match(r"^([A-Za-z_]\w*)\s*[:=]\s*(.+)$", part)
        if not m:
            raise ValueError(
                f"overrides={overrides!r} is not allowed: expected 'name: value, ...' pairs of Config fields "
                f"(got {part!r})"
            )
        out[m.group(1)] = m.group(2).strip()
    return out


def base_config(
    profile: str, dataset: str = "digits", overrides: str = "", **fields: Any
) -> Config:
    """The profile's base Config for ``dataset`` with the notebook's knob values applied.

    smoke uses the seconds-fast smoke preset; quick and paper the paper preset (MNIST-1D:
    its own preset; MNIST/Fashion-MNIST: the demo's 4000/1000 split). Every value goes
    through Config's validation, so a bad one fails naming the field.
    """
    check_profile(profile)
    if profile == "smoke":
        base = Config.preset("smoke").replace(dataset=dataset)
    elif dataset == "mnist1d":
        base = Config.preset("mnist1d")
    elif dataset in ("mnist", "fashion_mnist"):
        base = Config.preset("paper-mnist").replace(dataset=dataset)
    else:
        base = Config.preset("paper").replace(dataset=dataset)
    return base.replace(**fields, **parse_overrides(overrides))


def config_text(cfg: Config) -> str:
    """Markdown: the run's settings that differ from the paper preset."""
    diff = cfg.diff()
    if not diff:
        return "Settings: the paper preset (docs/science.md#4-the-demo-protocol-and-awbenchs-presets on the bundled digits), unchanged."
    return (
        "Settings that differ from the paper preset: "
        + ", ".join(_code_span(f"{k}={v}") for k, v in diff.items())
        + "."
    )


def _code_span(text: str) -> str:
    """``text`` as a Markdown code span that no backtick inside it can close early."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def seeds(profile: str, seed: int = 0, n_seeds: int = 0) -> list[int]:
    """``n_seeds`` consecutive seeds from ``seed`` (0: the profile's number)."""
    check_profile(profile)
    if n_seeds < 0:
        raise ValueError(
            f"n_seeds={n_seeds} is not allowed: expected 0 (the profile's) or a positive integer"
        )
    n = n_seeds or PROFILES[profile].seeds
    return list(range(seed, seed + n))


def parse_grid(name: str, text: str) -> list[float]:
    """``"25, 100, 400"`` -> [25, 100, 400]; errors name the parameter ``name``."""
    try:
        vals = [float(p) for p in text.replace(";", ",").split(",") if p.strip()]
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is not allowed: expected comma-separated numbers, e.g. '0, 0.01'"
        ) from None
    if not vals:
        raise ValueError(f"{name}={text!r} is not allowed: expected at least one number")
    return [int(v) if v == int(v) and abs(v) >= 1 else v for v in vals]


def knob_grid(knob: str, profile: str, base: Config, override: str = "") -> list:
    """Values of ``knob`` to sweep: ``override`` (comma-separated) or the profile's values
    scaled to the dataset (``awbench.experiments.grids``), each validated through Config (the
    error names the field)."""
    check_profile(profile)
    if override.strip():
        values = parse_grid(f"{knob}_grid", override)
    else:
        values = knob_values(knob, profile, base)
    for v in values:
        base.replace(**{knob: v})
    return list(values)


def workers_for(profile: str, workers: int = 0) -> int:
    """``workers`` or, when 0, the profile's number of sweep processes."""
    check_profile(profile)
    if workers < 0:
        raise ValueError(
            f"workers={workers} is not allowed: expected 0 (the profile's) or a positive integer"
        )
    return workers or PROFILES[profile].workers


# Notebook 02's spectrum and landscape: points per slice, grid per plane, trace probes, SLQ.
LANDSCAPE = {
    "smoke": {"points": 15, "grid": 9, "probes": [10, 30], "density_probes": 2, "steps": 20},
    "quick": {
        "points": 41,
        "grid": 21,
        "probes": [10, 30, 100, 300],
        "density_probes": 4,
        "steps": 60,
    },
    "paper": {
        "points": 81,
        "grid": 41,
        "probes": [10, 30, 100, 300, 1000],
        "density_probes": 8,
        "steps": 100,
    },
}


def landscape_settings(profile: str) -> dict:
    """Grid sizes, trace probe counts and SLQ settings of the profile."""
    return dict(LANDSCAPE[check_profile(profile)])
