"""What the notebooks share: profiles, grids, seeds, sweeps and computed takeaways.

A notebook's ``parameters`` cell holds literals only; this module turns them into Configs
(validated, with errors naming the parameter), runs sweeps through the cache, and writes the
sentences a notebook shows after each figure from the numbers of this run, so that the
notebooks themselves stay a few lines per cell.

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

from awbench.analysis.decomposition import curved_directions, spearman
from awbench.config import Config
from awbench.curvature.hessian import eigen_check
from awbench.experiments import record_names as rn
from awbench.experiments.effects import SUMMARY_COLUMNS, converged_runs, effects, size_norm_slope
from awbench.experiments.grids import PROFILES, check_profile, knob_values
from awbench.landscape import rayleigh_ratio
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
        + ", ".join(f"`{k}={v}`" for k, v in diff.items())
        + "."
    )


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


# --- numbers and takeaways -------------------------------------------------------------------


def fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.0f} %"


VERDICT_QUANTITIES = ("sharpness", "size", "sharp_gap", "flat_gap", "real_gap")
# Per-run columns a knob notebook records, so that the report can pool every knob into one
# verdict table (one Holm family) and draw every run, converged or not.
RUN_RECORD_COLUMNS = [*RUN_COLUMNS, "status", "epochs", "final_train_loss", "final_train_acc"]


def verdicts(runs_by_knob: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The verdict table of these sweeps (awbench.experiments.verdicts: converged runs only, bootstrap
    interval over seeds, Holm over every comparison of the table)."""
    from awbench.experiments.verdicts import verdict_table

    return verdict_table(runs_by_knob, quantities=VERDICT_QUANTITIES)


def knob_records(runs: pd.DataFrame, knob: str) -> dict[str, Any]:
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
        "weight_norm_change",
        "test_error_change",
    ]
    out: dict[str, Any] = {rn.knob_record(knob, k): e[k] for k in keys if k in e}
    # effects() leaves these out when no run converged; the report reads them, so record
    # NaN (shown as n/a) rather than leave a gap it would flag as a missing record.
    for q in (
        rn.SHARPNESS_CHANGE,
        rn.SIZE_CHANGE,
        rn.WEIGHT_NORM_CHANGE,
        rn.REAL_GAP_CHANGE,
        rn.REAL_GAP_LOW,
        rn.REAL_GAP_HIGH,
    ):
        out.setdefault(rn.knob_record(knob, q), math.nan)
    out[rn.knob_record(knob, rn.VALUES)] = [float(v) for v in sorted(runs[knob].unique())]
    out[rn.knob_record(knob, rn.N_SEEDS)] = int(runs.groupby(knob).size().max())
    out[f"{knob}.n_converged"] = len(converged_runs(runs))
    table = verdicts({knob: runs})
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
    """One line from a knob's verdict rows: which factor moved, by the stated rule."""
    v = dict(zip(table["quantity"], table["verdict"]))
    moved = [q for q in ("sharpness", "size") if v.get(q) in ("up", "down")]
    if "not enough data" in (v.get("sharpness"), v.get("size")):
        return "not enough converged runs for a verdict"
    if not moved:
        return "neither factor changed clearly (Holm-corrected, converged runs only)"
    words = {"sharpness": "sharpness", "size": "size"}
    return ", ".join(f"{words[q]} {v[q]}" for q in moved) + (
        "; the other factor: no clear change" if len(moved) == 1 else ""
    )


def verdict_text(row) -> str:
    """``sharpness: up, ρ = 0.71 [0.52, 0.85], Holm p = 0.004``."""
    return (
        f"{row.quantity.replace('_', ' ')}: **{row.verdict}**, ρ = {fmt(row.rho, 2)} "
        f"[{fmt(row.rho_low, 2)}, {fmt(row.rho_high, 2)}], Holm p = {fmt(row.p_monotone_holm, 2)}"
    )


def _span(runs: pd.DataFrame, knob: str) -> str:
    from awbench.viz.gap_plots import knob_label

    vals = sorted(runs[knob].unique())
    n = int(runs.groupby(knob).size().max())
    return (
        f"{knob_label(knob)} {vals[0]:g} → {vals[-1]:g} ({n} seed{'s' if n != 1 else ''} per value)"
    )


def gap_takeaway(runs: pd.DataFrame, knob: str) -> str:
    """Markdown: what the knob did to the gap, and how the sharp/flat split and the estimate
    followed."""
    e = effects(runs, knob)
    if "real_gap_low" not in e:
        return f"**{knob}:** no run converged; nothing to report."
    ok = converged_runs(runs)
    share = ok.groupby(knob)[["sharp_gap", "pair_gap"]].mean()
    share = share["sharp_gap"] / share["pair_gap"]
    noisy = abs(e["real_gap_high"] - e["real_gap_low"]) <= e["real_gap_seed_sd"]
    text = (
        f"**{_span(runs, knob)}:** real gap {fmt(e['real_gap_low'])} → {fmt(e['real_gap_high'])} nats "
        f"({pct(e['real_gap_change'])}, Spearman ρ with the knob = {fmt(e['real_gap_rho'], 2)})"
        + (", within the seed-to-seed spread" if noisy else "")
        + f". The sharp part carries {fmt(100 * share.iloc[0], 2)} % of the exact gap at the first value and "
        f"{fmt(100 * share.iloc[-1], 2)} % at the last; the Σ cσσ estimate stays within a median "
        f"{fmt(100 * e['estimate_rel_error'], 2)} % of the real gap."
    )
    return text + _left_out_text(e)


def factor_takeaway(runs: pd.DataFrame, knob: str) -> str:
    """Markdown: which factor the knob moved, with changes and the verdicts with intervals."""
    e = effects(runs, knob)
    if "real_gap_low" not in e:
        return f"**{knob}:** no run converged; nothing to report."
    table = verdicts({knob: runs})
    lines = "; ".join(verdict_text(r) for r in table.itertuples())
    return (
        f"**{_span(runs, knob)}:** sharpness Σσg² {fmt(e['sharpness_low'])} → {fmt(e['sharpness_high'])} "
        f"({pct(e['sharpness_change'])}); size Σσw² {fmt(e['size_low'])} → {fmt(e['size_high'])} "
        f"({pct(e['size_change'])}); layer weight norm {pct(e['weight_norm_change'])}. "
        f"Verdicts over {int(e['n_runs'] - e['n_left_out'])} converged runs "
        f"({table.attrs.get('n_comparisons', len(table))} comparisons, Holm-corrected): {lines}. "
        f"**{which_factor(table)}.**" + _left_out_text(e)
    )


def _left_out_text(e: dict) -> str:
    n = int(e.get("n_left_out", 0))
    return f" {n} run(s) did not converge or failed and are left out." if n else ""


def plane_takeaway(runs: pd.DataFrame) -> str:
    """Markdown: how the real gap ranks against sharpness, size and their geometric mean."""
    ok = converged_runs(runs)
    both = np.sqrt(ok["sharpness"] * ok["size"])
    rhos = {
        "sharpness": spearman(ok["sharpness"], ok["real_gap"]),
        "size": spearman(ok["size"], ok["real_gap"]),
        "√(sharpness·size)": spearman(both, ok["real_gap"]),
    }
    finite = {k: v for k, v in rhos.items() if math.isfinite(v)}
    text = (
        f"Over these {len(ok)} runs the real gap ranks with sharpness at Spearman ρ = {fmt(rhos['sharpness'], 2)}, "
        f"with size at {fmt(rhos['size'], 2)} and with √(sharpness·size) (the Cauchy–Schwarz bound on Σ σg σw) "
        f"at {fmt(rhos['√(sharpness·size)'], 2)}"
    )
    if not finite:
        return text + "."
    best, rho = max(finite.items(), key=lambda t: t[1])
    if rho <= 0:
        return (
            text
            + ": in this sweep no factor grows with the gap (a negative ρ means the gap fell as it grew)."
        )
    negative = [k for k, v in finite.items() if v < 0]
    note = f"; {' and '.join(negative)} moved against the gap here" if negative else ""
    return text + f": **{best}** follows the gap most closely{note}."


def metric_takeaway(runs: pd.DataFrame, knob: str, metric: str) -> str:
    """Markdown: the metric at each end of the sweep, its change and rank correlation."""
    ok = converged_runs(runs)
    m = ok.groupby(knob)[metric].mean()
    return (
        f"**{_span(runs, knob)}:** {metric.replace('_', ' ')} {fmt(m.iloc[0])} → {fmt(m.iloc[-1])} "
        f"(best {fmt(m.min())} at {knob} = {m.idxmin():g}; Spearman ρ with the knob = "
        f"{fmt(spearman(ok[knob], ok[metric]), 2)})."
    )


def size_norm_takeaway(runs: pd.DataFrame) -> str:
    """Markdown: how closely size follows the weight norm across the runs given."""
    ok = converged_runs(runs)
    slope, rho = size_norm_slope(ok), spearman(ok["weight_norm"], ok["size"])
    return (
        f"Across {len(ok)} runs of {', '.join(sorted(ok['knob'].unique()))} the weight norm spans "
        f"{fmt(ok['weight_norm'].min())} … {fmt(ok['weight_norm'].max())} and size Σσw² spans "
        f"{fmt(ok['size'].min())} … {fmt(ok['size'].max())}: Spearman ρ = **{fmt(rho, 2)}**, log-log slope "
        f"**{fmt(slope, 3)}** (2 would mean size ∝ ‖W‖² at fixed activity changes; activity changes Δa move "
        "too, since the earlier layer is trained along with this one)."
    )


def knob_takeaway(runs: pd.DataFrame, knob: str) -> str:
    """Both paragraphs at once (gap, then factors)."""
    return gap_takeaway(runs, knob) + "\n\n" + factor_takeaway(runs, knob)


def estimate_takeaway(runs: pd.DataFrame) -> str:
    ok = runs[runs["ok"]] if "ok" in runs else runs
    rel = (ok["estimated_gap"] - ok["real_gap"]).abs() / ok["real_gap"].abs()
    rel_pair = (ok["pair_gap"] - ok["real_gap"]).abs() / ok["real_gap"].abs()
    r = (
        float(np.corrcoef(ok["real_gap"], ok["estimated_gap"])[0, 1])
        if len(ok) > 2
        else float("nan")
    )
    return (
        f"Over {len(ok)} runs the Σ cσσ estimate is within a median {fmt(100 * float(rel.median()), 2)} % "
        f"(worst {fmt(100 * float(rel.max()), 2)} %) of the real gap, Pearson r = {fmt(r, 4)}; the exact pair gap "
        f"⟨Δl⟩ differs from the real gap by a median {fmt(100 * float(rel_pair.median()), 2)} % "
        "(it averages over test samples paired with their nearest clean training sample, the real gap over "
        "the two sets separately)."
    )


def effects_table(runs_by_knob: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per knob: relative change of sharpness, size and the real gap (converged runs),
    the verdict per factor and how many runs were left out."""
    table = verdicts(runs_by_knob)
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
                "gap_change": e.get("real_gap_change", float("nan")),
                "sharpness_verdict": verdict.get("sharpness", "n/a"),
                "size_verdict": verdict.get("size", "n/a"),
                "gap_verdict": verdict.get("real_gap", "n/a"),
                "left_out": int(e.get("n_left_out", 0)),
                "verdict": which_factor(v) if len(v) else "no runs",
            }
        )
    return pd.DataFrame(rows)


def record_sweeps(runs_by_knob: dict[str, pd.DataFrame]) -> None:
    """Record every knob's numbers (:func:`knob_records`) and the worst duality and identity
    errors over all runs, as each knob notebook's last cell does."""
    from awbench.experiments.records import record

    for knob, runs in runs_by_knob.items():
        for name, value in knob_records(runs, knob).items():
            record(name, value)
    all_runs = pd.concat(runs_by_knob.values(), ignore_index=True)
    record(rn.DUALITY_ERROR, float(all_runs["duality_error"].max()))
    record(rn.IDENTITY_ERROR, float(all_runs["identity_error"].max()))


def convergence_takeaway(runs: pd.DataFrame, by: Sequence[str]) -> str:
    """Markdown: how many runs met the stopping rule per setting, and what the others did."""
    counts = runs.groupby(list(by))["status"].value_counts().unstack(fill_value=0)
    n_conv = int((runs["status"] == CONVERGED).sum())
    text = f"**{n_conv} of {len(runs)} runs met the stopping rule.**"
    if n_conv < len(runs):
        worst = counts.drop(columns=[CONVERGED], errors="ignore").sum(axis=1)
        settings = ", ".join(
            "/".join(str(v) for v in (k if isinstance(k, tuple) else (k,))) + f" ({int(n)})"
            for k, n in worst[worst > 0].items()
        )
        text += f" Left out of every comparison: {settings}."
    return text


# The multi-learner comparison: SSGD is a, DPSGD is b, paired by seed.
PAIRED_ALGORITHMS = ("ssgd", "dpsgd")


def algorithm_pairs(runs: pd.DataFrame, n_learners: int, quantities: Sequence[str]) -> pd.DataFrame:
    """One row per seed: each algorithm's status and quantities at ``n_learners`` learners."""
    at = runs[runs["n_learners"] == n_learners]
    frames = []
    for alg in PAIRED_ALGORITHMS:
        part = at[at["algorithm"] == alg].set_index("seed")
        cols = {"status": f"status_{alg}", **{q: f"{q}_{alg}" for q in quantities}}
        frames.append(part[[c for c in cols if c in part]].rename(columns=cols))
    pairs = frames[0].join(frames[1], how="inner").reset_index()
    return pairs.sort_values("seed").reset_index(drop=True)


def compare_algorithms(pairs: pd.DataFrame) -> dict:
    """DPSGD minus SSGD over seed pairs where both converged: per-quantity paired comparison
    and the verdict of each paper claim (awbench.experiments.verdicts)."""
    from awbench.experiments.verdicts import CLAIMS, claim_verdicts, paired_comparison

    both = pairs[(pairs["status_ssgd"] == CONVERGED) & (pairs["status_dpsgd"] == CONVERGED)]
    both = both.set_index("seed")
    quantities = ("real_gap", "sharpness", "size")
    comparisons = (
        {q: paired_comparison(both[f"{q}_ssgd"], both[f"{q}_dpsgd"]) for q in quantities}
        if len(both) >= 2
        else {}
    )
    claims = claim_verdicts(
        pd.DataFrame(),
        [c for c in CLAIMS if c.knob == "algorithm"],
        comparisons=comparisons or None,
    )
    return {
        "n_pairs": len(pairs),
        "n_converged_pairs": len(both),
        "comparisons": comparisons,
        "claims": claims,
        "agrees": bool(len(claims) and (claims["verdict"] == "supported").all()),
    }


def dpsgd_takeaway(comparison: dict, n_learners: int, topology: str) -> str:
    """Markdown: DPSGD against SSGD with intervals, and each claim's verdict."""
    n, n_ok = comparison["n_pairs"], comparison["n_converged_pairs"]
    head = (
        f"At n = {n_learners} learners ({topology} topology), {n_ok} of {n} seed pairs have both "
        "networks converged"
    )
    if not comparison["comparisons"]:
        return head + ": too few pairs for a comparison; no verdict on the paper's claim."
    parts = []
    for q, c in comparison["comparisons"].items():
        parts.append(
            f"{q.replace('_', ' ')} DPSGD − SSGD = {fmt(c['diff'])} "
            f"[{fmt(c['diff_low'])}, {fmt(c['diff_high'])}] ({pct(c['rel_diff'])}, p = {fmt(c['p'], 2)})"
        )
    claims = "; ".join(f"*{r.text}* → **{r.verdict}**" for r in comparison["claims"].itertuples())
    return (
        head + ". " + "; ".join(parts) + " (95 % bootstrap intervals over seed pairs, sign-flip "
        f"p-values, Holm over the three claims). Against the paper's claim: {claims}."
    )


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


def run_takeaway(res) -> str:
    """Markdown: how training ended and the resulting gap."""
    h, s = res.history, res.scalars
    return (
        f"Training **{res.status}** after {res.epochs} epochs ({fmt(res.train_seconds, 2)} s): "
        f"clean-train loss {fmt(h['train_loss'].iloc[-1])}, test error {fmt(100 * s['test_error'], 3)} %, "
        f"so the real generalization gap is **{fmt(s['real_gap'])} nats** "
        f"(test CE {fmt(s['test_loss'])} − train CE {fmt(s['train_loss'])})."
    )


def identity_takeaway(an) -> str:
    """Markdown: the exact identity and how much of it the cσσ estimate keeps."""
    return (
        f"Over {an.n_pairs} pairs the mean per-pair gap is ⟨Δl⟩ = **{fmt(an.pair_gap, 5)} nats**; the sum over "
        f"{len(an.directions)} directions of μg μw + c σg σw gives it back to **{an.identity_error:.1e}** "
        f"(exact up to rounding). The mean term Σ μg μw is {fmt(an.mean_term)} nats, so the paper's "
        f"estimate Σ c σg σw = {fmt(an.estimated_gap, 4)} nats keeps "
        f"{fmt(100 * an.estimated_gap / an.pair_gap, 3)} % of it; the real gap is {fmt(an.real_gap, 4)} nats."
    )


def spectra_takeaway(an, n_sharp: int = 10) -> str:
    """Markdown: how concentrated the gap is in the sharp directions."""
    d = an.directions
    n = n_sharp
    cum = d["contribution"].cumsum() / an.pair_gap
    n90 = int(np.argmax(cum.to_numpy() >= 0.9)) + 1 if (cum >= 0.9).any() else len(d)
    top = d.iloc[:n]
    return (
        f"σg falls from {fmt(d['sigma_g'].iloc[0])} to {fmt(d['sigma_g'].iloc[-1])} over {len(d)} directions. "
        f"The {n} sharpest carry **{fmt(100 * an.sharp_gap / an.pair_gap, 3)} %** of the exact gap "
        f"(sharp {fmt(an.sharp_gap, 4)} + flat {fmt(an.flat_gap, 4)} nats); {n90} directions reach 90 %. "
        f"Among the sharp ones c = {fmt(top['c'].mean(), 2)} ± {fmt(top['c'].std(ddof=0), 2)}, "
        f"over all directions {fmt(d['c'].mean(), 2)} ± {fmt(d['c'].std(ddof=0), 2)}."
    )


def strength(rho: float) -> str:
    a = abs(rho)
    if not math.isfinite(a):
        return "undefined"
    word = (
        "strong" if a >= 0.7 else ("moderate" if a >= 0.4 else ("weak" if a >= 0.2 else "no clear"))
    )
    return f"{word} {'positive' if rho > 0 else 'negative'}" if word != "no clear" else word


def factors_takeaway(an) -> str:
    """Markdown: sharpness against curvature, size against the weight norm."""
    d = curved_directions(an.directions)
    rho_g = spearman(d["lam"], d["sigma_g"])
    rho_r = spearman(d["lam"], d["sigma_g"] / d["sigma_w"])
    return (
        f"Sharpness Σσg² = **{fmt(an.sharpness)}**, size Σσw² = **{fmt(an.size)}** at a layer norm "
        f"‖W‖ = {fmt(an.weight_norm)}. Over the {len(d)} curved directions (λ > 1e-12 λ_max = {fmt(an.lam_max)}) "
        f"σg follows λ with Spearman ρ = **{fmt(rho_g, 2)}** ({strength(rho_g)} rank correlation); the ratio "
        f"σg/σw shows {strength(rho_r)} rank correlation with λ (ρ = {fmt(rho_r, 2)})."
    )


def second_order_takeaway(an) -> str:
    rel = an.second_order_error / abs(an.pair_gap) if an.pair_gap else float("nan")
    return (
        f"The second-order Taylor reading gives {fmt(an.second_order_gap, 4)} nats (first order "
        f"{fmt(an.first_order_term, 3)}, curvature term {fmt(an.second_order_term, 3)}) against the exact "
        f"{fmt(an.pair_gap, 4)}: off by **{fmt(100 * rel, 3)} %**. Dual weights are not small steps, so the "
        "quadratic picture is a guide, and the exact identity is what the decomposition uses."
    )


def layer_table(analyses: dict) -> pd.DataFrame:
    """One row per analysed layer: weights, gaps, sharp share, factors and both errors."""
    rows = []
    for name, an in analyses.items():
        rows.append(
            {
                "layer": name,
                "weights": an.n_weights,
                "pairs": an.n_pairs,
                "pair_gap": an.pair_gap,
                "estimated_gap": an.estimated_gap,
                "sharp_share": an.sharp_gap / an.pair_gap,
                "sharpness": an.sharpness,
                "size": an.size,
                "weight_norm": an.weight_norm,
                "identity_error": an.identity_error,
                "duality_error": an.duality_error,
            }
        )
    return pd.DataFrame(rows).set_index("layer")


def layer_takeaway(table: pd.DataFrame) -> str:
    best = table["sharp_share"].idxmax()
    spread = float(table["pair_gap"].max() - table["pair_gap"].min())
    same = (
        "is identical at every layer (same network, same pairs)"
        if spread < 1e-12
        else f"differs by {fmt(spread, 2)} nats between layers (pairs with a zero activity are dropped per layer)"
    )
    return (
        f"At all {len(table)} layers the identity closes to at most **{table['identity_error'].max():.1e}** and the "
        f"duality to {table['duality_error'].max():.1e}. The pair gap {same}; how it splits into directions "
        f"depends on the layer: the sharp part is largest at `{best}` ({fmt(100 * table.loc[best, 'sharp_share'], 3)} %)."
    )


# --- spectrum and landscape (notebook 02) -----------------------------------------------------

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


def spectrum_takeaway(eig, exact_values, trace_exact: float) -> str:
    err = eigen_check(eig.values, exact_values)
    top = float(eig.values.sum())
    return (
        f"The top {len(eig.values)} eigenvalues run from {fmt(float(eig.values[0]))} down to "
        f"{fmt(float(eig.values[-1]))}; all converged: {bool(eig.converged.all())}, largest relative error against "
        f"dense eigh **{err:.1e}**. Together they hold {fmt(100 * top / trace_exact, 3)} % of the trace "
        f"({fmt(trace_exact, 4)}): the curvature sits in a few directions."
    )


def trace_takeaway(table: pd.DataFrame, exact: float) -> str:
    last = table.iloc[-1]
    z = abs(last["estimate"] - exact) / last["stderr"] if last["stderr"] > 0 else float("nan")
    return (
        f"With {int(last['probes'])} probes the estimate is {fmt(last['estimate'], 5)} ± {fmt(last['stderr'], 2)} "
        f"(standard error) against the exact {fmt(exact, 5)}: {fmt(z, 2)} standard errors off. The error bar "
        "shrinks as 1/√probes, and it is reported, not hidden."
    )


def slices_takeaway(slices, fd: float) -> str:
    first = slices[0]
    worst = max(float(np.max(np.abs(s.loss - s.quadratic))) for s in slices)
    return (
        f"Along v1 the loss rises as the quadratic ½λt² predicts near 0: a second finite difference (h = 1e-5) gives "
        f"{fmt(fd, 5)} against λ1 = {fmt(first.curvature, 5)} (relative error "
        f"{abs(fd - first.curvature) / abs(first.curvature):.1e}). Further out the true loss departs from the "
        f"quadratic by up to {fmt(worst, 3)} nats over these slices."
    )


def curvature_takeaway(table: pd.DataFrame, lam_max: float) -> str:
    mean = table.groupby("kind")["rayleigh"].mean()
    dual, rand = float(mean.get("dual weight", np.nan)), float(mean.get("random", np.nan))
    ratio = rayleigh_ratio(table)
    return (
        f"Per unit length the dual-weight directions see a curvature of {fmt(dual)} on average "
        f"({fmt(100 * dual / lam_max, 3)} % of λ_max), random filter-normalised directions {fmt(rand)} "
        f"({fmt(100 * rand / lam_max, 3)} %): dual weights point {fmt(ratio, 3)}× "
        f"{'more' if ratio >= 1 else 'less'} into curved directions than random ones."
    )


# --- the duality, pair by pair (notebook 01) ---------------------------------------------------
