"""Exactness checks of the duality on a trained layer: the dual weights of every pair,
the general family around the minimal one, and how the dual weight scales with the layer."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from awbench.analysis.duality import (
    dual_weights,
    general_dual_weights,
    layer_inputs,
    per_sample_weights,
)
from awbench.curvature.flat import model_mode
from awbench.curvature.layer import linear_layer


def pair_activities(model, layer: str, data, pairs):
    """(a_train, a_test, keep): float64 activities entering ``layer`` for each pair, with the
    pairs whose training activity is zero dropped (``keep`` marks the kept pairs)."""
    x_tr, x_te = data.x_train.double()[pairs.train], data.x_test.double()[pairs.test]
    a_tr, a_te = layer_inputs(model, layer, x_tr), layer_inputs(model, layer, x_te)
    keep = (a_tr * a_tr).sum(1) > 0
    return a_tr[keep], a_te[keep], keep


def dual_errors(model, layer: str, x_train, x_test, delta):
    """Per pair max |logits(x_test, W) - logits(x_train, W + delta_k)|."""
    with torch.no_grad(), model_mode(model, "eval"):
        direct = model(x_test)
        with per_sample_weights(model, layer, delta):
            dual = model(x_train)
    return (direct - dual).abs().amax(1)


def family_sweep(
    model, layer: str, data, pairs, scales: Sequence[float], seed: int = 0
) -> pd.DataFrame:
    """Members ``dW* + M_k (I - a a^T/|a|^2)`` with random M_k of norm scale x |dW*_k|:
    their norm relative to the minimal one and their exactness."""

    W = linear_layer(model, layer).weight.detach()
    a_tr, a_te, keep = pair_activities(model, layer, data, pairs)
    x_tr, x_te = data.x_train.double()[pairs.train][keep], data.x_test.double()[pairs.test][keep]
    minimal = dual_weights(W, a_tr, a_te)
    base_norm = minimal.flatten(1).norm(dim=1)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(minimal.shape, generator=gen, dtype=minimal.dtype)
    noise = noise / noise.flatten(1).norm(dim=1)[:, None, None] * base_norm[:, None, None]
    rows = []
    for s in scales:
        member = general_dual_weights(W, a_tr, a_te, s * noise)
        ratio = member.flatten(1).norm(dim=1) / torch.where(base_norm > 0, base_norm, 1.0)
        err = dual_errors(model, layer, x_tr, x_te, member)
        rows.append(
            {
                "scale": float(s),
                "norm_ratio": float(ratio.mean()),
                "min_norm_ratio": float(ratio.min()),
                "max_error": float(err.max()),
            }
        )
    return pd.DataFrame(rows)


def scaling_sweep(model, layer: str, data, pairs, scales: Sequence[float]) -> pd.DataFrame:
    """Mean |dW*(sW)| / |dW*(W)| for each s: the dual weight is linear in the layer."""

    W = linear_layer(model, layer).weight.detach()
    a_tr, a_te, _ = pair_activities(model, layer, data, pairs)
    base = dual_weights(W, a_tr, a_te).flatten(1).norm(dim=1)
    rows = []
    for s in scales:
        scaled = dual_weights(s * W, a_tr, a_te).flatten(1).norm(dim=1)
        rows.append({"scale": float(s), "ratio": float((scaled / base).mean())})
    return pd.DataFrame(rows)
