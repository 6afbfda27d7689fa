"""Verdicts with their uncertainty: did a knob move sharpness, size or the gap, and how sure are we?

    from awbench.experiments import verdicts as vd
    e = vd.knob_effect(runs, "batch_size", "sharpness")          # one knob, one quantity, raw p
    table = vd.verdict_table({"batch_size": runs_bs, "lr": runs_lr})   # Holm over the table
    diff = vd.paired_comparison(a, b)                # DPSGD against SSGD, paired by seed
    print(vd.RULE)

The claims table built from these lives in ``awbench.experiments.claims``.

Input is the runs table of one knob sweep (one row per run): the knob column, ``seed``,
``status`` and the quantities. Only converged runs with a finite knob value and a finite
quantity count. A run that stopped at ``max_epochs`` sits somewhere on the way to its
minimum, and the duality's quantities describe a minimum, so mixing it in would compare
unlike things; the runs left out are counted by status so a reader sees what was dropped.

Effect statistic: Spearman's rho between knob value and quantity over every converged run;
when seeds are paired, of the quantity minus its seed's mean (the effect within a seed).
Ranks make it indifferent to the knob's scale (lr on a log grid gives the same rho) and to a
single wild run, and using all values rather than the two ends keeps the middle of the sweep
in the evidence.

Resampling unit is the seed. When seed ids recur across knob values the sweep is paired (the
same data split and initialisation seen at several values), so the bootstrap draws seed ids
and keeps all of a seed's runs, and the permutation test shuffles the knob labels among one
seed's runs only; a seed-level offset then cancels instead of drowning the effect. Without
shared seeds the bootstrap draws runs within each knob value (the design fixes how many runs
each value has) and the permutation test shuffles labels over all runs.

Kruskal-Wallis catches an effect that rises and falls again (rho near 0). It ignores the
seed pairing; a Friedman test would use it but needs every seed at every value, which a
diverged run breaks.

Multiple comparisons: :data:`RULE` is the full rule, printed verbatim by the report. In
short, every p-value of one :func:`verdict_table` (the monotone tests and the Kruskal-Wallis
tests of all knobs and quantities) is one Holm family. Any verdict other than "no clear
change" asserts an effect, and both tests can produce one, so bounding the chance of any
false assertion in the table needs them corrected together; a separate Kruskal-Wallis family
would let the table's error rate reach about twice alpha.

A permutation p-value cannot go below 1/(n_perm + 1); with m comparisons Holm needs the
smallest one below alpha/m, so ``n_perm`` must exceed m/alpha (the table warns otherwise).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from awbench.status import CONVERGED

QUANTITIES = ("sharpness", "size", "sharp_gap", "flat_gap", "real_gap")
VERDICTS = ("up", "down", "non-monotone", "no clear change", "not enough data")
MIN_RUNS = 4
MIN_VALUES = 2
# Kruskal-Wallis needs this many values with at least KRUSKAL_MIN_RUNS runs each.
KRUSKAL_MIN_VALUES = 3
KRUSKAL_MIN_RUNS = 2
# A "same" claim holds when the whole interval of the relative difference lies inside this.
SAME_MARGIN = 0.10

RULE = (
    "Only runs with status 'converged' and a finite value count; the others are counted as "
    "left out, by status. For each knob and quantity: Spearman's rho between knob value and "
    "quantity over all converged runs (when seeds recur across knob values, of the quantity "
    "minus its seed's mean: the effect within a seed), a bootstrap percentile interval for rho "
    "(95 % unless stated; seed ids resampled when seeds recur across knob values, keeping the pairing; runs "
    "resampled within each knob value otherwise), a permutation p-value for 'no monotone "
    "association' (knob labels shuffled within each seed when paired, over all runs "
    "otherwise), and a Kruskal-Wallis p-value when at least 3 knob values have at least 2 "
    "runs. Holm's correction runs over every p-value of the table together, the monotone "
    "and the Kruskal-Wallis tests of all knobs and quantities as one family, so that the "
    "chance of any false 'up', 'down' or 'non-monotone' in the table stays below alpha "
    "(0.05 unless stated). Verdict: 'up' / 'down' when the Holm-adjusted monotone p < alpha and rho > 0 "
    "/ < 0; 'non-monotone' when it is not but the Holm-adjusted Kruskal-Wallis p < alpha; "
    "'not enough data' with fewer than 2 knob values or 4 converged runs; 'no clear change' "
    "otherwise, which is absence of evidence, not evidence of no effect. A claim is "
    "'supported' when the verdict has its direction, 'contradicted' only when the verdict is "
    "significant in the opposite direction, 'inconclusive' otherwise. The paired "
    "DPSGD-vs-SSGD comparisons (sign-flip permutation test over seed pairs, exact when "
    "2^n_pairs <= n_perm) are their own Holm family; 'same size' is supported only when the "
    f"whole interval of the relative difference lies within +/-{SAME_MARGIN:.0%} and "
    "contradicted only when it lies wholly outside. Permutation p-values use 20,000 "
    "permutations, bootstrap intervals 2,000 resamples, both from a fixed seed."
)


# --- Holm ---------------------------------------------------------------------------------


def holm(pvalues: Iterable[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values, same shape as the input; NaN entries stay NaN and do not count.

    Adjusted p of the k-th smallest (k = 1..m) is max over j <= k of min(1, (m - j + 1) p_(j)),
    so the adjusted values keep the order of the raw ones and an adjusted p < alpha is exactly
    Holm's step-down rejection at level alpha.
    """
    p = np.asarray(pvalues, dtype=float)
    flat = p.ravel()
    out = np.full(flat.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(flat))
    if ok.size:
        q = flat[ok]
        if np.any((q < 0) | (q > 1)):
            raise ValueError(f"p-values must lie in [0, 1], got {q[(q < 0) | (q > 1)][:3]}")
        m = q.size
        order = np.argsort(q, kind="stable")
        scaled = np.minimum(1.0, (m - np.arange(m)) * q[order])
        out[ok[order]] = np.maximum.accumulate(scaled)
    return out.reshape(p.shape)


# --- rank correlation, weighted so that bootstrap replicates are rows of counts -----------


def _weighted_midranks(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Midranks of ``v`` in the sample where run i appears ``w[b, i]`` times, one row per b.

    A bootstrap replicate is a vector of counts over the original runs, so ranking in this
    form handles every replicate at once and needs no re-sort; copies of one run are ties
    of each other and share its group.
    """
    n = v.size
    order = np.argsort(v, kind="stable")
    vs = v[order]
    starts = np.flatnonzero(np.r_[True, vs[1:] != vs[:-1]])
    ws = w[:, order]
    group_w = np.add.reduceat(ws, starts, axis=1)
    group_rank = np.cumsum(group_w, axis=1) - group_w + (group_w + 1) / 2
    group_of = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, n]))
    ranks = np.empty_like(ws, dtype=float)
    ranks[:, order] = group_rank[:, group_of]
    return ranks


def _weighted_corr(rx: np.ndarray, ry: np.ndarray, w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1, keepdims=True)
    dx = rx - (w * rx).sum(axis=1, keepdims=True) / total
    dy = ry - (w * ry).sum(axis=1, keepdims=True) / total
    sxy = (w * dx * dy).sum(axis=1)
    sxx = (w * dx * dx).sum(axis=1)
    syy = (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    # Rounding can land a perfect correlation a hair outside [-1, 1].
    return np.clip(np.where((sxx > 0) & (syy > 0), r, np.nan), -1.0, 1.0)


def _spearman_weighted(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _weighted_corr(_weighted_midranks(x, w), _weighted_midranks(y, w), w)


def _rowwise_corr(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    return _weighted_corr(rx, np.broadcast_to(ry, rx.shape), np.ones_like(rx))


def _within_group_permutations(groups: np.ndarray, n_perm: int, rng: np.random.Generator):
    """(n_perm, n) index arrays, each a permutation that moves entries only within their group.

    Sorting by group code plus a uniform key in [0, 1) orders each row group by group with a
    random order inside each group; reading those positions against the stable group order
    maps every slot to a random member of its own group.
    """
    n = groups.size
    base = np.argsort(groups, kind="stable")
    keys = groups[None, :].astype(float) * 2.0 + rng.random((n_perm, n))
    drawn = np.argsort(keys, axis=1)
    perm = np.empty_like(drawn)
    perm[:, base] = drawn
    return perm


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


# --- one knob, one quantity ---------------------------------------------------------------


def _check_columns(runs: pd.DataFrame, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in runs.columns]
    if missing:
        raise KeyError(f"runs table lacks column(s) {missing}; it has {list(runs.columns)}")


def _numeric(col: pd.Series, name: str) -> np.ndarray:
    try:
        return pd.to_numeric(col, errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"column {name!r} must be numeric to rank knob values ({exc})") from None


def knob_effect(
    runs: pd.DataFrame,
    knob: str,
    quantity: str,
    *,
    n_boot: int = 2000,
    n_perm: int = 20000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """How ``quantity`` moves along ``knob`` in one sweep, with raw (uncorrected) p-values.

    Returns a dict: ``rho`` (Spearman over the converged runs), ``rho_low``/``rho_high`` (the
    bootstrap percentile interval at ``level``), ``p_monotone`` (permutation test of rho = 0),
    ``p_kruskal`` (NaN when fewer than 3 values have 2+ runs), ``n_runs``, ``n_values``,
    ``n_seeds``, ``paired`` and ``resampling`` (which unit was resampled), ``n_left_out`` and
    ``left_out_by_status`` (non-finite quantities of converged runs under "converged,
    non-finite"), ``values_without_converged``, ``values``, ``mean_by_value``,
    ``sd_by_value``, ``n_by_value``, ``change`` (relative change of the mean from the first
    to the last included value, (last - first) / |first|), ``diff`` (last - first) and
    ``enough_data``. Classification waits for :func:`verdict_table`, which corrects the
    p-values for the whole table first. The bootstrap and the permutations draw from
    independent streams of ``seed``, so changing ``n_boot`` leaves ``p_monotone`` unchanged.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x, y, seeds, x_all, left_out = _converged_runs(runs, knob, quantity)
    values = np.unique(x)
    seed_codes, seed_ids = pd.factorize(pd.Series(seeds))
    per_seed_values = pd.Series(x).groupby(seed_codes).nunique() if x.size else pd.Series(dtype=int)
    paired = bool((per_seed_values >= 2).any())

    out: dict[str, Any] = {
        "knob": knob,
        "quantity": quantity,
        "rho": math.nan,
        "rho_low": math.nan,
        "rho_high": math.nan,
        "p_monotone": math.nan,
        "p_kruskal": math.nan,
        "n_runs": int(x.size),
        "n_values": int(values.size),
        "n_seeds": int(seed_ids.size),
        "paired": paired,
        "resampling": "seeds (paired)" if paired else "runs within values",
        "n_left_out": int(sum(left_out.values())),
        "left_out_by_status": left_out,
        **_by_value(x, y, x_all),
        "n_boot": int(n_boot),
        "n_perm": int(n_perm),
        "level": float(level),
        "enough_data": bool(values.size >= MIN_VALUES and x.size >= MIN_RUNS),
    }
    # Paired seeds: the knob's effect is read within each seed (the quantity minus that seed's
    # mean), so seed-to-seed offsets neither hide an effect nor bias a bootstrap that draws
    # fewer distinct seeds; means and changes stay on the raw values.
    y_within = y - pd.Series(y).groupby(seed_codes).transform("mean").to_numpy() if paired else y
    if x.size >= 2:
        out["rho"] = float(_spearman_weighted(x, y_within, np.ones((1, x.size)))[0])

    out["p_kruskal"] = _kruskal(x, y, values)
    if not out["enough_data"]:
        return out
    out.update(
        _rho_uncertainty(x, y_within, seed_codes, paired, out["rho"], n_boot, n_perm, level, seed)
    )
    return out


def _converged_runs(runs: pd.DataFrame, knob: str, quantity: str):
    """``(x, y, seeds)`` of the converged runs with finite values, every finite knob value, and
    the runs left out counted by status (non-finite converged ones as "converged, non-finite")."""
    _check_columns(runs, [knob, "seed", "status", quantity])
    x_all = _numeric(runs[knob], knob)
    y_all = _numeric(runs[quantity], quantity)
    status = runs["status"].astype(str).to_numpy()
    converged = status == CONVERGED
    keep = converged & np.isfinite(x_all) & np.isfinite(y_all)

    labels = np.where(converged, "converged, non-finite", status)[~keep]
    left_out = (
        dict(sorted(pd.Series(labels, dtype=object).value_counts().items())) if labels.size else {}
    )
    left_out = {str(k): int(v) for k, v in left_out.items()}
    seeds = runs["seed"].to_numpy()[keep]
    return x_all[keep], y_all[keep], seeds, x_all, left_out


def _by_value(x: np.ndarray, y: np.ndarray, x_all: np.ndarray) -> dict[str, Any]:
    """Per knob value: the values without a converged run, mean, sd and count of the included
    runs, and the change of the mean from the first to the last value (raw and relative)."""
    values = np.unique(x)
    all_values = np.unique(x_all[np.isfinite(x_all)])
    included = set(values.tolist())
    groups = pd.DataFrame({"x": x, "y": y}).groupby("x")["y"]
    mean = groups.mean()
    sd = groups.std(ddof=1)
    count = groups.size()
    out: dict[str, Any] = {
        "values_without_converged": [_plain(v) for v in all_values if v not in included],
        "values": [_plain(v) for v in values],
        "mean_by_value": {_plain(k): float(v) for k, v in mean.items()},
        "sd_by_value": {_plain(k): float(v) for k, v in sd.items()},
        "n_by_value": {_plain(k): int(v) for k, v in count.items()},
        "change": math.nan,
        "diff": math.nan,
    }
    if values.size >= 2:
        first, last = float(mean.iloc[0]), float(mean.iloc[-1])
        out["diff"] = last - first
        out["change"] = (last - first) / abs(first) if first != 0 else math.nan
    return out


def _rho_uncertainty(
    x: np.ndarray,
    y_within: np.ndarray,
    seed_codes: np.ndarray,
    paired: bool,
    rho: float,
    n_boot: int,
    n_perm: int,
    level: float,
    seed: int,
) -> dict[str, float]:
    """Bootstrap interval of rho (``rho_low``, ``rho_high``) and its permutation p-value
    (``p_monotone``), each entry only when it could be computed; independent streams of
    ``seed``."""
    out: dict[str, float] = {}
    boot_rng, perm_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if n_boot > 0:
        counts = _bootstrap_counts(x, seed_codes, paired, n_boot, boot_rng)
        if counts is not None:
            out["rho_low"], out["rho_high"] = _percentile_interval(
                _spearman_weighted(x, y_within, counts), level
            )
    if n_perm > 0 and math.isfinite(rho):
        rx = stats.rankdata(x)
        ry = stats.rankdata(y_within)
        strata = seed_codes if paired else np.zeros(x.size, dtype=int)
        perm = _within_group_permutations(strata, n_perm, perm_rng)
        rho_perm = _rowwise_corr(rx[perm], ry)
        # The tolerance keeps a permutation that reproduces the observed ranking from
        # falling below it by rounding.
        hits = np.sum(np.abs(rho_perm) >= abs(rho) - 1e-12)
        out["p_monotone"] = float((1 + hits) / (1 + n_perm))
    return out


def _plain(v: float) -> float | int:
    """Knob values back to int where they are whole, so 128.0 prints as the batch size 128."""
    v = float(v)
    return int(v) if v.is_integer() else v


def _kruskal(x: np.ndarray, y: np.ndarray, values: np.ndarray) -> float:
    samples = [y[x == v] for v in values]
    samples = [s for s in samples if s.size >= KRUSKAL_MIN_RUNS]
    if len(samples) < KRUSKAL_MIN_VALUES:
        return math.nan
    if np.ptp(np.concatenate(samples)) == 0:  # every value identical: no ranks to compare
        return math.nan
    try:
        p = stats.kruskal(*samples).pvalue
    except ValueError:  # every value identical: no ranks to compare
        return math.nan
    return float(p) if np.isfinite(p) else math.nan


def _bootstrap_counts(x, seed_codes, paired, n_boot, rng) -> np.ndarray | None:
    """(n_boot, n_runs) counts: how often each run appears in each bootstrap replicate.

    None when the design leaves nothing to resample (one seed when paired, one run per value
    otherwise): every replicate would equal the data and the interval would claim certainty.
    """
    n = x.size
    if paired:
        n_units = int(seed_codes.max()) + 1
        if n_units < 2:
            return None
        per_seed = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot)
        return per_seed[:, seed_codes].astype(float)
    counts = np.zeros((n_boot, n))
    resampled = False
    for v in np.unique(x):
        idx = np.flatnonzero(x == v)
        counts[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=n_boot)
        resampled |= idx.size >= 2
    return counts if resampled else None


# --- the table ----------------------------------------------------------------------------


def classify(
    p_monotone_holm: float, rho: float, p_kruskal_holm: float, enough_data: bool, alpha: float
) -> str:
    if not enough_data:
        return "not enough data"
    if p_monotone_holm < alpha and rho > 0:
        return "up"
    if p_monotone_holm < alpha and rho < 0:
        return "down"
    if p_kruskal_holm < alpha:
        return "non-monotone"
    return "no clear change"


def _status_text(counts: Mapping[str, int]) -> str:
    return "; ".join(f"{k} {v}" for k, v in counts.items())


def verdict_table(
    runs_by_knob: Mapping[str, pd.DataFrame],
    quantities: Sequence[str] = QUANTITIES,
    *,
    alpha: float = 0.05,
    **kw: Any,
) -> pd.DataFrame:
    """One row per (knob, quantity) with raw and Holm-adjusted p-values and the verdict.

    ``kw`` goes to :func:`knob_effect` (``n_boot``, ``n_perm``, ``level``, ``seed``). Every
    p-value in the table, monotone and Kruskal-Wallis, is one Holm family (see :data:`RULE`);
    its size is the ``n_comparisons`` column and ``table.attrs["n_comparisons"]``. Left-out
    runs and values without a converged run are strings ("max_epochs 2; diverged 1",
    "0.3, 1") so the table stores and prints as it is; :func:`knob_effect` keeps the dicts.
    """
    effects = [
        knob_effect(runs, knob, q, **kw) for knob, runs in runs_by_knob.items() for q in quantities
    ]
    columns = [
        "knob", "quantity", "verdict", "rho", "rho_low", "rho_high", "p_monotone",
        "p_monotone_holm", "p_kruskal", "p_kruskal_holm", "change", "diff", "n_runs",
        "n_values", "n_seeds", "paired", "n_left_out", "left_out", "values_without_converged",
        "n_comparisons",
    ]  # fmt: skip
    if not effects:
        table = pd.DataFrame(columns=columns)
        table.attrs.update(n_comparisons=0, alpha=alpha, rule=RULE)
        return table
    table = pd.DataFrame(effects)
    # Tests that did not run (too little data) are not comparisons and do not widen Holm.
    raw = np.concatenate([table["p_monotone"].to_numpy(float), table["p_kruskal"].to_numpy(float)])
    adjusted = holm(raw)
    m = int(np.isfinite(raw).sum())
    table["p_monotone_holm"] = adjusted[: len(table)]
    table["p_kruskal_holm"] = adjusted[len(table) :]
    table["n_comparisons"] = m
    table["verdict"] = [
        classify(r.p_monotone_holm, r.rho, r.p_kruskal_holm, r.enough_data, alpha)
        for r in table.itertuples()
    ]
    table["left_out"] = table["left_out_by_status"].map(_status_text)
    table["values_without_converged"] = table["values_without_converged"].map(
        lambda vs: ", ".join(format(v, "g") for v in vs)
    )
    n_perm = kw.get("n_perm", 20000)
    if m and n_perm > 0 and m / (n_perm + 1) >= alpha:
        warnings.warn(
            f"with {m} comparisons and n_perm = {n_perm} no monotone test can pass Holm at "
            f"alpha = {alpha}: the smallest permutation p is 1/{n_perm + 1}; use n_perm > {math.ceil(m / alpha)}",
            stacklevel=2,
        )
    table = table[columns].reset_index(drop=True)
    table.attrs.update(n_comparisons=m, alpha=alpha, rule=RULE)
    return table


# --- paired comparison of two algorithms over the same seeds ------------------------------


def paired_comparison(
    a: pd.Series | Sequence[float] | np.ndarray,
    b: pd.Series | Sequence[float] | np.ndarray,
    seeds: Sequence[Any] | None = None,
    *,
    n_boot: int = 2000,
    n_perm: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Difference b - a between two algorithms run with the same seeds, paired by seed.

    Two Series are aligned on their index (the seed); otherwise ``a[i]`` and ``b[i]`` form a
    pair and ``seeds`` may name them. Pairs with a non-finite side are dropped and counted.
    Returns ``n_pairs``, ``n_dropped``, ``mean_a``, ``mean_b``, ``diff`` (mean of b - a),
    ``diff_low``/``diff_high`` (bootstrap percentile interval over pairs), ``rel_diff`` =
    diff / |mean_a| with ``rel_low``/``rel_high``, ``p`` (two-sided sign-flip permutation test
    of zero mean difference), ``exact`` (all 2^n sign patterns enumerated, done when that is at
    most ``n_perm``) and ``p_min``, the smallest p this many pairs can give: with 5 pairs it is
    2/32, so no 5-seed comparison can be significant at 0.05.
    """
    av, bv, labels, n_unmatched = _pairs(a, b, seeds)
    ok = np.isfinite(av) & np.isfinite(bv)
    av, bv, labels = av[ok], bv[ok], labels[ok]
    d = bv - av
    n = int(d.size)
    out: dict[str, Any] = {
        "n_pairs": n,
        "n_dropped": int((~ok).sum() + n_unmatched),
        "seeds": [s.item() if hasattr(s, "item") else s for s in labels],
        "mean_a": float(av.mean()) if n else math.nan,
        "mean_b": float(bv.mean()) if n else math.nan,
        "diff": float(d.mean()) if n else math.nan,
        "diff_low": math.nan,
        "diff_high": math.nan,
        "rel_diff": math.nan,
        "rel_low": math.nan,
        "rel_high": math.nan,
        "p": math.nan,
        "exact": False,
        "p_min": math.nan,
        "level": float(level),
    }
    if n and av.mean() != 0:
        out["rel_diff"] = float(d.mean() / abs(av.mean()))
    if n < 2:
        return out
    boot_rng, perm_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if n_boot > 0:
        out.update(_bootstrap_diff(av, d, n_boot, level, boot_rng))
    if n_perm > 0:
        out.update(_sign_flip_test(d, n_perm, perm_rng))
    return out


def _pairs(a, b, seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(a values, b values, seed labels, pairs without a partner)``: two Series aligned on
    their index, anything else paired by position."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        ab = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
        labels = ab.index.to_numpy()
        av, bv = ab["a"].to_numpy(float), ab["b"].to_numpy(float)
        return av, bv, labels, (len(a) - len(ab)) + (len(b) - len(ab))
    av, bv = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if av.size != bv.size:
        raise ValueError(f"a and b must pair up: {av.size} vs {bv.size} values")
    labels = np.asarray(seeds) if seeds is not None else np.arange(av.size)
    if labels.size != av.size:
        raise ValueError(f"seeds must name every pair: {labels.size} seeds for {av.size} pairs")
    return av, bv, labels, 0


def _bootstrap_diff(
    av: np.ndarray, d: np.ndarray, n_boot: int, level: float, rng: np.random.Generator
) -> dict[str, float]:
    """Percentile intervals over resampled pairs of the mean difference and of the relative one."""
    n = d.size
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    mean_a = counts @ av / n
    mean_d = counts @ d / n
    out: dict[str, float] = {}
    out["diff_low"], out["diff_high"] = _percentile_interval(mean_d, level)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = mean_d / np.abs(mean_a)
    out["rel_low"], out["rel_high"] = _percentile_interval(rel, level)
    return out


def _sign_flip_test(d: np.ndarray, n_perm: int, rng: np.random.Generator) -> dict[str, Any]:
    """Two-sided sign-flip test of zero mean difference: ``p``, ``exact`` and ``p_min``; every
    sign pattern enumerated when there are at most ``n_perm`` of them."""
    n = d.size
    observed = abs(d.mean())
    if 2**n <= n_perm:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        total = signs.shape[0]
        hits = np.sum(np.abs(signs @ d / n) >= observed - 1e-12 * max(1.0, observed))
        return {"p": float(hits / total), "exact": True, "p_min": 2.0 / total}
    signs = rng.choice((1.0, -1.0), size=(n_perm, n))
    hits = np.sum(np.abs(signs @ d / n) >= observed - 1e-12 * max(1.0, observed))
    return {"p": float((1 + hits) / (1 + n_perm)), "p_min": max(2.0 / 2**n, 1.0 / (1 + n_perm))}
