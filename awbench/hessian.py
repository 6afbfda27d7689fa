"""Hessians of the training loss: the analysed layer's dense fp64 Hessian.

The layer Hessian uses that a Linear layer's output ``z = W a`` is linear in ``W``: the
Hessian of the mean loss w.r.t. ``W`` is exactly ``mean_k G_k (x) a_k a_k^T``, where ``G_k`` is
the Hessian of sample k's loss w.r.t. its layer output. The loss is a sum over samples, so the
Hessian w.r.t. the whole output matrix ``Z`` is block diagonal and ``n_out`` batched
Hessian-vector products (one per output unit, over all samples at once) recover every ``G_k``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _layer(model: nn.Module, layer: str) -> nn.Linear:
    module = dict(model.named_modules()).get(layer)
    if not isinstance(module, nn.Linear):
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(f"layer={layer!r} is not a Linear layer of this model: expected one of {linear}")
    return module


def output_hessians(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """Per-sample Hessians ``G_k`` of the cross-entropy w.r.t. ``layer``'s output.

    Returns ``(G, a)``: G of shape (N, n_out, n_out) and the layer's inputs a of shape
    (N, n_in), both float64, from the model evaluated as it is (callers choose the mode).
    """
    module = _layer(model, layer)
    captured: dict[str, torch.Tensor] = {}

    def swap_output(mod, inputs, output):
        captured["a"] = inputs[0].detach()
        z = output.detach().requires_grad_(True)
        captured["z"] = z
        return z

    handle = module.register_forward_hook(swap_output)
    try:
        with torch.enable_grad():
            logits = model(x)
            loss = F.cross_entropy(logits, y, reduction="sum")
            z = captured["z"]
            (grad_z,) = torch.autograd.grad(loss, z, create_graph=True)
            n_out = z.shape[1]
            if not grad_z.requires_grad:  # downstream is piecewise linear and loss-free: G = 0
                return torch.zeros(z.shape[0], n_out, n_out, dtype=torch.float64), captured["a"].double()
            unit = torch.eye(n_out, dtype=z.dtype, device=z.device)
            tangents = unit[:, None, :].expand(n_out, z.shape[0], n_out)
            (cols,) = torch.autograd.grad(grad_z, z, grad_outputs=tangents, is_grads_batched=True)
    finally:
        handle.remove()
    # cols[i, k, :] = G_k[:, i]
    G = cols.permute(1, 2, 0).double()
    return 0.5 * (G + G.transpose(1, 2)), captured["a"].double()


def layer_hessian(
    model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, with_bias: bool = False
) -> torch.Tensor:
    """Dense float64 Hessian of the mean cross-entropy over (x, y) w.r.t. ``layer``'s weight.

    Rows and columns follow ``weight.flatten()`` (PyTorch layout (n_out, n_in), row-major).
    With ``with_bias`` the parameter is ``[W | b]`` flattened the same way, so its size is
    n_out * (n_in + 1). The model is evaluated in eval mode (dropout off) and left in the
    mode it was in; no regularizer enters.
    """
    module = _layer(model, layer)
    if with_bias and module.bias is None:
        raise ValueError(f"with_bias=True but layer={layer!r} has no bias")
    was_training = model.training
    model.eval()
    try:
        G, a = output_hessians(model, layer, x, y)
    finally:
        model.train(was_training)
    if with_bias:
        a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype, device=a.device)], dim=1)
    n, n_out, n_in = len(a), G.shape[1], a.shape[1]
    outer = a[:, :, None] * a[:, None, :]  # (N, n_in, n_in)
    # S[(i,o),(j,p)] = sum_k G_k[i,o] a_kj a_kp, one GEMM; then reorder to [(i,j),(o,p)].
    S = G.reshape(n, -1).T @ outer.reshape(n, -1)
    H = S.reshape(n_out, n_out, n_in, n_in).permute(0, 2, 1, 3).reshape(n_out * n_in, n_out * n_in)
    H = H / n
    return 0.5 * (H + H.T)
