"""What the tests of analyze_model on users' own networks share."""

import torch
import torch.nn.functional as F
from torch import nn


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> nn.Module:
    """Full-batch SGD in float64 for ``steps`` steps; the model comes back in eval mode."""
    model = model.double()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()
