"""Sentences of notebook 11 ("SGD noise and curvature"), each computed from the numbers it
states: per-seed tables of :func:`awbench.experiments.noise_runs.noise_over_seeds`, the batch-size
table of :func:`~awbench.analysis.noise.minibatch_trace` and the follow-up's claims from
:func:`awbench.experiments.claims.claim_verdicts`. Markdown strings, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from awbench.formatting import formatted, number
from awbench.viz.noise_plots import LOSS_NAMES


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean over seeds (NaN ends below 2)."""
    v = np.asarray(values, float)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    if v.size < 2:
        return float(v.mean()), math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def _estimate(m: float, lo: float, hi: float, bold: bool = True) -> str:
    """ "**1.123** [1.050, 1.196]": an exponent and its interval, three decimals."""
    mean = formatted(m, ".3f")
    return f"{f'**{mean}**' if bold else mean} [{formatted(lo, '.3f')}, {formatted(hi, '.3f')}]"


def status_sentence(tables: Mapping[str, pd.DataFrame], lrs: Mapping[str, float]) -> str:
    """Which seeds met the stopping rule, per loss, at which learning rate."""
    parts = []
    for loss, t in tables.items():
        n_ok = int(t["converged"].sum())
        other = t.loc[~t["converged"], "status"].value_counts()
        left = ", ".join(f"{v} {k}" for k, v in other.items())
        parts.append(
            f"{LOSS_NAMES.get(loss, loss)} (lr {lrs.get(loss, math.nan):g}): **{n_ok} of "
            f"{len(t)}** seeds converged" + (f", left out: {left}" if left else "")
        )
    return "; ".join(parts) + ". Only converged seeds count below."


def gamma_sentence(table: pd.DataFrame, loss: str) -> str:
    """gamma over the converged seeds with its t-interval, against 1 and the predicted one."""
    ok = table[table["converged"]] if "gamma" in table else table.iloc[:0]
    name = LOSS_NAMES.get(loss, loss)
    if ok.empty:
        return f"{name}: no converged seed, no exponent."
    m, lo, hi = mean_interval(ok["gamma"].astype(float))
    pm, plo, phi = mean_interval(ok["gamma_predicted"].astype(float))
    where = (
        "above 1 (superlinear)"
        if lo > 1
        else "below 1 (sublinear)"
        if hi < 1
        else "not told apart from 1"
        if math.isfinite(lo)
        else "one seed: no interval"
    )
    return (
        f"{name}: γ = {_estimate(m, lo, hi)} over {len(ok)} converged seeds "
        f"(95 % t-interval), {where}; per seed from {formatted(ok['gamma'].min(), '.3f')} to "
        f"{formatted(ok['gamma'].max(), '.3f')}. The exponent E[h²] predicts, of E[h²]_ii ~ H_ii^γ: "
        f"{_estimate(pm, plo, phi, bold=False)}."
    )


def eh2_sentence(table: pd.DataFrame, loss: str) -> str:
    """How close C is to proportional to E[h²]: the exponent of C_ii on E[h²]_ii."""
    ok = table[table["converged"]] if "eh2_exponent" in table else table.iloc[:0]
    if ok.empty:
        return f"{LOSS_NAMES.get(loss, loss)}: no converged seed."
    m, lo, hi = mean_interval(ok["eh2_exponent"].astype(float))
    if not math.isfinite(lo):
        verdict = "one seed: no interval"
    elif lo <= 1 <= hi:
        verdict = "consistent with C ∝ E[h²]"
    elif abs(m - 1) < 0.05:
        verdict = "within 0.05 of proportional, though the interval excludes exactly 1"
    else:
        verdict = f"not proportional: C grows {'faster' if m > 1 else 'slower'} than E[h²]"
    return (
        f"{LOSS_NAMES.get(loss, loss)}: C_ii ~ E[h²]_ii^x with x = {_estimate(m, lo, hi)} "
        f"over {len(ok)} seeds, {verdict}."
    )


def commutator_sentence(table: pd.DataFrame, loss: str) -> str:
    """The commutator against its random baseline, seed by seed."""
    ok = table[table["converged"]] if "commutator" in table else table.iloc[:0]
    if ok.empty:
        return f"{LOSS_NAMES.get(loss, loss)}: no converged seed."
    c, b = ok["commutator"].astype(float), ok["commutator_baseline"].astype(float)
    below = int((c < b).sum())
    return (
        f"{LOSS_NAMES.get(loss, loss)}: ||[C, H]|| / (||C|| ||H||) = **{number(c.mean())}** "
        f"on average against **{number(b.mean())}** for random eigenvectors; below the "
        f"baseline in {below} of {len(ok)} seeds"
        + (
            ", so C is *less* aligned with H's eigenvectors than chance here."
            if below == 0
            else (
                ": C commutes with H better than chance."
                if below == len(ok)
                else ": no consistent side."
            )
        )
    )


def batch_sentence(frame: pd.DataFrame) -> str:
    """How far the measured trace is from (N - B) / (B (N - 1)) tr Σ over the batch sizes."""
    rel = (frame["measured"] / frame["exact"] - 1).abs()
    z = ((frame["measured"] - frame["exact"]) / frame["measured_se"]).abs()
    first, last = frame.iloc[0], frame.iloc[-1]
    return (
        f"From B = {int(first['batch_size'])} to B = {int(last['batch_size'])} the noise's trace "
        f"falls {number(first['measured'] / last['measured'])}-fold (the formula: "
        f"{number(first['exact'] / last['exact'])}-fold); measured and exact differ by at "
        f"most {100 * rel.max():.1f} % ({formatted(z.max(), '.1f')} standard errors of the Monte Carlo "
        f"mean). At B = N the noise is zero, and for B ≪ N it falls as 1/B."
    )


def claims_sentence(claims: pd.DataFrame) -> str:
    """The follow-up's claims in one line each: verdict, found, raw and Holm p."""
    rows = claims[claims["source"] == "follow-up"]
    lines = [
        f"- *{r.text}* **{r.verdict}**: {r.found} (p {number(r.p, 2)}, Holm "
        f"{number(r.p_holm, 2)}); {r.because}."
        for r in rows.itertuples()
    ]
    return "\n".join(lines) or "No follow-up claim in the table."
