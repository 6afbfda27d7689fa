"""Sweep tables: which runs count as results, their statistics over seeds, and how the runs
that do not count are drawn (hollow grey, named in the hover, left out of every statistic).

An unconverged network is not a result (docs/science.md#5). Error bars are the 95 % confidence
interval of the mean over seeds (Student t, ``t × sd / √n``); a single converged run has none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from awbench.experiments.effects import converged_mask
from awbench.status import DONE_STATUSES

# Unconverged runs are drawn (hiding them would hide how often training fell short) but in a
# colour no statistic uses, so they cannot be mistaken for results.
NOT_CONVERGED = "not converged (left out)"
UNCONVERGED_COLOR = "#999"
LEVEL = 0.95
INTERVAL = "95 % CI of the mean, t-based"


def _has_numbers(runs: pd.DataFrame) -> pd.Series:
    if "ok" in runs:
        return runs["ok"].fillna(False).astype(bool)
    if "status" in runs:
        return runs["status"].astype(str).isin(DONE_STATUSES)
    return pd.Series(True, index=runs.index)


def split_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(converged runs, runs with numbers that did not converge). Diverged and failed runs
    have no numbers to draw and are in neither; they still count in :func:`converged_note`."""
    conv = converged_mask(runs)
    return runs[conv], runs[_has_numbers(runs) & ~conv]


def converged_note(runs: pd.DataFrame) -> str:
    """The line "n of m runs converged" when some run did not, else an empty string."""
    n, m = int(converged_mask(runs).sum()), len(runs)
    return "" if n == m else f"{n} of {m} runs converged"


def titled(title: str, runs: pd.DataFrame) -> str:
    note = converged_note(runs)
    if not note:
        return title
    # The space before <br> keeps the words apart where a caption strips the tags.
    rest = "the others are drawn hollow grey and left out of every statistic"
    return f"{title} <br><sup>{note}; {rest}</sup>"


def t_interval(sd, n, level: float = LEVEL) -> np.ndarray:
    """Half-width of the ``level`` confidence interval of a mean: t(n−1) × sd / √n; NaN for
    fewer than two runs (one run says nothing about the spread)."""
    from scipy.stats import t as student_t

    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    out = np.full(sd.shape, np.nan)
    two = n >= 2
    out[two] = student_t.ppf(0.5 + level / 2, n[two] - 1) * sd[two] / np.sqrt(n[two])
    return out


def seed_stats(
    runs: pd.DataFrame, knob: str, columns: Sequence[str], level: float = LEVEL
) -> pd.DataFrame:
    """Per knob value, over converged runs only: mean, standard deviation over seeds (ddof 1;
    0 for one run), the ``level`` confidence half-width of the mean (``_ci``, NaN below two
    runs) and the count of finite values (``_n``). Every value of the knob gets a row, so a
    value whose runs all failed to converge is there with NaN means; ``n_runs`` and
    ``n_converged`` count the runs at each value."""
    cols = list(columns)
    conv, _ = split_runs(runs)
    values = pd.Index(sorted(runs[knob].dropna().unique()), name=knob)
    g = conv.groupby(knob, sort=True)[cols]
    mean, std = g.mean().reindex(values), g.std(ddof=1).reindex(values)
    n = g.count().reindex(values).fillna(0).astype(int)
    out = pd.DataFrame(index=values)
    for c in cols:
        sd = std[c].where(n[c] != 1, 0.0)
        out[f"{c}_mean"], out[f"{c}_std"], out[f"{c}_n"] = mean[c], sd, n[c]
        out[f"{c}_ci"] = t_interval(sd, n[c], level)
    out["n_runs"] = runs.groupby(knob).size().reindex(values).fillna(0).astype(int)
    out["n_converged"] = conv.groupby(knob).size().reindex(values).fillna(0).astype(int)
    return out.reset_index()


# --- drawing the statistics --------------------------------------------------------------


def spread(s: pd.DataFrame, key: str, unit: str = "") -> np.ndarray:
    """Per knob value, what its error bar is (one hover line each), as a customdata column."""
    out = []
    for ci, sd, n, m in zip(s[f"{key}_ci"], s[f"{key}_std"], s[f"{key}_n"], s["n_runs"]):
        if n == 0:
            out.append(f"no converged run ({m} run{'s' if m != 1 else ''}): no mean")
        elif n == 1:
            out.append(f"a single converged run of {m}: no interval")
        else:
            out.append(
                f"± {ci:.2g}{unit} ({INTERVAL})<br>sd over seeds {sd:.2g}; {n} of {m} runs converged"
            )
    return np.array(out, dtype=object).reshape(-1, 1)


def error_bars(s: pd.DataFrame, key: str) -> dict:
    # Below two converged runs there is no interval: a zero bar, and the hover says why.
    return {"type": "data", "array": s[f"{key}_ci"].fillna(0.0).to_numpy(), "visible": True}


def seed_counts(s: pd.DataFrame, key: str) -> str:
    n = s.loc[s[f"{key}_n"] > 0, f"{key}_n"]
    if n.empty:
        return "no converged seed"
    lo, hi = int(n.min()), int(n.max())
    return f"{hi if lo == hi else f'{lo}–{hi}'} converged seed{'s' if hi != 1 else ''}"


def unconverged_marks(
    runs: pd.DataFrame,
    x: str,
    y: str,
    xy_hover: str,
    knob: str | None = None,
    numbers: Mapping[str, str] | None = None,
    symbol: str = "circle-open",
    **kw,
) -> go.Scatter:
    """Hollow grey markers for runs that did not converge, each named in the hover by its
    knob value, seed and status, with ``numbers`` ({column: label}) listed below."""
    names = (knob,) if knob else ("knob", "value")
    ids = [c for c in (*names, "seed", "status", "epochs") if c in runs]
    nums = [c for c in (numbers or {}) if c in runs]
    custom = runs[ids + nums].to_numpy(dtype=object) if ids or nums else None
    lines = [
        NOT_CONVERGED,
        " ".join(f"{c} %{{customdata[{j}]}}" for j, c in enumerate(ids)),
        xy_hover,
        *(f"{numbers[c]} %{{customdata[{len(ids) + j}]:.4g}}" for j, c in enumerate(nums)),
    ]
    kw.setdefault("name", NOT_CONVERGED)
    return go.Scatter(
        x=runs[x],
        y=runs[y],
        mode="markers",
        marker={"symbol": symbol, "color": UNCONVERGED_COLOR, "size": 9, "line": {"width": 1.5}},
        customdata=custom,
        hovertemplate="<br>".join(line for line in lines if line) + "<extra></extra>",
        **kw,
    )


def mark_empty(
    fig: go.Figure, s: pd.DataFrame, knob: str, log: bool, xref: str = "x", yref: str = "y"
) -> None:
    """Label each knob value without a converged run at the top of its column."""
    for v in s.loc[s["n_converged"] == 0, knob]:
        fig.add_annotation(
            x=math.log10(v) if log else v,
            xref=xref,
            y=1,
            yref=f"{yref} domain",
            yanchor="top",
            text="no converged run",
            showarrow=False,
            font={"color": UNCONVERGED_COLOR, "size": 10},
        )


def finite(values: Iterable[float]) -> bool:
    """True when every value is a finite number (used by takeaways and tests)."""
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
