"""The :class:`Irrep` record (a real orthogonal irreducible representation) and shared helpers.

Every irreducible representation is stored *over the reals*, as orthogonal matrices, because that is
what the networks of Chughtai et al. (2023) and Morwani et al. (2024, Thm 9) embed and what the
Fourier/irrep analyses project onto. Over R an irreducible representation ``V`` has a commutant
``End_G(V)`` that is R, C or H (dimension ``e`` = 1, 2 or 4), matching the Frobenius–Schur type of
the complex irreducible(s) it comes from:

- ``real``: a complex irrep π with real character; ``V`` has the same dimension ``d`` and character.
- ``complex``: a pair π, π̄ of complex-conjugate irreps of dimension m; ``V`` = π viewed as a real
  space, ``d = 2m``, character ``χ_V = χ_π + χ̄_π = 2 Re χ_π``.
- ``quaternionic``: a complex irrep π of dimension m with real character but no real form; ``V`` = π
  viewed as a real space, ``d = 2m``, character ``χ_V = 2 χ_π``.

Two real characters identify the type (a derivation from Schur's lemma over R):
``<χ_V, χ_V> = (1/|G|) Σ_g χ_V(g)² = e`` and the real Frobenius–Schur sum
``(1/|G|) Σ_g χ_V(g²)`` = 1, 0 or −2 (= ν(π) + ν(π̄) for complex, 2ν(π) for quaternionic).
The pair (⟨χ,χ⟩, FS sum) ∈ {(1, 1), (2, 0), (4, −2)} exactly when ``V`` is irreducible over R.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from mi_margin.errors import MiMarginError

if TYPE_CHECKING:
    from mi_margin.groups.group import FiniteGroup

Kind = Literal["real", "complex", "quaternionic"]

#: dimension over R of the commutant End_G(V) of a real irreducible of each type (R, C, H)
COMMUTANT_DIM: dict[str, int] = {"real": 1, "complex": 2, "quaternionic": 4}
_FS_SUM: dict[str, int] = {"real": 1, "complex": 0, "quaternionic": -2}
_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class Irrep:
    """A real orthogonal irreducible representation ρ of a finite group.

    Attributes:
        name: e.g. ``"trivial"``, ``"sign"``, ``"freq_3"``, ``"(4,1)"``, ``"dim3_a"``.
        dim: real dimension d of the realization (the size of the matrices).
        matrices: float64 [n, d, d]; ``matrices[g]`` is the orthogonal matrix ρ(g), with
            ρ(a·b) = ρ(a) ρ(b) for the group's ``table``.
        character: float64 [n], ``trace(ρ(g))`` (for complex type this is 2 Re χ of the complex irrep).
        kind: Frobenius–Schur type of the underlying complex irrep(s): ``"real"``, ``"complex"``
            (ρ realizes a conjugate pair π ⊕ π̄ as one real irreducible of dimension 2·dim π) or
            ``"quaternionic"`` (ρ realizes π, of dimension dim/2, as a real irreducible of twice
            its dimension).
        aliases: other accepted names (e.g. ``("standard", "(4,1)")``); see :func:`find_irrep`.

    Example:
        >>> from mi_margin.groups import cyclic
        >>> rho = cyclic(5).irrep("freq_1")
        >>> rho.dim, rho.kind, rho.complex_dim, rho.commutant_dim
        (2, 'complex', 1, 2)
    """

    name: str
    dim: int
    matrices: np.ndarray = field(repr=False)
    character: np.ndarray = field(repr=False)
    kind: Kind
    aliases: tuple[str, ...] = ()

    @property
    def commutant_dim(self) -> int:
        """e = dim_R End_G(V) = ⟨χ, χ⟩: 1 (real), 2 (complex), 4 (quaternionic)."""
        return COMMUTANT_DIM[self.kind]

    @property
    def complex_dim(self) -> int:
        """Dimension of the complex irreducible(s) this real irrep realizes (d, d/2, d/2)."""
        return self.dim if self.kind == "real" else self.dim // 2

    @property
    def frobenius_schur(self) -> int:
        """Frobenius–Schur indicator ν(π) = (1/|G|) Σ χ_π(g²) of the complex irrep: 1, 0 or −1."""
        return {"real": 1, "complex": 0, "quaternionic": -1}[self.kind]

    @property
    def n_complex(self) -> int:
        """How many complex irreducibles this real irrep accounts for (2 for a conjugate pair)."""
        return 2 if self.kind == "complex" else 1

    @property
    def isotypic_dim(self) -> int:
        """Dimension d²/e of span{g ↦ ρ(g)_ij}, the ρ-isotypic part of the regular representation."""
        return self.dim * self.dim // self.commutant_dim

    def __repr__(self) -> str:
        return f"Irrep({self.name!r}, dim={self.dim}, kind={self.kind!r})"


def classify(norm: float, fs_sum: float) -> Kind | None:
    """The type of a real representation from ⟨χ,χ⟩ and (1/|G|)Σχ(g²); None if reducible over R.

    Example:
        >>> classify(2.0, 0.0), classify(2.0, 2.0)
        ('complex', None)
    """
    for kind, e in COMMUTANT_DIM.items():
        if abs(norm - e) < _TOL and abs(fs_sum - _FS_SUM[kind]) < _TOL:
            return kind  # type: ignore[return-value]
    return None


def character_invariants(G: FiniteGroup, character: np.ndarray) -> tuple[float, float]:
    """⟨χ,χ⟩ and the Frobenius–Schur sum (1/|G|) Σ_g χ(g²) of a real character given on all of G."""
    squares = G.table[np.arange(G.order), np.arange(G.order)]
    return float(character @ character) / G.order, float(character[squares].sum()) / G.order


def make_irrep(G: FiniteGroup, name: str, matrices: np.ndarray,
               aliases: Sequence[str] = ()) -> Irrep:
    """Wrap matrices [n, d, d] as an :class:`Irrep`, computing character and type.

    Raises RuntimeError if the matrices are not irreducible over R (a bug in a builder, not bad
    user input).
    """
    mats = np.ascontiguousarray(matrices, dtype=np.float64)
    character = np.einsum("gii->g", mats)
    kind = classify(*character_invariants(G, character))
    if kind is None:
        norm, fs = character_invariants(G, character)
        raise RuntimeError(f"{G.name}: representation {name!r} is not irreducible over R "
                           f"(<chi,chi> = {norm:.6g}, FS sum = {fs:.6g})")
    mats.setflags(write=False)
    character.setflags(write=False)
    return Irrep(name=name, dim=int(mats.shape[1]), matrices=mats, character=character, kind=kind,
                 aliases=tuple(aliases))


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that orders embedded integers numerically: ``freq_2`` before ``freq_10``."""
    return tuple(int(t) if i % 2 else t for i, t in enumerate(re.split(r"(\d+)", name)))


def sort_irreps(irreps: Iterable[Irrep]) -> list[Irrep]:
    """Trivial first, then by real dimension, then by name (numbers compared numerically)."""
    return sorted(irreps, key=lambda r: (r.name != "trivial", r.dim, natural_key(r.name)))


def find_irrep(source: FiniteGroup | Sequence[Irrep], name: str) -> Irrep:
    """The irrep called ``name`` (its name or one of its aliases) of a group or in a list.

    Example:
        >>> from mi_margin.groups import symmetric
        >>> find_irrep(symmetric(4), "standard").name
        '(3,1)'
    """
    irreps: Sequence[Irrep] = source if isinstance(source, Sequence) else source.irreps()
    for rho in irreps:
        if rho.name == name:
            return rho
    for rho in irreps:
        if name in rho.aliases:
            return rho
    known = ", ".join(r.name + (f" (= {', '.join(r.aliases)})" if r.aliases else "")
                      for r in irreps)
    raise MiMarginError(f"no irrep named {name!r}; known irreps: {known}")


def letter_suffix(i: int) -> str:
    """0 → 'a', 25 → 'z', 26 → 'aa', ... (spreadsheet-style, for naming irreps of equal dimension)."""
    s = ""
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return s


def class_character_key(G: FiniteGroup, character: np.ndarray) -> tuple[float, ...]:
    """Deterministic sort key: the character on class representatives, descending, rounded."""
    return tuple((-np.round(character[G.class_representatives], 8)).tolist())


def extend_homomorphism(G: FiniteGroup, images: Mapping[int, np.ndarray]) -> np.ndarray:
    """Matrices ρ(g) for all g from the images of generators, by breadth-first products.

    ``images`` maps generator elements s to ρ(s); every g is reached as a word g = s1·s2·…·sk
    (right multiplication), so ρ(g) = ρ(s1)ρ(s2)…ρ(sk) is computed level by level with batched
    matrix products. The relations are not checked here: a caller must pass images of a
    homomorphism (the tests check ρ(ab) = ρ(a)ρ(b) on all pairs).
    """
    n = G.order
    gens = list(images)
    d = next(iter(images.values())).shape[0] if images else 1
    mats = np.zeros((n, d, d))
    mats[G.identity] = np.eye(d)
    seen = np.zeros(n, dtype=bool)
    seen[G.identity] = True
    frontier = np.array([G.identity])
    while frontier.size:
        new_all = []
        for s in gens:
            children = G.table[frontier, s]
            fresh = ~seen[children]
            children, first = np.unique(children[fresh], return_index=True)
            if children.size:
                parents = frontier[fresh][first]
                mats[children] = mats[parents] @ images[s]
                seen[children] = True
                new_all.append(children)
        frontier = np.concatenate(new_all) if new_all else np.array([], dtype=np.int64)
    if not seen.all():
        raise RuntimeError(f"{G.name}: the given images do not cover a generating set")
    return mats
