"""Irreps of symmetric groups by Young's orthogonal form, and of alternating groups by restriction.

Young's orthogonal form (Young 1931; see Sagan, *The Symmetric Group*, 2nd ed., §3.10, or
James & Kerber 1981, §3.4): for a partition λ of m, the irrep S^λ has an orthonormal basis e_T
indexed by the standard Young tableaux T of shape λ. Write c_T(k) = column − row of the box
holding k in T (its content) and r = c_T(i+1) − c_T(i) (the axial distance). The adjacent
transposition s_i = (i i+1) acts by

    ρ(s_i) e_T = (1/r) e_T + sqrt(1 − 1/r²) e_{s_i T},

where s_i T swaps i and i+1 (a standard tableau whenever |r| ≥ 2; for r = ±1 — same row or same
column — the second term vanishes). Each ρ(s_i) is a symmetric orthogonal involution; the other
elements are products along words in the s_i (:func:`~mi_margin.groups.irrep.extend_homomorphism`).
All S_m irreps are of real type. Names are partitions, ``"(3,1,1)"``, except ``"trivial"`` for
(m); aliases give the exponent form (``"(3,1^2)"``) and Chughtai et al.'s names ``sign``,
``standard`` = (m−1,1) and ``standard_sign`` = (2,1^{m−2}).

For A_m, S^λ and S^{λ'} (λ' the conjugate partition) restrict to the same irrep, irreducible when
λ ≠ λ' (named after the larger of the two); for λ = λ' the restriction splits into two complex
irreps, realized over R either as one complex-type irrep (e.g. (2,2) for A4) or as two real ones
(``"(3,1,1)[a]"``, ``"(3,1,1)[b]"`` for A5), found with
:func:`~mi_margin.groups.decompose.split_representation`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mi_margin.groups.decompose import split_representation
from mi_margin.groups.irrep import Irrep, extend_homomorphism, letter_suffix, make_irrep, sort_irreps

if TYPE_CHECKING:
    from mi_margin.groups.group import FiniteGroup

Shape = tuple[int, ...]


def partitions(m: int) -> list[Shape]:
    """Partitions of m as non-increasing tuples, in decreasing lexicographic order."""
    def rec(rest: int, largest: int) -> list[Shape]:
        if rest == 0:
            return [()]
        return [(k, *tail) for k in range(min(rest, largest), 0, -1) for tail in rec(rest - k, k)]
    return rec(m, m)


def conjugate(shape: Shape) -> Shape:
    """The transposed partition λ' (column lengths of λ)."""
    return tuple(sum(1 for part in shape if part > c) for c in range(shape[0])) if shape else ()


def partition_name(shape: Shape) -> str:
    """``(3,1,1)``."""
    return "(" + ",".join(map(str, shape)) + ")"


def exponent_name(shape: Shape) -> str:
    """``(3,1^2)``: repeated parts written with exponents."""
    parts = []
    for p in sorted(set(shape), reverse=True):
        count = shape.count(p)
        parts.append(f"{p}^{count}" if count > 1 else str(p))
    return "(" + ",".join(parts) + ")"


def standard_tableaux(shape: Shape) -> list[tuple[tuple[int, int], ...]]:
    """All standard Young tableaux of ``shape``, each as the (row, column) box of 0, 1, ..., m−1."""
    m = sum(shape)
    out: list[tuple[tuple[int, int], ...]] = []

    def rec(lengths: list[int], boxes: list[tuple[int, int]]) -> None:
        if len(boxes) == m:
            out.append(tuple(boxes))
            return
        for r, part in enumerate(shape):
            if lengths[r] < part and (r == 0 or lengths[r - 1] > lengths[r]):
                boxes.append((r, lengths[r]))
                lengths[r] += 1
                rec(lengths, boxes)
                lengths[r] -= 1
                boxes.pop()

    rec([0] * len(shape), [])
    return out


def generator_matrices(shape: Shape) -> np.ndarray:
    """float64 [m−1, f, f]: Young's orthogonal form of s_i = (i i+1), i = 0..m−2."""
    tableaux = standard_tableaux(shape)
    index = {t: k for k, t in enumerate(tableaux)}
    m, f = sum(shape), len(tableaux)
    mats = np.zeros((max(m - 1, 0), f, f))
    for i in range(m - 1):
        for k, t in enumerate(tableaux):
            (r0, c0), (r1, c1) = t[i], t[i + 1]
            r = (c1 - r1) - (c0 - r0)
            mats[i, k, k] = 1.0 / r
            if abs(r) >= 2:
                swapped = list(t)
                swapped[i], swapped[i + 1] = t[i + 1], t[i]
                mats[i, index[tuple(swapped)], k] = np.sqrt(1.0 - 1.0 / r**2)
    return mats


def adjacent_word(p: np.ndarray) -> list[int]:
    """Indices i_1..i_k with p = s_{i_1}·…·s_{i_k} (s_i = (i i+1)), by bubble sort.

    Right multiplication by s_i swaps positions i, i+1 of the image array, so sorting p with
    adjacent swaps j_1, …, j_k gives p·s_{j_1}·…·s_{j_k} = e, i.e. p = s_{j_k}·…·s_{j_1}.

    Example:
        >>> adjacent_word(np.array([1, 2, 0]))  # the 3-cycle 0→1→2→0
        [0, 1]
    """
    arr, swaps = p.copy(), []
    for end in range(arr.size - 1, 0, -1):
        for i in range(end):
            if arr[i] > arr[i + 1]:
                arr[i], arr[i + 1] = arr[i + 1], arr[i]
                swaps.append(i)
    return swaps[::-1]


def young_matrices(G: FiniteGroup, shape: Shape) -> np.ndarray:
    """float64 [n, f, f]: ρ_λ restricted to a permutation group G on m = |λ| points.

    The images of G's generators are products of Young's matrices along their adjacent-
    transposition words; the rest follows by :func:`~mi_margin.groups.irrep.extend_homomorphism`.
    """
    perms = _permutations(G)
    gens = generator_matrices(shape)
    f = gens.shape[1]
    images = {}
    for g in G.generators:
        mat = np.eye(f)
        for i in adjacent_word(perms[g]):
            mat = mat @ gens[i]
        images[g] = mat
    return extend_homomorphism(G, images) if images else np.ones((G.order, 1, 1))


def _permutations(G: FiniteGroup) -> np.ndarray:
    if G.permutations is None:
        raise RuntimeError(f"{G.name} carries no permutations")
    return G.permutations


def _aliases(shape: Shape) -> list[str]:
    m = sum(shape)
    out = []
    if m >= 2 and shape == (1,) * m:
        out.append("sign")
    if m >= 3 and shape == (m - 1, 1):
        out.append("standard")
    if m >= 4 and shape == (2,) + (1,) * (m - 2):
        out.append("standard_sign")
    if exponent_name(shape) != partition_name(shape):
        out.append(exponent_name(shape))
    return out


def symmetric_irreps(G: FiniteGroup) -> list[Irrep]:
    """Irreps of S_m (G built by :func:`~mi_margin.groups.symmetric`) by Young's orthogonal form."""
    m = _permutations(G).shape[1]
    out = []
    for shape in partitions(m):
        mats = young_matrices(G, shape)
        if shape == (m,):
            out.append(make_irrep(G, "trivial", mats, aliases=(partition_name(shape),)))
        else:
            out.append(make_irrep(G, partition_name(shape), mats, aliases=_aliases(shape)))
    return sort_irreps(out)


def alternating_irreps(G: FiniteGroup) -> list[Irrep]:
    """Irreps of A_m (G built by :func:`~mi_margin.groups.alternating`): Young's orthogonal form
    restricted to A_m, the restriction of a self-conjugate λ split numerically."""
    m = _permutations(G).shape[1]
    out = []
    for shape in partitions(m):
        conj = conjugate(shape)
        if shape < conj:
            continue
        mats = young_matrices(G, shape)
        aliases = [partition_name(conj)] if conj != shape else []
        if shape == (m,):
            out.append(make_irrep(G, "trivial", mats, aliases=[partition_name(shape), *aliases]))
        elif shape != conj:
            extra = ["standard"] if m >= 4 and shape == (m - 1, 1) else []
            out.append(make_irrep(G, partition_name(shape), mats, aliases=aliases + extra))
        else:
            pieces = split_representation(G, mats)
            for k, piece in enumerate(pieces):
                suffix = f"[{letter_suffix(k)}]" if len(pieces) > 1 else ""
                out.append(make_irrep(G, partition_name(shape) + suffix, piece))
    return sort_irreps(out)
