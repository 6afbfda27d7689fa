"""The MLP's arithmetic, written once: forward, backward and second-order passes.

Every trainer and the analysis's MLP fast paths call these functions: single runs and the
seeds of one setting (:mod:`awbench.training.stacked`), the learners of a multi-learner run
(:mod:`awbench.training.multilearner`), and the per-sample output Hessians of the analysis
(float64). What the network computes is :class:`awbench.nn.mlp.MLP`'s forward; the
activation and its derivatives come from :mod:`awbench.activations`.

Layers are a list of :class:`Layer` ``(W, b, Wt)`` made by :func:`layers_of`: W ``(S, out,
in)`` for S members stacked on a leading axis (seeds, learners), or ``(out, in)`` for one
model; b ``(S, out)``, ``(out,)`` or None; Wt the transposed view of W. A
member's input is ``(S, B, in)``; an input ``(B, in)`` is shared by every member. Writing the
passes out instead of using autograd avoids autograd's per-op bookkeeping, which dominates a
step of nets this small; the tests check every pass against autograd.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from awbench.activations import ACTIVATIONS, Activation
from awbench.nn.losses import LogitHessian, check_loss, logit_derivatives, mse_error
from awbench.nn.mlp import MLP


class Layer(NamedTuple):
    W: torch.Tensor
    b: torch.Tensor | None
    # made once per set of weights: at these sizes a transpose per call costs about as much
    # as the product it feeds
    Wt: torch.Tensor


Layers = Sequence[Layer]


def layers_of(pairs: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> list[Layer]:
    """:class:`Layer` per ``(W, b)``; W and b are used as they are (views stay views)."""
    return [Layer(W, b, W.transpose(-1, -2)) for W, b in pairs]


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # bmm directly: matmul's shape dispatch costs as much as the product at these sizes
    return torch.bmm(a, b) if a.dim() == 3 and b.dim() == 3 else a @ b


def linear(h: torch.Tensor, layer: Layer) -> torch.Tensor:
    """``h Wᵀ + b``, per member when W is stacked."""
    W, b, Wt = layer
    if W.dim() == 2:
        return h @ Wt if b is None else torch.addmm(b, h, Wt)
    if b is None:
        # a shared 2-D input broadcasts over the members (matmul), a stacked one is a bmm
        return torch.bmm(h, Wt) if h.dim() == 3 else torch.matmul(h, Wt)
    if h.dim() == 2:
        h = h.expand(W.shape[0], *h.shape)
    return torch.baddbmm(b.unsqueeze(1), h, Wt)


def dropout_mask(
    shape: Sequence[int],
    p: float,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Inverted-dropout mask, as nn.Dropout draws it: 0 where ``u < p``, else ``1/(1-p)``."""
    keep = torch.rand(tuple(shape), generator=generator, device=device, dtype=dtype)
    return (keep >= p).to(dtype) / (1.0 - p)


@dataclass
class ForwardPass:
    """What a forward pass keeps for the backward pass."""

    inputs: list[torch.Tensor]  # the input of every layer (dropout applied)
    pre: list[torch.Tensor]  # z of every hidden layer
    post: list[torch.Tensor]  # f(z) of every hidden layer, before dropout
    mask: torch.Tensor | None  # the dropout mask after the first hidden layer
    logits: torch.Tensor


def forward(
    layers: Layers, x: torch.Tensor, act: Activation, mask: torch.Tensor | None = None
) -> ForwardPass:
    """The forward pass, dropout ``mask`` (or none) after the first hidden layer."""
    inputs, pre, post = [], [], []
    h, last = x, len(layers) - 1
    for i, layer in enumerate(layers):
        inputs.append(h)
        z = linear(h, layer)
        if i == last:
            break
        h = act.fn(z)
        pre.append(z)
        post.append(h)
        if i == 0 and mask is not None:
            h = h * mask
    return ForwardPass(inputs, pre, post, mask, z)


def logits(layers: Layers, x: torch.Tensor, act: Activation) -> torch.Tensor:
    """Eval-mode logits (no dropout), keeping nothing for a backward pass."""
    h, last = x, len(layers) - 1
    for i, layer in enumerate(layers):
        h = linear(h, layer)
        if i < last:
            h = act.fn(h)
    return h


def cross_entropy_error(
    logits: torch.Tensor,
    onehot: torch.Tensor,
    divisor: float | torch.Tensor,
    valid: torch.Tensor | None = None,
    loss_sum: torch.Tensor | None = None,
) -> torch.Tensor:
    """d loss / d logits of the summed cross-entropy divided by ``divisor``.

    ``divisor`` is the batch size for the mean loss, or a tensor broadcasting against the
    logits (one divisor per member). ``valid`` (same shape as the logits without the class
    axis) drops padded samples from the sum. ``loss_sum`` (one entry per member, or a
    scalar) gets the summed cross-entropy added.
    """
    if loss_sum is None:
        dz = torch.softmax(logits, dim=-1)
    else:
        # log_softmax, not log(softmax): a blown-up net's softmax underflows to 0 and would
        # hide how large the loss is; its exp is the softmax, so the loss costs two ops
        logp = torch.log_softmax(logits, dim=-1)
        picked = logp * onehot if valid is None else logp * (onehot * valid.unsqueeze(-1))
        loss_sum.sub_(picked.sum((-2, -1)) if loss_sum.dim() else picked.sum())
        dz = logp.exp_()
    dz -= onehot
    if valid is not None:
        dz *= valid.unsqueeze(-1).to(dz.dtype)
    dz /= divisor
    return dz


def loss_error(loss: str):
    """The ``dL/dlogits`` function of ``loss`` ("ce" or "mse"), both with the arguments of
    :func:`cross_entropy_error`."""
    return cross_entropy_error if check_loss(loss) == "ce" else mse_error


def errors(
    layers: Layers, fp: ForwardPass, dz: torch.Tensor, act: Activation, lowest: int = 0
) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
    """Backpropagate ``dz = dL/dlogits`` down to layer ``lowest``.

    Returns ``(delta, back)``: ``delta[i] = dL/dz_i`` for every layer i >= lowest and
    ``back[i] = dL/df(z_i)`` for every hidden layer i >= lowest (dropout's mask applied);
    None below ``lowest``.
    """
    L = len(layers)
    delta: list[torch.Tensor | None] = [None] * L
    back: list[torch.Tensor | None] = [None] * (L - 1)
    delta[L - 1] = dz
    for i in range(L - 1, lowest, -1):
        dh = _mm(dz, layers[i][0])
        if i == 1 and fp.mask is not None:
            dh *= fp.mask
        back[i - 1] = dh
        dz = dh * act.first(fp.pre[i - 1], fp.post[i - 1])
        delta[i - 1] = dz
    return delta, back


def gradients(
    layers: Layers, fp: ForwardPass, dz: torch.Tensor, act: Activation
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(dL/dW, dL/db or None)`` of every layer, from ``dz = dL/dlogits``."""
    delta, _ = errors(layers, fp, dz, act)
    return [
        (_mm(e.transpose(-1, -2), a), None if b is None else e.sum(-2))
        for (_, b, _), e, a in zip(layers, delta, fp.inputs)
    ]


# -- one nn.Module MLP --------------------------------------------------------------------------


def mlp_layers(model: MLP) -> list[Layer]:
    """``model``'s layers fc1..fcL (the tensors themselves, not copies)."""
    return layers_of((getattr(model, n).weight, getattr(model, n).bias) for n in model.layer_names)


def activation_of(model: MLP) -> Activation:
    return ACTIVATIONS[model.activation]


def mlp_gradients(
    model: MLP,
    x: torch.Tensor,
    y: torch.Tensor,
    dropout_gen: torch.Generator | None = None,
    loss: str = "ce",
) -> list[torch.Tensor]:
    """Gradients of the mean loss ("ce" or "mse") w.r.t. ``model.parameters()``, in order.

    In train mode with dropout the mask is drawn from ``dropout_gen`` (as nn.Dropout would).
    """
    layers, act = mlp_layers(model), activation_of(model)
    p = model.dropout_p if model.training else 0.0
    mask = None
    if p > 0:
        width = layers[0][0].shape[0]
        mask = dropout_mask((len(x), width), p, dropout_gen, x.dtype, x.device)
    fp = forward(layers, x, act, mask)
    onehot = torch.nn.functional.one_hot(y, fp.logits.shape[-1]).to(x.dtype)
    grads = gradients(layers, fp, loss_error(loss)(fp.logits, onehot, float(len(y))), act)
    return [g for gW, gb in grads for g in ((gW,) if gb is None else (gW, gb))]


@torch.no_grad()
def output_hessians(
    layers: Layers,
    x: torch.Tensor,
    y: torch.Tensor,
    act: Activation,
    depth: int,
    loss: str = "ce",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample Hessians of the loss w.r.t. layer ``depth``'s output, and its input.

    One model (2-D W). Second-order backpropagation from the logits' Hessian (cross-entropy:
    diag(p) - p pᵀ; MSE: :func:`awbench.nn.losses.logit_derivatives`) down to
    z_i = W_i h_{i-1} + b_i:
    G_i = D_i W_{i+1}ᵀ G_{i+1} W_{i+1} D_i + diag(f''(z_i) * (W_{i+1}ᵀ g_{i+1})), with
    D_i = diag(f'(z_i)) and g the per-sample loss gradient. A handful of batched GEMMs
    instead of one double-backward pass per output unit.
    """
    fp = forward(layers, x, act)
    if check_loss(loss) == "ce":
        p = torch.softmax(fp.logits, dim=1)
        g = p.clone()
        g[torch.arange(len(y), device=y.device), y] -= 1.0
        G = None  # diag(p) - p pᵀ at the logits, kept implicit until the first step down
    else:
        g, G = logit_derivatives(loss, fp.logits, y)
    for i in range(len(layers) - 2, depth - 1, -1):
        W = layers[i + 1][0]
        back = g @ W  # dL/dh_i
        d1, d2 = act.derivatives(fp.pre[i], fp.post[i])
        if G is None:
            # Wᵀ (diag(p) - p pᵀ) W = sum_m p_m w_m w_mᵀ - (Wᵀ p)(Wᵀ p)ᵀ: one GEMM and a
            # batched rank-one update, no (N, C, C) intermediate
            n = W.shape[1]
            Wp = p @ W
            G = (p @ (W[:, :, None] * W[:, None, :]).reshape(len(W), n * n)).reshape(-1, n, n)
            G.baddbmm_(Wp[:, :, None], Wp[:, None, :], alpha=-1.0)
        else:
            G = W.T @ G @ W
        G.mul_(d1[:, :, None]).mul_(d1[:, None, :])
        if d2 is not None:
            G.diagonal(dim1=1, dim2=2).add_(back * d2)
        g = back * d1
    if G is None:
        G = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return G, fp.inputs[depth]


class OutputCurvature:
    """Products ``G_k u_k`` with the per-sample Hessians of the loss w.r.t. layer ``depth``'s
    output, never forming the G_k (:func:`output_hessians` forms them), for one model (2-D W).

    One forward pass and its first-order errors are kept; a product is an R-operator pass:
    the tangent t_{i+1} = W_{i+1} (f'(z_i) * t_i) up to the logits, the logits' Hessian, then
    down again by G_i t_i = D_i W_{i+1}^T (G_{i+1} t_{i+1}) + f''(z_i) * (W_{i+1}^T g_{i+1}) * t_i
    (the recursion of :func:`output_hessians`, applied to a vector). ``inputs`` is the
    layer's input a_k, ``output_gradient`` the per-sample dl_k/dz_k.
    """

    @torch.no_grad()
    def __init__(
        self,
        layers: Layers,
        x: torch.Tensor,
        y: torch.Tensor,
        act: Activation,
        depth: int,
        loss="ce",
    ):
        fp = forward(layers, x, act)
        self.logit_hessian = LogitHessian(loss, fp.logits, y)
        g = self.logit_hessian.gradient
        self.layers, self.depth = layers, depth
        self.d1, self.d2, self.back = {}, {}, {}
        for i in range(len(layers) - 2, depth - 1, -1):
            back = g @ layers[i + 1][0]  # W^T g_{i+1}, dL/dh_i
            d1, d2 = act.derivatives(fp.pre[i], fp.post[i])
            self.d1[i], self.d2[i], self.back[i] = d1, d2, back
            g = back * d1
        self.output_gradient = g
        self.inputs = fp.inputs[depth]

    @torch.no_grad()
    def products(self, u: torch.Tensor) -> torch.Tensor:
        """(N, n_out) G_k u_k for one row u_k of ``u`` per sample."""
        top = len(self.layers) - 1
        tangents = {self.depth: u}
        for i in range(self.depth, top):
            tangents[i + 1] = (self.d1[i] * tangents[i]) @ self.layers[i + 1][2]
        r = self.logit_hessian.products(tangents[top])  # closed form: no (N, C, C) stack
        for i in range(top - 1, self.depth - 1, -1):
            r = (r @ self.layers[i + 1][0]) * self.d1[i]
            if self.d2[i] is not None:
                r += self.d2[i] * self.back[i] * tangents[i]
        return r
