"""The sentences and tables a notebook shows about one trained run: how training ended, the
exact identity, how concentrated the gap is in the sharp directions, the factors, the
second-order reading and the per-layer comparison.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from awbench.analysis.decomposition import curved_directions, spearman
from awbench.formatting import number


def run_takeaway(res) -> str:
    """Markdown: how training ended and the resulting gap."""
    h, s = res.history, res.scalars
    return (
        f"Training **{res.status}** after {res.epochs} epochs ({number(res.train_seconds, 2)} s): "
        f"clean-train loss {number(h['train_loss'].iloc[-1])}, test error {number(100 * s['test_error'], 3)} %, "
        f"so the real generalization gap is **{number(s['real_gap'])} nats** "
        f"(test CE {number(s['test_loss'])} − train CE {number(s['train_loss'])})."
    )


def identity_takeaway(an) -> str:
    """Markdown: the exact identity and how much of it the cσσ estimate keeps."""
    return (
        f"Over {an.n_pairs} pairs the mean per-pair gap is ⟨Δl⟩ = **{number(an.pair_gap, 5)} nats**; the sum over "
        f"{len(an.directions)} directions of μg μw + c σg σw gives it back to **{an.identity_error:.1e}** "
        f"(exact up to rounding). The mean term Σ μg μw is {number(an.mean_term)} nats, so the paper's "
        f"estimate Σ c σg σw = {number(an.estimated_gap, 4)} nats keeps "
        f"{number(100 * an.estimated_gap / an.pair_gap, 3)} % of it; the real gap is {number(an.real_gap, 4)} nats."
    )


def spectra_takeaway(an, n_sharp: int = 10) -> str:
    """Markdown: how concentrated the gap is in the sharp directions."""
    d = an.directions
    n = n_sharp
    cum = d["contribution"].cumsum() / an.pair_gap
    n90 = int(np.argmax(cum.to_numpy() >= 0.9)) + 1 if (cum >= 0.9).any() else len(d)
    top = d.iloc[:n]
    return (
        f"σg falls from {number(d['sigma_g'].iloc[0])} to {number(d['sigma_g'].iloc[-1])} over {len(d)} directions. "
        f"The {n} sharpest carry **{number(100 * an.sharp_gap / an.pair_gap, 3)} %** of the exact gap "
        f"(sharp {number(an.sharp_gap, 4)} + flat {number(an.flat_gap, 4)} nats); {n90} directions reach 90 %. "
        f"Among the sharp ones c = {number(top['c'].mean(), 2)} ± {number(top['c'].std(ddof=0), 2)}, "
        f"over all directions {number(d['c'].mean(), 2)} ± {number(d['c'].std(ddof=0), 2)}."
    )


def strength(rho: float) -> str:
    a = abs(rho)
    if not math.isfinite(a):
        return "undefined"
    word = (
        "strong" if a >= 0.7 else ("moderate" if a >= 0.4 else ("weak" if a >= 0.2 else "no clear"))
    )
    return f"{word} {'positive' if rho > 0 else 'negative'}" if word != "no clear" else word


def _curvature(an) -> float:
    # Analysis.curvature, from its two parts: the same number, and it also reads objects that
    # only carry sharpness and size (older results, stand-ins).
    return an.sharpness / an.size if an.size else float("nan")


def factors_takeaway(an) -> str:
    """Markdown: sharpness against curvature, size against the weight norm."""
    d = curved_directions(an.directions)
    rho_g = spearman(d["lam"], d["sigma_g"])
    rho_r = spearman(d["lam"], d["sigma_g"] / d["sigma_w"])
    return (
        f"Sharpness Σσg² = **{number(an.sharpness)}**, size Σσw² = **{number(an.size)}** at a layer norm "
        f"‖W‖ = {number(an.weight_norm)}. Over the {len(d)} curved directions (λ > 1e-12 λ_max = {number(an.lam_max)}) "
        f"σg follows λ with Spearman ρ = **{number(rho_g, 2)}** ({strength(rho_g)} rank correlation); the ratio "
        f"σg/σw shows {strength(rho_r)} rank correlation with λ (ρ = {number(rho_r, 2)}). "
        f"The size-free curvature part, sharpness/size (the ‖Δw‖²-weighted mean "
        f"squared secant curvature), is **{number(_curvature(an))}**."
    )


def second_order_takeaway(an) -> str:
    rel = an.second_order_error / abs(an.pair_gap) if an.pair_gap else float("nan")
    return (
        f"The second-order Taylor reading gives {number(an.second_order_gap, 4)} nats (first order "
        f"{number(an.first_order_term, 3)}, curvature term {number(an.second_order_term, 3)}) against the exact "
        f"{number(an.pair_gap, 4)}: off by **{number(100 * rel, 3)} %**. Dual weights are not small steps, so the "
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
                "curvature": _curvature(an),
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
        else f"differs by {number(spread, 2)} nats between layers (pairs with a zero activity are dropped per layer)"
    )
    return (
        f"At all {len(table)} layers the identity closes to at most **{table['identity_error'].max():.1e}** and the "
        f"duality to {table['duality_error'].max():.1e}. The pair gap {same}; how it splits into directions "
        f"depends on the layer: the sharp part is largest at `{best}` ({number(100 * table.loc[best, 'sharp_share'], 3)} %)."
    )


BASIS_LABELS = {
    "hessian": "Hessian eigenbasis",
    "dual_pca": "dual weights' principal axes",
    "random": "random orthonormal basis",
}


def control_basis_takeaway(shares: dict[str, float], k: int = 10) -> str:
    """Markdown: is the Hessian basis special? Its top-k share of the gap against the dual
    weights' principal axes (no Hessian) and a random basis, stated whichever way it comes out.

    Shares within 5 points of each other read as "about as much": one run gives no spread
    over seeds, so a smaller difference is not read as a difference (a chosen margin, not a
    test)."""
    h, p, r = (shares.get(b, float("nan")) for b in ("hessian", "dual_pca", "random"))
    numbers = (
        f"The top {k} directions carry **{number(100 * h, 3)} %** of the exact gap in the Hessian "
        f"eigenbasis, **{number(100 * p, 3)} %** along the dual weights' principal axes (found "
        f"without any Hessian) and {number(100 * r, 3)} % in a random orthonormal basis. "
    )
    if not all(math.isfinite(v) for v in (h, p, r)):
        return numbers + "Not every basis could be computed, so there is no comparison."
    if h - r < 0.05:
        return numbers + (
            "The Hessian basis concentrates the gap no better than a random basis: the "
            "sharp/flat split says nothing about curvature here."
        )
    if p >= h - 0.05:
        relation = "more than" if p > h + 0.05 else "about as much as"
        return numbers + (
            f"The dual weights' own spread concentrates the gap {relation} the Hessian does, so "
            "most of the concentration in a few directions comes from how the dual weights are "
            "spread, not from the Hessian's eigenvectors in particular."
        )
    return numbers + (
        "The Hessian basis concentrates the gap more than the dual weights' own spread does: "
        "its eigenvectors pick out gap-carrying directions beyond the dual weights' principal axes."
    )
