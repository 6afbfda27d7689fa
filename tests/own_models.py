"""What the tests of the analysis on MLPs and on users' own networks share."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> nn.Module:
    """Full-batch SGD in float64 for ``steps`` steps; the model comes back in eval mode."""
    model = model.double()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def dense_reference_hessian(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor):
    """Hessian of the mean cross-entropy w.r.t. ``layer``'s weight by torch.func.hessian."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    W = params[f"{layer}.weight"]

    def loss(w):
        p = dict(params)
        p[f"{layer}.weight"] = w.view_as(W)
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    return hessian(loss)(W.flatten())
