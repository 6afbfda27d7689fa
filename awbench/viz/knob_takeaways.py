"""The sentences a knob notebook shows after each figure, written from the numbers of this
sweep: what the knob did to the gap, which factor moved (with the verdicts), how the gap
ranks in the (size, sharpness) plane, and how many runs converged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from awbench.analysis.decomposition import spearman
from awbench.experiments.effects import converged_runs, effects, size_norm_slope
from awbench.experiments.verdicts import profile_verdict_table, which_factor
from awbench.formatting import number, signed_percent
from awbench.status import CONVERGED


def _span(runs: pd.DataFrame, knob: str) -> str:
    from awbench.viz.gap_plots import knob_label

    # The ends the changes are measured between: the converged values (effects()).
    vals = sorted(runs[knob].unique())
    ends = sorted(converged_runs(runs)[knob].unique()) or vals
    missing = [v for v in vals if v not in ends]
    note = f"; no converged run at {', '.join(f'{v:g}' for v in missing)}" if missing else ""
    n = int(runs.groupby(knob).size().max())
    return (
        f"{knob_label(knob)} {ends[0]:g} → {ends[-1]:g} "
        f"({n} seed{'s' if n != 1 else ''} per value{note})"
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
        f"**{_span(runs, knob)}:** real gap {number(e['real_gap_low'])} → {number(e['real_gap_high'])} nats "
        f"({signed_percent(e['real_gap_change'])}, Spearman ρ with the knob = {number(e['real_gap_rho'], 2)})"
        + (", within the seed-to-seed spread" if noisy else "")
        + f". The sharp part carries {number(100 * share.iloc[0], 2)} % of the exact gap at the first value and "
        f"{number(100 * share.iloc[-1], 2)} % at the last; the Σ cσσ estimate stays within a median "
        f"{number(100 * e['estimate_rel_error'], 2)} % of the real gap."
    )
    return text + _left_out_text(e)


def factor_takeaway(runs: pd.DataFrame, knob: str, profile: str) -> str:
    """Markdown: which factor the knob moved, with changes and the verdicts with intervals
    (corrected for ``profile``'s whole table, as the report does)."""
    e = effects(runs, knob)
    if "real_gap_low" not in e:
        return f"**{knob}:** no run converged; nothing to report."
    table = profile_verdict_table({knob: runs}, profile)
    gap = table[table["quantity"] == "real_gap"]
    gap_line = ""
    if len(gap):
        from awbench.experiments.verdicts import verdict_words

        gap_line = f" Real gap {verdict_words(gap.iloc[0])}."
    return (
        f"**{_span(runs, knob)}:** sharpness Σσg² {number(e['sharpness_low'])} → {number(e['sharpness_high'])} "
        f"({signed_percent(e['sharpness_change'])}); size Σσw² {number(e['size_low'])} → {number(e['size_high'])} "
        f"({signed_percent(e['size_change'])}); their ratio, the curvature part Σσg²/Σσw², "
        f"{number(e['curvature_low'])} → {number(e['curvature_high'])} ({signed_percent(e['curvature_change'])}); "
        f"layer weight norm {signed_percent(e['weight_norm_change'])}. "
        f"Verdicts over {int(e['n_runs'] - e['n_left_out'])} converged runs (within-seed change "
        f"first → last value with its 95 % interval; tests corrected for the "
        f"{int(table.attrs['family'])} knob × quantity cells of the {profile} profile): "
        f"**{which_factor(table)}.**{gap_line}" + _left_out_text(e)
    )


def context_takeaway(runs: pd.DataFrame, context: pd.DataFrame, knob: str) -> str:
    """Markdown: a setting outside the swept range (``context``, e.g. the default init scale)
    next to the sweep's first value, over converged runs; it takes no part in a verdict."""
    ok, ctx = converged_runs(runs), converged_runs(context)
    if ok.empty or ctx.empty:
        return (
            f"No converged run at the context setting or in the {knob} sweep: nothing to compare."
        )
    first = ok[ok[knob] == ok[knob].min()]
    where = ", ".join(f"{v:g}" for v in sorted(ctx[knob].unique()))
    parts = [
        f"{label} {number(ctx[col].mean())} (at {knob} = {first[knob].iloc[0]:g}: {number(first[col].mean())})"
        for label, col in (
            ("real gap", "real_gap"),
            ("sharpness Σσg²", "sharpness"),
            ("size Σσw²", "size"),
            ("curvature part", "curvature"),
        )
    ]
    return (
        f"Context, not part of any verdict: at {knob} = {where} ({len(ctx)} converged runs) "
        + "; ".join(parts)
        + "."
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
        f"Over these {len(ok)} runs the real gap ranks with sharpness at Spearman ρ = {number(rhos['sharpness'], 2)}, "
        f"with size at {number(rhos['size'], 2)} and with √(sharpness·size) (the Cauchy–Schwarz bound on Σ σg σw) "
        f"at {number(rhos['√(sharpness·size)'], 2)}"
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
        f"**{_span(runs, knob)}:** {metric.replace('_', ' ')} {number(m.iloc[0])} → {number(m.iloc[-1])} "
        f"(best {number(m.min())} at {knob} = {m.idxmin():g}; Spearman ρ with the knob = "
        f"{number(spearman(ok[knob], ok[metric]), 2)})."
    )


def size_norm_takeaway(runs: pd.DataFrame) -> str:
    """Markdown: how closely size follows the weight norm across the runs given."""
    ok = converged_runs(runs)
    slope, rho = size_norm_slope(ok), spearman(ok["weight_norm"], ok["size"])
    return (
        f"Across {len(ok)} runs of {', '.join(sorted(ok['knob'].unique()))} the weight norm spans "
        f"{number(ok['weight_norm'].min())} … {number(ok['weight_norm'].max())} and size Σσw² spans "
        f"{number(ok['size'].min())} … {number(ok['size'].max())}: Spearman ρ = **{number(rho, 2)}**, log-log slope "
        f"**{number(slope, 3)}** (2 would mean size ∝ ‖W‖² at fixed activity changes; activity changes Δa move "
        "too, since the earlier layer is trained along with this one)."
    )


def knob_takeaway(runs: pd.DataFrame, knob: str, profile: str) -> str:
    """Both paragraphs at once (gap, then factors)."""
    return gap_takeaway(runs, knob) + "\n\n" + factor_takeaway(runs, knob, profile)


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
        f"Over {len(ok)} runs the Σ cσσ estimate is within a median {number(100 * float(rel.median()), 2)} % "
        f"(worst {number(100 * float(rel.max()), 2)} %) of the real gap, Pearson r = {number(r, 4)}; the exact pair gap "
        f"⟨Δl⟩ differs from the real gap by a median {number(100 * float(rel_pair.median()), 2)} % "
        "(it averages over test samples paired with their nearest clean training sample, the real gap over "
        "the two sets separately)."
    )


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
