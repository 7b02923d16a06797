"""`FiniteGroup`: a finite group as an integer Cayley table, with its classes and irreps.

Elements are the integers 0..n-1 and ``table[a, b] = a·b``. Everything else (identity, inverses,
element orders, conjugacy classes, a generating set) is derived from the table with vectorized
numpy and cached. Irreps come from an optional closed-form builder attached by the constructor
(cyclic, dihedral, Young's orthogonal form, ...) or from the general numerical decomposition of
the regular representation (:func:`mi_margin.groups.decompose.numerical_irreps`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Literal

import numpy as np

from mi_margin.errors import MiMarginError
from mi_margin.groups.characters import CharacterTable, character_table
from mi_margin.groups.decompose import numerical_irreps
from mi_margin.groups.irrep import Irrep, find_irrep

#: the largest group order the constructors build (S7 = 5040; its table is 5040² int64 ≈ 200 MB)
MAX_ORDER = 5040

Method = Literal["auto", "closed", "numerical"]
IrrepBuilder = Callable[["FiniteGroup"], list[Irrep]]


def check_order(order: int, what: str) -> None:
    """Raise a clear MiMarginError if a group of this order is too large to build."""
    if order > MAX_ORDER:
        raise MiMarginError(f"{what} has order {order}, above the limit of {MAX_ORDER} elements "
                            f"(its Cayley table alone would take {order * order * 8 / 1e9:.1f} GB)")


class FiniteGroup:
    """A finite group given by its Cayley table (elements 0..n-1, ``table[a, b] = a·b``).

    Build groups with the constructors (:func:`~mi_margin.groups.cyclic`, ``dihedral``,
    ``symmetric``, ``alternating``, ``quaternion``, ``direct_product``, ``from_permutations``,
    ``from_cayley_table``) or :func:`~mi_margin.groups.get`; this initializer trusts its table
    (and copies it unless it is already a read-only int64 array).

    Attributes:
        name: short name such as ``"S5"`` or ``"C2xC3"``.
        table: int64 [n, n], read-only.
        labels: readable element names (cycle notation, ``r^2s``, ``-j``, tuples for products).
        permutations: for permutation groups, int64 [n, m] with row g the image array of g on
            {0..m-1} (so that ``(a·b)[x] = a[b[x]]``); None otherwise.

    Example:
        >>> from mi_margin.groups import symmetric
        >>> G = symmetric(3)
        >>> G.order, G.labels[G.mul(1, 2)], [len(c) for c in G.conjugacy_classes]
        (6, '(0 2 1)', [1, 3, 2])
    """

    def __init__(self, table: np.ndarray, name: str, labels: Sequence[str] | None = None,
                 generators: Sequence[int] | None = None,
                 permutations: np.ndarray | None = None,
                 closed_irreps: IrrepBuilder | None = None):
        table = np.asarray(table)
        if table.dtype != np.int64 or table.flags.writeable:  # a private, read-only copy
            table = np.array(table, dtype=np.int64)
        if table.ndim != 2 or table.shape[0] != table.shape[1] or table.shape[0] == 0:
            raise MiMarginError(f"a Cayley table must be a non-empty square matrix, "
                                f"got shape {table.shape}")
        table.setflags(write=False)
        self.table = table
        self.name = name
        n = table.shape[0]
        self.labels: list[str] = list(labels) if labels is not None else [str(i) for i in range(n)]
        if len(self.labels) != n:
            raise MiMarginError(f"{name}: got {len(self.labels)} labels for {n} elements")
        self._given_generators = None if generators is None else [int(g) for g in generators]
        self.permutations = permutations
        self._closed_irreps = closed_irreps
        self._irreps: dict[str, list[Irrep]] = {}
        self._character_table: CharacterTable | None = None

    # ---- basic structure -------------------------------------------------------------------
    @property
    def closed_form_irreps(self) -> bool:
        """Whether the irreps come from closed forms (Young's for S_n, ...), which name them
        by partition, rather than from the numerical decomposition (``dim1``, ``dim3_a``, ...)."""
        return self._closed_irreps is not None

    @property
    def order(self) -> int:
        """n = |G|."""
        return int(self.table.shape[0])

    def __len__(self) -> int:
        return self.order

    def __repr__(self) -> str:
        return f"FiniteGroup({self.name!r}, order={self.order})"

    @cached_property
    def identity(self) -> int:
        """The element e with e·x = x for all x (the only x with x·0 = 0, by cancellation)."""
        return int(np.flatnonzero(self.table[:, 0] == 0)[0])

    @cached_property
    def inverse(self) -> np.ndarray:
        """int64 [n]: a · inverse[a] = inverse[a] · a = e."""
        inv = np.argmax(self.table == self.identity, axis=1).astype(np.int64)
        inv.setflags(write=False)
        return inv

    @cached_property
    def element_orders(self) -> np.ndarray:
        """int64 [n]: the smallest k ≥ 1 with a^k = e."""
        n = self.order
        orders = np.zeros(n, dtype=np.int64)
        power = np.arange(n)
        k = 0
        while (orders == 0).any():
            k += 1
            orders[(power == self.identity) & (orders == 0)] = k
            power = self.table[power, np.arange(n)]
        orders.setflags(write=False)
        return orders

    @cached_property
    def is_abelian(self) -> bool:
        """Whether a·b = b·a for all a, b."""
        return bool((self.table == self.table.T).all())

    def mul(self, a: int | np.ndarray, b: int | np.ndarray) -> np.ndarray:
        """a·b, elementwise over broadcast integer arrays."""
        return self.table[np.asarray(a), np.asarray(b)]

    def compose(self, *gs: int | np.ndarray) -> np.ndarray:
        """g1·g2·…·gk (left to right), elementwise over broadcast arrays; e for no arguments."""
        out = np.asarray(self.identity)
        for g in gs:
            out = self.table[out, np.asarray(g)]
        return out

    def element(self, label: str) -> int:
        """The element whose label is ``label``."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise MiMarginError(f"{self.name} has no element labelled {label!r}; labels look like "
                                f"{self.labels[:4]}") from None

    # ---- generators and classes ----------------------------------------------------------
    def subgroup_generated(self, gens: Sequence[int]) -> np.ndarray:
        """Sorted int64 array of the elements of the subgroup generated by ``gens``."""
        seen = np.zeros(self.order, dtype=bool)
        seen[self.identity] = True
        frontier = np.array([self.identity])
        gens_arr = np.asarray(list(gens), dtype=np.int64)
        while frontier.size and gens_arr.size:
            products = np.unique(self.table[np.ix_(frontier, gens_arr)])
            frontier = products[~seen[products]]
            seen[frontier] = True
        return np.flatnonzero(seen)

    @cached_property
    def generators(self) -> list[int]:
        """A generating set (given by the constructor, else chosen greedily by element order)."""
        if self._given_generators is not None:
            return list(self._given_generators)
        gens: list[int] = []
        inside = np.zeros(self.order, dtype=bool)
        inside[self.identity] = True
        for g in np.argsort(-self.element_orders, kind="stable"):
            if inside.all():
                break
            if not inside[g]:
                gens.append(int(g))
                inside[self.subgroup_generated(gens)] = True
        return gens

    @cached_property
    def _classes(self) -> tuple[list[np.ndarray], np.ndarray]:
        n = self.order
        rows, cols = [np.arange(n)], [np.arange(n)]
        for s in self.generators:  # orbits of conjugation by generators are the classes
            rows.append(np.arange(n))
            cols.append(self.table[self.table[s], self.inverse[s]])
        r, c = np.concatenate(rows), np.concatenate(cols)
        from scipy.sparse import coo_matrix  # scipy loads when first used, not at ``import mi_margin``
        from scipy.sparse.csgraph import connected_components

        graph = coo_matrix((np.ones(r.size), (r, c)), shape=(n, n))
        _, comp = connected_components(graph, directed=True, connection="weak")
        classes = [np.flatnonzero(comp == k) for k in range(comp.max() + 1)]
        classes.sort(key=lambda c: (int(self.element_orders[c[0]]), c.size, int(c[0])))
        class_of = np.empty(n, dtype=np.int64)
        for k, cls in enumerate(classes):
            cls.setflags(write=False)
            class_of[cls] = k
        class_of.setflags(write=False)
        return classes, class_of

    @property
    def conjugacy_classes(self) -> list[np.ndarray]:
        """Classes as sorted int64 arrays, ordered by (element order, size, smallest element)."""
        return list(self._classes[0])

    @property
    def class_of(self) -> np.ndarray:
        """int64 [n]: index into :attr:`conjugacy_classes` of each element."""
        return self._classes[1]

    @cached_property
    def class_sizes(self) -> np.ndarray:
        """int64 [K]: size of each conjugacy class."""
        return np.array([c.size for c in self._classes[0]], dtype=np.int64)

    @cached_property
    def class_representatives(self) -> np.ndarray:
        """int64 [K]: the smallest element of each conjugacy class."""
        return np.array([c[0] for c in self._classes[0]], dtype=np.int64)

    @property
    def num_classes(self) -> int:
        """K, the number of conjugacy classes (= number of complex irreps)."""
        return len(self._classes[0])

    # ---- representations -----------------------------------------------------------------
    @property
    def has_closed_irreps(self) -> bool:
        """Whether the constructor attached closed-form irreps (else only numerical ones exist)."""
        return self._closed_irreps is not None

    def irreps(self, method: Method = "auto") -> list[Irrep]:
        """The real orthogonal irreps: trivial first, then by real dimension, then name. Cached.

        ``method="closed"`` uses the constructor's formulas (cyclic/dihedral rotations, Young's
        orthogonal form for S_n, restriction from S_n for A_n, left multiplication for Q8, tensor
        products for direct products); ``"numerical"`` decomposes the regular representation
        (docs/mathematics.md §6.3, seed 0); ``"auto"`` is ``"closed"`` when available. The two methods give
        the same characters but different bases, and numerical names are generic (``dim3_a``).

        Example:
            >>> from mi_margin.groups import dihedral
            >>> [r.name for r in dihedral(4).irreps()]
            ['trivial', 'sign', 'sign_r', 'sign_rs', 'freq_1']
        """
        if method == "auto":
            method = "closed" if self._closed_irreps is not None else "numerical"
        if method not in ("closed", "numerical"):
            raise MiMarginError(f"method must be 'auto', 'closed' or 'numerical', got {method!r}")
        if method not in self._irreps:
            if method == "closed":
                if self._closed_irreps is None:
                    raise MiMarginError(f"{self.name} has no closed-form irreps; "
                                        f"use method='numerical' or 'auto'")
                self._irreps[method] = self._closed_irreps(self)
            else:
                self._irreps[method] = numerical_irreps(self)
        return list(self._irreps[method])

    def irrep(self, name: str, method: Method = "auto") -> Irrep:
        """The irrep called ``name`` (or one of its aliases, e.g. ``"standard"`` for S_n)."""
        return find_irrep(self.irreps(method), name)

    def character_table(self) -> CharacterTable:
        """The complex character table (complex irreps × conjugacy classes); see CharacterTable."""
        if self._character_table is None:
            self._character_table = character_table(self)
        return self._character_table
