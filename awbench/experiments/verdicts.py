"""Verdicts with their uncertainty: did a knob move sharpness, size or the gap, and how sure are we?

    from awbench.experiments import verdicts as vd
    e = vd.knob_effect(runs, "batch_size", "sharpness")   # one knob, one quantity, raw p
    table = vd.verdict_table({"batch_size": runs_bs, "lr": runs_lr}, family=42)
    vd.verdict_words(table.iloc[0])                        # "down -65 % [-71 %, -58 %] ..."
    diff = vd.paired_comparison(a, b)                      # DPSGD against SSGD, paired by seed
    print(vd.RULE)

The claims table built from these lives in ``awbench.experiments.claims``; the rule and its
measured power are in docs/science.md#7-claims-and-hypotheses.

Input is the runs table of one knob sweep (one row per run): the knob column, ``seed``,
``status`` (and ``converged`` where known) and the quantities. Which runs count is decided in
one place, :func:`awbench.experiments.effects.converged_mask`; the runs left out are counted
by status so a reader sees what was dropped.

The design is blocked by seed: the runs of one seed share the data split and initialisation,
so the effect of the knob is read within each seed and a seed-level offset cancels. Values
are compared on the log scale when they are all positive (sharpness, size and gaps are
positive scale quantities, and knob effects on them are multiplicative), else as they are.

Monotone test: a within-seed permutation test of the linear trend statistic
T = sum over seeds and runs of (position of the knob value) x (value minus its seed's mean).
Positions are ranks of the knob values, so the test is indifferent to the knob's scale (lr on
a log grid). Under "no effect" the knob labels of one seed's runs are exchangeable; T is a sum
of independent per-seed terms, so its permutation distribution is enumerated exactly (all
arrangements directly, or by meet-in-the-middle over two halves of the seeds) whenever that
fits, and drawn at random only beyond, with the floor reported. A rank statistic such as
Spearman's rho would throw the sizes of the steps away: a saturating effect (a big first step,
then a plateau) orders its plateau at random within each seed, and with 5 seeds could then
never reach a small p however large the step.

Non-monotone test, gatekept: only where the monotone test is not significant and at least 3
values were run, a within-seed permutation test of the spread between the values' means (seeds
that ran every value; scipy.stats.permutation_test). It gets a fixed share of the family's
alpha, so it cannot tax the monotone tests by more than that share.

Multiplicity: each (knob, quantity) cell is one member of a declared family of ``family``
cells (the profile's knobs x :data:`QUANTITIES`). Bonferroni over that family gives the
monotone test alpha (1 - s) / family and the non-monotone test alpha s / family (s =
:data:`NONMONOTONE_SHARE`), so the chance of any false "up", "down" or "non-monotone" in the
table stays below alpha, and a cell's verdict depends on its own runs only: a notebook that
sweeps two knobs and the report that pools seven give the same verdict for the same runs.
The confirmatory family is the claims (``awbench.experiments.claims``, Holm); this table is
descriptive.

Effect size: the change between the ends of the sweep within each seed (last / first value),
its geometric mean over seeds with a Student-t interval on the log-ratios. "no clear change"
is said only when that interval excludes changes larger than :data:`LARGE_CHANGE`; a large
but not significant change is "inconclusive", with its interval and the number of seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from awbench.experiments.effects import converged_mask, with_curvature
from awbench.experiments.grids import VERDICT_QUANTITIES, verdict_family
from awbench.experiments.within_seed import N_PERM, end_change, nonmonotone_test, trend_test
from awbench.formatting import signed_percent

QUANTITIES = VERDICT_QUANTITIES
VERDICTS = ("up", "down", "non-monotone", "no clear change", "inconclusive", "not enough data")
DIRECTIONAL = ("up", "down", "non-monotone")
ALPHA = 0.05
MIN_RUNS = 4
MIN_VALUES = 2
# The non-monotone test's share of each cell's alpha (Bonferroni split): small, because with
# 3 values it answers a rarer question than the trend, and every bit of it is a tax on the
# trend test.
NONMONOTONE_SHARE = 0.2
# "no clear change" needs the interval of the end-to-end change inside 1/1.2 ... 1.2: the
# knob effects this workbench exists to show are 30 % and more, so an interval that still
# holds a 20 % change has not ruled out an effect worth a sentence.
LARGE_CHANGE = 0.2
LEVEL = 0.95

RULE = (
    "Only runs that met the stopping rule and have a finite value count; the others are "
    "counted as left out, by status. Values are compared on the log scale when all are "
    "positive. For each knob and quantity: a within-seed permutation test of the linear trend "
    "(knob positions against the values minus their seed's mean; the knob labels of one seed's "
    "runs shuffled), its permutation distribution enumerated exactly whenever it fits "
    f"(random draws, {N_PERM:,}, beyond, with the floor reported). Where that test is not "
    "significant and at least 3 values ran, a within-seed permutation test of the spread "
    "between the values' means asks for a non-monotone effect. Multiplicity: Bonferroni over "
    "a declared family of cells (the profile's knobs x quantities), the trend test at "
    f"alpha x {1 - NONMONOTONE_SHARE:g} / family and the non-monotone test at alpha x "
    f"{NONMONOTONE_SHARE:g} / family (alpha 0.05), so the chance of any false 'up', 'down' or "
    "'non-monotone' in the table stays below alpha and each verdict depends on its own runs "
    "only. Effect size: the within-seed change from the first to the last value, geometric "
    "mean over seeds with a 95 % Student-t interval on the log-ratios. Verdicts: 'up' / "
    "'down' (significant trend), 'non-monotone', 'no clear change' (not significant and the "
    f"interval excludes changes beyond {LARGE_CHANGE:.0%}), 'inconclusive' (not significant, "
    "but the interval still holds a large change: more seeds needed), 'not enough data' "
    "(fewer than 2 values or 4 runs). The table is descriptive; the claims are the "
    "confirmatory family (Holm over the claims). A claim is 'supported' when its test is "
    "significant after Holm in the claimed direction, 'contradicted' when significant in the "
    "opposite one, 'inconclusive' otherwise; every claim of the list counts in Holm's family, "
    "an untested one as p = 1. DPSGD against SSGD: paired by seed on the log-ratio, a paired "
    "t-test and a Student-t interval; 'same size' is an equivalence test (two one-sided "
    "t-tests) against a margin of half the sharpness change next to it, 'contradicted' when "
    "the size interval lies wholly outside that margin. The headline claim: log gap regressed "
    "on log sharpness and log size over every converged run, standard errors clustered by "
    "seed; 'supported' when both slopes are positive (the larger p of the two)."
)


# --- Holm ---------------------------------------------------------------------------------


def holm(pvalues) -> np.ndarray:
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


def counted_runs(runs: pd.DataFrame, knob: str, quantity: str):
    """``(x, y, seeds, x_all, left_out)``: knob values, quantity and seed of the runs that count
    (:func:`~awbench.experiments.effects.converged_mask`, finite knob and quantity), every
    finite knob value, and the runs left out counted by status ("converged, non-finite" for a
    converged run without a finite value)."""
    runs = with_curvature(runs)
    _check_columns(runs, [knob, "seed", "status", quantity])
    x_all = _numeric(runs[knob], knob)
    y_all = _numeric(runs[quantity], quantity)
    status = runs["status"].astype(str).to_numpy()
    converged = converged_mask(runs).to_numpy()
    keep = converged & np.isfinite(x_all) & np.isfinite(y_all)
    labels = np.where(converged, "converged, non-finite", status)[~keep]
    left_out = {
        str(k): int(v) for k, v in sorted(pd.Series(labels, dtype=object).value_counts().items())
    }
    return x_all[keep], y_all[keep], runs["seed"].to_numpy()[keep], x_all, left_out


def _plain(v: float) -> float | int:
    """Knob values back to int where they are whole, so 128.0 prints as the batch size 128."""
    v = float(v)
    return int(v) if v.is_integer() else v


def knob_effect(
    runs: pd.DataFrame,
    knob: str,
    quantity: str,
    *,
    n_perm: int = N_PERM,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """How ``quantity`` moves along ``knob`` in one sweep, with raw (uncorrected) p-values.

    Returns a dict: ``scale`` ("log" or "linear"), ``statistic``/``p_trend``/``exact``/
    ``p_floor``/``n_arrangements`` (:func:`trend_test`), ``p_nonmonotone`` (NaN with fewer than
    3 values or 2 complete seeds), ``change``/``change_low``/``change_high``/``n_pairs``
    (:func:`end_change`), ``rho`` (Spearman of knob and within-seed value, descriptive),
    ``n_runs``, ``n_values``, ``n_seeds``, ``paired``, ``n_left_out``, ``left_out_by_status``,
    ``values``, ``values_without_converged``, ``mean_by_value``, ``n_by_value`` and
    ``enough_data``. Classification needs the family: :func:`classify`.
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level} is not allowed: expected a number in (0, 1)")
    if n_perm < 1:
        raise ValueError(f"n_perm={n_perm} is not allowed: expected a positive integer")
    x, y, seeds, x_all, left_out = counted_runs(runs, knob, quantity)
    values = np.unique(x)
    blocks, seed_ids = pd.factorize(pd.Series(seeds, dtype=object))
    paired = bool(pd.Series(x).groupby(blocks).nunique().ge(2).any()) if x.size else False
    if not paired:
        blocks = np.zeros(x.size, dtype=int)
    log = bool(x.size and np.all(y > 0))
    v = np.log(y) if log else y
    out: dict[str, Any] = {
        "knob": knob,
        "quantity": quantity,
        "scale": "log" if log else "linear",
        "statistic": math.nan,
        "p_trend": math.nan,
        "exact": False,
        "p_floor": math.nan,
        "n_arrangements": math.nan,
        "p_nonmonotone": math.nan,
        "rho": math.nan,
        "n_runs": int(x.size),
        "n_values": int(values.size),
        "n_seeds": int(seed_ids.size),
        "paired": paired,
        "n_left_out": int(sum(left_out.values())),
        "left_out_by_status": left_out,
        "values": [_plain(a) for a in values],
        "values_without_converged": [
            _plain(a) for a in np.unique(x_all[np.isfinite(x_all)]) if a not in set(values.tolist())
        ],
        "mean_by_value": {_plain(a): float(np.mean(y[x == a])) for a in values},
        "n_by_value": {_plain(a): int(np.sum(x == a)) for a in values},
        "level": float(level),
        "enough_data": bool(values.size >= MIN_VALUES and x.size >= MIN_RUNS),
        **end_change(x, y, blocks, log, level),
    }
    if x.size >= 2:
        centred = v - pd.Series(v).groupby(blocks).transform("mean").to_numpy()
        if np.ptp(x) > 0 and np.ptp(centred) > 0:
            out["rho"] = float(stats.spearmanr(x, centred).statistic)
    if not out["enough_data"]:
        return out
    trend = trend_test(x, v, blocks, n_perm=n_perm, seed=seed)
    out.update(
        statistic=trend["statistic"],
        p_trend=trend["p"],
        exact=trend["exact"],
        p_floor=trend["p_floor"],
        n_arrangements=trend["n_arrangements"],
    )
    if paired:
        out["p_nonmonotone"] = nonmonotone_test(x, v, blocks, seed=seed)["p"]
    return out


# --- verdicts -----------------------------------------------------------------------------


def adjusted(effect: Mapping[str, Any], family: int) -> tuple[float, float]:
    """Bonferroni-adjusted (trend, non-monotone) p-values of one cell in a family of ``family``."""
    if family < 1:
        raise ValueError(f"family={family} is not allowed: expected a positive number of cells")
    p_trend = float(effect.get("p_trend", math.nan))
    p_nm = float(effect.get("p_nonmonotone", math.nan))
    return (
        min(1.0, p_trend * family / (1 - NONMONOTONE_SHARE)),
        min(1.0, p_nm * family / NONMONOTONE_SHARE),
    )


def classify(effect: Mapping[str, Any], family: int, alpha: float = ALPHA) -> str:
    """The verdict of one cell of a family of ``family`` cells (see :data:`RULE`)."""
    if not effect.get("enough_data", False):
        return "not enough data"
    p_trend, p_nm = adjusted(effect, family)
    if p_trend < alpha:
        return "up" if effect["statistic"] > 0 else "down"
    if p_nm < alpha:
        return "non-monotone"
    lo, hi = effect.get("change_low", math.nan), effect.get("change_high", math.nan)
    small = 1 / (1 + LARGE_CHANGE) - 1
    if math.isfinite(lo) and math.isfinite(hi) and small <= lo and hi <= LARGE_CHANGE:
        return "no clear change"
    return "inconclusive"


def verdict_table(
    runs_by_knob: Mapping[str, pd.DataFrame],
    quantities: Sequence[str] = QUANTITIES,
    *,
    family: int | None = None,
    alpha: float = ALPHA,
    **kw: Any,
) -> pd.DataFrame:
    """One row per (knob, quantity): raw and adjusted p-values, the change with its interval
    and the verdict.

    ``family`` is the number of cells the verdicts are corrected for: the profile's whole
    table (``awbench.experiments.grids.verdict_family``) so that a notebook sweeping two knobs
    says what the report says; default, the cells of this table. ``kw`` goes to
    :func:`knob_effect`. Left-out runs and values without a converged run are strings
    ("max_epochs 2; diverged 1", "0.3, 1").
    """
    effects = [
        knob_effect(runs, knob, q, **kw) for knob, runs in runs_by_knob.items() for q in quantities
    ]
    family = int(family or len(effects) or 1)
    columns = [
        "knob", "quantity", "verdict", "change", "change_low", "change_high", "p_trend",
        "p_trend_adj", "p_nonmonotone", "p_nonmonotone_adj", "exact", "p_floor", "rho",
        "scale", "n_runs", "n_values", "n_seeds", "n_pairs", "paired", "n_left_out",
        "left_out", "values_without_converged", "statistic", "family",
    ]  # fmt: skip
    if not effects:
        table = pd.DataFrame(columns=columns)
        table.attrs.update(family=family, alpha=alpha, rule=RULE)
        return table
    table = pd.DataFrame(effects)
    both = [adjusted(e, family) for e in effects]
    table["p_trend_adj"] = [b[0] for b in both]
    table["p_nonmonotone_adj"] = [b[1] for b in both]
    table["verdict"] = [classify(e, family, alpha) for e in effects]
    table["family"] = family
    table["left_out"] = table["left_out_by_status"].map(
        lambda c: "; ".join(f"{k} {v}" for k, v in c.items())
    )
    table["values_without_converged"] = table["values_without_converged"].map(
        lambda vs: ", ".join(format(v, "g") for v in vs)
    )
    table = table[columns].reset_index(drop=True)
    table.attrs.update(family=family, alpha=alpha, rule=RULE)
    return table


def change_text(row: Mapping[str, Any] | Any) -> str:
    """``-65 % [-71 %, -58 %]``: the end-to-end change and its interval."""
    get = row.get if isinstance(row, Mapping) else lambda k, d=math.nan: getattr(row, k, d)
    change, lo, hi = (float(get(k, math.nan)) for k in ("change", "change_low", "change_high"))
    interval = (
        f" [{signed_percent(lo)}, {signed_percent(hi)}]"
        if math.isfinite(lo) and math.isfinite(hi)
        else ""
    )
    return signed_percent(change) + interval


def verdict_words(row: Mapping[str, Any] | Any) -> str:
    """One cell in words, the same everywhere (notebooks, report, knob panel):
    ``down: -65 % [-71 %, -58 %]`` or ``inconclusive: -40 % [-80 %, +10 %], not significant
    with 3 seeds``."""
    get = row.get if isinstance(row, Mapping) else lambda k, d=None: getattr(row, k, d)
    verdict = get("verdict", "")
    n_seeds = int(get("n_seeds", 0) or 0)
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    if verdict == "not enough data":
        return f"not enough data ({get('n_runs', 0)} converged runs at {get('n_values', 0)} values)"
    text = f"{verdict}: {change_text(row)}"
    if verdict == "inconclusive":
        text += f", not significant with {seeds}"
    elif verdict == "no clear change":
        # the interval may exclude 0 (a small, consistent change): say what the words mean
        text += f", within ±{LARGE_CHANGE * 100:.0f} % (no significant trend with {seeds})"
    elif verdict == "non-monotone":
        text += " between the ends, but the values differ along the sweep"
    return text


def which_factor(table: pd.DataFrame) -> str:
    """One line from a knob's verdict rows: each factor and the curvature part, in the words
    of :func:`verdict_words` (the same everywhere)."""
    rows = {r.quantity: r for r in table.itertuples()}
    factors = [q for q in ("sharpness", "size", "curvature") if q in rows]
    if not factors:
        return "no verdict"
    return "; ".join(f"{q} {verdict_words(rows[q])}" for q in factors)


def profile_verdict_table(runs_by_knob: Mapping[str, pd.DataFrame], profile: str) -> pd.DataFrame:
    """The verdict table of these sweeps, corrected for the whole table of ``profile`` (every
    knob x quantity), so that a notebook sweeping two knobs gives each the verdict the report
    gives it."""
    return verdict_table(
        runs_by_knob, quantities=VERDICT_QUANTITIES, family=verdict_family(profile)
    )


# --- paired comparison of two algorithms over the same seeds ------------------------------


def paired_comparison(
    a: pd.Series | Sequence[float] | np.ndarray,
    b: pd.Series | Sequence[float] | np.ndarray,
    seeds: Sequence[Any] | None = None,
    *,
    level: float = LEVEL,
    margin: float | None = None,
) -> dict[str, Any]:
    """b against a for two algorithms run with the same seeds, paired by seed.

    On the log-ratio log(b / a) when every value is positive (else the difference b - a,
    relative to |mean of a|). Two Series are aligned on their index (the seed); otherwise
    ``a[i]`` and ``b[i]`` pair. Pairs with a non-finite side are dropped and counted. Returns
    ``n_pairs``, ``n_dropped``, ``mean_a``, ``mean_b``, ``diff`` (mean of b - a), ``rel_diff``
    with ``rel_low``/``rel_high`` (the geometric mean ratio minus 1 and its Student-t interval
    at ``level``) and ``p``, the two-sided paired t-test on the same log-ratios (one model for
    the interval, the test and the equivalence test; an exact sign-flip test would floor at
    2 / 2^n, above what Holm over the claims asks of 8 pairs). With ``margin``
    (a relative change, e.g. 0.05), ``p_equivalent``: the two one-sided t-tests that the ratio
    lies within 1 -/+ margin.
    """
    av, bv, labels, n_unmatched = _pairs(a, b, seeds)
    ok = np.isfinite(av) & np.isfinite(bv)
    av, bv, labels = av[ok], bv[ok], labels[ok]
    n = int(av.size)
    log = bool(n and np.all(av > 0) and np.all(bv > 0))
    d = np.log(bv) - np.log(av) if log else bv - av
    base = abs(float(av.mean())) if n else math.nan
    out: dict[str, Any] = {
        "n_pairs": n,
        "n_dropped": int((~ok).sum() + n_unmatched),
        "seeds": [s.item() if hasattr(s, "item") else s for s in labels],
        "scale": "log" if log else "linear",
        "mean_a": float(av.mean()) if n else math.nan,
        "mean_b": float(bv.mean()) if n else math.nan,
        "diff": float((bv - av).mean()) if n else math.nan,
        "rel_diff": math.nan,
        "rel_low": math.nan,
        "rel_high": math.nan,
        "p": math.nan,
        "p_equivalent": math.nan,
        "margin": margin,
        "level": float(level),
    }

    def relative(t: float) -> float:
        return math.expm1(t) if log else (t / base if base else math.nan)

    if n:
        out["rel_diff"] = relative(float(d.mean()))
    if n < 2:
        return out
    se = float(d.std(ddof=1)) / math.sqrt(n)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * se
    out["rel_low"], out["rel_high"] = relative(d.mean() - half), relative(d.mean() + half)
    if se > 0:
        out["p"] = float(2 * stats.t.sf(abs(d.mean()) / se, n - 1))
    else:
        out["p"] = 0.0 if d.mean() != 0 else 1.0
    if margin is not None and math.isfinite(margin) and margin > 0:
        # Symmetric on the scale of the test: a ratio within 1/(1 + margin) ... 1 + margin.
        bound = math.log1p(margin) if log else margin * base
        if se > 0:
            p_low = stats.t.sf((d.mean() + bound) / se, n - 1)
            p_high = stats.t.cdf((d.mean() - bound) / se, n - 1)
            out["p_equivalent"] = float(max(p_low, p_high))
        else:
            out["p_equivalent"] = 0.0 if abs(d.mean()) < bound else 1.0
    return out


def same_size_margin(sharpness: Mapping[str, Any] | None) -> float | None:
    """The equivalence margin of "same size" next to a sharpness comparison: half its change
    (on the log scale), so that "flatter at the same size" means the size moved less than half
    as much as the sharpness did. None without a sharpness change."""
    if not sharpness:
        return None
    change = float(sharpness.get("rel_diff", math.nan))
    if not math.isfinite(change) or change <= -1:
        return None
    return math.expm1(abs(math.log1p(change)) / 2)


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
