"""The complex character table, recovered from the real irreps.

A real-type irrep contributes its character; a quaternionic one contributes χ_V / 2. A complex-type
real irrep V (dimension 2m) carries a complex structure J (J² = −I) in its commutant; J is found by
averaging: A = (1/|G|) Σ_g ρ(g) X ρ(g)ᵀ for an antisymmetric X is an antisymmetric element of the
commutant span{I, J}, hence a multiple of J. On the +i eigenspace of J, ρ acts as a complex irrep π
with χ_π(g) = (tr ρ(g) − i tr(J ρ(g))) / 2; the other row is its conjugate. Rows are named
``name+`` / ``name-``, ``+`` being the one whose first non-real value has positive imaginary part
(for cyclic ``freq_k``, ``freq_k+`` is x ↦ e^{2πikx/n}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mi_margin.groups.irrep import Irrep

if TYPE_CHECKING:
    from mi_margin.groups.group import FiniteGroup


@dataclass(frozen=True, eq=False)
class CharacterTable:
    """Complex character table of a finite group.

    Attributes:
        values: complex128 [K, K]; ``values[i, c]`` = χ_i(g) for g in conjugacy class c. Rows are
            the complex irreps (in the order of ``G.irreps()``, a complex pair as two adjacent
            rows), columns the classes (in the order of ``G.conjugacy_classes``).
        irrep_names: K row names; ``name`` for real and quaternionic types, ``name+``/``name-``
            for the two rows of a complex-type real irrep.
        real_irreps: K names of the real irrep (in ``G.irreps()``) each row comes from.
        dims: int64 [K], complex dimensions χ_i(e).
        class_sizes: int64 [K].
        class_representatives: int64 [K], one element per class.
        class_labels: labels of the representatives.

    Orthogonality: Σ_c |C_c| χ_i(c) conj(χ_j(c)) = |G| δ_ij (rows) and
    Σ_i χ_i(c) conj(χ_i(c')) = (|G| / |C_c|) δ_cc' (columns).

    Example:
        >>> from mi_margin.groups import cyclic
        >>> ct = cyclic(3).character_table()
        >>> ct.irrep_names, ct.values.shape
        (['trivial', 'freq_1+', 'freq_1-'], (3, 3))
    """

    values: np.ndarray = field(repr=False)
    irrep_names: list[str]
    real_irreps: list[str] = field(repr=False)
    dims: np.ndarray = field(repr=False)
    class_sizes: np.ndarray = field(repr=False)
    class_representatives: np.ndarray = field(repr=False)
    class_labels: list[str] = field(repr=False)

    def format(self, digits: int = 3) -> str:
        """A plain-text table (rows irreps, columns classes headed by representative and size)."""
        head = ["", *(f"{lab} [{s}]" for lab, s in zip(self.class_labels, self.class_sizes,
                                                      strict=True))]
        rows = [head]
        for name, row in zip(self.irrep_names, self.values, strict=True):
            cells = []
            for z in row:
                re_, im = round(z.real, digits) + 0.0, round(z.imag, digits) + 0.0
                cells.append(f"{re_:g}" if im == 0 else f"{re_:g}{im:+g}i")
            rows.append([name, *cells])
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True))
                         for r in rows)


def complex_structure(rho: Irrep) -> np.ndarray:
    """J [d, d] with J² = −I commuting with ρ (complex-type irreps only)."""
    d = rho.dim
    for a in range(d):
        for b in range(a + 1, d):
            x = np.zeros((d, d))
            x[a, b], x[b, a] = 1.0, -1.0
            j = np.einsum("gab,bc,gdc->ad", rho.matrices, x, rho.matrices, optimize=True)
            scale = -np.trace(j @ j) / d
            if scale > 1e-12:
                return j / np.sqrt(scale)
    raise RuntimeError(f"irrep {rho.name!r} has no complex structure (is it of complex type?)")


def _complex_rows(G: FiniteGroup, rho: Irrep) -> list[tuple[str, np.ndarray]]:
    reps = G.class_representatives
    chi = rho.character[reps].astype(np.complex128)
    if rho.kind == "real":
        return [(rho.name, chi)]
    if rho.kind == "quaternionic":
        return [(rho.name, chi / 2)]
    j = complex_structure(rho)
    plus = (chi - 1j * np.einsum("ab,kba->k", j, rho.matrices[reps])) / 2
    first = np.flatnonzero(np.abs(plus.imag) > 1e-9)[0]
    if plus.imag[first] < 0:
        plus = plus.conj()
    return [(rho.name + "+", plus), (rho.name + "-", plus.conj())]


def character_table(G: FiniteGroup) -> CharacterTable:
    """The complex character table of G from ``G.irreps()`` (see :class:`CharacterTable`)."""
    rows = [(name, row, rho.name) for rho in G.irreps() for name, row in _complex_rows(G, rho)]
    values = np.array([r for _, r, _ in rows])
    values.setflags(write=False)
    return CharacterTable(
        values=values,
        irrep_names=[name for name, _, _ in rows],
        real_irreps=[real for _, _, real in rows],
        dims=np.rint(values[:, 0].real).astype(np.int64),
        class_sizes=G.class_sizes,
        class_representatives=G.class_representatives,
        class_labels=[G.labels[int(g)] for g in G.class_representatives],
    )
