"""General numerical decomposition into real irreducibles (docs/mathematics.md §6.3).

Works for any finite group from its Cayley table alone, and doubles as an independent cross-check
of the closed forms.

Regular representation: let L(g) be left translation on R^n, (L(g)f)(x) = f(g⁻¹x). Every right
translation R(h) commutes with all L(g), so M = Σ_h c_h (R(h) + R(h)ᵀ) with random c is a random
*symmetric* element of the commutant. On the isotypic part of a real irreducible V (dim d,
commutant R, C or H of dimension e, multiplicity d/e) M acts as a generic Hermitian matrix over
that division algebra, so each eigenspace of M is a single copy of V; for an orthonormal basis B
of one (n × d), ρ(g) = Bᵀ L(g) B is an orthogonal irreducible representation. B is the
eigenspace's canonical basis (:func:`canonical_basis`), not the one ``eigh`` returns, so that the
matrices are the same on every CPU. For complex and
quaternionic types the eigenspace is automatically the real irreducible of twice the complex
dimension (a complex/quaternionic line), which is how the real realization arises.

Robustness: eigenvalues are grouped with a relative tolerance, and each group is accepted only if
its character passes the irreducibility test of :func:`~mi_margin.groups.irrep.classify`
(⟨χ,χ⟩, Frobenius–Schur sum) ∈ {(1,1), (2,0), (4,−2)}. A group that fails (two accidentally close
eigenvalues) is split again with a fresh random commutant element restricted to it. Characters
deduplicate the copies. The same machinery decomposes any given orthogonal representation
(:func:`split_representation`), with the commutant element (1/|G|) Σ_g ρ(g) X ρ(g)ᵀ.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mi_margin.groups.irrep import (
    COMMUTANT_DIM,
    Irrep,
    class_character_key,
    classify,
    letter_suffix,
    make_irrep,
    sort_irreps,
)

if TYPE_CHECKING:
    from mi_margin.groups.group import FiniteGroup

_CLUSTER_RTOL = 1e-6
_SPAN_TOL = 1e-3  # a projector column adds a basis vector when this much of it (relative) is new
_MAX_RETRIES = 20
_CHUNK = 2**22  # floats per gather chunk when forming matrices of the regular representation


class _Space(Protocol):
    """A real orthogonal representation space to be decomposed."""

    dim: int

    def commutant(self, rng: np.random.Generator) -> np.ndarray: ...

    def class_characters(self, basis: np.ndarray) -> np.ndarray: ...

    def matrices(self, basis: np.ndarray) -> np.ndarray: ...


class _RegularSpace:
    """R^n with left translations; ``left[g, x] = g⁻¹·x`` so (L(g)B)[x] = B[left[g, x]]."""

    def __init__(self, G: FiniteGroup):
        self.G, self.dim = G, G.order
        self.left = G.table[G.inverse]

    def commutant(self, rng: np.random.Generator) -> np.ndarray:
        # (Σ_h c_h R(h))[x, y] = c[x⁻¹y] = c[left[x, y]]
        c = rng.standard_normal(self.dim)[self.left]
        return c + c.T

    def class_characters(self, basis: np.ndarray) -> np.ndarray:
        reps = self.G.class_representatives
        return np.einsum("kxi,xi->k", basis[self.left[reps]], basis)

    def matrices(self, basis: np.ndarray) -> np.ndarray:
        n, d = basis.shape
        out = np.empty((n, d, d))
        step = max(1, _CHUNK // (n * d))
        for start in range(0, n, step):
            gs = np.arange(start, min(n, start + step))
            out[gs] = basis.T @ basis[self.left[gs]]
        return out


class _MatrixSpace:
    """R^D with given orthogonal matrices ρ(g) [n, D, D]."""

    def __init__(self, G: FiniteGroup, matrices: np.ndarray):
        self.G, self.mats, self.dim = G, matrices, matrices.shape[1]

    def commutant(self, rng: np.random.Generator) -> np.ndarray:
        x = rng.standard_normal((self.dim, self.dim))
        a = np.einsum("gab,bc,gdc->ad", self.mats, x + x.T, self.mats, optimize=True)
        return a / self.G.order

    def class_characters(self, basis: np.ndarray) -> np.ndarray:
        reps = self.G.class_representatives
        return np.einsum("ai,kab,bi->k", basis, self.mats[reps], basis, optimize=True)

    def matrices(self, basis: np.ndarray) -> np.ndarray:
        return basis.T @ self.mats @ basis


def _clusters(w: np.ndarray) -> list[np.ndarray]:
    """Index groups of (sorted) eigenvalues closer than a relative tolerance."""
    scale = max(float(np.abs(w).max()), 1e-300)
    breaks = np.flatnonzero(np.diff(w) > _CLUSTER_RTOL * scale) + 1
    return np.split(np.arange(w.size), breaks)


def _class_invariants(G: FiniteGroup, chi: np.ndarray) -> tuple[float, float]:
    """⟨χ,χ⟩ and (1/|G|)Σχ(g²) from a character on class representatives."""
    reps = G.class_representatives
    square_class = G.class_of[G.table[reps, reps]]
    sizes = G.class_sizes
    return float(sizes @ chi**2) / G.order, float(sizes @ chi[square_class]) / G.order


def canonical_basis(basis: np.ndarray) -> np.ndarray:
    """An orthonormal basis of span(``basis``) [D, d] that depends only on the subspace: Gram–
    Schmidt on the projector's columns P e_1, P e_2, … (P = B Bᵀ, never formed) in order, each
    kept when its new part's norm is at least ``_SPAN_TOL`` times √(d/D), the columns' root mean
    square norm (twice re-orthogonalized). Some column always qualifies: while k < d vectors are
    found, the new parts' squared norms sum to d − k ≥ 1 over D columns.

    Within a degenerate eigenspace, ``eigh`` returns whichever basis its LAPACK kernel reaches,
    and that differs between CPUs and builds; an irrep's matrices in that basis differ by a
    rotation, which characters and block energies do not see but quantities read per basis
    vector (e.g. ``fourier_gini``) do. With this basis they agree on every machine.

    Example:
        >>> q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 2)))
        >>> rot = np.array([[0.6, -0.8], [0.8, 0.6]])
        >>> bool(np.allclose(canonical_basis(q), canonical_basis(q @ rot)))
        True
    """
    out: list[np.ndarray] = []
    floor = _SPAN_TOL * np.sqrt(basis.shape[1] / basis.shape[0])
    for j in range(basis.shape[0]):
        v = basis @ basis[j]
        for _ in range(2):
            for q in out:
                v = v - (q @ v) * q
        norm = float(np.linalg.norm(v))
        if norm > floor:
            out.append(v / norm)
            if len(out) == basis.shape[1]:
                return np.stack(out, axis=1)
    raise RuntimeError(f"no canonical basis found for a {basis.shape[1]}-dimensional subspace "
                       f"of R^{basis.shape[0]}")


def _irreducible_pieces(G: FiniteGroup, space: _Space, rng: np.random.Generator,
                        stop_at: int | None = None) -> list[np.ndarray]:
    """Orthonormal bases of one copy of each distinct real irreducible constituent of ``space``.

    ``stop_at``: stop once the found constituents' isotypic dimensions Σ d²/e reach this total
    (for the regular representation, |G|).
    """
    import scipy.linalg  # scipy loads when first used, not at ``import mi_margin``

    chars = np.zeros((0, G.num_classes))  # class characters of the constituents found so far
    bases: list[np.ndarray] = []
    covered = 0
    stack: list[tuple[np.ndarray | None, int]] = [(None, 0)]  # None: the whole space
    while stack and (stop_at is None or covered < stop_at):
        basis, retries = stack.pop()
        if retries > _MAX_RETRIES:
            raise RuntimeError(f"{G.name}: could not split an invariant subspace into "
                               f"irreducibles after {_MAX_RETRIES} tries")
        a = space.commutant(rng)
        if basis is not None:
            a = basis.T @ a @ basis
        w, v = scipy.linalg.eigh((a + a.T) / 2)
        for idx in _clusters(w):
            sub = v[:, idx] if basis is None else basis @ v[:, idx]
            chi = space.class_characters(sub)
            if (np.abs(chars - chi).max(axis=1, initial=0.0) < 1e-6).any():
                continue  # another copy of a constituent already found
            kind = classify(*_class_invariants(G, chi))
            if kind is not None:
                chars = np.vstack([chars, chi])
                bases.append(canonical_basis(sub))
                covered += sub.shape[1] ** 2 // COMMUTANT_DIM[kind]
            else:  # reducible: split again, counting tries only when nothing split this time
                stack.append((sub, retries + 1 if idx.size == w.size else 0))
    return bases


def _named(G: FiniteGroup, mats_list: list[np.ndarray]) -> list[Irrep]:
    """Generic names: ``trivial``; ``dim{d}`` if unique, else ``dim{d}_a``, ``dim{d}_b``, ...

    Within a dimension, irreps are ordered by their character on the class representatives
    (descending, classes in :attr:`FiniteGroup.conjugacy_classes` order).
    """
    items = [(m, np.einsum("gii->g", m)) for m in mats_list]
    trivial = [i for i, (m, chi) in enumerate(items) if m.shape[1] == 1 and np.allclose(chi, 1)]
    out = [make_irrep(G, "trivial", items[i][0]) for i in trivial]
    rest = sorted((it for i, it in enumerate(items) if i not in trivial),
                  key=lambda it: (it[0].shape[1], class_character_key(G, it[1])))
    counts = Counter(m.shape[1] for m, _ in rest)
    seen: Counter[int] = Counter()
    for m, _ in rest:
        d = m.shape[1]
        name = f"dim{d}" if counts[d] == 1 else f"dim{d}_{letter_suffix(seen[d])}"
        seen[d] += 1
        out.append(make_irrep(G, name, m))
    return sort_irreps(out)


def numerical_irreps(G: FiniteGroup, seed: int = 0) -> list[Irrep]:
    """All real orthogonal irreps of G from its Cayley table, by decomposing the regular rep.

    Names are generic (see :func:`_named`). ``seed`` fixes the random commutant elements (the
    resulting bases depend on it; characters do not).

    Example:
        >>> from mi_margin.groups import alternating
        >>> [(r.name, r.kind) for r in numerical_irreps(alternating(4))]
        [('trivial', 'real'), ('dim2', 'complex'), ('dim3', 'real')]
    """
    space = _RegularSpace(G)
    bases = _irreducible_pieces(G, space, np.random.default_rng(seed), stop_at=G.order)
    return _named(G, [space.matrices(b) for b in bases])


def split_representation(G: FiniteGroup, matrices: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """The distinct real irreducible constituents of an orthogonal representation.

    Args:
        matrices: float64 [n, D, D], orthogonal ρ(g) with ρ(ab) = ρ(a)ρ(b).

    Returns:
        One matrix array [n, d, d] per distinct constituent (multiplicities dropped), ordered by
        dimension, then by character on class representatives (descending).
    """
    space = _MatrixSpace(G, np.asarray(matrices, dtype=np.float64))
    bases = _irreducible_pieces(G, space, np.random.default_rng(seed))
    pieces = [space.matrices(b) for b in bases]
    return sorted(pieces, key=lambda m: (m.shape[1],
                                         class_character_key(G, np.einsum("gii->g", m))))
