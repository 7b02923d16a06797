"""Group Fourier transform over real irreps, isotypic bases, projections and variance fractions.

Conventions (ρ runs over ``G.irreps()``, real orthogonal, dimension d_ρ, commutant dimension
e_ρ = 1, 2, 4 for real, complex, quaternionic type; see :class:`~mi_margin.groups.Irrep`):

- transform: f̂(ρ) = Σ_g f(g) ρ(g)   (d×d, or d×d×m for a batch f of shape [n, m]);
- inverse:   f(g) = Σ_ρ w_ρ Σ_ij ρ(g)_ij f̂(ρ)_ij = Σ_ρ w_ρ tr(ρ(g)ᵀ f̂(ρ)),  w_ρ = d_ρ / (e_ρ |G|);
- Plancherel: Σ_g f(g)² = Σ_ρ w_ρ ‖f̂(ρ)‖_F².

For real-type irreps w_ρ = d_ρ/|G| is the textbook weight. For the other types: in a suitable
basis the real form of a complex m×m matrix A is [[Re A, −Im A], [Im A, Re A]], with squared
Frobenius norm 2‖A‖². A complex-type ρ realizes π ⊕ π̄ (m = d/2), whose complex Plancherel terms
(m/|G|)(‖f̂(π)‖² + ‖f̂(π̄)‖²) = (2m/|G|)‖f̂(π)‖² = (m/|G|)‖f̂(ρ)‖², so w_ρ = d/(2|G|). A quaternionic
ρ realizes a single π (m = d/2): (m/|G|)‖f̂(π)‖² = (m/(2|G|))‖f̂(ρ)‖², so w_ρ = d/(4|G|).

The isotypic subspace of ρ, span{g ↦ ρ(g)_ij} ⊂ R^|G|, has dimension d²/e (d² real, 2m² complex,
m² quaternionic); the subspaces of all irreps are orthogonal and sum to R^|G|. Projections onto
them give the per-irrep energy used by Chughtai et al. (2023, FVE of embeddings) and the neuron
purity of Morwani et al. (2024, Thm 9 certificates).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import numpy as np

from mi_margin.errors import MiMarginError
from mi_margin.groups import FiniteGroup, Irrep

_BASES: weakref.WeakKeyDictionary[FiniteGroup, dict[str, np.ndarray]] = (
    weakref.WeakKeyDictionary())


def _as_function(G: FiniteGroup, f: object) -> np.ndarray:
    arr = np.asarray(f, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[0] != G.order:
        raise MiMarginError(f"f must have shape [{G.order}] or [{G.order}, m] (one value or vector "
                            f"per element of {G.name}), got {arr.shape}")
    return arr


def _resolve(G: FiniteGroup, irrep: Irrep | str) -> Irrep:
    if isinstance(irrep, str):
        return G.irrep(irrep)
    if irrep.matrices.shape[0] != G.order:
        raise MiMarginError(f"irrep {irrep.name!r} has {irrep.matrices.shape[0]} matrices but "
                            f"{G.name} has {G.order} elements")
    return irrep


def fourier_weight(G: FiniteGroup, irrep: Irrep | str) -> float:
    """w_ρ = d_ρ / (e_ρ |G|), the weight of ρ in the inverse transform and in Plancherel."""
    rho = _resolve(G, irrep)
    return rho.dim / (rho.commutant_dim * G.order)


def group_fourier_transform(G: FiniteGroup, f: object) -> dict[str, np.ndarray]:
    """f̂(ρ) = Σ_g f(g) ρ(g) for every irrep ρ of G.

    Args:
        f: float [n] or [n, m] (e.g. an embedding matrix [|G|, d_model]); row g is f(g).

    Returns:
        dict irrep name → float64 [d, d] (or [d, d, m] for a batch).

    Example:
        >>> from mi_margin.groups import cyclic
        >>> G = cyclic(6)
        >>> coeffs = group_fourier_transform(G, np.cos(2 * np.pi * np.arange(6) / 6))
        >>> (np.round(coeffs["freq_1"], 6) + 0.0).tolist()
        [[3.0, 0.0], [0.0, 3.0]]
    """
    arr = _as_function(G, f)
    return {rho.name: np.tensordot(rho.matrices, arr, axes=(0, 0)) for rho in G.irreps()}


def inverse_group_fourier_transform(G: FiniteGroup, coeffs: Mapping[str, np.ndarray]
                                    ) -> np.ndarray:
    """f(g) = Σ_ρ w_ρ Σ_ij ρ(g)_ij f̂(ρ)_ij, summing over the irreps present in ``coeffs``.

    Irreps missing from ``coeffs`` contribute zero, so passing a subset reconstructs the
    projection of f onto those irreps. Keys may be names or aliases.
    """
    out: np.ndarray | None = None
    used: set[str] = set()
    for key, c in coeffs.items():
        rho = G.irrep(key)
        if rho.name in used:
            raise MiMarginError(f"irrep {rho.name!r} appears twice in coeffs (key {key!r})")
        used.add(rho.name)
        c = np.asarray(c, dtype=np.float64)
        if c.shape[:2] != (rho.dim, rho.dim) or c.ndim not in (2, 3):
            raise MiMarginError(f"coefficient of {rho.name!r} must have shape "
                                f"[{rho.dim}, {rho.dim}] or [{rho.dim}, {rho.dim}, m], "
                                f"got {c.shape}")
        term = fourier_weight(G, rho) * np.tensordot(rho.matrices, c, axes=([1, 2], [0, 1]))
        if out is not None and term.shape != out.shape:
            raise MiMarginError(f"coefficient of {rho.name!r} has batch shape {c.shape[2:]}, "
                                f"unlike the others ({out.shape[1:]})")
        out = term if out is None else out + term
    if out is None:
        raise MiMarginError("coeffs is empty")
    return out


def _orthonormal_basis(rho: Irrep) -> np.ndarray:
    """Orthonormal basis of span{g ↦ ρ(g)_ij}, built column block by column block.

    For each column index j the functions g ↦ ρ(g)_ij (i = 0..d−1) span one copy of ρ with
    Gram matrix (|G|/d)·I (Schur). Blocks already inside the span found so far are skipped and new
    ones are orthogonalized against it (polar factor, which keeps an already orthogonal block as
    is). For real type this returns sqrt(d/|G|)·ρ(·)_ij; for cyclic ``freq_k`` it returns
    sqrt(2/n)·(cos, sin)(2πkx/n).
    """
    n, d = rho.matrices.shape[:2]
    basis = np.zeros((n, 0))
    for j in range(d):
        block = rho.matrices[:, :, j] * np.sqrt(d / n)
        for _ in range(2):  # project twice for numerical orthogonality
            block = block - basis @ (basis.T @ block)
        if np.linalg.norm(block) < 1e-6:
            continue
        u, _, vt = np.linalg.svd(block, full_matrices=False)
        basis = np.hstack([basis, u @ vt])
    if basis.shape[1] != rho.isotypic_dim:
        raise RuntimeError(f"isotypic basis of {rho.name!r} has {basis.shape[1]} vectors, "
                           f"expected d²/e = {rho.isotypic_dim}")
    return basis


def isotypic_basis(G: FiniteGroup, irrep: Irrep | str) -> np.ndarray:
    """float64 [n, r], orthonormal columns spanning {g ↦ ρ(g)_ij}; r = d²/e. Cached per group.

    Example:
        >>> from mi_margin.groups import symmetric
        >>> isotypic_basis(symmetric(4), "standard").shape
        (24, 9)
    """
    rho = _resolve(G, irrep)
    if not any(r is rho for r in G.irreps()):
        return _orthonormal_basis(rho)
    cache = _BASES.setdefault(G, {})
    if rho.name not in cache:
        basis = _orthonormal_basis(rho)
        basis.setflags(write=False)
        cache[rho.name] = basis
    return cache[rho.name]


def project(G: FiniteGroup, f: object, irrep: Irrep | str) -> np.ndarray:
    """Orthogonal projection of f ([n] or [n, m]) onto the isotypic subspace of ``irrep``."""
    arr = _as_function(G, f)
    q = isotypic_basis(G, irrep)
    return q @ (q.T @ arr)


def irrep_variance_fractions(G: FiniteGroup, f: object, center: bool = True) -> dict[str, float]:
    """Fraction of the sum of squares of f (along axis 0, summed over columns) in each irrep.

    With ``center=True`` the mean over group elements is removed first, so ``trivial`` gets 0
    and the other fractions sum to 1. Raises MiMarginError if f has no (centered) energy.

    Example:
        >>> from mi_margin.groups import cyclic
        >>> x = np.arange(12)
        >>> fr = irrep_variance_fractions(cyclic(12), np.cos(2 * np.pi * 5 * x / 12) + 3)
        >>> round(fr["freq_5"], 12), round(fr["trivial"], 12)
        (1.0, 0.0)
    """
    arr = _as_function(G, f)
    raw_total = float(np.sum(arr**2))
    if center:
        arr = arr - arr.mean(axis=0)
    total = float(np.sum(arr**2))
    if total <= 1e-24 * raw_total or total == 0.0:  # zero up to rounding of the centering
        raise MiMarginError(f"f has zero {'centered ' if center else ''}sum of squares; "
                            f"variance fractions are undefined")
    return {rho.name: float(np.sum((isotypic_basis(G, rho).T @ arr) ** 2)) / total
            for rho in G.irreps()}
