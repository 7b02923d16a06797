"""Closed-form real irreps of cyclic, dihedral and quaternion groups, and of direct products.

Names follow Chughtai et al. (2023, code ``rep_theory``): cyclic ``freq_k`` is the 2-dim rotation
by 2πk/n (the real form of the complex pair e^{±2πikx/n}), plus ``sign`` for even n; dihedral
``sign`` (r ↦ 1, s ↦ −1), for even n also ``sign_r`` (r ↦ −1, s ↦ 1) and ``sign_rs``
(r ↦ −1, s ↦ −1), and ``freq_k`` (r ↦ rotation by 2πk/n, s ↦ diag(1, −1)), k = 1..⌊(n−1)/2⌋.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mi_margin.groups.decompose import split_representation
from mi_margin.groups.irrep import Irrep, letter_suffix, make_irrep, sort_irreps

if TYPE_CHECKING:
    from mi_margin.groups.group import FiniteGroup


def _rotations(theta: np.ndarray) -> np.ndarray:
    """float64 [N, 2, 2] rotation matrices by the angles ``theta``."""
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _one_dim(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)


def cyclic_irreps(G: FiniteGroup) -> list[Irrep]:
    """Irreps of C_n (element x ↦ rotation by 2πkx/n)."""
    n = G.order
    x = np.arange(n)
    out = [make_irrep(G, "trivial", np.ones((n, 1, 1)))]
    if n % 2 == 0:
        out.append(make_irrep(G, "sign", _one_dim((-1.0) ** x)))
    for k in range(1, (n - 1) // 2 + 1):
        out.append(make_irrep(G, f"freq_{k}", _rotations(2 * np.pi * k * x / n)))
    return sort_irreps(out)


def dihedral_irreps(G: FiniteGroup) -> list[Irrep]:
    """Irreps of D_n with element r^i s^j numbered i + n·j."""
    n = G.order // 2
    i, j = np.arange(2 * n) % n, np.arange(2 * n) // n
    out = [make_irrep(G, "trivial", np.ones((2 * n, 1, 1))),
           make_irrep(G, "sign", _one_dim((-1.0) ** j))]
    if n % 2 == 0:
        out.append(make_irrep(G, "sign_r", _one_dim((-1.0) ** i)))
        out.append(make_irrep(G, "sign_rs", _one_dim((-1.0) ** (i + j))))
    flip = np.array([np.eye(2), np.diag([1.0, -1.0])])[j]
    for k in range(1, (n - 1) // 2 + 1):
        out.append(make_irrep(G, f"freq_{k}", _rotations(2 * np.pi * k * i / n) @ flip))
    return sort_irreps(out)


def quaternion_units() -> np.ndarray:
    """float64 [8, 4]: Q8 element 2u + t is (−1)^t times the unit u ∈ (1, i, j, k) of H."""
    units = np.repeat(np.eye(4), 2, axis=0)
    units[1::2] *= -1
    return units


def hamilton_left(q: np.ndarray) -> np.ndarray:
    """float64 [..., 4, 4]: the matrix of x ↦ q·x on H = R⁴ (basis 1, i, j, k)."""
    a, b, c, d = np.moveaxis(q, -1, 0)
    return np.stack([np.stack([a, -b, -c, -d], -1), np.stack([b, a, -d, c], -1),
                     np.stack([c, d, a, -b], -1), np.stack([d, -c, b, a], -1)], -2)


def quaternion_irreps(G: FiniteGroup) -> list[Irrep]:
    """Irreps of Q8: trivial, ``sign_i/j/k`` (trivial on ⟨i⟩/⟨j⟩/⟨k⟩, −1 elsewhere), and
    ``dim4``: left multiplication on H = R⁴, the quaternionic 2-dim complex irrep in real form."""
    unit = np.arange(8) // 2  # 0: ±1, 1: ±i, 2: ±j, 3: ±k
    out = [make_irrep(G, "trivial", np.ones((8, 1, 1)))]
    for u, letter in zip((1, 2, 3), "ijk", strict=True):
        out.append(make_irrep(G, f"sign_{letter}", _one_dim(np.where((unit == 0) | (unit == u), 1.0, -1.0))))
    out.append(make_irrep(G, "dim4", hamilton_left(quaternion_units()), aliases=("quaternion",)))
    return sort_irreps(out)


def product_irreps(G: FiniteGroup, factors: Sequence[FiniteGroup]) -> list[Irrep]:
    """Irreps of G = G1 × … × Gk (element (g1, …, gk) numbered in mixed radix, g1 slowest).

    Each tuple of factor irreps gives the Kronecker product ρ1(g1) ⊗ … ⊗ ρk(gk). It is irreducible
    over R when at most one factor is of non-real type (the Frobenius–Schur type is multiplicative
    and a real-type factor keeps the commutant). Otherwise (e.g. complex ⊗ complex = two complex
    irreps, quaternionic ⊗ quaternionic = 4 copies of a real one) it is split with
    :func:`~mi_margin.groups.decompose.split_representation` and the pieces are named
    ``name[a]``, ``name[b]``, ... Names join factor names with ``*`` (``trivial*sign``); the
    all-trivial product is ``trivial``.
    """
    out: list[Irrep] = []
    for combo in itertools.product(*(H.irreps() for H in factors)):
        mats = combo[0].matrices
        for rho in combo[1:]:
            n_a, da = mats.shape[:2]
            n_b, db = rho.matrices.shape[:2]
            mats = np.einsum("gab,hcd->ghacbd", mats, rho.matrices).reshape(
                n_a * n_b, da * db, da * db)
        names = [rho.name for rho in combo]
        name = "trivial" if all(x == "trivial" for x in names) else "*".join(names)
        if sum(rho.kind != "real" for rho in combo) <= 1:
            out.append(make_irrep(G, name, mats))
            continue
        pieces = split_representation(G, mats)
        if len(pieces) == 1:
            out.append(make_irrep(G, name, pieces[0]))
            continue
        for i, m in enumerate(pieces):
            out.append(make_irrep(G, f"{name}[{letter_suffix(i)}]", m))
    return sort_irreps(out)
