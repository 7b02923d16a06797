"""Activation functions by name (quadratic and x^d for the margin theory, ReLU/GELU for the rest)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: sup_x d/dx [x Φ(x)] = Φ(√2) + √2 φ(√2), GELU's Lipschitz constant (the derivative's maximum)
GELU_LIPSCHITZ = 0.5 * (1 + math.erf(1.0)) + math.sqrt(2) * math.exp(-1.0) / math.sqrt(2 * math.pi)


def activation(name: str, degree: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The elementwise activation ``name`` (``"power"`` uses ``degree``)."""
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "quadratic":
        return torch.square
    if name == "power":
        d = int(degree or 1)
        return lambda x: x**d
    raise ValueError(f"unknown activation {name!r}")
