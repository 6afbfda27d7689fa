"""Every takeaway sentence is checked against the numbers it states.

Each test builds inputs with known numbers (hand-made frames, dicts and small stand-ins for
a run, an Analysis or the knob panel), computes the truth here independently of the module
(pandas group means, scipy's Spearman, numpy), parses the numbers out of the sentence and
compares them at the precision the sentence states. Direction words (up/down, more/less,
positive/negative, which factor leads) are checked against the sign of the input, and each
test flips the input (the sign of an effect, a run's convergence) to see the sentence follow.
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from awbench.apps.knobs import sentences as ks
from awbench.apps.knobs import widgets as kw
from awbench.apps.knobs.grid import KNOB_TEXT, KNOBS, Point, Setting
from awbench.config import Config
from awbench.experiments.verdicts import which_factor
from awbench.viz import knob_takeaways as kt
from awbench.viz import landscape_takeaways as lt
from awbench.viz import learner_comparison as lc
from awbench.viz import run_takeaways as rt
from awbench.viz.gap_plots import knob_label

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|n/a|–"
PCT = r"[-+]\d+ %|n/a"


def _n(pattern: str) -> str:
    """``pattern`` with ``{N}`` a captured number and ``{P}`` a captured percentage."""
    return pattern.replace("{N}", f"({NUM})").replace("{P}", f"({PCT})")


def grab(pattern: str, text: str) -> tuple[str, ...]:
    m = re.search(_n(pattern), text)
    assert m, f"{pattern!r} not in {text!r}"
    return m.groups()


def same(stated: str, value: float, digits: int = 3) -> None:
    """``stated`` is ``value`` at ``digits`` significant digits (n/a when not finite)."""
    if value is None or not math.isfinite(value):
        assert stated == "n/a", (stated, value)
        return
    assert float(stated) == float(f"{value:.{digits}g}"), (stated, value, digits)
    # and the rounding is honest: within half a unit of the last stated digit
    if value:
        unit = 10 ** (math.floor(math.log10(abs(value))) - digits + 1)
        assert abs(float(stated) - value) <= 0.5 * unit * (1 + 1e-9) + 1e-300


def same_pct(stated: str, fraction: float) -> None:
    """``stated`` ("+12 %") is ``100 * fraction`` rounded, with its sign."""
    if not math.isfinite(fraction):
        assert stated == "n/a"
        return
    value = int(stated.replace(" %", ""))
    assert abs(value - 100 * fraction) <= 0.5 + 1e-9, (stated, fraction)
    if round(100 * fraction) != 0:
        assert (stated[0] == "+") == (fraction > 0), (stated, fraction)


def rho(x, y) -> float:
    return float(spearmanr(np.asarray(x, float), np.asarray(y, float)).statistic)


# --- knob sweeps (awbench.viz.knob_takeaways) ------------------------------------------------

KNOB = "dropout"
VALUES = (0.0, 0.1, 0.2, 0.3)


def sweep(
    gap_slope: float = 1.0,
    sharp_slope: float = 1.0,
    size_slope: float = 0.0,
    noise: float = 0.005,
    unconverged: tuple = (),
    values: tuple = VALUES,
    seeds: int = 3,
    knob: str = KNOB,
) -> pd.DataFrame:
    """A synthetic sweep: known linear trends plus seed noise; ``unconverged`` (value, seed)
    pairs are max_epochs runs with absurd numbers that no statement may include."""
    rng = np.random.default_rng(1)
    rows = []
    for v in values:
        for s in range(seeds):
            bad = (v, s) in unconverged
            gap = 0.2 + gap_slope * v + rng.normal(0, noise)
            pair = gap * (1.02 + rng.normal(0, 0.003))
            rows.append(
                {
                    knob: v,
                    "seed": s,
                    "status": "max_epochs" if bad else "converged",
                    "real_gap": 50.0 if bad else gap,
                    "pair_gap": 50.0 if bad else pair,
                    "estimated_gap": 50.0 if bad else gap * (0.9 + rng.normal(0, 0.01)),
                    "sharp_gap": 50.0 if bad else pair * (0.3 + v),
                    "flat_gap": 50.0 if bad else pair * (0.7 - v),
                    "sharpness": 50.0 if bad else 1 + sharp_slope * v + rng.normal(0, 0.01),
                    "size": 50.0 if bad else 2 + size_slope * v + rng.normal(0, 0.01),
                    "weight_norm": 50.0 if bad else 3 + 2 * v + rng.normal(0, 0.01),
                    "test_error": 50.0 if bad else 0.1 + (v - 0.15) ** 2 + rng.normal(0, 1e-3),
                    "duality_error": 1e-9,
                    "identity_error": 1e-10,
                }
            )
    runs = pd.DataFrame(rows)
    runs["ok"] = True
    runs["converged"] = runs["status"] == "converged"
    runs.insert(0, "knob", knob)
    runs.insert(1, "value", runs[knob])
    return runs


def conv(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "converged"]


def means(runs: pd.DataFrame, col: str) -> pd.Series:
    return conv(runs).groupby(KNOB)[col].mean()


def change(m: pd.Series) -> float:
    return (m.iloc[-1] - m.iloc[0]) / abs(m.iloc[0])


def check_span(text: str, runs: pd.DataFrame) -> None:
    """The span names the converged values the change is measured between."""
    lo, hi, n = grab(re.escape(knob_label(KNOB)) + r" {N} → {N} \((\d+) seeds? per value", text)
    ok_vals = sorted(conv(runs)[KNOB].unique())
    assert (float(lo), float(hi)) == (ok_vals[0], ok_vals[-1])
    assert int(n) == runs.groupby(KNOB).size().max()
    missing = sorted(set(runs[KNOB]) - set(ok_vals))
    if missing:
        (listed,) = grab(r"no converged run at ([\d., ]+)\)", text)
        assert [float(x) for x in listed.split(", ")] == missing
    else:
        assert "no converged run at" not in text


def check_left_out(text: str, runs: pd.DataFrame) -> None:
    n_bad = int((runs["status"] != "converged").sum())
    if n_bad:
        (n,) = grab(r"(\d+) run\(s\) did not converge", text)
        assert int(n) == n_bad
    else:
        assert "did not converge" not in text


SWEEPS = {
    "gap up": {"gap_slope": 1.0},
    "gap down": {"gap_slope": -0.5},
    "noisy": {"gap_slope": 0.01, "noise": 0.05},
    "one unconverged": {"gap_slope": 1.0, "unconverged": ((0.3, 2),)},
    "last value unconverged": {"gap_slope": -0.5, "unconverged": ((0.3, 0), (0.3, 1), (0.3, 2))},
}


@pytest.mark.parametrize("kwargs", SWEEPS.values(), ids=SWEEPS.keys())
def test_gap_takeaway_states_the_sweep_numbers(kwargs):
    runs = sweep(**kwargs)
    text = kt.gap_takeaway(runs, KNOB)
    check_span(text, runs)
    check_left_out(text, runs)
    m = means(runs, "real_gap")
    lo, hi, ch, r = grab(r"real gap {N} → {N} nats \({P}, Spearman ρ with the knob = {N}\)", text)
    same(lo, m.iloc[0])
    same(hi, m.iloc[-1])
    same_pct(ch, change(m))
    truth = rho(conv(runs)[KNOB], conv(runs)["real_gap"])
    same(r, truth, 2)
    assert (float(ch.split()[0]) > 0) == (m.iloc[-1] > m.iloc[0]) == (truth > 0)
    spread = conv(runs).groupby(KNOB)["real_gap"].std(ddof=1).max()
    assert ("within the seed-to-seed spread" in text) == (abs(m.iloc[-1] - m.iloc[0]) <= spread)
    share = means(runs, "sharp_gap") / means(runs, "pair_gap")
    first, last = grab(r"carries {N} % of the exact gap at the first value and {N} %", text)
    same(first, 100 * share.iloc[0], 2)
    same(last, 100 * share.iloc[-1], 2)
    ok = conv(runs)
    est = ((ok["estimated_gap"] - ok["real_gap"]).abs() / ok["real_gap"].abs()).median()
    (med,) = grab(r"within a median {N} % of the real gap", text)
    same(med, 100 * est, 2)


def test_gap_takeaway_flips_with_the_effect_and_says_when_nothing_converged():
    up, down = (kt.gap_takeaway(sweep(gap_slope=s), KNOB) for s in (1.0, -0.5))
    assert grab(r"nats \({P}", up)[0].startswith("+")
    assert grab(r"nats \({P}", down)[0].startswith("-")
    assert float(grab(r"ρ with the knob = {N}", up)[0]) > 0
    assert float(grab(r"ρ with the knob = {N}", down)[0]) < 0
    none = sweep(unconverged=tuple((v, s) for v in VALUES for s in range(3)))
    assert kt.gap_takeaway(none, KNOB) == f"**{KNOB}:** no run converged; nothing to report."
    assert kt.factor_takeaway(none, KNOB, "quick") == (
        f"**{KNOB}:** no run converged; nothing to report."
    )


VERDICT_RE = (
    r"(sharpness|size|curvature) (up|down|non-monotone|no clear change|inconclusive): "
    r"{P} \[{P}, {P}\]"
)


def parse_verdicts(text: str) -> dict[str, tuple]:
    return {m[0]: m[1:] for m in re.findall(_n(VERDICT_RE), text)}


def within_seed_change(runs: pd.DataFrame, col: str) -> float:
    """Geometric mean over seeds of last / first value, minus 1 (converged runs)."""
    wide = conv(runs).pivot(index="seed", columns=KNOB, values=col)
    ends = wide[[wide.columns.min(), wide.columns.max()]].dropna()
    return float(np.expm1(np.mean(np.log(ends.iloc[:, 1] / ends.iloc[:, 0]))))


FACTOR_SWEEPS = {
    "sharpness up": {"sharp_slope": 1.0, "size_slope": 0.0, "unconverged": ((0.2, 1),)},
    "size down": {"sharp_slope": 0.0, "size_slope": -1.0},
}


@pytest.mark.parametrize("kwargs", FACTOR_SWEEPS.values(), ids=FACTOR_SWEEPS.keys())
def test_factor_takeaway_states_changes_and_verdicts(kwargs):
    runs = sweep(**kwargs)
    text = kt.factor_takeaway(runs, KNOB, "quick")
    check_span(text, runs)
    check_left_out(text, runs)
    ok = conv(runs).assign(curvature=lambda d: d["sharpness"] / d["size"])
    for label, col in (
        ("sharpness Σσg²", "sharpness"),
        ("size Σσw²", "size"),
        ("the curvature part Σσg²/Σσw²,", "curvature"),
    ):
        m = ok.groupby(KNOB)[col].mean()
        lo, hi, ch = grab(re.escape(label) + r" {N} → {N} \({P}\)", text)
        same(lo, m.iloc[0])
        same(hi, m.iloc[-1])
        same_pct(ch, change(m))
    same_pct(grab(r"layer weight norm {P}", text)[0], change(means(runs, "weight_norm")))
    (n_ok,) = grab(r"Verdicts over (\d+) converged runs", text)
    assert int(n_ok) == len(conv(runs))
    assert "42 knob × quantity cells of the quick profile" in text
    verdicts = parse_verdicts(text)
    assert set(verdicts) == {"sharpness", "size", "curvature"}
    for q, (verdict, ch, lo, hi) in verdicts.items():
        truth = within_seed_change(ok, q)
        same_pct(ch, truth)
        assert int(lo.split()[0]) <= int(ch.split()[0]) <= int(hi.split()[0])
        if verdict in ("up", "down"):
            assert (verdict == "up") == (truth > 0)
    # the planted trend is found, in its direction, with 3 seeds of 4 values in a perfect order
    moved = "sharpness" if kwargs["sharp_slope"] else "size"
    slope = kwargs["sharp_slope"] or kwargs["size_slope"]
    assert verdicts[moved][0] == ("up" if slope > 0 else "down")
    assert "Real gap " in text


def test_knob_takeaway_is_both_paragraphs():
    runs = sweep(unconverged=((0.1, 0),))
    text = kt.knob_takeaway(runs, KNOB, "quick")
    gap, factors = text.split("\n\n")
    assert gap == kt.gap_takeaway(runs, KNOB)
    assert factors.startswith(f"**{knob_label(KNOB)}") and "Verdicts over 11 converged" in factors


PLANES = {
    "sharpness leads": (1.0, 0.3, 0.0),
    "size leads, sharpness against": (-1.0, 2.0, 0.0),
    "all against": (-1.0, -1.0, 0.0),
}


@pytest.mark.parametrize("trend", PLANES.values(), ids=PLANES.keys())
def test_plane_takeaway_ranks_the_factors_by_spearman(trend):
    a, b, _ = trend
    rng = np.random.default_rng(3)
    gap = np.linspace(0.1, 1.0, 12)
    runs = pd.DataFrame(
        {
            "real_gap": gap,
            "sharpness": np.exp(a * gap + rng.normal(0, 0.15, 12)),
            "size": np.exp(b * gap + rng.normal(0, 0.15, 12)),
            "status": "converged",
            "converged": True,
        }
    )
    runs.loc[0, ["status", "converged", "sharpness", "size"]] = ["max_epochs", False, 1e6, 1e6]
    ok = runs[runs["converged"]]
    truth = {
        "sharpness": rho(ok["sharpness"], ok["real_gap"]),
        "size": rho(ok["size"], ok["real_gap"]),
        "√(sharpness·size)": rho(np.sqrt(ok["sharpness"] * ok["size"]), ok["real_gap"]),
    }
    text = kt.plane_takeaway(runs)
    n, r_sharp, r_size, r_both = grab(
        r"Over these (\d+) runs .* sharpness at Spearman ρ = {N}, with size at {N} .* at {N}", text
    )
    assert int(n) == len(ok)
    for stated, key in zip((r_sharp, r_size, r_both), truth):
        same(stated, truth[key], 2)
    best = max(truth, key=truth.get)
    if truth[best] <= 0:
        assert "no factor grows with the gap" in text and "follows the gap" not in text
    else:
        assert f"**{best}** follows the gap most closely" in text
        against = [k for k, v in truth.items() if v < 0]
        if against:
            assert f"; {' and '.join(against)} moved against the gap here" in text
        else:
            assert "moved against" not in text


@pytest.mark.parametrize("unconverged", [(), ((0.2, 0),), ((0.3, 0), (0.3, 1), (0.3, 2))])
@pytest.mark.parametrize("metric", ["test_error", "real_gap"])
def test_metric_takeaway(metric, unconverged):
    runs = sweep(unconverged=unconverged)
    text = kt.metric_takeaway(runs, KNOB, metric)
    check_span(text, runs)
    m = means(runs, metric)
    label = metric.replace("_", " ")
    lo, hi, best, at, r = grab(
        re.escape(label) + r" {N} → {N} \(best {N} at " + KNOB + r" = {N}; Spearman ρ with the "
        r"knob = {N}\)",
        text,
    )
    same(lo, m.iloc[0])
    same(hi, m.iloc[-1])
    same(best, m.min())
    assert float(at) == m.idxmin()
    same(r, rho(conv(runs)[KNOB], conv(runs)[metric]), 2)


@pytest.mark.parametrize("power", [2.0, 0.5, -1.0])
def test_size_norm_takeaway_states_ranges_and_the_log_log_slope(power):
    norm = np.linspace(1.0, 4.0, 9)
    runs = pd.DataFrame(
        {
            "knob": ["weight_decay"] * 5 + ["dropout"] * 4,
            "weight_norm": norm,
            "size": 0.7 * norm**power,
            "status": "converged",
            "converged": True,
        }
    )
    runs.loc[4, ["status", "converged", "size"]] = ["max_epochs", False, 1e9]
    ok = runs[runs["converged"]]
    text = kt.size_norm_takeaway(runs)
    n, knobs, w_lo, w_hi, s_lo, s_hi, r, slope = grab(
        r"Across (\d+) runs of ([\w, ]+) the weight norm spans {N} … {N} and size Σσw² spans "
        r"{N} … {N}: Spearman ρ = \*\*{N}\*\*, log-log slope \*\*{N}\*\*",
        text,
    )
    assert int(n) == len(ok) and knobs == "dropout, weight_decay"
    same(w_lo, ok["weight_norm"].min())
    same(w_hi, ok["weight_norm"].max())
    same(s_lo, ok["size"].min())
    same(s_hi, ok["size"].max())
    same(r, rho(ok["weight_norm"], ok["size"]), 2)
    assert np.sign(float(r)) == np.sign(power)
    same(slope, power, 3)


@pytest.mark.parametrize("bias", [0.9, 1.2])
def test_estimate_takeaway(bias):
    rng = np.random.default_rng(4)
    gap = np.linspace(0.1, 0.5, 10)
    runs = pd.DataFrame(
        {
            "real_gap": gap,
            "estimated_gap": gap * (bias + rng.normal(0, 0.02, 10)),
            "pair_gap": gap * (1.01 + rng.normal(0, 0.005, 10)),
            "ok": [True] * 9 + [False],
        }
    )
    runs.loc[9, ["estimated_gap", "pair_gap"]] = [100.0, 100.0]  # not analysed: left out
    ok = runs[runs["ok"]]
    rel = (ok["estimated_gap"] - ok["real_gap"]).abs() / ok["real_gap"]
    rel_pair = (ok["pair_gap"] - ok["real_gap"]).abs() / ok["real_gap"]
    text = kt.estimate_takeaway(runs)
    n, med, worst, r, med_pair = grab(
        r"Over (\d+) runs .* median {N} % \(worst {N} %\) .* Pearson r = {N}; .* by a median {N} %",
        text,
    )
    assert int(n) == len(ok)
    same(med, 100 * rel.median(), 2)
    same(worst, 100 * rel.max(), 2)
    same(r, np.corrcoef(ok["real_gap"], ok["estimated_gap"])[0, 1], 4)
    same(med_pair, 100 * rel_pair.median(), 2)


@pytest.mark.parametrize(
    "statuses",
    [
        ["converged"] * 6,
        ["converged", "max_epochs", "converged", "diverged", "converged", "converged"],
        ["max_epochs"] * 6,
    ],
)
def test_convergence_takeaway_counts(statuses):
    runs = pd.DataFrame({KNOB: [0.0, 0.0, 0.1, 0.1, 0.2, 0.2], "status": statuses})
    text = kt.convergence_takeaway(runs, [KNOB])
    n_ok, n = grab(r"\*\*(\d+) of (\d+) runs met the stopping rule", text)
    assert int(n_ok) == statuses.count("converged") and int(n) == len(runs)
    bad = runs[runs["status"] != "converged"].groupby(KNOB).size()
    if len(bad):
        (listed,) = grab(r"Left out of every comparison: (.*)\.$", text)
        stated = {float(v): int(c) for v, c in re.findall(r"([\d.]+) \((\d+)\)", listed)}
        assert stated == {float(k): int(c) for k, c in bad.items()}
    else:
        assert "Left out" not in text


# --- one run (awbench.viz.run_takeaways) ------------------------------------------------------


@pytest.mark.parametrize("status", ["converged", "max_epochs"])
def test_run_takeaway(status):
    res = SimpleNamespace(
        status=status,
        epochs=37,
        train_seconds=4.567,
        history=pd.DataFrame({"train_loss": [0.9, 0.1, 0.000812]}),
        scalars={
            "test_error": 0.04321,
            "real_gap": 0.21876,
            "test_loss": 0.22,
            "train_loss": 0.00124,
        },
    )
    text = rt.run_takeaway(res)
    st, ep, sec, loss, err, gap, te, tr = grab(
        r"Training \*\*(\w+)\*\* after (\d+) epochs \({N} s\): clean-train loss {N}, test error "
        r"{N} %, so the real generalization gap is \*\*{N} nats\*\* \(test CE {N} − train CE {N}\)",
        text,
    )
    assert st == status and int(ep) == 37
    same(sec, 4.567, 2)
    same(loss, 0.000812)
    same(err, 4.321)
    same(gap, 0.21876)
    same(te, 0.22)
    same(tr, 0.00124)


def analysis(sign: float = 1.0, n: int = 30) -> SimpleNamespace:
    """A stand-in Analysis: ``n`` directions in rank order (σg descending) whose
    contributions sum to the pair gap exactly."""
    rng = np.random.default_rng(5)
    lam = np.sort(rng.uniform(0.01, 10.0, n))[::-1]
    sigma_g = np.sort(rng.uniform(0.01, 1.0, n))[::-1]
    if sign < 0:
        sigma_g = sigma_g[::-1]
    sigma_w = rng.uniform(0.1, 2.0, n)
    c = rng.normal(0.5, 0.2, n)
    contribution = np.abs(c * sigma_g * sigma_w) + 1e-3
    d = pd.DataFrame(
        {
            "lam": lam,
            "sigma_g": sigma_g,
            "sigma_w": sigma_w,
            "c": c,
            "contribution": contribution,
        }
    )
    pair_gap = float(contribution.sum())
    return SimpleNamespace(
        directions=d,
        n_pairs=412,
        pair_gap=pair_gap,
        identity_error=3.2e-13,
        mean_term=0.0123,
        estimated_gap=0.87 * pair_gap,
        real_gap=1.05 * pair_gap,
        sharp_gap=float(contribution[:10].sum()),
        flat_gap=float(contribution[10:].sum()),
        sharpness=float((sigma_g**2).sum()),
        size=float((sigma_w**2).sum()),
        weight_norm=3.21,
        lam_max=float(lam.max()),
        second_order_gap=0.93 * pair_gap,
        first_order_term=0.5 * pair_gap,
        second_order_term=0.43 * pair_gap,
        second_order_error=0.07 * pair_gap,
        n_weights=640,
        duality_error=4.4e-14,
    )


def test_identity_takeaway():
    an = analysis()
    text = rt.identity_takeaway(an)
    n, pg, nd, err, mt, est, keep, real = grab(
        r"Over (\d+) pairs the mean per-pair gap is ⟨Δl⟩ = \*\*{N} nats\*\*; the sum over (\d+) "
        r"directions .* back to \*\*{N}\*\* .* Σ μg μw is {N} nats, so .* = {N} nats keeps {N} % "
        r"of it; the real gap is {N} nats",
        text,
    )
    assert int(n) == 412 and int(nd) == len(an.directions)
    same(pg, an.pair_gap, 5)
    assert err == f"{an.identity_error:.1e}"
    same(mt, an.mean_term)
    same(est, an.estimated_gap, 4)
    same(keep, 87.0, 3)
    same(real, an.real_gap, 4)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_spectra_takeaway(sign):
    an = analysis(sign)
    d = an.directions
    text = rt.spectra_takeaway(an)
    g0, g1, nd, share, sharp, flat, n90, cs, cs_sd, ca, ca_sd = grab(
        r"σg falls from {N} to {N} over (\d+) directions. The 10 sharpest carry \*\*{N} %\*\* of "
        r"the exact gap \(sharp {N} \+ flat {N} nats\); (\d+) directions reach 90 %. Among the "
        r"sharp ones c = {N} ± {N}, over all directions {N} ± {N}",
        text,
    )
    same(g0, d["sigma_g"].iloc[0])
    same(g1, d["sigma_g"].iloc[-1])
    assert int(nd) == len(d)
    same(share, 100 * an.sharp_gap / an.pair_gap, 3)
    same(sharp, an.sharp_gap, 4)
    same(flat, an.flat_gap, 4)
    cum = np.cumsum(d["contribution"].to_numpy()) / an.pair_gap
    assert int(n90) == 1 + next(i for i, x in enumerate(cum) if x >= 0.9)
    same(cs, np.mean(d["c"][:10]), 2)
    same(cs_sd, np.std(d["c"][:10]), 2)
    same(ca, np.mean(d["c"]), 2)
    same(ca_sd, np.std(d["c"]), 2)


@pytest.mark.parametrize(
    ("r", "word"),
    [
        (0.95, "strong positive"),
        (0.7, "strong positive"),
        (-0.7, "strong negative"),
        (0.55, "moderate positive"),
        (-0.4, "moderate negative"),
        (0.25, "weak positive"),
        (-0.2, "weak negative"),
        (0.1, "no clear"),
        (-0.19, "no clear"),
        (float("nan"), "undefined"),
    ],
)
def test_strength_words_follow_the_size_and_sign(r, word):
    assert rt.strength(r) == word


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_factors_takeaway(sign):
    an = analysis(sign)
    d = an.directions
    text = rt.factors_takeaway(an)
    sh, sz, wn, n, lam_max, r_g, strength_g, strength_r, r_r = grab(
        r"Sharpness Σσg² = \*\*{N}\*\*, size Σσw² = \*\*{N}\*\* at a layer norm ‖W‖ = {N}. Over "
        r"the (\d+) curved directions \(λ > 1e-12 λ_max = {N}\) σg follows λ with Spearman ρ = "
        r"\*\*{N}\*\* \(([a-z ]+) rank correlation\); the ratio σg/σw shows ([a-z ]+) rank "
        r"correlation with λ \(ρ = {N}\)",
        text,
    )
    same(sh, an.sharpness)
    same(sz, an.size)
    same(wn, an.weight_norm)
    same(lam_max, an.lam_max)
    assert int(n) == len(d)  # every direction here is curved
    truth_g = rho(d["lam"], d["sigma_g"])
    truth_r = rho(d["lam"], d["sigma_g"] / d["sigma_w"])
    same(r_g, truth_g, 2)
    same(r_r, truth_r, 2)
    assert abs(truth_g) == pytest.approx(1.0)  # σg sorted with (or against) λ
    assert strength_g == ("strong positive" if sign > 0 else "strong negative")
    assert strength_r == rt.strength(truth_r)


def test_second_order_takeaway():
    an = analysis()
    text = rt.second_order_takeaway(an)
    so, fo, curv, exact, off = grab(
        r"gives {N} nats \(first order {N}, curvature term {N}\) against the exact {N}: off by "
        r"\*\*{N} %\*\*",
        text,
    )
    same(so, an.second_order_gap, 4)
    same(fo, an.first_order_term, 3)
    same(curv, an.second_order_term, 3)
    same(exact, an.pair_gap, 4)
    same(off, 7.0, 3)


@pytest.mark.parametrize("spread", [0.0, 0.031])
def test_layer_table_and_takeaway(spread):
    layers = {}
    for i, name in enumerate(["fc1", "fc2", "fc3"]):
        an = analysis()
        an.pair_gap += spread * i
        an.sharp_gap = an.pair_gap * (0.2, 0.6, 0.4)[i]
        an.identity_error = (1e-13, 5e-12, 2e-14)[i]
        an.duality_error = (3e-9, 1e-10, 7e-11)[i]
        layers[name] = an
    table = rt.layer_table(layers)
    assert list(table.index) == ["fc1", "fc2", "fc3"]
    np.testing.assert_allclose(table["sharp_share"], [0.2, 0.6, 0.4])
    text = rt.layer_takeaway(table)
    n, ident, dual, best, share = grab(
        r"At all (\d+) layers the identity closes to at most \*\*{N}\*\* and the duality to {N}\."
        r".* the sharp part is largest at `(\w+)` \({N} %\)",
        text,
    )
    assert int(n) == 3 and ident == "5.0e-12" and dual == "3.0e-09"
    assert best == "fc2"
    same(share, 60.0, 3)
    if spread:
        same(grab(r"differs by {N} nats between layers", text)[0], 2 * spread, 2)
        assert "identical" not in text
    else:
        assert "is identical at every layer" in text


# --- spectrum and landscape (awbench.viz.landscape_takeaways) --------------------------------


@pytest.mark.parametrize("converged", [True, False])
def test_spectrum_takeaway(converged):
    exact = np.array([0.01, 9.0, 4.0, 2.5, 0.5, 0.1])
    values = np.array([9.0009, 3.99, 2.5])
    eig = SimpleNamespace(values=values, converged=np.array([True, converged, True]))
    trace = float(exact.sum())
    text = lt.spectrum_takeaway(eig, exact, trace)
    k, top, bottom, all_ok, err, share, tr = grab(
        r"The top (\d+) eigenvalues run from {N} down to {N}; all converged: (True|False), "
        r"largest relative error against dense eigh \*\*{N}\*\*. Together they hold {N} % of the "
        r"trace \({N}\)",
        text,
    )
    assert int(k) == 3 and all_ok == str(converged)
    same(top, 9.0009)
    same(bottom, 2.5)
    rel = np.max(np.abs(values - np.array([9.0, 4.0, 2.5])) / np.array([9.0, 4.0, 2.5]))
    assert err == f"{rel:.1e}"
    same(share, 100 * values.sum() / trace, 3)
    same(tr, trace, 4)


@pytest.mark.parametrize("estimate", [12.3, 11.8])
def test_trace_takeaway(estimate):
    table = pd.DataFrame({"probes": [10, 30], "estimate": [14.0, estimate], "stderr": [1.0, 0.2]})
    exact = 12.0
    text = lt.trace_takeaway(table, exact)
    probes, est, se, ex, z = grab(
        r"With (\d+) probes the estimate is {N} ± {N} \(standard error\) against the exact {N}: "
        r"{N} standard errors off",
        text,
    )
    assert int(probes) == 30
    same(est, estimate, 5)
    same(se, 0.2, 2)
    same(ex, exact, 5)
    same(z, abs(estimate - exact) / 0.2, 2)


def test_slices_takeaway():
    t = np.linspace(-1, 1, 5)
    slices = [
        SimpleNamespace(curvature=2.5, loss=1.25 * t**2 + 0.1 * t**4, quadratic=1.25 * t**2),
        SimpleNamespace(curvature=0.7, loss=0.35 * t**2 + 0.3 * t**4, quadratic=0.35 * t**2),
    ]
    fd = 2.5003
    text = lt.slices_takeaway(slices, fd)
    fd_s, lam, rel, worst = grab(
        r"gives {N} against λ1 = {N} \(relative error {N}\)\. .* by up to {N} nats", text
    )
    same(fd_s, fd, 5)
    same(lam, 2.5, 5)
    assert rel == f"{abs(fd - 2.5) / 2.5:.1e}"
    same(worst, 0.3, 3)


@pytest.mark.parametrize(("dual", "rand"), [(3.0, 0.5), (0.2, 0.8)])
def test_curvature_takeaway_says_more_or_less(dual, rand):
    table = pd.DataFrame(
        {
            "kind": ["dual weight", "dual weight", "random", "random", "eigenvector"],
            "rayleigh": [dual * 0.9, dual * 1.1, rand * 0.8, rand * 1.2, 99.0],
        }
    )
    lam_max = 10.0
    text = lt.curvature_takeaway(table, lam_max)
    d, d_pct, r, r_pct, ratio, word = grab(
        r"curvature of {N} on average \({N} % of λ_max\), random filter-normalised directions "
        r"{N} \({N} %\): dual weights point {N}× (more|less) into curved directions",
        text,
    )
    same(d, dual)
    same(d_pct, 100 * dual / lam_max, 3)
    same(r, rand)
    same(r_pct, 100 * rand / lam_max, 3)
    same(ratio, dual / rand, 3)
    assert word == ("more" if dual > rand else "less")


# --- multi-learner comparison (awbench.viz.learner_comparison) ------------------------------


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_dpsgd_takeaway_states_each_comparison_and_claim(sign):
    comps = {
        "real_gap": {"rel_diff": sign * 0.123, "rel_low": sign * 0.04, "rel_high": sign * 0.2},
        "sharpness": {"rel_diff": sign * -0.31, "rel_low": sign * -0.5, "rel_high": sign * -0.2},
        "size": {"rel_diff": sign * 0.03, "rel_low": sign * 0.011, "rel_high": sign * 0.055},
    }
    for i, c in enumerate(comps.values()):
        c["p"] = 0.0123 * (i + 1)
    comps["size"]["margin"] = 0.1234
    claims = pd.DataFrame(
        {
            "text": ["DPSGD generalizes better", "DPSGD is flatter"],
            "verdict": ["supported", "contradicted"] if sign > 0 else ["contradicted", "supported"],
        }
    )
    comparison = {"n_pairs": 5, "n_converged_pairs": 4, "comparisons": comps, "claims": claims}
    text = lc.dpsgd_takeaway(comparison, 8, "ring")
    n_l, topo, n_ok, n = grab(
        r"At n = (\d+) learners \((\w+) topology\), (\d+) of (\d+) seed pairs", text
    )
    assert (int(n_l), topo, int(n_ok), int(n)) == (8, "ring", 4, 5)
    for q, c in comps.items():
        rel, lo, hi, p = grab(
            re.escape(q.replace("_", " ")) + r" DPSGD / SSGD {P} \[{P}, {P}\] \(p = {N}\)", text
        )
        same_pct(rel, c["rel_diff"])
        same_pct(lo, c["rel_low"])
        same_pct(hi, c["rel_high"])
        same(p, c["p"], 2)
    same(grab(r"within ±{N} %, half the sharpness change", text)[0], 12.34, 2)
    for r in claims.itertuples():
        assert f"*{r.text}* → **{r.verdict}**" in text


def test_dpsgd_takeaway_without_pairs_gives_no_verdict():
    comparison = {"n_pairs": 3, "n_converged_pairs": 1, "comparisons": {}, "claims": None}
    text = lc.dpsgd_takeaway(comparison, 4, "complete")
    assert grab(r"(\d+) of (\d+) seed pairs", text) == ("1", "3")
    assert text.endswith("too few pairs for a comparison; no verdict on the paper's claim.")


# --- verdict lines (awbench.experiments.verdicts) ---------------------------------------------


@pytest.mark.parametrize("sharpness", ["up", "down", "no clear change", "inconclusive"])
@pytest.mark.parametrize("size", ["up", "down", "non-monotone", "not enough data"])
def test_which_factor_names_each_factor_in_the_verdict_words(sharpness, size):
    from awbench.experiments.verdicts import verdict_words

    table = pd.DataFrame(
        {
            "quantity": ["sharpness", "size", "real_gap"],
            "verdict": [sharpness, size, "up"],
            "change": [-0.65, 0.1, 0.2],
            "change_low": [-0.71, -0.05, 0.1],
            "change_high": [-0.58, 0.25, 0.3],
            "n_seeds": [10, 10, 10],
            "n_runs": [30, 3, 30],
            "n_values": [3, 1, 3],
        }
    )
    text = which_factor(table)
    rows = list(table.itertuples())
    assert text == f"sharpness {verdict_words(rows[0])}; size {verdict_words(rows[1])}"
    assert text.startswith(f"sharpness {sharpness}") and f"; size {size}" in text


# --- the knob panel (awbench.apps.knobs.sentences, awbench.apps.knobs.widgets) ---------------------

BASE = Config.preset("paper")


def setting(
    *,
    converged: bool = True,
    epochs: int = 120,
    budget: int = 150,
    loss: float = 4e-4,
    acc: float = 1.0,
    point: Point | None = None,
    scalars: dict | None = None,
    key: str = "k1",
    **config,
) -> Setting:
    return Setting(
        config=BASE.replace(**config),
        key=key,
        status="converged" if converged else "max_epochs",
        source="grid",
        scalars=scalars or {},
        rank=np.arange(3),
        sigma_g=np.ones(3),
        sigma_w=np.ones(3),
        top_lam=np.ones(3),
        converged=converged,
        epochs=epochs,
        epoch_budget=budget,
        final_train_loss=loss,
        final_train_acc=acc,
        point=point,
    )


REASONS = {
    "budget, loss high": {"epochs": 150, "loss": 0.00371, "acc": 0.97},
    "early, loss at the threshold": {"epochs": 80, "loss": 1e-3, "acc": 0.97},
    "loss fine, accuracy low": {"epochs": 150, "loss": 2e-4, "acc": 0.9712},
    "loss fine, window accuracy low": {"epochs": 150, "loss": 2e-4, "acc": 0.995},
    "nothing recorded": {"epochs": 150, "loss": float("nan"), "acc": float("nan")},
}


@pytest.mark.parametrize("case", REASONS.values(), ids=REASONS.keys())
def test_not_converged_reason(case):
    s = setting(converged=False, **case)
    cfg = s.config
    text = ks.not_converged_reason(s)
    if s.epochs >= s.epoch_budget:
        assert int(grab(r"^stopped at the budget of (\d+) epochs", text)[0]) == s.epoch_budget
    else:
        e, b = grab(r"^stopped after (\d+) of (\d+) epochs", text)
        assert (int(e), int(b)) == (s.epochs, s.epoch_budget)
    loss, acc = case["loss"], case["acc"]
    if math.isfinite(loss) and loss >= cfg.stop_loss:
        stated, op, thr = grab(r"with train loss {N} ([>=]) {N}$", text)
        same(stated, loss)
        assert op == (">" if loss > cfg.stop_loss else "=") and float(thr) == cfg.stop_loss
    elif acc <= cfg.stop_acc:
        stated, thr = grab(r"with train accuracy {N} ≤ {N}$", text)
        same(stated, acc, 4)
        assert float(thr) == cfg.stop_acc and acc <= float(thr)
    elif math.isfinite(loss):
        stated, window, thr = grab(
            r"with train loss {N} but a mean train accuracy over the last (\d+) epochs ≤ {N}$",
            text,
        )
        same(stated, loss)
        assert int(window) == cfg.stop_window and float(thr) == cfg.stop_acc
        assert float(stated) < cfg.stop_loss
    else:
        assert text.endswith("with the stopping rule not met")


def point(seeds: tuple, converged: tuple, **scalars) -> Point:
    return Point(seeds=seeds, converged_seeds=converged, scalars=scalars)


@pytest.mark.parametrize("run_converged", [True, False])
@pytest.mark.parametrize(
    "converged_seeds", [(0, 1, 2), (0, 2), (), None], ids=["all", "two", "none", "single"]
)
def test_warnings_of(run_converged, converged_seeds):
    p = None if converged_seeds is None else point((0, 1, 2), converged_seeds)
    s = setting(converged=run_converged, epochs=150, loss=0.005, point=p)
    out = ks.warnings_of(s)
    run_warnings = [w for w in out if w.startswith("⚠ not converged: ")]
    assert len(run_warnings) == (not run_converged)
    if run_warnings:
        assert ks.not_converged_reason(s) in run_warnings[0]
    seed_warnings = [w for w in out if w not in run_warnings]
    if p is None or p.n_converged == p.n:
        assert seed_warnings == []
    elif p.n_converged:
        bad, n, missed, avg = grab(
            r"(\d+)/(\d+) seeds at this point did not converge \(seed ([\d, ]+)\): the grid's "
            r"means here average the (\d+) that did",
            seed_warnings[0],
        )
        assert (int(bad), int(n), int(avg)) == (1, 3, 2) and missed == "1"
    else:
        assert grab(r"none of the (\d+) seeds", seed_warnings[0]) == ("3",)


LINE_QUANTITIES = (
    ("real_gap", "gap"),
    ("sharpness", "sharpness"),
    ("size", "size"),
    ("curvature", "curvature"),
)
LINE_RE = (
    r"(gap|sharpness|size|curvature) (up|down|non-monotone|no clear change|inconclusive): "
    r"{P} \[{P}, {P}\](, not significant with (\d+) seeds)?"
)


def parse_line(line: str) -> dict[str, tuple]:
    """``{quantity: (verdict, change, low, high, seeds or "")}`` of one knob line."""
    names = {name: q for q, name in LINE_QUANTITIES}
    return {names[m[0]]: (m[1], m[2], m[3], m[4], m[6]) for m in re.findall(_n(LINE_RE), line)}


def cell(verdict, change, low, high, seeds=3) -> dict:
    return {
        "verdict": verdict,
        "change": change,
        "change_low": low,
        "change_high": high,
        "n_seeds": seeds,
    }


def effect_row(knob, values, cells=None, left=0, left_values="", runs_left=0, seeds=3):
    """A grid_effects row with the verdict of each quantity given as a cell."""
    from awbench.experiments.verdicts import verdict_words

    row = {
        "knob": knob,
        "values": values,
        "left_out": left,
        "left_out_values": left_values,
        "runs_left_out": runs_left,
        "seeds": seeds,
    }
    for q, _ in LINE_QUANTITIES:
        c = (cells or {}).get(q, cell("inconclusive", math.nan, math.nan, math.nan, seeds))
        row[f"{q}_verdict"] = c["verdict"]
        row[f"{q}_words"] = verdict_words(c)
        row[f"{q}_cell"] = c
    return row


def check_effect_line(line: str, row: dict) -> None:
    """Each quantity's verdict, change and interval as the row's cell holds them, "not
    significant with n seeds" exactly for an inconclusive one, which factor moved only where
    its verdict is up or down, and no "mostly"."""
    label = KNOB_TEXT.get(row["knob"], row["knob"])
    assert line.startswith(f"- **{label}** {row['values']}: gap "), line
    stated = parse_line(line)
    assert list(stated) == [q for q, _ in LINE_QUANTITIES], line
    for q, (verdict, ch, lo, hi, seeds) in stated.items():
        c = row[f"{q}_cell"]
        assert verdict == c["verdict"]
        same_pct(ch, c["change"])
        same_pct(lo, c["change_low"])
        same_pct(hi, c["change_high"])
        assert seeds == (str(c["n_seeds"]) if verdict == "inconclusive" else "")
    moved = [q for q in ("sharpness", "size", "curvature") if row[f"{q}_verdict"] in ("up", "down")]
    if moved:
        tail = " and ".join(f"**{q}** ({row[f'{q}_verdict']})" for q in moved)
        assert f" → moves {tail}" in line
    else:
        assert "→" not in line
    assert "mostly" not in line


def test_effects_takeaway_lines_follow_each_knob():
    rows = [
        effect_row(
            "weight_decay",
            "0, 0.001, 0.01",
            {
                "real_gap": cell("inconclusive", -0.12, -0.5, 0.31),
                "sharpness": cell("down", -0.6, -0.71, -0.52),
                "size": cell("no clear change", 0.04, -0.1, 0.15),
                "curvature": cell("down", -0.62, -0.7, -0.5),
            },
        ),
        effect_row(
            "dropout",
            "0, 0.2",
            {
                "real_gap": cell("inconclusive", 0.3, -0.2, 1.1),
                "sharpness": cell("inconclusive", 0.05, -0.4, 0.8),
                "size": cell("inconclusive", -0.41, -0.8, 0.1),
                "curvature": cell("inconclusive", 0.7, -0.3, 3.0),
            },
            left=1,
            left_values="0.4",
            runs_left=2,
        ),
        effect_row("lr", "0.05", left=2, left_values="0.1, 0.2"),
        effect_row("batch_size", "100"),
    ]
    effects = pd.DataFrame(rows)
    effects.attrs.update(left_out_points=3, held="at the default", seeds=3, family=28)
    text = ks.effects_takeaway(effects)
    lines = [line for line in text.split("\n") if line.startswith("- ")]
    assert len(lines) == 3  # batch_size: nothing to say
    check_effect_line(lines[0], rows[0])
    assert " → moves **sharpness** (down) and **curvature** (down)" in lines[0]
    check_effect_line(lines[1], rows[1])
    assert lines[1].endswith("(1 unconverged point left out: 0.4; 2 unconverged runs left out)")
    assert "no comparison, fewer than two points converged" in lines[2]
    assert grab(r"\((\d+) unconverged points left out: ([\d., ]+)\)", lines[2]) == ("2", "0.1, 0.2")
    assert grab(r"\*\*⚠ (\d+) points left out:\*\*", text) == ("3",)
    seeds, family, report = grab(
        r"The grid has (\d+) seeds per point, too few for a verdict on most effects \(tests "
        r"corrected for the (\d+) knob × quantity cells of the panel\): a large change reads "
        r'"inconclusive" here; the report\'s sweeps \((\d+) seeds per value\) judge them\.',
        text,
    )
    from awbench.experiments.grids import PROFILES

    assert (int(seeds), int(family), int(report)) == (3, 28, PROFILES["quick"].seeds)
    assert "mostly" not in text
    # flipped: size now down with a verdict, sharpness without one; nothing left out
    flipped = effect_row(
        "weight_decay",
        "0, 0.001, 0.01",
        {
            "real_gap": cell("inconclusive", -0.12, -0.5, 0.31),
            "sharpness": cell("inconclusive", 0.2, -0.3, 0.9),
            "size": cell("down", -0.6, -0.7, -0.5),
            "curvature": cell("no clear change", 0.0, -0.1, 0.1),
        },
    )
    text = ks.effects_takeaway(pd.DataFrame([flipped]))
    line = next(line for line in text.split("\n") if line.startswith("- "))
    check_effect_line(line, flipped)
    assert " → moves **size** (down)" in line and "left out" not in text


SCALARS = ("real_gap", "sharpness", "size", "weight_norm")


def run_scalars(gap, sharpness, size, norm, sharp_share=0.42):
    pair = gap * 1.01
    return {
        "real_gap": gap,
        "sharpness": sharpness,
        "size": size,
        "weight_norm": norm,
        "pair_gap": pair,
        "sharp_gap": sharp_share * pair,
        "estimated_gap": 0.9 * gap,
    }


PANEL_CASES = {
    "default": {"same": True, "cur_ok": True, "ref_ok": True, "seeds": (0, 1, 2)},
    "moved, all converged": {"same": False, "cur_ok": True, "ref_ok": True, "seeds": (0, 1, 2)},
    "moved, run not converged": {"same": False, "cur_ok": False, "ref_ok": True, "seeds": (0,)},
    "moved, default not converged": {"same": False, "cur_ok": True, "ref_ok": False, "seeds": ()},
}


@pytest.mark.parametrize("case", PANEL_CASES.values(), ids=PANEL_CASES.keys())
@pytest.mark.parametrize("scale", [1.3, 0.6])
def test_panel_takeaway_states_the_setting_against_the_default(case, scale):
    ref_scalars = run_scalars(0.2, 5.0, 40.0, 3.0)
    cur_scalars = (
        ref_scalars
        if case["same"]
        else run_scalars(0.2 * scale, 5.0 / scale, 40.0 * scale**2, 3.0 * scale, 0.61)
    )
    p = point((0, 1, 2), case["seeds"], real_gap=0.211, sharpness=4.87, size=41.2)
    ref = setting(converged=case["ref_ok"], scalars=ref_scalars, key="ref")
    cur = (
        ref
        if case["same"]
        else setting(
            converged=case["cur_ok"],
            scalars=cur_scalars,
            key="cur",
            epochs=150,
            loss=0.0042,
            point=p,
            batch_size=400,
        )
    )
    panel = SimpleNamespace(
        setting=cur, reference=ref, config=cur.config, grid=SimpleNamespace(base=BASE)
    )
    text = kw.takeaway(panel)
    for col, label in kw.TAKEAWAY_SCALARS:
        a, b = ref_scalars[col], cur_scalars[col]
        if case["same"]:
            (stated,) = grab(re.escape(label) + r" {N}(?: \(|[;.])", text)
            assert f"{label} {stated} (" not in text
        else:
            stated, ch = grab(re.escape(label) + r" {N} \({P}\)", text)
            same_pct(ch, (b - a) / abs(a))
            assert ch.startswith("+" if b > a else "-")
        same(stated, b)
    share, est, real = grab(
        r"The \d+ sharpest directions carry {N} % of the exact gap, and Σ cσgσw = {N} estimates "
        r"the real gap {N} nats",
        text,
    )
    same(share, 100 * cur_scalars["sharp_gap"] / cur_scalars["pair_gap"], 2)
    same(est, cur_scalars["estimated_gap"])
    same(real, cur_scalars["real_gap"])
    assert ("⚠ Not converged" in text) == (not cur.converged)
    if not cur.converged:
        assert ks.not_converged_reason(cur) in text
    assert ("⚠ The default did not converge" in text) == (not case["same"] and not ref.converged)
    if cur.point is not None:
        means = grab(r"real gap {N}, sharpness Σσg² {N}, size Σσw² {N}\)?(?: are not|\.$)", text)
        for stated, col in zip(means, ("real_gap", "sharpness", "size")):
            same(stated, p.scalars[col])
        if p.n_converged == p.n:
            assert "3/3 seeds converged at this point; their means" in text
        elif p.n_converged:
            assert f"the means of the {p.n_converged} that did" in text
        else:
            assert "**⚠ None of the 3 seeds at this point converged:**" in text


def test_panel_takeaway_off_the_grid():
    cfg = BASE.replace(batch_size=123)
    ref = setting(scalars=run_scalars(0.2, 5.0, 40.0, 3.0))
    panel = SimpleNamespace(
        setting=None, reference=ref, config=cfg, grid=SimpleNamespace(base=BASE)
    )
    assert kw.takeaway(panel).startswith("**Off the grid:** `batch_size=123` was not precomputed")


def test_panel_takeaway_flags_a_value_beyond_the_paper():
    from awbench.experiments.grids import PAPER_VALUES

    lo, hi = min(PAPER_VALUES["lr"]), max(PAPER_VALUES["lr"])
    for lr in (0.2, 0.05):
        cur = setting(scalars=run_scalars(0.2, 5.0, 40.0, 3.0), lr=lr)
        panel = SimpleNamespace(
            setting=cur, reference=cur, config=cur.config, grid=SimpleNamespace(base=BASE)
        )
        text = kw.takeaway(panel)
        note = f"**⚠ Beyond the paper:** learning rate α {lr:g} is beyond the paper's range "
        assert (note + f"({lo:g}–{hi:g}).") in text if lr > hi else "Beyond the paper" not in text
        off = SimpleNamespace(
            setting=None, reference=cur, config=cur.config, grid=SimpleNamespace(base=BASE)
        )
        assert (note in kw.takeaway(off)) == (lr > hi)


class LineGrid:
    """A stand-in KnobGrid: hand-made per-seed runs along one knob, every other knob at 0."""

    def __init__(self, knob, runs):
        self.defaults = {k: 0 for k in KNOBS}
        self.knob = knob
        self.runs = runs

    def _tuple(self, values):
        return tuple(values[k] for k in KNOBS)


def line_runs(knob, xs, sharp, size, gap, unconverged=(), seeds=3):
    """Runs at ``xs`` for ``seeds`` seeds: quantity = base x factor(x) x a seed offset, with
    ``unconverged`` (x, seed) pairs marked as runs that hit their budget."""
    rows = []
    for s in range(seeds):
        for i, x in enumerate(xs):
            bad = (x, s) in unconverged
            row = {k: 0 for k in KNOBS} | {knob: x, "seed": s}
            row |= {
                "status": "max_epochs" if bad else "converged",
                "converged": not bad,
                "real_gap": gap[i] * (1 + 0.07 * s) * (1 + 0.03 * ((i + s) % 2)),
                "sharpness": sharp[i] * (1 - 0.05 * s) * (1 + 0.05 * ((i * s) % 3)),
                "size": size[i] * (1 + 0.02 * s) * (1 + 0.04 * ((i + 2 * s) % 3)),
            }
            rows.append(row)
    return pd.DataFrame(rows)


def truth_cell(runs: pd.DataFrame, knob: str, q: str) -> dict:
    """The within-seed change of ``q`` from the first to the last converged value: geometric
    mean of last / first over the seeds converged at both, with its 95 % t-interval, and the
    verdict 3 seeds allow (no test reaches the panel's 28-cell correction): "no clear change"
    when the interval lies within 1/1.2 ... 1.2, else "inconclusive"."""
    from scipy import stats

    ok = runs[runs["converged"]].assign(curvature=lambda d: d["sharpness"] / d["size"])
    wide = ok.pivot(index="seed", columns=knob, values=q)
    ends = wide[[wide.columns.min(), wide.columns.max()]].dropna()
    d = np.log(ends.iloc[:, 1] / ends.iloc[:, 0]).to_numpy()
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    change, low, high = (math.expm1(v) for v in (d.mean(), d.mean() - half, d.mean() + half))
    verdict = "no clear change" if 1 / 1.2 - 1 <= low and high <= 0.2 else "inconclusive"
    return cell(verdict, change, low, high, ok["seed"].nunique())


SWEEP_CASES = {
    "sharpness up, size down": ([1, 2, 3], [1.0, 2.0, 4.0], [8, 5, 2], [0.2, 0.25, 0.3], ()),
    "size up, one seed unconverged": ([1, 2, 3], [1.0, 1.1, 1.2], [2, 5, 8], [0.3, 0.25, 0.2],
                                      ((2, 1),)),
    "last point unconverged": ([1, 2, 3], [2.0, 1.0, 90], [5, 6, 90], [0.2, 0.1, 9.0],
                               ((3, 0), (3, 1), (3, 2))),
}  # fmt: skip


@pytest.mark.parametrize("case", SWEEP_CASES.values(), ids=SWEEP_CASES.keys())
def test_sweep_takeaway_states_the_verdicts_of_the_line(case):
    from awbench.apps.knobs import effects as ke

    xs, sharp, size, gap, unconverged = case
    knob = "dropout"
    runs = line_runs(knob, xs, sharp, size, gap, unconverged)
    grid = LineGrid(knob, runs)
    panel = SimpleNamespace(last_knob=knob, grid=grid, values=dict(grid.defaults))
    text = ks.sweep_takeaway(panel)
    assert text.startswith("Along this knob (other knobs at the default; converged runs only")
    ok = runs[runs["converged"]]
    good = sorted(ok[knob].unique())
    bad = [x for x in xs if x not in good]
    partial = int((~runs["converged"] & runs[knob].isin(good)).sum())
    row = effect_row(
        knob,
        ", ".join(f"{x:g}" for x in good),
        {q: truth_cell(runs, knob, q) for q, _ in LINE_QUANTITIES},
    )
    (line,) = [line for line in text.split("\n") if line.startswith("- ")]
    check_effect_line(line, row)
    notes = []
    if bad:
        notes.append(f"{len(bad)} unconverged point left out: " + ", ".join(f"{x:g}" for x in bad))
    if partial:
        notes.append(f"{partial} unconverged run{'s' if partial > 1 else ''} left out")
    if notes:
        assert line.endswith(f" ({'; '.join(notes)})")
    else:
        assert "left out" not in text
    assert "The grid has 3 seeds per point, too few for a verdict on most effects" in text
    # the relative changes of the converged seeds' means, kept for figures and records
    effect, _ = ke.effect(grid, knob, grid.defaults)
    m = ok.groupby(knob)[["real_gap", "sharpness", "size"]].mean()
    for col in ("real_gap", "sharpness", "size"):
        first, last = m[col].iloc[0], m[col].iloc[-1]
        assert effect[f"{col}_change"] == pytest.approx((last - first) / first, rel=1e-12)


def test_sweep_takeaway_with_one_point_and_for_the_seed():
    runs = line_runs("lr", [0.1], [1.0], [5.0], [0.2])
    panel = SimpleNamespace(last_knob="lr", grid=LineGrid("lr", runs), values={k: 0 for k in KNOBS})
    assert ks.sweep_takeaway(panel).endswith(
        f"- **{KNOB_TEXT['lr']}**: no comparison, one point on the grid here"
    )
    panel.last_knob = "seed"
    assert ks.sweep_takeaway(panel) == ""


@pytest.mark.parametrize(
    ("knob", "value", "note"),
    [
        ("lr", 0.2, "learning rate α 0.2 is beyond the paper's range (0.005–0.1)"),
        ("lr", 0.05, None),
        ("lr", 0.1, None),
        ("batch_size", 10, "batch size B 10 is below the paper's range (25–400)"),
        ("batch_size", 400, None),
        ("dropout", 0.5, "dropout d 0.5 is beyond the paper's range (0–0.3)"),
        ("weight_decay", 0.05, "weight decay β 0.05 is beyond the paper's range (0–0.02)"),
        ("init_scale", 2.0, ("init scale s 2 is below the paper's range (4–7, and 1 where it is "
                            "not swept)")),
        ("init_scale", 1.0, None),  # the paper's value where the init scale is not swept
        ("init_scale", 5.0, None),
        ("n_train", 100_000, None),  # scaled to the dataset's pool: no paper range
        ("label_noise", 0.5, None),
        ("seed", 9, None),
    ],
)  # fmt: skip
def test_beyond_the_papers_range(knob, value, note):
    from awbench.experiments.grids import PAPER_VALUES

    assert ks.beyond_paper(knob, value) == note
    if note is not None:
        lo, hi = min(PAPER_VALUES[knob]), max(PAPER_VALUES[knob])
        assert not lo <= value <= hi and f"({lo:g}–{hi:g}" in note
        assert ("beyond" in note) == (value > hi)
    assert ks.option_label(knob, value) == f"{value:g}" + (" ⚠" if note else "")
