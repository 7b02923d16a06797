"""Finite groups as integer Cayley tables, with their real orthogonal irreducible representations.

Used by group-composition tasks (Chughtai et al. 2023) and by the irrep analyses and max-margin
predictions for groups (Morwani et al. 2024, Thm 9). Everything is exact float64 maths.

- :class:`FiniteGroup`: elements 0..n−1, ``table[a, b] = a·b``, classes, ``irreps()``,
  ``character_table()``.
- Constructors: :func:`cyclic`, :func:`dihedral`, :func:`symmetric`, :func:`alternating`,
  :func:`quaternion`, :func:`direct_product`, :func:`from_permutations`, :func:`from_cayley_table`,
  and :func:`get` by name (``"S5"``, ``"D7"``, ``"C113"``, ``"C2xC3"``).
- :class:`Irrep`: real orthogonal matrices with character and Frobenius–Schur ``kind``.
- :func:`numerical_irreps`: the general decomposition of the regular representation, usable as a
  cross-check of the closed forms; :func:`split_representation` for any orthogonal representation.

Example:
    >>> from mi_margin import groups
    >>> G = groups.get("S4")
    >>> [(r.name, r.dim) for r in G.irreps()]
    [('trivial', 1), ('(1,1,1,1)', 1), ('(2,2)', 2), ('(2,1,1)', 3), ('(3,1)', 3)]
"""

from mi_margin.groups.characters import CharacterTable
from mi_margin.groups.constructors import (
    alternating,
    cyclic,
    dihedral,
    direct_product,
    from_cayley_table,
    from_permutations,
    quaternion,
    symmetric,
)
from mi_margin.groups.decompose import numerical_irreps, split_representation
from mi_margin.groups.group import MAX_ORDER, FiniteGroup
from mi_margin.groups.irrep import Irrep, find_irrep
from mi_margin.groups.registry import get

__all__ = [
    "MAX_ORDER",
    "CharacterTable",
    "FiniteGroup",
    "Irrep",
    "alternating",
    "cyclic",
    "dihedral",
    "direct_product",
    "find_irrep",
    "from_cayley_table",
    "from_permutations",
    "get",
    "numerical_irreps",
    "quaternion",
    "split_representation",
    "symmetric",
]
