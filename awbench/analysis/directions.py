"""Per-direction statistics of the pairs in one orthonormal basis, and the direction table
(docs/science.md#3-the-gap-decomposition).

Shared by the Hessian eigenbasis (awbench.analysis.decomposition) and the control bases
(awbench.analysis.control_basis): the identity holds in any orthonormal basis, so every basis
gets the same table and the same ranking by sigma_g.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

DIRECTION_COLUMNS = [
    "rank",
    "lam",
    "mu_w",
    "sigma_w",
    "mu_g",
    "sigma_g",
    "c",
    "contribution",
    "curvature",
]


def direction_statistics(theta: torch.Tensor, gamma: torch.Tensor) -> dict[str, np.ndarray]:
    """Population mean, std (ddof 0) and Pearson correlation per column (c = 0 if undefined)."""
    mu_w, mu_g = theta.mean(0), gamma.mean(0)
    dw, dg = theta - mu_w, gamma - mu_g
    sigma_w = dw.pow(2).mean(0).sqrt()
    sigma_g = dg.pow(2).mean(0).sqrt()
    cov = (dw * dg).mean(0)
    denom = sigma_w * sigma_g
    c = torch.where(
        denom > 0,
        cov / torch.where(denom > 0, denom, torch.ones_like(denom)),
        torch.zeros_like(denom),
    )
    return {
        k: v.cpu().numpy()
        for k, v in {
            "mu_w": mu_w,
            "sigma_w": sigma_w,
            "mu_g": mu_g,
            "sigma_g": sigma_g,
            "c": c,
        }.items()
    }


def direction_table(theta, gamma, lam) -> pd.DataFrame:
    """Per-direction statistics and contributions, ranked by decreasing sigma_g.

    ``curvature`` = sigma_g / sigma_w (NaN where sigma_w is 0): gamma_kn = s_k theta_kn, so
    sigma_g,n is the spread of the secant curvatures s_k times the spread of theta along n,
    and this ratio is its size-free part (|s| exactly when every s_k equals s)."""
    stats = direction_statistics(theta, gamma)
    contribution = stats["mu_g"] * stats["mu_w"] + stats["c"] * stats["sigma_g"] * stats["sigma_w"]
    sigma_w = stats["sigma_w"]
    with np.errstate(divide="ignore", invalid="ignore"):
        curvature = np.where(sigma_w > 0, stats["sigma_g"] / sigma_w, np.nan)
    lam = np.asarray(lam.numpy() if isinstance(lam, torch.Tensor) else lam, dtype=np.float64)
    directions = pd.DataFrame(
        {"lam": lam, **stats, "contribution": contribution, "curvature": curvature}
    )
    directions["eigen_index"] = np.arange(len(directions))
    order = np.argsort(-directions["sigma_g"].to_numpy(), kind="stable")
    directions = directions.iloc[order].reset_index(drop=True)
    directions.insert(0, "rank", np.arange(len(directions)))
    return directions
