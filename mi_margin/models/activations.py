"""Activation functions by name (quadratic and x^d for the margin theory, ReLU/GELU for the rest)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


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
