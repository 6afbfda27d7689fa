"""Layer-size-free summaries of an :class:`Analysis`, to set layers of different networks side
by side (notebook 10: a CNN's fully connected layers next to the awbench MLP's).

Raw gaps are in nats and comparable as they are, but sharpness and size scale with the layer:
a dual weight dW = (W da) a^T / |a|^2 scales with W, and the gradient g with 1 / W when the
network is rescaled around the layer (W -> s W, the next layer / s, for ReLU nets). So the
scale-free pair is ``size / |W|^2`` and ``sharpness * |W|^2`` (their product, sharpness x
size, is unchanged). The shares of the gap are fractions of the exact pair gap <dl>.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch

from awbench.analysis.decomposition import Analysis

TOP_K = 10

# column -> what it means (the notebook's table legend)
COLUMNS = {
    "pair_gap": "exact pair gap <dl> (nats)",
    "top10_share": "share of <dl> in the 10 directions that contribute most",
    "sharp_fraction": "sharp_gap / pair_gap (the 10 directions of largest sigma_g)",
    "flat_fraction": "flat_gap / pair_gap (all other computed directions)",
    "complement_fraction": "complement_gap / pair_gap (outside the computed directions)",
    "sharpness_rel": "sharpness x |W|^2 (sum sigma_g^2, scale-free)",
    "size_rel": "size / |W|^2 (sum sigma_w^2, scale-free)",
    "n_weights": "parameters of the analysed layer (its bias included when analysed)",
}


def dimensionless(
    analysis: Analysis, weight: torch.Tensor | float | None = None, top_k: int = TOP_K
) -> dict[str, float]:
    """The :data:`COLUMNS` of one analysed layer.

    ``weight`` is the layer's weight matrix (or its Frobenius norm); by default the norm the
    analysis recorded (``analysis.weight_norm``). ``top10_share`` sums the ``top_k`` largest
    per-direction contributions (ranked by contribution, not by sigma_g as ``sharp_gap`` is).
    """
    if weight is None:
        w2 = analysis.weight_norm**2
    elif isinstance(weight, torch.Tensor):
        w2 = float(weight.detach().double().pow(2).sum())
    else:
        w2 = float(weight) ** 2
    gap = analysis.pair_gap
    top = analysis.directions["contribution"].nlargest(top_k).sum()
    return {
        "pair_gap": gap,
        "top10_share": float(top) / gap,
        "sharp_fraction": analysis.sharp_gap / gap,
        "flat_fraction": analysis.flat_gap / gap,
        "complement_fraction": analysis.complement_gap / gap,
        "sharpness_rel": analysis.sharpness * w2,
        "size_rel": analysis.size / w2,
        "n_weights": float(analysis.n_weights),
    }


def dimensionless_table(analyses: Mapping[str, Analysis]) -> pd.DataFrame:
    """One row of :func:`dimensionless` per labelled analysis (label -> Analysis)."""
    rows = {label: dimensionless(an) for label, an in analyses.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")[list(COLUMNS)]
    return table.astype({"n_weights": int})
