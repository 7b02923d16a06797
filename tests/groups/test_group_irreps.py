"""Real irreps as maths: homomorphism, orthogonality, Schur, irreducibility, completeness, types.

Character-norm facts used (derived in mi_margin/groups/irrep.py): a real irreducible V has
<χ_V, χ_V> = e = dim_R End_G(V) ∈ {1, 2, 4} (real, complex, quaternionic type) and
(1/|G|) Σ χ_V(g²) = 1, 0, −2 respectively.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mi_margin.errors import MiMarginError
from mi_margin.groups import (
    FiniteGroup,
    Irrep,
    alternating,
    find_irrep,
    get,
    numerical_irreps,
    split_representation,
    symmetric,
)
from mi_margin.groups.decompose import _clusters
from mi_margin.groups.young import standard_tableaux

NAMES = ["C1", "C2", "C7", "C12", "D3", "D4", "D5", "D6", "S3", "S4", "S5", "A4", "A5", "Q8",
         "C2xC3", "C3xC3", "D3xC2", "Q8xC3", "Q8xQ8", "C4xS3"]
ALL = [*NAMES, "perm D4", "relabeled A4", "relabeled Q8"]


ATOL = 1e-10
CASES = [(name, "auto") for name in ALL] + [(name, "numerical") for name in NAMES]


def _coefficients(rho: Irrep) -> np.ndarray:
    return rho.matrices.reshape(rho.matrices.shape[0], -1)


@pytest.mark.parametrize(("name", "method"), CASES)
def test_homomorphism_and_orthogonal(name, method, group_named):
    G = group_named(name)
    irreps = G.irreps(method)
    for rho in irreps:
        M = rho.matrices
        assert M.dtype == np.float64 and M.shape == (G.order, rho.dim, rho.dim)
        prod = np.einsum("aij,bjk->abik", M, M)
        assert np.abs(prod - M[G.table]).max() < ATOL, rho.name
        assert np.abs(M @ M.transpose(0, 2, 1) - np.eye(rho.dim)).max() < ATOL
        assert np.abs(M[G.identity] - np.eye(rho.dim)).max() < ATOL
        assert np.allclose(rho.character, np.einsum("gii->g", M), atol=ATOL)


@pytest.mark.parametrize(("name", "method"), CASES)
def test_irreducible_by_character_norm(name, method, group_named):
    G = group_named(name)
    irreps = G.irreps(method)
    squares = G.table[np.arange(G.order), np.arange(G.order)]
    for rho in irreps:
        norm = rho.character @ rho.character / G.order
        fs = rho.character[squares].sum() / G.order
        expected = {"real": (1, 1), "complex": (2, 0), "quaternionic": (4, -2)}[rho.kind]
        assert np.allclose((norm, fs), expected, atol=1e-9), rho.name
        assert rho.commutant_dim == expected[0]
        assert rho.complex_dim * (1 if rho.kind == "real" else 2) == rho.dim


@pytest.mark.parametrize(("name", "method"), CASES)
def test_schur_orthogonality(name, method, group_named):
    G = group_named(name)
    irreps = G.irreps(method)
    coeffs = [_coefficients(rho) for rho in irreps]
    for (r1, c1), (r2, c2) in itertools.combinations(zip(irreps, coeffs), 2):
        assert np.abs(c1.T @ c2).max() < 1e-9, (r1.name, r2.name)
    for rho, c in zip(irreps, coeffs):
        gram = c.T @ c
        if rho.kind == "real":
            assert np.allclose(gram, G.order / rho.dim * np.eye(rho.dim**2), atol=1e-9)
        # each column block ρ(·)_{:, j} spans a copy of ρ with Gram (|G|/d)·I
        for j in range(rho.dim):
            block = rho.matrices[:, :, j]
            assert np.allclose(block.T @ block, G.order / rho.dim * np.eye(rho.dim), atol=1e-9)
        assert np.linalg.matrix_rank(c, tol=1e-8) == rho.dim**2 // rho.commutant_dim


@pytest.mark.parametrize(("name", "method"), CASES)
def test_completeness_and_class_count(name, method, group_named):
    G = group_named(name)
    irreps = G.irreps(method)
    assert irreps[0].name == "trivial" and np.allclose(irreps[0].matrices, 1)
    assert sum(r.n_complex * r.complex_dim**2 for r in irreps) == G.order
    assert sum(r.n_complex for r in irreps) == G.num_classes
    assert sum(r.dim**2 // r.commutant_dim for r in irreps) == G.order
    assert len({r.name for r in irreps}) == len(irreps)
    chars = np.array([r.character for r in irreps])
    assert np.allclose(chars @ chars.T / G.order,
                       np.diag([r.commutant_dim for r in irreps]), atol=1e-9)
    dims = [r.dim for r in irreps[1:]]
    assert dims == sorted(dims)


@pytest.mark.parametrize("name", ALL)
def test_character_table_orthogonality(name, group_named):
    G = group_named(name)
    ct = G.character_table()
    K = G.num_classes
    X = ct.values
    assert X.shape == (K, K) and X.dtype == np.complex128
    sizes = ct.class_sizes
    assert np.allclose((X * sizes) @ X.conj().T, G.order * np.eye(K), atol=1e-9)
    assert np.allclose(X.conj().T @ X, np.diag(G.order / sizes), atol=1e-9)
    assert np.allclose(X[:, 0], ct.dims) and (ct.dims > 0).all()
    assert (ct.dims**2).sum() == G.order
    assert len(ct.irrep_names) == K and len(set(ct.irrep_names)) == K
    # rows regroup into the real irreps: Σ over a real irrep's rows of Re/real parts = χ_V/(e/n_c)
    for rho in G.irreps():
        rows = [i for i, r in enumerate(ct.real_irreps) if r == rho.name]
        assert len(rows) == rho.n_complex
        total = X[rows].sum(axis=0)
        factor = 2 if rho.kind == "quaternionic" else 1
        assert np.allclose(factor * total, rho.character[G.class_representatives], atol=1e-9)
    assert isinstance(ct.format(), str) and ct.class_labels[0] == G.labels[G.identity]


def _character_multiset(G: FiniteGroup, irreps: list[Irrep]) -> np.ndarray:
    rows = np.array([r.character[G.class_representatives] for r in irreps])
    return rows[np.lexsort(np.round(rows, 6).T[::-1])]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "C1"])
def test_closed_forms_match_numerical(name):
    G = get(name)
    closed, numerical = G.irreps("closed"), G.irreps("numerical")
    assert len(closed) == len(numerical)
    assert np.allclose(_character_multiset(G, closed), _character_multiset(G, numerical),
                       atol=1e-9)
    assert sorted(r.kind for r in closed) == sorted(r.kind for r in numerical)


@pytest.mark.parametrize("name", ["S4", "Q8", "C12"])
def test_numerical_is_seed_independent_up_to_basis(name):
    G = get(name)
    a, b = numerical_irreps(G, seed=0), numerical_irreps(G, seed=7)
    assert [r.name for r in a] == [r.name for r in b]
    for r, s in zip(a, b):
        assert np.allclose(r.character, s.character, atol=1e-9)


def test_frobenius_schur_types_from_theory():
    assert {r.kind for r in get("A4").irreps()} == {"real", "complex"}
    q = [r for r in get("Q8").irreps() if r.kind == "quaternionic"]
    assert len(q) == 1 and q[0].complex_dim == 2 and q[0].dim == 4
    for m in range(1, 6):
        assert {r.kind for r in symmetric(m).irreps()} == {"real"}
    for n in (3, 4, 5, 6):
        assert {r.kind for r in get(f"D{n}").irreps()} == {"real"}
    assert all(r.kind == "complex" for r in get("C7").irreps()[1:])


def _hooks(shape: tuple[int, ...]) -> int:
    conj = [sum(1 for p in shape if p > c) for c in range(shape[0])]
    return math.prod(shape[i] - j + conj[j] - i - 1 for i in range(len(shape))
                     for j in range(shape[i]))


def _partitions(m: int, largest: int | None = None) -> list[tuple[int, ...]]:
    largest = m if largest is None else largest
    if m == 0:
        return [()]
    return [(k, *t) for k in range(min(m, largest), 0, -1) for t in _partitions(m - k, k)]


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_symmetric_names_dims_and_known_characters(m):
    G = symmetric(m)
    irreps = G.irreps()
    by_shape = {}
    for shape in _partitions(m):
        label = "(" + ",".join(map(str, shape)) + ")"
        rho = G.irrep(label)  # the trivial one is found by its alias "(m)"
        by_shape[shape] = rho
        assert rho.dim == math.factorial(m) // _hooks(shape)  # hook length formula
        assert rho.dim == len(standard_tableaux(shape))
    assert len(by_shape) == len(irreps)
    fixed = (G.permutations == np.arange(m)).sum(axis=1)
    sign = np.array([np.linalg.det(np.eye(m)[p]) for p in G.permutations])
    if m >= 2:
        assert np.allclose(G.irrep("sign").character, sign)
    if m >= 3:
        assert np.allclose(G.irrep("standard").character, fixed - 1)
    if m >= 4:
        assert np.allclose(G.irrep("standard_sign").character, (fixed - 1) * sign)


def test_young_transpositions_are_symmetric_involutions():
    G = symmetric(5)
    transpositions = [g for g in range(G.order) if G.labels[g].count(" ") == 1
                      and abs(G.permutations[g] - np.arange(5)).sum() == 2
                      and G.labels[g] in {f"({i} {i + 1})" for i in range(4)}]
    assert len(transpositions) == 4
    for rho in G.irreps():
        for t in transpositions:
            M = rho.matrices[t]
            assert np.allclose(M, M.T, atol=1e-14) and np.allclose(M @ M, np.eye(rho.dim))


@pytest.mark.parametrize("n", [1, 2, 7, 12])
def test_cyclic_closed_form(n):
    G = get(f"C{n}")
    names = {r.name for r in G.irreps()}
    expected = {"trivial"} | {f"freq_{k}" for k in range(1, (n - 1) // 2 + 1)}
    expected |= {"sign"} if n % 2 == 0 else set()
    assert names == expected
    x = np.arange(n)
    for k in range(1, (n - 1) // 2 + 1):
        M = G.irrep(f"freq_{k}").matrices
        theta = 2 * np.pi * k * x / n
        assert np.allclose(M[:, 0, 0], np.cos(theta)) and np.allclose(M[:, 1, 0], np.sin(theta))


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_dihedral_closed_form(n):
    G = get(f"D{n}")
    r, s = G.element("r"), G.element("s")
    assert G.irrep("sign").character[r] == 1 and G.irrep("sign").character[s] == -1
    if n % 2 == 0:
        assert (G.irrep("sign_r").character[[r, s]] == [-1, 1]).all()
        assert (G.irrep("sign_rs").character[[r, s]] == [-1, -1]).all()
    for k in range(1, (n - 1) // 2 + 1):
        M = G.irrep(f"freq_{k}").matrices
        t = 2 * np.pi * k / n
        assert np.allclose(M[r], [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        assert np.allclose(M[s], np.diag([1.0, -1.0]))


def test_alternating_names():
    A5 = get("A5")
    assert [r.dim for r in A5.irreps()] == sorted(r.dim for r in A5.irreps())
    assert A5.irrep("standard").dim == 4 and A5.irrep("(2,1,1,1)") is A5.irrep("(4,1)")
    assert A5.irrep("(3,1,1)[a]").dim == A5.irrep("(3,1,1)[b]").dim == 3
    assert get("A4").irrep("(2,2)").kind == "complex"


def test_find_irrep_and_aliases(group_named):
    G = get("S5")
    assert find_irrep(G, "standard") is G.irrep("(4,1)")
    assert find_irrep(G.irreps(), "(1^5)") is G.irrep("sign")
    assert G.irrep("(3,1^2)") is G.irrep("(3,1,1)")
    with pytest.raises(MiMarginError, match=r"no irrep named 'nope'.*standard"):
        G.irrep("nope")
    with pytest.raises(MiMarginError, match="method"):
        G.irreps("fast")  # type: ignore[arg-type]
    with pytest.raises(MiMarginError, match="no closed-form"):
        group_named("perm D4").irreps("closed")


def test_irreps_cached_and_read_only():
    G = get("S4")
    a, b = G.irreps(), G.irreps()
    assert a is not b and all(x is y for x, y in zip(a, b))
    with pytest.raises(ValueError):
        a[0].matrices[0, 0, 0] = 2.0
    assert get("S4") is G


def test_split_representation_recovers_constituents():
    G = get("S4")
    r1, r2 = G.irrep("standard"), G.irrep("(2,2)")
    dims = [r1.dim, r2.dim, r1.dim]
    D = sum(dims)
    mats = np.zeros((G.order, D, D))
    mats[:, :3, :3], mats[:, 3:5, 3:5], mats[:, 5:, 5:] = r1.matrices, r2.matrices, r1.matrices
    q = np.linalg.qr(np.random.default_rng(1).standard_normal((D, D)))[0]
    pieces = split_representation(G, q @ mats @ q.T)
    chars = sorted(tuple(np.round(np.einsum("gii->g", p), 8)) for p in pieces)
    assert chars == sorted(tuple(np.round(r.character, 8)) for r in (r1, r2))


@pytest.mark.parametrize("make", [lambda: alternating(5), lambda: numerical_irreps(alternating(4))],
                         ids=["A5 (Young, split)", "A4 (numerical)"])
def test_irrep_bases_do_not_depend_on_the_basis_eigh_returns(make, monkeypatch):
    """Within a degenerate eigenspace eigh returns whichever basis its LAPACK kernel reaches, and
    that differs between CPUs (it moved the A5 card's Gini between two machines). Rotating every
    degenerate eigenspace eigh returns by a random orthogonal matrix leaves every irrep's matrices
    as they were: the bases are canonical (``canonical_basis``)."""
    import scipy.linalg

    plain = _matrices(make())
    eigh, rng = scipy.linalg.eigh, np.random.default_rng(0)

    def rotated(a):
        w, v = eigh(a)
        for idx in _clusters(w):
            q = np.linalg.qr(rng.standard_normal((idx.size, idx.size)))[0]
            v[:, idx] = v[:, idx] @ q
        return w, v

    monkeypatch.setattr(scipy.linalg, "eigh", rotated)
    moved = _matrices(make())
    assert plain.keys() == moved.keys()
    for name, mats in plain.items():
        assert np.abs(mats - moved[name]).max() < 1e-10, name


def _matrices(group_or_irreps):
    irreps = group_or_irreps.irreps() if hasattr(group_or_irreps, "irreps") else group_or_irreps
    return {r.name: r.matrices for r in irreps}
