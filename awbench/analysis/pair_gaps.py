"""The pairs of one analysis: which (test, training) samples pair, their dual weights as
rank-one factors, their exact gaps and secant gradients (docs/science.md#2-pairing).

A dual weight dW_k = u_k b_k^T (u_k = W da_k, b_k = a_k / |a_k|^2) and a secant gradient
g_k = secant_scale_k dW_k are kept as factors, K x (n_out + n_in) numbers instead of
K x n_out x n_in: the dual losses, sizes, sharpnesses and residuals are contractions of the
factors, and only the projections on a basis build dual weights, a bounded block at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from awbench.analysis.duality import (
    augment,
    dual_weight_factors,
    layer_matrix,
    module_inputs,
    rank_one_offsets,
)
from awbench.analysis.duality_guard import check_pair_duality
from awbench.analysis.memory import PAIR_BLOCK_BYTES, pair_block
from awbench.analysis.model_inputs import PairingRule, Samples, candidate_pairs
from awbench.analysis.resolved import ResolvedLayer
from awbench.curvature.flat import model_mode
from awbench.curvature.layer import row_chunks
from awbench.nn.losses import per_sample_loss


def pair_losses(target: ResolvedLayer, x_train, x_test, y, u, b):
    """l(x_k, W), l(x'_k, W) and l(x_k, W + u_k b_k^T), a chunk of pairs per forward pass."""
    model, loss = target.model, target.loss
    base, direct, dual = [], [], []
    with torch.no_grad(), model_mode(model, "eval"):
        for rows in row_chunks(len(y)):
            base.append(per_sample_loss(loss, model(x_train[rows]), y[rows]))
            direct.append(per_sample_loss(loss, model(x_test[rows]), y[rows]))
            with rank_one_offsets(model, target.module, u[rows], b[rows]):
                dual.append(per_sample_loss(loss, model(x_train[rows]), y[rows]))
    return torch.cat(base), torch.cat(direct), torch.cat(dual)


@dataclass
class PairedActivities:
    """The kept (test, training) pairs and the layer inputs that define their dual weights."""

    test: np.ndarray
    train: np.ndarray
    a_test: torch.Tensor  # (K, n_in[+1])
    a_train: torch.Tensor  # (K, n_in[+1])
    n_excluded: int


@dataclass
class PairGaps:
    """Per-pair dual weights (as rank-one factors), exact gaps and secant gradients.

    dW_k = u_k b_k^T and g_k = secant_scale_k dW_k are never held whole: the statistics
    are contractions of the factors, and :meth:`coordinates` builds blocks of dW only.
    :func:`pair_gaps` builds it complete; the defaults serve factors without losses (the
    control bases' ``gaps_of``, tests)."""

    u: torch.Tensor  # (K, n_out) W da_k
    b: torch.Tensor  # (K, n_in[+1]) a_k / |a_k|^2, so dW_k = u_k b_k^T
    y: torch.Tensor | None = None  # (K,) the pairs' labels
    dl: torch.Tensor | None = None  # (K,) exact gaps
    duality_error: float = float("nan")
    secant_scale: torch.Tensor | None = None  # (K,) g_k = secant_scale_k dw_k

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.shape[1], self.b.shape[1]

    @property
    def n_weights(self) -> int:
        return self.u.shape[1] * self.b.shape[1]

    @property
    def squared_norms(self) -> torch.Tensor:
        """(K,) |dW_k|^2 = |u_k|^2 |b_k|^2."""
        return (self.u * self.u).sum(1) * (self.b * self.b).sum(1)

    def coordinates(self, V: torch.Tensor, block_bytes: int = PAIR_BLOCK_BYTES) -> torch.Tensor:
        """(K, m) dW_k . v_n for the columns v_n of V (P, m), in blocks of pairs.

        Same flops either way; what differs is the intermediate each block writes. With many
        directions (m at least the larger factor dimension, as a dense basis) the dual
        weights themselves are built, (K, P), and one GEMM with V takes them. With few (the
        top directions of a large layer) V's rows are contracted with the larger factor
        first, one GEMM to (K, smaller dim, m): at a 1000 x 513 head and m = 100 that writes
        a tenth of the dual weights' bytes and runs 2.3x faster. A contraction per direction
        (u_k^T V_n b_k as m thin products) is 5x slower than either. ``block_bytes`` bounds
        each block's intermediate."""
        n_out, n_in = self.u.shape[1], self.b.shape[1]
        m = V.shape[1]
        if m >= max(n_out, n_in):
            parts = []
            for rows in row_chunks(len(self.u), pair_block(self.n_weights, block_bytes)):
                dw = torch.einsum("ko,ki->koi", self.u[rows], self.b[rows])
                parts.append(dw.reshape(-1, self.n_weights) @ V)
            return torch.cat(parts)
        grid = V.reshape(n_out, n_in, m)
        if n_out >= n_in:  # contract the outputs first: (k, n_out) @ (n_out, n_in m)
            first, second, flat = self.u, self.b, grid.reshape(n_out, n_in * m)
        else:  # the inputs first: (k, n_in) @ (n_in, n_out m)
            first, second = self.b, self.u
            flat = grid.permute(1, 0, 2).reshape(n_in, n_out * m)
        inner = second.shape[1]
        parts = []
        for rows in row_chunks(len(self.u), pair_block(inner * m, block_bytes)):
            partial = (first[rows] @ flat).reshape(-1, inner, m)
            parts.append(torch.bmm(second[rows, None, :], partial)[:, 0])
        return torch.cat(parts)

    def deviations(self, scale: torch.Tensor) -> torch.Tensor:
        """(K,) |scale_k dW_k - mean_j scale_j dW_j|^2, expanded in the factors."""
        su = scale[:, None] * self.u
        mean = (su.T @ self.b) / len(su)
        cross = ((su @ mean) * self.b).sum(1)
        return scale * scale * self.squared_norms - 2.0 * cross + (mean * mean).sum()


def active_pairs(target: ResolvedLayer, rule: PairingRule, s: Samples) -> PairedActivities:
    """Pair the samples, dropping pairs whose training activity is zero (no dual weight exists)."""
    x_train, x_test = s.x_train, s.x_test
    pairs = candidate_pairs(target, rule, s)
    a_tr = module_inputs(target.model, target.module, x_train[pairs.train])
    a_te = module_inputs(target.model, target.module, x_test[pairs.test])
    if target.with_bias:
        a_tr, a_te = augment(a_tr), augment(a_te)
    nonzero = (a_tr * a_tr).sum(1) > 0
    n_excluded = int(len(pairs.unpaired) + (~nonzero).sum())
    keep = nonzero.cpu().numpy()
    test_idx, train_idx = pairs.test[keep], pairs.train[keep]
    if len(test_idx) == 0:
        raise ValueError(
            f"no test sample could be paired at layer={target.label!r}: every candidate pair "
            "has a zero training activity or no clean same-class training sample"
        )
    return PairedActivities(test_idx, train_idx, a_te[nonzero], a_tr[nonzero], n_excluded)


def pair_gaps(target: ResolvedLayer, pairs: PairedActivities, x_train, x_test, y_test) -> PairGaps:
    """The pairs' dual weights, exact gaps and secant gradients; DualityError when some
    pair's dual loss misses its test loss (duality_guard.check_pair_duality)."""
    u, b = dual_weight_factors(layer_matrix(target.module), pairs.a_train, pairs.a_test)
    y = y_test[pairs.test]
    base, direct, dual = pair_losses(target, x_train[pairs.train], x_test[pairs.test], y, u, b)
    dl = direct - base
    if not bool(torch.isfinite(dl).all()) or not bool(torch.isfinite(dual).all()):
        raise ValueError(
            f"layer={target.label!r}: the per-pair losses are not finite (NaN or inf) for "
            f"{int((~torch.isfinite(dl)).sum())} of {len(dl)} pairs, so the gap "
            "decomposition is undefined (an overflowing network?)"
        )
    check_pair_duality(target.label, dual, direct)
    dw_sq = (u * u).sum(1) * (b * b).sum(1)
    safe = torch.where(dw_sq > 0, dw_sq, torch.ones_like(dw_sq))
    # g_k = secant_scale_k dw_k: the projections of g are those of dw, rescaled.
    secant_scale = torch.where(dw_sq > 0, dl / safe, torch.zeros_like(dl))
    duality_error = float((dual - direct).abs().max())
    return PairGaps(u, b, y, dl, duality_error, secant_scale)
