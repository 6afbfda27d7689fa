"""What notebook 11 ("SGD noise and curvature") runs: seeds of cross-entropy and MSE runs
trained through the result cache, each analysed by :func:`awbench.noise_curvature`, and the
follow-up's per-seed evidence for its claims (docs/science.md#11-sgd-noise-against-curvature).

Only runs that met the stopping rule count: the others are kept in the tables with their
status and left out of every number (docs/science.md#5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from awbench.analysis.noise import NoiseCurvature, noise_curvature
from awbench.config import Config
from awbench.experiments.experiment import Result, run_experiments
from awbench.status import CONVERGED

# Seeds per profile: the follow-up trains 4; smoke checks the machinery with 2.
NOISE_SEEDS = {"smoke": 2, "quick": 4, "paper": 10}
# MSE's gradients are about n_classes times smaller than cross-entropy's (the mean over
# classes of squared probability errors), so at the same lr it crawls: MSE runs take a larger
# lr. The smoke preset needs twice that (its 100 epochs) to meet its stopping rule.
MSE_LR = {"smoke": 2.0, "quick": 1.0, "paper": 1.0}
# Batch sizes of the noise-against-B figure, as fractions of the training set (rounded).
BATCH_FRACTIONS = (0.01, 0.025, 0.0625, 0.125, 0.25, 0.5)
# Above this many weights the notebook asks noise_curvature for H's top directions only.
NOTEBOOK_DENSE_MAX = 2000


def noise_seeds(profile: str, n_seeds: int = 0, seed: int = 0) -> list[int]:
    """``n_seeds`` (0: the profile's, :data:`NOISE_SEEDS`) consecutive seeds from ``seed``."""
    if n_seeds < 0:
        raise ValueError(
            f"n_seeds={n_seeds} is not allowed: expected 0 (the profile's) or a positive integer"
        )
    return list(range(seed, seed + (n_seeds or NOISE_SEEDS[profile])))


def mse_lr(profile: str, lr: float = 0.0) -> float:
    """``lr`` or, when 0, the profile's learning rate for MSE runs (:data:`MSE_LR`)."""
    if lr < 0 or not math.isfinite(lr):
        raise ValueError(f"mse_lr={lr} is not allowed: expected 0 (the profile's) or > 0")
    return lr or MSE_LR[profile]


def train_seeds(cfg: Config, seeds: Sequence[int]) -> list[Result]:
    """One cached result per seed of ``cfg`` (the seeds train together as a stacked model)."""
    return run_experiments([cfg.replace(seed=s) for s in seeds])


def _row(res: Result, nc: NoiseCurvature | None) -> dict:
    row = {
        "seed": res.config.seed,
        "loss": res.config.loss,
        "lr": res.config.lr,
        "status": res.status,
        "epochs": res.epochs,
        "converged": res.status == CONVERGED,
    }
    if nc is not None:
        row.update({k: v for k, v in nc.scalars().items() if k not in ("layer", "loss")})
    return row


def noise_over_seeds(
    results: Sequence[Result], dense_max: int = NOTEBOOK_DENSE_MAX
) -> tuple[pd.DataFrame, dict[int, NoiseCurvature]]:
    """(one row per seed: status and, when converged, :meth:`~awbench.analysis.noise.NoiseCurvature.scalars`;
    {seed: NoiseCurvature} of the converged seeds). Unconverged runs are not analysed."""
    rows, found = [], {}
    for res in results:
        nc = noise_curvature(res.load_run(), dense_max=dense_max) if res.converged else None
        if nc is not None:
            found[res.config.seed] = nc
        rows.append(_row(res, nc))
    return pd.DataFrame(rows), found


def converged_values(table: pd.DataFrame, column: str) -> list[float]:
    """``column`` over the converged seeds with a finite value, as floats."""
    if column not in table:
        return []
    vals = table.loc[table["converged"], column].astype(float)
    return [float(v) for v in vals if math.isfinite(v)]


def noise_evidence(ce: pd.DataFrame, mse: pd.DataFrame) -> dict[str, list[float]]:
    """The follow-up's per-seed evidence (the ``noise`` of ``claim_verdicts``) from the
    cross-entropy and MSE tables: gammas of each, and the cross-entropy commutators with
    their baselines (the same seeds)."""
    evidence = {
        "gamma_ce": converged_values(ce, "gamma"),
        "gamma_mse": converged_values(mse, "gamma"),
    }
    evidence.update(commutator=[], commutator_baseline=[])
    if "commutator" in ce:
        both = ce[ce["converged"]].dropna(subset=["commutator", "commutator_baseline"])
        evidence["commutator"] = [float(v) for v in both["commutator"]]
        evidence["commutator_baseline"] = [float(v) for v in both["commutator_baseline"]]
    return evidence


def first_converged(results: Sequence[Result]) -> Result | None:
    """The first result that met the stopping rule, or None."""
    return next((r for r in results if r.converged), None)


def batch_sizes(n: int, fractions: Sequence[float] = BATCH_FRACTIONS) -> list[int]:
    """Batch sizes over ``fractions`` of ``n`` samples (at least 1, distinct, ascending)."""
    return sorted({max(1, round(f * n)) for f in fractions})
