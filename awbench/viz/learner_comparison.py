"""The multi-learner comparison of notebook 09 in words and figures: the sentence that reports
SSGD against DPSGD, paired by seed (:func:`awbench.experiments.claims.compare_algorithms`),
with the verdict of each paper claim, and the gap, sharpness and size by algorithm in the
house style.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from awbench.formatting import number, signed_percent
from awbench.viz.gap_plots import layout


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
            f"{q.replace('_', ' ')} DPSGD / SSGD {signed_percent(c['rel_diff'])} "
            f"[{signed_percent(c['rel_low'])}, {signed_percent(c['rel_high'])}] (p = {number(c['p'], 2)})"
        )
    claims = "; ".join(f"*{r.text}* → **{r.verdict}**" for r in comparison["claims"].itertuples())
    margin = comparison["comparisons"].get("size", {}).get("margin")
    same = (
        f" 'Same size' means within ±{number(100 * margin, 2)} %, half the sharpness change."
        if margin
        else ""
    )
    return (
        head + ". " + "; ".join(parts) + " (geometric mean ratio over seed pairs with a 95 % "
        "t-interval of the per-seed log-ratios and paired t-tests; the claims are "
        f"corrected with Holm over every claim of the report, as the report does).{same} "
        f"Against the paper's claim: {claims}."
    )


# One colour per algorithm in every panel (Okabe-Ito, colour-blind safe), named in the legend.
ALGORITHM_COLORS = {"ssgd": "#0072B2", "dpsgd": "#D55E00", "local_sgd": "#009E73"}
ALGORITHM_LABELS = {
    "ssgd": "SSGD (synchronous)",
    "dpsgd": "DPSGD (decentralized)",
    "local_sgd": "local SGD",
}
_SPREAD = "mean ± sd over converged seeds"


def algorithm_label(alg: str) -> str:
    return ALGORITHM_LABELS.get(alg, alg)


def algorithm_color(alg: str) -> str:
    return ALGORITHM_COLORS.get(alg, "#444444")


def _algorithm_lines(
    fig: go.Figure, table: pd.DataFrame, column: str, algorithms: Sequence[str], **where
) -> None:
    """One trace per algorithm: mean of ``column`` over seeds against n, sd as error bar; the
    same colour and legend group in every panel, listed in the legend once (first panel)."""
    present = table.index.get_level_values("algorithm")
    for alg in algorithms:
        if alg not in present:
            continue
        t = table.xs(alg, level="algorithm")[column]
        label = algorithm_label(alg)
        fig.add_trace(
            go.Scatter(
                x=t.index,
                y=t["mean"],
                mode="markers+lines",
                error_y={"type": "data", "array": t["std"].fillna(0).to_numpy()},
                name=label,
                legendgroup=alg,
                marker={"color": algorithm_color(alg), "size": 9},
                line={"color": algorithm_color(alg)},
                showlegend=not where or where["col"] == 1,
                hovertemplate=f"{label}<br>n %{{x}}<br>{column} %{{y:.4g}}<extra></extra>",
            ),
            **where,
        )


def _learner_axis(fig: go.Figure, table: pd.DataFrame) -> None:
    counts = sorted({int(n) for n in table.index.get_level_values("n_learners")})
    log = len(counts) > 1 and counts[-1] / counts[0] >= 8
    fig.update_xaxes(
        title_text="learners n",
        type="log" if log else "linear",
        tickvals=counts,
        ticktext=[str(n) for n in counts],
    )


def gap_by_algorithm(table: pd.DataFrame, algorithms: Sequence[str]) -> go.Figure:
    """The real gap against the number of learners, one line per algorithm.

    ``table``: rows (n_learners, algorithm), columns (quantity, "mean" | "std"), over
    converged runs (``runs.groupby(["n_learners", "algorithm"])[cols].agg(["mean", "std"])``).
    """
    fig = go.Figure()
    _algorithm_lines(fig, table, "real_gap", algorithms)
    _learner_axis(fig, table)
    fig.update_yaxes(title_text="real gap: test CE − clean-train CE (nats)")
    return layout(fig, f"Generalization gap by algorithm ({_SPREAD})", legend="below", height=440)


def factors_by_algorithm(table: pd.DataFrame, algorithms: Sequence[str]) -> go.Figure:
    """Sharpness Σσg² and size Σσw² against the number of learners, one colour per algorithm
    in both panels (the legend names each once)."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["sharpness Σσg²", "size Σσw²"], horizontal_spacing=0.1
    )
    _algorithm_lines(fig, table, "sharpness", algorithms, row=1, col=1)
    _algorithm_lines(fig, table, "size", algorithms, row=1, col=2)
    _learner_axis(fig, table)
    fig.update_yaxes(title_text="Σσg²", row=1, col=1)
    fig.update_yaxes(title_text="Σσw²", row=1, col=2)
    title = f"Sharpness and size by algorithm ({_SPREAD}; colours as in the legend)"
    return layout(fig, title, legend="below", height=440)
