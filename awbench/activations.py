"""The one table of activation functions, with their first and second derivatives.

Everything that needs to know an activation reads it here: Config's valid names, the MLP's
module, the training engine's backward pass and the analysis's second-order passes. Adding an
activation is one entry in :data:`ACTIVATIONS`.

The derivatives are written in terms of ``z`` and ``h = f(z)``, whichever is cheaper, because
the forward pass has both at hand. ``second`` is None where f'' is zero almost everywhere
(piecewise-linear activations): the exact dense-Hessian blocks and the Gauss-Newton shortcut
rely on that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Derivative = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_SQRT_2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Activation:
    name: str
    module: type[nn.Module]  # what the MLP holds (exact, no approximation flags)
    fn: Callable[[torch.Tensor], torch.Tensor]
    first: Derivative  # f'(z) from (z, h)
    second: Derivative | None  # f''(z) from (z, h); None: zero almost everywhere

    def derivatives(self, z: torch.Tensor, h: torch.Tensor):
        """``(f'(z), f''(z) or None)``."""
        return self.first(z, h), None if self.second is None else self.second(z, h)


def _gelu_first(z, h):
    return 0.5 * (1.0 + torch.erf(z / _SQRT_2)) + z * torch.exp(-0.5 * z * z) / _SQRT_2PI


def _gelu_second(z, h):
    return torch.exp(-0.5 * z * z) / _SQRT_2PI * (2.0 - z * z)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        # sign(h) is relu's 0/1 derivative mask (h >= 0), one kernel instead of compare + cast
        Activation("relu", nn.ReLU, torch.relu, lambda z, h: torch.sign(h), None),
        Activation(
            "tanh",
            nn.Tanh,
            torch.tanh,
            lambda z, h: 1.0 - h * h,
            lambda z, h: -2.0 * h * (1 - h * h),
        ),
        Activation("gelu", nn.GELU, F.gelu, _gelu_first, _gelu_second),
        Activation(
            "elu",
            nn.ELU,
            F.elu,
            lambda z, h: torch.where(z > 0, 1.0, h + 1.0),
            lambda z, h: torch.where(z > 0, 0.0, h + 1.0),
        ),
        Activation(
            "sigmoid",
            nn.Sigmoid,
            torch.sigmoid,
            lambda z, h: h * (1.0 - h),
            lambda z, h: h * (1.0 - h) * (1.0 - 2.0 * h),
        ),
    )
}
