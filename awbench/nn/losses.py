"""The two training losses, their per-sample values and exact logit derivatives, written once.

``"ce"`` is cross-entropy of the logits; ``"mse"`` is the squared error of the softmax
probabilities against the one-hot label, averaged over the C classes (what ``nn.MSELoss()``
of ``softmax(z)`` and the one-hot label gives per sample):

    l_ce(z, y)  = -log p_y,                p = softmax(z)
    l_mse(z, y) = (1/C) sum_c (p_c - e_c)^2,  e the one-hot label

Derivatives with respect to the logits z (docs/science.md#11-sgd-noise-against-curvature):
with J = diag(p) - p p^T (the softmax Jacobian, symmetric), r = p - e, q = (2/C) r * p and
s = sum_c q_c,

    ce:  g = p - e                     G = J
    mse: g = J (2/C) r = q - s p       G = (2/C) J J + diag(g) - q p^T - p q^T + 2 s p p^T

The engine's trainers and second-order passes, the analysis's per-pair losses and the noise
analysis read them from here; the tests check every formula against autograd in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "mse")


def check_loss(loss) -> str:
    """``loss`` when it is one of LOSSES, else ValueError naming it and the allowed values."""
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(
            f"loss={loss!r} is not allowed: expected one of "
            + ", ".join(repr(n) for n in LOSSES)
            + " (cross-entropy of the logits, or squared error of the softmax)"
        )
    return loss


def per_sample_loss(loss: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) losses of (N, C) logits against labels y; differentiable (autograd)."""
    if check_loss(loss) == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    # a comparison, not F.one_hot: it works under torch.func.vmap too
    classes = torch.arange(logits.shape[-1], device=logits.device)
    onehot = (classes == y.unsqueeze(-1)).to(logits.dtype)
    return (torch.softmax(logits, dim=-1) - onehot).pow(2).mean(-1)


def summed_loss(loss: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The sum over samples of :func:`per_sample_loss` (a scalar, differentiable)."""
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="sum")
    return per_sample_loss(loss, logits, y).sum()


def _mse_parts(p: torch.Tensor, onehot: torch.Tensor):
    """(g, q, s) of the MSE at probabilities p: q = (2/C)(p - e) p, s = sum q, g = q - s p."""
    q = (p - onehot).mul_(p).mul_(2.0 / p.shape[-1])
    s = q.sum(-1, keepdim=True)
    return q - s * p, q, s


@torch.no_grad()
def logit_derivatives(
    loss: str, logits: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample gradient (N, C) and Hessian (N, C, C) of the loss w.r.t. the logits."""
    p = torch.softmax(logits, dim=-1)
    onehot = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    J = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    if loss == "ce":
        return p - onehot, J
    check_loss(loss)
    g, q, s = _mse_parts(p, onehot)
    G = torch.bmm(J, J).mul_(2.0 / p.shape[-1])
    G += torch.diag_embed(g)
    G -= q[:, :, None] * p[:, None, :] + p[:, :, None] * q[:, None, :]
    G += (2.0 * s[:, :, None]) * (p[:, :, None] * p[:, None, :])
    return g, G


class LogitHessian:
    """Products ``G_k u_k`` with every sample's loss Hessian in the logits (the G of the
    module docstring), for (N, C) logits and labels, without forming the (N, C, C) stack:
    O(N C) per product instead of O(N C^2)."""

    @torch.no_grad()
    def __init__(self, loss: str, logits: torch.Tensor, y: torch.Tensor):
        self.loss = check_loss(loss)
        self.p = torch.softmax(logits, dim=-1)
        onehot = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
        # gradient: (N, C) per-sample gradients in the logits (the g of the module docstring)
        if self.loss == "mse":
            self.gradient, self.q, self.s = _mse_parts(self.p, onehot)
        else:
            self.gradient = self.p - onehot

    def _jacobian_products(self, u: torch.Tensor) -> torch.Tensor:
        """J u per row, J = diag(p) - p p^T."""
        # one pass less than p u - p (p . u) over the (N, C) rows: these are memory-bound
        pu = self.p * u
        return pu.sub_(self.p * pu.sum(-1, keepdim=True))

    @torch.no_grad()
    def products(self, u: torch.Tensor) -> torch.Tensor:
        """(N, C) rows G_k u_k for (N, C) rows u_k."""
        if self.loss == "ce":
            return self._jacobian_products(u)
        p, q, g, s = self.p, self.q, self.gradient, self.s
        pu = (p * u).sum(-1, keepdim=True)
        qu = (q * u).sum(-1, keepdim=True)
        out = self._jacobian_products(self._jacobian_products(u)).mul_(2.0 / p.shape[-1])
        out += g * u
        out -= q * pu + p * qu
        out += (2.0 * s * pu) * p
        return out


def mse_error(
    logits: torch.Tensor,
    onehot: torch.Tensor,
    divisor: float | torch.Tensor,
    valid: torch.Tensor | None = None,
    loss_sum: torch.Tensor | None = None,
) -> torch.Tensor:
    """d loss / d logits of the summed softmax-MSE divided by ``divisor``; the arguments
    are those of :func:`awbench.nn.engine.cross_entropy_error` (stacked logits included)."""
    p = torch.softmax(logits, dim=-1)
    if loss_sum is not None:
        sq = (p - onehot).pow_(2)
        if valid is not None:
            sq *= valid.unsqueeze(-1).to(sq.dtype)
        total = sq.sum((-2, -1)) if loss_sum.dim() else sq.sum()
        loss_sum.add_(total / p.shape[-1])
    dz, _, _ = _mse_parts(p, onehot)
    if valid is not None:
        dz *= valid.unsqueeze(-1).to(dz.dtype)
    dz /= divisor
    return dz
