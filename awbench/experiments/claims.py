"""The claims table: each claim of the paper, and each per-knob hypothesis, judged from the evidence.

    from awbench.experiments import claims as cl, verdicts as vd
    table = vd.verdict_table({"batch_size": runs_bs, "lr": runs_lr})
    claims = cl.claim_verdicts(table, comparisons={"sharpness": vd.paired_comparison(a, b), ...})

A claim about a knob is read off a :func:`awbench.experiments.verdicts.verdict_table`; a claim
about the algorithm (DPSGD against synchronous SGD) off the
:func:`awbench.experiments.verdicts.paired_comparison` of each quantity, those p-values
Holm-corrected among themselves. The rule is part of :data:`awbench.experiments.verdicts.RULE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from awbench.experiments.verdicts import SAME_MARGIN, holm


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
    source: str  # "paper" (the paper's statement) or "hypothesis" (our per-knob expectation)
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
]  # fmt: skip

_OPPOSITE = {"up": "down", "down": "up"}


def _fmt(v: Any, spec: str = ".2f") -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return format(v, spec) if math.isfinite(v) else "n/a"


def _row_numbers(row: Mapping[str, Any]) -> str:
    text = (
        f"{row['quantity']}: {row['verdict']}, rho {_fmt(row.get('rho'))} "
        f"[{_fmt(row.get('rho_low'))}, {_fmt(row.get('rho_high'))}], "
        f"Holm p {_fmt(row.get('p_monotone_holm'), '.3g')}"
    )
    if row["verdict"] == "non-monotone":
        text += f", Kruskal-Wallis Holm p {_fmt(row.get('p_kruskal_holm'), '.3g')}"
    if row["verdict"] == "not enough data":
        text += (
            f" ({row.get('n_runs', 'n/a')} converged runs at {row.get('n_values', 'n/a')} values)"
        )
    return text


def _comparison_numbers(quantity: str, c: Mapping[str, Any]) -> str:
    return (
        f"{quantity}: DPSGD - SSGD {_fmt(c.get('diff'), '.3g')} "
        f"[{_fmt(c.get('diff_low'), '.3g')}, {_fmt(c.get('diff_high'), '.3g')}], "
        f"relative {_fmt(c.get('rel_diff'), '+.1%')} [{_fmt(c.get('rel_low'), '+.1%')}, "
        f"{_fmt(c.get('rel_high'), '+.1%')}], Holm p {_fmt(c.get('p_holm'), '.3g')} "
        f"({c.get('n_pairs', 'n/a')} seed pairs)"
    )


def _table_claim(claim: Claim, table: pd.DataFrame) -> tuple[str, str, str]:
    if not {"knob", "quantity", "verdict"} <= set(table.columns):
        return "n/a", "inconclusive", "knob not in the verdict table"
    rows = table[(table["knob"] == claim.knob) & table["quantity"].isin(claim.quantities)]
    if rows.empty:
        missing = "knob" if not (table["knob"] == claim.knob).any() else "quantity"
        return "n/a", "inconclusive", f"{missing} not in the verdict table"
    rows = rows.set_index("quantity").reindex(list(claim.quantities))
    found = ", ".join(
        f"{q} {v}" if isinstance(v, str) else f"{q} missing" for q, v in rows["verdict"].items()
    )
    because = "; ".join(
        _row_numbers({**r, "quantity": q}) for q, r in rows.dropna(subset=["verdict"]).iterrows()
    )
    verdicts = rows["verdict"].dropna().tolist()
    if claim.expected == "change":
        moved = [v for v in verdicts if v in _OPPOSITE]
        # A knob that moved neither factor has only failed to show an effect here; the
        # paper's "acts on" cannot be refuted by a non-significant test.
        return found, "supported" if moved else "inconclusive", because
    if claim.expected not in _OPPOSITE:
        raise ValueError(f"claim {claim.id}: expected {claim.expected!r} needs a paired comparison")
    if claim.expected in verdicts:
        return found, "supported", because
    if _OPPOSITE[claim.expected] in verdicts:
        return found, "contradicted", because
    return found, "inconclusive", because


def _comparison_claim(claim: Claim, comparisons: Mapping[str, Mapping[str, Any]], alpha: float):
    quantity = claim.quantities[0]
    c = comparisons.get(quantity)
    if c is None:
        return "n/a", "inconclusive", f"no DPSGD-vs-SSGD comparison of {quantity}"
    p, diff = c.get("p_holm", math.nan), c.get("diff", math.nan)
    significant = math.isfinite(p) and p < alpha
    direction = ("up" if diff > 0 else "down") if significant and diff != 0 else "no clear change"
    because = _comparison_numbers(quantity, c)
    if claim.expected == "same":
        lo, hi = c.get("rel_low", math.nan), c.get("rel_high", math.nan)
        within = (
            math.isfinite(lo) and math.isfinite(hi) and -SAME_MARGIN <= lo and hi <= SAME_MARGIN
        )
        found = f"{quantity} within +/-{SAME_MARGIN:.0%}" if within else f"{quantity} {direction}"
        # Equivalence needs the interval inside the margin (a significant but small difference
        # is still "the same size"); the opposite needs the interval wholly outside it.
        outside = (
            math.isfinite(lo) and math.isfinite(hi) and (lo > SAME_MARGIN or hi < -SAME_MARGIN)
        )
        if within:
            return found, "supported", because
        return found, "contradicted" if outside else "inconclusive", because
    found = f"{quantity} {direction}"
    if direction == claim.expected:
        return found, "supported", because
    if direction == _OPPOSITE.get(claim.expected):
        return found, "contradicted", because
    return found, "inconclusive", because


def claim_verdicts(
    table: pd.DataFrame,
    claims: Sequence[Claim] = CLAIMS,
    *,
    comparisons: Mapping[str, Mapping[str, Any]] | None = None,
    alpha: float | None = None,
) -> pd.DataFrame:
    """One row per claim: "supported", "contradicted" or "inconclusive", and the numbers why.

    ``table`` is a :func:`verdict_table`. ``comparisons`` maps a quantity ("real_gap",
    "sharpness", "size") to a :func:`paired_comparison` of SSGD (a) against DPSGD (b); those
    p-values are Holm-corrected among themselves here. Claims about a knob or comparison that
    is absent come out "inconclusive". ``alpha`` defaults to the table's.
    """
    if alpha is None:
        alpha = float(table.attrs.get("alpha", 0.05))
    comparisons = dict(comparisons or {})
    if comparisons:
        keys = list(comparisons)
        adjusted = holm([comparisons[k].get("p", math.nan) for k in keys])
        comparisons = {k: {**comparisons[k], "p_holm": float(p)} for k, p in zip(keys, adjusted)}
    rows = []
    for claim in claims:
        if claim.knob == "algorithm":
            found, verdict, because = _comparison_claim(claim, comparisons, alpha)
        else:
            found, verdict, because = _table_claim(claim, table)
        rows.append(
            {
                "id": claim.id,
                "source": claim.source,
                "text": claim.text,
                "knob": claim.knob,
                "quantity": ", ".join(claim.quantities),
                "expected": claim.expected,
                "found": found,
                "verdict": verdict,
                "because": because,
            }
        )
    return pd.DataFrame(rows)
