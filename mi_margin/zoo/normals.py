"""A rebuild of a model's seeded initialisation that every CPU computes bit for bit.

``torch.randn`` on the CPU turns the generator's uniforms into normals by Box–Muller (torch's
``normal_fill``), but the logarithm, sine and cosine it uses depend on the CPU: float32 tensors of
16 or more entries take an AVX2 kernel on x86-64 with AVX2 or AVX-512 and a scalar one (with
another rounding of the angle) on SSE4.2-only x86-64 and on aarch64, and the float64 path calls the
C library's ``log``/``sin``/``cos``. The uniforms themselves are exact (a 24- or 53-bit integer
times a power of two) and identical everywhere.

:func:`portable_init` builds the model inside :class:`PortableNormals`, a torch function mode that
computes each ``torch.randn`` from the same uniforms with the same Box–Muller steps, emulating the
AVX2 kernel's float32 roundings, but with a logarithm and a sine/cosine written with IEEE-754 basic
operations only (+, −, ×, ÷, √ and exact scalings by powers of two, each correctly rounded by every
conforming CPU, applied one numpy operation at a time so that no compiler fuses them). The result
is the same bits on every CPU. It is within a few units in the last place of what torch's own
kernels give (``tests/zoo/test_zoo_init.py`` measures it), which is what lets the zoo store an
initialisation as a small correction to it (:mod:`mi_margin.zoo.init`). Tensors under 16 entries
(torch's serial path) advance the generator exactly as torch does and are rebuilt as zeros: their
correction is their full value.

Example:
    >>> import torch
    >>> with PortableNormals():
    ...     x = torch.randn((4, 8), generator=torch.Generator().manual_seed(0))
    >>> y = torch.randn((4, 8), generator=torch.Generator().manual_seed(0))
    >>> bool((x - y).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from mi_margin.models.io import build_model

#: torch's normal_fill works on blocks of 16: u1 from the first 8 uniforms, u2 from the last 8
BLOCK = 16


def _constant(value: Decimal) -> tuple[float, float]:
    """(hi, lo): ``hi`` is ``value`` with 50 significant bits, so that ``hi * q`` is exact for
    |q| ≤ 8, and ``lo`` the rest rounded to double (Cody–Waite splitting)."""
    mantissa, exponent = math.frexp(float(value))
    hi = math.ldexp(math.floor(math.ldexp(mantissa, 50)), exponent - 50)
    return hi, float(value - Decimal(hi))


with localcontext() as _ctx:
    _ctx.prec = 50
    LN2_HI, LN2_LO = _constant(Decimal(2).ln())
    # π/2 to 50 digits (a mathematical constant, not a measured number)
    PIO2_HI, PIO2_LO = _constant(Decimal("3.1415926535897932384626433832795028841971693993751") / 2)
SQRT_HALF = math.sqrt(0.5)
#: 2·atanh(s) = 2 Σ s^(2i+1)/(2i+1); |s| ≤ 3 − 2√2 < 0.172 after reduction, s^24/25 < 1e-19
ATANH = [1 / (2 * i + 1) for i in range(12)]
#: Taylor coefficients of sin and cos on |r| ≤ π/4: (π/4)^24/24! < 1e-26
SIN = [(-1) ** i / math.factorial(2 * i + 1) for i in range(12)]
COS = [(-1) ** i / math.factorial(2 * i) for i in range(13)]


def _horner(coefficients: list[float], z: np.ndarray) -> np.ndarray:
    out = np.full_like(z, coefficients[-1])
    for c in coefficients[-2::-1]:
        out = out * z + c
    return out


def log(x: np.ndarray) -> np.ndarray:
    """Natural logarithm of float64 ``x`` > 0 from basic operations: x = m·2^e with
    m ∈ [√½, √2), log x = e·ln 2 + 2·atanh((m−1)/(m+1))."""
    m, e = np.frexp(x)
    low = m < SQRT_HALF
    m, e = np.where(low, m * 2, m), np.where(low, e - 1, e).astype(np.float64)
    s = (m - 1) / (m + 1)
    return e * LN2_HI + (2 * s * _horner(ATANH, s * s) + e * LN2_LO)


def sincos(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sin θ, cos θ) of float64 θ ∈ [0, 2π] from basic operations: θ = q·π/2 + r, |r| ≤ π/4."""
    q = np.rint(theta / (PIO2_HI + PIO2_LO))
    r = (theta - q * PIO2_HI) - q * PIO2_LO
    z = r * r
    s, c = r * _horner(SIN, z), _horner(COS, z)
    quadrant = q.astype(np.int64) % 4
    sin = np.choose(quadrant, [s, c, -s, -c])
    cos = np.choose(quadrant, [c, -s, -c, s])
    return sin, cos


def _f32(x: np.ndarray) -> np.ndarray:
    """Round to float32 (to nearest, as the AVX2 kernel's every operation does), kept in float64."""
    return x.astype(np.float32).astype(np.float64)


def box_muller(uniforms: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """torch's ``normal_fill`` on blocks of 16 uniforms: u1 = 1 − first 8, u2 = last 8, out =
    (r cos θ, r sin θ) with r = √(−2 log u1), θ = 2π u2 (float32: every step rounded to float32
    and 2π taken in float32, as in the AVX2 kernel)."""
    u = uniforms.astype(np.float64).reshape(-1, BLOCK)
    u1, u2 = 1.0 - u[:, :BLOCK // 2], u[:, BLOCK // 2:]
    if dtype == torch.float32:
        radius = _f32(np.sqrt(_f32(-2.0 * _f32(log(u1)))))
        sin, cos = sincos(_f32(float(np.float32(2 * math.pi)) * u2))
        out = np.concatenate([radius * _f32(cos), radius * _f32(sin)], axis=1)
        return out.reshape(-1).astype(np.float32)
    radius = np.sqrt(-2.0 * log(u1))
    sin, cos = sincos((2 * math.pi) * u2)
    return np.concatenate([radius * cos, radius * sin], axis=1).reshape(-1)


def randn(size: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    """``torch.randn(size, generator=generator, dtype=dtype)`` computed portably (module
    docstring), consuming the generator exactly as torch does."""
    n = math.prod(size)
    if n < BLOCK or dtype not in (torch.float32, torch.float64):
        torch.randn(size, generator=generator, dtype=dtype)        # torch's serial path's draws
        return torch.zeros(size, dtype=dtype)
    uniforms = torch.rand(n, generator=generator, dtype=dtype).numpy()
    out = np.empty(n, dtype=uniforms.dtype)
    whole = n // BLOCK * BLOCK
    out[:whole] = box_muller(uniforms[:whole], dtype)
    if n % BLOCK:                    # torch redraws the last 16 uniforms and recomputes them
        out[n - BLOCK:] = box_muller(torch.rand(BLOCK, generator=generator, dtype=dtype).numpy(), dtype)
    return torch.from_numpy(out).reshape(size)


class PortableNormals(TorchFunctionMode):
    """Inside this mode ``torch.randn`` is :func:`randn` (the portable rebuild); everything else
    is torch's own."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is not torch.randn:
            return func(*args, **kwargs)
        size = tuple(args[0]) if len(args) == 1 and not isinstance(args[0], int) else tuple(args)
        return randn(size, kwargs.get("generator"), kwargs.get("dtype") or torch.get_default_dtype())


def portable_init(cfg_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of the model ``cfg_dict`` builds, with every ``torch.randn`` of its
    initialisation rebuilt portably: the same bits on every CPU."""
    with PortableNormals():
        model = build_model(cfg_dict)
    return {name: value.detach().clone() for name, value in model.state_dict().items()}
