"""The MLP of the paper's demo: Linear layers fc1..fcL, dropout after the first hidden layer."""

from __future__ import annotations

import copy

import torch
from torch import nn

from awbench.activations import ACTIVATIONS
from awbench.config import Config


class MLP(nn.Module):
    """``n_in -> widths... -> n_out`` with Linear layers as attributes ``fc1, fc2, ...``.

    Dropout sits after the first hidden activation, as in the authors' demo.
    """

    def __init__(
        self,
        n_in: int,
        widths: tuple[int, ...],
        n_out: int,
        activation: str = "relu",
        bias: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        sizes = (n_in, *widths, n_out)
        self.n_layers = len(sizes) - 1
        for i in range(self.n_layers):
            setattr(self, f"fc{i + 1}", nn.Linear(sizes[i], sizes[i + 1], bias=bias))
        self.activation = activation
        self.dropout_p = float(dropout)
        self.act = ACTIVATIONS[activation].module()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def layer_names(self) -> list[str]:
        return [f"fc{i + 1}" for i in range(self.n_layers)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i in range(1, self.n_layers):
            h = self.act(getattr(self, f"fc{i}")(h))
            if i == 1:
                h = self.drop(h)
        return getattr(self, f"fc{self.n_layers}")(h)


def build_model(cfg: Config, n_in: int, n_out: int) -> MLP:
    """Model for ``cfg`` with framework-default init drawn from ``cfg.seed``, then scaled."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    try:
        model = MLP(n_in, cfg.widths, n_out, cfg.activation, cfg.bias, cfg.dropout)
    finally:
        torch.random.set_rng_state(gen_state)
    with torch.no_grad():
        for layer in model.layer_names:
            getattr(model, layer).weight.mul_(cfg.init_scale)
    return model.to(dtype=getattr(torch, cfg.dtype), device=cfg.resolved_device())


def float64_model(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy of ``model`` (the duality is checked in float64)."""
    return copy.deepcopy(model).double().eval()
