"""Within-seed permutation tests and the effect between a sweep's ends, for the verdicts.

The runs of one seed (a block) share data split and initialisation; under "no effect" the
knob labels of one block's runs are exchangeable, and every test here permutes them within
blocks only. ``awbench.experiments.verdicts`` turns these raw numbers into verdicts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

# Arrangements enumerated exactly in one half (meet-in-the-middle) or in all; beyond, random
# draws. 6^10 (3 values, 10 seeds) is enumerated as two halves of 7776.
EXACT_LIMIT = 2_000_000
N_PERM = 200_000
LEVEL = 0.95


# --- the within-seed trend test -------------------------------------------------------------


def _block_arrangements(codes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The trend statistic of one seed under every arrangement of its knob labels."""
    perms = np.array(list(itertools.permutations(range(codes.size))))
    return codes[perms] @ y


def _sumset(parts: Sequence[np.ndarray]) -> np.ndarray:
    total = np.zeros(1)
    for part in parts:
        total = (total[:, None] + part[None, :]).ravel()
    return total


def _balanced_halves(sizes: Sequence[int]) -> tuple[list[int], list[int]]:
    """Indices of two groups whose products of sizes are as equal as a greedy split makes them."""
    halves: tuple[list[int], list[int]] = ([], [])
    products = [1, 1]
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        j = 0 if products[0] <= products[1] else 1
        halves[j].append(i)
        products[j] *= sizes[i]
    return halves


def trend_test(
    x: np.ndarray,
    y: np.ndarray,
    blocks: np.ndarray,
    *,
    n_perm: int = N_PERM,
    seed: int = 0,
    exact_limit: int = EXACT_LIMIT,
) -> dict[str, Any]:
    """Two-sided within-block permutation test of a linear trend of ``y`` in the rank of ``x``.

    Returns ``statistic`` (T, positive for a rising trend), ``p``, ``exact`` (every arrangement
    counted), ``p_floor`` (the smallest p this design can give: exact, or 1/(n_perm + 1)) and
    ``n_arrangements`` (the size of the permutation space, a float: it can exceed 2^63).
    """
    codes_all = np.searchsorted(np.unique(x), x).astype(float)
    parts, observed = [], 0.0
    for b in np.unique(blocks):
        idx = np.flatnonzero(blocks == b)
        if idx.size < 2:
            continue
        yb = y[idx] - y[idx].mean()
        cb = codes_all[idx]
        observed += float(cb @ yb)
        if idx.size <= 8:
            parts.append(_block_arrangements(cb, yb))
        else:
            parts.append((cb, yb))  # too many arrangements to list: drawn below
    out = {"statistic": observed, "p": math.nan, "exact": False, "p_floor": math.nan}
    out["n_arrangements"] = float(
        math.prod(
            float(len(p)) if isinstance(p, np.ndarray) else float(math.factorial(p[0].size))
            for p in parts
        )
    )
    if not parts:
        return out
    listed = all(isinstance(p, np.ndarray) for p in parts)
    scale = sum(float(np.abs(p).max()) if isinstance(p, np.ndarray) else 0.0 for p in parts)
    # Arrangements that reproduce the observed one reach |T| by another summation order: the
    # tolerance keeps rounding from dropping them below it.
    threshold = abs(observed) - 1e-9 * max(scale, 1e-300)
    sizes = [len(p) for p in parts] if listed else []
    if listed and math.prod(sizes) <= exact_limit:
        sums = _sumset(parts)
        out.update(p=float(np.mean(np.abs(sums) >= threshold)), exact=True)
        out["p_floor"] = _exact_floor(parts)
        return out
    if listed:
        left, right = _balanced_halves(sizes)
        if max(math.prod(sizes[i] for i in h) for h in (left, right)) <= exact_limit:
            a = _sumset([parts[i] for i in left])
            b = np.sort(_sumset([parts[i] for i in right]))
            hits = (b.size - np.searchsorted(b, threshold - a, "left")) + np.searchsorted(
                b, -threshold - a, "right"
            )
            # |a + b| >= t counts twice only when t <= 0 (a flat statistic): then every pair hits.
            p = 1.0 if threshold <= 0 else float(hits.sum()) / (a.size * b.size)
            out.update(p=min(1.0, p), exact=True, p_floor=_exact_floor(parts))
            return out
    rng = np.random.default_rng(seed)
    draws = np.zeros(n_perm)
    for p in parts:
        if isinstance(p, np.ndarray):
            draws += p[rng.integers(0, p.size, n_perm)]
        else:
            cb, yb = p
            draws += rng.permuted(np.broadcast_to(cb, (n_perm, cb.size)), axis=1) @ yb
    hits = int(np.sum(np.abs(draws) >= threshold))
    out.update(p=(1 + hits) / (1 + n_perm), p_floor=1 / (1 + n_perm))
    return out


def _exact_floor(parts: Sequence[np.ndarray]) -> float:
    """The smallest exact p: the arrangements that put every seed at its extreme, both ways."""
    total = math.prod(float(p.size) for p in parts)
    top = math.prod(float(np.sum(p >= p.max() - 1e-12 * abs(p.max()))) for p in parts)
    bottom = math.prod(float(np.sum(p <= p.min() + 1e-12 * abs(p.min()))) for p in parts)
    flat = all(np.ptp(p) == 0 for p in parts)
    return 1.0 if flat else (top + bottom) / total


def nonmonotone_test(
    x: np.ndarray, y: np.ndarray, blocks: np.ndarray, *, n_perm: int = 20_000, seed: int = 0
) -> dict[str, Any]:
    """Within-seed permutation test of any difference between the values' means (the spread of
    the blocked means), over the seeds that ran every value once; ``p``, ``exact``, ``n_seeds``.
    NaN p with fewer than 3 values or 2 complete seeds."""
    values = np.unique(x)
    codes = np.searchsorted(values, x)
    _, block_of = np.unique(blocks, return_inverse=True)
    counts = np.zeros((block_of.max(initial=-1) + 1, values.size), dtype=int)
    np.add.at(counts, (block_of, codes), 1)
    complete = np.all(counts == 1, axis=1)
    out = {"p": math.nan, "exact": False, "n_seeds": int(complete.sum())}
    if values.size < 3 or complete.sum() < 2:
        return out
    grid = np.full(counts.shape, np.nan)
    grid[block_of, codes] = y
    data = grid[complete]
    data = data - data.mean(axis=1, keepdims=True)

    # Every arrangement of one seed's row; the statistic of a draw sums one arrangement per
    # seed, so the whole null distribution is gathered at once (scipy.stats.permutation_test
    # with permutation_type="samples" gives the same p, 20-30x slower: tested).
    perms = np.array(list(itertools.permutations(range(values.size))))
    rows = data[:, perms]  # (seeds, arrangements, values)
    observed = float(np.sum(data.sum(axis=0) ** 2))
    n_arrangements = perms.shape[0] ** data.shape[0]
    tol = 1e-9 * max(observed, 1e-300)
    if n_arrangements <= n_perm:
        totals = np.zeros((1, values.size))
        for seed_rows in rows:
            totals = (totals[:, None, :] + seed_rows[None, :, :]).reshape(-1, values.size)
        p = float(np.mean(np.sum(totals**2, axis=1) >= observed - tol))
        out.update(p=p, exact=True)
        return out
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, perms.shape[0], (n_perm, data.shape[0]))
    totals = rows[np.arange(data.shape[0])[None, :], picks].sum(axis=1)
    hits = int(np.sum(np.sum(totals**2, axis=1) >= observed - tol))
    out.update(p=(1 + hits) / (1 + n_perm))
    return out


# --- the effect between the ends --------------------------------------------------------------


def end_change(
    x: np.ndarray, y: np.ndarray, blocks: np.ndarray, log: bool, level: float = LEVEL
) -> dict[str, float]:
    """The change from the first to the last value: ``change`` with its ``level`` Student-t
    interval (``change_low``, ``change_high``) and ``n_pairs``.

    Paired (seeds that ran both ends): on the log scale the geometric mean of last / first
    minus 1, else the mean difference over |mean at the first value|. Without pairs, the
    difference of the two ends' means (Welch).
    """
    values = np.unique(x)
    out = {"change": math.nan, "change_low": math.nan, "change_high": math.nan, "n_pairs": 0}
    if values.size < 2:
        return out
    v = np.log(y) if log else y
    first = pd.Series(v[x == values[0]], index=blocks[x == values[0]])
    last = pd.Series(v[x == values[-1]], index=blocks[x == values[-1]])
    first = first[~first.index.duplicated()]
    last = last[~last.index.duplicated()]
    shared = first.index.intersection(last.index)
    base = abs(float(np.mean(y[x == values[0]])))
    q = 0.5 + level / 2
    if len(shared) >= 2:
        d = (last[shared] - first[shared]).to_numpy()
        mean, se, df = d.mean(), d.std(ddof=1) / math.sqrt(d.size), d.size - 1
        out["n_pairs"] = int(d.size)
    else:
        a, b = first.to_numpy(), last.to_numpy()
        mean = b.mean() - a.mean()
        if a.size < 2 or b.size < 2:
            se, df = math.nan, 1
        else:
            va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
            se = math.sqrt(va + vb)
            df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if se else 1
    half = stats.t.ppf(q, df) * se if math.isfinite(se) else math.nan
    if log:
        out.update(
            change=math.expm1(mean),
            change_low=math.expm1(mean - half),
            change_high=math.expm1(mean + half),
        )
    elif base > 0:
        out.update(
            change=mean / base, change_low=(mean - half) / base, change_high=(mean + half) / base
        )
    return out
