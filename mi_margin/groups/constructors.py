"""Constructors of finite groups: cyclic, dihedral, symmetric, alternating, Q8, products, custom.

Element numbering conventions (documented because tasks and analyses index by them):

- ``cyclic(n)``: x ∈ Z_n is element x; a·b = (a + b) mod n.
- ``dihedral(n)``: symmetries of the regular n-gon, order 2n; r^i s^j ↦ i + n·j (i < n, j ∈ {0, 1}),
  with s r s = r⁻¹, so (r^a s^j)(r^b s^k) = r^{a + (−1)^j b} s^{j+k}.
- ``symmetric(n)`` / ``alternating(n)``: permutations of {0..n−1} (even ones for A_n) in
  lexicographic order of their image arrays, identity = 0; (a·b)(x) = a(b(x)).
- ``quaternion()``: 2u + t ↦ (−1)^t·u for u = 1, i, j, k: 1, −1, i, −i, j, −j, k, −k.
- ``direct_product(G1, …, Gk)``: (g1, …, gk) ↦ mixed radix, g1 slowest:
  ((g1·|G2| + g2)·|G3| + g3)…
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import partial, reduce

import numpy as np

from mi_margin.errors import MiMarginError
from mi_margin.groups import closed_forms, young
from mi_margin.groups.group import MAX_ORDER, FiniteGroup, IrrepBuilder, check_order
from mi_margin.groups.permutations import (
    cayley_table,
    check_permutations,
    closure,
    cycle_label,
    parity,
)


def _check_int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise MiMarginError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def cyclic(n: int) -> FiniteGroup:
    """The cyclic group C_n = Z_n under addition mod n.

    Example:
        >>> G = cyclic(5)
        >>> int(G.mul(3, 4)), [r.name for r in G.irreps()]
        (2, ['trivial', 'freq_1', 'freq_2'])
    """
    n = _check_int(n, "cyclic(n): n", 1)
    check_order(n, f"C{n}")
    x = np.arange(n)
    return FiniteGroup(np.add.outer(x, x) % n, f"C{n}", labels=[str(i) for i in x],
                       generators=[1] if n > 1 else [],
                       closed_irreps=closed_forms.cyclic_irreps)


def _dihedral_label(i: int, j: int) -> str:
    r = "" if i == 0 else "r" if i == 1 else f"r^{i}"
    return (r + ("s" if j else "")) or "e"


def dihedral(n: int) -> FiniteGroup:
    """The dihedral group D_n of order 2n (symmetries of the n-gon); r^i s^j ↦ i + n·j.

    Labels read ``e, r, r^2, …, s, rs, r^2s, …``.

    Example:
        >>> G = dihedral(5)
        >>> G.order, G.labels[G.mul(G.element("s"), G.element("r"))]
        (10, 'r^4s')
    """
    n = _check_int(n, "dihedral(n): n", 1)
    check_order(2 * n, f"D{n}")
    g = np.arange(2 * n)
    i, j = g % n, g // n
    ii = (i[:, None] + np.where(j[:, None] == 1, -1, 1) * i[None, :]) % n
    table = ii + n * ((j[:, None] + j[None, :]) % 2)
    return FiniteGroup(table, f"D{n}", labels=[_dihedral_label(int(a), int(b)) for a, b in zip(i, j)],
                       generators=([1] if n > 1 else []) + [n],
                       closed_irreps=closed_forms.dihedral_irreps)


def _permutation_group(perms: np.ndarray, gens: Sequence[int], name: str,
                       closed_irreps: IrrepBuilder | None = None) -> FiniteGroup:
    table = cayley_table(perms, gens)
    perms = perms.copy()
    perms.setflags(write=False)
    return FiniteGroup(table, name, labels=[cycle_label(p) for p in perms], generators=gens,
                       permutations=perms, closed_irreps=closed_irreps)


def _all_permutations(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.int64).reshape(-1, n)


def symmetric(n: int) -> FiniteGroup:
    """The symmetric group S_n (all permutations of 0..n−1, lexicographic order, identity first).

    Generators are the adjacent transpositions (i i+1); irreps by Young's orthogonal form.

    Example:
        >>> G = symmetric(4)
        >>> G.order, G.labels[1], [r.dim for r in G.irreps()]
        (24, '(2 3)', [1, 1, 2, 3, 3])
    """
    n = _check_int(n, "symmetric(n): n", 1)
    check_order(math.factorial(n), f"S{n}")
    perms = _all_permutations(n)
    index = {p.tobytes(): k for k, p in enumerate(perms)}
    gens = []
    for i in range(n - 1):
        s = np.arange(n)
        s[[i, i + 1]] = i + 1, i
        gens.append(index[s.tobytes()])
    return _permutation_group(perms, gens, f"S{n}", young.symmetric_irreps)


def alternating(n: int) -> FiniteGroup:
    """The alternating group A_n (even permutations of 0..n−1, lexicographic order).

    Generators are the 3-cycles (0 1 k); irreps by restriction of Young's orthogonal form.

    Example:
        >>> G = alternating(5)
        >>> G.order, [r.dim for r in G.irreps()]
        (60, [1, 3, 3, 4, 5])
    """
    n = _check_int(n, "alternating(n): n", 1)
    check_order(max(1, math.factorial(n) // 2), f"A{n}")
    perms = _all_permutations(n)
    perms = perms[parity(perms) == 0]
    index = {p.tobytes(): k for k, p in enumerate(perms)}
    gens = []
    for k in range(2, n):
        c = np.arange(n)
        c[[0, 1, k]] = 1, k, 0
        gens.append(index[c.tobytes()])
    return _permutation_group(perms, gens, f"A{n}", young.alternating_irreps)


def quaternion() -> FiniteGroup:
    """The quaternion group Q8 = {±1, ±i, ±j, ±k}, numbered 1, −1, i, −i, j, −j, k, −k.

    Example:
        >>> Q = quaternion()
        >>> Q.labels[Q.mul(Q.element("i"), Q.element("j"))], [r.kind for r in Q.irreps()][-1]
        ('k', 'quaternionic')
    """
    units = closed_forms.quaternion_units()
    prods = closed_forms.hamilton_left(units) @ units.T  # [a, :, b] = q_a q_b
    u = np.abs(prods).argmax(axis=1)
    t = (np.take_along_axis(prods, u[:, None, :], axis=1)[:, 0] < 0).astype(np.int64)
    labels = ["1", "-1", "i", "-i", "j", "-j", "k", "-k"]
    return FiniteGroup(2 * u + t, "Q8", labels=labels, generators=[2, 4],
                       closed_irreps=closed_forms.quaternion_irreps)


def direct_product(*groups: FiniteGroup, name: str | None = None) -> FiniteGroup:
    """G1 × G2 × … with componentwise product; (g1, …, gk) numbered in mixed radix, g1 slowest.

    Irreps are Kronecker products of the factors' irreps (split where needed, see
    :func:`~mi_margin.groups.closed_forms.product_irreps`).

    Example:
        >>> G = direct_product(cyclic(2), cyclic(3))
        >>> G.name, G.order, G.labels[5], G.is_abelian
        ('C2xC3', 6, '(1, 2)', True)
    """
    if len(groups) < 2 or not all(isinstance(G, FiniteGroup) for G in groups):
        raise MiMarginError(f"direct_product needs at least two FiniteGroup arguments, "
                            f"got {[type(G).__name__ for G in groups]}")
    factors = tuple(groups)
    name = name or "x".join(G.name for G in factors)
    orders = [G.order for G in factors]
    n = math.prod(orders)
    check_order(n, name)
    strides = [math.prod(orders[k + 1:]) for k in range(len(orders))]
    g = np.arange(n)
    digits = [(g // s) % m for s, m in zip(strides, orders, strict=True)]
    table = reduce(np.add, (s * G.table[d[:, None], d[None, :]]
                            for s, G, d in zip(strides, factors, digits, strict=True)))
    labels = ["(" + ", ".join(G.labels[int(d[x])] for G, d in zip(factors, digits, strict=True))
              + ")" for x in range(n)]
    gens = [int(s * (gen - G.identity) + sum(t * H.identity for t, H in zip(strides, factors,
                                                                           strict=True)))
            for s, G in zip(strides, factors, strict=True) for gen in G.generators]
    return FiniteGroup(table, name, labels=labels, generators=gens,
                       closed_irreps=partial(closed_forms.product_irreps, factors=factors))


def from_permutations(generators: Sequence[Sequence[int]], name: str | None = None) -> FiniteGroup:
    """The group generated by permutations given as image arrays (p[x] = image of x).

    Products compose right to left, (a·b)(x) = a(b(x)). Elements are numbered in breadth-first
    order from the identity (element 0). Irreps come from the numerical decomposition.

    Example:
        >>> G = from_permutations([[1, 2, 3, 0], [3, 2, 1, 0]])  # D4 acting on a square
        >>> G.name, G.order
        ('<(0 1 2 3), (0 3)(1 2)>', 8)
    """
    gens = check_permutations(generators)
    name = name or "<" + ", ".join(cycle_label(g) for g in gens) + ">"
    perms = closure(gens, MAX_ORDER, name)
    index = {p.tobytes(): k for k, p in enumerate(perms)}
    gen_idx = sorted({index[g.tobytes()] for g in gens} - {0})
    return _permutation_group(perms, gen_idx, name)


def from_cayley_table(table: np.ndarray | Sequence[Sequence[int]], name: str | None = None,
                      labels: Sequence[str] | None = None) -> FiniteGroup:
    """A group from its multiplication table ``table[a, b] = a·b``, fully validated.

    Checks, in order: square integer matrix; closure (entries in 0..n−1); an identity; inverses;
    associativity (Light's test on a generating set, which implies it for all triples). Each
    error names the failing element(s). Irreps come from the numerical decomposition.

    Example:
        >>> G = from_cayley_table([[0, 1], [1, 0]], name="Z2")
        >>> G.order, [r.name for r in G.irreps()]
        (2, ['trivial', 'dim1'])
    """
    t = np.asarray(table)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] == 0:
        raise MiMarginError(f"a Cayley table must be a non-empty square matrix, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        if not (np.issubdtype(t.dtype, np.floating) and np.array_equal(t, np.round(t))):
            raise MiMarginError(f"a Cayley table must hold integers, got dtype {t.dtype}")
    t = t.astype(np.int64)
    n = t.shape[0]
    name = name or f"G{n}"
    check_order(n, name)
    bad = np.argwhere((t < 0) | (t >= n))
    if bad.size:
        a, b = bad[0]
        raise MiMarginError(f"{name}: not closed: table[{a}, {b}] = {t[a, b]} is not an element "
                            f"0..{n - 1}")
    x = np.arange(n)
    ids = np.flatnonzero((t == x).all(axis=1) & (t == x[:, None]).all(axis=0))
    if ids.size == 0:
        raise MiMarginError(f"{name}: no identity element (no e with e·x = x·e = x for all x)")
    e = int(ids[0])
    has_inverse = ((t == e) & (t.T == e)).any(axis=1)
    if not has_inverse.all():
        a = int(np.flatnonzero(~has_inverse)[0])
        raise MiMarginError(f"{name}: element {a} has no inverse (no b with {a}·b = b·{a} = {e})")
    _check_associative(t, e, name)
    return FiniteGroup(t, name, labels=labels)


def _check_associative(t: np.ndarray, e: int, name: str) -> None:
    """Light's associativity test: (a·s)·c = a·(s·c) for all a, c and s in a generating set."""
    n = t.shape[0]
    inside = np.zeros(n, dtype=bool)
    inside[e] = True
    gens: list[int] = []
    for s in range(n):
        if inside.all():
            break
        if inside[s]:
            continue
        gens.append(s)
        frontier = np.flatnonzero(inside)  # closure under right multiplication by gens
        while frontier.size:
            prods = np.unique(t[np.ix_(frontier, np.array(gens))])
            frontier = prods[~inside[prods]]
            inside[frontier] = True
    for s in gens:
        left = t[t[:, s]]            # [a, c] = (a·s)·c
        right = t[:, t[s]]           # [a, c] = a·(s·c)
        bad = np.argwhere(left != right)
        if bad.size:
            a, c = bad[0]
            raise MiMarginError(f"{name}: not associative: ({a}·{s})·{c} = {left[a, c]} but "
                                f"{a}·({s}·{c}) = {right[a, c]}")
