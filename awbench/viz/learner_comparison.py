"""The multi-learner comparison of notebook 09: SSGD against DPSGD at one number of learners,
paired by seed, with the verdict of each paper claim and the sentence that reports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from awbench.status import CONVERGED
from awbench.viz.notebook_support import fmt, pct

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
    from awbench.experiments.claims import CLAIMS, claim_verdicts
    from awbench.experiments.verdicts import paired_comparison

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
