"""What the notebooks share: profiles, grids, seeds, sweeps, verdicts and records.

A notebook's ``parameters`` cell holds literals only; this module turns them into Configs
(validated, with errors naming the parameter), runs sweeps through the cache, and gives the
numbers every notebook formats, tabulates and records, so that the notebooks themselves stay
a few lines per cell. The sentences a notebook shows after each figure, written from the
numbers of this run, are in ``knob_takeaways`` (knob sweeps), ``run_takeaways`` (one run's
decomposition), ``landscape_takeaways`` (notebook 02) and ``learner_comparison`` (notebook 09).

The profiles (``smoke``, ``quick``, ``paper``: values per knob, seeds, workers) live in
``awbench.experiments.grids``, shared with the sweep presets.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from awbench.config import Config
from awbench.experiments import record_names as rn
from awbench.experiments.effects import SUMMARY_COLUMNS, converged_runs, effects
from awbench.experiments.grids import (
    PROFILES,
    VERDICT_QUANTITIES,
    check_profile,
    knob_values,
    verdict_family,
)
from awbench.status import CONVERGED, DONE_STATUSES

RUN_COLUMNS = ["value", "seed", *SUMMARY_COLUMNS]


def setup(threads: int = 1) -> None:
    """One torch thread (small MLPs run fastest so) and plotly figures as mime bundles, which
    JupyterLab renders and the report re-embeds with one offline copy of plotly.js."""
    import plotly.io as pio
    import torch

    torch.set_num_threads(threads)
    pio.renderers.default = "plotly_mimetype"


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


# --- running ---------------------------------------------------------------------------


def store_path(store: str = "") -> str:
    """The sweep store folder: ``store`` or, when empty, ``<awbench cache>/store`` (shared by
    all notebooks; a run is stored once under its config key)."""
    from awbench.cache import cache_dir

    return store or str(cache_dir() / "store")


def _with_columns(runs: pd.DataFrame, knob: str | None) -> pd.DataFrame:
    runs = runs.copy()
    # ok: has analysis numbers (drawn, hollow when unconverged); converged: counts as a result.
    runs["ok"] = (
        runs["status"].isin(DONE_STATUSES)
        & runs.get("pair_gap", pd.Series(np.nan, index=runs.index)).notna()
    )
    runs["converged"] = runs["ok"] & (runs["status"] == CONVERGED)
    if knob is not None:
        runs.insert(0, "knob", knob)
        runs.insert(1, "value", runs[knob])
    return runs.sort_values(list(dict.fromkeys(c for c in (knob, "seed") if c))).reset_index(
        drop=True
    )


def workers_for(profile: str, workers: int = 0) -> int:
    """``workers`` or, when 0, the profile's number of sweep processes."""
    check_profile(profile)
    if workers < 0:
        raise ValueError(
            f"workers={workers} is not allowed: expected 0 (the profile's) or a positive integer"
        )
    return workers or PROFILES[profile].workers


def sweep(
    base: Config,
    knob: str,
    values: Sequence,
    seed_list: Sequence[int],
    workers: int = 1,
    store: str = "",
) -> pd.DataFrame:
    """Run ``knob`` over ``values`` x ``seed_list`` and return its rows of the sweep store.

    One row per run: every Config field, status, timings and every Analysis scalar, plus
    ``knob``, ``value`` and ``ok``. Runs already in the store are read back; the rest go
    through ``run_experiment``'s cache on a process pool of ``workers``. Diverged runs are
    kept with ``ok`` False.
    """
    try:
        from awbench.experiments.sweep import run_sweep
    except ImportError:  # the sweep module is optional: fall back to a plain loop
        return _loop(base, knob, values, seed_list)
    from awbench.progress import interactive

    report = run_sweep(
        {knob: list(values)},
        store_path(store),
        seeds=list(seed_list),
        base=base,
        name=f"notebook-{knob}-{base.key()[:8]}",
        workers=workers,
        quiet=not interactive(),
    )
    return _with_columns(report.load().runs, knob)


def _loop(
    base: Config, knob: str | None, values: Sequence, seed_list: Sequence[int]
) -> pd.DataFrame:
    from awbench.experiments.experiment import run_experiment
    from awbench.progress import progress

    configs = [
        base.replace(**({knob: v} if knob else {}), seed=s) for v in values for s in seed_list
    ]
    rows = []
    for res in (
        run_experiment(c) for c in progress(configs, total=len(configs), desc=f"sweep {knob}")
    ):
        rows.append(
            {
                **res.config.to_dict(),
                "status": res.status,
                "reason": res.reason,
                "epochs": res.epochs,
                "train_seconds": res.train_seconds,
                "key": res.config.key(),
                **res.scalars,
            }
        )
    return _with_columns(pd.DataFrame(rows), knob)


def runs_over_seeds(
    cfg: Config, seed_list: Sequence[int], workers: int = 1, store: str = ""
) -> pd.DataFrame:
    """One row per seed of ``cfg`` (nothing else varied), from the sweep store."""
    return sweep(cfg, "seed", list(seed_list), [cfg.seed], workers, store).drop(
        columns=["knob", "value"]
    )


# --- numbers, verdicts and records -----------------------------------------------------------------


def fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.0f} %"


# Per-run columns a knob notebook records, so that the report can pool every knob into one
# verdict table and draw every run, converged or not.
RUN_RECORD_COLUMNS = [
    *RUN_COLUMNS,
    "status",
    "converged",
    "epochs",
    "final_train_loss",
    "final_train_acc",
]


def verdicts(runs_by_knob: dict[str, pd.DataFrame], profile: str) -> pd.DataFrame:
    """The verdict table of these sweeps (awbench.experiments.verdicts), corrected for the
    whole table of ``profile`` (every knob x quantity), so that a notebook sweeping two knobs
    gives each the verdict the report gives it."""
    from awbench.experiments.verdicts import verdict_table

    return verdict_table(
        runs_by_knob, quantities=VERDICT_QUANTITIES, family=verdict_family(profile)
    )


def knob_records(runs: pd.DataFrame, knob: str, profile: str) -> dict[str, Any]:
    """The numbers a knob notebook records, named ``<knob>.<quantity>``."""
    e = effects(runs, knob)
    keys = [
        "n_runs",
        "n_failed",
        "n_left_out",
        "max_duality_error",
        "max_identity_error",
        "sharp_share",
        "estimate_rel_error",
        "real_gap_low",
        "real_gap_high",
        "real_gap_change",
        "real_gap_rho",
        "sharpness_change",
        "sharpness_rho",
        "size_change",
        "size_rho",
        "curvature_change",
        "weight_norm_change",
        "test_error_change",
    ]
    out: dict[str, Any] = {rn.knob_record(knob, k): e[k] for k in keys if k in e}
    # effects() leaves these out when no run converged; the report reads them, so record
    # NaN (shown as n/a) rather than leave a gap it would flag as a missing record.
    for q in (
        rn.SHARPNESS_CHANGE,
        rn.SIZE_CHANGE,
        rn.CURVATURE_CHANGE,
        rn.WEIGHT_NORM_CHANGE,
        rn.REAL_GAP_CHANGE,
        rn.REAL_GAP_LOW,
        rn.REAL_GAP_HIGH,
    ):
        out.setdefault(rn.knob_record(knob, q), math.nan)
    out[rn.knob_record(knob, rn.VALUES)] = [float(v) for v in sorted(runs[knob].unique())]
    out[rn.knob_record(knob, rn.N_SEEDS)] = int(runs.groupby(knob).size().max())
    out[f"{knob}.n_converged"] = len(converged_runs(runs))
    table = verdicts({knob: runs}, profile)
    for row in table.itertuples():
        out[f"{knob}.verdict.{row.quantity}"] = row.verdict
    out[rn.knob_record(knob, rn.VERDICT)] = which_factor(table)
    with_numbers = runs[runs["ok"]] if "ok" in runs else runs
    out[rn.knob_record(knob, rn.RUNS)] = {
        c: [v if isinstance(v, str) else float(v) for v in with_numbers[c]]
        for c in RUN_RECORD_COLUMNS
        if c in with_numbers
    }
    return out


def which_factor(table: pd.DataFrame) -> str:
    """One line from a knob's verdict rows: each factor and the curvature part, in the words
    of :func:`awbench.experiments.verdicts.verdict_words` (the same everywhere)."""
    from awbench.experiments.verdicts import verdict_words

    rows = {r.quantity: r for r in table.itertuples()}
    factors = [q for q in ("sharpness", "size", "curvature") if q in rows]
    if not factors:
        return "no verdict"
    return "; ".join(f"{q} {verdict_words(rows[q])}" for q in factors)


def effects_table(runs_by_knob: dict[str, pd.DataFrame], profile: str) -> pd.DataFrame:
    """One row per knob: relative change of sharpness, size, the curvature part and the real
    gap (converged runs), the verdict per quantity and how many runs were left out."""
    table = verdicts(runs_by_knob, profile)
    rows = []
    for knob, runs in runs_by_knob.items():
        e = effects(runs, knob)
        vals = sorted(runs[knob].unique())
        v = table[table["knob"] == knob]
        verdict = dict(zip(v["quantity"], v["verdict"]))
        rows.append(
            {
                "knob": knob,
                "values": f"{vals[0]:g} → {vals[-1]:g}",
                "sharpness_change": e.get("sharpness_change", float("nan")),
                "size_change": e.get("size_change", float("nan")),
                "curvature_change": e.get("curvature_change", float("nan")),
                "gap_change": e.get("real_gap_change", float("nan")),
                "sharpness_verdict": verdict.get("sharpness", "n/a"),
                "size_verdict": verdict.get("size", "n/a"),
                "curvature_verdict": verdict.get("curvature", "n/a"),
                "gap_verdict": verdict.get("real_gap", "n/a"),
                "left_out": int(e.get("n_left_out", 0)),
                "verdict": which_factor(v) if len(v) else "no runs",
            }
        )
    return pd.DataFrame(rows)


def record_sweeps(runs_by_knob: dict[str, pd.DataFrame], profile: str) -> None:
    """Record every knob's numbers (:func:`knob_records`) and the worst duality and identity
    errors over all runs, as each knob notebook's last cell does."""
    from awbench.experiments.records import record

    for knob, runs in runs_by_knob.items():
        for name, value in knob_records(runs, knob, profile).items():
            record(name, value)
    all_runs = pd.concat(runs_by_knob.values(), ignore_index=True)
    record(rn.DUALITY_ERROR, float(all_runs["duality_error"].max()))
    record(rn.IDENTITY_ERROR, float(all_runs["identity_error"].max()))


def summary_table(runs: pd.DataFrame, knob: str) -> pd.DataFrame:
    """Mean ± sd per knob value of the main columns over converged runs, formatted for
    display; a value without a converged run says so."""
    all_runs = runs.groupby(knob).size()
    ok = converged_runs(runs)
    g = ok.groupby(knob)
    mean, sd = g[SUMMARY_COLUMNS].mean(), g[SUMMARY_COLUMNS].std(ddof=1).fillna(0.0)
    cells = {
        c: [
            f"{mean.loc[v, c]:.4g} ± {sd.loc[v, c]:.2g}" if v in mean.index else "no converged run"
            for v in all_runs.index
        ]
        for c in SUMMARY_COLUMNS
    }
    table = pd.DataFrame(cells, index=all_runs.index)
    table.insert(0, "converged runs", g.size().reindex(all_runs.index, fill_value=0))
    table.insert(1, "runs", all_runs)
    return table
