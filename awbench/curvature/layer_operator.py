"""Products with the analysed layer's Hessian, never forming it or the per-sample ``G_k``.

A Linear layer's output is linear in its weight, so the Hessian of the mean loss w.r.t.
``W`` is ``H = mean_k G_k (x) a_k a_k^T`` (awbench/curvature/layer.py). For a direction V
(n_out x n_in) that gives ``H v = mean_k (G_k V a_k) a_k^T``: two GEMMs with the layer
inputs and, for ``G_k u_k`` over all samples at once, one backward pass through the graph of
dL/dz. The loss is a sum over samples, so its Hessian w.r.t. the output matrix Z is block
diagonal, and that graph only spans the network *downstream* of the layer: the layer output
is a leaf and the parameters are frozen while it is built. So a product costs what the
layers after the analysed one cost, never the upstream network (a CNN's convolutions run
once), and memory holds the layer inputs and that downstream graph, not N x n_out^2 numbers.

When the analysed layer is the head (the model returns its output unchanged), G_k is the
loss's own Hessian in the logits, known in closed form (awbench/nn/losses.py): ``G_k u_k``
is then a few elementwise operations on the (N, n_out) probabilities, no graph is kept, and
a product is just the two GEMMs (a 512 -> 1000 head over 2000 samples: the backward pass
through the loss was about half of every product's time).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from awbench.curvature.layer import linear_layer, output_gradient_graph, row_chunks
from awbench.nn.losses import LogitHessian, check_loss


@contextlib.contextmanager
def frozen_parameters(model: nn.Module):
    """Within the block no parameter requires grad, so autograd records only what depends
    on a leaf made inside it (the layer output), not the upstream network."""
    was = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in was:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in was:
            p.requires_grad_(flag)


class LayerHessianProducts:
    """``H v`` for the Hessian of the mean loss ("ce" or "mse") over (x, y) w.r.t.
    ``layer``'s weight (``[W | b]`` with ``with_bias``), flattened like ``layer_hessian``'s rows.

    The model is evaluated as it is (callers choose eval mode); its parameters are frozen
    only while the graph is built. ``graph_bytes`` is what the kept graph holds. Besides
    ``matvec``: :attr:`inputs` (the layer inputs a_k), :attr:`output_gradients` (dl_k/dz_k)
    and :meth:`output_products` (G_k u_k), what the noise analysis builds on.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        x: torch.Tensor,
        y: torch.Tensor,
        with_bias: bool = False,
        loss: str = "ce",
    ):
        check_loss(loss)
        module = linear_layer(model, layer)
        if with_bias and module.bias is None:
            raise ValueError(f"with_bias=True but layer={layer!r} has no bias")
        self.n = len(x)
        self.shape = (module.out_features, module.in_features + int(with_bias))
        inputs, self._graphs, gradients, logits = [], [], [], []
        saved: dict[tuple, int] = {}

        def count(t):
            saved[(t.data_ptr(), t.numel(), t.dtype)] = t.nbytes
            return t

        hooks = torch.autograd.graph.saved_tensors_hooks(count, lambda t: t)
        head = True
        with frozen_parameters(model), hooks:
            for rows in row_chunks(len(x)):
                a, z, grad_z, is_head = output_gradient_graph(model, layer, x[rows], y[rows], loss)
                head = head and is_head
                inputs.append(a)
                gradients.append(grad_z.detach())
                logits.append(z.detach())
                self._graphs.append((rows, z, grad_z if grad_z.requires_grad else None))
        # For a head, G_k u_k has a closed form in the logits: the graphs are not needed.
        self.logit_hessian = LogitHessian(loss, torch.cat(logits), y) if head else None
        if head:
            self._graphs = []
            saved.clear()
        a = torch.cat(inputs)
        if with_bias:
            a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype, device=a.device)], 1)
        self.inputs = a
        self.output_gradients = torch.cat(gradients)  # (N, n_out) dl_k/dz_k
        self.graph_bytes = sum(saved.values())

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat v of ``size`` entries (the device and dtype of the layer inputs)."""
        a = self.inputs
        u = a @ v.reshape(self.shape).T  # (N, n_out): V a_k per sample, one GEMM
        return (self.output_products(u).T @ a).div_(self.n).reshape(-1)  # mean_k (G_k u_k) a_k^T

    def output_products(self, u: torch.Tensor) -> torch.Tensor:
        """(N, n_out) G_k u_k for one vector u_k (a row of ``u``) per sample."""
        if self.logit_hessian is not None:
            return self.logit_hessian.products(u)
        w = torch.zeros_like(u)
        for rows, z, grad_z in self._graphs:
            if grad_z is not None:  # None: nothing downstream curves the loss, G_k = 0
                (w[rows],) = torch.autograd.grad(grad_z, z, grad_outputs=u[rows], retain_graph=True)
        return w
