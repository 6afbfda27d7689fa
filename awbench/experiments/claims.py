"""The claims table: each claim of the paper, and each per-knob hypothesis, judged from the evidence.

    from awbench.experiments import claims as cl, verdicts as vd
    table = vd.verdict_table({"batch_size": runs_bs, "lr": runs_lr})
    claims = cl.claim_verdicts(table, comparisons={"sharpness": vd.paired_comparison(a, b), ...},
                               across_runs=cl.cross_run_fit(all_runs))

The claims are the confirmatory family: each gets one raw p-value, and Holm's correction runs
over every claim that has one, so the chance of any false "supported" or "contradicted" in
the table stays below alpha. A claim about a knob reads the raw within-seed trend p-values of
a :func:`awbench.experiments.verdicts.verdict_table` (not its descriptive verdicts); a claim
about the algorithm (DPSGD against synchronous SGD) a
:func:`awbench.experiments.verdicts.paired_comparison`; the headline claim ("flatter and
smaller generalize better") a regression over every converged run (:func:`cross_run_fit`).
The rule is part of :data:`awbench.experiments.verdicts.RULE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from awbench.experiments.effects import converged_runs
from awbench.experiments.verdicts import ALPHA, change_text, holm
from awbench.formatting import formatted, number


@dataclass(frozen=True)
class Claim:
    """A testable statement about one knob.

    ``quantity`` may name several quantities and ``expected`` be "change" (up or down): the
    paper's "acts on one or both factors" holds if any of them moves either way. For
    ``knob == "algorithm"`` the evidence is a paired DPSGD-minus-SSGD comparison, and
    ``expected`` may be "same".
    """

    id: str
    text: str
    # "paper" (the paper's statement), "hypothesis" (our per-knob expectation) or "follow-up"
    # (Zhang, Yang & Tu 2026, arXiv 2602.05600: SGD's noise against curvature, notebook 11)
    source: str
    knob: str
    quantity: str | tuple[str, ...]
    expected: str  # "up" | "down" | "change" | "same"

    @property
    def quantities(self) -> tuple[str, ...]:
        return (self.quantity,) if isinstance(self.quantity, str) else tuple(self.quantity)


_PAPER_KNOBS = {
    "weight_decay": "Weight decay",
    "batch_size": "Batch size",
    "lr": "Learning rate",
    "dropout": "Dropout",
    "n_train": "Training-set size",
    "label_noise": "Label noise",
}

CLAIMS: list[Claim] = [
    Claim(
        "paper.flatter_smaller",
        "Flatter and smaller solutions generalize better: across converged runs the gap grows "
        "with sharpness and with size.",
        "paper",
        "across_runs",
        ("sharpness", "size"),
        "both up",
    ),
    *(
        Claim(
            f"paper.{knob}.acts_on_factors",
            f"{name} acts on one or both factors of the gap, sharpness or size.",
            "paper",
            knob,
            ("sharpness", "size"),
            "change",
        )
        for knob, name in _PAPER_KNOBS.items()
    ),
    Claim(
        "paper.dpsgd.gap",
        "At large batch, decentralized SGD (DPSGD) generalizes better than synchronous SGD: smaller gap.",
        "paper",
        "algorithm",
        "real_gap",
        "down",
    ),
    Claim(
        "paper.dpsgd.flatter",
        "At large batch, DPSGD finds flatter solutions than synchronous SGD: smaller sharpness.",
        "paper",
        "algorithm",
        "sharpness",
        "down",
    ),
    Claim(
        "paper.dpsgd.same_size",
        "At large batch, DPSGD and synchronous SGD reach solutions of the same size.",
        "paper",
        "algorithm",
        "size",
        "same",
    ),
    Claim("hyp.batch_size.sharpness", "Larger batch size gives sharper solutions.", "hypothesis", "batch_size", "sharpness", "up"),
    Claim("hyp.lr.sharpness", "A larger learning rate gives flatter solutions.", "hypothesis", "lr", "sharpness", "down"),
    Claim("hyp.weight_decay.size", "Weight decay gives smaller solutions.", "hypothesis", "weight_decay", "size", "down"),
    Claim("hyp.init_scale.size", "A larger initialisation scale gives larger solutions.", "hypothesis", "init_scale", "size", "up"),
    Claim("hyp.n_train.size", "More training data gives smaller solutions.", "hypothesis", "n_train", "size", "down"),
    Claim("hyp.label_noise.sharpness", "More label noise gives sharper solutions.", "hypothesis", "label_noise", "sharpness", "up"),
    Claim("hyp.label_noise.size", "More label noise gives larger solutions.", "hypothesis", "label_noise", "size", "up"),
    Claim("hyp.dropout.real_gap", "Dropout shrinks the generalization gap.", "hypothesis", "dropout", "real_gap", "down"),
    Claim("followup.gamma_ce", "With cross-entropy, SGD's noise grows superlinearly with the curvature: C_ii ~ H_ii^gamma in H's eigenbasis with gamma > 1.", "follow-up", "noise", "gamma_ce", "up"),
    Claim("followup.gamma_mse", "With MSE (after a softmax), SGD's noise is about linear in the curvature: gamma within ±0.1 of 1.", "follow-up", "noise", "gamma_mse", "same"),
    Claim("followup.commute", "SGD's noise covariance C commutes with the Hessian H better than chance: ||[C, H]|| below its random-eigenvector baseline.", "follow-up", "noise", "commutator", "down"),
]  # fmt: skip

_OPPOSITE = {"up": "down", "down": "up"}


# --- SGD's noise against curvature (the follow-up, notebook 11), over seeds -------------------

# gamma_MSE ~ 1 means within this of 1: a quarter of the superlinearity the follow-up reports
# for cross-entropy (gamma up to about 1.4), so "about linear" is told apart from that effect.
GAMMA_MARGIN = 0.1


def _t_summary(values: Sequence[float], against: float, level: float = 0.95) -> dict[str, Any]:
    """Mean over seeds with its Student-t interval, the two-sided one-sample t-test of the mean
    against ``against`` and the two one-sided tests (TOST) that it lies within ``against`` +/-
    GAMMA_MARGIN. NaN where fewer than 2 values or no spread."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(float(x))], float)
    n = int(v.size)
    out: dict[str, Any] = {"n": n, "mean": float(v.mean()) if n else math.nan}
    out.update(low=math.nan, high=math.nan, p=math.nan, p_equivalent=math.nan, level=level)
    if n < 2 or float(v.std(ddof=1)) == 0:
        return out
    se = float(v.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    d = out["mean"] - against
    out.update(low=out["mean"] - half, high=out["mean"] + half)
    out["p"] = float(2 * stats.t.sf(abs(d) / se, n - 1))
    out["p_equivalent"] = float(
        max(stats.t.sf((d + GAMMA_MARGIN) / se, n - 1), stats.t.cdf((d - GAMMA_MARGIN) / se, n - 1))
    )
    return out


def _noise_evidence(claim: Claim, noise: Mapping[str, Sequence[float]] | None):
    """(found, raw p, direction, because) of a follow-up claim from per-seed values: ``noise``
    maps "gamma_ce" and "gamma_mse" to per-seed exponents and "commutator" and
    "commutator_baseline" to per-seed commutators and their random baselines (same seeds)."""
    from awbench.experiments.verdicts import paired_comparison

    noise = noise or {}
    q = claim.quantities[0]
    if q == "commutator":
        c, b = noise.get("commutator") or [], noise.get("commutator_baseline") or []
        if len(c) < 2 or len(c) != len(b):
            return "n/a", math.nan, None, "fewer than 2 seeds with a commutator and its baseline"
        cmp = paired_comparison(b, c)
        direction = "up" if cmp["rel_diff"] > 0 else "down"
        because = (
            f"||[C, H]|| / (||C|| ||H||) {number(cmp['mean_b'])} against the random "
            f"baseline {number(cmp['mean_a'])}: {formatted(cmp['rel_diff'], '+.0%')} "
            f"[{formatted(cmp['rel_low'], '+.0%')}, {formatted(cmp['rel_high'], '+.0%')}] (95 % t-interval "
            f"of the per-seed log-ratio), paired t-test p {number(cmp['p'], 2)} "
            f"({cmp['n_pairs']} seeds)"
        )
        return (
            f"commutator {'above' if direction == 'up' else 'below'} chance",
            cmp["p"],
            direction,
            because,
        )
    s = _t_summary(noise.get(q) or [], 1.0)
    if s["n"] < 2:
        return "n/a", math.nan, None, f"fewer than 2 converged seeds with {q}"
    because = (
        f"{q} {formatted(s['mean'], '.3f')} [{formatted(s['low'], '.3f')}, {formatted(s['high'], '.3f')}] "
        f"(95 % t-interval over {s['n']} seeds)"
    )
    if claim.expected == "same":
        outside = s["low"] > 1 + GAMMA_MARGIN or s["high"] < 1 - GAMMA_MARGIN
        because += (
            f"; equivalence margin 1 ± {GAMMA_MARGIN} (a quarter of the follow-up's superlinearity "
            f"for cross-entropy), two one-sided t-tests p {number(s['p_equivalent'], 2)}"
        )
        found = f"{q} {'outside' if outside else 'within'} 1 ± {GAMMA_MARGIN}"
        return found, s["p_equivalent"], "different" if outside else "same", because
    because += f"; t-test against 1 p {number(s['p'], 2)} (two-sided)"
    direction = "up" if s["mean"] > 1 else "down"
    return f"{q} {'above' if direction == 'up' else 'below'} 1", s["p"], direction, because


# --- DPSGD against SSGD, paired by seed --------------------------------------------------------

# The quantities the paper's DPSGD claims are about; sharpness before size, whose equivalence
# margin it sets.
ALGORITHM_QUANTITIES = ("real_gap", "sharpness", "size")


def algorithm_comparisons(pairs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """DPSGD against SSGD per quantity over the seed pairs where both converged (columns
    ``seed``, ``status_ssgd``, ``status_dpsgd``, ``<quantity>_ssgd``, ``<quantity>_dpsgd``),
    each with ``n_left_out``; the size comparison carries the "same size" margin, half the
    sharpness change. Empty with fewer than 2 such pairs."""
    from awbench.experiments.verdicts import paired_comparison, same_size_margin
    from awbench.status import CONVERGED

    both = pairs[(pairs["status_ssgd"] == CONVERGED) & (pairs["status_dpsgd"] == CONVERGED)]
    both = both.set_index("seed")
    if len(both) < 2:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for q in ALGORITHM_QUANTITIES:
        if f"{q}_ssgd" in both:
            margin = same_size_margin(out.get("sharpness")) if q == "size" else None
            out[q] = paired_comparison(both[f"{q}_ssgd"], both[f"{q}_dpsgd"], margin=margin)
            out[q]["n_left_out"] = int(len(pairs) - len(both))
    return out


# The multi-learner comparison: SSGD is a, DPSGD is b, paired by seed.
PAIRED_ALGORITHMS = ("ssgd", "dpsgd")


def algorithm_pairs(runs: pd.DataFrame, n_learners: int, quantities: Sequence[str]) -> pd.DataFrame:
    """One row per seed: each algorithm's status and quantities at ``n_learners`` learners
    (the ``pairs`` of :func:`algorithm_comparisons`)."""
    at = runs[runs["n_learners"] == n_learners]
    frames = []
    for alg in PAIRED_ALGORITHMS:
        part = at[at["algorithm"] == alg].set_index("seed")
        cols = {"status": f"status_{alg}", **{q: f"{q}_{alg}" for q in quantities}}
        frames.append(part[[c for c in cols if c in part]].rename(columns=cols))
    pairs = frames[0].join(frames[1], how="inner").reset_index()
    return pairs.sort_values("seed").reset_index(drop=True)


def compare_algorithms(pairs: pd.DataFrame) -> dict:
    """DPSGD against SSGD over seed pairs where both converged: per-quantity paired comparison
    (:func:`algorithm_comparisons`, as the report makes them) and the verdict of each DPSGD
    claim, judged in the report's family of every claim."""
    from awbench.status import CONVERGED

    comparisons = algorithm_comparisons(pairs)
    both = (pairs["status_ssgd"] == CONVERGED) & (pairs["status_dpsgd"] == CONVERGED)
    claims = claim_verdicts(pd.DataFrame(), CLAIMS, comparisons=comparisons or None)
    claims = claims[claims["knob"] == "algorithm"].reset_index(drop=True)
    return {
        "n_pairs": len(pairs),
        "n_converged_pairs": int(both.sum()),
        "comparisons": comparisons,
        "claims": claims,
        "agrees": bool(len(claims) and (claims["verdict"] == "supported").all()),
    }


# --- the headline claim: a regression over every converged run -------------------------------


def cross_run_fit(runs: pd.DataFrame, level: float = 0.95) -> dict[str, Any]:
    """log real gap = a + b_sharp log sharpness + b_size log size over every converged run.

    Runs are the pooled knob sweeps of a profile; a network that several sweeps share (the
    default setting) counts once. Seeds share initialisations across sweeps, so the standard
    errors are clustered by seed (CR1, t with seeds - 1 degrees of freedom). Also returns
    ``c_eff`` = gap / sqrt(sharpness x size) over the runs: by Cauchy-Schwarz the gap is at most
    sqrt(sharpness x size) times the mean correlation, so slopes near 1/2 are what a constant
    c_eff gives, and how stable c_eff is is the empirical content. Keys: ``n_runs``,
    ``n_seeds``, ``b_sharpness``/``b_size`` with ``_low``/``_high``/``_p`` (two-sided), ``r2``,
    ``c_eff_median``, ``c_eff_min``, ``c_eff_max``, ``c_eff_cv``.
    """
    ok = converged_runs(runs)
    cols = ["real_gap", "sharpness", "size"]
    ok = ok.dropna(subset=cols)
    ok = ok[(ok[cols] > 0).all(axis=1)]
    key = [c for c in ("seed", *cols) if c in ok]
    ok = ok.drop_duplicates(subset=key)
    out: dict[str, Any] = {"n_runs": len(ok), "n_seeds": 0, "level": level}
    if len(ok) < 4:
        return out
    y = np.log(ok["real_gap"].to_numpy(float))
    X = np.column_stack(
        [
            np.ones(len(ok)),
            np.log(ok["sharpness"].to_numpy(float)),
            np.log(ok["size"].to_numpy(float)),
        ]
    )
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    clusters = pd.factorize(ok["seed"] if "seed" in ok else pd.Series(range(len(ok))))[0]
    g = int(clusters.max()) + 1
    out["n_seeds"] = g
    bread = np.linalg.inv(X.T @ X)
    meat = np.zeros((3, 3))
    for c in range(g):
        s = X[clusters == c].T @ resid[clusters == c]
        meat += np.outer(s, s)
    n, k = X.shape
    correction = g / max(g - 1, 1) * (n - 1) / max(n - k, 1)
    se = np.sqrt(np.diag(correction * bread @ meat @ bread))
    df = max(g - 1, 1)
    half = stats.t.ppf(0.5 + level / 2, df) * se
    for i, name in ((1, "b_sharpness"), (2, "b_size")):
        out[name] = float(beta[i])
        out[f"{name}_low"], out[f"{name}_high"] = float(beta[i] - half[i]), float(beta[i] + half[i])
        out[f"{name}_p"] = float(2 * stats.t.sf(abs(beta[i] / se[i]), df)) if se[i] > 0 else 0.0
    out["r2"] = float(1 - resid @ resid / np.sum((y - y.mean()) ** 2))
    c_eff = ok["real_gap"] / np.sqrt(ok["sharpness"] * ok["size"])
    out.update(
        c_eff_median=float(c_eff.median()),
        c_eff_min=float(c_eff.min()),
        c_eff_max=float(c_eff.max()),
        c_eff_cv=float(c_eff.std(ddof=1) / c_eff.mean()),
    )
    return out


def cross_run_text(fit: Mapping[str, Any]) -> str:
    """The regression in one line, for the claims table and notebook takeaways."""
    if "b_sharpness" not in fit:
        return f"only {fit.get('n_runs', 0)} converged runs: no regression"
    level = f"{100 * fit.get('level', 0.95):.0f} %"
    return (
        f"over {fit['n_runs']} converged runs ({fit['n_seeds']} seeds): log gap = "
        f"{formatted(fit['b_sharpness'], '.2f')} [{formatted(fit['b_sharpness_low'], '.2f')}, {formatted(fit['b_sharpness_high'], '.2f')}] "
        f"log sharpness + {formatted(fit['b_size'], '.2f')} [{formatted(fit['b_size_low'], '.2f')}, {formatted(fit['b_size_high'], '.2f')}] "
        f"log size + const ({level} intervals clustered by seed), R² {formatted(fit['r2'], '.3f')}; "
        f"c_eff = gap / √(sharpness·size) {formatted(fit['c_eff_median'], '.2f')} "
        f"({formatted(fit['c_eff_min'], '.2f')}–{formatted(fit['c_eff_max'], '.2f')}, CV {formatted(100 * fit['c_eff_cv'], '.0f')} %)"
    )


# --- one claim's evidence: (found, raw p, direction, because) ----------------------------------


def _cell_text(row: Mapping[str, Any]) -> str:
    from awbench.experiments.verdicts import verdict_words

    return f"{row['quantity']}: {verdict_words(row)} (raw p {number(row.get('p_trend'), 2)})"


def _table_evidence(claim: Claim, table: pd.DataFrame):
    if not {"knob", "quantity", "verdict"} <= set(table.columns):
        return "n/a", math.nan, None, "knob not in the verdict table"
    rows = table[(table["knob"] == claim.knob) & table["quantity"].isin(claim.quantities)]
    if rows.empty:
        missing = "knob" if not (table["knob"] == claim.knob).any() else "quantity"
        return "n/a", math.nan, None, f"{missing} not in the verdict table"
    rows = rows.set_index("quantity").reindex(list(claim.quantities)).dropna(subset=["verdict"])
    because = "; ".join(_cell_text({**r, "quantity": q}) for q, r in rows.iterrows())
    p = rows["p_trend"].astype(float) if "p_trend" in rows else pd.Series(dtype=float)
    if p.notna().sum() == 0:
        return "no test", math.nan, None, because
    if claim.expected == "change":
        # "acts on one or both factors": either factor moving either way; Bonferroni over the
        # two factors keeps it one test.
        best = p.idxmin()
        direction = "up" if rows.loc[best, "statistic"] > 0 else "down"
        return f"{best} {direction}", min(1.0, p.notna().sum() * float(p.min())), "change", because
    q = claim.quantities[0]
    direction = "up" if rows.loc[q, "statistic"] > 0 else "down"
    return f"{q} {direction} ({change_text(rows.loc[q])})", float(p[q]), direction, because


def _comparison_evidence(claim: Claim, comparisons: Mapping[str, Mapping[str, Any]]):
    quantity = claim.quantities[0]
    c = comparisons.get(quantity)
    if c is None:
        return "n/a", math.nan, None, f"no DPSGD-vs-SSGD comparison of {quantity}"
    level = f"{100 * c.get('level', 0.95):.0f} %"
    because = (
        f"{quantity}: DPSGD / SSGD {formatted(c.get('rel_diff'), '+.1%')} "
        f"[{formatted(c.get('rel_low'), '+.1%')}, {formatted(c.get('rel_high'), '+.1%')}] ({level} t-interval "
        f"of the per-seed log-ratio), paired t-test p {number(c.get('p'), 2)} ({c.get('n_pairs', 'n/a')} seed pairs)"
    )
    if claim.expected == "same":
        margin = c.get("margin")
        if margin is None or not math.isfinite(float(margin)):
            return "no margin", math.nan, None, because + "; no sharpness change to set a margin"
        lo, hi = c.get("rel_low", math.nan), c.get("rel_high", math.nan)
        because += (
            f"; equivalence margin ±{formatted(100 * margin, '.1f')} % (half the sharpness change), "
            f"two one-sided tests p {number(c.get('p_equivalent'), 2)}"
        )
        outside = math.isfinite(lo) and math.isfinite(hi) and (lo > margin or hi < -margin)
        found = (
            f"{quantity} {'outside' if outside else 'within'} ±{formatted(100 * margin, '.1f')} %"
        )
        return (
            found,
            float(c.get("p_equivalent", math.nan)),
            "different" if outside else "same",
            because,
        )
    diff = float(c.get("rel_diff", math.nan))
    direction = "up" if diff > 0 else "down"
    return f"{quantity} {direction}", float(c.get("p", math.nan)), direction, because


def _across_evidence(claim: Claim, fit: Mapping[str, Any] | None):
    if not fit or "b_sharpness" not in fit:
        return "n/a", math.nan, None, cross_run_text(fit or {})
    # Both slopes must be positive: an intersection-union test, whose p is the larger one.
    p = max(fit["b_sharpness_p"], fit["b_size_p"])
    up = fit["b_sharpness"] > 0 and fit["b_size"] > 0
    down = fit["b_sharpness"] < 0 and fit["b_size"] < 0
    direction = "both up" if up else ("both down" if down else "mixed")
    return f"gap grows with {'both' if up else 'not both'}", p, direction, cross_run_text(fit)


def claim_verdicts(
    table: pd.DataFrame,
    claims: Sequence[Claim] = CLAIMS,
    *,
    comparisons: Mapping[str, Mapping[str, Any]] | None = None,
    across_runs: Mapping[str, Any] | None = None,
    noise: Mapping[str, Sequence[float]] | None = None,
    alpha: float | None = None,
) -> pd.DataFrame:
    """One row per claim: "supported", "contradicted" or "inconclusive", the raw and the
    Holm-adjusted p (over every claim with a test) and the numbers why.

    ``table`` is a :func:`~awbench.experiments.verdicts.verdict_table`; ``comparisons`` maps a
    quantity ("real_gap", "sharpness", "size") to a
    :func:`~awbench.experiments.verdicts.paired_comparison` of SSGD (a) against DPSGD (b), the
    size one with its equivalence ``margin``; ``across_runs`` is a :func:`cross_run_fit`;
    ``noise`` the follow-up's per-seed numbers (notebook 11, :func:`_noise_evidence`).
    Claims whose evidence is absent come out "inconclusive".
    """
    if alpha is None:
        alpha = float(table.attrs.get("alpha", ALPHA))
    comparisons = dict(comparisons or {})
    evidence = []
    for claim in claims:
        if claim.knob == "algorithm":
            evidence.append(_comparison_evidence(claim, comparisons))
        elif claim.knob == "across_runs":
            evidence.append(_across_evidence(claim, across_runs))
        elif claim.knob == "noise":
            evidence.append(_noise_evidence(claim, noise))
        else:
            evidence.append(_table_evidence(claim, table))
    # Every claim of the declared list is a member of the family, tested or not (an untested
    # one counts as p = 1): a notebook that judges three claims is then never less cautious
    # than the report that judges them all.
    p_holm = holm([e[1] if math.isfinite(e[1]) else 1.0 for e in evidence])
    p_holm = np.where(np.isfinite([e[1] for e in evidence]), p_holm, math.nan)
    rows = []
    for claim, (found, p, direction, because), q in zip(claims, evidence, p_holm):
        significant = math.isfinite(q) and q < alpha
        opposite = {"up": "down", "down": "up", "same": "different", "both up": "both down"}
        if significant and direction in (claim.expected, "change"):
            verdict = "supported"
        elif significant and direction == opposite.get(claim.expected):
            verdict = "contradicted"
        elif claim.expected == "same" and direction == "different":
            # The interval lies wholly outside the margin: a difference the claim rules out.
            verdict = "contradicted"
        else:
            verdict = "inconclusive"
        rows.append(
            {
                "id": claim.id,
                "source": claim.source,
                "text": claim.text,
                "knob": claim.knob,
                "quantity": ", ".join(claim.quantities),
                "expected": claim.expected,
                "found": found,
                "p": p,
                "p_holm": q,
                "verdict": verdict,
                "because": because,
            }
        )
    out = pd.DataFrame(rows)
    out.attrs.update(alpha=alpha, n_tests=int(np.isfinite(p_holm).sum()))
    return out
